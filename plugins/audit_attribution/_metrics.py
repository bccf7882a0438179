"""Faithfulness metrics: deletion and insertion curves, faithfulness correlation, infidelity, rank agreement."""

from __future__ import annotations

import numpy as np

from audit import stats

from ._core import Layout, variant_scores


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation per row of two (R, n) arrays; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=1) / np.where(denominator > 0, denominator, 1.0), np.nan)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation per row."""
    ra = np.stack([stats.average_ranks(row) for row in a])
    rb = np.stack([stats.average_ranks(row) for row in b])
    return pearson_rows(ra, rb)


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """|top-k of a and top-k of b| / k per row (largest values)."""
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :k]
    return np.array([len(np.intersect1d(x, y)) / k for x, y in zip(top_a, top_b)])


def order_ranks(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Position of each unit when units are sorted by decreasing attribution; ties in random order."""
    jitter = rng.random(maps.shape)
    order = np.lexsort((jitter, -maps), axis=-1)  # last key is primary
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(maps.shape[-1])[None, :].repeat(len(maps), 0), axis=-1)
    return ranks


def step_counts(n_units: int, steps: int) -> np.ndarray:
    """How many units are removed (or inserted) at each of steps + 1 points, 0 to all."""
    steps = min(steps, n_units)
    return np.round(np.linspace(0, n_units, steps + 1)).astype(np.int64)


def removal_curves(scorer, layout: Layout, x, baseline, targets, ranks: np.ndarray, steps: int, insertion: bool = True):
    """Deletion and insertion curves for each ordering, all in one batched pass.

    ``ranks`` is (E, R, U): position of each unit in ordering e for row r.
    Deletion replaces the first k units by the baseline; insertion starts from
    the baseline and puts the first k back. Returns (deletion, insertion),
    each (E, R, K + 1), and the fractions of units on the x axis; with
    ``insertion=False`` only deletion curves are computed (insertion is None).
    """
    n_orders, n_rows, n_units = ranks.shape
    counts = step_counts(n_units, steps)
    n_points = len(counts)
    kinds = 2 if insertion else 1
    per_row = n_orders * kinds * n_points  # variants per row: orderings x {deletion, insertion} x steps

    def make(rows, variants):
        order, rest = variants // (kinds * n_points), variants % (kinds * n_points)
        inserting, point = rest // n_points, rest % n_points
        r = ranks[order, rows]  # (n, U)
        first_k = r < counts[point][:, None]
        keep = np.where(inserting[:, None] == 1, first_k, ~first_k)
        return layout.blend(x[rows], baseline[rows], keep.astype(np.float32))

    s = variant_scores(scorer, n_rows, per_row, make, targets, layout.n_values)
    s = s.reshape(n_rows, n_orders, kinds, n_points).transpose(1, 2, 0, 3)
    return s[:, 0], (s[:, 1] if insertion else None), counts / n_units


def curve_auc(curves: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Area under each curve over the fraction of units moved (trapezoid rule)."""
    widths = np.diff(fractions)
    return ((curves[..., 1:] + curves[..., :-1]) * 0.5 * widths).sum(axis=-1)


def subset_drops(scorer, layout: Layout, x, baseline, targets, n_subsets: int, fraction: float, rng):
    """Score drop when random unit subsets are set to the baseline: masks (T, U) and drops (R, T)."""
    size = max(1, int(round(fraction * layout.n_units)))
    keys = rng.random((n_subsets, layout.n_units))
    removed = np.argsort(keys, axis=1)[:, :size]
    masks = np.ones((n_subsets + 1, layout.n_units), dtype=np.float32)
    np.put_along_axis(masks[1:], removed, 0.0, axis=1)

    def make(rows, variants):
        return layout.blend(x[rows], baseline[rows], masks[variants])

    s = variant_scores(scorer, len(x), n_subsets + 1, make, targets, layout.n_values)
    return 1.0 - masks[1:], s[:, :1] - s[:, 1:]


def faithfulness_correlation(maps: np.ndarray, removed: np.ndarray, drops: np.ndarray) -> np.ndarray:
    """Per row: Pearson correlation between attribution mass of each removed subset and the score drop (Bhatt et al. 2020)."""
    mass = maps @ removed.T  # (R, T)
    return pearson_rows(mass, drops)


def perturbation_drops(scorer, layout: Layout, x, targets, n_samples: int, unit_sd: np.ndarray, rng):
    """Gaussian unit perturbations I (T, U) and the score drops f(x) - f(x - I) (R, T)."""
    perturbations = rng.normal(size=(n_samples, layout.n_units)) * unit_sd[None, :]
    with_zero = np.concatenate([np.zeros((1, layout.n_units)), perturbations])

    def make(rows, variants):
        return layout.subtract_units(x[rows], with_zero[variants])

    s = variant_scores(scorer, len(x), n_samples + 1, make, targets, layout.n_values)
    return perturbations, s[:, :1] - s[:, 1:]


def infidelity(maps: np.ndarray, perturbations: np.ndarray, drops: np.ndarray) -> np.ndarray:
    """Per row: E[(beta I.phi - drop)^2] / E[drop^2] with the best scale beta (Yeh et al. 2019).

    Explainers differ in scale, so the attribution is rescaled optimally before
    comparing (as Quantus' normalised variant); 0 = the map predicts every drop
    exactly, 1 = it predicts nothing.
    """
    predicted = maps @ perturbations.T  # (R, T)
    pd = (predicted * drops).sum(axis=1)
    pp = (predicted * predicted).sum(axis=1)
    dd = (drops * drops).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        explained = np.where(pp > 0, pd * pd / np.where(pp > 0, pp, 1.0), 0.0)
        return np.where(dd > 0, 1.0 - explained / np.where(dd > 0, dd, 1.0), np.nan)
