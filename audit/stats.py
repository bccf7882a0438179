"""Statistics for plugin authors: ranks, AUROC, bootstrap replicates, intervals, tests and multiplicity control.

Public API (documented in docs/plugins.md): the built-in analyses use these
instead of private copies, and a third-party analysis gets the same numbers.
Everything takes a ``numpy.random.Generator`` where it draws, so results
follow the run's seed. numpy is imported here, not in ``audit`` itself.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from statistics import NormalDist
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

__all__ = [
    "auroc", "average_ranks", "binned_means", "bootstrap_group_means", "bootstrap_means", "percentile_interval",
    # Intervals, tests and multiplicity control that verdicts rest on: closed-form or exact on
    # counts, vectorised, free of SciPy; each names its method so a finding can record it.
    "Interval", "GapEstimate", "AurocEstimate", "Verdict", "z_value", "wilson", "clopper_pearson",
    "newcombe_difference", "ratio_log_adjusted", "absolute_gap_interval", "min_over_max_interval",
    "largest_difference", "smallest_ratio", "homogeneity_test", "chi_square_sf", "auroc_interval",
    "paired_mean_difference", "t_quantile", "holm", "benjamini_hochberg", "adjust", "family_level",
    "percentile_interval_with_error", "verdict", "rows_to_decide",
    # Families of checks: verdicts with the error rate controlled across them.
    "CORRECTIONS", "FamilyMember", "FamilyDecision", "decide_family",
]

Verdict = Literal["passed", "failed", "inconclusive"]


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n of a 1-d array, ties given their average rank (as ``scipy.stats.rankdata``'s default)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values) != 0) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    group_rank = (starts + ends + 1) / 2.0  # mean of positions start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def auroc(positive_scores, negative_scores) -> float:
    """Area under the ROC curve: P(a positive scores above a negative) + half the ties (Mann-Whitney U / n_pos n_neg).

    NaN when either side is empty.
    """
    positive_scores = np.asarray(positive_scores, dtype=np.float64)
    negative_scores = np.asarray(negative_scores, dtype=np.float64)
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.concatenate([positive_scores, negative_scores]))
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binned_means(values, codes, n_groups: int, n_bins: int):
    """Per group, counts and sums of ``values`` in ``n_bins`` equal-width bins of [min, max].

    Bin sums (not midpoints) keep every group mean exact; a bootstrap over
    the bins loses only the spread within a bin.
    """
    values = np.asarray(values, dtype=np.float64)
    lo, hi = float(np.min(values)), float(np.max(values))
    width = (hi - lo) / n_bins if hi > lo else 1.0
    bins = np.clip(((values - lo) / width).astype(np.int64), 0, n_bins - 1)
    flat = np.asarray(codes) * n_bins + bins
    counts = np.bincount(flat, minlength=n_groups * n_bins).reshape(n_groups, n_bins).astype(np.float64)
    sums = np.bincount(flat, weights=values, minlength=n_groups * n_bins).reshape(n_groups, n_bins)
    return counts, sums


def bootstrap_group_means(counts, sums, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Bootstrap replicates (B, G) of each group's mean from its binned values (resampled within the group)."""
    n = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        bin_means = np.where(counts > 0, sums / counts, 0.0)
        shares = np.where(n[:, None] > 0, counts / n[:, None], 0.0)
    out = np.full((n_boot, len(n)), np.nan)
    for g in np.flatnonzero(n > 0):  # one vectorised draw per group: (B, bins)
        draws = rng.multinomial(int(n[g]), shares[g], size=n_boot)
        out[:, g] = draws @ bin_means[g] / n[g]
    return out


def bootstrap_means(values, rng: np.random.Generator, n_boot: int, exact_limit: int | None = 4_000_000) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the mean of ``values``.

    Rows are resampled with replacement (index resampling) while
    ``len(values) * n_boot`` is at most ``exact_limit`` (None: always); above
    it, values are binned in 1024 bins and the bins resampled (multinomial),
    at a cost independent of the number of rows. Empty ``values``: NaN replicates.
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return np.full(n_boot, np.nan)
    if exact_limit is None or n * n_boot <= exact_limit:
        index = rng.integers(0, n, size=(n_boot, n))
        return values[index].mean(axis=1)
    counts, sums = binned_means(values, np.zeros(n, dtype=np.int64), 1, 1024)
    return bootstrap_group_means(counts, sums, rng, n_boot)[:, 0]


