"""attribution.faithfulness: deletion and insertion against random orders, faithfulness correlation, infidelity, IG checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import audit

from . import _figures
from ._core import ModelScorer
from ._explainers import make_baseline
from ._metrics import (
    curve_auc,
    faithfulness_correlation,
    infidelity,
    order_ranks,
    pearson_rows,
    perturbation_drops,
    removal_curves,
    spearman_rows,
    subset_drops,
)
from ._run import Setup, _mean, explain_all, judge_rows, row_interval, setup


@dataclass
class RemovalCurves:
    """Deletion and insertion curves of every explainer's order (first) and of the random orders (after)."""

    names: list[str]
    deletion: np.ndarray  # (explainers + random orders, rows, steps + 1)
    insertion: np.ndarray
    fractions: np.ndarray
    deletion_auc: np.ndarray  # (explainers + random orders, rows)
    insertion_auc: np.ndarray

    @property
    def random_deletion(self) -> np.ndarray:
        return self.deletion_auc[len(self.names):].mean(axis=0)

    @property
    def random_insertion(self) -> np.ndarray:
        return self.insertion_auc[len(self.names):].mean(axis=0)

    def mean_curves(self) -> dict:
        curves = {n: (self.deletion[e].mean(0), self.insertion[e].mean(0)) for e, n in enumerate(self.names)}
        curves["random"] = (self.deletion[len(self.names):].mean((0, 1)), self.insertion[len(self.names):].mean((0, 1)))
        return curves


def run_faithfulness(analysis, ctx):
    """Explain, measure the removal curves, judge them; then the correlation metrics, IG checks and figures."""
    options = analysis.options
    s = setup(analysis, ctx)
    explained = ModelScorer(ctx.model, options.score)
    maps, inputs = explain_all(ctx, s, explained, s.x, s.targets, s.layout, s.data_mean, s.value_sd, share=("model", options.score))
    if not maps:
        ctx.note("no explainer could run on this model")
        return
    curves = measure_removal(ctx, options, s, maps, inputs.removal_baseline)
    yield from removal_records(ctx, options, s, curves)
    yield from correlation_metrics(ctx, options, s, explained, maps, inputs.removal_baseline)
    if "integrated_gradients" in maps:
        yield from _ig_checks(analysis, ctx, s, explained, maps["integrated_gradients"], inputs)
    yield audit.Figure("deletion_insertion", "Deletion and insertion curves", _figures.curves(curves.mean_curves(), curves.fractions),
                       caption=f"Predicted-class probability as features are removed (left) or added back (right) in each explainer's order; "
                               f"dashed: random order. {len(s.x)} rows, removed features set to the {options.removal}.")
    yield from _map_figures(ctx, s, maps)


def measure_removal(ctx, options, s: Setup, maps, removal_base) -> RemovalCurves:
    """Deletion and insertion: every explainer's ordering and the random ones in one batched pass."""
    names = list(maps)
    rank_rng = np.random.default_rng(ctx.rng.integers(2**63))
    explainer_ranks = np.stack([order_ranks(maps[n], rank_rng) for n in names])
    random_ranks = np.stack([np.argsort(rank_rng.random((len(s.x), s.layout.n_units)), axis=1).argsort(axis=1) for _ in range(options.random_orders)])
    deletion, insertion, fractions = removal_curves(
        ModelScorer(ctx.model, "probability"), s.layout, s.x, removal_base, s.targets,
        np.concatenate([explainer_ranks, random_ranks]), options.curve_steps,
    )
    return RemovalCurves(names, deletion, insertion, fractions, curve_auc(deletion, fractions), curve_auc(insertion, fractions))


