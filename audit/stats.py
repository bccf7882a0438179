"""Statistics helpers for plugin authors: average ranks, AUROC, bootstrap replicates and percentile intervals.

Public API (documented in docs/plugins.md): the built-in analyses use these
instead of private copies, and a third-party analysis gets the same numbers.
Everything takes a ``numpy.random.Generator`` where it draws, so results
follow the run's seed. numpy is imported here, not in ``audit`` itself.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["auroc", "average_ranks", "binned_means", "bootstrap_group_means", "bootstrap_means", "percentile_interval"]


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
