"""Δm in SQL against hand-computed values and the pure function, on SQLite and PostgreSQL."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from db.delta_m import delta_m, run_delta_m, submission_delta_m
from db.models import Role
from db.queue import (
    Outcome,
    campaign,
    claim_jobs,
    designate_baseline,
    queue_jobs,
    record_success,
    store_submission,
)
from db.session import transaction

DIRECTIONS = {"a": {"m1": True}, "b": {"e1": False, "e2": False}}
BASELINE_RUNS = [
    {"a": {"m1": 0.4}, "b": {"e1": 1.0, "e2": 0.5}},
    {"a": {"m1": 0.6}, "b": {"e1": 3.0, "e2": 0.5}},
]  # mean: m1 0.5, e1 2.0, e2 0.5
METHOD_RUNS = [
    # d = (+0.1, +0.1, -0.2): per task 100 * mean(0.1, -0.05) = 2.5; per metric -100 * 0 = 0
    {"a": {"m1": 0.55}, "b": {"e1": 1.8, "e2": 0.6}},
    # no change: 0 and 0
    {"a": {"m1": 0.5}, "b": {"e1": 2.0, "e2": 0.5}},
    # d = (-0.1, -0.1, +0.1): per task 100 * mean(-0.1, 0) = -5; per metric -100 * (-0.1 / 3)
    {"a": {"m1": 0.45}, "b": {"e1": 2.2, "e2": 0.45}},
]
PER_TASK = [2.5, 0.0, -5.0]
PER_METRIC = [0.0, 0.0, 10.0 / 3.0]


def spec(name: str, architecture: str, backbone: str = "net") -> dict[str, Any]:
    return {
        "name": name,
        "benchmark": "toy",
        "protocol_version": 1,
        "architecture": {"name": architecture, "backbone": backbone},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam"},
    }


def add_runs(
    session: Any,
    name: str,
    role: Role,
    runs: list[dict[str, dict[str, float]]],
    backbone: str = "net",
) -> int:
    submission, _ = store_submission(
        session, spec=spec(name, role.value, backbone), spec_hash=name, source="", role=role
    )
    queue_jobs(session, submission, range(len(runs)), campaign(session))
    jobs = claim_jobs(session)
    for job, metrics in zip(jobs, runs, strict=True):
        provenance = {
            "code_version": "test",
            "torch_version": "x",
            "ray_version": "x",
            "python_version": "x",
            "device": "cpu",
            "wall_time_s": 1.0,
            "parameter_count": 10,
        }
        record_success(session, job, Outcome(metrics, DIRECTIONS, [], provenance))
    if role is Role.BASELINE:
        designate_baseline(session, submission)
    return submission.id


def test_sql_delta_m_equals_hand_computed_values(database_url: str) -> None:
    with transaction(database_url) as session:
        add_runs(session, "stl", Role.BASELINE, BASELINE_RUNS)
        # A baseline of another backbone must not be used for "net" runs.
        add_runs(session, "stl-other", Role.BASELINE, [METHOD_RUNS[0]], backbone="other")
        method = add_runs(session, "method", Role.METHOD, METHOD_RUNS)
    with transaction(database_url) as session:
        runs = [r for r in session.execute(run_delta_m()) if r.submission_id == method]
        summary = {r.submission_id: r for r in session.execute(submission_delta_m())}[method]
    assert sorted(r.per_task for r in runs) == pytest.approx(sorted(PER_TASK), abs=1e-9)
    assert sorted(r.per_metric for r in runs) == pytest.approx(sorted(PER_METRIC), abs=1e-9)
    assert all(r.n_metrics == 3 for r in runs)
    assert summary.runs == 3
    assert summary.per_task_mean == pytest.approx(statistics.mean(PER_TASK), abs=1e-9)
    assert summary.per_task_std == pytest.approx(statistics.stdev(PER_TASK), abs=1e-9)
    assert summary.per_metric_mean == pytest.approx(statistics.mean(PER_METRIC), abs=1e-9)
    assert summary.per_metric_std == pytest.approx(statistics.stdev(PER_METRIC), abs=1e-9)


def test_sql_equals_the_pure_function_run_by_run(database_url: str) -> None:
    with transaction(database_url) as session:
        baseline_id = add_runs(session, "stl", Role.BASELINE, BASELINE_RUNS)
        method = add_runs(session, "method", Role.METHOD, METHOD_RUNS)
    with transaction(database_url) as session:
        rows = sorted(
            (r for r in session.execute(run_delta_m()) if r.submission_id == method),
            key=lambda r: r.run_id,
        )
    mean_baseline = {
        t: {k: statistics.mean(r[t][k] for r in BASELINE_RUNS) for k in ks}
        for t, ks in DIRECTIONS.items()
    }
    for row, metrics in zip(rows, METHOD_RUNS, strict=True):
        expected = delta_m(metrics, mean_baseline, DIRECTIONS)
        assert abs(row.per_task - expected.per_task) < 1e-9
        assert abs(row.per_metric - expected.per_metric) < 1e-9
        assert row.baseline_submission_id == baseline_id


def test_single_run_has_no_std_and_no_baseline_means_no_delta(database_url: str) -> None:
    with transaction(database_url) as session:
        lonely = add_runs(session, "lonely", Role.METHOD, METHOD_RUNS[:1])
    with transaction(database_url) as session:
        assert list(session.execute(submission_delta_m())) == []  # no baseline yet
        add_runs(session, "stl", Role.BASELINE, BASELINE_RUNS)
    with transaction(database_url) as session:
        summary = {r.submission_id: r for r in session.execute(submission_delta_m())}[lonely]
    assert summary.runs == 1 and summary.per_task_std is None
    assert summary.per_task_mean == pytest.approx(2.5, abs=1e-9)


def test_pure_function_rejects_missing_metrics_and_zero_baselines() -> None:
    with pytest.raises(ValueError, match=r"result has no value for b\.e2"):
        delta_m({"a": {"m1": 1.0}, "b": {"e1": 1.0}}, BASELINE_RUNS[0], DIRECTIONS)
    zero = {"a": {"m1": 0.0}, "b": {"e1": 1.0, "e2": 1.0}}
    with pytest.raises(ValueError, match=r"baseline value of a\.m1 is zero"):
        delta_m(METHOD_RUNS[0], zero, DIRECTIONS)
