"""Paired comparisons and the ranks they allow: hand-computed values, scipy, the definitions."""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from leaderboard.paired import (
    NO_TEST,
    PAIRED_T,
    WELCH,
    Difference,
    Values,
    all_tied,
    compare,
    differences_at,
    pairwise,
    probability_of_improvement,
    rank,
)

T2 = 4.302652729749464  # t(0.975, 2)


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=tol, abs_tol=tol)


# ---------------------------------------------------------------------------
# One comparison


def test_paired_by_hand() -> None:
    # d = (1, 1.5, 1.2): mean 1.233333, s_d² = (0.054444 + 0.071111 + 0.001111) / 2 = 0.063333,
    # se = √(0.063333 / 3) = 0.145297, t = 8.488382, half = 4.302653 · 0.145297 = 0.625161.
    d = compare({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 2: 4.2}, higher_is_better=True)
    assert d.test == PAIRED_T and d.shared == 3 and d.df == 2
    assert close(d.difference, 3.7 / 3)
    se = math.sqrt(0.19 / 3 / 3)
    assert close(d.half_width, T2 * se)
    assert close(d.low, 3.7 / 3 - T2 * se) and close(d.high, 3.7 / 3 + T2 * se)
    assert close(d.p, 2 * stats.t.sf(3.7 / 3 / se, 2)) and math.isclose(d.p, 0.013596, abs_tol=1e-6)
    assert d.improvement == 1.0 and d.significant and d.better == 1
    assert d.verdict() == "significantly better" and d.describe() == "paired t, 3 seeds"
    # Lower is better: the same numbers are significantly worse, and never an improvement.
    worse = compare({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 2: 4.2}, higher_is_better=False)
    assert worse.verdict() == "significantly worse" and worse.improvement == 0.0


def test_partially_matched_seeds_pair_on_the_shared_ones() -> None:
    # Seeds 5 and 9 are the first's only, 7 the second's only: the test uses 0, 1, 2.
    first = {9: 100.0, 0: 1.0, 1: 2.0, 2: 3.0, 5: -40.0}
    second = {2: 4.2, 7: 0.0, 0: 2.0, 1: 3.5}
    d = compare(first, second, True)
    matched = compare({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 2: 4.2}, True)
    assert d.test == PAIRED_T and (d.shared, d.n_first, d.n_second) == (3, 5, 4)
    assert (d.difference, d.low, d.high, d.p) == (
        matched.difference, matched.low, matched.high, matched.p,
    )  # fmt: skip
    # Pairing by seed number, not by position: the second's values listed in another order.
    assert compare(first, dict(reversed(second.items())), True).difference == d.difference


def test_unmatched_seeds_fall_back_to_welch() -> None:
    # R: t.test(4:6, 1:3) -> t = 3.6742, df = 4, p-value = 0.02131, 95% CI 0.7330 5.2670.
    d = compare({0: 1.0, 1: 2.0, 2: 3.0}, {3: 4.0, 4: 5.0, 5: 6.0}, True)
    assert d.test == WELCH and d.shared == 0 and d.improvement is None
    assert d.difference == 3.0 and close(d.df, 4.0)
    assert math.isclose(d.p, 0.021312, abs_tol=1e-6)
    assert math.isclose(d.low, 0.733042, abs_tol=1e-6) and math.isclose(
        d.high, 5.266958, abs_tol=1e-6
    )
    assert d.describe() == "Welch, no shared seeds" and d.verdict() == "significantly better"


