"""Paired comparisons over shared seeds, and the ranks they allow.

A protocol seed is a common random number: it fixes the data order, the
augmentation draws and the initialisation of shared components, so the runs
of two submissions at the same seed are paired, and most of the seed-to-seed
spread cancels in their difference.  The two submissions are compared on the
seeds they share (matched by seed number, never by position); an unpaired
(Welch) test is the fallback when they share fewer than two.  Every result
says which test it used.

Why the paired t test and not an exact permutation or bootstrap interval:
the protocols have 3 seeds, and with k paired differences the sign-flip
permutation test has 2^k equally likely arrangements, so its two-sided p is
never below 2 / 2^k = 0.25 at k = 3; a bootstrap over 3 values is no better.
The t interval is the only one of the three that can separate two methods on
3 seeds; it assumes the differences are roughly normal.

Pure functions on plain numbers: no Streamlit, no database.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

from leaderboard.stats import LEVEL

Test = Literal["paired t", "Welch", "none"]
PAIRED_T: Test = "paired t"
WELCH: Test = "Welch"
NO_TEST: Test = "none"
_KINDS: tuple[Test, ...] = (NO_TEST, PAIRED_T, WELCH)  # codes 0, 1, 2 of the pairwise arrays

Values = Mapping[int, float]  # seed -> value


@dataclass(frozen=True)
class Difference:
    """second − first, compared over seeds (`compare`).

    `difference` is the mean of the paired differences over the shared seeds
    (paired t), or the difference of the two means over all seeds (Welch);
    [`low`, `high`] its interval at `level`; `p` two-sided.  `shared` counts
    the matched seeds; `improvement` is the probability of improvement over
    them (`probability_of_improvement`), None without a matched seed.  With
    no test (`test == "none"`), the interval, p and df are NaN.
    """

    test: Test
    difference: float
    low: float
    high: float
    p: float
    df: float
    shared: int
    n_first: int
    n_second: int
    improvement: float | None
    higher_is_better: bool
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (for these t tests, the same as p < 1 − level).

        Never without a test.
        """
        return not math.isnan(self.low) and (self.low > 0.0 or self.high < 0.0)

    @property
    def better(self) -> int:
        """+1 when the second is significantly better than the first, −1 worse, 0 neither."""
        if not self.significant:
            return 0
        return 1 if (self.difference > 0) == self.higher_is_better else -1

    def describe(self) -> str:
        """The test in words, as the site and the CLI print it.

        >>> compare({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 2: 4.2}, True).describe()
        'paired t, 3 seeds'
        >>> compare({0: 1.0, 1: 2.0}, {2: 3.0, 3: 4.0}, True).describe()
        'Welch, no shared seeds'
        >>> compare({0: 1.0, 1: 2.0}, {0: 3.0}, True).describe()
        'not testable (1 seed)'
        """
        shared = "no shared seeds" if self.shared == 0 else "1 shared seed"
        if self.test == PAIRED_T:
            return f"paired t, {self.shared} seeds"
        if self.test == WELCH:
            return f"Welch, {shared}"
        fewest = min(self.n_first, self.n_second)  # fewer than 2 on a side, ≤ 1 shared
        return f"not testable ({fewest} seed{'s' if fewest != 1 else ''})"

    def verdict(self) -> str:
        """'significantly better' / 'significantly worse' (the second against the first, by
        direction), 'not significant', or 'not testable'."""
        if self.test == NO_TEST:
            return "not testable"
        return {1: "significantly better", -1: "significantly worse", 0: "not significant"}[
            self.better
        ]


