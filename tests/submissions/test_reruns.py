"""`mtlb rerun`: selection, queueing, other protocol versions, errors, the scheduler, end to end."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from db import queries
from db.models import Baseline, Campaign, Job, MetricValue, Run, Submission
from db.reruns import RerunError, Selection
from db.session import transaction
from runners.benchmarks import BENCHMARKS
from submissions.cli import app
from submissions.reruns import cycle_campaign, parse_every, queue_rerun, schedule
from submissions.spec import validate
from submissions.submit import queue_baselines, store

MINI = "synthetic-scenes-mini"
EXAMPLES = Path(__file__).resolve().parents[2] / "submissions" / "examples"
runner = CliRunner()


def document(name: str, **optimizer: Any) -> dict[str, Any]:
    found = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    found["benchmark"] = MINI
    # Under v1: the tests below rerun it under versions 2 and 3 they define themselves.
    found["protocol_version"] = 1
    found["optimizer"].update(optimizer)
    return dict(found)


def fill(url: str) -> None:
    """The mini baseline, hps-dwa (lr 1e-3) and hps-equal at lr 1e-4, each with 3 jobs."""
    with transaction(url) as session:
        queue_baselines(session, MINI, 1)
        for doc in (document("hps-dwa", lr=1e-3), document("hps-equal", lr=1e-4)):
            spec, problems = validate(doc)
            assert spec is not None, problems
            store(session, spec, yaml.safe_dump(doc))


def snapshot(url: str) -> list[tuple[Any, ...]]:
    """Every job and run as it stands: what a rerun must never change."""
    with transaction(url) as session:
        jobs = session.execute(
            select(Job.id, Job.submission_id, Job.campaign_id, Job.seed, Job.state,
                   Job.protocol_version, Job.attempts, Job.finished_at).order_by(Job.id)
        ).all()  # fmt: skip
        runs = session.execute(
            select(Run.id, Run.job_id, Run.seed, Run.protocol_version, MetricValue.metric,
                   MetricValue.value).join(MetricValue).order_by(Run.id, MetricValue.metric)
        ).all()  # fmt: skip
        campaigns = session.execute(select(Campaign.id, Campaign.name)).all()
    return [tuple(r) for r in (*jobs, *runs, *campaigns)]


def rerun_jobs(url: str, name: str) -> list[tuple[str, int, int | None]]:
    with transaction(url) as session:
        rows = session.execute(
            select(Submission.name, Job.seed, Job.protocol_version)
            .join(Job.submission)
            .join(Job.campaign)
            .where(Campaign.name == name)
            .order_by(Job.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def filled(database_url: str) -> str:
    fill(database_url)
    return database_url


def test_a_rerun_queues_new_jobs_and_keeps_history(filled: str) -> None:
    before = snapshot(filled)
    with transaction(filled) as session:
        plan = queue_rerun(session, Selection(weighting="dwa"), "again", "seed check")
    assert [p.name for p in plan.planned] == ["hps-dwa"] and plan.jobs == 3
    assert rerun_jobs(filled, "again") == [("hps-dwa", 0, 1), ("hps-dwa", 1, 1), ("hps-dwa", 2, 1)]
    after = snapshot(filled)
    assert after[: len(before) - 1] == before[:-1]  # every job as it was; one campaign more
    with transaction(filled) as session:
        found = session.scalars(select(Campaign).where(Campaign.name == "again")).one()
        assert found.reason == "seed check"
        queue_rerun(session, Selection(everything=True), "explicit", "new seeds", seeds=(3, 4))
    assert [seed for _, seed, _ in rerun_jobs(filled, "explicit")] == [3, 4] * 3
    # An existing campaign is an error, and the failed rerun wrote nothing.
    middle = snapshot(filled)
    with (
        pytest.raises(RerunError, match=r"^--campaign again: a campaign of this name already"),
        transaction(filled) as session,
    ):
        queue_rerun(session, Selection(everything=True), "again", "twice")
    assert snapshot(filled) == middle


def test_another_protocol_version(filled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mini = BENCHMARKS.get(MINI)
    v1 = mini.protocol(1)
    monkeypatch.setitem(mini.protocols, 2, dataclasses.replace(v1, version=2, seeds=(10, 11)))
    monkeypatch.setitem(mini.protocols, 3, dataclasses.replace(v1, version=3, max_lr=5e-4))
    with transaction(filled) as session:
        plan = queue_rerun(session, Selection(submission_ids=(2,)), "v2", "new", protocol_version=2)
    # The method under v2 with v2's seeds, and the baseline it needs, designated for v2.
    assert rerun_jobs(filled, "v2") == [
        ("hps-dwa", 10, 2), ("hps-dwa", 11, 2), ("stl-small-cnn", 10, 2), ("stl-small-cnn", 11, 2),
    ]  # fmt: skip
    assert [p.designate for p in plan.planned] == [False, True]
    with transaction(filled) as session:
        assert session.get(Baseline, (MINI, 2, "small-cnn")).submission_id == 1  # type: ignore[union-attr]
        assert session.get(Baseline, (MINI, 1, "small-cnn")).submission_id == 1  # type: ignore[union-attr]
        assert (MINI, 2) in queries.benchmark_versions(session)
        shown = [r.name for r in queries.ranking(session, MINI, 2)]
        assert shown == ["stl-small-cnn", "hps-dwa"]  # not hps-equal: never run under v2
        plan = queue_rerun(session, Selection(everything=True), "v3", "lr", protocol_version=3)
    # Under v3 (max lr 5e-4) only hps-equal (lr 1e-4) runs; the others are reported, one line each.
    assert rerun_jobs(filled, "v3") == [("hps-equal", s, 3) for s in (0, 1, 2)]
    assert plan.skipped == [
        f"#{i} {name}: optimizer.lr: 0.001 exceeds the protocol's maximum of 0.0005"
        f" (under {MINI} v3; not queued)"
        for i, name in ((1, "stl-small-cnn"), (2, "hps-dwa"))
    ]
    assert plan.notes == [
        f"{MINI} v3 has no baseline for backbone small-cnn: Δm of these runs needs"
        f" `mtlb baselines {MINI} --version 3`"
    ]
    with (
        pytest.raises(RerunError, match=r"^nothing to queue"),
        transaction(filled) as session,
    ):
        queue_rerun(session, Selection(weighting="dwa"), "v3b", "lr", protocol_version=3)


def counts(url: str) -> tuple[int, int]:
    with transaction(url) as session:
        return (
            session.scalar(select(func.count()).select_from(Campaign)) or 0,
            session.scalar(select(func.count()).select_from(Job)) or 0,
        )


def test_cli_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    fill(url)
    before = counts(url)
    base = ["--database", url, "rerun", "--reason", "why"]
    for args, message in (
        (["--campaign", "x", "--submission", "9"], "error: --submission 9: no submission has"),
        (["--campaign", "initial", "--all"], "error: --campaign initial: a campaign of this"),
        (["--campaign", "x"], "error: choose what to rerun: --submission ID"),
        (["--campaign", "x", "--all", "--protocol-version", "7"],
         f"error: --protocol-version: benchmark '{MINI}' has no protocol version 7 (known: 1, 2)"),
        (["--campaign", "x", "--all", "--seeds", "1,x"], "error: --seeds: expected whole"),
        (["--campaign", "x", "--all", "--every", "daily"], "error: --every: expected a duration"),
        (["--campaign", "x", "--all", "--cycles", "2"], "error: --cycles 2: more than one cycle"),
        (["--campaign", " x", "--all"], "error: --campaign: a campaign name is 1 to 200"),
    ):  # fmt: skip
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 1, result.output
        assert result.output.startswith(message) and result.output.count("\n") == 1, result.output
        assert counts(url) == before
    dry = runner.invoke(app, [*base, "--campaign", "x", "--weighting", "dwa", "--dry-run"])
    assert dry.exit_code == 0 and counts(url) == before
    assert dry.output.splitlines() == [
        f"#2 hps-dwa: {MINI} v1, 3 job(s) would be queued (seeds 0, 1, 2)",
        "3 job(s) for 1 submission(s) would be queued in campaign x",
    ]
    done = runner.invoke(app, [*base, "--campaign", "x", "--architecture", "hard-sharing"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == "6 job(s) for 2 submission(s) queued in new campaign x"
    assert counts(url) == (before[0] + 1, before[1] + 6)


def test_the_scheduler_names_each_cycle_and_sleeps_until_the_next(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schedule.sqlite'}"
    fill(url)
    start = datetime(2026, 11, 27, 3, 0, 0, tzinfo=UTC)
    now = [start]
    slept: list[float] = []

    def run(_: str) -> str:
        now[0] += timedelta(minutes=10)  # the cycle's jobs take 10 minutes
        return "ran"

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += timedelta(seconds=seconds)

    lines: list[str] = []
    done = schedule(
        url, Selection(weighting="dwa"), "nightly", "nightly check", run, every=parse_every("1h"),
        cycles=3, seeds=(5,), echo=lines.append, clock=lambda: now[0], sleep=sleep,
    )  # fmt: skip
    assert done == 3 and slept == [3000.0, 3000.0]  # 1 h minus the 10 min of jobs, twice
    names = ["nightly-20261127T030000Z", "nightly-20261127T040000Z", "nightly-20261127T050000Z"]
    for name in names:
        assert rerun_jobs(url, name) == [("hps-dwa", 5, 1)]
    assert lines.count("ran") == 3
    assert cycle_campaign("nightly", start) == names[0]
    with pytest.raises(RerunError, match="more than one cycle needs --every"):
        schedule(url, Selection(everything=True), "n", "r", run, cycles=2)


def copy_of(url: str, directory: Path) -> str:
    target = directory / "copy.sqlite"
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    with sqlite3.connect(target) as destination:
        source.backup(destination)
    source.close()
    return f"sqlite:///{target}"


def test_rerun_end_to_end_on_ray(pipeline_db: str, tmp_path: Path) -> None:
    """One seed of one submission rerun by the scheduler with the real dispatcher."""
    url = copy_of(pipeline_db, tmp_path)
    with transaction(url) as session:
        chosen = session.scalars(select(Submission).where(Submission.name == "hps-equal")).one()
        sid = chosen.id
        before_row = next(r for r in queries.ranking(session, MINI, 2) if r.id == sid)
    before = snapshot(url)
    result = runner.invoke(
        app,
        ["--database", url, "rerun", "--submission", str(sid), "--seeds", "7", "--campaign",
         "check", "--reason", "reproducibility", "--cycles", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 succeeded, 0 failed or diverged" in result.output
    after = snapshot(url)
    # Every earlier job and run is as it was; one job, one run and one campaign were added.
    assert [r for r in after if r in before] == before
    with transaction(url) as session:
        [run] = session.scalars(select(Run).where(Run.seed == 7)).all()
        job = session.get(Job, run.job_id)
        assert job is not None and job.campaign.name.startswith("check-2")
        assert job.campaign.reason == "reproducibility" and run.submission_id == sid
        assert run.protocol_version == 2 and len(run.metric_values) > 0
        row = next(r for r in queries.ranking(session, MINI, 2) if r.id == sid)
    # The ranking keeps the original campaign's three seeds; the rerun is beside it.
    assert row.seeds == 3 and row.per_task_mean == pytest.approx(before_row.per_task_mean)
    assert row.rerun_campaign == job.campaign.name and row.rerun_seeds == 1
    assert row.per_task_reproduced in (True, False)