def test_one_shared_seed_is_welch_over_all_seeds() -> None:
    # a: 1, 2, 3 (mean 2, var 1); b: 10, 20, 30, 40 (mean 25, var 166.67); seed 0 shared.
    # se² = 1/3 + 166.67/4 = 42, df = 42² / ((1/3)²/2 + 41.667²/3) = 3.047900, p = 0.037163.
    a = {0: 1.0, 1: 2.0, 2: 3.0}
    b = {0: 10.0, 5: 20.0, 6: 30.0, 7: 40.0}
    d = compare(a, b, higher_is_better=False)
    assert d.test == WELCH and d.shared == 1 and d.describe() == "Welch, 1 shared seed"
    assert d.difference == 23.0
    assert close(d.df, 42.0**2 / ((1 / 3) ** 2 / 2 + (500 / 12) ** 2 / 3))
    assert math.isclose(d.p, 0.037163, abs_tol=1e-6)
    assert close(d.half_width, stats.t.ppf(0.975, d.df) * math.sqrt(42.0))
    assert d.improvement == 0.0  # seed 0: 10 against 1, lower being better
    assert d.verdict() == "significantly worse"


@pytest.mark.parametrize(
    ("first", "second", "described"),
    [
        ({0: 1.0, 1: 2.0}, {0: 3.0}, "not testable (1 seed)"),
        ({0: 1.0}, {1: 3.0}, "not testable (1 seed)"),
        ({}, {0: 1.0, 1: 2.0}, "not testable (0 seeds)"),
    ],
)
def test_too_few_seeds_is_no_test(first: Values, second: Values, described: str) -> None:
    d = compare(first, second, True)
    assert d.test == NO_TEST and d.describe() == described and d.verdict() == "not testable"
    assert math.isnan(d.p) and math.isnan(d.low) and not d.significant and d.better == 0


def test_no_spread_is_an_exact_difference() -> None:
    # The same difference on every seed: known exactly, as scipy's t = inf says (p = 0).
    d = compare({0: 1.0, 1: 2.0, 2: 3.0}, {0: 3.0, 1: 4.0, 2: 5.0}, True)
    assert (d.low, d.high, d.p) == (2.0, 2.0, 0.0) and d.significant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: "precision loss"
        assert stats.ttest_rel([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]).pvalue == 0.0
    # Identical runs: no difference at all, a tie.
    same = compare({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}, True)
    assert (same.low, same.high, same.difference) == (0.0, 0.0, 0.0) and math.isnan(same.p)
    assert not same.significant and same.improvement == 0.5
    # Two constant samples without shared seeds: Welch, exact too.
    welch = compare({0: 1.0, 1: 1.0}, {2: 4.0, 3: 4.0}, True)
    assert welch.test == WELCH and (welch.low, welch.high, welch.p) == (3.0, 3.0, 0.0)


def test_probability_of_improvement_counts_ties_as_half() -> None:
    first = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
    second = {0: 2.0, 1: 2.0, 2: 1.0, 3: 5.0, 4: 99.0}  # seed 4 is not matched
    # Higher is better: seeds 0 and 3 improve, 1 ties, 2 does not: (2 + 0.5) / 4.
    assert probability_of_improvement(first, second, True) == 0.625
    assert probability_of_improvement(first, second, False) == 0.375
    assert probability_of_improvement(first, {9: 1.0}, True) is None


def test_the_level_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 95"):
        compare({0: 1.0}, {0: 2.0}, True, level=95)
    with pytest.raises(ValueError, match="level must be in"):
        rank([{0: 1.0}], True, level=0.0)


seed_values = st.dictionaries(
    st.integers(0, 5), st.floats(-50, 50, allow_nan=False).map(lambda x: round(x, 2)), max_size=5
)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, nearly constant
@settings(max_examples=300, deadline=None)
@given(seed_values, seed_values, st.booleans())
def test_compare_is_scipy(first: Values, second: Values, higher: bool) -> None:
    """Directly against scipy.stats: ttest_rel on the shared seeds, else Welch's ttest_ind."""
    d = compare(first, second, higher)
    shared = sorted(first.keys() & second.keys())
    x, y = [first[s] for s in shared], [second[s] for s in shared]
    if len(shared) >= 2:
        assert d.test == PAIRED_T
        if len({b - a for a, b in zip(x, y, strict=True)}) > 1:
            reference = stats.ttest_rel(y, x)
            interval = reference.confidence_interval(0.95)
            assert close(d.p, reference.pvalue, 1e-7)
            assert close(d.low, interval.low, 1e-7) and close(d.high, interval.high, 1e-7)
    elif len(first) >= 2 and len(second) >= 2:
        assert d.test == WELCH
        if len(set(first.values())) > 1 or len(set(second.values())) > 1:
            reference = stats.ttest_ind(
                list(second.values()), list(first.values()), equal_var=False
            )
            assert close(d.p, reference.pvalue, 1e-7) and close(d.df, reference.df, 1e-7)
    else:
        assert d.test == NO_TEST
    # The interval excludes 0 exactly when p < 0.05 (away from the knife edge).
    if math.isnan(d.p):
        assert not d.significant
    elif not math.isclose(d.p, 0.05, rel_tol=1e-6):
        assert d.significant == (d.p < 0.05)


