"""`mtlb rerun`: queue stored submissions again, in a new campaign; and the rerun scheduler.

A rerun is new jobs in a new campaign, never a change to existing jobs or
runs.  By default it reruns each submission under its own protocol version
with that protocol's seeds; `seeds` names others, `protocol_version` another
version of the benchmark's protocol.  Under another version, each spec is
checked against that protocol first (`submissions.spec.check_protocol`): one
that it does not allow is reported and not queued.  Δm under a version needs
that version's baseline: when the version has none designated, the baseline
of the submission's own version is rerun under it too, and designated for it.

Everything happens in the caller's transaction: a rerun that raises
RerunError writes nothing.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from db.models import Baseline, Submission, utcnow
from db.queue import queue_jobs
from db.reruns import RerunError, Selection, check_campaign, new_campaign, select_submissions
from db.session import transaction
from runners.benchmarks import BENCHMARKS
from submissions.spec import check_protocol


@dataclass(frozen=True)
class Planned:
    """One submission's share of a rerun."""

    submission_id: int
    name: str
    benchmark: str
    protocol_version: int
    seeds: tuple[int, ...]
    # Designated as the baseline of (benchmark, protocol_version, backbone) by this rerun.
    designate: bool = False

    def line(self, verb: str) -> str:
        role = " (baseline, designated for this version)" if self.designate else ""
        seeds = ", ".join(str(s) for s in self.seeds)
        return (
            f"#{self.submission_id} {self.name}{role}: {self.benchmark} v{self.protocol_version},"
            f" {len(self.seeds)} job(s) {verb} (seeds {seeds})"
        )


@dataclass
class Plan:
    """What a rerun queues, what it skips (one line each) and what it notes."""

    campaign: str
    planned: list[Planned] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return sum(len(p.seeds) for p in self.planned)


def parse_seeds(text: str) -> tuple[int, ...]:
    """'3,4,5' -> (3, 4, 5); RerunError naming the problem for anything else.

    >>> parse_seeds("3, 4,5")
    (3, 4, 5)
    """
    parts = [part.strip() for part in text.split(",")]
    if not all(re.fullmatch(r"[0-9]{1,9}", part) for part in parts):
        raise RerunError(f"--seeds: expected whole numbers separated by commas, got {text!r}")
    seeds = tuple(int(part) for part in parts)
    if len(set(seeds)) != len(seeds):
        raise RerunError(f"--seeds: a seed is repeated in {text!r}")
    return seeds


def plan_rerun(
    session: Session,
    selection: Selection,
    campaign: str,
    reason: str,
    seeds: Sequence[int] | None = None,
    protocol_version: int | None = None,
) -> Plan:
    """What a rerun would queue; writes nothing.  RerunError when nothing can be queued."""
    check_campaign(session, campaign, reason)
    submissions = select_submissions(session, selection)
    for name in sorted({s.benchmark for s in submissions}):
        if protocol_version is not None:
            try:
                BENCHMARKS.get(name).protocol(protocol_version)
            except KeyError as e:
                raise RerunError(f"--protocol-version: {e.args[0]}") from None
    plan = Plan(campaign)
    for submission in submissions:
        version = protocol_version or submission.protocol_version
        problems = valid_under(submission, version)
        if problems:
            plan.skipped.extend(problems)
            continue
        plan.planned.append(planned(submission, version, seeds))
    plan_baselines(session, plan, seeds)
    if not plan.planned:
        raise RerunError(
            f"nothing to queue: no selected submission is valid under protocol version"
            f" {protocol_version}"
        )
    return plan


def planned(
    submission: Submission, version: int, seeds: Sequence[int] | None, designate: bool = False
) -> Planned:
    protocol = BENCHMARKS.get(submission.benchmark).protocol(version)
    return Planned(
        submission.id,
        submission.name,
        submission.benchmark,
        version,
        tuple(seeds) if seeds is not None else protocol.seeds,
        designate,
    )


def valid_under(submission: Submission, version: int) -> list[str]:
    """Why a submission's spec cannot run under `version` of its protocol, one line each."""
    if version == submission.protocol_version:
        return []  # checked when it was submitted
    spec = copy.deepcopy(dict(submission.spec))
    spec["protocol_version"] = version
    return [
        f"#{submission.id} {submission.name}: {p.field}: {p.message}"
        f" (under {submission.benchmark} v{version}; not queued)"
        for p in check_protocol(spec)
    ]


def plan_baselines(session: Session, plan: Plan, seeds: Sequence[int] | None) -> None:
    """Rerun and designate the baselines that the planned versions lack."""
    queued = {(p.submission_id, p.protocol_version) for p in plan.planned}
    needed: dict[tuple[str, int, str], int] = {}
    for p in list(plan.planned):
        submission = session.get(Submission, p.submission_id)
        assert submission is not None
        if p.protocol_version == submission.protocol_version:
            continue
        key = (submission.benchmark, p.protocol_version, submission.backbone)
        if key in needed or session.get(Baseline, key) is not None:
            continue
        source = session.get(
            Baseline, (submission.benchmark, submission.protocol_version, submission.backbone)
        )
        needed[key] = -1 if source is None else source.submission_id
    for (benchmark, version, backbone), source_id in needed.items():
        if source_id < 0:
            plan.notes.append(
                f"{benchmark} v{version} has no baseline for backbone {backbone}: Δm of these"
                f" runs needs `mtlb baselines {benchmark} --version {version}`"
            )
            continue
        baseline = session.get(Submission, source_id)
        assert baseline is not None
        if (source_id, version) in queued:
            index = next(
                i
                for i, p in enumerate(plan.planned)
                if (p.submission_id, p.protocol_version) == (source_id, version)
            )
            old = plan.planned[index]
            plan.planned[index] = Planned(
                old.submission_id, old.name, old.benchmark, version, old.seeds, designate=True
            )
            continue
        problems = valid_under(baseline, version)
        if problems:
            # Reported once, though the selection may have named the baseline too.
            plan.skipped.extend(p for p in problems if p not in plan.skipped)
            plan.notes.append(
                f"{benchmark} v{version} has no baseline for backbone {backbone}: Δm of these"
                f" runs needs `mtlb baselines {benchmark} --version {version}`"
            )
            continue
        plan.planned.append(planned(baseline, version, seeds, designate=True))


