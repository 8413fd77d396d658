"""Statistics over seeds: confidence intervals of a mean, the Pareto front.

Comparisons of two submissions, and the ranks they allow, are in
`leaderboard.paired`.  Pure functions on plain numbers; no Streamlit, no
database.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

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