@settings(max_examples=200, deadline=None)
@given(st.lists(seed_values, min_size=2, max_size=6), st.booleans())
def test_every_pair_at_once_agrees_with_compare(values: list[Values], higher: bool) -> None:
    pairs = pairwise(values)
    which = [(i, j) for i in range(len(values)) for j in range(len(values)) if i != j]
    for (i, j), found in zip(which, differences_at(pairs, which, values, higher), strict=True):
        expected = compare(values[i], values[j], higher)
        assert (found.test, found.shared, found.improvement) == (
            expected.test, expected.shared, expected.improvement,
        )  # fmt: skip
        for field in ("difference", "low", "high", "p", "df"):
            assert close(getattr(found, field), getattr(expected, field), 1e-7), field
        assert found.significant == expected.significant
        assert bool(pairs.significant[i, j]) == expected.significant


# ---------------------------------------------------------------------------
# Ranks


def placements(values: list[Values | None], higher: bool = True) -> list[tuple[int, ...] | None]:
    return [None if p is None else (p.rank, p.group, p.best, p.worst) for p in rank(values, higher)]


def test_ranks_by_hand() -> None:
    # A (10, 12, 14), B (9, 11.5, 13.2), C (5, 8, 6), seeds 0-2.  B − A = (−1, −0.5, −0.8):
    # [−1.39, −0.14], significant: B leads group 2.  C − B = (−4, −3.5, −7.2): [−9.89, 0.09],
    # a tie with B.  C − A = (−5, −4, −8): [−10.84, −0.50], significant.
    a, b, c = {0: 10.0, 1: 12.0, 2: 14.0}, {0: 9.0, 1: 11.5, 2: 13.2}, {0: 5.0, 1: 8.0, 2: 6.0}
    assert placements([c, a, None, b]) == [(2, 2, 2, 3), (1, 1, 1, 1), None, (2, 2, 2, 3)]
    found = rank([c, a, None, b], True)
    assert found[1] is not None and found[1].reference is None and found[1].difference is None
    assert found[3] is not None and found[3].reference == 1  # B was placed against A
    assert found[0] is not None and found[0].reference == 3 and found[0].tied  # C against B
    # Lower is better: C leads; B − C = (4, 3.5, 7.2), [−0.09, 9.89], ties with it;
    # A − C = (5, 4, 8), [0.50, 10.84], is significantly worse: rank 3, and A − B too.
    assert placements([c, a, None, b], higher=False) == [(1, 1, 1, 2), (3, 2, 3, 3), None,
                                                         (1, 1, 1, 2)]  # fmt: skip


def test_paired_seeds_separate_what_unpaired_intervals_do_not() -> None:
    """The demo's situation: a seed moves every method together (common random numbers)."""
    seed_effect = [-20.0, 0.0, 25.0]
    equal = {s: 10.0 + e for s, e in enumerate(seed_effect)}
    uncertainty = {s: 11.0 + e + n for s, (e, n) in enumerate(zip(seed_effect, (0.5, -1, 1),
                                                                  strict=True))}  # fmt: skip
    mgda = {s: -4.0 + e + n for s, (e, n) in enumerate(zip(seed_effect, (2, -3, 1), strict=True))}
    # Unpaired, every interval is ±56: everything would overlap.  Paired, MGDA stands apart.
    assert placements([equal, uncertainty, mgda]) == [(1, 1, 1, 2), (1, 1, 1, 2), (3, 2, 3, 3)]
    d = compare(equal, mgda, True)
    assert d.test == PAIRED_T and d.significant and d.verdict() == "significantly worse"
    assert d.improvement == 0.0
    assert compare(equal, uncertainty, True).verdict() == "not significant"


