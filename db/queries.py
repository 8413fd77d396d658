"""Read-only queries for the leaderboard site.  Typed rows out (dataclasses); no pandas here.

A ranking has two kinds of row, told apart by their `source`: a submission's
(`RankingRow`, trained and evaluated by the platform) and a paper's
(`ReportedRow`, `db.reported`).  A run's Δm is a `RunDelta`, a job a `JobRow`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, NamedTuple, TypeVar

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from db import reported
from db.delta_m import (
    PER_METRIC,
    PER_TASK,
    in_original_campaign,
    original_campaigns,
    relative_deltas,
    run_delta_m,
)
from db.models import (
    Baseline,
    Campaign,
    CurveValue,
    Job,
    JobState,
    MetricValue,
    Role,
    Run,
    Submission,
    Tuning,
)
from db.reruns import reproduced

PENDING_STATES = (JobState.QUEUED, JobState.RUNNING)
FAILED_STATES = (JobState.FAILED, JobState.DIVERGED)

# The source of a ranking row: trained here, or reported in a paper.
PLATFORM: Literal["platform"] = "platform"
REPORTED: Literal["reported"] = "reported"

T = TypeVar("T")
MetricKey = tuple[str, str]  # (task, metric)


def by_convention(convention: str, per_task: T, per_metric: T) -> T:
    """The value of a Δm convention (`db.delta_m.PER_TASK` or `PER_METRIC`).

    >>> by_convention("per_metric", 1.0, -2.0)
    -2.0
    >>> by_convention("per_seed", 1.0, -2.0)
    Traceback (most recent call last):
    ValueError: unknown Δm convention 'per_seed'; expected 'per_task' or 'per_metric'
    """
    if convention == PER_TASK:
        return per_task
    if convention == PER_METRIC:
        return per_metric
    raise ValueError(
        f"unknown Δm convention {convention!r}; expected {PER_TASK!r} or {PER_METRIC!r}"
    )


@dataclass(frozen=True)
class MetricColumn:
    """A (task, metric) of a benchmark version, with its direction; position 0 is the headline."""

    task: str
    metric: str
    higher_is_better: bool
    position: int


class RunDelta(NamedTuple):
    """Δm of one run (seed) in both conventions, against `baseline_submission_id`'s runs.

    A NamedTuple, not a dataclass: a ranking holds one per run (10,000 and
    more) and the site's cache unpickles them on every page run.  Unpickling
    10,000 objects of 8 fields (pickle protocol 4, as Streamlit's cache): a
    NamedTuple 9.6 ms, a dict 8.1 ms, a frozen dataclass 24.7 ms (best of 7).
    """

    run_id: int
    submission_id: int
    campaign_id: int
    seed: int
    finished_at: datetime | None
    per_task: float | None
    per_metric: float | None
    baseline_submission_id: int | None

    def value(self, convention: str) -> float | None:
        return by_convention(convention, self.per_task, self.per_metric)


@dataclass(frozen=True)
class RankingRow:
    """A submission of a benchmark version, as the ranking shows it (`ranking_results`).

    Δm statistics are over the runs of its original campaign (`run_deltas`):
    the mean and sample standard deviation per convention (std None for one
    run, both None without a trained baseline).  The latest rerun campaign
    (`rerun_*`) is shown beside it and judged against it (`*_reproduced`:
    `db.reruns.reproduced`, None when not judged).  Costs are means over the
    runs, the GPU memory the largest.  `pending_jobs` and `failed_jobs` come
    from `with_jobs`.
    """

    id: int
    name: str
    description: str
    authors: tuple[str, ...]
    architecture: str
    backbone: str
    weighting: str
    optimizer: str
    role: Role
    spec_hash: str
    benchmark: str
    protocol_version: int
    submitted_at: datetime | None
    seeds: int
    parameters: float | None
    flops: float | None
    wall_time_s: float | None
    peak_gpu_memory_bytes: int | None
    device: str | None
    last_result: datetime | None
    metrics: dict[MetricKey, float]
    run_deltas: tuple[RunDelta, ...]
    original_campaign_id: int | None
    baseline_submission_id: int | None
    per_task_mean: float | None
    per_task_std: float | None
    per_metric_mean: float | None
    per_metric_std: float | None
    rerun_campaign: str | None
    rerun_seeds: int
    rerun_per_task_mean: float | None
    rerun_per_metric_mean: float | None
    per_task_reproduced: bool | None
    per_metric_reproduced: bool | None
    tuned_values: dict[str, Any] | None  # what equal-budget tuning chose; None if untuned
    pending_jobs: int = 0
    failed_jobs: int = 0
    source: Literal["platform"] = PLATFORM

    def mean(self, convention: str) -> float | None:
        return by_convention(convention, self.per_task_mean, self.per_metric_mean)

    def std(self, convention: str) -> float | None:
        return by_convention(convention, self.per_task_std, self.per_metric_std)

    def rerun_mean(self, convention: str) -> float | None:
        return by_convention(convention, self.rerun_per_task_mean, self.rerun_per_metric_mean)

    def reproduced(self, convention: str) -> bool | None:
        return by_convention(convention, self.per_task_reproduced, self.per_metric_reproduced)


@dataclass(frozen=True)
class ReportedRow:
    """A result reported in a paper (`db.reported`): one value per metric, no seeds.

    Its Δm (`per_task`, `per_metric`; None with the reason in `delta_m_note`)
    is against the reported baseline of its backbone, never against runs.
    It is shown in the ranking, unranked, under the key `id`.
    """

    reported_id: int
    name: str
    architecture: str
    weighting: str
    backbone: str
    role: Role
    citation: str
    url: str
    note: str
    metrics: dict[MetricKey, float]
    columns: tuple[MetricColumn, ...]  # the metrics it reports, with their directions
    per_task: float | None
    per_metric: float | None
    delta_m_note: str
    baseline_reported_id: int | None
    baseline_name: str | None
    authors: tuple[str, ...] = ()
    optimizer: str = ""
    source: Literal["reported"] = REPORTED

    @property
    def id(self) -> int:
        """Its key among the ranking's rows: -reported_id, never a submission's id."""
        return -self.reported_id

    @property
    def description(self) -> str:
        return " ".join(part for part in (self.citation, self.note) if part)

    def mean(self, convention: str) -> float | None:
        return by_convention(convention, self.per_task, self.per_metric)


def reported_rows(session: Session, benchmark: str, version: int) -> list[ReportedRow]:
    """The reported results of a benchmark version (`db.reported.reported_results`), typed."""
    return [
        ReportedRow(
            reported_id=r["reported_id"],
            name=r["name"],
            architecture=r["architecture"],
            weighting=r["weighting"],
            backbone=r["backbone"],
            role=Role(r["role"]),
            citation=r["citation"],
            url=r["url"],
            note=r["note"],
            metrics=dict(r["metrics"]),
            columns=tuple(MetricColumn(t, m, bool(h), int(p)) for t, m, h, p in r["columns"]),
            per_task=r[PER_TASK],
            per_metric=r[PER_METRIC],
            delta_m_note=r["delta_m_note"],
            baseline_reported_id=r["baseline_reported_id"],
            baseline_name=r["baseline_name"],
        )
        for r in reported.reported_results(session, benchmark, version)
    ]


class JobRow(NamedTuple):
    """A job on the queue (`jobs`), with its submission's name and benchmark.

    `error` is the full text a failed job recorded (a traceback included).  A
    NamedTuple for the reason `RunDelta` is one: the queue page unpickles every job.
    """

    id: int
    submission_id: int
    name: str
    benchmark: str
    campaign: str
    seed: int
    state: JobState
    attempts: int
    error: str | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


class DataVersion(NamedTuple):
    """A cheap fingerprint of what the site shows, in two parts that change at different rates.

    `results`: counts and maximum ids of submissions and runs, the
    designated baselines and reported results (`db.reported.fingerprint`): it
    moves when a submission is stored, a result lands, a baseline changes or
    reported results are imported.  `jobs`: the maximum job id and the number of
    jobs per state: it moves whenever a job is queued, claimed or finished.
    The site reads it on every page run, uncached, and keys each cached query
    on the part it depends on, so new results show at once and the costly
    queries rerun only when results change.
    """

    results: tuple[Any, ...]
    jobs: tuple[Any, ...]


def data_version(session: Session) -> DataVersion:
    """The current `DataVersion`: four small queries."""
    counts = session.execute(
        select(
            select(func.count(Submission.id)).scalar_subquery(),
            select(func.max(Submission.id)).scalar_subquery(),
            select(func.count(Run.id)).scalar_subquery(),
            select(func.max(Run.id)).scalar_subquery(),
        )
    ).one()
    baselines = session.execute(
        select(
            Baseline.benchmark, Baseline.protocol_version, Baseline.backbone, Baseline.submission_id
        ).order_by(Baseline.benchmark, Baseline.protocol_version, Baseline.backbone)
    ).all()
    states = session.execute(
        select(Job.state, func.count()).group_by(Job.state).order_by(Job.state)
    ).all()
    last_job = session.scalar(select(func.max(Job.id)))
    return DataVersion(
        results=(tuple(counts), tuple(tuple(b) for b in baselines), reported.fingerprint(session)),
        jobs=(last_job, tuple((str(state), n) for state, n in states)),
    )


def benchmark_versions(session: Session) -> list[tuple[str, int]]:
    """(benchmark, version) pairs with submissions, then those with reported results only.

    Each group by benchmark name, newest version first.

    A version that only reruns use (`mtlb rerun --protocol-version`) counts too.
    """
    own = select(Submission.benchmark, Submission.protocol_version)
    reruns = (
        select(Submission.benchmark, Job.protocol_version)
        .join(Job, Job.submission_id == Submission.id)
        .where(Job.protocol_version.is_not(None))
    )
    pairs = {(b, int(v)) for b, v in session.execute(own.union(reruns))}
    # Paper results alone show a version too, after those with submissions: the
    # site opens on the first, which should be one with runs to rank.
    papers_only = reported.benchmark_versions(session) - pairs
    return [
        *sorted(pairs, key=lambda pair: (pair[0], -pair[1])),
        *sorted(papers_only, key=lambda pair: (pair[0], -pair[1])),
    ]


def versions_with_runs(session: Session) -> set[tuple[str, int]]:
    """(benchmark, version) pairs with at least one run."""
    rows = session.execute(select(Run.benchmark, Run.protocol_version).distinct())
    return {(b, int(v)) for b, v in rows}


def job_version() -> Any:
    """A job's protocol version as SQL: its own, else (rows before the column) its submission's."""
    return func.coalesce(Job.protocol_version, Submission.protocol_version)


def in_version(benchmark: str, version: int) -> Any:
    """Submissions shown under a benchmark version: its own, and those rerun under it."""
    rerun = select(Job.submission_id).where(Job.protocol_version == version)
    return and_(
        Submission.benchmark == benchmark,
        or_(Submission.protocol_version == version, Submission.id.in_(rerun)),
    )


def original_runs(benchmark: str, version: int) -> Select[int]:
    """Ids of the runs of a benchmark version in each submission's original campaign.

    The original campaign (`db.delta_m.original_campaigns`) is the first with
    runs of the submission under this version; the ranking is computed from
    its runs, and reruns are shown beside it, never mixed in.
    """
    original = (
        original_campaigns()
        .where(Run.benchmark == benchmark, Run.protocol_version == version)
        .subquery("original")
    )
    return (
        select(Run.id)
        .join(Job, Job.id == Run.job_id)
        .join(original, in_original_campaign(original))
        .where(Run.benchmark == benchmark, Run.protocol_version == version)
    )


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


def ranking(session: Session, benchmark: str, version: int) -> list[RankingRow]:
    """`ranking_results` with each submission's jobs pending and failed (`job_summary`)."""
    return with_jobs(
        ranking_results(session, benchmark, version), job_summary(session, benchmark, version)
    )


def ranking_results(session: Session, benchmark: str, version: int) -> list[RankingRow]:
    """One `RankingRow` per submission of a benchmark version, by id.

    Δm per run comes from the SQL of `db.delta_m` (`run_deltas`, one pass over
    the metric values); its mean and sample standard deviation over runs are
    taken here (`mean_std`), and the runs' values kept in `run_deltas` for
    confidence intervals and pairing.

    Everything is computed from the runs of each submission's original
    campaign (`original_runs`).  The latest other campaign with Δm is the
    rerun shown beside it, judged by `db.reruns.reproduced`.
    """
    runs = (
        select(
            Run.submission_id,
            func.count(Run.id).label("seeds"),
            func.avg(Run.parameter_count).label("parameters"),
            func.avg(Run.flops).label("flops"),
            func.avg(Run.wall_time_s).label("wall_time_s"),
            # The most any run held: what a job of the submission needs of a GPU.
            func.max(Run.peak_gpu_memory_bytes).label("peak_gpu_memory_bytes"),
            func.max(Run.device).label("device"),
            func.max(Run.finished_at).label("last_result"),
        )
        .where(Run.id.in_(original_runs(benchmark, version)))
        .group_by(Run.submission_id)
        .subquery("runs")
    )
    identity = (
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
        Submission.benchmark,
        Submission.protocol_version,
        Submission.submitted_at,
    )
    costs = (
        runs.c.parameters,
        runs.c.flops,
        runs.c.wall_time_s,
        runs.c.peak_gpu_memory_bytes,
        runs.c.device,
        runs.c.last_result,
    )
    submissions = session.execute(
        select(*identity, func.coalesce(runs.c.seeds, 0), *costs)
        .outerjoin(runs, runs.c.submission_id == Submission.id)
        .where(in_version(benchmark, version))
        .order_by(Submission.id)
    ).all()
    means = metric_means(session, benchmark, version)
    originals = _original_campaign_ids(session, benchmark, version)
    per_run: dict[int, dict[int, list[RunDelta]]] = {}
    for delta in run_deltas(session, benchmark, version):
        campaigns = per_run.setdefault(delta.submission_id, {})
        campaigns.setdefault(delta.campaign_id, []).append(delta)
    names = dict(session.execute(select(Campaign.id, Campaign.name)).all()) if per_run else {}
    ids = [row[0] for row in submissions]
    # Tuned entries (`runners.tuning`): the values their seeds trained with; None if untuned.
    tuned: dict[int, dict[str, Any]] = dict(
        session.execute(
            select(Tuning.submission_id, Tuning.chosen).where(Tuning.submission_id.in_(ids))
        ).all()
    )
    out = []
    for (sid, name, description, authors, architecture, backbone, weighting, optimizer, role,
         spec_hash, bench, protocol_version, submitted_at, seeds, parameters, flops, wall_time,
         memory, device, last) in submissions:  # fmt: skip
        original = originals.get(sid)
        by_campaign = per_run.get(sid, {})
        deltas = by_campaign.get(original, []) if original is not None else []
        reruns = sorted(c for c in by_campaign if c != original)
        latest = by_campaign[reruns[-1]] if reruns else []
        stats = {c: mean_std(_values(deltas, c)) for c in (PER_TASK, PER_METRIC)}
        judged = {
            c: reproduced(_values(deltas, c), _values(latest, c)) for c in (PER_TASK, PER_METRIC)
        }
        out.append(
            RankingRow(
                id=sid,
                name=name,
                description=description,
                authors=tuple(authors or ()),
                architecture=architecture,
                backbone=backbone,
                weighting=weighting,
                optimizer=optimizer,
                role=role,
                spec_hash=spec_hash,
                benchmark=bench,
                protocol_version=protocol_version,
                submitted_at=submitted_at,
                seeds=int(seeds),
                parameters=None if parameters is None else float(parameters),
                flops=None if flops is None else float(flops),
                wall_time_s=None if wall_time is None else float(wall_time),
                peak_gpu_memory_bytes=None if memory is None else int(memory),
                device=device,
                last_result=last,
                metrics=means.get(sid, {}),
                run_deltas=tuple(deltas),
                original_campaign_id=original,
                baseline_submission_id=max(
                    (b for d in deltas if (b := d.baseline_submission_id) is not None),
                    default=None,
                ),
                per_task_mean=stats[PER_TASK][0],
                per_task_std=stats[PER_TASK][1],
                per_metric_mean=stats[PER_METRIC][0],
                per_metric_std=stats[PER_METRIC][1],
                rerun_campaign=names.get(reruns[-1]) if reruns else None,
                rerun_seeds=len(latest),
                rerun_per_task_mean=mean_std(_values(latest, PER_TASK))[0],
                rerun_per_metric_mean=mean_std(_values(latest, PER_METRIC))[0],
                per_task_reproduced=judged[PER_TASK],
                per_metric_reproduced=judged[PER_METRIC],
                tuned_values=tuned.get(sid),
            )
        )
    return out


def _values(deltas: Sequence[RunDelta], convention: str) -> list[float]:
    return [v for d in deltas if (v := d.value(convention)) is not None]


def _original_campaign_ids(session: Session, benchmark: str, version: int) -> dict[int, int]:
    """{submission id: its original campaign's id} under a benchmark version."""
    query = original_campaigns().where(Run.benchmark == benchmark, Run.protocol_version == version)
    return {sid: campaign_id for sid, _, campaign_id in session.execute(query)}


def job_summary(session: Session, benchmark: str, version: int) -> dict[int, tuple[int, int]]:
    """{submission id: (jobs queued or running, jobs failed or diverged)} of a benchmark version."""
    rows = session.execute(
        select(
            Job.submission_id,
            func.sum(case((Job.state.in_(PENDING_STATES), 1), else_=0)),
            func.sum(case((Job.state.in_(FAILED_STATES), 1), else_=0)),
        )
        .join(Submission, Submission.id == Job.submission_id)
        .where(Submission.benchmark == benchmark, job_version() == version)
        .group_by(Job.submission_id)
    )
    return {sid: (int(pending or 0), int(failed or 0)) for sid, pending, failed in rows}


def with_jobs(rows: Sequence[RankingRow], summary: dict[int, tuple[int, int]]) -> list[RankingRow]:
    """`ranking_results` rows with `pending_jobs` and `failed_jobs` from a `job_summary`."""
    out = []
    for row in rows:
        pending, failed = summary.get(row.id, (0, 0))
        out.append(replace(row, pending_jobs=pending, failed_jobs=failed))
    return out


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); None for no values, std None for one.

    >>> mean_std([1.0, 2.0, 6.0])
    (3.0, 2.6457513110645907)
    >>> mean_std([2.0]), mean_std([])
    ((2.0, None), (None, None))
    """
    if not values:
        return None, None
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    # Two-pass, like db.delta_m's SQL (statistics.stdev is exact but 10x slower).
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def metric_means(
    session: Session, benchmark: str, version: int
) -> dict[int, dict[tuple[str, str], float]]:
    """{submission id: {(task, metric): mean over its original campaign's runs}}."""
    rows = session.execute(
        select(Run.submission_id, MetricValue.task, MetricValue.metric, func.avg(MetricValue.value))
        .join(MetricValue, MetricValue.run_id == Run.id)
        .where(Run.id.in_(original_runs(benchmark, version)))
        .group_by(Run.submission_id, MetricValue.task, MetricValue.metric)
    )
    out: dict[int, dict[tuple[str, str], float]] = {}
    for sid, task, metric, value in rows:
        out.setdefault(sid, {})[(task, metric)] = float(value)
    return out


def task_deltas(
    session: Session, benchmark: str, version: int, submission_ids: Sequence[int] | None = None
) -> list[tuple[int, str, float]]:
    """(submission id, task, mean relative gain x100): each task's part of Δm (per task).

    Over each submission's original campaign (`original_runs`).  `submission_ids`
    limits the rows (and the work: the filter reaches the metric values).
    """
    d = relative_deltas().subquery("d")
    query = (
        select(d.c.submission_id, d.c.task, (100.0 * func.avg(d.c.d)).label("delta"))
        .where(d.c.run_id.in_(original_runs(benchmark, version)))
        .group_by(d.c.submission_id, d.c.task)
        .order_by(d.c.submission_id, d.c.task)
    )
    if submission_ids is not None:
        query = query.where(d.c.submission_id.in_(list(submission_ids)))
    return [(sid, task, float(value)) for sid, task, value in session.execute(query)]


def run_deltas(
    session: Session, benchmark: str, version: int, submission_id: int | None = None
) -> list[RunDelta]:
    """Δm of every run (seed) of a benchmark version, or of one submission, in both conventions.

    By submission, then seed.  Every
    campaign's runs (reruns included; `ranking_results` separates them).  Runs
    without a trained baseline have no row.
    """
    per_run = run_delta_m().subquery("per_run")
    query = (
        select(
            Run.id.label("run_id"),
            Run.submission_id,
            Job.campaign_id,
            Run.seed,
            Run.finished_at,
            per_run.c[PER_TASK],
            per_run.c[PER_METRIC],
            per_run.c.baseline_submission_id,
        )
        .join(per_run, per_run.c.run_id == Run.id)
        .join(Job, Job.id == Run.job_id)
        .where(Run.benchmark == benchmark, Run.protocol_version == version)
        .order_by(Run.submission_id, Run.seed, Run.id)
    )
    if submission_id is not None:
        query = query.where(Run.submission_id == submission_id)
    return [
        RunDelta(
            run_id=run_id,
            submission_id=sid,
            campaign_id=campaign_id,
            seed=seed,
            finished_at=finished_at,
            per_task=None if per_task is None else float(per_task),
            per_metric=None if per_metric is None else float(per_metric),
            baseline_submission_id=baseline,
        )
        for run_id, sid, campaign_id, seed, finished_at, per_task, per_metric, baseline in (
            session.execute(query)
        )
    ]


@dataclass(frozen=True)
class SeedResult:
    """One seed of a submission's original campaign: Δm in both conventions and every metric.

    Seeds are common random numbers, so the results of two submissions at the
    same seed are paired (`leaderboard.paired`).  Δm is None without a
    trained baseline.
    """

    submission_id: int
    seed: int
    run_id: int
    per_task: float | None
    per_metric: float | None
    metrics: dict[tuple[str, str], float]


def seed_results(
    session: Session, benchmark: str, version: int, submission_ids: Sequence[int] | None = None
) -> list[SeedResult]:
    """Every seed of each submission's original campaign (`original_runs`), by submission, seed.

    Δm per run from `db.delta_m.run_delta_m` (as `run_deltas`), metrics from
    the metric values.  A campaign has one job per (submission, seed), so a
    seed appears once per submission.  `submission_ids` limits the rows.
    """
    per_run = run_delta_m().subquery("per_run")
    runs = (
        select(Run.id, Run.submission_id, Run.seed, per_run.c[PER_TASK], per_run.c[PER_METRIC])
        .outerjoin(per_run, per_run.c.run_id == Run.id)
        .where(Run.id.in_(original_runs(benchmark, version)))
        .order_by(Run.submission_id, Run.seed, Run.id)
    )
    values = (
        select(MetricValue.run_id, MetricValue.task, MetricValue.metric, MetricValue.value)
        .join(Run, Run.id == MetricValue.run_id)
        .where(Run.id.in_(original_runs(benchmark, version)))
    )
    if submission_ids is not None:
        runs = runs.where(Run.submission_id.in_(list(submission_ids)))
        values = values.where(Run.submission_id.in_(list(submission_ids)))
    metrics: dict[int, dict[tuple[str, str], float]] = {}
    for run_id, task, metric, value in session.execute(values):
        metrics.setdefault(run_id, {})[(task, metric)] = float(value)
    return [
        SeedResult(
            submission_id=sid,
            seed=seed,
            run_id=run_id,
            per_task=None if per_task is None else float(per_task),
            per_metric=None if per_metric is None else float(per_metric),
            metrics=metrics.get(run_id, {}),
        )
        for run_id, sid, seed, per_task, per_metric in session.execute(runs)
    ]


@dataclass(frozen=True)
class RunRow:
    """A run of a submission: its seed, campaign, metrics, cost and provenance."""

    id: int
    job_id: int
    seed: int
    campaign_id: int
    campaign: str
    campaign_reason: str
    metrics: dict[MetricKey, float]
    parameter_count: int | None
    flops: int | None
    wall_time_s: float | None
    peak_gpu_memory_bytes: int | None
    device: str | None
    code_version: str | None
    protocol_version: int
    torch_version: str | None
    ray_version: str | None
    python_version: str | None
    spec_hash: str
    finished_at: datetime | None


def submission_runs(
    session: Session, submission_id: int, version: int | None = None
) -> list[RunRow]:
    """Every run of a submission (under one protocol version) with its provenance and metrics."""
    query = (
        select(Run, Campaign)
        .join(Job, Job.id == Run.job_id)
        .join(Campaign, Campaign.id == Job.campaign_id)
        .where(Run.submission_id == submission_id)
        .order_by(Run.seed, Run.id)
    )
    if version is not None:
        query = query.where(Run.protocol_version == version)
    return [
        RunRow(
            id=run.id,
            job_id=run.job_id,
            seed=run.seed,
            campaign_id=campaign.id,
            campaign=campaign.name,
            campaign_reason=campaign.reason,
            metrics={(m.task, m.metric): m.value for m in run.metric_values},
            parameter_count=run.parameter_count,
            flops=run.flops,
            wall_time_s=run.wall_time_s,
            peak_gpu_memory_bytes=run.peak_gpu_memory_bytes,
            device=run.device,
            code_version=run.code_version,
            protocol_version=run.protocol_version,
            torch_version=run.torch_version,
            ray_version=run.ray_version,
            python_version=run.python_version,
            spec_hash=run.spec_hash,
            finished_at=run.finished_at,
        )
        for run, campaign in session.execute(query)
    ]


def curves(session: Session, submission_id: int) -> list[tuple[int, int, str, str, float]]:
    """(seed, epoch, task, name, value) of every run of a submission."""
    rows = session.execute(
        select(Run.seed, CurveValue.epoch, CurveValue.task, CurveValue.name, CurveValue.value)
        .join(Run, Run.id == CurveValue.run_id)
        .where(Run.submission_id == submission_id)
        .order_by(Run.seed, CurveValue.epoch)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def jobs(session: Session, submission_id: int | None = None) -> list[JobRow]:
    """The queue: every job (or a submission's) with its submission, state and error."""
    query = (
        select(
            Job.id,
            Job.submission_id,
            Submission.name,
            Submission.benchmark,
            Campaign.name.label("campaign"),
            Job.seed,
            Job.state,
            Job.attempts,
            Job.error,
            Job.created_at,
            Job.started_at,
            Job.finished_at,
        )
        .join(Submission, Submission.id == Job.submission_id)
        .join(Campaign, Campaign.id == Job.campaign_id)
        .order_by(Job.id)
    )
    if submission_id is not None:
        query = query.where(Job.submission_id == submission_id)
    return [JobRow(**row) for row in session.execute(query).mappings()]


def submission_index(session: Session) -> list[tuple[int, str, str, int]]:
    """(id, name, benchmark, protocol version) of every submission, by id."""
    rows = session.execute(
        select(
            Submission.id, Submission.name, Submission.benchmark, Submission.protocol_version
        ).order_by(Submission.id)
    )
    return [(i, n, b, v) for i, n, b, v in rows]


def submission(session: Session, submission_id: int) -> Submission | None:
    return session.get(Submission, submission_id)


@dataclass(frozen=True)
class StoredSpec:
    """A submission's normalised spec (defaults written out) and its file as submitted."""

    spec: dict[str, Any]
    source: str


def stored_spec(session: Session, submission_id: int) -> StoredSpec | None:
    found = session.get(Submission, submission_id)
    return None if found is None else StoredSpec(dict(found.spec), found.source)
