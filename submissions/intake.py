"""The one narrow write path of the site and the API: token -> validate -> store -> queue.

`submit_spec` is all the upload page and `POST /api/submissions` may write
through.  It opens its own read-write transaction (the site's pages keep their
read-only engine), and every refusal is one line that stores nothing: no token,
a wrong or revoked token, an oversized file, a spec with problems (then one line
per problem, as `mtlb validate` prints them), the token's quota reached, a spec
submitted already (naming it).  No message ever contains the token.

`Throttle` slows down repeated wrong tokens from one client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from db.delta_m import PER_METRIC, PER_TASK, run_delta_m
from db.models import Campaign, Job, JobState, Run, Submission, TokenSubmission, utcnow
from db.session import SchemaVersionError, read_only_session_factory, transaction
from submissions import loader, tokens
from submissions.spec import validate
from submissions.submit import QUOTA_WINDOW, Checked, SubmitError, quota_from_env, store

MAX_BYTES = loader.MAX_BYTES


@dataclass(frozen=True)
class Accepted:
    """A spec stored and queued by a token."""

    submission_id: int
    name: str
    spec_hash: str
    submitter: str
    jobs_queued: int
    # 1 + the queued jobs that `mtlb run` claims before this submission's first (oldest first).
    queue_position: int


@dataclass(frozen=True)
class Refused:
    """Why nothing was stored: one line; `problems` are the spec's, one line each."""

    reason: str
    status: int  # the HTTP status the API answers with
    problems: list[str] = field(default_factory=list)
    existing_id: int | None = None


def check_upload(filename: str, data: bytes) -> Checked:
    """Validate an uploaded spec with the loader of `mtlb validate` (same limits, same lines)."""
    # Only the file name's last part is shown, printable: never a client's path.
    name = PurePath(loader.printable(filename or "spec.yaml").replace("\\", "/")).name
    path = Path(name or "spec.yaml")  # a name only, never opened
    try:
        document = loader.parse(data, path.suffix)
    except loader.SpecError as e:
        return Checked(path, "", None, [e])
    spec, problems = validate(document)
    source = data.decode("utf-8").removeprefix("\ufeff")
    return Checked(path, source, spec, problems)


def _queue_position(session: Session, first_job_id: int) -> int:
    ahead = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.state == JobState.QUEUED, Job.id < first_job_id)
    )
    return int(ahead or 0) + 1


def submit_spec(url: str, token: str | None, filename: str, data: bytes) -> Accepted | Refused:
    """Authenticate `token`, validate the spec, store it and queue its jobs; or refuse.

    Checks run cheapest first and the transaction only once the spec is valid.
    Within it the token's row is locked first (see `tokens.authenticate`), so a
    burst of one token's submissions cannot overrun its quota; a race with
    another token on the same spec ends as a duplicate, never as two rows.
    """
    if not token:
        return Refused("no token: send the token the operator issued you; nothing stored", 401)
    if len(data) > MAX_BYTES:
        return Refused(f"spec is {len(data)} bytes; the limit is {MAX_BYTES}; nothing stored", 413)
    try:
        with read_only_session_factory(url)() as session:
            tokens.authenticate(session, token)
    except tokens.TokenError as e:
        return Refused(f"{e}; nothing stored", 401)
    except (OperationalError, ProgrammingError):  # no database or no token table: no tokens
        return Refused("token refused: unknown token; nothing stored", 401)
    checked = check_upload(filename, data)
    if checked.spec is None:
        n = len(checked.problems)
        return Refused(f"nothing stored: {n} problem(s)", 422, checked.lines())
    try:
        default_quota = quota_from_env()
    except SubmitError as e:  # the operator's setting is wrong: say so, store nothing
        return Refused(f"{e}; nothing stored", 500)
    for attempt in range(2):
        try:
            return _store(url, token, checked, default_quota)
        except SchemaVersionError as e:
            return Refused(f"{e}; nothing stored", 503)
        except IntegrityError:
            # Another token stored the same spec between our check and our insert
            # (PostgreSQL; SQLite serialises writers): the retry finds it as a duplicate.
            if attempt:
                raise
    raise AssertionError("unreachable")