def probability_of_improvement(
    first: Values, second: Values, higher_is_better: bool
) -> float | None:
    """The share of matched seeds on which the second beats the first; a tie counts 1/2.

    PoI = (1/k) Σ_{s ∈ S} [1(y_s better than x_s) + ½·1(y_s = x_s)], S the k
    seeds both have, "better" by the direction.  Agarwal et al. (2021)
    estimate P(Y > X) over all pairs of runs (a Mann–Whitney statistic); with
    seeds as common random numbers, the matched pairs are the ones to count.
    None without a matched seed.

    >>> probability_of_improvement({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 2.0, 2: 1.0}, True)
    0.5
    >>> probability_of_improvement({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 2.0, 2: 1.0}, False)
    0.5
    >>> probability_of_improvement({0: 1.0, 1: 5.0}, {1: 4.0, 2: 9.0}, False)  # seed 1 only
    1.0
    >>> probability_of_improvement({0: 1.0}, {1: 2.0}, True) is None
    True
    """
    shared = sorted(first.keys() & second.keys())
    if not shared:
        return None
    sign = 1.0 if higher_is_better else -1.0
    score = 0.0
    for seed in shared:
        gain = sign * (second[seed] - first[seed])
        score += 1.0 if gain > 0 else 0.5 if gain == 0 else 0.0
    return score / len(shared)


def compare(
    first: Values, second: Values, higher_is_better: bool, level: float = LEVEL
) -> Difference:
    """second − first over seeds: a paired t test over the shared seeds, else Welch's test.

    Paired (k ≥ 2 shared seeds S; the others are left out): d_s = y_s − x_s,
    d̄ = (1/k) Σ d_s, s_d² = Σ (d_s − d̄)² / (k − 1); the interval is
    d̄ ± t_{(1+level)/2, k−1} · s_d / √k, and p = 2 · P(T_{k−1} > |d̄| / (s_d / √k))
    (`scipy.stats.ttest_rel`).

    Welch (fewer than 2 shared seeds; at least 2 seeds on each side): over all
    seeds of each, ȳ − x̄ ± t_{(1+level)/2, ν} · se, se² = s_x²/n_x + s_y²/n_y,
    ν = se⁴ / ((s_x²/n_x)²/(n_x − 1) + (s_y²/n_y)²/(n_y − 1))
    (`scipy.stats.ttest_ind(equal_var=False)`).

    No test otherwise.  With no spread at all (s_d = 0, or both samples
    constant) the difference is known exactly: the interval is the point
    [d̄, d̄], and p is 0 when d̄ ≠ 0 (scipy's t = ±inf) and NaN when d̄ = 0.

    Worked example, seeds 0, 1, 2 shared (seed 7 of the first is left out):
    d = (1, 1.5, 1.2), d̄ = 1.233333, s_d = 0.251661, se = s_d / √3 = 0.145297,
    t = 8.488382 on 2 df, p = 0.013596, interval 1.233333 ± 4.302653 · 0.145297
    = [0.608172, 1.858494]; the second is higher on all 3 seeds: PoI = 1.

    >>> d = compare({0: 1.0, 1: 2.0, 2: 3.0, 7: 9.0}, {0: 2.0, 1: 3.5, 2: 4.2}, True)
    >>> d.test, d.shared, round(d.difference, 6), round(d.low, 6), round(d.high, 6)
    ('paired t', 3, 1.233333, 0.608172, 1.858494)
    >>> round(d.p, 6), d.improvement, d.verdict()
    (0.013596, 1.0, 'significantly better')
    """
    _check_level(level)
    shared = sorted(first.keys() & second.keys())
    test: Test = NO_TEST
    low = high = p = df = math.nan
    if len(shared) >= 2:
        test = PAIRED_T
        x = np.array([first[s] for s in shared], dtype=float)
        y = np.array([second[s] for s in shared], dtype=float)
        mean, df = float((y - x).mean()), float(len(shared) - 1)
        if np.ptp(y - x) > 0:  # with no spread scipy warns and gives no interval
            with warnings.catch_warnings():
                # Nearly constant differences: scipy warns of precision loss; the
                # interval is then nearly a point, which is what the data say.
                warnings.simplefilter("ignore", RuntimeWarning)
                result = scipy_stats.ttest_rel(y, x)
            interval = result.confidence_interval(level)
            low, high, p = float(interval.low), float(interval.high), float(result.pvalue)
    else:
        xs = np.array(list(first.values()), dtype=float)
        ys = np.array(list(second.values()), dtype=float)
        mean = float(ys.mean() - xs.mean()) if len(xs) and len(ys) else math.nan
        if len(xs) >= 2 and len(ys) >= 2:
            test = WELCH
            if np.ptp(xs) > 0 or np.ptp(ys) > 0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    result = scipy_stats.ttest_ind(ys, xs, equal_var=False)
                interval = result.confidence_interval(level)
                low, high = float(interval.low), float(interval.high)
                p, df = float(result.pvalue), float(result.df)
    if test != NO_TEST and math.isnan(low):  # no spread: the difference is exact
        low = high = mean
        p = 0.0 if mean != 0.0 else math.nan
    return Difference(
        test, mean, low, high, p, df, len(shared), len(first), len(second),
        probability_of_improvement(first, second, higher_is_better), higher_is_better, level,
    )  # fmt: skip


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