def test_unmatched_and_partially_matched_entries() -> None:
    # A and B share seeds 0-2; C ran seeds 3-5 only (Welch against them); D has one seed.
    a = {0: 10.0, 1: 12.0, 2: 14.0}
    b = {0: 9.0, 1: 11.5, 2: 13.2}
    c = {3: 0.0, 4: 1.0, 5: 2.0}
    d = {0: 11.5}
    found = rank([a, b, c, d], True)
    # By mean: A 12, D 11.5, B 11.23, C 1.  A leads; D against A: one shared seed and one
    # seed of D's: no test, so no evidence of a difference: a tie at rank 1.  B against A:
    # paired, significant: group 2, rank 3.  C against B: Welch, no shared seeds,
    # −10.23 ± 4.4: significant: group 3, rank 4.
    assert [(p.rank, p.group) for p in found if p is not None] == [(1, 1), (3, 2), (4, 3), (1, 1)]
    _, _, pc, pd_ = found
    assert pd_ is not None and pd_.difference is not None
    assert pd_.difference.test == NO_TEST and pd_.difference.describe() == "not testable (1 seed)"
    assert pc is not None and pc.difference is not None and pc.difference.test == WELCH
    assert pc.difference.describe() == "Welch, no shared seeds"
    # Ranges: B and C are significantly below A (paired; Welch), C below B (Welch); D,
    # with one seed, tests against nothing, so it could take any rank.
    assert [(p.best, p.worst) for p in found if p is not None] == [(1, 2), (2, 3), (3, 4), (1, 4)]


def test_no_values_no_rank_and_every_entry_tied() -> None:
    assert rank([], True) == [] and rank([None, {}], True) == [None, None]
    one = rank([{0: 1.0}], True)
    assert [(p.rank, p.best, p.worst) for p in one if p is not None] == [(1, 1, 1)]
    assert not all_tied(one)
    noisy = rank([{0: 1.0, 1: 5.0}, {0: 2.0, 1: 3.0}, {0: 0.0, 1: 6.0}], True)
    assert [p.rank for p in noisy if p is not None] == [1, 1, 1] and all_tied(noisy)
    assert not all_tied(rank([{0: 1.0, 1: 2.0}, {0: 5.0, 1: 6.0}], True))


def by_the_definition(values: list[Values | None], higher: bool) -> list[tuple[int, ...] | None]:
    """The docstring of `rank`, literally, with `compare` for every test."""
    sign = 1.0 if higher else -1.0
    means = {i: sign * math.fsum(v.values()) / len(v) for i, v in enumerate(values) if v}
    order = sorted(means, key=lambda i: (-means[i], i))

    def test(i: int, j: int) -> Difference:  # j − i
        return compare(values[i] or {}, values[j] or {}, higher)

    out: list[tuple[int, ...] | None] = [None] * len(values)
    leader, group = None, 0
    for i in order:
        if leader is None or test(leader, i).significant:
            leader, group = i, group + 1
        competition = 1 + sum(means[j] > means[leader] for j in means)
        better = sum(test(i, j).better == 1 for j in means if j != i)
        worse = sum(test(i, j).better == -1 for j in means if j != i)
        out[i] = (competition, group, 1 + better, len(means) - worse)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), seed_values), max_size=7), st.booleans())
def test_rank_agrees_with_the_definition(values: list[Values | None], higher: bool) -> None:
    assert placements(values, higher) == by_the_definition(values, higher)
    found = [p for p in rank(values, higher) if p is not None]
    ranks_down_the_table = [p.rank for p in sorted(found, key=lambda p: (p.group, p.rank))]
    assert ranks_down_the_table == sorted(ranks_down_the_table)
