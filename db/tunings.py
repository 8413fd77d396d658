"""Storing and reading tunings: one per submission, the first stored wins.

Two dispatchers may tune the same submission at once; `tunings.submission_id`
is unique, so exactly one insert lands and the other dispatcher reads (and
trains with) the winner's values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import Tuning


def tuning_of(session: Session, submission_id: int) -> dict[str, Any] | None:
    """A submission's tuning as plain data (None if it has none yet)."""
    row = session.scalar(select(Tuning).where(Tuning.submission_id == submission_id))
    if row is None:
        return None
    return {
        "submission_id": row.submission_id,
        "chosen": dict(row.chosen),
        "trials": list(row.trials),
        "trial_budget": row.trial_budget,
        "validation_size": row.validation_size,
        "objective": row.objective,
        "created_at": row.created_at,
    }


def store_tuning(
    factory: sessionmaker[Session],
    submission_id: int,
    *,
    chosen: Mapping[str, Any],
    trials: Sequence[Mapping[str, Any]],
    trial_budget: int,
    validation_size: int,
    objective: str,
) -> dict[str, Any]:
    """Store a tuning in its own transaction; return the stored one (ours, or a winner's)."""
    try:
        with factory.begin() as session:
            session.add(
                Tuning(
                    submission_id=submission_id,
                    chosen=dict(chosen),
                    trials=[dict(t) for t in trials],
                    trial_budget=trial_budget,
                    validation_size=validation_size,
                    objective=objective,
                )
            )
    except IntegrityError:
        pass  # another dispatcher stored its tuning first: use that one
    with factory() as session:
        stored = tuning_of(session, submission_id)
    if stored is None:  # the insert failed for another reason than a winner's row
        raise RuntimeError(f"could not store the tuning of submission {submission_id}")
    return stored
