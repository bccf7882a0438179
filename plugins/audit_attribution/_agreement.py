"""attribution.agreement: how far the explainers agree with each other (a diagnostic, not a verdict)."""

from __future__ import annotations

import numpy as np

import audit

from . import _figures
from ._core import ModelScorer
from ._metrics import spearman_rows, top_k_overlap
from ._run import _mean, explain_all, setup


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
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            rho[i, j] = rho[j, i] = _mean(spearman_rows(maps[a], maps[b])) or np.nan
            overlap[i, j] = overlap[j, i] = _mean(top_k_overlap(maps[a], maps[b], k))
            yield audit.Metric("rank_correlation", float(rho[i, j]), subject=a, group=b, count=len(s.x))
            yield audit.Metric("top_k_overlap", float(overlap[i, j]), subject=a, group=b, count=len(s.x), details={"k": k})
    upper = rho[np.triu_indices(len(names), 1)]
    worst = np.unravel_index(np.nanargmin(np.where(np.eye(len(names)) == 1, np.inf, rho)), rho.shape)
    yield audit.Finding(
        check="explainer_agreement", title="Agreement between explainers (diagnostic)", severity=audit.Severity.INFO,
        passed=True, value=float(np.nanmean(upper)),
        message=(f"mean pairwise Spearman rank correlation {np.nanmean(upper):.3f} over {len(names)} explainers; least agreeing: "
                 f"{names[worst[0]]} and {names[worst[1]]} ({rho[worst]:.3f}). Disagreement says the explainers answer different "
                 "questions, not which is right: use the faithfulness and sanity checks for that"),
        details={"explainers": names, "top_k": k},
    )
    yield audit.Figure("agreement", "Agreement between explainers", _figures.agreement(names, rho, overlap, k),
                       caption=f"Mean over {len(s.x)} rows of the Spearman rank correlation (left) and top-{k} overlap (right) between explainers' maps.")