class _Refusal(Exception):
    """Raised inside the transaction so that it rolls back whole."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused.reason)
        self.refused = refused


def _store(url: str, token: str, checked: Checked, default_quota: int | None) -> Accepted | Refused:
    try:
        with transaction(url) as session:
            return _store_in(session, token, checked, default_quota)
    except _Refusal as e:
        return e.refused


def _store_in(
    session: Session, token: str, checked: Checked, default_quota: int | None
) -> Accepted:
    assert checked.spec is not None
    spec = checked.spec
    try:
        row = tokens.authenticate(session, token, lock=True)
    except tokens.TokenError as e:  # revoked since the first check
        raise _Refusal(Refused(f"{e}; nothing stored", 401)) from None
    existing = session.scalar(select(Submission).where(Submission.spec_hash == spec.spec_hash))
    if existing is not None:
        raise _Refusal(
            Refused(
                f"already submitted as #{existing.id} {loader.shown(existing.name)}"
                f" ({existing.spec_hash[:12]}); nothing stored",
                409,
                existing_id=existing.id,
            )
        )
    same = session.scalar(
        select(Submission).where(Submission.setup_hash == spec.setup_hash).order_by(Submission.id)
    )
    if same is not None:
        raise _Refusal(
            Refused(
                f"identical training set-up to submission #{same.id} {loader.shown(same.name)}"
                " (only its name, description or authors differ); nothing stored",
                409,
                existing_id=same.id,
            )
        )
    quota = row.quota if row.quota is not None else default_quota
    if quota is not None:
        used = session.scalar(
            select(func.count())
            .select_from(TokenSubmission)
            .where(
                TokenSubmission.token_id == row.id,
                TokenSubmission.submitted_at >= utcnow() - QUOTA_WINDOW,
            )
        )
        if int(used or 0) >= quota:
            raise _Refusal(
                Refused(
                    f"quota reached: {loader.shown(row.name)} has stored {quota} new"
                    " submission(s) in the last 24 hours; nothing stored",
                    429,
                )
            )
    stored = store(session, spec, checked.source, row.name)
    session.add(TokenSubmission(submission_id=stored.submission_id, token_id=row.id))
    session.flush()
    first = min(session.scalars(select(Job.id).where(Job.submission_id == stored.submission_id)))
    return Accepted(
        stored.submission_id,
        stored.name,
        stored.spec_hash,
        row.name,
        stored.jobs_queued,
        _queue_position(session, first),
    )


def submission_state(url: str, submission_id: int) -> dict[str, Any] | None:
    """A submission's state for `GET /api/submissions/{id}`: jobs, runs' Δm, summary; or None.

    The summary is over the runs of its first campaign under its own protocol
    version (the entry the ranking shows), once there are any.
    """
    with read_only_session_factory(url)() as session:
        submission = session.get(Submission, submission_id)
        if submission is None:
            return None
        jobs = session.execute(
            select(Job.id, Job.seed, Campaign.name, Job.protocol_version, Job.state, Job.error,
                   Job.campaign_id)
            .join(Campaign, Campaign.id == Job.campaign_id)
            .where(Job.submission_id == submission_id)
            .order_by(Job.id)
        ).all()  # fmt: skip
        per_run = run_delta_m().subquery()
        runs = session.execute(
            select(Run.job_id, Run.seed, Run.protocol_version, Job.campaign_id,
                   per_run.c[PER_TASK], per_run.c[PER_METRIC])
            .join(Job, Job.id == Run.job_id)
            .join(per_run, per_run.c.run_id == Run.id)
            .where(Run.submission_id == submission_id)
            .order_by(Run.id)
        ).all()  # fmt: skip
        first_job = next((j for j in jobs if j.state == JobState.QUEUED), None)
        position = _queue_position(session, first_job.id) if first_job is not None else None
    own = [j for j in jobs if (j.protocol_version or submission.protocol_version)
           == submission.protocol_version]  # fmt: skip
    original = min((j.campaign_id for j in own), default=None)
    ranked = [r for r in runs if r.campaign_id == original
              and r.protocol_version == submission.protocol_version]  # fmt: skip
    summary = None
    if ranked:
        summary = {
            "runs": len(ranked),
            PER_TASK: sum(r[4] for r in ranked) / len(ranked),
            PER_METRIC: sum(r[5] for r in ranked) / len(ranked),
        }
    return {
        "id": submission.id,
        "name": submission.name,
        "spec_hash": submission.spec_hash,
        "submitter": submission.submitter,
        "benchmark": submission.benchmark,
        "protocol_version": submission.protocol_version,
        "submitted_at": _iso(submission.submitted_at),
        "queue_position": position,
        "jobs": [
            {
                "id": j.id,
                "seed": j.seed,
                "campaign": j.name,
                "protocol_version": j.protocol_version or submission.protocol_version,
                "state": str(j.state),
                # The first line only: a worker's traceback names paths of the cluster.
                "error": (j.error or "").strip().splitlines()[0] if j.error else None,
            }
            for j in jobs
        ],
        "runs": [
            {
                "job_id": r.job_id,
                "seed": r.seed,
                "protocol_version": r.protocol_version,
                "delta_m": {PER_TASK: r[4], PER_METRIC: r[5]},
            }
            for r in runs
        ],
        "delta_m": summary,
    }


def _iso(moment: datetime) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


class Throttle:
    """Slows down repeated wrong tokens from one client (an address, a browser session).

    The first `free` failures within `window` cost nothing; after that the
    client must wait `base * 2**(k-1)` seconds (capped at `cap`) after its k-th
    extra failure before any further attempt is even checked.  Kept in memory,
    per process: a restart forgets it, which only gives a guesser back `free`
    tries against 256-bit secrets.
    """

    def __init__(
        self,
        free: int = 3,
        base: float = 1.0,
        cap: float = 300.0,
        window: timedelta = timedelta(minutes=15),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap = free, base, cap
        self.window = window.total_seconds()
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(client, []) if now - t < self.window]
        if kept:
            self._failures[client] = kept
        else:
            self._failures.pop(client, None)
        return kept

    def wait(self, client: str) -> float:
        """Seconds `client` must still wait before its next attempt is checked (0: go)."""
        with self._lock:
            now = self.clock()
            recent = self._recent(client, now)
            extra = len(recent) - self.free
            if extra <= 0:
                return 0.0
            delay = min(self.cap, self.base * 2 ** (extra - 1))
            return max(0.0, recent[-1] + delay - now)

    # Clients remembered before expired ones are swept (a flood from many addresses).
    SWEEP_ABOVE = 10_000

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            if len(self._failures) >= self.SWEEP_ABOVE:
                for known in list(self._failures):
                    self._recent(known, now)
            self._failures.setdefault(client, []).append(now)

    def clients(self) -> int:
        """How many clients have failures on record (swept lazily)."""
        return len(self._failures)

    def refusal(self, client: str) -> Refused | None:
        """A one-line refusal while `client` must wait, else None."""
        wait = self.wait(client)
        if wait <= 0:
            return None
        return Refused(
            f"too many wrong tokens from this client: try again in {max(1, round(wait))} s;"
            " nothing stored",
            429,
        )