def percentile_interval(replicates, axis: int = 0, level: float = 0.95):
    """(lower, upper) percentile interval of bootstrap replicates, ignoring replicates where the value is undefined (NaN)."""
    alpha = (1 - level) / 2
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, said once by the caller
        lower = np.nanquantile(replicates, alpha, axis=axis)
        upper = np.nanquantile(replicates, 1 - alpha, axis=axis)
    return lower, upper



@dataclass(frozen=True)
class Interval:
    """A two-sided interval with its level and the method that made it."""

    lower: float
    upper: float
    level: float
    method: str

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def z_value(level: float) -> float:
    """Two-sided standard-normal quantile for a confidence level (0.95 -> 1.95996...)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, not {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


# --- one proportion ------------------------------------------------------------------

def wilson(successes, trials, level: float = 0.95):
    """Wilson score interval for a binomial proportion, arrays allowed.

    Unlike the Wald interval or a percentile bootstrap it has width at 0/n and n/n
    (a 10/10 group gets [0.72, 1.00], not [1.00, 1.00]). n = 0 gives (nan, nan).
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = z_value(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denominator = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denominator
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
        lower = np.where(k <= 0, 0.0, centre - half)
        upper = np.where(k >= n, 1.0, centre + half)
    lower = np.where(n > 0, np.clip(lower, 0.0, 1.0), np.nan)
    upper = np.where(n > 0, np.clip(upper, 0.0, 1.0), np.nan)
    return _unwrap(lower), _unwrap(upper)


def clopper_pearson(successes, trials, level: float = 0.95):
    """Exact (Clopper-Pearson) interval: conservative, never below its level.

    The beta quantiles are found by bisection on the binomial tail, which keeps the
    module free of SciPy; 60 halvings give full double precision.
    """
    k = np.atleast_1d(np.asarray(successes, dtype=float))
    n = np.atleast_1d(np.asarray(trials, dtype=float))
    k, n = np.broadcast_arrays(k, n)
    alpha = 1.0 - level
    lower = np.empty(k.shape)
    upper = np.empty(k.shape)
    for index in np.ndindex(k.shape):
        kk, nn = int(k[index]), int(n[index])
        if nn <= 0:
            lower[index] = upper[index] = np.nan
            continue
        # lower: P(X >= k | p) = alpha/2; upper: P(X <= k | p) = alpha/2.
        lower[index] = 0.0 if kk == 0 else _bisect(lambda p: _binomial_sf(kk - 1, nn, p) - alpha / 2, increasing=True)
        upper[index] = 1.0 if kk == nn else _bisect(lambda p: _binomial_cdf(kk, nn, p) - alpha / 2, increasing=False)
    shape = np.broadcast(np.asarray(successes), np.asarray(trials)).shape
    return _unwrap(lower.reshape(shape)), _unwrap(upper.reshape(shape))


def _binomial_cdf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0 if k < n else 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _binomial_sf(k: int, n: int, p: float) -> float:
    """P(X > k)."""
    return 1.0 - _binomial_cdf(k, n, p)


def _bisect(function, increasing: bool) -> float:
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2.0
        value = function(middle)
        if (value < 0) == increasing:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


# --- two proportions -------------------------------------------------------------------

def newcombe_difference(successes_a, trials_a, successes_b, trials_b, level: float = 0.95):
    """Newcombe's hybrid score interval for p_a - p_b (his method 10), arrays allowed.

    Built from the two Wilson intervals; it keeps its coverage at 0/n and n/n and
    contains 0 when the groups do not differ, which a bootstrap of the difference of
    group extremes cannot.
    """
    p_a = np.asarray(successes_a, dtype=float) / np.asarray(trials_a, dtype=float)
    p_b = np.asarray(successes_b, dtype=float) / np.asarray(trials_b, dtype=float)
    lower_a, upper_a = (np.asarray(v) for v in wilson(successes_a, trials_a, level))
    lower_b, upper_b = (np.asarray(v) for v in wilson(successes_b, trials_b, level))
    difference = p_a - p_b
    lower = difference - np.sqrt((p_a - lower_a) ** 2 + (upper_b - p_b) ** 2)
    upper = difference + np.sqrt((upper_a - p_a) ** 2 + (p_b - lower_b) ** 2)
    return _unwrap(lower), _unwrap(upper)


def ratio_log_adjusted(successes_a, trials_a, successes_b, trials_b, level: float = 0.95):
    """Interval for p_a / p_b on the log scale with 0.5 added to counts and trials.

    The adjustment (Fagerland, Lydersen and Laake's "adjusted log") keeps the interval
    finite when a group has no successes; the point estimate stays the raw ratio.
    """
    k_a = np.asarray(successes_a, dtype=float) + 0.5
    n_a = np.asarray(trials_a, dtype=float) + 0.5
    k_b = np.asarray(successes_b, dtype=float) + 0.5
    n_b = np.asarray(trials_b, dtype=float) + 0.5
    z = z_value(level)
    log_ratio = np.log(k_a / n_a) - np.log(k_b / n_b)
    standard_error = np.sqrt(1.0 / k_a - 1.0 / n_a + 1.0 / k_b - 1.0 / n_b)
    return _unwrap(np.exp(log_ratio - z * standard_error)), _unwrap(np.exp(log_ratio + z * standard_error))


def absolute_gap_interval(lower: float, upper: float) -> tuple[float, float]:
    """Interval for |d| from an interval for a signed difference d.

    It contains 0 exactly when the signed interval does, so its coverage at a true
    gap of 0 is the signed interval's (not 100%, not 0%).
    """
    if lower <= 0.0 <= upper:
        return 0.0, max(-lower, upper)
    return min(abs(lower), abs(upper)), max(abs(lower), abs(upper))


def min_over_max_interval(lower: float, upper: float) -> tuple[float, float]:
    """Interval for min(r, 1/r) (a parity ratio, at most 1) from an interval for r."""
    if lower <= 1.0 <= upper:
        return min(lower, 1.0 / upper if upper > 0 else 0.0), 1.0
    if upper < 1.0:
        return lower, upper
    return 1.0 / upper, 1.0 / lower


# --- many groups -------------------------------------------------------------------------

@dataclass(frozen=True)
class GapEstimate:
    """The largest gap between group rates, with a simultaneous interval and a test."""

    estimate: float
    lower: float
    upper: float
    level: float
    method: str
    high_group: int
    low_group: int
    comparisons: int
    p_value: float


def _pairwise(successes, trials, level: float, what: str):
    """Non-empty groups' counts, every pair of them, and the per-pair level that keeps the pairs simultaneous."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    keep = np.flatnonzero(n > 0)
    if keep.size < 2:
        raise ValueError(f"{what} needs at least two non-empty groups")
    first, second = np.triu_indices(keep.size, k=1)
    return k[keep], n[keep], keep, first, second, family_level(level, first.size)


def _gap(estimate: float, lower: float, upper: float, level: float, method: str, k, n, keep) -> GapEstimate:
    rates = k / n
    pairs = keep.size * (keep.size - 1) // 2
    return GapEstimate(
        estimate=estimate, lower=lower, upper=upper, level=level,
        method=method if pairs == 1 else f"{method}, bonferroni over {pairs} pairs",
        high_group=int(keep[int(np.argmax(rates))]), low_group=int(keep[int(np.argmin(rates))]),
        comparisons=pairs, p_value=homogeneity_test(k, n),
    )


def largest_difference(successes, trials, level: float = 0.95) -> GapEstimate:
    """max_i p_i - min_j p_j over groups, with a Bonferroni-simultaneous interval.

    Every pairwise Newcombe interval is made at level 1 - alpha/m (m pairs), so all of
    them hold together with probability at least `level`; then the largest true gap
    lies between the largest lower bound and the largest upper bound of the |gaps|.
    With two groups this is Newcombe's interval itself. The p-value tests "all rates
    equal" (chi-square test of homogeneity), the evidence that any gap exists at all.
    """
    k, n, keep, first, second, pair_level = _pairwise(successes, trials, level, "a gap")
    lower, upper = newcombe_difference(k[first], n[first], k[second], n[second], pair_level)
    absolute = [absolute_gap_interval(lo, hi) for lo, hi in zip(np.atleast_1d(lower), np.atleast_1d(upper))]
    rates = k / n
    return _gap(float(rates.max() - rates.min()), float(max(a for a, _ in absolute)), float(max(b for _, b in absolute)),
                level, "newcombe", k, n, keep)


def smallest_ratio(successes, trials, level: float = 0.95) -> GapEstimate:
    """min_i p_i / max_j p_j (the disparate-impact ratio) with a simultaneous interval.

    Same construction as `largest_difference` on the ratio scale: pairwise adjusted-log
    intervals at level 1 - alpha/m, folded to min(r, 1/r); the ratio's lower bound is the
    smallest folded lower bound and its upper bound the smallest folded upper bound.
    """
    k, n, keep, first, second, pair_level = _pairwise(successes, trials, level, "a ratio")
    lower, upper = ratio_log_adjusted(k[first], n[first], k[second], n[second], pair_level)
    folded = [min_over_max_interval(lo, hi) for lo, hi in zip(np.atleast_1d(lower), np.atleast_1d(upper))]
    rates = k / n
    estimate = float(rates.min() / rates.max()) if rates.max() > 0 else 1.0
    return _gap(estimate, float(min(a for a, _ in folded)), float(min(b for _, b in folded)), level, "adjusted log", k, n, keep)


def homogeneity_test(successes, trials) -> float:
    """p-value of Pearson's chi-square test that all groups share one rate.

    Returns 1.0 when the pooled rate is 0 or 1 (no variation to test).
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    keep = n > 0
    k, n = k[keep], n[keep]
    if k.size < 2:
        return 1.0
    pooled = k.sum() / n.sum()
    if pooled <= 0.0 or pooled >= 1.0:
        return 1.0
    expected_yes = n * pooled
    expected_no = n * (1.0 - pooled)
    statistic = float((((k - expected_yes) ** 2) / expected_yes + (((n - k) - expected_no) ** 2) / expected_no).sum())
    return chi_square_sf(statistic, k.size - 1)


def chi_square_sf(statistic: float, degrees_of_freedom: int) -> float:
    """Upper tail of the chi-square distribution, Q(df/2, x/2)."""
    if statistic <= 0.0:
        return 1.0
    return _gamma_q(degrees_of_freedom / 2.0, statistic / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma: a series below a + 1, a continued fraction above."""
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        for _ in range(10_000):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    # Lentz's method for the continued fraction of Q.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_prefactor) * h)


# --- AUROC -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AurocEstimate:
    estimate: float
    lower: float
    upper: float
    level: float
    method: str
    positives: int
    negatives: int


def auroc_interval(scores, positive, level: float = 0.95) -> AurocEstimate:
    """AUROC (ties count one half) with DeLong's variance, by mid-ranks in O(n log n).

    The interval is made on the logit scale and mapped back, so it stays inside
    [0, 1] and keeps its coverage near 1, where the plain DeLong interval overshoots.
    """
    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("AUROC needs at least one positive and one negative row")
    all_ranks = average_ranks(scores)
    positive_ranks = average_ranks(scores[positive])
    negative_ranks = average_ranks(scores[~positive])
    # DeLong's structural components: for each positive, the share of negatives it
    # outscores; for each negative, the share of positives that outscore it.
    v_positive = (all_ranks[positive] - positive_ranks) / n
    v_negative = 1.0 - (all_ranks[~positive] - negative_ranks) / m
    estimate = float(v_positive.mean())
    variance = (v_positive.var(ddof=1) / m if m > 1 else 0.0) + (v_negative.var(ddof=1) / n if n > 1 else 0.0)
    z = z_value(level)
    clipped = min(max(estimate, 0.5 / (m * n)), 1.0 - 0.5 / (m * n))
    logit = math.log(clipped / (1.0 - clipped))
    logit_se = math.sqrt(variance) / (clipped * (1.0 - clipped))
    lower = 1.0 / (1.0 + math.exp(-(logit - z * logit_se)))
    upper = 1.0 / (1.0 + math.exp(-(logit + z * logit_se)))
    return AurocEstimate(estimate, min(lower, estimate), max(upper, estimate), level, "delong, logit scale", m, n)


# --- paired differences ------------------------------------------------------------------

def paired_mean_difference(before, after, level: float = 0.95) -> Interval:
    """t interval of the mean of after - before over the same rows.

    Paired, never two independent intervals: a corruption's accuracy drop or an
    explainer's gain over random orders is measured on the same rows, and pairing
    removes the between-row variation the two share.
    """
    difference = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    rows = difference.size
    if rows < 2:
        raise ValueError("a paired interval needs at least two rows")
    mean = float(difference.mean())
    half = t_quantile(level, rows - 1) * float(difference.std(ddof=1)) / math.sqrt(rows)
    return Interval(mean - half, mean + half, level, "paired t")


def t_quantile(level: float, degrees_of_freedom: int) -> float:
    """Two-sided Student t quantile, by bisection on the t distribution's tail."""
    target = (1.0 - level) / 2.0
    low, high = 0.0, 1e3
    for _ in range(200):
        middle = (low + high) / 2.0
        if _t_sf(middle, degrees_of_freedom) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def _t_sf(t: float, df: int) -> float:
    # P(T > t) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2).
    return 0.5 * _beta_regularised(df / 2.0, 0.5, df / (df + t * t))


def _beta_regularised(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _beta_regularised(b, a, 1.0 - x)
    # Continued fraction (modified Lentz).
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (tiny if abs(d) < tiny else d)
    h = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)), -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (tiny if abs(d) < tiny else d)
            c = 1.0 + numerator / c
            c = tiny if abs(c) < tiny else c
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h / a


# --- multiplicity ------------------------------------------------------------------------

def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="mergesort")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    return result


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate control)."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="mergesort")[::-1]
    ranks = m - np.arange(m)
    adjusted = np.minimum.accumulate(p[order] * m / ranks)
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    return result