# ---------------------------------------------------------------------------
# Every pair at once, for the ranking


@dataclass(frozen=True)
class Pairwise:
    """Every ordered pair (i, j) of entries: the test of x_j − x_i, as N×N arrays.

    `kind`: 0 no test, 1 paired t, 2 Welch (the rules of `compare`);
    `difference`, `se` (its standard error), `df`, `half` (the half-width of
    the interval: t_{(1+level)/2, df} · se; 0 with no spread, NaN without a
    test), `shared` (matched seeds).  Diagonal entries compare an entry with
    itself and mean nothing.
    """

    kind: np.ndarray
    difference: np.ndarray
    se: np.ndarray
    df: np.ndarray
    half: np.ndarray
    shared: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        """The interval excludes 0: |difference| > half (False without a test)."""
        with np.errstate(invalid="ignore"):
            return (self.kind != 0) & (np.abs(self.difference) > self.half)


# Rows of the N×N×S block of differences built at once: bounds the memory (about 16 MB).
_BLOCK_CELLS = 2_000_000


def pairwise(values: Sequence[Values], level: float = LEVEL) -> Pairwise:
    """`compare` of every ordered pair, vectorised (numpy; quantiles from scipy.stats.t).

    `scipy.stats.ttest_rel` per pair would cost about 10⁻⁴ s, and the ranges
    of ranks need every pair: 1,000 submissions are 10⁶ pairs.  Here the
    paired moments come from the explicit differences (two-pass, so that
    identical runs give exactly zero spread), in blocks of rows; the tests
    check that every pair agrees with `compare`.
    """
    _check_level(level)
    n = len(values)
    seeds = sorted({s for v in values for s in v})
    column = {s: c for c, s in enumerate(seeds)}
    matrix = np.full((n, len(seeds)), np.nan)
    for i, v in enumerate(values):
        for seed, value in v.items():
            matrix[i, column[seed]] = value
    counts = (~np.isnan(matrix)).sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.nansum(matrix, axis=1) / counts
        centred = np.where(np.isnan(matrix), 0.0, matrix - means[:, None])
        variances = (centred**2).sum(axis=1) / (counts - 1)
    shared = np.zeros((n, n))
    paired_mean = np.full((n, n), np.nan)
    paired_var = np.full((n, n), np.nan)
    rows = max(1, _BLOCK_CELLS // max(1, n * len(seeds)))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        d = matrix[None, :, :] - matrix[start:stop, None, :]  # x_j − x_i; NaN unless shared
        present = ~np.isnan(d)
        k = present.sum(axis=2)
        np.copyto(d, 0.0, where=~present)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = d.sum(axis=2) / k
            d -= mean[..., None]
            d *= present  # the seeds not shared contribute nothing
            paired_var[start:stop] = np.einsum("ijs,ijs->ij", d, d) / (k - 1)
        shared[start:stop] = k
        paired_mean[start:stop] = mean
    paired = shared >= 2
    welch = ~paired & (counts[:, None] >= 2) & (counts[None, :] >= 2)
    kind = np.where(paired, 1, np.where(welch, 2, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = variances[:, None] / counts[:, None]  # s_x² / n_x: the first, row i
        b = variances[None, :] / counts[None, :]  # s_y² / n_y: the second, column j
        se2_welch = a + b
        df_welch = se2_welch**2 / (a**2 / (counts[:, None] - 1) + b**2 / (counts[None, :] - 1))
        difference = np.where(paired, paired_mean, means[None, :] - means[:, None])
        se = np.where(paired, np.sqrt(paired_var / shared), np.sqrt(se2_welch))
        df = np.where(paired, shared - 1, df_welch)
    se = np.where(kind == 0, np.nan, se)
    half = np.full((n, n), np.nan)
    tested = kind != 0
    spread = tested & (se > 0)
    half[tested & (se == 0)] = 0.0
    if spread.any():
        quantile = (1.0 + level) / 2.0
        # Paired dfs are k − 1: one quantile per k, looked up; Welch's (rare) one by one.
        table = scipy_stats.t.ppf(quantile, np.arange(1, len(seeds) + 1))
        by_k = spread & paired
        half[by_k] = table[shared[by_k].astype(int) - 2] * se[by_k]
        by_welch = spread & ~paired
        if by_welch.any():
            half[by_welch] = scipy_stats.t.ppf(quantile, df[by_welch]) * se[by_welch]
    return Pairwise(kind, difference, se, np.where(tested, df, np.nan), half, shared)


def differences_at(
    pairs: Pairwise, which: Sequence[tuple[int, int]], values: Sequence[Values],
    higher_is_better: bool, level: float = LEVEL,
) -> list[Difference]:  # fmt: skip
    """The `Difference` of entry j − entry i for each (i, j) in `which`, read from `pairwise`
    of `values`; p (one vectorised call) and the probability of improvement computed here."""
    if not which:
        return []
    rows, columns = (np.array(axis, dtype=int) for axis in zip(*which, strict=True))
    kind = pairs.kind[rows, columns]
    mean, se, df = (a[rows, columns] for a in (pairs.difference, pairs.se, pairs.df))
    half = pairs.half[rows, columns]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2.0 * scipy_stats.t.sf(np.abs(mean) / se, df)
    p = np.where(se == 0.0, np.where(mean != 0.0, 0.0, np.nan), p)  # no spread: exact
    p = np.where(kind == 0, np.nan, p)
    return [
        Difference(
            test=_KINDS[int(kind[n])],
            difference=float(mean[n]),
            low=float(mean[n] - half[n]),
            high=float(mean[n] + half[n]),
            p=float(p[n]),
            df=float(df[n]),
            shared=int(pairs.shared[i, j]),
            n_first=len(values[i]),
            n_second=len(values[j]),
            improvement=probability_of_improvement(values[i], values[j], higher_is_better),
            higher_is_better=higher_is_better,
            level=level,
        )
        for n, (i, j) in enumerate(which)
    ]


# ---------------------------------------------------------------------------
# Ranks


@dataclass(frozen=True)
class Placement:
    """Where an entry stands in a ranking made from paired comparisons (`rank`).

    `rank` is its tie group leader's competition rank; `group` the tie
    group's number (1 is the best group); [`best`, `worst`] the ranks it could
    take.  `reference` is the index of the entry it was compared with to
    place it (its tie group's leader; for a leader, the leader of the group
    above; None for the first) and `difference` that comparison (this entry −
    the reference).
    """

    rank: int
    group: int
    best: int
    worst: int
    reference: int | None
    difference: Difference | None

    @property
    def tied(self) -> bool:
        """Placed in its group by a comparison that found no significant difference."""
        return self.difference is not None and not self.difference.significant


def mean_of(values: Values) -> float | None:
    """The mean over seeds (math.fsum / n, as `db.queries.mean_std`); None for no values."""
    return math.fsum(values.values()) / len(values) if values else None


def rank(
    values: Sequence[Values | None], higher_is_better: bool, level: float = LEVEL
) -> list[Placement | None]:
    """Ranks with tie groups from paired comparisons; None for an entry without values.

    Entries are ordered by their mean over all their seeds, best first
    (the order of the table).  Walking down that order, the first entry leads
    a tie group; each next entry is compared with the current group's leader
    (`compare`: paired t over the seeds they share, Welch with fewer than two
    shared, no test with too few seeds): it joins the group, with the
    leader's rank, unless the difference is significant (its interval at
    `level` excludes 0), in which case it leads a new group.  No test is no
    evidence of a difference: the entry joins the group.  A rank is a
    leader's competition rank, 1 + the number of entries with a strictly
    better mean, so ranks never decrease down the table.

    Range of ranks, from every pair: best = 1 + the number of entries
    significantly better than this one; worst = N − the number significantly
    worse, N the number of ranked entries.  With partly matched seeds,
    different pairs use different seeds, so these need not be consistent
    with the order of the means.

    Example, higher is better, seeds 0-2 shared: A (10, 12, 14), B (9, 11.5, 13.2)
    and C (5, 8, 6).  B − A = (−1, −0.5, −0.8): mean −0.767, interval
    −0.767 ± 4.303 · 0.252 / √3 = [−1.39, −0.14], significant, so B leads
    a new group at rank 2; C − B = (−4, −3.5, −7.2), interval [−9.9, 0.09],
    includes 0: C ties with B at rank 2.  C − A = (−5, −4, −8) is
    significant ([−10.8, −0.5]): C's range is 2–3 (only A is significantly
    better); B's is 2–3 too (A is better, C not significantly worse); A's is 1.

    >>> a, b, c = {0: 10, 1: 12, 2: 14}, {0: 9, 1: 11.5, 2: 13.2}, {0: 5, 1: 8, 2: 6}
    >>> [(p.rank, p.group, p.best, p.worst) for p in rank([a, b, c], True)]
    [(1, 1, 1, 1), (2, 2, 2, 3), (2, 2, 2, 3)]
    """
    known = [i for i, v in enumerate(values) if v]
    found: list[Values] = [values[i] or {} for i in known]
    out: list[Placement | None] = [None] * len(values)
    if not known:
        return out
    pairs = pairwise(found, level)
    sign = 1.0 if higher_is_better else -1.0
    oriented = [sign * float(mean_of(v) or 0.0) for v in found]  # higher is better now
    order = sorted(range(len(found)), key=lambda a: -oriented[a])  # stable: input order on ties
    significant = pairs.significant
    gain = sign * pairs.difference  # > 0 where column j beats row i
    with np.errstate(invalid="ignore"):
        better_than_me = (significant & (gain > 0)).sum(axis=1)  # j significantly better than i
        worse_than_me = (significant & (gain < 0)).sum(axis=1)
    n = len(found)
    leader: int | None = None
    leader_rank = group = 0
    competition, previous = 0, math.inf
    placed: list[tuple[int, int, int, int | None]] = []  # (entry, rank, group, reference)
    for position, a in enumerate(order, start=1):
        if oriented[a] != previous:  # equal means share the position of the first of them
            competition, previous = position, oriented[a]
        reference = leader
        if leader is None or significant[leader, a]:
            leader, leader_rank, group = a, competition, group + 1
        placed.append((a, leader_rank, group, reference))
    compared = [(reference, a) for a, _, _, reference in placed if reference is not None]
    found_differences = iter(differences_at(pairs, compared, found, higher_is_better, level))
    for a, leader_rank, group, reference in placed:
        out[known[a]] = Placement(
            rank=leader_rank,
            group=group,
            best=1 + int(better_than_me[a]),
            worst=n - int(worse_than_me[a]),
            reference=None if reference is None else known[reference],
            difference=None if reference is None else next(found_differences),
        )
    return out


def all_tied(placements: Sequence[Placement | None]) -> bool:
    """Two or more ranked entries, all in one tie group."""
    ranked = [p for p in placements if p is not None]
    return len(ranked) >= 2 and all(p.group == 1 for p in ranked)


__all__ = [
    "NO_TEST",
    "PAIRED_T",
    "WELCH",
    "Difference",
    "Pairwise",
    "Placement",
    "all_tied",
    "compare",
    "differences_at",
    "mean_of",
    "pairwise",
    "probability_of_improvement",
    "rank",
]
