"""The whole path once: spec -> Ray -> SQL -> Δm, on the mini benchmark."""

from __future__ import annotations

import math

from sqlalchemy import func, select

from db.delta_m import delta_m, run_delta_m
from db.models import Job, JobState, MetricValue, Run, Submission
from db.queries import ranking
from db.session import transaction
from runners.benchmarks import BENCHMARKS
from tests.conftest import PIPELINE_METHODS


def test_pipeline_trains_every_seed_and_scores_it(pipeline_db: str) -> None:
    protocol = BENCHMARKS.get("synthetic-scenes-mini").protocol(2)
    with transaction(pipeline_db) as session:
        states = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        assert dict(states) == {
            JobState.SUCCEEDED: (1 + len(PIPELINE_METHODS)) * len(protocol.seeds)
        }
        rows = ranking(session, "synthetic-scenes-mini", 2)
    assert {r.name for r in rows} == {"stl-small-cnn", *PIPELINE_METHODS}
    for row in rows:
        assert row.seeds == len(protocol.seeds)
        assert math.isfinite(row.per_task_mean) and math.isfinite(row.per_metric_std)
        assert len(row.metrics) == 9


def test_sql_delta_m_matches_the_pure_function_on_pipeline_runs(pipeline_db: str) -> None:
    directions = BENCHMARKS.get("synthetic-scenes-mini").metric_directions
    with transaction(pipeline_db) as session:
        values: dict[int, dict[str, dict[str, float]]] = {}
        for run_id, task, metric, value in session.execute(
            select(MetricValue.run_id, MetricValue.task, MetricValue.metric, MetricValue.value)
        ):
            values.setdefault(run_id, {}).setdefault(task, {})[metric] = value
        baseline_runs = session.scalars(
            select(Run.id).join(Submission).where(Submission.name == "stl-small-cnn")
        ).all()
        sql = {row.run_id: row for row in session.execute(run_delta_m())}
    baseline = {
        task: {
            metric: sum(values[r][task][metric] for r in baseline_runs) / len(baseline_runs)
            for metric in metrics
        }
        for task, metrics in directions.items()
    }
    assert set(sql) == set(values)
    for run_id, metrics in values.items():
        expected = delta_m(metrics, baseline, directions)
        assert abs(sql[run_id].per_task - expected.per_task) < 1e-9
        assert abs(sql[run_id].per_metric - expected.per_metric) < 1e-9
