"""The ranking against the scalarisation front, on a hand-made two-task database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db.models import Role
from db.session import transaction
from tests.conftest import PROVENANCE

BASE = {"a": 0.5, "b": 0.5}  # the baseline's metric per task (higher is better)
# Relative gains x100 per task, each the same at both seeds.
GAINS = {
    "stl": ({"a": 0.0, "b": 0.0}, Role.BASELINE),
    "strong": ({"a": 6.0, "b": 5.0}, Role.METHOD),  # beyond every front point
    "weak": ({"a": 1.0, "b": 1.0}, Role.METHOD),  # dominated by front-1-1
    "front-2-0": ({"a": 8.0, "b": -4.0}, Role.FRONT),
    "front-1-1": ({"a": 3.0, "b": 3.0}, Role.FRONT),
    "front-0-2": ({"a": -4.0, "b": 7.0}, Role.FRONT),
}


def front_database(url: str) -> None:
    from db.queue import (
        Outcome,
        campaign,
        claim_jobs,
        designate_baseline,
        queue_jobs,
        record_success,
        store_submission,
    )

    directions = {"a": {"m": True}, "b": {"m": True}}
    with transaction(url) as session:
        for i, (name, (_, role)) in enumerate(GAINS.items()):
            spec = {"name": name, "benchmark": "synthetic-scenes", "protocol_version": 2,
                    "architecture": {"name": "single-task" if i == 0 else "hard-sharing",
                                     "backbone": "small-cnn"},
                    "weighting": {"name": name}, "optimizer": {"name": "adam"}}  # fmt: skip
            submission, _ = store_submission(
                session, spec=spec, spec_hash=f"{i:064d}", source="", role=role
            )
            if role == Role.BASELINE:
                designate_baseline(session, submission)
            queue_jobs(session, submission, range(2), campaign(session))
        for job in claim_jobs(session):
            gains = GAINS[job.submission.name][0]
            metrics = {t: {"m": BASE[t] * (1 + gains[t] / 100)} for t in BASE}
            record_success(session, job, Outcome(metrics, directions, [], PROVENANCE))


def test_the_ranking_leaves_the_front_out_and_says_who_beats_it(tmp_path: Path, site: Any) -> None:
    url = f"sqlite:///{tmp_path / 'front.sqlite'}"
    front_database(url)
    at = site(url)
    frame = at.dataframe[0].value
    assert set(frame["name"]) == {"stl", "strong", "weak"}  # the front's points are not ranked
    assert sorted(frame["rank"].dropna().astype(int)) == [1, 2, 3]
    beats = dict(zip(frame["name"], frame["beats the front"], strict=True))
    # strong (6, 5): no point is as good on both tasks; weak (1, 1) < front-1-1 (3, 3);
    # the baseline (0, 0) too.
    assert beats == {"strong": True, "weak": False, "stl": False}
    assert any(s.value == "Against the scalarisation front" for s in at.subheader)
    caption = next(c.value for c in at.caption if "points of the front" in c.value)
    assert caption.startswith("3 points of the front") and "1 of 3 entries do" in caption
