"""Statistics of the site against hand-computed values, references and brute force."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leaderboard.stats import (
    half_width,
    pareto_front,
    rank_ranges,
    t_quantile,
    tied_ranks,
    welch,
)


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


def test_welch_matches_r() -> None:
    # R: t.test(c(1, 2, 3), c(4, 5, 6)) -> t = -3.6742, df = 4, p-value = 0.02131
    test = welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert test.difference == -3.0
    assert math.isclose(test.t, -3.674235, abs_tol=1e-6)
    assert math.isclose(test.df, 4.0, abs_tol=1e-12)
    assert math.isclose(test.p, 0.021312, abs_tol=1e-6)


def test_welch_unequal_variances_by_hand() -> None:
    # a: mean 2, var 1, n 3; b: 10, 20, 30, 40: mean 25, var 166.67, n 4.
    # se² = 1/3 + 166.67/4 = 42.0; t = -23 / √42 = -3.548979;
    # df = 42² / ((1/3)²/2 + 41.6667²/3) = 1764 / 578.7593 = 3.047900.
    test = welch([1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0])
    assert math.isclose(test.t, -23 / math.sqrt(42.0), rel_tol=1e-12)
    assert math.isclose(test.df, 42.0**2 / ((1 / 3) ** 2 / 2 + (500 / 12) ** 2 / 3), rel_tol=1e-12)
    # Two-sided p from the t(3.0479) distribution: 0.037163.
    assert math.isclose(test.p, 0.037163, abs_tol=1e-6)


@pytest.mark.parametrize(("a", "b"), [([1.0], [1.0, 2.0]), ([1.0, 1.0], [2.0, 2.0]), ([], [1.0])])
def test_welch_undefined(a: list[float], b: list[float]) -> None:
    assert math.isnan(welch(a, b).p)


# ---------------------------------------------------------------------------
# Ties


def test_tied_ranks_share_the_best_overlapping_rank() -> None:
    # Intervals: A [8, 12], B [7, 11], C [4, 6]: A and B overlap, C stands alone.
    assert tied_ranks([10.0, 9.0, 5.0], [2.0, 2.0, 1.0], higher_is_better=True) == [1, 1, 3]


def test_ties_are_with_the_group_leader() -> None:
    # A [8.5, 11.5], B [6.5, 9.5], C [4.5, 7.5]: A-B and B-C overlap, A-C do not.  B joins
    # A's group; C does not overlap the leader A, so it leads a group at its own rank, 3.
    assert tied_ranks([10.0, 8.0, 6.0], [1.5, 1.5, 1.5], higher_is_better=True) == [1, 1, 3]
    # A wide interval further down does not pull a method up past narrower ones:
    # D [9, 11] leads; E [7.9, 8.1] apart; F [2, 12] overlaps E, its leader: ranks never
    # decrease down the table.
    assert tied_ranks([10.0, 8.0, 7.0], [1.0, 0.1, 5.0], True) == [1, 2, 2]


def test_lower_is_better_and_missing_means() -> None:
    # Lower is better: -3 [-3.5, -2.5] best, -2 [-2.2, -1.8] apart, 0 [-1, 1] apart.
    means = [-2.0, None, -3.0, 0.0]
    halves = [0.2, None, 0.5, 1.0]
    assert tied_ranks(means, halves, higher_is_better=False) == [2, None, 1, 3]
    # With a wider interval the second overlaps the first.
    assert tied_ranks(means, [0.6, None, 0.5, 1.0], higher_is_better=False) == [1, None, 1, 3]


def test_one_seed_is_a_point_and_equal_means_tie() -> None:
    assert tied_ranks([5.0, 5.0, 4.0], [None, None, None], True) == [1, 1, 3]
    # A point inside another's interval ties with it.
    assert tied_ranks([5.0, 4.5], [1.0, None], True) == [1, 1]
    assert tied_ranks([], [], True) == []
    with pytest.raises(ValueError, match="2 means but 1"):
        tied_ranks([1.0, 2.0], [None], True)


def _by_the_definition(
    means: list[float | None], halves: list[float | None], higher: bool
) -> list[int | None]:
    """The docstring's definition, literally."""
    sign = 1.0 if higher else -1.0
    known = sorted((i for i, m in enumerate(means) if m is not None),
                   key=lambda i: -sign * means[i])  # type: ignore[operator]  # fmt: skip

    def interval(i: int) -> tuple[float, float]:
        m, h = float(means[i]), halves[i] or 0.0  # type: ignore[arg-type]
        return m - h, m + h

    def competition(i: int) -> int:
        return 1 + sum(sign * means[j] > sign * means[i] for j in known)  # type: ignore[operator]

    out: list[int | None] = [None] * len(means)
    leader: int | None = None
    for i in known:
        if leader is None or not (
            interval(leader)[0] <= interval(i)[1] and interval(i)[0] <= interval(leader)[1]
        ):
            leader = i
        out[i] = competition(leader)
    return out


values = st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 1))
halves_ = st.one_of(st.none(), st.floats(0, 20, allow_nan=False).map(lambda x: round(x, 1)))


@given(st.lists(st.tuples(st.one_of(st.none(), values), halves_), max_size=12), st.booleans())
def test_tied_ranks_agree_with_the_definition(
    pairs: list[tuple[float | None, float | None]], higher: bool
) -> None:
    means = [m for m, _ in pairs]
    halves = [h for _, h in pairs]
    assert tied_ranks(means, halves, higher) == _by_the_definition(means, halves, higher)


def test_rank_ranges() -> None:
    # A [8, 12], B [7, 11], C [4, 6]: A or B can be first or second; C is third.
    assert rank_ranges([10.0, 9.0, 5.0], [2.0, 2.0, 1.0], True) == [(1, 2), (1, 2), (3, 3)]
    assert rank_ranges([10.0, 9.0, 5.0], [2.0, 2.0, 1.0], False) == [(2, 3), (2, 3), (1, 1)]
    assert rank_ranges([1.0, None], [None, None], True) == [(1, 1), None]


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
