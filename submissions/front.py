"""The scalarisation front of a benchmark version: hard sharing with fixed task weights.

Kurin et al. (NeurIPS 2022, "In Defense of the Unitary Scalarization for Deep
Multi-Task Learning") and Xin et al. (NeurIPS 2022, "Do Current Multi-Task
Optimization Methods in Deep Learning Even Help?") found that fixed-weight
scalarisation, tuned as carefully as the method it is compared with, often
matches the specialised MTL optimisers.  So every benchmark version can have
its front: the default architecture (hard sharing on the protocol's first
backbone) trained with fixed weights on a regular grid of the task simplex,
with the protocol's baseline optimiser and schedule, and, with `tune`, the
same equal-budget learning-rate search any submission may ask for
(`runners.tuning`).  A method earns its place when no point of the front is
at least as good on every task and better on one (`leaderboard.front`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import yaml
from sqlalchemy.orm import Session

from db.models import Role
from runners.benchmarks import BENCHMARKS
from submissions.spec import SPEC_VERSION, validate
from submissions.submit import Stored, store

# Beyond this many points a front costs more than a whole leaderboard's worth of entries.
MAX_FRONT_POINTS = 100


class FrontError(ValueError):
    """A front that cannot be queued (one line)."""


def grid_size(tasks: int, divisions: int) -> int:
    """Points of the simplex grid: C(divisions + tasks - 1, tasks - 1).

    >>> grid_size(3, 4), grid_size(2, 4), grid_size(40, 1)
    (15, 5, 40)
    """
    return math.comb(divisions + tasks - 1, tasks - 1)


def simplex_grid(tasks: int, divisions: int) -> list[tuple[int, ...]]:
    """Every vector of `tasks` non-negative integers summing to `divisions`, largest first.

    Point k/divisions is a weight vector on the simplex (stars and bars).

    >>> simplex_grid(2, 2)
    [(2, 0), (1, 1), (0, 2)]
    """
    points = []
    for bars in itertools.combinations(range(divisions + tasks - 1), tasks - 1):
        edges = (-1, *bars, divisions + tasks - 1)
        points.append(tuple(b - a - 1 for a, b in itertools.pairwise(edges)))
    return sorted(points, reverse=True)


def front_document(
    benchmark_name: str, version: int, counts: tuple[int, ...], tune: bool = False
) -> dict[str, Any]:
    """The spec of one front point: hard sharing, fixed weights counts / sum(counts)."""
    benchmark = BENCHMARKS.get(benchmark_name)
    protocol = benchmark.protocol(version)
    divisions = sum(counts)
    weights = [round(c / divisions, 6) for c in counts]
    tasks = ", ".join(f"{t.name} {w:g}" for t, w in zip(benchmark.tasks, weights, strict=True))
    document: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "name": "front-" + "-".join(str(c) for c in counts) + ("-tuned" if tune else ""),
        "description": f"Scalarisation front: hard sharing with fixed task weights ({tasks}).",
        "authors": ["MTL Leaderboard"],
        "benchmark": benchmark_name,
        "protocol_version": version,
        "architecture": {"name": "hard-sharing", "backbone": protocol.backbones[0]},
        "weighting": {"name": "fixed", "task_weights": weights},
        "optimizer": dict(protocol.baseline_optimizer),
        **(
            {"scheduler": dict(protocol.baseline_scheduler)}
            if protocol.baseline_scheduler is not None
            else {}
        ),
    }
    if tune:
        lr = float(document["optimizer"].get("lr", 1e-3))
        document["search"] = {
            "optimizer.lr": {"low": lr / 10, "high": min(lr * 10, protocol.max_lr), "log": True}
        }
    return document


def queue_front(
    session: Session, benchmark_name: str, version: int | None = None, tune: bool = False
) -> list[Stored]:
    """Store and queue every point of the front (idempotent: stored points are kept)."""
    benchmark = BENCHMARKS.get(benchmark_name)
    version = version or benchmark.latest_version
    protocol = benchmark.protocol(version)
    tasks, divisions = len(benchmark.tasks), protocol.front_divisions
    size = grid_size(tasks, divisions)
    if size > MAX_FRONT_POINTS:
        raise FrontError(
            f"{benchmark_name} v{version}: a front of {tasks} tasks at {divisions} divisions"
            f" has {size} points, more than {MAX_FRONT_POINTS}"
        )
    if tune and protocol.tuning_trials < 1:
        raise FrontError(f"{benchmark_name} v{version} allows no tuning: queue it without --tune")
    stored = []
    for counts in simplex_grid(tasks, divisions):
        document = front_document(benchmark_name, version, counts, tune)
        spec, problems = validate(document)
        if spec is None:  # a protocol whose own front is invalid is a bug of ours
            raise RuntimeError("; ".join(str(p) for p in problems))
        source = yaml.safe_dump(document, sort_keys=False)
        stored.append(store(session, spec, source, role=Role.FRONT))
    return stored


__all__ = ["FrontError", "front_document", "grid_size", "queue_front", "simplex_grid"]
