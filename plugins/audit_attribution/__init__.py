"""Built-in `attribution` analyses: are the model's explanations faithful to what it computes?

Three analyses share one set of explainers (gradient-based on PyTorch models,
black-box on every model): ``attribution.faithfulness`` (deletion/insertion
against a random order, faithfulness correlation, infidelity, IG completeness),
``attribution.sanity`` (the DiFull controlled grid and model randomisation) and
``attribution.agreement`` (how much explainers agree; a diagnostic only).

Explainers explain the predicted class; by default their score is the
predicted class's probability (``score = "logit"`` for the logit). Deletion
and insertion curves always follow the predicted class's probability.
"""

from __future__ import annotations

from typing import Literal

import audit
from audit.sharding import SHARD_ROWS
from pydantic import Field

TAGS = {"eu-ai-act:art13", "nist-ai-rmf:measure-2.9", "eu-ai-act:art9", "eu-ai-act:annex-iv-2g"}

# What a failed check means for whoever deploys the model (the report's summary shows it).
MEANINGS = {
    "deletion_auc": "Removing the features an explainer marks as important barely changes the prediction: the explanation is not faithful.",
    "insertion_auc": "Adding back the features an explainer marks as important does not restore the prediction: the explanation is not faithful.",
    "faithful_vs_random": "The explainer does no better than a random ranking of features; its explanations should not be shown to users.",
    "ig_completeness_error": "Integrated Gradients attributions do not add up to the change in output: the attribution was computed with too few steps or the model is badly behaved.",
    "grid_share": "The explainer puts attribution on parts of the input that provably cannot affect the output.",
    "randomization_rank_correlation": "The explanation barely changes when the model's weights are randomised: it reflects the input, not the model.",
}

ExplainerName = Literal["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion", "sobol", "rise", "treeshap"]
# Kept here (not imported from _plan) so registering the plugin stays light: the same list for the three analyses.
_KNOBS = {"rise_masks": 50, "sobol_designs": 8, "subsets": 16, "infidelity_samples": 16, "smoothgrad_samples": 4,
          "ig_steps": 16, "curve_steps": 16, "random_orders": 2, "grid_samples": 4, "rows": 8}
# The default explainers, by what the model offers. With input gradients the gradient
# explainers and occlusion read the model in tens of passes a row; Sobol (designs x (cells + 2))
# and RISE (hundreds of masks) need thousands, so they are the default only where no gradient is.
WITH_GRADIENTS = ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion", "treeshap"]
WITHOUT_GRADIENTS = ["occlusion", "sobol", "rise", "treeshap"]


def chosen_explainers(options, has_gradients: bool) -> list[str]:
    """The explainers asked for, or the default for a model with (or without) input gradients."""
    if options.explainers is not None:
        return list(dict.fromkeys(options.explainers))
    return list(WITH_GRADIENTS if has_gradients else WITHOUT_GRADIENTS)


class ExplainerOptions(audit.Options):
    """Which explainers run, on how many rows, and their settings (shared by the three analyses)."""

    explainers: list[ExplainerName] | None = Field(
        None, description="explainers to run (default: saliency, input_x_gradient, integrated_gradients, smoothgrad and occlusion "
        "when the model gives input gradients, else occlusion, sobol and rise; treeshap on tree ensembles); gradient ones need "
        "input gradients, treeshap a tree-ensemble ONNX model")
    rows: int = Field(64, ge=2, description="seeded subsample of rows explained (cost grows linearly)")
    removal: Literal["mean", "zeros"] = Field("mean", description="value an occluded, masked or removed feature takes: the data mean or zero")
    score: Literal["probability", "logit"] = Field("probability", description="the predicted class's score the explainers explain")
    ig_steps: int = Field(32, ge=2, description="Integrated Gradients: points on the path")
    ig_method: Literal["gausslegendre", "riemann_midpoint", "riemann_trapezoid"] = Field("gausslegendre", description="Integrated Gradients: quadrature rule")
    ig_baseline: Literal["zeros", "mean", "blurred"] = Field("zeros", description="Integrated Gradients baseline (blurred: images only, else the mean)")
    blur_sigma: float | None = Field(None, gt=0, description="blurred baseline: Gaussian sigma in pixels (default: image side / 8)")
    smoothgrad_samples: int = Field(16, ge=1, description="SmoothGrad: noisy copies per row")
    smoothgrad_noise: float = Field(0.15, ge=0, description="SmoothGrad: noise sd as a fraction of the value range")
    patch_size: int | None = Field(None, ge=1, description="occlusion: square patch side in pixels (default: image side / 8)")
    feature_groups: dict[str, list[str]] = Field(default_factory=dict, description="tabular: features occluded and masked together, by name")
    sobol_grid: int | None = Field(None, ge=1, description="Sobol: mask grid side for images (default min(8, side / 2))")
    sobol_designs: int = Field(32, ge=4, description="Sobol: quasi-Monte Carlo designs N (cost N (d + 2) per row)")
    rise_masks: int = Field(500, ge=10, description="RISE: random masks per row")
    rise_grid: int | None = Field(None, ge=2, description="RISE: low-resolution mask grid side (images)")
    rise_probability: float = Field(0.5, gt=0, lt=1, description="RISE: probability a mask cell keeps the input")
    level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals verdicts rest on (for a family: of the whole family)")
    correction: Literal["holm", "bh", "bonferroni", "none"] = Field(
        "holm", description="multiplicity correction over one check's explainers (a family): holm, bh (Benjamini-Hochberg), bonferroni or none")
    shard_rows: int = Field(SHARD_ROWS, ge=1, description="explained rows per shard of the explainer maps (shards run on Ray workers under "
                            "--executor ray); each shard draws its noise and masks from its own seeded stream, so maps depend on this, "
                            "not on the workers")


