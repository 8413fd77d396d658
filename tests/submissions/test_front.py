"""The scalarisation front: its grid, its specs, queueing it, and each entry's verdict."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Job, Role, Submission
from db.session import transaction
from leaderboard.front import dominates, front_verdicts
from runners.benchmarks import BENCHMARKS
from submissions.cli import app
from submissions.front import front_document, grid_size, queue_front, simplex_grid
from submissions.spec import validate


@pytest.mark.parametrize(("tasks", "divisions"), [(2, 4), (3, 4), (4, 3), (5, 1)])
def test_the_grid_is_every_point_of_the_simplex_once(tasks: int, divisions: int) -> None:
    points = simplex_grid(tasks, divisions)
    assert len(points) == len(set(points)) == grid_size(tasks, divisions)
    assert all(len(p) == tasks and sum(p) == divisions and min(p) >= 0 for p in points)


def test_three_tasks_at_four_divisions_are_the_fifteen_points_by_hand() -> None:
    points = simplex_grid(3, 4)
    assert len(points) == 15
    assert points[:5] == [(4, 0, 0), (3, 1, 0), (3, 0, 1), (2, 2, 0), (2, 1, 1)]
    assert points[-1] == (0, 0, 4)


def test_a_front_point_is_a_valid_spec_with_weights_on_the_simplex() -> None:
    document = front_document("synthetic-scenes", 2, (2, 1, 1))
    spec, problems = validate(document)
    assert spec is not None, problems
    assert document["name"] == "front-2-1-1"
    assert document["weighting"] == {"name": "fixed", "task_weights": [0.5, 0.25, 0.25]}
    protocol = BENCHMARKS.get("synthetic-scenes").protocol(2)
    assert document["optimizer"] == dict(protocol.baseline_optimizer)
    tuned = front_document("synthetic-scenes", 2, (2, 1, 1), tune=True)
    assert validate(tuned)[0] is not None
    search = tuned["search"]["optimizer.lr"]
    assert math.isclose(search["low"], 3e-4) and math.isclose(search["high"], 3e-2)


def test_queueing_the_front_stores_each_point_once_as_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'front.sqlite'}"
    result = CliRunner().invoke(app, ["--database", url, "front", "synthetic-scenes-mini"])
    assert result.exit_code == 0, result.output
    assert result.output.count("job(s) queued") == 15
    with transaction(url) as session:
        roles = session.scalars(select(Submission.role)).all()
        assert roles == [Role.FRONT] * 15
        assert session.scalar(select(func.count()).select_from(Job)) == 45  # 3 seeds each
        again = queue_front(session, "synthetic-scenes-mini")
    assert [s.created for s in again] == [False] * 15  # idempotent
    bad = CliRunner().invoke(app, ["--database", url, "front", "no-such-benchmark"])
    assert bad.exit_code == 1 and bad.output.startswith("error: ")
    assert len(bad.output.strip().splitlines()) == 1


def test_dominance_and_verdicts_by_hand() -> None:
    assert dominates({"a": 1, "b": 0}, {"a": 0, "b": 0}, "ab")
    assert not dominates({"a": 1, "b": -1}, {"a": 0, "b": 0}, "ab")
    # Front points 10 and 11; entries 1 (dominated by 10), 2 (beats it), 3 (a task missing).
    deltas = [
        (10, "x", 2.0), (10, "y", 1.0), (10, "z", 0.0),
        (11, "x", -1.0), (11, "y", 3.0), (11, "z", 0.0),
        (1, "x", 1.0), (1, "y", 1.0), (1, "z", 0.0),
        (2, "x", 0.0), (2, "y", 2.0), (2, "z", 1.0),
        (3, "x", 9.0), (3, "y", 9.0),
    ]  # fmt: skip
    verdicts = front_verdicts(deltas, {10, 11})
    assert set(verdicts) == {1, 2}
    assert verdicts[1].dominated_by == (10,) and not verdicts[1].beats_front
    assert verdicts[2].beats_front
    # In the (x, y) plane entry 2 is dominated by no point: 10 has less y, 11 less x... but
    # 11 (-1, 3) vs 2 (0, 2): not dominated; 10 (2, 1) vs (0, 2): not dominated.
    assert verdicts[2].pairs == {("x", "y"): False, ("x", "z"): False, ("y", "z"): False}
    assert verdicts[1].pairs[("x", "y")] and verdicts[1].pairs[("y", "z")]
    assert front_verdicts(deltas, set()) == {}
