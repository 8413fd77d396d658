"""Reruns in the database: the original campaign stays the ranking's, reruns are judged against it.

Hand-built runs of one task with one metric (higher is better), so that each
run's Δm is known: with baseline value B and result M, Δm per task =
100 (M - B) / B, and Δm per metric is its negative.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import queries
from db.models import Job, Role, Run, Submission
from db.queue import (
    Outcome,
    campaign,
    claim_jobs,
    designate_baseline,
    queue_jobs,
    record_success,
    store_submission,
    trained_spec,
)
from db.reruns import RerunError, Selection, new_campaign, reproduced, select_submissions
from db.session import transaction

BENCHMARK = "bench"
B = 0.5  # the baseline's miou in its original campaign
PROVENANCE = {
    "code_version": "git:test", "torch_version": "t", "python_version": "p", "ray_version": "r",
    "device": "cpu", "wall_time_s": 1.0, "parameter_count": 10, "flops": 20,
}  # fmt: skip


def spec(name: str, architecture: str, weighting: str, version: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "benchmark": BENCHMARK,
        "protocol_version": version,
        "architecture": {"name": architecture, "backbone": "small-cnn"},
        "weighting": {"name": weighting},
        "optimizer": {"name": "adam", "lr": 1e-3},
    }


def submit(session: Session, name: str, architecture: str, weighting: str) -> Submission:
    role = Role.BASELINE if architecture == "single-task" else Role.METHOD
    found, _ = store_submission(
        session,
        spec=spec(name, architecture, weighting),
        spec_hash=name.ljust(64, "0"),
        source="",
        role=role,
    )
    return found


def land(
    session: Session, submission: Submission, in_campaign: str, values: dict[int, float]
) -> None:
    """Runs of `submission` in a campaign: {seed: miou}, recorded as the dispatcher does."""
    target = campaign(session, in_campaign, reason="test")
    queue_jobs(session, submission, list(values), target)
    for job in claim_jobs(session):
        record_success(
            session,
            job,
            Outcome({"seg": {"miou": values[job.seed]}}, {"seg": {"miou": True}}, [], PROVENANCE),
        )


def miou(delta_m: float) -> float:
    """The miou whose Δm per task against B is `delta_m` (in %)."""
    return B * (1.0 + delta_m / 100.0)


def ranking(url: str) -> dict[str, queries.RankingRow]:
    with transaction(url) as session:
        return {r.name: r for r in queries.ranking(session, BENCHMARK, 1)}


@pytest.fixture
def url(database_url: str) -> str:
    with transaction(database_url) as session:
        baseline = submit(session, "stl", "single-task", "equal")
        designate_baseline(session, baseline)
        land(session, baseline, "initial", {0: B, 1: B})
        method = submit(session, "method", "hard-sharing", "dwa")
        # Δm per task 1, 2, 3: mean 2, sample standard deviation 1.
        land(session, method, "initial", {0: miou(1.0), 1: miou(2.0), 2: miou(3.0)})
        submit(session, "other", "mtan", "dwa")
    return database_url


def test_a_rerun_is_judged_against_the_original_spread(url: str) -> None:
    row = ranking(url)["method"]
    assert row.rerun_campaign is None and row.per_task_reproduced is None
    assert math.isclose(row.per_task_mean, 2.0, abs_tol=1e-9)
    with transaction(url) as session:
        method = session.scalars(select(Submission).where(Submission.name == "method")).one()
        baseline = session.scalars(select(Submission).where(Submission.name == "stl")).one()
        # Δm 3.5 and 4.5: mean 4, 2 away from the original's 2 > s = 1.  The baseline's own
        # rerun (a different value) must not move any Δm: B is its original campaign's.
        land(session, method, "nightly-1", {0: miou(3.5), 1: miou(4.5)})
        land(session, baseline, "nightly-1", {0: 0.9})
    row = ranking(url)["method"]
    assert row.rerun_campaign == "nightly-1" and row.rerun_seeds == 2
    assert math.isclose(row.rerun_per_task_mean, 4.0, abs_tol=1e-9)
    assert math.isclose(row.rerun_per_metric_mean, -4.0, abs_tol=1e-9)
    assert row.per_task_reproduced is False and row.per_metric_reproduced is False
    # The ranking itself is still the original campaign's: 3 seeds, mean 2.
    assert row.seeds == 3 and math.isclose(row.per_task_mean, 2.0, abs_tol=1e-9)
    assert [d.seed for d in row.run_deltas] == [0, 1, 2]
    assert math.isclose(row.metrics[("seg", "miou")], miou(2.0))
    with transaction(url) as session:
        method = session.scalars(select(Submission).where(Submission.name == "method")).one()
        # The latest rerun decides: Δm 2.0 and 2.5, mean 2.25, within 1 of 2.
        land(session, method, "nightly-2", {0: miou(2.0), 1: miou(2.5)})
    row = ranking(url)["method"]
    assert row.rerun_campaign == "nightly-2"
    assert math.isclose(row.rerun_per_task_mean, 2.25, abs_tol=1e-9)
    assert row.per_task_reproduced is True
    # The baseline against itself: original Δm 0 and 0 (s = 0); its one rerun seed, 0.9, is
    # judged against its original B = 0.5: Δm +80, not reproduced.
    stl = ranking(url)["stl"]
    assert math.isclose(stl.per_task_mean, 0.0, abs_tol=1e-9) and stl.rerun_seeds == 1
    assert math.isclose(stl.rerun_per_task_mean, 80.0) and stl.per_task_reproduced is False


def test_reproduced_needs_two_original_seeds() -> None:
    assert reproduced([1.0, 3.0], [2.0 + math.sqrt(2.0) - 1e-9]) is True  # s = √2
    assert reproduced([1.0, 3.0], [2.0 + math.sqrt(2.0) + 1e-9]) is False
    assert reproduced([1.0], [1.0]) is None and reproduced([], [1.0]) is None
    assert reproduced([1.0, 3.0], []) is None


def test_selectors_combine_with_and(url: str) -> None:
    with transaction(url) as session:
        names = lambda s: [x.name for x in select_submissions(session, s)]  # noqa: E731
        assert names(Selection(everything=True)) == ["stl", "method", "other"]
        assert names(Selection(weighting="dwa")) == ["method", "other"]
        assert names(Selection(weighting="dwa", architecture="mtan")) == ["other"]
        assert names(Selection(submission_ids=(1, 2), weighting="dwa")) == ["method"]
        assert names(Selection(benchmark=BENCHMARK, architecture="single-task")) == ["stl"]
        with pytest.raises(RerunError, match=r"^no submission matches --weighting equal --arch"):
            select_submissions(session, Selection(weighting="equal", architecture="mtan"))
        with pytest.raises(RerunError, match=r"^--submission 99: no submission has this id$"):
            select_submissions(session, Selection(submission_ids=(2, 99)))
        with pytest.raises(RerunError, match=r"^choose what to rerun"):
            select_submissions(session, Selection())
        with pytest.raises(RerunError, match="already exists"):
            new_campaign(session, "initial", "again")


def test_a_job_trains_under_its_own_protocol_version(url: str) -> None:
    with transaction(url) as session:
        method = session.scalars(select(Submission).where(Submission.name == "method")).one()
        [job] = queue_jobs(session, method, [5], new_campaign(session, "v2", "new version"), 2)
        assert job.protocol_version == 2 and trained_spec(job)["protocol_version"] == 2
        assert method.spec["protocol_version"] == 1  # the stored spec is left alone
        [claimed] = claim_jobs(session)
        run = record_success(
            session,
            claimed,
            Outcome({"seg": {"miou": 0.4}}, {"seg": {"miou": True}}, [], PROVENANCE),
        )
        assert run.protocol_version == 2
        old = session.scalars(select(Job).where(Job.campaign_id == 1)).first()
        assert old is not None and old.protocol_version == 1  # queued under its own
    with transaction(url) as session:
        assert ("bench", 2) in queries.benchmark_versions(session)
        v2 = {r.name: r for r in queries.ranking(session, BENCHMARK, 2)}
        v1 = queries.ranking(session, BENCHMARK, 1)
        runs = session.scalars(select(Run).where(Run.protocol_version == 2)).all()
    # Under version 2: the method, with its one run and no Δm (v2 has no baseline yet).
    assert list(v2) == ["method"] and v2["method"].seeds == 1
    assert v2["method"].per_task_mean is None and len(runs) == 1
    assert next(r for r in v1 if r.name == "method").seeds == 3  # v1 untouched
