"""Cluster-wide reruns, the database side: which submissions, a new campaign, reproduction.

A rerun queues new jobs in a new campaign and never touches existing jobs or
runs: history is kept, and each campaign's results stay separate.  Whether a
spec is valid under another protocol version is the runners' business
(`submissions.reruns`); this module imports nothing else of ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Campaign, Submission

# Longest campaign reason stored (the column is Text; this keeps the site's tables readable).
MAX_REASON = 2000


class RerunError(ValueError):
    """A rerun that cannot be queued as asked; its message is one line naming the problem."""


@dataclass(frozen=True)
class Selection:
    """Which submissions a rerun takes; every selector given must match (AND)."""

    submission_ids: tuple[int, ...] = ()
    benchmark: str | None = None
    weighting: str | None = None
    architecture: str | None = None
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.submission_ids
            or self.benchmark
            or self.weighting
            or self.architecture
            or self.everything
        )

    def describe(self) -> str:
        """The selectors as command-line options, for messages."""
        parts = [f"--submission {i}" for i in self.submission_ids]
        for option, value in (
            ("--benchmark", self.benchmark),
            ("--weighting", self.weighting),
            ("--architecture", self.architecture),
        ):
            if value:
                parts.append(f"{option} {value}")
        if self.everything:
            parts.append("--all")
        return " ".join(parts)


def select_submissions(session: Session, selection: Selection) -> list[Submission]:
    """The submissions a selection names, by id; RerunError if none or one is unknown."""
    if selection.empty:
        raise RerunError(
            "choose what to rerun: --submission ID, --benchmark NAME, --weighting NAME,"
            " --architecture NAME or --all"
        )
    if selection.submission_ids:
        ids = set(selection.submission_ids)
        known = set(session.scalars(select(Submission.id).where(Submission.id.in_(ids))))
        missing = sorted(ids - known)
        if missing:
            raise RerunError(f"--submission {missing[0]}: no submission has this id")
    query = select(Submission).order_by(Submission.id)
    if selection.submission_ids:
        query = query.where(Submission.id.in_(selection.submission_ids))
    for column, value in (
        (Submission.benchmark, selection.benchmark),
        (Submission.weighting, selection.weighting),
        (Submission.architecture, selection.architecture),
    ):
        if value:
            query = query.where(column == value)
    found = list(session.scalars(query))
    if not found:
        raise RerunError(f"no submission matches {selection.describe()}")
    return found


def check_campaign(session: Session, name: str, reason: str) -> None:
    """RerunError unless `name` is a new, printable campaign name and `reason` a printable text."""
    if not (1 <= len(name) <= 200 and name.isprintable() and name.strip() == name):
        raise RerunError(
            f"--campaign: a campaign name is 1 to 200 printable characters without"
            f" surrounding spaces, got {name!r}"
        )
    if not reason.strip() or len(reason) > MAX_REASON or not reason.isprintable():
        raise RerunError(f"--reason: say why, in 1 to {MAX_REASON} printable characters")
    existing = session.scalar(select(Campaign).where(Campaign.name == name))
    if existing is not None:
        raise RerunError(
            f"--campaign {name}: a campaign of this name already exists"
            f" (#{existing.id}); a rerun needs a new name"
        )


def new_campaign(session: Session, name: str, reason: str) -> Campaign:
    """Create the rerun's campaign; RerunError if the name is taken (see `check_campaign`)."""
    check_campaign(session, name, reason)
    created = Campaign(name=name, reason=reason)
    session.add(created)
    session.flush()
    return created


def reproduced(original: Sequence[float], rerun: Sequence[float]) -> bool | None:
    """Whether a rerun reproduced the original: its mean Δm within the original's seed spread.

    Not reproduced (False) when |mean(rerun) - mean(original)| > s, where s is
    the sample standard deviation (n - 1) of the original campaign's per-seed
    Δm.  Not judged (None) when the original has fewer than 2 seeds (no
    spread to compare with) or the rerun has no Δm.  One rerun seed is
    judged: its mean is its value.

    >>> reproduced([1.0, 2.0, 3.0], [2.5, 3.5])  # |3.0 - 2.0| = 1.0, not above s = 1.0
    True
    >>> reproduced([1.0, 2.0, 3.0], [3.5])  # |3.5 - 2.0| = 1.5 > 1.0
    False
    >>> reproduced([2.0], [9.0]), reproduced([1.0, 2.0], [])
    (None, None)
    """
    if len(original) < 2 or not rerun:
        return None
    mean = math.fsum(original) / len(original)
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in original) / (len(original) - 1))
    return abs(math.fsum(rerun) / len(rerun) - mean) <= spread


__all__ = [
    "RerunError",
    "Selection",
    "check_campaign",
    "new_campaign",
    "reproduced",
    "select_submissions",
]
