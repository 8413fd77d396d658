"""Read-only queries for the leaderboard site.  Plain rows out; no pandas here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.delta_m import PER_METRIC, PER_TASK, relative_deltas, submission_delta_m
from db.models import CurveValue, Job, JobState, MetricValue, Run, Submission


def benchmark_versions(session: Session) -> list[tuple[str, int]]:
    """(benchmark, protocol version) pairs that have submissions, newest version first."""
    rows = session.execute(
        select(Submission.benchmark, Submission.protocol_version)
        .distinct()
        .order_by(Submission.benchmark, Submission.protocol_version.desc())
    )
    return [(b, v) for b, v in rows]


@dataclass(frozen=True)
class MetricColumn:
    task: str
    metric: str
    higher_is_better: bool
    position: int


def metric_columns(session: Session, benchmark: str, version: int) -> list[MetricColumn]:
    """Every (task, metric) reported for a benchmark version, in task order, headline first."""
    rows = session.execute(
        select(
            MetricValue.task, MetricValue.metric, MetricValue.higher_is_better, MetricValue.position
        )
        .join(Run, Run.id == MetricValue.run_id)
        .where(Run.benchmark == benchmark, Run.protocol_version == version)
        .distinct()
    )
    columns = [MetricColumn(*row) for row in rows]
    first_seen = {c.task: i for i, c in reversed(list(enumerate(columns)))}
    return sorted(columns, key=lambda c: (first_seen[c.task], c.task, c.position))


def ranking(session: Session, benchmark: str, version: int) -> list[dict[str, Any]]:
    """One row per submission of a benchmark version: identity, Δm over seeds, mean metrics, cost.

    Δm columns are NULL for submissions without a trained baseline.
    """
    delta = submission_delta_m().subquery("delta")
    runs = (
        select(
            Run.submission_id,
            func.count(Run.id).label("seeds"),
            func.avg(Run.parameter_count).label("parameters"),
            func.avg(Run.wall_time_s).label("wall_time_s"),
            func.max(Run.finished_at).label("last_result"),
        )
        .group_by(Run.submission_id)
        .subquery("runs")
    )
    jobs = (
        select(Job.submission_id, func.count(Job.id).label("jobs"))
        .where(Job.state.in_([JobState.QUEUED, JobState.RUNNING]))
        .group_by(Job.submission_id)
        .subquery("jobs")
    )
    rows = session.execute(
        select(
            Submission.id,
            Submission.name,
            Submission.description,
            Submission.authors,
            Submission.architecture,
            Submission.backbone,
            Submission.weighting,
            Submission.optimizer,
            Submission.role,
            Submission.spec_hash,
            func.coalesce(runs.c.seeds, 0).label("seeds"),
            func.coalesce(jobs.c.jobs, 0).label("pending_jobs"),
            runs.c.parameters,
            runs.c.wall_time_s,
            runs.c.last_result,
            delta.c[f"{PER_TASK}_mean"],
            delta.c[f"{PER_TASK}_std"],
            delta.c[f"{PER_METRIC}_mean"],
            delta.c[f"{PER_METRIC}_std"],
            delta.c.baseline_submission_id,
        )
        .outerjoin(runs, runs.c.submission_id == Submission.id)
        .outerjoin(jobs, jobs.c.submission_id == Submission.id)
        .outerjoin(delta, delta.c.submission_id == Submission.id)
        .where(Submission.benchmark == benchmark, Submission.protocol_version == version)
        .order_by(Submission.id)
    ).mappings()
    table = [dict(row) for row in rows]
    means = metric_means(session, benchmark, version)
    for row in table:
        row["metrics"] = means.get(row["id"], {})
    return table


def metric_means(
    session: Session, benchmark: str, version: int
) -> dict[int, dict[tuple[str, str], float]]:
    """{submission id: {(task, metric): mean over runs}}."""
    rows = session.execute(
        select(Run.submission_id, MetricValue.task, MetricValue.metric, func.avg(MetricValue.value))
        .join(MetricValue, MetricValue.run_id == Run.id)
        .where(Run.benchmark == benchmark, Run.protocol_version == version)
        .group_by(Run.submission_id, MetricValue.task, MetricValue.metric)
    )
    out: dict[int, dict[tuple[str, str], float]] = {}
    for sid, task, metric, value in rows:
        out.setdefault(sid, {})[(task, metric)] = float(value)
    return out


def task_deltas(session: Session, benchmark: str, version: int) -> list[tuple[int, str, float]]:
    """(submission id, task, mean relative gain x100): each task's part of Δm (per task)."""
    d = relative_deltas().subquery("d")
    rows = session.execute(
        select(d.c.submission_id, d.c.task, (100.0 * func.avg(d.c.d)).label("delta"))
        .join(Submission, Submission.id == d.c.submission_id)
        .where(Submission.benchmark == benchmark, Submission.protocol_version == version)
        .group_by(d.c.submission_id, d.c.task)
        .order_by(d.c.submission_id, d.c.task)
    )
    return [(sid, task, float(value)) for sid, task, value in rows]


def submission_runs(session: Session, submission_id: int) -> list[dict[str, Any]]:
    """Every run of a submission with its provenance and metrics."""
    runs = session.scalars(
        select(Run).where(Run.submission_id == submission_id).order_by(Run.seed, Run.id)
    ).all()
    out = []
    for run in runs:
        row = {c.name: getattr(run, c.name) for c in Run.__table__.columns}
        row["metrics"] = {(m.task, m.metric): m.value for m in run.metric_values}
        out.append(row)
    return out


def curves(session: Session, submission_id: int) -> list[tuple[int, int, str, str, float]]:
    """(seed, epoch, task, name, value) of every run of a submission."""
    rows = session.execute(
        select(Run.seed, CurveValue.epoch, CurveValue.task, CurveValue.name, CurveValue.value)
        .join(Run, Run.id == CurveValue.run_id)
        .where(Run.submission_id == submission_id)
        .order_by(Run.seed, CurveValue.epoch)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def jobs(session: Session) -> list[dict[str, Any]]:
    """The queue: every job with its submission, state and error."""
    rows = session.execute(
        select(
            Job.id,
            Submission.name,
            Submission.benchmark,
            Job.seed,
            Job.state,
            Job.attempts,
            Job.error,
            Job.created_at,
            Job.started_at,
            Job.finished_at,
        )
        .join(Submission, Submission.id == Job.submission_id)
        .order_by(Job.id)
    ).mappings()
    return [dict(r) for r in rows]


def submission(session: Session, submission_id: int) -> Submission | None:
    return session.get(Submission, submission_id)
