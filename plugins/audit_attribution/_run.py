"""The three attribution analyses: subsampling, explainer maps, metrics, findings and figures."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

import audit

from . import _figures, _treeshap
from ._core import Layout, ModelScorer, NumpyScorer, TorchScorer, feature_groups
from ._explainers import (
    GRADIENT_EXPLAINERS,
    ExplainerSettings,
    ExplainInputs,
    explain,
    make_baseline,
)
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
    top_k_overlap,
)


@dataclass
class Setup:
    """The explained rows and everything the explainers need, shared within one analysis."""

    rows: np.ndarray
    x: np.ndarray
    targets: np.ndarray
    layout: Layout
    settings: ExplainerSettings
    explainers: list[str]
    data_mean: np.ndarray
    value_sd: np.ndarray  # per element: the spread SmoothGrad noise and infidelity perturbations scale with
    removal: str = "mean"
    skipped: dict[str, str] = field(default_factory=dict)


def gradient_skip_reason(model) -> str | None:
    if "gradients" in model.capabilities:
        return None
    if getattr(model, "gradient_reason", None):
        return f"no input gradients for this {model.format} model: {model.gradient_reason}"
    return f"no input gradients for {getattr(model, 'format', 'this')} models"


def settings_from(options) -> ExplainerSettings:
    names = ExplainerSettings.__dataclass_fields__
    return ExplainerSettings(**{k: getattr(options, k) for k in names})


def setup(analysis, ctx, n_rows: int | None = None) -> Setup:
    o = analysis.options
    data = ctx.data
    x_all = np.asarray(data.x, dtype=np.float32)
    n = len(x_all)
    count = min(n, n_rows or o.rows)
    # Rows come from the run's seed, not the analysis's: analyses explaining the
    # same number of rows explain the same rows and can share their maps.
    rows = np.sort(np.random.default_rng(_run_seed(ctx, "attribution.rows")).choice(n, size=count, replace=False))
    groups = None
    if data.modality == "tabular" and o.feature_groups:
        groups = feature_groups(data.feature_names, o.feature_groups, x_all.shape[1])
    layout = Layout(x_all.shape[1:], data.modality, groups)
    reason = gradient_skip_reason(ctx.model)
    explainers, skipped = [], {}
    for name in dict.fromkeys(o.explainers):
        if name in GRADIENT_EXPLAINERS and reason:
            skipped[name] = reason
        else:
            explainers.append(name)
    if skipped:
        ctx.note(f"gradient explainers skipped ({', '.join(skipped)}): {reason}")
    _treeshap.select(ctx, explainers, skipped, "explainers" in o.model_fields_set)
    data_mean = x_all.mean(axis=0)
    if layout.is_image:
        value_sd = np.full(x_all.shape[1:], float(x_all.max() - x_all.min()), dtype=np.float32)
    else:
        value_sd = x_all.std(axis=0).astype(np.float32)
    return Setup(rows, x_all[rows], ctx.predicted[rows].astype(np.int64), layout, settings_from(o), explainers, data_mean, value_sd,
                 o.removal, skipped)


def _run_seed(ctx, label: str) -> int:
    import zlib

    return (int(ctx.run_seed) * 1_000_003 + zlib.crc32(label.encode())) % (2**63)


def explain_all(ctx, s: Setup, scorer, x, targets, layout: Layout, data_mean, value_sd, settings=None, label="explainers",
                share: tuple | None = None):
    """Maps (R, U) of every explainer in ``s.explainers`` for rows x, with the run's seeded randomness.

    The randomness (SmoothGrad noise, RISE masks, Sobol designs) comes from the
    run's seed, so two calls with the same rows and settings give the same
    maps. With ``share`` (what is scored, e.g. ("model", "probability")), the
    maps go into ``ctx.shared`` and another analysis of the run asking for the
    same maps gets them without a pass over the model.
    """
    import dataclasses

    o_settings = settings or s.settings
    key = None
    if share is not None:
        key = ("attribution.maps", share, tuple(int(r) for r in s.rows), tuple(s.explainers),
               dataclasses.astuple(o_settings), s.removal, len(x))
        if key in ctx.shared:
            return ctx.shared[key]
    seed = _run_seed(ctx, "attribution.maps")
    generator = None
    if scorer.has_gradients:
        import torch

        generator = torch.Generator(device=ctx.model.device)
        generator.manual_seed(seed)
    inputs = ExplainInputs(
        x=x,
        targets=targets,
        ig_baseline=make_baseline(o_settings.ig_baseline, x, data_mean, layout, o_settings.blur_sigma),
        removal_baseline=np.broadcast_to(data_mean if s.removal == "mean" else np.zeros_like(data_mean), x.shape).astype(np.float32),
        noise_sd=value_sd * o_settings.smoothgrad_noise,
        rng=np.random.default_rng(seed),
        generator=generator,
    )
    maps = {}
    with ctx.progress(len(s.explainers), label) as bar:
        for name in s.explainers:
            maps[name] = explain(name, scorer, layout, inputs, o_settings)
            bar.advance(1)
    if key is not None:
        ctx.shared[key] = (maps, inputs)
    return maps, inputs


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def _bootstrap_ci(values: np.ndarray, rng, n_boot: int = 2000) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return (float("nan"), float("nan"))
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def gain_over_random(deletion, insertion, random_deletion, random_insertion, rng, min_gain: float):
    """Per-row gain (random deletion AUC - deletion AUC) + (insertion AUC - random insertion AUC), its 95% CI, the verdict.

    Passes only when the bootstrap lower bound of the mean gain exceeds ``min_gain``:
    an explainer whose advantage over a random ranking could be chance fails.
    """
    gain = (random_deletion - deletion) + (insertion - random_insertion)
    low, high = _bootstrap_ci(gain, rng)
    return gain, low, high, bool(np.isfinite(low) and low > min_gain)


def class_name(ctx, index: int) -> str:
    names = ctx.data.class_names
    return str(names[index]) if names and index < len(names) else str(index)


# -- attribution.faithfulness --------------------------------------------------------
def run_faithfulness(analysis, ctx):
    o = analysis.options
    model = ctx.model
    s = setup(analysis, ctx)
    layout = s.layout
    explained = ModelScorer(model, o.score)
    probability = ModelScorer(model, "probability")
    maps, inputs = explain_all(ctx, s, explained, s.x, s.targets, layout, s.data_mean, s.value_sd, share=("model", o.score))
    if not maps:
        ctx.note("no explainer could run on this model")
        return
    names = list(maps)
    removal_base = inputs.removal_baseline

    # Deletion and insertion: every explainer's ordering and the random ones in one batched pass.
    rank_rng = np.random.default_rng(ctx.rng.integers(2**63))
    explainer_ranks = np.stack([order_ranks(maps[n], rank_rng) for n in names])
    random_ranks = np.stack([np.argsort(rank_rng.random((len(s.x), layout.n_units)), axis=1).argsort(axis=1) for _ in range(o.random_orders)])
    deletion, insertion, fractions = removal_curves(
        probability, layout, s.x, removal_base, s.targets, np.concatenate([explainer_ranks, random_ranks]), o.curve_steps
    )
    del_auc, ins_auc = curve_auc(deletion, fractions), curve_auc(insertion, fractions)  # (E + random, R)
    rand_del, rand_ins = del_auc[len(names):].mean(axis=0), ins_auc[len(names):].mean(axis=0)
    confidence = ctx.predictions[s.rows, s.targets]
    gain_rng = np.random.default_rng(ctx.rng.integers(2**63))
    yield audit.Metric("deletion_auc", float(rand_del.mean()), subject="random", count=len(s.x))
    yield audit.Metric("insertion_auc", float(rand_ins.mean()), subject="random", count=len(s.x))
    for e, name in enumerate(names):
        d, i = del_auc[e], ins_auc[e]
        yield audit.Finding(
            check="deletion_auc", title="Deletion AUC against a random order", severity=audit.Severity.LOW,
            subject=name, passed=bool(d.mean() < rand_del.mean()), value=float(d.mean()), threshold=float(rand_del.mean()),
            message=(f"{name}: removing features in attribution order leaves an area of {d.mean():.3f} under the "
                     f"predicted-class probability curve, against {rand_del.mean():.3f} for a random order "
                     "(lower is better: the features it ranks first should matter most)"),
            details={"rows": len(d), "removal": o.removal, "steps": len(fractions) - 1},
        )
        yield audit.Finding(
            check="insertion_auc", title="Insertion AUC against a random order", severity=audit.Severity.LOW,
            subject=name, passed=bool(i.mean() > rand_ins.mean()), value=float(i.mean()), threshold=float(rand_ins.mean()),
            message=(f"{name}: adding features back in attribution order gives an area of {i.mean():.3f} under the "
                     f"predicted-class probability curve, against {rand_ins.mean():.3f} for a random order (higher is better)"),
            details={"rows": len(i), "removal": o.removal, "steps": len(fractions) - 1},
        )
        gain, low, high, passed = gain_over_random(d, i, rand_del, rand_ins, gain_rng, o.min_gain)
        yield audit.Finding(
            check="faithful_vs_random", title="Explainer better than a random ranking", severity=audit.Severity.MEDIUM,
            subject=name, passed=passed, value=float(gain.mean()), threshold=o.min_gain,
            message=(f"{name}: gain over a random order {gain.mean():+.3f} (95% CI {low:+.3f} to {high:+.3f}; "
                     "deletion AUC below random plus insertion AUC above random, per row); "
                     + ("its rankings track what the model uses" if passed else
                        "not distinguishable from a random ranking: its explanations should not be trusted")),
            details={"ci_low": low, "ci_high": high, "rows": len(gain)},
        )
        for metric, values in (("deletion_auc", d), ("insertion_auc", i)):
            yield audit.Metric(metric, float(values.mean()), subject=name, count=len(values), lower=None, upper=None)
            r = pearson_rows(values[None], confidence[None])[0]
            yield audit.Metric(f"{metric}_confidence_correlation", None if not np.isfinite(r) else float(r), subject=name,
                               details={"note": "Pearson correlation across rows between the AUC and the model's confidence; "
                                                "a strong correlation means the AUC partly measures confidence, not the explainer"})

    # Faithfulness correlation and infidelity share their model passes across explainers.
    fc_rng = np.random.default_rng(ctx.rng.integers(2**63))
    removed, drops = subset_drops(explained, layout, s.x, removal_base, s.targets, o.subsets, o.subset_fraction, fc_rng)
    unit_sd = layout.to_units(s.value_sd[None])[0] / (s.value_sd.size // layout.n_units) * o.infidelity_noise
    perturbations, pdrops = perturbation_drops(explained, layout, s.x, s.targets, o.infidelity_samples, unit_sd, fc_rng)
    for name in names:
        fc = faithfulness_correlation(maps[name], removed, drops)
        inf = infidelity(maps[name], perturbations, pdrops)
        yield audit.Metric("faithfulness_correlation", _mean(fc), subject=name, count=int(np.isfinite(fc).sum()),
                           details={"subsets": o.subsets, "subset_fraction": o.subset_fraction})
        yield audit.Metric("infidelity", _mean(inf), subject=name, count=int(np.isfinite(inf).sum()),
                           details={"samples": o.infidelity_samples, "noise": o.infidelity_noise,
                                    "definition": "E[(beta I.phi - drop)^2] / E[drop^2], beta optimal; 0 is perfect"})

    if "integrated_gradients" in maps:
        yield from _ig_checks(analysis, ctx, s, explained, maps["integrated_gradients"], inputs)

    curves = {n: (deletion[e].mean(0), insertion[e].mean(0)) for e, n in enumerate(names)}
    curves["random"] = (deletion[len(names):].mean((0, 1)), insertion[len(names):].mean((0, 1)))
    yield audit.Figure("deletion_insertion", "Deletion and insertion curves", _figures.curves(curves, fractions),
                       caption=f"Predicted-class probability as features are removed (left) or added back (right) in each explainer's order; "
                               f"dashed: random order. {len(s.x)} rows, removed features set to the {o.removal}.")
    yield from _map_figures(ctx, s, maps)


def _ig_checks(analysis, ctx, s: Setup, scorer, ig_map, inputs):
    o = analysis.options
    f_x = scorer.target_scores(s.x, s.targets)
    f_b = scorer.target_scores(inputs.ig_baseline, s.targets)
    delta = f_x - f_b
    error = np.abs(ig_map.sum(axis=1) - delta)
    relative = float(error.mean() / max(np.abs(delta).mean(), 1e-12))
    yield audit.Finding(
        check="ig_completeness_error", title="Integrated Gradients completeness", severity=audit.Severity.LOW,
        subject="integrated_gradients", passed=relative <= o.ig_completeness_tolerance, value=relative,
        threshold=o.ig_completeness_tolerance,
        message=(f"the IG attributions sum to f(x) - f(baseline) within {relative:.2%} on average "
                 f"(mean |error| {error.mean():.2e} against mean |f(x) - f(baseline)| {np.abs(delta).mean():.2e}; "
                 f"{o.ig_steps} {o.ig_method} steps, {o.ig_baseline} baseline, {o.score} score)"
                 + ("" if relative <= o.ig_completeness_tolerance else "; raise ig_steps: the path integral is not converged")),
        details={"max_abs_error": float(error.max()), "steps": o.ig_steps, "method": o.ig_method, "baseline": o.ig_baseline},
    )
    if not o.compare_ig_baselines:
        return
    others = [b for b in ("zeros", "mean", "blurred") if b != o.ig_baseline and (b != "blurred" or s.layout.is_image)]
    for other in others:
        baseline = make_baseline(other, s.x, s.data_mean, s.layout, o.blur_sigma)
        from ._explainers import integrated_gradients

        alt = s.layout.to_units(integrated_gradients(scorer, s.x, s.targets, baseline, o.ig_steps, o.ig_method))
        rho = spearman_rows(ig_map, alt)
        yield audit.Metric("ig_baseline_rank_correlation", _mean(rho), subject="integrated_gradients",
                           group=f"{o.ig_baseline} vs {other}", count=int(np.isfinite(rho).sum()),
                           details={"note": "low values: the IG explanation depends on the baseline choice (BEE)"})


def _map_figures(ctx, s: Setup, maps):
    if s.layout.is_image:
        titles = [f"predicted {class_name(ctx, int(t))}" for t in s.targets]
        yield audit.Figure("attribution_maps", "Attribution maps", _figures.image_maps(s.x, maps, s.layout, titles),
                           caption="Each row: an input, its predicted class, and each explainer's map (brighter = more |attribution|; "
                                   "maps with no zero or negative value, such as RISE's, are shown above their minimum).")
    else:
        names = ctx.data.feature_names or [f"x{i}" for i in range(s.layout.n_units)]
        yield audit.Figure("feature_attribution", "Mean absolute attribution per feature", _figures.feature_bars(maps, names),
                           caption="Mean |attribution| per feature over the explained rows, each explainer scaled to its largest feature "
                                   "(RISE's constant offset, the mean score, removed first).")


# -- attribution.sanity --------------------------------------------------------------
def _tile(cells: np.ndarray, layout: Layout) -> np.ndarray:
    """(G, 4, *sample) -> (G, *grid_sample): a 2x2 grid for images, 4 blocks side by side otherwise."""
    g = len(cells)
    if layout.is_image:
        h, w = layout.height, layout.width
        lead = cells.shape[2:-2]  # (C,) or ()
        grid = cells.reshape(g, 2, 2, *lead, h, w)
        axes = (0, *[3 + i for i in range(len(lead))], 1, 3 + len(lead), 2, 4 + len(lead))
        return grid.transpose(axes).reshape(g, *lead, 2 * h, 2 * w)
    return cells.reshape(g, -1)


def _grid_cell_of_unit(layout: Layout) -> np.ndarray:
    if layout.is_image:
        h, w = layout.height, layout.width
        rows = (np.arange(2 * h) >= h).astype(int)
        cols = (np.arange(2 * w) >= w).astype(int)
        return (rows[:, None] * 2 + cols[None, :]).reshape(-1)
    return np.arange(4 * layout.n_units) // layout.n_units


def _grid_functions(model, layout: Layout, score: str):
    """The DiFull wrapper: split a grid input into its 4 cells, run the model once on all cells, one score block per cell."""
    sample = layout.sample_shape

    def split_torch(x):
        b = x.shape[0]
        if layout.is_image:
            h, w = layout.height, layout.width
            lead = tuple(x.shape[1:-2])
            v = x.reshape(b, *lead, 2, h, 2, w)
            k = len(lead)
            perm = (0, 1 + k, 3 + k, *range(1, 1 + k), 2 + k, 4 + k)
            return v.permute(*perm).reshape(b * 4, *sample)
        return x.reshape(b * 4, *sample)

    def torch_function(x):
        import torch

        logits = model.logits_torch(split_torch(x))
        scores = torch.softmax(logits, dim=1) if score == "probability" else logits
        return scores.reshape(x.shape[0], -1)

    def numpy_function(x):
        b = len(x)
        if layout.is_image:
            h, w = layout.height, layout.width
            lead = x.shape[1:-2]
            k = len(lead)
            v = x.reshape(b, *lead, 2, h, 2, w).transpose(0, 1 + k, 3 + k, *range(1, 1 + k), 2 + k, 4 + k)
            cells = v.reshape(b * 4, *sample)
        else:
            cells = x.reshape(b * 4, *sample)
        probabilities, logits = model.predict_both(np.ascontiguousarray(cells))
        scores = probabilities if score == "probability" else logits
        return scores.reshape(b, -1)

    return torch_function, numpy_function


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, limit) + 1) if n % d == 0)


def run_sanity(analysis, ctx):
    o = analysis.options
    model = ctx.model
    s = setup(analysis, ctx)
    if not s.explainers:
        ctx.note("no explainer could run on this model")
        return
    grid_shares = yield from _grid_test(analysis, ctx, s)
    correlations = {}
    if "torch" in model.capabilities:
        correlations = yield from _randomization_test(analysis, ctx, s)
    else:
        ctx.note("model randomisation skipped: it re-initialises layers of a PyTorch module, and this model is not one")
    yield audit.Figure("sanity", "Sanity checks per explainer", _figures.sanity_bars(grid_shares, correlations, o),
                       caption="Left: share of attribution on the grid cell that can affect the output (1 is correct). "
                               "Right: rank correlation of maps before and after randomising the last layer(s) (low is correct).")


def _grid_test(analysis, ctx, s: Setup):
    o = analysis.options
    s = _treeshap.without_treeshap(ctx, s, "the DiFull grid wraps the model, and TreeSHAP reads the model's own trees")
    model = ctx.model
    layout = s.layout
    n = len(ctx.data.x)
    rng = np.random.default_rng(ctx.rng.integers(2**63))
    cell_rows = np.stack([rng.choice(n, size=4, replace=n < 4) for _ in range(o.grid_samples)])  # (G, 4)
    target_cell = np.arange(o.grid_samples) % 4
    x_all = np.asarray(ctx.data.x, dtype=np.float32)
    x_grid = _tile(x_all[cell_rows], layout).astype(np.float32)
    targets = target_cell * model.n_classes + ctx.predicted[cell_rows[np.arange(o.grid_samples), target_cell]]
    groups = None
    if layout.groups is not None:
        groups = [[u + b * layout.n_units for u in g] for b in range(4) for g in layout.groups]
    grid_layout = Layout(x_grid.shape[1:], ctx.data.modality, groups)
    grid_mean = _tile(np.broadcast_to(s.data_mean, (1, 4, *s.data_mean.shape)), layout)[0]
    grid_sd = _tile(np.broadcast_to(s.value_sd, (1, 4, *s.value_sd.shape)), layout)[0]
    settings = copy.copy(s.settings)
    if layout.is_image:
        # Occlusion patches and Sobol regions must not straddle two cells.
        side = math.gcd(layout.height, layout.width)
        settings.patch_size = _largest_divisor_at_most(side, s.settings.patch_size or layout.default_patch())
        # The same number of Sobol regions as on one input, over the whole grid (even, so regions align with cells).
        cell_grid = s.settings.sobol_grid or layout.default_grid()
        settings.sobol_grid = cell_grid if cell_grid % 2 == 0 else 2 * cell_grid
    torch_function, numpy_function = _grid_functions(model, layout, o.score)
    scorer = TorchScorer(model, torch_function) if "torch" in model.capabilities else NumpyScorer(numpy_function, model.batch_size)
    maps, _ = explain_all(ctx, s, scorer, x_grid, targets, grid_layout, grid_mean, grid_sd, settings, "grid test")
    cell_of_unit = _grid_cell_of_unit(layout)
    on_target = cell_of_unit[None, :] == target_cell[:, None]
    shares = {}
    for name, m in maps.items():
        mass = np.abs(m)
        total = mass.sum(axis=1)
        share = np.where(total > 0, (mass * on_target).sum(axis=1) / np.where(total > 0, total, 1.0), np.nan)
        outside = (mass * ~on_target).max(axis=1)
        value = _mean(share)
        shares[name] = value
        passed = value is not None and value >= o.min_grid_share
        yield audit.Finding(
            check="grid_share", title="Attribution on the only cell that can matter (DiFull grid)", severity=audit.Severity.MEDIUM,
            subject=name, passed=passed, value=value, threshold=o.min_grid_share,
            message=(f"{name}: on {o.grid_samples} {'2x2 image grids' if layout.is_image else 'inputs of 4 feature blocks'} where the "
                     f"explained output depends on one cell only, {0 if value is None else value:.1%} of the absolute attribution lies on "
                     f"that cell (floor {o.min_grid_share:.0%}); attribution anywhere else is provably wrong. "
                     f"{int((outside == 0).sum())} of {len(outside)} maps put exactly zero outside it."),
            details={"grids_exactly_zero_outside": int((outside == 0).sum()), "max_outside": float(outside.max())},
        )
    return shares


def _randomized_function(model, layers: int, seed: int, score: str):
    """A deep copy of the module with its last ``layers`` parameterised layers re-initialised (seeded)."""
    import torch

    module = copy.deepcopy(model.torch_module())
    owners = [m for _, m in module.named_modules() if any(True for _ in m.named_parameters(recurse=False))]
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    randomized = []
    with torch.no_grad():
        for owner in owners[-layers:]:
            for pname, p in owner.named_parameters(recurse=False):
                sd = float(p.detach().float().std()) if p.numel() > 1 else 0.0
                if not np.isfinite(sd) or sd == 0:
                    sd = 1.0 / math.sqrt(max(1, p.shape[-1] if p.dim() > 1 else p.numel()))
                p.copy_((torch.randn(p.shape, generator=generator) * sd).to(p.device, p.dtype))
                randomized.append(pname)
    def function(x):
        logits = model.logits_of(module, x)
        return torch.softmax(logits, dim=1) if score == "probability" else logits

    return function, len(owners[-layers:])


def _randomization_test(analysis, ctx, s: Setup):
    o = analysis.options
    model = ctx.model
    original, _ = explain_all(ctx, s, ModelScorer(model, o.score), s.x, s.targets, s.layout, s.data_mean, s.value_sd, label="original maps",
                              share=("model", o.score))
    function, n_layers = _randomized_function(model, o.randomize_layers, int(ctx.rng.integers(2**31)), o.score)
    randomized, _ = explain_all(ctx, s, TorchScorer(model, function), s.x, s.targets, s.layout, s.data_mean, s.value_sd, label="randomised maps")
    correlations = {}
    for name in original:
        rho = spearman_rows(original[name], randomized[name])
        value = _mean(rho)
        correlations[name] = value
        passed = value is None or value < o.max_randomization_correlation
        yield audit.Finding(
            check="randomization_rank_correlation", title="Maps change when the model is randomised", severity=audit.Severity.MEDIUM,
            subject=name, passed=passed, value=value, threshold=o.max_randomization_correlation,
            message=(f"{name}: after re-initialising the last {n_layers} parameterised layer(s), the maps of {len(s.x)} rows keep a "
                     f"Spearman rank correlation of {0 if value is None else value:.3f} with the originals (fails at "
                     f"{o.max_randomization_correlation:g} or above: a map that survives randomisation does not explain the model)"),
            details={"layers": n_layers, "rows": len(s.x)},
        )
    return correlations


# -- attribution.agreement -----------------------------------------------------------
def run_agreement(analysis, ctx):
    o = analysis.options
    s = setup(analysis, ctx)
    maps, _ = explain_all(ctx, s, ModelScorer(ctx.model, o.score), s.x, s.targets, s.layout, s.data_mean, s.value_sd,
                          share=("model", o.score))
    names = list(maps)
    if len(names) < 2:
        ctx.note("agreement needs at least two explainers")
        return
    k = max(1, int(round(o.top_k_fraction * s.layout.n_units)))
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