MULTIPLICITY_METHODS = {"holm": holm, "bh": benjamini_hochberg}


def adjust(p_values, method: str = "holm") -> np.ndarray:
    """Adjusted p-values of one family of checks, by `holm`, `bh` or `none`."""
    if method == "none":
        return np.minimum(np.asarray(p_values, dtype=float), 1.0)
    try:
        return MULTIPLICITY_METHODS[method](p_values)
    except KeyError:
        raise ValueError(f"unknown multiplicity correction {method!r}; use holm, bh or none") from None


def family_level(level: float, comparisons: int) -> float:
    """Per-check confidence level that keeps `comparisons` intervals simultaneous (Bonferroni)."""
    return 1.0 - (1.0 - level) / max(1, comparisons)


# --- bootstrap with a stated Monte Carlo error -------------------------------------------

def percentile_interval_with_error(replicates, level: float = 0.95) -> tuple[float, float, float]:
    """Percentile interval of bootstrap replicates and the Monte Carlo error of its ends (scalar replicates).

    The error is the standard error of a sample quantile, sqrt(q(1-q)/B)/density, with
    the density read off the replicates' spacing around the quantile; callers raise B
    until it falls below their tolerance.
    """
    values = np.sort(np.asarray(replicates, dtype=float)[np.isfinite(replicates)])
    count = values.size
    if count < 20:
        return float("nan"), float("nan"), float("inf")
    q_low, q_high = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    lower, upper = np.quantile(values, [q_low, q_high])
    errors = []
    for q in (q_low, q_high):
        spread = max(1, int(round(0.01 * count)))
        centre = int(round(q * (count - 1)))
        a, b = max(0, centre - spread), min(count - 1, centre + spread)
        width = values[b] - values[a]
        density = (b - a) / count / width if width > 0 else float("inf")
        errors.append(math.sqrt(q * (1.0 - q) / count) / density if density != float("inf") else 0.0)
    return float(lower), float(upper), float(max(errors))


