"""SQLAlchemy models: submissions, campaigns, jobs, runs, metric values, curves.

Vocabulary of docs/design.md: a submission is a stored spec; a job is one
(submission, seed, campaign) to execute; a run is a job's outcome with its
provenance.  This package imports nothing else of ours.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON}


class Role(enum.StrEnum):
    METHOD = "method"
    BASELINE = "baseline"
    # A point of a benchmark's scalarisation front (`submissions.front`): ranked apart.
    FRONT = "front"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"


FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.DIVERGED, JobState.CANCELLED)


class Submission(Base):
    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The training set-up alone (`submissions.spec.setup_hash`: the spec without name,
    # description and authors): a second spec with one set-up is not stored or trained again.
    # Not unique: set-ups stored before the column may repeat.  Set just after the insert.
    setup_hash: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(default=list)
    benchmark: Mapped[str] = mapped_column(String(100))
    protocol_version: Mapped[int] = mapped_column(Integer)
    architecture: Mapped[str] = mapped_column(String(100))
    backbone: Mapped[str] = mapped_column(String(100))
    weighting: Mapped[str] = mapped_column(String(100))
    optimizer: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    # The normalised spec (defaults written out): what the worker trains.
    spec: Mapped[dict[str, Any]] = mapped_column()
    # The file as submitted, for the site's "raw" view.
    source: Mapped[str] = mapped_column(Text, default="")
    # Who submitted it (`mtlb submit --submitter`); per-submitter quotas count these.
    submitter: Mapped[str] = mapped_column(String(200), default="", server_default="", index=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    jobs: Mapped[list[Job]] = relationship(back_populates="submission")


class Baseline(Base):
    """Which submission is the single-task baseline of a (benchmark, version, backbone).

    Explicit, never inferred: Δm is meaningless without knowing its baseline.
    """

    __tablename__ = "baselines"

    benchmark: Mapped[str] = mapped_column(String(100), primary_key=True)
    protocol_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    backbone: Mapped[str] = mapped_column(String(100), primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("submission_id", "seed", "campaign_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    seed: Mapped[int] = mapped_column(Integer)
    # The protocol version the job trains under: the submission's, or a rerun's
    # (`mtlb rerun --protocol-version`).  NULL (jobs queued before the column
    # existed) means the submission's version.
    protocol_version: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, native_enum=False, length=20), default=JobState.QUEUED, index=True
    )
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # The lease of a running job: which dispatcher holds it ("host:pid:random") and
    # until when.  The holder renews it while the job runs; once it has expired
    # (the dispatcher died), any dispatcher may put the job back in the queue.
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    submission: Mapped[Submission] = relationship(back_populates="jobs")
    campaign: Mapped[Campaign] = relationship()


class Run(Base):
    """The outcome of a succeeded job, with its provenance.  One per job, at most."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    spec_hash: Mapped[str] = mapped_column(String(64))
    benchmark: Mapped[str] = mapped_column(String(100))
    protocol_version: Mapped[int] = mapped_column(Integer)
    backbone: Mapped[str] = mapped_column(String(100))
    code_version: Mapped[str] = mapped_column(String(100))
    torch_version: Mapped[str] = mapped_column(String(50))
    ray_version: Mapped[str] = mapped_column(String(50))
    python_version: Mapped[str] = mapped_column(String(50))
    device: Mapped[str] = mapped_column(String(200))
    wall_time_s: Mapped[float] = mapped_column(Float)
    parameter_count: Mapped[int] = mapped_column(Integer)
    # Forward FLOPs of one input image (torch's FlopCounterMode: a multiply-add is 2 FLOPs);
    # NULL for runs recorded before it was measured.
    flops: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # {parameter path: value} of the submission's tuning that this run trained with
    # (`tunings.chosen`); NULL for a run of a spec without a search space.
    tuned_values: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The epoch whose checkpoint the job's last attempt resumed from (an earlier attempt's
    # node died); NULL: trained in one go.  The metrics are the same either way.
    resumed_from_epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    # The most GPU memory the job held allocated at once, in bytes
    # (torch.cuda.max_memory_allocated); NULL for a CPU run or one recorded before.
    peak_gpu_memory_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    metric_values: Mapped[list[MetricValue]] = relationship(back_populates="run")


