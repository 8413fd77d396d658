"""Δm, the multi-task performance delta, as a pure function and as SQL.

For task t with metric k, multi-task value M, single-task baseline B (the
mean over the baseline's runs) and s = +1 if higher is better else -1:

    d(t, k) = s * (M(t, k) - B(t, k)) / B(t, k)

Two conventions rank methods differently, so both are computed and labelled:

- per-task (LibMTL, Vandenhende et al.): mean of d over each task's
  metrics, then mean over tasks, x100.  Higher is better.
- per-metric drop (CAGrad, Nash-MTL, FAMO papers): mean of d over all
  metrics of all tasks, x100, sign flipped.  Lower is better.

The SQL queries compute the same in the database, against the designated
baseline (table `baselines`) of the run's benchmark, protocol version and
backbone; tests check that both agree to 1e-9.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Float, Select, and_, case, cast, func, literal, select

from db.models import Baseline, Job, MetricValue, Run

Metrics = Mapping[str, Mapping[str, float]]
Directions = Mapping[str, Mapping[str, bool]]

PER_TASK = "per_task"
PER_METRIC = "per_metric"
CONVENTIONS = {
    PER_TASK: "Δm per task (LibMTL): mean over tasks of the mean relative gain; higher is better",
    PER_METRIC: (
        "Δm per metric (CAGrad/Nash-MTL): mean relative drop over all metrics; lower is better"
    ),
}


@dataclass(frozen=True)
class DeltaM:
    per_task: float  # percent, higher is better
    per_metric: float  # percent drop, lower is better


def delta_m(result: Metrics, baseline: Metrics, higher_is_better: Directions) -> DeltaM:
    """Δm of `result` against `baseline`, over the metrics of `higher_is_better`.

    Worked example: two tasks, segmentation {miou: 0.40} (higher is better)
    and depth {abs_err: 0.50, rel_err: 0.20} (lower is better), against a
    baseline of {miou: 0.50} and {abs_err: 0.40, rel_err: 0.25}:

        d(seg, miou)      = +(0.40 - 0.50) / 0.50 = -0.20
        d(depth, abs_err) = -(0.50 - 0.40) / 0.40 = -0.25
        d(depth, rel_err) = -(0.20 - 0.25) / 0.25 = +0.20
        per task   = 100 * mean(-0.20, mean(-0.25, 0.20)) = 100 * (-0.225 / 2) = -11.25
        per metric = -100 * mean(-0.20, -0.25, 0.20)      = -100 * (-0.25 / 3) = +8.333...

    >>> d = delta_m(
    ...     {"seg": {"miou": 0.40}, "depth": {"abs_err": 0.50, "rel_err": 0.20}},
    ...     {"seg": {"miou": 0.50}, "depth": {"abs_err": 0.40, "rel_err": 0.25}},
    ...     {"seg": {"miou": True}, "depth": {"abs_err": False, "rel_err": False}},
    ... )
    >>> round(d.per_task, 6), round(d.per_metric, 6)
    (-11.25, 8.333333)

    Raises ValueError naming the first metric missing from `result` or
    `baseline`, or a zero baseline value.
    """
    per_task: list[float] = []
    every: list[float] = []
    for task, metrics in higher_is_better.items():
        ds = []
        for metric, higher in metrics.items():
            for label, values in (("result", result), ("baseline", baseline)):
                if metric not in values.get(task, {}):
                    raise ValueError(f"{label} has no value for {task}.{metric}")
            b = baseline[task][metric]
            if b == 0:
                raise ValueError(f"baseline value of {task}.{metric} is zero; Δm is undefined")
            sign = 1.0 if higher else -1.0
            ds.append(sign * (result[task][metric] - b) / b)
        if ds:
            per_task.append(sum(ds) / len(ds))
            every.extend(ds)
    if not every:
        raise ValueError("no metrics to compare")
    return DeltaM(
        per_task=100.0 * sum(per_task) / len(per_task),
        per_metric=-100.0 * sum(every) / len(every),
    )


# ---------------------------------------------------------------------------
# SQL: the same computation, run by the database.


def original_campaigns() -> Select[int, int, int]:
    """(submission_id, protocol_version, campaign_id): each submission's original campaign.

    The original campaign of a submission under a protocol version is the
    first campaign (lowest id) with a run of it under that version: normally
    `initial`; for a rerun under a new version, that rerun.  Rankings and
    baselines use its runs only, so that later reruns (`mtlb rerun`) are
    compared with the original rather than mixed into it.
    """
    return (
        select(
            Run.submission_id,
            Run.protocol_version,
            func.min(Job.campaign_id).label("campaign_id"),
        )
        .join(Job, Job.id == Run.job_id)
        .group_by(Run.submission_id, Run.protocol_version)
    )


def in_original_campaign(original: Any) -> ColumnElement[bool]:
    """Join condition: a `Run` (joined to its `Job`) is of the `original` subquery's campaign."""
    return and_(
        original.c.submission_id == Run.submission_id,
        original.c.protocol_version == Run.protocol_version,
        original.c.campaign_id == Job.campaign_id,
    )


