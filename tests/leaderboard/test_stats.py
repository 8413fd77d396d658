"""Intervals and the Pareto front against hand-computed values, tables and brute force."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leaderboard.stats import half_width, pareto_front, t_quantile


@pytest.mark.parametrize(
    ("df", "quantile"),
    # Student's t table, 0.975 quantiles.
    [(1, 12.706205), (2, 4.302653), (4, 2.776445), (9, 2.262157), (29, 2.045230)],
)
def test_t_quantile_matches_the_table(df: int, quantile: float) -> None:
    assert math.isclose(t_quantile(0.975, df), quantile, abs_tol=1e-6)


def test_half_width_of_three_seeds_by_hand() -> None:
    # Values 1, 2, 6: mean 3, s = √7, n = 3; 4.302653 · √7 / √3 = 4.302653 · 1.527525 = 6.572411.
    s = math.sqrt(7.0)
    assert math.isclose(half_width(s, 3), 4.3026527297 * s / math.sqrt(3), rel_tol=1e-9)
    assert math.isclose(half_width(s, 3), 6.572411, abs_tol=1e-6)  # type: ignore[arg-type]


@pytest.mark.parametrize(("std", "n"), [(None, 3), (1.0, 1), (1.0, 0), (math.nan, 3)])
def test_half_width_undefined(std: float | None, n: int) -> None:
    assert half_width(std, n) is None


# ---------------------------------------------------------------------------
# Pareto front


def test_pareto_front_higher_is_better() -> None:
    costs = [1.0, 2.0, 3.0, 2.0, 4.0, None]
    delta = [1.0, 3.0, 2.0, 3.0, 5.0, 9.0]
    # (3, 2) is beaten by (2, 3); the two (2, 3) are equal, so neither dominates;
    # the point without a cost is not on the front.
    assert pareto_front(costs, delta, True) == [True, True, False, True, True, False]


def test_pareto_front_lower_is_better_and_equal_values() -> None:
    # A drop: lower is better.  (2, 1.0) is beaten by (1, 1.0): cheaper, no worse.
    assert pareto_front([1.0, 2.0, 3.0], [1.0, 1.0, -2.0], False) == [True, False, True]
    assert pareto_front([], [], True) == []


values = st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 1))


@given(st.lists(st.tuples(values, values), max_size=15), st.booleans())
def test_pareto_front_agrees_with_the_definition(
    points: list[tuple[float, float]], higher: bool
) -> None:
    sign = 1.0 if higher else -1.0
    costs = [c for c, _ in points]
    delta = [v for _, v in points]
    expected = [
        not any(
            c2 <= c and sign * v2 >= sign * v and (c2 < c or sign * v2 > sign * v)
            for j, (c2, v2) in enumerate(points)
            if j != i
        )
        for i, (c, v) in enumerate(points)
    ]
    assert pareto_front(costs, delta, higher) == expected