def queue_rerun(
    session: Session,
    selection: Selection,
    campaign: str,
    reason: str,
    seeds: Sequence[int] | None = None,
    protocol_version: int | None = None,
) -> Plan:
    """Plan a rerun, then create its campaign, queue its jobs and designate its baselines."""
    plan = plan_rerun(session, selection, campaign, reason, seeds, protocol_version)
    created = new_campaign(session, campaign, reason)
    for p in plan.planned:
        submission = session.get(Submission, p.submission_id)
        assert submission is not None
        jobs = queue_jobs(session, submission, p.seeds, created, p.protocol_version)
        assert len(jobs) == len(p.seeds)  # a new campaign has no jobs yet
        if p.designate:
            session.add(
                Baseline(
                    benchmark=p.benchmark,
                    protocol_version=p.protocol_version,
                    backbone=submission.backbone,
                    submission_id=submission.id,
                )
            )
    session.flush()
    return plan


# ---------------------------------------------------------------------------
# Scheduled reruns

DURATION = re.compile(r"([1-9][0-9]{0,5})([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_every(text: str) -> timedelta:
    """'30m', '6h', '24h', '7d' (and '90s') -> a timedelta; RerunError otherwise.

    >>> parse_every("6h"), parse_every("7d")
    (datetime.timedelta(seconds=21600), datetime.timedelta(days=7))
    """
    found = DURATION.fullmatch(text.strip())
    if found is None:
        raise RerunError(f"--every: expected a duration such as 30m, 6h, 24h or 7d, got {text!r}")
    return timedelta(**{UNITS[found[2]]: int(found[1])})


def cycle_campaign(campaign: str, now: datetime) -> str:
    """A scheduled cycle's campaign: the name with the cycle's UTC start, to the second.

    >>> from datetime import UTC
    >>> cycle_campaign("nightly", datetime(2026, 11, 27, 3, 0, 5, tzinfo=UTC))
    'nightly-20261127T030005Z'
    """
    return f"{campaign}-{now.strftime('%Y%m%dT%H%M%SZ')}"


Runner = Callable[[str], str]


def schedule(
    url: str,
    selection: Selection,
    campaign: str,
    reason: str,
    run: Runner,
    every: timedelta | None = None,
    cycles: int | None = None,
    seeds: Sequence[int] | None = None,
    protocol_version: int | None = None,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Rerun every `every`, `cycles` times (forever when None); return the cycles done.

    Each cycle creates the campaign `<campaign>-<UTC start>` (`cycle_campaign`),
    queues the rerun in its own transaction, then calls `run(url)` (the
    dispatcher: it runs every queued job) and sleeps until the next cycle's
    start, `every` after this one's (at once if the cycle took longer).  A
    RerunError stops the scheduler; Ctrl-C (KeyboardInterrupt) propagates to
    the caller, the dispatcher having put unfinished jobs back in the queue.
    """
    if cycles is not None and cycles > 1 and every is None:
        raise RerunError(f"--cycles {cycles}: more than one cycle needs --every")
    done = 0
    while cycles is None or done < cycles:
        started = clock()
        name = cycle_campaign(campaign, started)
        with transaction(url) as session:
            plan = queue_rerun(session, selection, name, reason, seeds, protocol_version)
        report(plan, echo, warn=warn)
        echo(run(url))
        done += 1
        if (cycles is not None and done >= cycles) or every is None:
            break
        wait = (started + every - clock()).total_seconds()
        if wait > 0:
            echo(f"next cycle at {(started + every).isoformat(timespec='seconds')}")
            sleep(wait)
    return done


def report(
    plan: Plan,
    echo: Callable[[str], None],
    dry_run: bool = False,
    warn: Callable[[str], None] | None = None,
) -> None:
    """The plan as printed by `mtlb rerun`: skipped specs and notes (to `warn`), one line
    per submission queued, then the total."""
    for line in (*plan.skipped, *plan.notes):
        (warn or echo)(line)
    verb = "would be queued" if dry_run else "queued"
    for p in plan.planned:
        echo(p.line(verb))
    where = "in new campaign" if not dry_run else "in campaign"
    echo(f"{plan.jobs} job(s) for {len(plan.planned)} submission(s) {verb} {where} {plan.campaign}")


__all__ = [
    "Plan",
    "Planned",
    "cycle_campaign",
    "parse_every",
    "parse_seeds",
    "plan_rerun",
    "queue_rerun",
    "schedule",
]
