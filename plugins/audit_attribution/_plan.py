"""The attribution analyses' cost plans: model rows per explained row, from the options and the data's shape."""

from __future__ import annotations

import copy
import math

import audit

from ._core import Layout, feature_groups
from ._explainers import GRADIENT_EXPLAINERS


def _layout(options, info: audit.PlanInfo, shape=None) -> Layout:
    groups = None
    if info.modality == "tabular" and options.feature_groups and info.feature_names:
        groups = feature_groups(list(info.feature_names), options.feature_groups, info.row_shape[0])
    return Layout(shape or info.row_shape, info.modality, groups)


def _explainers(options, info: audit.PlanInfo) -> list[str]:
    from . import chosen_explainers

    gradients = "gradients" in info.capabilities
    names = chosen_explainers(options, gradients)
    trees = "trees" in info.capabilities
    return [n for n in names if (gradients or n not in GRADIENT_EXPLAINERS) and (n != "treeshap" or trees)]


# Work besides model passes, independent of the rows: each check's family of explainers decided by inverting t
# intervals, and the figures. Measured as actual less passes at the calibrated speed in BENCHMARKS.md's cost
# table (ResNet-14, 2-core CPU), where it was a third of a --quick run's attribution time.
FIXED_SECONDS = {"faithfulness": 1.5, "sanity": 1.8, "agreement": 0.4}


def per_row(explainers, layout: Layout, settings) -> tuple[int, int]:
    """(forward, backward) model rows per explained row for these explainers, as _explainers.explain sends them."""
    forward = backward = 0
    for name in explainers:
        if name in ("saliency", "input_x_gradient"):
            passes, grad = 1, 1
        elif name == "integrated_gradients":
            passes, grad = settings.ig_steps, settings.ig_steps
        elif name == "smoothgrad":
            passes, grad = settings.smoothgrad_samples, settings.smoothgrad_samples
        elif name == "occlusion":
            passes, grad = layout.patch_regions(settings.patch_size or layout.default_patch())[1] + 1, 0
        elif name == "sobol":
            passes, grad = settings.sobol_designs * (layout.grid_regions(settings.sobol_grid or layout.default_grid())[1] + 2), 0
        elif name == "rise":
            passes, grad = settings.rise_masks, 0
        else:  # treeshap reads the trees
            passes, grad = 0, 0
        forward += passes
        backward += grad
    return forward, backward


def _rows(options, info: audit.PlanInfo) -> int:
    return min(info.rows, options.rows)


def _maps_key(analysis, options, info, rows: int) -> str:
    settings = {k: getattr(options, k) for k in ("explainers", "removal", "score", "ig_steps", "ig_method", "ig_baseline", "blur_sigma",
                                                   "smoothgrad_samples", "smoothgrad_noise", "patch_size", "sobol_grid", "sobol_designs",
                                                   "rise_masks", "rise_grid", "rise_probability")}
    return f"attribution.maps:{rows}:{sorted(settings.items())!r}"


def _text_plan(options, info: audit.PlanInfo) -> audit.Plan:
    rows = _rows(options, info)
    tokens = info.row_shape[-1] if info.row_shape else 32
    gradient = "gradients" in info.capabilities
    forward = rows * (tokens + 1 + (options.ig_steps if gradient else 0))
    return audit.Plan(forward, rows * options.ig_steps if gradient else 0, notes=["text: token occlusion and Integrated Gradients, roughly"])


def maps_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    """The explainer maps of the explained rows: shared by faithfulness and agreement (and sanity's original maps)."""
    options = analysis.options
    rows = _rows(options, info)
    forward, backward = per_row(_explainers(options, info), _layout(options, info), options)
    return audit.Plan(shared={_maps_key(analysis, options, info, rows): (rows * forward, rows * backward)})


def faithfulness_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    if info.modality == "text":
        return _text_plan(options, info)
    plan = maps_plan(analysis, info)
    rows, layout = _rows(options, info), _layout(options, info)
    explainers = _explainers(options, info)
    points = min(options.curve_steps, layout.n_units) + 1
    forward = rows * ((len(explainers) + options.random_orders) * 2 * points + options.subsets + 1 + options.infidelity_samples + 1)
    backward = 0
    if "integrated_gradients" in explainers:
        forward += 2 * rows  # completeness: the score at x and at the baseline
        if options.compare_ig_baselines:
            others = 2 if layout.is_image else 1
            forward += others * rows * options.ig_steps
            backward += others * rows * options.ig_steps
    plan.forward_rows, plan.backward_rows = forward, backward
    plan.other_seconds = FIXED_SECONDS["faithfulness"]
    return plan


def agreement_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    if info.modality == "text":
        return _text_plan(analysis.options, info)
    plan = maps_plan(analysis, info)
    plan.other_seconds = FIXED_SECONDS["agreement"]
    return plan


def sanity_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    if info.modality == "text":
        return audit.Plan(notes=["skipped on text"])
    plan = maps_plan(analysis, info)
    layout = _layout(options, info)
    rows = _rows(options, info)
    explainers = [n for n in _explainers(options, info) if n != "treeshap"]
    settings = copy.copy(options)
    if layout.is_image:
        grid_shape = (*info.row_shape[:-2], 2 * layout.height, 2 * layout.width)
        side = math.gcd(layout.height, layout.width)
        patch = options.patch_size or layout.default_patch()
        settings = options.model_copy(update={"patch_size": max(d for d in range(1, max(1, patch) + 1) if side % d == 0)})
        cell_grid = options.sobol_grid or layout.default_grid()
        settings = settings.model_copy(update={"sobol_grid": cell_grid if cell_grid % 2 == 0 else 2 * cell_grid})
        grid_layout = Layout(grid_shape, info.modality)
    else:
        grid_layout = Layout((4 * layout.n_values,), info.modality)
    grid_forward, grid_backward = per_row(explainers, grid_layout, settings)
    # Each grid input is four model rows; its backward pass is counted once per grid.
    forward = options.grid_samples * 4 * grid_forward
    backward = options.grid_samples * grid_backward
    if "torch" in info.capabilities:  # the randomised model's maps: each row explained alone, under its own weights
        random_forward, random_backward = per_row(explainers, layout, options)
        forward += rows * random_forward
        backward += rows * random_backward
        plan.small_batches = (rows * random_forward, rows * random_backward)
    else:
        plan.shared = {}  # without a torch module the original maps are not needed
    plan.forward_rows, plan.backward_rows = forward, backward
    plan.other_seconds = FIXED_SECONDS["sanity"]
    return plan
