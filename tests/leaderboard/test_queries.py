"""The site's queries against the database the real pipeline filled."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import queries
from db.delta_m import PER_METRIC, PER_TASK, submission_delta_m
from db.models import Job, JobState, Role, Run, Submission
from db.queue import Outcome, campaign, claim_jobs, queue_jobs, record_failure, record_success
from db.session import read_only_engine, read_only_session_factory, transaction
from tests.conftest import PIPELINE_METHODS

BENCHMARK = ("synthetic-scenes-mini", 2)


def copy_of(url: str, directory: Path) -> str:
    """A copy of a SQLite database (the backup API: the WAL's pages included)."""
    target = directory / "copy.sqlite"
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    with sqlite3.connect(target) as destination:
        source.backup(destination)
    source.close()
    return f"sqlite:///{target}"


def read(url: str) -> Session:
    return read_only_session_factory(url)()


def test_ranking_matches_the_sql_aggregate(pipeline_db: str) -> None:
    with read(pipeline_db) as session:
        rows = {row.id: row for row in queries.ranking(session, *BENCHMARK)}
        sql = {r["submission_id"]: r for r in session.execute(submission_delta_m()).mappings()}
    assert len(rows) == 1 + len(PIPELINE_METHODS)
    for sid, row in rows.items():
        for convention in (PER_TASK, PER_METRIC):
            assert math.isclose(row.mean(convention), sql[sid][f"{convention}_mean"],
                                rel_tol=1e-9, abs_tol=1e-9)  # fmt: skip
            assert math.isclose(row.std(convention), sql[sid][f"{convention}_std"],
                                rel_tol=1e-9)  # fmt: skip
        assert row.baseline_submission_id == sql[sid]["baseline_submission_id"]
        assert [d.seed for d in row.run_deltas] == [0, 1, 2]
        assert row.seeds == 3 and row.pending_jobs == 0 and row.failed_jobs == 0


def test_runs_carry_forward_flops(pipeline_db: str) -> None:
    with read(pipeline_db) as session:
        rows = {row.name: row for row in queries.ranking(session, *BENCHMARK)}
    # The single-task baseline is three networks: about three times the work of a shared one.
    baseline = rows["stl-small-cnn"].flops
    for method in PIPELINE_METHODS:
        assert 0 < rows[method].flops < baseline
    assert all(float(row.flops).is_integer() for row in rows.values())


def test_run_deltas_and_task_deltas_filters(pipeline_db: str) -> None:
    with read(pipeline_db) as session:
        every = queries.run_deltas(session, *BENCHMARK)
        one = queries.run_deltas(session, *BENCHMARK, submission_id=2)
        all_tasks = queries.task_deltas(session, *BENCHMARK)
        some = queries.task_deltas(session, *BENCHMARK, submission_ids=[2, 3])
        index = queries.submission_index(session)
    assert len(every) == 3 * (1 + len(PIPELINE_METHODS))
    assert one == [d for d in every if d.submission_id == 2]
    assert some == [t for t in all_tasks if t[0] in (2, 3)] and len(some) == 6
    assert [i[0] for i in index] == list(range(1, 2 + len(PIPELINE_METHODS)))
    assert {(b, v) for _, _, b, v in index} == {BENCHMARK}


def test_the_data_version_moves_when_results_land(pipeline_db: str, tmp_path: Path) -> None:
    url = copy_of(pipeline_db, tmp_path)
    versions = []

    def version() -> tuple[object, ...]:
        with read(url) as session:
            return queries.data_version(session)

    versions.append(version())
    assert version() == versions[0]  # nothing changed, nothing moves
    with transaction(url) as session:
        submission = session.get(Submission, 2)
        assert submission is not None
        queue_jobs(session, submission, [7, 8], campaign(session, "rerun"))
    versions.append(version())  # queued
    with transaction(url) as session:
        first, second = claim_jobs(session)
        record_failure(session, second, JobState.FAILED, "RuntimeError: boom")
        run = session.scalars(select(Run).where(Run.submission_id == 2)).first()
        assert run is not None
        metrics: dict[str, dict[str, float]] = {}
        directions: dict[str, dict[str, bool]] = {}
        for m in run.metric_values:
            metrics.setdefault(m.task, {})[m.metric] = m.value
            directions.setdefault(m.task, {})[m.metric] = m.higher_is_better
        provenance = {k: getattr(run, k) for k in ("code_version", "torch_version",
                      "python_version", "ray_version", "device", "wall_time_s",
                      "parameter_count", "flops")}  # fmt: skip
        record_success(session, first, Outcome(metrics, directions, [], provenance))
    versions.append(version())  # a result landed, a job failed
    assert len(set(versions)) == 3
    # Queueing moves the jobs part only: the costly queries keyed on the results stay cached.
    assert versions[1].results == versions[0].results and versions[1].jobs != versions[0].jobs
    assert versions[2].results != versions[1].results
    with read(url) as session:
        row = next(r for r in queries.ranking(session, *BENCHMARK) if r.id == 2)
        jobs = queries.jobs(session, submission_id=2)
    # The ranking counts the original campaign's runs; the rerun's result is shown beside it.
    assert row.seeds == 3 and row.failed_jobs == 1
    assert row.rerun_campaign == "rerun" and row.rerun_seeds == 1
    assert [j.campaign for j in jobs] == ["initial"] * 3 + ["rerun"] * 2
    assert jobs[-1].error == "RuntimeError: boom"


@pytest.mark.parametrize("role", [Role.METHOD])
def test_a_submission_without_runs_has_no_delta_m(tmp_path: Path, role: Role) -> None:
    url = f"sqlite:///{tmp_path / 'one.sqlite'}"
    with transaction(url) as session:
        session.add(
            Submission(
                spec_hash="c" * 64,
                name="m",
                benchmark="b",
                protocol_version=1,
                architecture="a",
                backbone="k",
                weighting="w",
                optimizer="o",
                role=role,
                spec={},
            )
        )
        session.flush()
        session.add(Job(submission_id=1, campaign_id=campaign(session).id, seed=0))
    with read(url) as session:
        [row] = queries.ranking(session, "b", 1)
    assert row.per_task_mean is None and row.per_task_std is None
    assert row.run_deltas == () and row.baseline_submission_id is None
    assert row.seeds == 0 and row.pending_jobs == 1


def test_the_site_queries_on_each_database(database_url: str) -> None:
    """SQLite and PostgreSQL: a baseline and a method of two seeds, by hand."""
    from db.delta_m import delta_m
    from db.queue import designate_baseline, store_submission

    directions = {"seg": {"miou": True}, "depth": {"abs_err": False, "rel_err": False}}
    values = {
        ("stl", 0): {"seg": {"miou": 0.50}, "depth": {"abs_err": 0.40, "rel_err": 0.25}},
        ("stl", 1): {"seg": {"miou": 0.50}, "depth": {"abs_err": 0.40, "rel_err": 0.25}},
        ("m", 0): {"seg": {"miou": 0.40}, "depth": {"abs_err": 0.50, "rel_err": 0.20}},
        ("m", 1): {"seg": {"miou": 0.60}, "depth": {"abs_err": 0.30, "rel_err": 0.30}},
    }
    provenance = {"code_version": "git:x", "torch_version": "t", "python_version": "p",
                  "ray_version": "r", "device": "gpu", "wall_time_s": 3600.0,
                  "parameter_count": 10, "flops": 2**40}  # fmt: skip
    with transaction(database_url) as session:
        for name, role in (("stl", Role.BASELINE), ("m", Role.METHOD)):
            spec = {"name": name, "benchmark": "b", "protocol_version": 1,
                    "architecture": {"name": "a", "backbone": "k"}, "weighting": {"name": "w"},
                    "optimizer": {"name": "o"}}  # fmt: skip
            submission, _ = store_submission(
                session, spec=spec, spec_hash=name * 8, source="", role=role
            )
            if role is Role.BASELINE:
                designate_baseline(session, submission)
            queue_jobs(session, submission, [0, 1, 2], campaign(session))
        jobs = claim_jobs(session)
        for job in jobs:
            if job.seed == 2:
                record_failure(session, job, JobState.FAILED, "E")
                continue
            # Peak GPU memory per run: 3 GiB and 5 GiB (more than 32 bits of bytes).
            memory = {"peak_gpu_memory_bytes": (3 + 2 * job.seed) * 1024**3}
            outcome = Outcome(
                values[(job.submission.name, job.seed)], directions, [], {**provenance, **memory}
            )
            record_success(session, job, outcome)
    with read(database_url) as session:
        version = queries.data_version(session)
        rows = {r.name: r for r in queries.ranking(session, "b", 1)}
        columns = queries.metric_columns(session, "b", 1)
    baseline = values[("stl", 0)]
    expected = [delta_m(values[("m", s)], baseline, directions) for s in (0, 1)]
    method = rows["m"]
    assert [d.per_task for d in method.run_deltas] == pytest.approx(
        [e.per_task for e in expected], abs=1e-9
    )
    assert method.per_task_mean == pytest.approx(sum(e.per_task for e in expected) / 2)
    assert method.seeds == 2 and method.failed_jobs == 1 and method.pending_jobs == 0
    assert method.flops == 2**40  # BigInteger: more than 32 bits
    assert method.peak_gpu_memory_bytes == 5 * 1024**3  # the largest of the runs'
    assert rows["stl"].per_task_mean == pytest.approx(0.0, abs=1e-12)
    # Tasks in the order first seen, each task's metrics headline first.
    assert sorted((c.task, c.metric, c.position, c.higher_is_better) for c in columns) == [
        ("depth", "abs_err", 0, False), ("depth", "rel_err", 1, False), ("seg", "miou", 0, True),
    ]  # fmt: skip
    depth = [c.metric for c in columns if c.task == "depth"]
    assert depth == ["abs_err", "rel_err"]
    assert version.jobs[1] == (("failed", 2), ("succeeded", 4))
    read_only_engine(database_url).dispose()


def test_seed_results_pair_by_seed_over_the_original_campaign(database_url: str) -> None:
    """SQLite and PostgreSQL: seeds 0-2 of a method, seeds 1-3 of another, a rerun left out."""
    from db.delta_m import delta_m
    from db.queue import designate_baseline, store_submission
    from db.reruns import new_campaign

    directions = {"seg": {"miou": True}, "depth": {"abs_err": False}}

    def values(miou: float, abs_err: float) -> dict[str, dict[str, float]]:
        return {"seg": {"miou": miou}, "depth": {"abs_err": abs_err}}

    provenance = {"code_version": "git:x", "torch_version": "t", "python_version": "p",
                  "ray_version": "r", "device": "cpu", "wall_time_s": 1.0,
                  "parameter_count": 10, "flops": 10}  # fmt: skip
    plan = {  # name: (role, seeds, miou at seed s = base + s / 100)
        "stl": (Role.BASELINE, [0, 1], 0.50),
        "a": (Role.METHOD, [0, 1, 2], 0.40),
        "b": (Role.METHOD, [1, 2, 3], 0.60),
    }
    with transaction(database_url) as session:
        stored = {}
        for name, (role, seeds, _) in plan.items():
            spec = {"name": name, "benchmark": "b", "protocol_version": 1,
                    "architecture": {"name": "x", "backbone": "k"}, "weighting": {"name": name},
                    "optimizer": {"name": "o"}}  # fmt: skip
            submission, _ = store_submission(
                session, spec=spec, spec_hash=name * 16, source="", role=role
            )
            stored[name] = submission
            if role is Role.BASELINE:
                designate_baseline(session, submission)
            queue_jobs(session, submission, seeds, campaign(session))
        for job in claim_jobs(session):
            base = plan[job.submission.name][2]
            outcome = Outcome(values(base + job.seed / 100, 0.4), directions, [], provenance)
            record_success(session, job, outcome)
        # A rerun of `a` at seed 0 with other values: not in the original campaign's seeds.
        queue_jobs(session, stored["a"], [0], new_campaign(session, "again", "check"))
        [job] = claim_jobs(session)
        record_success(session, job, Outcome(values(0.9, 0.1), directions, [], provenance))
        ids = {name: s.id for name, s in stored.items()}
    with read(database_url) as session:
        every = queries.seed_results(session, "b", 1)
        some = queries.seed_results(session, "b", 1, [ids["a"], ids["b"]])
        rows = {r.id: r for r in queries.ranking(session, "b", 1)}
    assert [(r.submission_id, r.seed) for r in every] == [
        (ids["stl"], 0), (ids["stl"], 1), (ids["a"], 0), (ids["a"], 1), (ids["a"], 2),
        (ids["b"], 1), (ids["b"], 2), (ids["b"], 3),
    ]  # fmt: skip
    assert some == [r for r in every if r.submission_id != ids["stl"]]
    baseline = values(0.505, 0.4)  # the mean of the baseline's two seeds
    for result in every:
        name = next(n for n, i in ids.items() if i == result.submission_id)
        expected = values(plan[name][2] + result.seed / 100, 0.4)
        assert result.metrics == pytest.approx(
            {(t, m): v for t, ms in expected.items() for m, v in ms.items()}
        )
        d = delta_m(expected, baseline, directions)
        assert result.per_task == pytest.approx(d.per_task, abs=1e-9)
        assert result.per_metric == pytest.approx(d.per_metric, abs=1e-9)
        # The same per-seed Δm as the ranking's rows (the original campaign's runs).
        [same] = [r for r in rows[result.submission_id].run_deltas if r.seed == result.seed]
        assert same.per_task == pytest.approx(result.per_task, abs=1e-12)
    read_only_engine(database_url).dispose()