# --- verdicts ----------------------------------------------------------------------------

def verdict(lower: float, upper: float, threshold: float, higher_is_better: bool) -> Verdict:
    """passed when the whole interval is on the good side of the threshold, failed when
    it is wholly on the bad side, inconclusive when it straddles (or is undefined)."""
    if not (np.isfinite(lower) and np.isfinite(upper)):
        return "inconclusive"
    if higher_is_better:
        if lower >= threshold:
            return "passed"
        if upper < threshold:
            return "failed"
        return "inconclusive"
    if upper <= threshold:
        return "passed"
    if lower > threshold:
        return "failed"
    return "inconclusive"


def rows_to_decide(estimate, lower, upper, threshold, rows) -> int | None:
    """About how many rows would settle an inconclusive check, if the estimate held.

    Interval half-widths shrink as 1/sqrt(rows): the rows at which the half-width on
    the threshold's side equals the estimate's distance from the threshold. None when
    the estimate sits on the threshold (no sample size settles it) or rows are unknown.
    """
    if rows is None or rows <= 0 or estimate is None or lower is None or upper is None:
        return None
    distance = abs(float(estimate) - float(threshold))
    half_width = (float(estimate) - float(lower)) if estimate >= threshold else (float(upper) - float(estimate))
    if distance <= 1e-12 or not math.isfinite(half_width) or half_width <= 0:
        return None
    return int(math.ceil(rows * (half_width / distance) ** 2))