class Faithfulness(audit.Analysis):
    """Deletion and insertion AUC of each explainer against a random order, faithfulness correlation, infidelity, IG completeness."""

    name = "attribution.faithfulness"
    title = "Attribution faithfulness"
    category = "attribution"
    tags = TAGS
    meanings = MEANINGS
    budget_knobs = _KNOBS

    def plan(self, info):
        from ._plan import faithfulness_plan

        return faithfulness_plan(self, info)

    class Options(ExplainerOptions):
        curve_steps: int = Field(16, ge=2, description="points on the deletion and insertion curves (at most one per feature)")
        random_orders: int = Field(2, ge=1, description="random orderings averaged for the random baseline")
        min_gain: float = Field(0.0, description="faithful_vs_random passes when the interval of the mean gain over random lies above this, fails when it lies below")
        subsets: int = Field(32, ge=4, description="faithfulness correlation: random subsets per row")
        subset_fraction: float = Field(0.2, gt=0, lt=1, description="faithfulness correlation: fraction of features removed per subset")
        infidelity_samples: int = Field(32, ge=4, description="infidelity: Gaussian perturbations per row")
        infidelity_noise: float = Field(0.2, gt=0, description="infidelity: perturbation sd in units of each feature's sd")
        ig_completeness_tolerance: float = Field(0.05, gt=0, description="ig_completeness_error fails above this relative error (a numerical check: no interval)")
        compare_ig_baselines: bool = Field(True, description="also run IG with the other baselines and report how much the map changes")

    def run(self, ctx):
        if ctx.data.modality == "text":
            from ._text import run_faithfulness as run_text

            yield from run_text(self, ctx)
            return
        from ._faithfulness import run_faithfulness

        yield from run_faithfulness(self, ctx)


class Sanity(audit.Analysis):
    """Controlled-grid test (DiFull) and model-randomisation test of each explainer."""

    name = "attribution.sanity"
    title = "Attribution sanity checks"
    category = "attribution"
    tags = TAGS
    meanings = MEANINGS
    budget_knobs = _KNOBS

    def plan(self, info):
        from ._plan import sanity_plan

        return sanity_plan(self, info)

    class Options(ExplainerOptions):
        rows: int = Field(64, ge=2, description="rows for the randomisation test, each with its own re-initialisation (64, like the other analyses, shares their maps)")
        grid_samples: int = Field(8, ge=1, description="2x2 grids (4 blocks for tabular data) built from the data")
        min_grid_share: float = Field(0.9, ge=0, le=1, description="grid_share passes when the interval of the mean share on the cell that can matter lies at or above this, fails when below")
        randomize_layers: int = Field(1, ge=1, description="how many of the last parameterised layers are re-initialised")
        max_randomization_correlation: float = Field(0.5, ge=-1, le=1, description="randomization_rank_correlation passes when the interval of the mean correlation lies at or below this, fails when above")

    def skip_reason(self, ctx):
        if ctx.data.modality == "text":
            return "the controlled-grid and randomisation tests are defined on numeric inputs; text explanations are judged by ERASER in attribution.faithfulness"
        return None

    def run(self, ctx):
        from ._sanity import run_sanity

        yield from run_sanity(self, ctx)


class Agreement(audit.Analysis):
    """Rank correlation and top-k overlap between explainers (a diagnostic, never a verdict)."""

    name = "attribution.agreement"
    title = "Agreement between explainers"
    category = "attribution"
    tags = TAGS
    meanings = MEANINGS
    budget_knobs = _KNOBS

    def plan(self, info):
        from ._plan import agreement_plan

        return agreement_plan(self, info)

    class Options(ExplainerOptions):
        top_k_fraction: float = Field(0.1, gt=0, le=1, description="top-k overlap: k as a fraction of the features")

    def run(self, ctx):
        if ctx.data.modality == "text":
            from ._text import run_agreement as run_text

            yield from run_text(self, ctx)
            return
        from ._agreement import run_agreement

        yield from run_agreement(self, ctx)


@audit.hookimpl
def register_analyses(register):
    register(Faithfulness)
    register(Sanity)
    register(Agreement)
