"""Each entry against its benchmark's scalarisation front (`submissions.front`).

A front point dominates an entry when its relative gain is at least the
entry's on every task and larger on one (gains per task as `db.queries.task_deltas`
gives them: x100, higher is better, means over the original campaign's
seeds).  An entry that no front point dominates "beats the front": fixed-weight
hard sharing, at any of the grid's weights, does not do better on every task.
With more than two tasks the verdict is also given per task pair, in that
pair's plane, which is what the chart of a pair shows.  Means only: the
verdict carries no interval, and a point of the front is as noisy as an entry.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FrontVerdict:
    """One entry against the front."""

    dominated_by: tuple[int, ...]  # ids of the front points that dominate it
    # (task, task) -> dominated by some front point in that pair's plane.
    pairs: Mapping[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def beats_front(self) -> bool:
        return not self.dominated_by


def dominates(a: Mapping[str, float], b: Mapping[str, float], tasks: Iterable[str]) -> bool:
    """`a` at least as good as `b` on every task of `tasks` and better on one (higher is better).

    >>> dominates({"x": 1, "y": 2}, {"x": 1, "y": 1}, "xy"), dominates({"x": 1}, {"x": 1}, "x")
    (True, False)
    """
    tasks = list(tasks)
    return all(a[t] >= b[t] for t in tasks) and any(a[t] > b[t] for t in tasks)


def front_verdicts(
    deltas: Iterable[tuple[int, str, float]], front_ids: Iterable[int]
) -> dict[int, FrontVerdict]:
    """{entry id: verdict} for every submission in `deltas` that is not a front point.

    Submissions missing a task (no run of it yet) are left out, as are front
    points missing one: a partial front judges nothing.
    """
    gains: dict[int, dict[str, float]] = {}
    for sid, task, value in deltas:
        gains.setdefault(sid, {})[task] = value
    tasks = sorted({task for values in gains.values() for task in values})
    complete = {sid: values for sid, values in gains.items() if len(values) == len(tasks)}
    front = {sid: values for sid, values in complete.items() if sid in set(front_ids)}
    if not front:
        return {}
    pairs = list(itertools.combinations(tasks, 2)) if len(tasks) > 2 else []
    verdicts = {}
    for sid, values in complete.items():
        if sid in front:
            continue
        verdicts[sid] = FrontVerdict(
            dominated_by=tuple(f for f, point in front.items() if dominates(point, values, tasks)),
            pairs={
                pair: any(dominates(point, values, pair) for point in front.values())
                for pair in pairs
            },
        )
    return verdicts


__all__ = ["FrontVerdict", "dominates", "front_verdicts"]