# --- families of checks ------------------------------------------------------------------

CORRECTIONS = ("holm", "bh", "bonferroni", "none")


@dataclass
class FamilyMember:
    """One check of a family: its interval at any level, its limit, and which side is good."""

    key: Any
    interval: Callable[[float], tuple[float, float]]
    threshold: float
    higher_is_better: bool
    enough_rows: bool = True


@dataclass(frozen=True)
class FamilyDecision:
    """A check's verdict within its family, and the interval (at ``level``) that shows it."""

    verdict: Verdict
    lower: float
    upper: float
    level: float
    comparisons: int
    correction: str
    p_fail: float
    p_pass: float


def _side_p_value(member: FamilyMember, bad_side: bool) -> float:
    """Smallest alpha at which the (1 - alpha) interval lies wholly on one side of the threshold.

    Intervals narrow as the level drops, so this inverts the interval into a test of
    "the figure is on the other side": on the bad side it is the evidence of failure,
    on the good side the evidence of passing. 1.0 when no level shows it.
    """
    def shows(alpha: float) -> bool:
        lower, upper = member.interval(1.0 - alpha)
        if not (np.isfinite(lower) and np.isfinite(upper)):
            return False
        wanted = "failed" if bad_side else "passed"
        return verdict(lower, upper, member.threshold, member.higher_is_better) == wanted

    if not member.enough_rows or not shows(0.999):
        return 1.0
    low, high = 1e-12, 0.999  # shows(high) holds; find where it starts to
    if shows(low):
        return low
    for _ in range(30):  # on the log scale: alpha to about 1e-6 of itself, enough to rank and compare p-values
        middle = math.sqrt(low * high)
        if shows(middle):
            high = middle
        else:
            low = middle
    return high


