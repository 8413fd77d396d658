"""Job leases: claim, renew, expire, record once; concurrent dispatchers on one database."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from db.models import Job, JobState, Role, Run, utcnow
from db.queue import (
    Outcome,
    campaign,
    claim_jobs,
    held_job,
    queue_jobs,
    record_success,
    release_jobs,
    renew_leases,
    requeue_expired,
    store_submission,
)
from db.session import engine, session_factory, transaction

PROVENANCE = {
    "code_version": "test",
    "torch_version": "x",
    "ray_version": "x",
    "python_version": "x",
    "device": "cpu",
    "wall_time_s": 1.0,
    "parameter_count": 10,
}
OUTCOME = Outcome({"a": {"m": 0.5}}, {"a": {"m": True}}, [(0, "a", "loss", 1.0)], PROVENANCE)


def queue(url: str, jobs: int) -> None:
    spec = {
        "name": "s",
        "benchmark": "toy",
        "protocol_version": 1,
        "architecture": {"name": "a", "backbone": "net"},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam"},
    }
    with transaction(url) as session:
        submission, _ = store_submission(
            session, spec=spec, spec_hash="h", source="", role=Role.METHOD
        )
        queue_jobs(session, submission, range(jobs), campaign(session))


def test_claim_renew_expire_release(database_url: str) -> None:
    queue(database_url, 3)
    hour = timedelta(hours=1)
    with transaction(database_url) as session:
        a = [j.id for j in claim_jobs(session, 2, owner="A", lease=hour)]
        [b] = [j.id for j in claim_jobs(session, owner="B", lease=timedelta(seconds=1))]
    assert len(a) == 2
    with transaction(database_url) as session:
        job = session.get(Job, a[0])
        assert job is not None and job.lease_owner == "A" and job.lease_expires_at is not None
        # B cannot renew A's jobs; A renews its own and is told which it still holds.
        assert renew_leases(session, "B", a, hour) == set()
        assert renew_leases(session, "A", [*a, b], hour) == set(a)
        # Nothing has expired yet; an hour and a half later, both leases have.
        assert requeue_expired(session, utcnow()) == 0
        assert held_job(session, b, "A") is None and held_job(session, b, "B") is not None
    with transaction(database_url) as session:
        assert requeue_expired(session, utcnow() + timedelta(minutes=30)) == 1  # B's, 1 s lease
        assert session.get(Job, b).state == JobState.QUEUED  # type: ignore[union-attr]
        assert held_job(session, b, "B") is None  # B's late result would not be recorded
        # A is interrupted: only its own running jobs go back.
        assert release_jobs(session, "B", a) == 0
        assert release_jobs(session, "A", a) == 2
        states = Counter(session.scalars(select(Job.state)))
    assert states == {JobState.QUEUED: 3}


def test_a_run_is_recorded_once_even_when_the_holder_is_bypassed(database_url: str) -> None:
    """`runs.job_id` unique is the last guard: the database refuses a job's second run."""
    from sqlalchemy.exc import IntegrityError

    queue(database_url, 1)
    with transaction(database_url) as session:
        [job] = claim_jobs(session, owner="A")
        record_success(session, job, OUTCOME)
    with pytest.raises(IntegrityError), transaction(database_url) as session:
        stale = session.get(Job, job.id)
        assert stale is not None
        stale.state = JobState.RUNNING  # pretend: a stale row
        record_success(session, stale, OUTCOME)
    with transaction(database_url) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 1