def removal_records(ctx, options, s: Setup, curves: RemovalCurves):
    """Per explainer: deletion and insertion AUC against random orders on the same rows, and the gain over random.

    Each check compares the explainer's curve with the random orders' on the same
    rows: its figure is the mean per-row difference, judged by its paired t
    interval. The explainers of one check are one family (``options.correction``).
    """
    rand_del, rand_ins = curves.random_deletion, curves.random_insertion
    confidence = ctx.predictions[s.rows, s.targets]
    steps = len(curves.fractions) - 1
    names = curves.names
    deletion = {n: curves.deletion_auc[e] - rand_del for e, n in enumerate(names)}  # lower is better
    insertion = {n: curves.insertion_auc[e] - rand_ins for e, n in enumerate(names)}  # higher is better
    gains = {n: insertion[n] - deletion[n] for n in names}
    judged_deletion = judge_rows(deletion, 0.0, False, options, strict=True)
    judged_insertion = judge_rows(insertion, 0.0, True, options, strict=True)
    judged_gain = judge_rows(gains, options.min_gain, True, options, strict=True)
    random_orders = f"{options.random_orders} random order(s)"
    method = f"paired t over rows against {random_orders}"
    yield audit.Metric("deletion_auc", float(rand_del.mean()), subject="random", count=len(s.x))
    yield audit.Metric("insertion_auc", float(rand_ins.mean()), subject="random", count=len(s.x))
    for e, name in enumerate(names):
        d, i = curves.deletion_auc[e], curves.insertion_auc[e]
        common = {"removal": options.removal, "steps": steps, "random_orders": options.random_orders}
        v = judged_deletion[name]
        yield audit.Finding(
            check="deletion_auc", title="Deletion AUC against a random order", severity=audit.Severity.LOW, subject=name,
            message=(f"{name}: removing features in attribution order leaves an area of {d.mean():.3f} under the predicted-class "
                     f"probability curve, against {rand_del.mean():.3f} for {random_orders} on the same rows: difference "
                     f"{v.value:+.3f} ({v.interval_text()}; lower is better: the features it ranks first should matter most); "
                     + _verdict_words(v.verdict, "below", "above")),
            details=v.details(auc=float(d.mean()), random_auc=float(rand_del.mean()), **common), **{**v.fields(), "method": method},
        )
        v = judged_insertion[name]
        yield audit.Finding(
            check="insertion_auc", title="Insertion AUC against a random order", severity=audit.Severity.LOW, subject=name,
            message=(f"{name}: adding features back in attribution order gives an area of {i.mean():.3f} under the predicted-class "
                     f"probability curve, against {rand_ins.mean():.3f} for {random_orders} on the same rows: difference "
                     f"{v.value:+.3f} ({v.interval_text()}; higher is better); " + _verdict_words(v.verdict, "above", "below")),
            details=v.details(auc=float(i.mean()), random_auc=float(rand_ins.mean()), **common), **{**v.fields(), "method": method},
        )
        v = judged_gain[name]
        verdict_text = {"passed": "its rankings track what the model uses",
                        "failed": "it ranks features worse than chance: its explanations should not be trusted",
                        "inconclusive": "not shown to be better than a random ranking (nor worse): its explanations should not be relied on"}
        yield audit.Finding(
            check="faithful_vs_random", title="Explainer better than a random ranking", severity=audit.Severity.MEDIUM, subject=name,
            message=(f"{name}: gain over {random_orders} {v.value:+.3f} ({v.interval_text()}; deletion AUC below random plus "
                     f"insertion AUC above random, paired per row; threshold {options.min_gain:+g}); {verdict_text[v.verdict]}"),
            details=v.details(**common), **{**v.fields(), "method": method},
        )
        for metric, values in (("deletion_auc", d), ("insertion_auc", i)):
            lower, upper = row_interval(values, options.level)
            yield audit.Metric(metric, float(values.mean()), subject=name, count=len(values), lower=lower, upper=upper)
            r = pearson_rows(values[None], confidence[None])[0]
            yield audit.Metric(f"{metric}_confidence_correlation", None if not np.isfinite(r) else float(r), subject=name,
                               details={"note": "Pearson correlation across rows between the AUC and the model's confidence; "
                                                "a strong correlation means the AUC partly measures confidence, not the explainer"})


def _verdict_words(verdict: str, good: str, bad: str) -> str:
    return {"passed": f"shown {good} random", "failed": f"shown {bad} random: worse than a random order",
            "inconclusive": f"not shown {good} random"}[verdict]