def _rejected_at(p_values: np.ndarray, alpha: float, correction: str) -> tuple[np.ndarray, np.ndarray]:
    """Which hypotheses a correction rejects, and the per-check alpha each was (or would be) tested at."""
    m = p_values.size
    if m == 0:
        return np.zeros(0, bool), np.zeros(0)
    if correction == "none":
        tested = np.full(m, alpha)
        return p_values <= tested, tested
    if correction == "bonferroni":
        tested = np.full(m, alpha / m)
        return p_values <= tested, tested
    order = np.argsort(p_values, kind="mergesort")
    rejected = np.zeros(m, bool)
    tested = np.full(m, alpha / m)
    if correction == "holm":
        for rank, index in enumerate(order):
            tested[index] = alpha / (m - rank)
            if p_values[index] > tested[index]:
                break
            rejected[index] = True
        return rejected, tested
    if correction == "bh":
        thresholds = alpha * (np.arange(1, m + 1)) / m
        passing = np.flatnonzero(p_values[order] <= thresholds)
        if passing.size:
            k = int(passing.max()) + 1
            rejected[order[:k]] = True
            tested[order[:k]] = alpha * k / m
        return rejected, tested
    raise ValueError(f"unknown multiplicity correction {correction!r}; use one of {', '.join(CORRECTIONS)}")