def baseline_values() -> Select[tuple[str, int, str, int, str, str, float, int]]:
    """B(t, k) per (benchmark, version, backbone): the mean over the designated baseline's runs.

    The runs of that version in the baseline's original campaign
    (`original_campaigns`): a rerun of the baseline, or a run of it under
    another version, leaves every Δm as it was.
    """
    original = (
        original_campaigns()
        .where(Run.submission_id.in_(select(Baseline.submission_id)))
        .subquery("original")
    )
    return (
        select(
            Baseline.benchmark,
            Baseline.protocol_version,
            Baseline.backbone,
            Baseline.submission_id.label("baseline_submission_id"),
            MetricValue.task,
            MetricValue.metric,
            func.avg(MetricValue.value).label("value"),
            func.count(MetricValue.run_id).label("baseline_runs"),
        )
        .join(
            Run,
            and_(
                Run.submission_id == Baseline.submission_id,
                Run.benchmark == Baseline.benchmark,
                Run.protocol_version == Baseline.protocol_version,
            ),
        )
        .join(Job, Job.id == Run.job_id)
        .join(original, in_original_campaign(original))
        .join(MetricValue, MetricValue.run_id == Run.id)
        .group_by(
            Baseline.benchmark,
            Baseline.protocol_version,
            Baseline.backbone,
            Baseline.submission_id,
            MetricValue.task,
            MetricValue.metric,
        )
    )


def relative_deltas() -> Select[tuple[int, int, str, str, float, int]]:
    """d(t, k) of every run's metric that has a baseline value."""
    base = baseline_values().subquery("base")
    sign = case((MetricValue.higher_is_better, literal(1.0)), else_=literal(-1.0))
    return (
        select(
            Run.id.label("run_id"),
            Run.submission_id,
            MetricValue.task,
            MetricValue.metric,
            (
                sign
                * (MetricValue.value - base.c.value)
                / func.nullif(cast(base.c.value, Float), 0.0)
            ).label("d"),
            base.c.baseline_submission_id,
        )
        .join(MetricValue, MetricValue.run_id == Run.id)
        .join(
            base,
            and_(
                base.c.benchmark == Run.benchmark,
                base.c.protocol_version == Run.protocol_version,
                base.c.backbone == Run.backbone,
                base.c.task == MetricValue.task,
                base.c.metric == MetricValue.metric,
            ),
        )
    )


def run_delta_m() -> Select[tuple[int, int, int, float, float, int]]:
    """Per run: Δm in both conventions, the baseline used and how many metrics entered."""
    d = relative_deltas().subquery("d")
    per_task = (
        select(
            d.c.run_id,
            d.c.task,
            func.avg(d.c.d).label("d_task"),
            func.sum(d.c.d).label("d_sum"),
            func.count().label("n_metrics"),
            func.max(d.c.baseline_submission_id).label("baseline_submission_id"),
        )
        .group_by(d.c.run_id, d.c.task)
        .subquery("per_task")
    )
    return (
        select(
            per_task.c.run_id,
            Run.submission_id,
            func.max(per_task.c.baseline_submission_id).label("baseline_submission_id"),
            (100.0 * func.avg(per_task.c.d_task)).label(PER_TASK),
            (-100.0 * func.sum(per_task.c.d_sum) / func.sum(per_task.c.n_metrics)).label(
                PER_METRIC
            ),
            func.sum(per_task.c.n_metrics).label("n_metrics"),
        )
        .join(Run, Run.id == per_task.c.run_id)
        .group_by(per_task.c.run_id, Run.submission_id)
    )


def submission_delta_m() -> Select[tuple[int, float, float, float, float, int, int]]:
    """Per submission: mean, sample standard deviation and count over its runs (seeds).

    The standard deviation is two-pass (mean first, then squared deviations)
    for accuracy, and NULL for a single run.
    """
    per_run = run_delta_m().subquery("per_run")
    means = (
        select(
            per_run.c.submission_id,
            func.avg(per_run.c[PER_TASK]).label("mean_task"),
            func.avg(per_run.c[PER_METRIC]).label("mean_metric"),
            func.count().label("n"),
            func.max(per_run.c.baseline_submission_id).label("baseline_submission_id"),
        )
        .group_by(per_run.c.submission_id)
        .subquery("means")
    )

    def std(column: str, mean: object) -> object:
        squares = func.sum((per_run.c[column] - mean) * (per_run.c[column] - mean))
        return case((means.c.n > 1, func.sqrt(squares / (means.c.n - 1))), else_=None)

    return (
        select(
            means.c.submission_id,
            means.c.mean_task.label(f"{PER_TASK}_mean"),
            std(PER_TASK, means.c.mean_task).label(f"{PER_TASK}_std"),  # type: ignore[attr-defined]
            means.c.mean_metric.label(f"{PER_METRIC}_mean"),
            std(PER_METRIC, means.c.mean_metric).label(f"{PER_METRIC}_std"),  # type: ignore[attr-defined]
            means.c.n.label("runs"),
            means.c.baseline_submission_id,
        )
        .join(per_run, per_run.c.submission_id == means.c.submission_id)
        .group_by(
            means.c.submission_id,
            means.c.mean_task,
            means.c.mean_metric,
            means.c.n,
            means.c.baseline_submission_id,
        )
    )


__all__ = [
    "CONVENTIONS",
    "PER_METRIC",
    "PER_TASK",
    "DeltaM",
    "baseline_values",
    "delta_m",
    "original_campaigns",
    "relative_deltas",
    "run_delta_m",
    "submission_delta_m",
]