def test_two_claims_that_choose_the_same_jobs_get_each_job_once(database_url: str) -> None:
    """Both dispatchers choose jobs before either marks them: the second claims none of them.

    A barrier after the claim's choosing SELECT forces the interleaving that
    made a select-then-update claim hand one job to both on SQLite.
    """
    queue(database_url, 3)
    barrier = threading.Barrier(2, timeout=10)
    waited: set[int] = set()

    def hold_after_choosing(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        choosing = statement.lstrip().upper().startswith("SELECT") and "ORDER BY JOBS.ID" in (
            statement.upper()
        )
        if choosing and threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()

    claimed: dict[str, list[int]] = {}

    def claim(owner: str) -> None:
        factory = session_factory(database_url)
        with factory.begin() as session:
            claimed[owner] = [j.id for j in claim_jobs(session, 2, owner=owner)]

    made = engine(database_url)
    event.listen(made, "after_cursor_execute", hold_after_choosing)
    try:
        threads = [threading.Thread(target=claim, args=(o,)) for o in ("A", "B")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        event.remove(made, "after_cursor_execute", hold_after_choosing)
    assert len(waited) == 2  # both chose before either claimed
    every = claimed["A"] + claimed["B"]
    assert len(every) == len(set(every))  # no job claimed by both
    # SQLite: both chose jobs 1 and 2, the second claim got neither.  PostgreSQL: the
    # second choice skipped the rows the first one had locked and took job 3.
    assert every[:2] == [1, 2] or sorted(every) == [1, 2, 3]
    with transaction(database_url) as session:
        jobs = {j.id: j for j in session.scalars(select(Job))}
        assert {i for i, j in jobs.items() if j.state == JobState.RUNNING} == set(every)
        assert all(jobs[i].attempts == 1 for i in every)
        assert {jobs[i].lease_owner for i in every} == {o for o in claimed if claimed[o]}


def dispatcher(url: str, owner: str, lease: timedelta, claimed: list[int], stop: Any) -> None:
    """Claim one or two jobs, renew, then record each if still held: what run_jobs does."""
    factory = session_factory(url)
    chance = random.Random(owner)
    while not stop.is_set():
        with factory.begin() as session:
            ids = [j.id for j in claim_jobs(session, 2, owner=owner, lease=lease)]
        if not ids:
            with factory() as session:
                left = session.scalar(
                    select(func.count()).select_from(Job).where(Job.state != JobState.SUCCEEDED)
                )
            if not left:
                return
            time.sleep(0.01)
            continue
        claimed.extend(ids)
        with factory.begin() as session:
            renew_leases(session, owner, ids, lease)
        time.sleep(chance.uniform(0.0, 0.03))  # "training": longer or shorter than a short lease
        for job_id in ids:
            with factory.begin() as session:
                job = held_job(session, job_id, owner)
                if job is not None:
                    record_success(session, job, OUTCOME)


@pytest.mark.parametrize("lease_s", [3600.0, 0.015])
def test_concurrent_dispatchers_claim_each_job_once_and_record_each_run_once(
    database_url: str, lease_s: float
) -> None:
    """Four dispatchers (threads, each with its own connections) drain 40 jobs.

    With a long lease no job is claimed twice.  With a lease shorter than a
    job, and a fifth thread requeueing expired jobs all along, jobs are
    claimed again, yet each still gets exactly one run and none is lost.
    """
    queue(database_url, 40)
    lease = timedelta(seconds=lease_s)
    stop = threading.Event()
    claims: dict[str, list[int]] = {f"d{i}": [] for i in range(4)}
    threads = [
        threading.Thread(target=dispatcher, args=(database_url, o, lease, c, stop))
        for o, c in claims.items()
    ]

    def requeuer() -> None:
        factory = session_factory(database_url)
        while not stop.is_set():
            with factory.begin() as session:
                requeue_expired(session)
            time.sleep(0.005)

    sweeper = threading.Thread(target=requeuer)
    for t in [*threads, sweeper]:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stop.set()
    sweeper.join()
    assert not any(t.is_alive() for t in threads)

    with transaction(database_url) as session:
        runs = Counter(session.scalars(select(Run.job_id)))
        jobs = {j.id: (j.state, j.attempts) for j in session.scalars(select(Job))}
    assert set(runs) == set(jobs) and set(runs.values()) == {1}  # none lost, none twice
    assert {state for state, _ in jobs.values()} == {JobState.SUCCEEDED}
    every_claim = Counter(i for ids in claims.values() for i in ids)
    assert all(attempts == every_claim[i] for i, (_, attempts) in jobs.items())
    if lease_s > 60:
        assert set(every_claim.values()) == {1}  # no job claimed twice
    else:
        assert max(every_claim.values()) > 1  # the race was exercised