def decide_family(members: list[FamilyMember], level: float = 0.95, correction: str = "holm") -> list[FamilyDecision]:
    """Verdicts for a family of checks that test the same kind of hypothesis, with the error rate controlled.

    Each check's interval is inverted into two one-sided p-values: evidence that the
    figure is on the bad side of its threshold (failure) and on the good side (pass).
    Each set is corrected over the family (Holm controls the family-wise error rate,
    Benjamini-Hochberg the false discovery rate, Bonferroni the simplest bound), so at
    most about ``1 - level`` of null families fail anything. A check that neither
    fails nor passes is inconclusive. The interval returned is the one at the level
    the check was tested at, so the shown interval and the verdict always agree; an
    inconclusive check shows its Bonferroni (most conservative) interval.
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown multiplicity correction {correction!r}; use one of {', '.join(CORRECTIONS)}")
    alpha = 1.0 - level
    m = len(members)
    p_fail = np.array([_side_p_value(member, bad_side=True) for member in members])
    p_pass = np.array([_side_p_value(member, bad_side=False) for member in members])
    failed, fail_alpha = _rejected_at(p_fail, alpha, correction)
    passed, pass_alpha = _rejected_at(p_pass, alpha, correction)
    decisions = []
    for i, member in enumerate(members):
        if failed[i]:
            outcome, tested = "failed", fail_alpha[i]
        elif passed[i]:
            outcome, tested = "passed", pass_alpha[i]
        else:
            outcome, tested = "inconclusive", alpha / m if correction != "none" else alpha
        lower, upper = member.interval(1.0 - tested)
        decisions.append(FamilyDecision(outcome, float(lower), float(upper), float(1.0 - tested), m, correction,
                                        float(p_fail[i]), float(p_pass[i])))
    return decisions


def _unwrap(value):
    value = np.asarray(value, dtype=float)
    return float(value) if value.ndim == 0 else value


# --- means over rows, for verdicts on per-row figures (attribution) ------------------------
# Appended for issue 13's attribution verdicts: the mean of a per-row figure (a paired
# gain over random orders, a correlation per row) with a t interval, and that interval as
# a family member. The quantile is found by Newton's method, not bisection, because
# decide_family inverts each member's interval at some eighty levels.

__all__ += ["mean_interval", "mean_member"]


def _t_quantile_newton(level: float, degrees_of_freedom: int) -> float:
    """The two-sided t quantile ``t_quantile`` gives, in a few evaluations of the tail instead of 200."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, not {level}")
    df = float(degrees_of_freedom)
    target = (1.0 - level) / 2.0
    log_front = math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
    z = NormalDist().inv_cdf(1.0 - target)
    t = z
    if df >= 5:  # Cornish-Fisher (Abramowitz and Stegun 26.7.5): a start a step or two from the root
        t = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2) \
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    # The t quantile lies above the normal one, and the tail is convex there: a Newton step
    # lands at or below the root, so the steps then climb to it without overshooting.
    tail = _t_sf_series if degrees_of_freedom <= 2000 else _t_sf
    for _ in range(100):
        density = math.exp(log_front - (df + 1.0) / 2.0 * math.log1p(t * t / df))
        step = (tail(t, degrees_of_freedom) - target) / density
        t = max(z, t + step)
        if abs(step) <= 1e-12 * max(1.0, t):
            return t
    return t  # only far in the tail of one or two degrees of freedom, where p-values of 1e-10 do not need ten digits


def _t_sf_series(t: float, df: int) -> float:
    """P(T > t) for t >= 0 and whole degrees of freedom, by the finite series of Abramowitz and Stegun 26.7.3-4.

    About fifty times faster than the continued fraction for a few dozen degrees of
    freedom; far in the tail (below 1e-9), where 1 - A loses digits, it defers to it.
    """
    theta = math.atan(t / math.sqrt(df))
    cos2, sin_theta = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:
        term, total = 1.0, 0.0
        if df > 1:
            total = term = math.cos(theta)
            for k in range(3, df - 1, 2):
                term *= cos2 * (k - 1) / k
                total += term
        inside = 2.0 / math.pi * (theta + sin_theta * total)
    else:
        term = total = 1.0
        for k in range(2, df, 2):
            term *= cos2 * (k - 1) / k
            total += term
        inside = sin_theta * total
    tail = (1.0 - inside) / 2.0
    return tail if tail > 1e-9 else _t_sf(t, df)


def mean_interval(values, level: float = 0.95) -> Interval:
    """t interval of the mean of ``values``, one per row, rows independent (NaN rows left out).

    For a paired comparison pass the per-row differences: the interval equals
    ``paired_mean_difference``'s. With fewer than two finite rows the interval is
    undefined (NaN ends); with no spread it is the point.
    """
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size < 2:
        return Interval(float("nan"), float("nan"), level, "t over rows")
    mean = float(values.mean())
    spread = float(values.std(ddof=1))
    half = _t_quantile_newton(level, values.size - 1) * spread / math.sqrt(values.size) if spread > 0 else 0.0
    return Interval(mean - half, mean + half, level, "t over rows")


def mean_member(key, values, threshold: float, higher_is_better: bool, min_rows: int = 2) -> FamilyMember:
    """A family member judging the mean of per-row ``values`` against ``threshold`` by its t interval."""
    values = np.asarray(values, dtype=float).ravel()
    values = values[np.isfinite(values)]

    def interval(level: float) -> tuple[float, float]:
        found = mean_interval(values, level)
        return found.lower, found.upper

    return FamilyMember(key, interval, float(threshold), higher_is_better, enough_rows=values.size >= max(2, min_rows))