class MetricValue(Base):
    __tablename__ = "metric_values"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    task: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    # Order of the metric within its task; 0 is the task's headline metric.
    position: Mapped[int] = mapped_column(Integer, default=0)

    run: Mapped[Run] = relationship(back_populates="metric_values")


class CurveValue(Base):
    """Per-epoch training curves: mean loss and mean task weight of each task."""

    __tablename__ = "curves"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class Tuning(Base):
    """The equal-budget tuning of a submission with a search space (`runners.tuning`).

    One per submission (a unique constraint: concurrent dispatchers agree on the
    first one stored); its seed jobs train with `chosen`.
    """

    __tablename__ = "tunings"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), unique=True)
    # {parameter path: value}, e.g. {"optimizer.lr": 0.003}.
    chosen: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{values, state, objective, metrics, error}] in the order Tune created them; the
    # first is the spec's own values.
    trials: Mapped[list[Any]] = mapped_column(JSON)
    trial_budget: Mapped[int] = mapped_column(Integer)
    validation_size: Mapped[int] = mapped_column(Integer)
    objective: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ReportedResult(Base):
    """Results reported in a paper (`mtlb reported import`): one value per metric and a citation.

    Not trained by the platform: no runs, no seeds, no confidence interval.
    Shown next to the platform's runs of the same architecture, weighting and
    backbone, marked "reported"; its Δm is taken against the reported baseline
    (`ReportedBaseline`) of the same benchmark, version and backbone, never
    against runs.
    """

    __tablename__ = "reported_results"
    __table_args__ = (UniqueConstraint("benchmark", "protocol_version", "name", "citation"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    benchmark: Mapped[str] = mapped_column(String(100))
    protocol_version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(100))
    weighting: Mapped[str] = mapped_column(String(100))
    backbone: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    citation: Mapped[str] = mapped_column(String(1000))
    url: Mapped[str] = mapped_column(String(1000), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    # The file it was imported from (its name), and when it last changed.
    source_file: Mapped[str] = mapped_column(String(300), default="")
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    metric_values: Mapped[list[ReportedMetricValue]] = relationship(
        back_populates="reported", cascade="all, delete-orphan"
    )


class ReportedMetricValue(Base):
    """One metric value of a reported result, in the units of `runners.metrics`."""

    __tablename__ = "reported_metric_values"

    reported_id: Mapped[int] = mapped_column(ForeignKey("reported_results.id"), primary_key=True)
    task: Mapped[str] = mapped_column(String(100), primary_key=True)
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    higher_is_better: Mapped[bool] = mapped_column(Boolean)
    # Order of the metric within its task; 0 is the task's headline metric.
    position: Mapped[int] = mapped_column(Integer, default=0)

    reported: Mapped[ReportedResult] = relationship(back_populates="metric_values")


class ReportedBaseline(Base):
    """Which reported result is the baseline of reported Δm for a (benchmark, version, backbone).

    Explicit, like `Baseline` for runs: a reported Δm names the paper values it
    was measured against.
    """

    __tablename__ = "reported_baselines"

    benchmark: Mapped[str] = mapped_column(String(100), primary_key=True)
    protocol_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    backbone: Mapped[str] = mapped_column(String(100), primary_key=True)
    reported_id: Mapped[int] = mapped_column(ForeignKey("reported_results.id"))


Index("ix_metric_values_task_metric", MetricValue.task, MetricValue.metric)


class SubmitterToken(Base):
    """An identity the operator issued (`mtlb token create`): submits over the web page or API.

    The token itself is shown once and never stored: `lookup` (its public
    prefix) finds the row, and `token_hash` is SHA-256 over `salt` and its
    secret part (see `submissions.tokens`).  Revoked tokens stay, so that
    their submissions keep naming who sent them.
    """

    __tablename__ = "submitter_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The submitter name its submissions carry (`submissions.submitter`).
    name: Mapped[str] = mapped_column(String(100), unique=True)
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    # New submissions per 24 hours; NULL: the operator's $MTLB_SUBMISSIONS_PER_DAY.
    quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TokenSubmission(Base):
    """A submission a token stored (new ones only): what its per-day quota counts."""

    __tablename__ = "token_submissions"

    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("submitter_tokens.id"), index=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
