"""Statistics over seeds: confidence intervals, Welch's t-test, tied ranks, the Pareto front.

Pure functions on plain numbers; no Streamlit, no database.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95  # confidence level of every interval on the site


@functools.lru_cache(maxsize=1024)
def t_quantile(probability: float, df: float) -> float:
    """Quantile of Student's t distribution with `df` degrees of freedom.

    >>> round(t_quantile(0.975, 2), 6)
    4.302653
    """
    return float(stats.t.ppf(probability, df))


def half_width(std: float | None, n: int, level: float = LEVEL) -> float | None:
    """Half-width of the t confidence interval of a mean: t_{(1+level)/2, n-1} · s / √n.

    None when the interval is undefined (fewer than two values, or no std).

    >>> round(half_width(1.0, 3), 6)  # 4.302653 / √3
    2.484138
    >>> half_width(None, 1) is None and half_width(1.0, 1) is None
    True
    """
    if std is None or n < 2 or not math.isfinite(std):
        return None
    return t_quantile((1.0 + level) / 2.0, n - 1) * std / math.sqrt(n)


@dataclass(frozen=True)
class Welch:
    """Welch's unequal-variances t-test of mean(a) - mean(b)."""

    difference: float  # mean(a) - mean(b)
    t: float
    df: float
    p: float  # two-sided; NaN when undefined


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's t-test: t = (ā - b̄) / √(s²_a/n_a + s²_b/n_b), Welch–Satterthwaite df.

    Worked example: a = (1, 2, 3), b = (4, 5, 6): means 2 and 5, variances 1 and 1,
    t = -3 / √(2/3) = -3.674235, df = (2/3)² / ((1/3)²/2 + (1/3)²/2) = 4,
    two-sided p = 2 · T₄(-3.674235) = 0.021312 (R: `t.test(1:3, 4:6)`).

    >>> w = welch([1, 2, 3], [4, 5, 6])
    >>> round(w.t, 6), round(w.df, 6), round(w.p, 6)
    (-3.674235, 4.0, 0.021312)

    Undefined (t, df and p NaN) with fewer than two values on a side, or when
    both sides have zero variance.
    """
    n_a, n_b = len(a), len(b)
    difference = (sum(a) / n_a - sum(b) / n_b) if n_a and n_b else math.nan
    if n_a < 2 or n_b < 2:
        return Welch(difference, math.nan, math.nan, math.nan)
    var_a = statistics.variance(a) / n_a
    var_b = statistics.variance(b) / n_b
    if var_a + var_b == 0:
        return Welch(difference, math.nan, math.nan, math.nan)
    t = difference / math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    p = 2.0 * float(stats.t.sf(abs(t), df))
    return Welch(difference, t, df, p)


def _oriented(
    means: Sequence[float | None], halves: Sequence[float | None], higher_is_better: bool
) -> dict[int, tuple[float, float, float]]:
    """{index: (low, value, high)} with values flipped so that higher is better.

    A method without an interval (one seed) is the point at its mean.
    """
    if len(means) != len(halves):
        raise ValueError(f"{len(means)} means but {len(halves)} half-widths")
    sign = 1.0 if higher_is_better else -1.0
    out = {}
    for i, (mean, half) in enumerate(zip(means, halves, strict=True)):
        if mean is None:
            continue
        value = sign * float(mean)
        h = 0.0 if half is None else float(half)
        out[i] = (value - h, value, value + h)
    return out


def tied_ranks(
    means: Sequence[float | None], halves: Sequence[float | None], higher_is_better: bool
) -> list[int | None]:
    """Ranks in which a method whose confidence interval overlaps its tie group's leader's
    shares the leader's rank.

    Walk the methods by mean, best first.  The first leads a tie group; each
    next method joins the current group when its interval [mean ± half]
    overlaps the leader's (closed intervals; a method without an interval, one
    seed, is the point at its mean), and otherwise leads a new group.  A
    method's rank is its leader's competition rank (1 + the number of methods
    with a strictly better mean), so ranks never decrease down the table.
    Overlap with the leader, not with any member: with A > B > C, A
    overlapping B and B overlapping C but not A, the ranks are 1, 1, 3.
    None without a mean.

    >>> tied_ranks([10.0, 9.0, 5.0], [2.0, 2.0, 1.0], higher_is_better=True)
    [1, 1, 3]
    >>> tied_ranks([10.0, 8.0, 6.0], [1.5, 1.5, 1.5], higher_is_better=True)
    [1, 1, 3]
    """
    points = _oriented(means, halves, higher_is_better)
    order = sorted(points, key=lambda i: -points[i][1])  # best first
    out: list[int | None] = [None] * len(means)
    leader_low, leader_rank = math.inf, 0
    competition, previous = 0, math.inf
    for position, i in enumerate(order, start=1):
        low, value, high = points[i]
        if value != previous:  # equal means share the position of the first of them
            competition, previous = position, value
        # The leader's mean is at least ours, so its interval reaches above our low
        # end: the two overlap exactly when its low end is at most our high end.
        if leader_low > high:
            leader_low, leader_rank = low, competition
        out[i] = leader_rank
    return out


def rank_ranges(
    means: Sequence[float | None], halves: Sequence[float | None], higher_is_better: bool
) -> list[tuple[int, int] | None]:
    """The ranks a method could take given the intervals: (best, worst).

    best = 1 + the number of methods whose interval lies entirely on the better
    side of its own; worst = the number of methods with a mean minus those whose
    interval lies entirely on the worse side.  None without a mean.

    >>> rank_ranges([10.0, 9.0, 5.0], [2.0, 2.0, 1.0], higher_is_better=True)
    [(1, 2), (1, 2), (3, 3)]
    """
    points = _oriented(means, halves, higher_is_better)
    lows = sorted(low for low, _, _ in points.values())
    highs = sorted(high for _, _, high in points.values())
    out: list[tuple[int, int] | None] = [None] * len(means)
    for i, (low, _, high) in points.items():
        above = len(lows) - bisect.bisect_right(lows, high)  # low end above our high end
        below = bisect.bisect_left(highs, low)  # high end below our low end
        out[i] = (1 + above, len(points) - below)
    return out


def pareto_front(
    costs: Sequence[float | None], values: Sequence[float | None], higher_is_better: bool
) -> list[bool]:
    """Which points no other point dominates (lower cost is better; value by direction).

    A point is dominated when another costs no more and is no worse, and is
    strictly better in one of the two.  Points missing either number are not
    on the front.

    >>> pareto_front([1, 2, 3, 2], [1.0, 3.0, 2.0, 3.0], higher_is_better=True)
    [True, True, False, True]
    """
    sign = 1.0 if higher_is_better else -1.0
    points = sorted(
        (float(c), sign * float(v), i)
        for i, (c, v) in enumerate(zip(costs, values, strict=True))
        if c is not None and v is not None and math.isfinite(c) and math.isfinite(v)
    )
    front = [False] * len(costs)
    best_cheaper = -math.inf  # best value among strictly cheaper points
    for _, group in itertools.groupby(points, key=lambda p: p[0]):
        members = list(group)
        top = max(v for _, v, _ in members)
        for _, value, i in members:
            front[i] = value == top and value > best_cheaper
        best_cheaper = max(best_cheaper, top)
    return front
