"""Queue operations: store submissions, queue jobs, claim them, record outcomes.

Every function works inside the caller's session; the caller's transaction
decides what lands together, so a failure never leaves half-written rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

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
    utcnow,
)

INITIAL_CAMPAIGN = "initial"


def store_submission(
    session: Session,
    *,
    spec: Mapping[str, Any],
    spec_hash: str,
    source: str,
    role: Role,
    submitter: str = "",
) -> tuple[Submission, bool]:
    """Store a normalised spec; return (submission, created).

    An identical spec (same hash) returns the stored submission, created=False
    (with its first submitter).
    """
    existing = session.scalar(select(Submission).where(Submission.spec_hash == spec_hash))
    if existing is not None:
        return existing, False
    architecture = spec["architecture"]
    # A backbone at its defaults is normalised to its name, else to {name, ...parameters}.
    backbone = architecture["backbone"]
    submission = Submission(
        spec_hash=spec_hash,
        name=spec["name"],
        description=spec.get("description", ""),
        authors=list(spec.get("authors", [])),
        benchmark=spec["benchmark"],
        protocol_version=spec["protocol_version"],
        architecture=architecture["name"],
        backbone=backbone if isinstance(backbone, str) else backbone["name"],
        weighting=spec["weighting"]["name"],
        optimizer=spec["optimizer"]["name"],
        role=role,
        spec=dict(spec),
        source=source,
        submitter=submitter,
    )
    session.add(submission)
    session.flush()
    return submission, True


def submissions_since(session: Session, submitter: str, since: datetime) -> int:
    """How many submissions `submitter` has stored since `since` (this transaction's included)."""
    count = session.scalar(
        select(func.count())
        .select_from(Submission)
        .where(Submission.submitter == submitter, Submission.submitted_at >= since)
    )
    return int(count or 0)


def campaign(session: Session, name: str = INITIAL_CAMPAIGN, reason: str = "") -> Campaign:
    """The campaign called `name`, created if missing."""
    found = session.scalar(select(Campaign).where(Campaign.name == name))
    if found is None:
        found = Campaign(name=name, reason=reason or "first evaluation of new submissions")
        session.add(found)
        session.flush()
    return found


def queue_jobs(
    session: Session,
    submission: Submission,
    seeds: Iterable[int],
    in_campaign: Campaign,
    protocol_version: int | None = None,
) -> list[Job]:
    """One job per seed not already queued for this submission in this campaign.

    Each job trains under `protocol_version`, by default the submission's own.
    """
    have = set(
        session.scalars(
            select(Job.seed).where(
                Job.submission_id == submission.id, Job.campaign_id == in_campaign.id
            )
        )
    )
    version = submission.protocol_version if protocol_version is None else protocol_version
    jobs = [
        Job(
            submission_id=submission.id,
            campaign_id=in_campaign.id,
            seed=seed,
            protocol_version=version,
        )
        for seed in seeds
        if seed not in have
    ]
    session.add_all(jobs)
    session.flush()
    return jobs


def designate_baseline(session: Session, submission: Submission) -> None:
    """Make `submission` the baseline of its (benchmark, version, backbone)."""
    key = (submission.benchmark, submission.protocol_version, submission.backbone)
    row = session.get(Baseline, key)
    if row is None:
        session.add(
            Baseline(
                benchmark=key[0],
                protocol_version=key[1],
                backbone=key[2],
                submission_id=submission.id,
            )
        )
    else:
        row.submission_id = submission.id
    session.flush()


def job_version(job: Job) -> int:
    """The protocol version a job trains under (NULL in old rows: the submission's)."""
    return job.submission.protocol_version if job.protocol_version is None else job.protocol_version


def trained_spec(job: Job) -> dict[str, Any]:
    """What the worker trains: the submission's spec under the job's protocol version."""
    return {**job.submission.spec, "protocol_version": job_version(job)}


# How long a claimed job stays reserved to its dispatcher without renewal.
DEFAULT_LEASE = timedelta(minutes=10)


def claim_jobs(
    session: Session,
    limit: int | None = None,
    *,
    owner: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> list[Job]:
    """Mark up to `limit` queued jobs running (oldest first) under `owner`'s lease; return them.

    The claim is one conditional UPDATE (`... WHERE state = 'queued' RETURNING id`):
    of two dispatchers that chose the same jobs, the second one's UPDATE finds
    them running and claims none of them, on SQLite as on PostgreSQL, and
    `attempts` is incremented in SQL, never lost.  A plain select-then-update
    was not atomic on SQLite, which ignores FOR UPDATE and whose driver opens
    the transaction only at the first UPDATE.  (FOR UPDATE SKIP LOCKED still
    spares PostgreSQL dispatchers from choosing jobs another one is claiming.)
    """
    chosen = select(Job.id).where(Job.state == JobState.QUEUED).order_by(Job.id)
    if limit is not None:
        chosen = chosen.limit(limit)
    ids = list(session.scalars(chosen.with_for_update(skip_locked=True)))
    if not ids:
        return []
    now = utcnow()
    claimed = set(
        session.scalars(
            update(Job)
            .where(Job.id.in_(ids), Job.state == JobState.QUEUED)
            .values(
                state=JobState.RUNNING,
                started_at=now,
                attempts=Job.attempts + 1,
                lease_owner=owner,
                lease_expires_at=now + lease,
            )
            .returning(Job.id),
            execution_options={"synchronize_session": False},
        )
    )
    if not claimed:
        return []
    # populate_existing: this session may hold the jobs as they were before the UPDATE.
    return list(
        session.scalars(
            select(Job)
            .where(Job.id.in_(claimed))
            .order_by(Job.id)
            .execution_options(populate_existing=True)
        )
    )


def renew_leases(
    session: Session, owner: str, job_ids: Iterable[int], lease: timedelta
) -> set[int]:
    """Extend `owner`'s leases of `job_ids` to now + `lease`; return the ids it still holds.

    A job missing from the answer was requeued (its lease had expired) or
    finished: its result will not be recorded by this owner.
    """
    ids = list(job_ids)
    if not ids:
        return set()
    held = Job.id.in_(ids) & (Job.state == JobState.RUNNING) & (Job.lease_owner == owner)
    session.execute(update(Job).where(held).values(lease_expires_at=utcnow() + lease))
    return set(session.scalars(select(Job.id).where(held)))


def requeue_expired(session: Session, now: datetime | None = None) -> int:
    """Put running jobs whose lease expired before `now` (their dispatcher died) back in the queue.

    A running job with no lease at all (claimed before leases existed) counts
    as expired.  Returns how many were requeued.
    """
    now = utcnow() if now is None else now
    result = session.execute(
        update(Job)
        .where(
            Job.state == JobState.RUNNING,
            (Job.lease_expires_at.is_(None)) | (Job.lease_expires_at < now),
        )
        .values(state=JobState.QUEUED, lease_owner=None, lease_expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def release_jobs(session: Session, owner: str | None, job_ids: Iterable[int]) -> int:
    """Put `owner`'s unfinished jobs back in the queue (it was interrupted); return how many."""
    ids = list(job_ids)
    if not ids:
        return 0
    result = session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.state == JobState.RUNNING, _owned_by(owner))
        .values(state=JobState.QUEUED, lease_owner=None, lease_expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def held_job(session: Session, job_id: int, owner: str | None) -> Job | None:
    """The job, locked for update, if it is still running under `owner`'s lease; else None.

    Recording a result goes through this: a late result of a job that was
    requeued (and maybe claimed again elsewhere) is not recorded.
    """
    return session.scalar(
        select(Job)
        .where(Job.id == job_id, Job.state == JobState.RUNNING, _owned_by(owner))
        .with_for_update()
    )


def _owned_by(owner: str | None) -> Any:
    return Job.lease_owner.is_(None) if owner is None else Job.lease_owner == owner


@dataclass(frozen=True)
class Outcome:
    """A successful job's result, as plain data (db knows nothing of runners)."""

    metrics: Mapping[str, Mapping[str, float]]
    # {task: {metric: higher_is_better}}, each task's headline metric first.
    directions: Mapping[str, Mapping[str, bool]]
    curves: Sequence[tuple[int, str, str, float]]  # (epoch, task, name, value)
    provenance: Mapping[str, Any]  # Run columns: code_version, device, wall_time_s, ...


def record_success(session: Session, job: Job, outcome: Outcome) -> Run:
    """Store a job's run, metrics and curves; the job becomes succeeded.

    `runs.job_id` is unique, so a result can land at most once even if two
    dispatchers race.
    """
    if job.state != JobState.RUNNING:
        raise ValueError(f"job {job.id} is {job.state.value}, not running")
    submission = job.submission
    run = Run(
        job_id=job.id,
        submission_id=submission.id,
        seed=job.seed,
        spec_hash=submission.spec_hash,
        benchmark=submission.benchmark,
        protocol_version=job_version(job),
        backbone=submission.backbone,
        **outcome.provenance,
    )
    session.add(run)
    session.flush()
    session.add_all(
        MetricValue(
            run_id=run.id,
            task=task,
            metric=metric,
            value=float(value),
            higher_is_better=outcome.directions[task][metric],
            position=list(outcome.directions[task]).index(metric),
        )
        for task, values in outcome.metrics.items()
        for metric, value in values.items()
    )
    session.add_all(
        CurveValue(run_id=run.id, epoch=epoch, task=task, name=name, value=float(value))
        for epoch, task, name, value in outcome.curves
    )
    job.state = JobState.SUCCEEDED
    job.finished_at = utcnow()
    job.error = None
    job.lease_expires_at = None  # the owner stays: who ran it
    session.flush()
    return run


def record_failure(session: Session, job: Job, state: JobState, error: str) -> None:
    """A job that raised (failed) or whose loss was not finite (diverged)."""
    if state not in (JobState.FAILED, JobState.DIVERGED):
        raise ValueError(f"not a failure state: {state.value}")
    job.state = state
    job.error = error
    job.finished_at = utcnow()
    job.lease_expires_at = None  # the owner stays: who ran it
    session.flush()


def job_counts(session: Session) -> list[tuple[int, str, str, str, dict[str, int]]]:
    """(submission id, name, submitter, benchmark, {state: count}) for the status table."""
    columns = (Submission.id, Submission.name, Submission.submitter, Submission.benchmark)
    rows = session.execute(
        select(*columns, Job.state, func.count())
        .join(Job.submission)
        .group_by(*columns, Job.state)
        .order_by(Submission.id)
    )
    table: dict[int, tuple[int, str, str, str, dict[str, int]]] = {}
    for sid, name, submitter, benchmark, state, count in rows:
        counts = table.setdefault(sid, (sid, name, submitter, benchmark, {}))[4]
        counts[JobState(state).value] = count
    # Running jobs whose dispatcher's lease expired are shown as stalled, not running.
    for job in stalled_jobs(session):
        counts = table[job.submission_id][4]
        counts[JobState.RUNNING.value] -= 1
        if not counts[JobState.RUNNING.value]:
            del counts[JobState.RUNNING.value]
        counts[STALLED] = counts.get(STALLED, 0) + 1
    return list(table.values())


# Not a state of its own: a running job whose lease expired, until a dispatcher requeues it.
STALLED = "stalled"


def stalled_jobs(session: Session, now: datetime | None = None) -> list[Job]:
    """Running jobs whose lease expired before `now`: their dispatcher died or hangs.

    The next `requeue_expired` (any `mtlb run`) puts them back in the queue.
    """
    now = utcnow() if now is None else now
    return list(
        session.scalars(
            select(Job)
            .where(
                Job.state == JobState.RUNNING,
                Job.lease_expires_at.is_(None) | (Job.lease_expires_at < now),
            )
            .order_by(Job.id)
        )
    )
