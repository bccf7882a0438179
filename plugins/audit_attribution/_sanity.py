"""attribution.sanity: the controlled-grid test (DiFull) and model randomisation."""

from __future__ import annotations

import copy
import math

import numpy as np

import audit

from . import _figures
from ._core import Layout, ModelScorer, NumpyScorer, TorchScorer
from ._metrics import spearman_rows
from . import _treeshap
from ._run import Setup, explain_all, judge_rows, setup


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
    options = analysis.options
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
    yield audit.Figure("sanity", "Sanity checks per explainer", _figures.sanity_bars(grid_shares, correlations, options),
                       caption="Left: share of attribution on the grid cell that can affect the output (1 is correct). "
                               "Right: rank correlation of maps before and after randomising the last layer(s) (low is correct).")


def _grid_test(analysis, ctx, s: Setup):
    options = analysis.options
    s = _treeshap.without_treeshap(ctx, s, "the DiFull grid wraps the model, and TreeSHAP reads the model's own trees")
    model = ctx.model
    layout = s.layout
    n = len(ctx.data.x)
    rng = np.random.default_rng(ctx.rng.integers(2**63))
    cell_rows = np.stack([rng.choice(n, size=4, replace=n < 4) for _ in range(options.grid_samples)])  # (G, 4)
    target_cell = np.arange(options.grid_samples) % 4
    x_all = np.asarray(ctx.data.x, dtype=np.float32)
    x_grid = _tile(x_all[cell_rows], layout).astype(np.float32)
    targets = target_cell * model.n_classes + ctx.predicted[cell_rows[np.arange(options.grid_samples), target_cell]]
    groups = None
    if layout.groups is not None:
        groups = [[u + b * layout.n_units for u in g] for b in range(4) for g in layout.groups]
    grid_layout = Layout(x_grid.shape[1:], ctx.data.modality, groups, [u + b * layout.n_units for b in range(4) for u in layout.categorical])
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
    torch_function, numpy_function = _grid_functions(model, layout, options.score)
    scorer = TorchScorer(model, torch_function) if "torch" in model.capabilities else NumpyScorer(numpy_function, model.batch_size)
    maps, _ = explain_all(ctx, s, scorer, x_grid, targets, grid_layout, grid_mean, grid_sd, settings, "grid test")
    cell_of_unit = _grid_cell_of_unit(layout)
    on_target = cell_of_unit[None, :] == target_cell[:, None]
    per_grid, outside_of = {}, {}
    for name, m in maps.items():
        mass = np.abs(m)
        total = mass.sum(axis=1)
        per_grid[name] = np.where(total > 0, (mass * on_target).sum(axis=1) / np.where(total > 0, total, 1.0), np.nan)
        outside_of[name] = (mass * ~on_target).max(axis=1)
    judged = judge_rows(per_grid, options.min_grid_share, True, options)
    shares = {}
    for name, v in judged.items():
        outside = outside_of[name]
        shares[name] = v.value
        yield audit.Finding(
            check="grid_share", title="Attribution on the only cell that can matter (DiFull grid)", severity=audit.Severity.MEDIUM,
            subject=name,
            message=(f"{name}: on {options.grid_samples} {'2x2 image grids' if layout.is_image else 'inputs of 4 feature blocks'} where the "
                     f"explained output depends on one cell only, {0 if v.value is None else v.value:.1%} of the absolute attribution lies on "
                     f"that cell ({v.interval_text(sign='', unit='grids')}; floor {options.min_grid_share:.0%}); attribution anywhere else is provably wrong. "
                     f"{int((outside == 0).sum())} of {len(outside)} maps put exactly zero outside it."),
            details=v.details(grids_exactly_zero_outside=int((outside == 0).sum()), max_outside=float(outside.max())),
            **{**v.fields(), "method": "t over grids"},
        )
    return shares


def _randomized_function(model, layers: int, score: str):
    """A deep copy of the module, its scores, a function re-initialising its last ``layers`` parameterised layers (seeded), and their count.

    Each re-initialisation draws Gaussian weights with the spread of the
    original ones (measured once, before any draw), in place, so many draws
    share one copy of the module.
    """
    import torch

    module = copy.deepcopy(model.torch_module())
    owners = [m for _, m in module.named_modules() if any(True for _ in m.named_parameters(recurse=False))]
    chosen = [p for owner in owners[-layers:] for _, p in owner.named_parameters(recurse=False)]
    spreads = []
    for p in chosen:
        sd = float(p.detach().float().std()) if p.numel() > 1 else 0.0
        if not np.isfinite(sd) or sd == 0:
            sd = 1.0 / math.sqrt(max(1, p.shape[-1] if p.dim() > 1 else p.numel()))
        spreads.append(sd)

    def reinitialise(seed: int) -> None:
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad():
            for p, sd in zip(chosen, spreads):
                p.copy_((torch.randn(p.shape, generator=generator) * sd).to(p.device, p.dtype))

    def function(x):
        logits = model.logits_of(module, x)
        return torch.softmax(logits, dim=1) if score == "probability" else logits

    return module, function, reinitialise, len(owners[-layers:])


def _randomization_test(analysis, ctx, s: Setup):
    """Each row explained by the model and by its own re-initialised copy: the rows' correlations are independent
    draws of (row, re-initialisation), so their interval covers the randomness of the re-initialisation too."""
    import dataclasses

    options = analysis.options
    model = ctx.model
    original, _ = explain_all(ctx, s, ModelScorer(model, options.score), s.x, s.targets, s.layout, s.data_mean, s.value_sd, label="original maps",
                              share=("model", options.score))
    _, function, reinitialise, n_layers = _randomized_function(model, options.randomize_layers, options.score)
    scorer = TorchScorer(model, function)
    parts = {name: [] for name in original}
    for r, seed in enumerate(ctx.rng.integers(2**31, size=len(s.x))):
        reinitialise(int(seed))
        one = dataclasses.replace(s, rows=s.rows[r : r + 1], x=s.x[r : r + 1], targets=s.targets[r : r + 1])
        # The streams of the row's shard: RISE scores it under the masks its original map had.
        maps, _ = explain_all(ctx, one, scorer, one.x, one.targets, s.layout, s.data_mean, s.value_sd, label=f"randomised maps, row {r + 1}",
                              stream=r // s.shard_rows)
        for name in parts:
            parts[name].append(maps[name])
    randomized = {name: np.concatenate(maps) for name, maps in parts.items()}
    rho = {name: spearman_rows(original[name], randomized[name]) for name in original}
    judged = judge_rows(rho, options.max_randomization_correlation, False, options)
    correlations = {}
    for name, v in judged.items():
        correlations[name] = v.value
        yield audit.Finding(
            check="randomization_rank_correlation", title="Maps change when the model is randomised", severity=audit.Severity.MEDIUM,
            subject=name,
            message=(f"{name}: after re-initialising the last {n_layers} parameterised layer(s), the maps of {len(s.x)} rows keep a "
                     f"Spearman rank correlation of {0 if v.value is None else v.value:.3f} with the originals ({v.interval_text()}; "
                     f"passes when shown below {options.max_randomization_correlation:g}, fails when shown above: a map that survives "
                     "randomisation does not explain the model; each row has its own seeded re-initialisation, so the interval "
                     "covers the rows and the draws of weights)"),
            details=v.details(layers=n_layers), **v.fields(),
        )
    return correlations
