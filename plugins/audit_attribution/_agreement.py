"""attribution.agreement: how far the explainers agree with each other (a diagnostic, not a verdict)."""

from __future__ import annotations

import numpy as np

import audit

from . import _figures
from ._core import ModelScorer
from ._metrics import spearman_rows, top_k_overlap
from ._run import _mean, explain_all, row_interval, setup


def run_agreement(analysis, ctx):
    options = analysis.options
    s = setup(analysis, ctx)
    maps, _ = explain_all(ctx, s, ModelScorer(ctx.model, options.score), s.x, s.targets, s.layout, s.data_mean, s.value_sd,
                          share=("model", options.score))
    names = list(maps)
    if len(names) < 2:
        ctx.note("agreement needs at least two explainers")
        return
    k = max(1, int(round(options.top_k_fraction * s.layout.n_units)))
    rho = np.eye(len(names))
    overlap = np.eye(len(names))
    pair_rows = []  # per pair: Spearman per row, for the interval of the mean over pairs
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            per_row = spearman_rows(maps[a], maps[b])
            pair_rows.append(per_row)
            rho[i, j] = rho[j, i] = _mean(per_row) if _mean(per_row) is not None else np.nan
            overlap[i, j] = overlap[j, i] = _mean(top_k_overlap(maps[a], maps[b], k))
            lower, upper = row_interval(per_row, options.level)
            yield audit.Metric("rank_correlation", float(rho[i, j]), subject=a, group=b, count=int(np.isfinite(per_row).sum()),
                               lower=lower, upper=upper, details={"level": options.level, "method": "t over rows"})
            yield audit.Metric("top_k_overlap", float(overlap[i, j]), subject=a, group=b, count=len(s.x), details={"k": k})
    upper_triangle = rho[np.triu_indices(len(names), 1)]
    worst = np.unravel_index(np.nanargmin(np.where(np.eye(len(names)) == 1, np.inf, rho)), rho.shape)
    # Per row, the mean over pairs: its t interval over rows is the interval of the figure shown.
    stacked = np.stack(pair_rows)
    finite = np.isfinite(stacked)
    counts = finite.sum(axis=0)
    row_means = np.where(counts > 0, np.where(finite, stacked, 0.0).sum(axis=0) / np.maximum(counts, 1), np.nan)
    lower, upper = row_interval(row_means, options.level)
    shown = f" ({options.level:.0%} CI {lower:.3f} to {upper:.3f} over {len(s.x)} rows)" if lower is not None else ""
    yield audit.Finding(
        check="explainer_agreement", title="Agreement between explainers (diagnostic)", severity=audit.Severity.INFO,
        passed=True, value=float(np.nanmean(upper_triangle)), lower=lower, upper=upper, level=options.level if lower is not None else None,
        method="t over rows" if lower is not None else None, rows=len(s.x),
        message=(f"mean pairwise Spearman rank correlation {np.nanmean(upper_triangle):.3f}{shown} over {len(names)} explainers; least "
                 f"agreeing: {names[worst[0]]} and {names[worst[1]]} ({rho[worst]:.3f}). Disagreement says the explainers answer "
                 "different questions, not which is right: use the faithfulness and sanity checks for that (a diagnostic: never failed)"),
        details={"explainers": names, "top_k": k},
    )
    yield audit.Figure("agreement", "Agreement between explainers", _figures.agreement(names, rho, overlap, k),
                       caption=f"Mean over {len(s.x)} rows of the Spearman rank correlation (left) and top-{k} overlap (right) between explainers' maps.")