def correlation_metrics(ctx, options, s: Setup, explained, maps, removal_base):
    """Faithfulness correlation and infidelity; they share their model passes across explainers."""
    layout = s.layout
    fc_rng = np.random.default_rng(ctx.rng.integers(2**63))
    removed, drops = subset_drops(explained, layout, s.x, removal_base, s.targets, options.subsets, options.subset_fraction, fc_rng)
    unit_sd = layout.to_units(s.value_sd[None])[0] / (s.value_sd.size // layout.n_units) * options.infidelity_noise
    perturbations, pdrops = perturbation_drops(explained, layout, s.x, s.targets, options.infidelity_samples, unit_sd, fc_rng)
    for name in maps:
        fc = faithfulness_correlation(maps[name], removed, drops)
        inf = infidelity(maps[name], perturbations, pdrops)
        fc_lower, fc_upper = row_interval(fc, options.level)
        yield audit.Metric("faithfulness_correlation", _mean(fc), subject=name, count=int(np.isfinite(fc).sum()),
                           lower=fc_lower, upper=fc_upper,
                           details={"subsets": options.subsets, "subset_fraction": options.subset_fraction, "level": options.level,
                                    "method": "t over rows of the per-row Pearson correlation"})
        inf_lower, inf_upper = row_interval(inf, options.level)
        yield audit.Metric("infidelity", _mean(inf), subject=name, count=int(np.isfinite(inf).sum()), lower=inf_lower, upper=inf_upper,
                           details={"samples": options.infidelity_samples, "noise": options.infidelity_noise,
                                    "definition": "E[(beta I.phi - drop)^2] / E[drop^2], beta optimal; 0 is perfect"})


def _ig_checks(analysis, ctx, s: Setup, scorer, ig_map, inputs):
    options = analysis.options
    f_x = scorer.target_scores(s.x, s.targets)
    f_b = scorer.target_scores(inputs.ig_baseline, s.targets)
    delta = f_x - f_b
    error = np.abs(ig_map.sum(axis=1) - delta)
    relative = float(error.mean() / max(np.abs(delta).mean(), 1e-12))
    # A numerical check of the quadrature on the explained rows, not an estimate of a population
    # figure: it has no sampling error, so the point value decides (against_limit), without an interval.
    yield audit.Finding.against_limit(
        "ig_completeness_error", "Integrated Gradients completeness", relative, severity=audit.Severity.LOW,
        ceiling=options.ig_completeness_tolerance, subject="integrated_gradients",
        message=(f"the IG attributions sum to f(x) - f(baseline) within {relative:.2%} on average over {len(s.x)} rows "
                 f"(mean |error| {error.mean():.2e} against mean |f(x) - f(baseline)| {np.abs(delta).mean():.2e}; "
                 f"{options.ig_steps} {options.ig_method} steps, {options.ig_baseline} baseline, {options.score} score; "
                 "a numerical check of the path integral, with no sampling error, so no interval)"
                 + ("" if relative <= options.ig_completeness_tolerance else "; raise ig_steps: the path integral is not converged")),
        details={"max_abs_error": float(error.max()), "steps": options.ig_steps, "method": options.ig_method, "baseline": options.ig_baseline,
                 "rows": len(s.x), "no_interval": "deterministic numerical check"},
    )
    if not options.compare_ig_baselines:
        return
    others = [b for b in ("zeros", "mean", "blurred") if b != options.ig_baseline and (b != "blurred" or s.layout.is_image)]
    for other in others:
        baseline = make_baseline(other, s.x, s.data_mean, s.layout, options.blur_sigma)
        from ._explainers import integrated_gradients

        alt = s.layout.to_units(integrated_gradients(scorer, s.x, s.targets, baseline, options.ig_steps, options.ig_method))
        rho = spearman_rows(ig_map, alt)
        rho_lower, rho_upper = row_interval(rho, options.level)
        yield audit.Metric("ig_baseline_rank_correlation", _mean(rho), subject="integrated_gradients",
                           group=f"{options.ig_baseline} vs {other}", count=int(np.isfinite(rho).sum()), lower=rho_lower, upper=rho_upper,
                           details={"note": "low values: the IG explanation depends on the baseline choice (BEE)"})


def _map_figures(ctx, s: Setup, maps):
    if s.layout.is_image:
        titles = [f"predicted {ctx.class_names[int(t)]}" for t in s.targets]
        yield audit.Figure("attribution_maps", "Attribution maps", _figures.image_maps(s.x, maps, s.layout, titles),
                           caption="Each row: an input, its predicted class, and each explainer's map (brighter = more |attribution|; "
                                   "maps with no zero or negative value, such as RISE's, are shown above their minimum).")
    else:
        names = ctx.data.feature_names or [f"x{i}" for i in range(s.layout.n_units)]
        yield audit.Figure("feature_attribution", "Mean absolute attribution per feature", _figures.feature_bars(maps, names),
                           caption="Mean |attribution| per feature over the explained rows, each explainer scaled to its largest feature "
                                   "(RISE's constant offset, the mean score, removed first).")
