"""Built-in `robustness` analyses: corruptions, white- and black-box attacks, calibration, out-of-distribution."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

import audit
from audit.sharding import SHARD_ROWS

CORRECTION = Literal["holm", "bh", "bonferroni", "none"]

TAGS = {"eu-ai-act:art15", "nist-ai-rmf:measure-2.5", "nist-ai-rmf:measure-2.7", "eu-ai-act:art9", "eu-ai-act:annex-iv-2g"}

# What a failed check means for whoever deploys the model (the report's summary shows it).
MEANINGS = {
    "corruption_accuracy_drop": "Common input degradations (noise, blur, compression) cost a lot of accuracy; field data of lower quality will be handled worse.",
    "mean_corruption_error": "Across corruptions the model's error grows well beyond its clean error.",
    "robust_accuracy": "Small, deliberately chosen input changes flip the model's decisions: it can be manipulated.",
    "median_queries": "Few queries suffice to find inputs that fool the model.",
    "expected_calibration_error": "The model's confidence does not match how often it is right; its probabilities cannot be used as risk estimates as they are.",
    "brier_score": "The probabilities the model gives are poor overall.",
    "selective_risk_at_90": "Even keeping only the 90% of cases it is most confident about, the model errs too often to defer the rest to people.",
    "ood_auroc": "The model cannot tell unfamiliar inputs from familiar ones by its confidence; it will be confidently wrong outside its domain.",
}

SHARD_ROWS_HELP = ("rows per shard of the per-row work (shards run on Ray workers under --executor ray); "
                   "each shard draws from its own seeded stream, so results depend on this, not on the workers")


class Corruptions(audit.Analysis):
    """Accuracy, flip rate and confidence under common corruptions at five severities (black-box)."""

    name = "robustness.corruptions"
    title = "Common corruptions"
    category = "robustness"
    requires = frozenset()
    tags = TAGS
    meanings = MEANINGS
    budget_knobs = {"max_rows": 200}

    def plan(self, info):
        from ._plan import corruptions_plan

        return corruptions_plan(self, info)

    class Options(audit.Options):
        corruptions: list[str] | None = Field(
            None, description="corruptions to apply (default: all for the modality; images: gaussian_noise, shot_noise, "
            "impulse_noise, gaussian_blur, brightness, contrast, pixelate, jpeg; tabular: gaussian_noise, feature_dropout, and category_swap where the table has categorical columns; "
            "text: typo_swap, typo_drop, typo_insert, keyboard, case, punctuation, whitespace, word_dropout)",
        )
        severities: list[Annotated[int, Field(ge=0, le=5)]] = Field([1, 2, 3, 4, 5], min_length=1, description="severities 0 (identity) to 5")
        judged_severity: int = Field(3, ge=0, le=5, description="severity at which the worst accuracy drop is judged")
        max_accuracy_drop: float = Field(0.1, ge=0, le=1, description="worst corruption's accuracy drop above this fails")
        max_mean_corruption_error: float = Field(0.15, ge=0, le=1, description="mean error increase over clean above this fails")
        max_rows: int | None = Field(1000, ge=1, description="rows sampled (seeded) when the data has more")
        immutable: list[str] = Field([], description="tabular input columns the corruptions leave alone, besides binary, "
                                     "categorical and protected-attribute columns")
        level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals verdicts rest on")
        min_rows: int = Field(30, ge=2, description="with fewer rows a check is inconclusive")
        correction: CORRECTION = Field("holm", description="multiplicity correction over the corruptions: holm, bh, bonferroni or none")
        shard_rows: int = Field(SHARD_ROWS, ge=1, description=SHARD_ROWS_HELP)

    def run(self, ctx):
        if ctx.data.modality == "text":
            from . import _text

            yield from _text.run(self, ctx)
            return
        from . import _run_corruptions

        yield from _run_corruptions.run(self, ctx)


class Adversarial(audit.Analysis):
    """White-box FGSM and PGD (L-inf and L2): robust accuracy against epsilon, on the model's device."""

    name = "robustness.adversarial"
    title = "Adversarial robustness (white-box)"
    category = "robustness"
    requires = frozenset({"gradients"})
    tags = TAGS
    meanings = MEANINGS
    budget_knobs = {"max_rows": 100, "steps": 5}

    def plan(self, info):
        from ._plan import adversarial_plan

        return adversarial_plan(self, info)

    class Options(audit.Options):
        attacks: list[Literal["fgsm", "pgd"]] = Field(["fgsm", "pgd"], min_length=1, description="attacks to run")
        norms: list[Literal["linf", "l2"]] = Field(["linf", "l2"], min_length=1, description="threat models")
        epsilons_linf: list[Annotated[float, Field(ge=0)]] | None = Field(
            None, description="L-inf radii: data units for images (default 1, 2, 5, 10, 20% of the range), "
            "standard deviations of each feature for tabular data (default 0.05, 0.1, 0.2, 0.5, 1)")
        epsilons_l2: list[Annotated[float, Field(ge=0)]] | None = Field(
            None, description="L2 radii: the L-inf defaults times sqrt(input size)")
        steps: int = Field(10, ge=1, description="PGD steps (at most, with early_stop)")
        early_stop: bool = Field(True, description="attack a row only until it is fooled: the same robust accuracy in far fewer "
                                 "passes; off, every row runs every step at every epsilon (and the per-epsilon and final-iterate "
                                 "figures are reported)")
        step_size_factor: float = Field(2.5, gt=0, description="PGD step = factor * eps / steps (Madry et al.)")
        random_start: bool = Field(False, description="start PGD from a random point in the ball")
        clip: bool = Field(True, description="keep adversarial inputs inside the data's observed range")
        min_robust_accuracy_ratio: float = Field(0.5, ge=0, le=1, description="robust accuracy below this share of clean accuracy fails")
        max_rows: int | None = Field(500, ge=1, description="rows sampled (seeded) when the data has more")
        immutable: list[str] = Field([], description="tabular input columns the attacks leave alone, besides binary, "
                                     "categorical and protected-attribute columns")
        level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals verdicts rest on")
        min_rows: int = Field(30, ge=1, description="with fewer clean-correct rows a check is inconclusive")
        correction: CORRECTION = Field("holm", description="multiplicity correction over the attacks and radii: holm, bh, bonferroni or none")
        shard_rows: int = Field(SHARD_ROWS, ge=1, description=SHARD_ROWS_HELP)

    def run(self, ctx):
        from . import _run_adversarial

        yield from _run_adversarial.run(self, ctx)


class BlackBoxAttack(audit.Analysis):
    """Square attack (score-based, L-inf) within a query budget: robust accuracy and queries (black-box)."""

    name = "robustness.blackbox_attack"
    title = "Adversarial robustness (black-box Square attack)"
    category = "robustness"
    requires = frozenset()
    tags = TAGS
    meanings = MEANINGS
    budget_knobs = {"max_rows": 100, "budget": 200}

    def plan(self, info):
        from ._plan import blackbox_plan

        return blackbox_plan(self, info)

    class Options(audit.Options):
        epsilon: float | None = Field(
            None, ge=0, description="L-inf radius: data units for images (default 5% of the range), "
            "standard deviations of each feature for tabular data (default 0.25)")
        budget: int = Field(1000, ge=1, description="most queries (forward rows) per attacked row")
        p_init: float = Field(0.05, gt=0, le=1, description="initial share of the input changed per iteration")
        clip: bool = Field(True, description="keep adversarial inputs inside the data's observed range")
        min_robust_accuracy_ratio: float = Field(0.5, ge=0, le=1, description="robust accuracy below this share of clean accuracy fails")
        min_median_queries: int = Field(50, ge=0, description="median queries of successful attacks below this fails (low)")
        max_rows: int | None = Field(100, ge=1, description="rows sampled (seeded) when the data has more")
        immutable: list[str] = Field([], description="tabular input columns the attack leaves alone, besides binary, "
                                     "categorical and protected-attribute columns")
        level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals verdicts rest on")
        min_rows: int = Field(30, ge=1, description="with fewer clean-correct rows a check is inconclusive")
        shard_rows: int = Field(SHARD_ROWS, ge=1, description=SHARD_ROWS_HELP)

    def run(self, ctx):
        if ctx.data.modality == "text":
            from . import _text_attack

            yield from _text_attack.run(self, ctx)
            return
        from . import _run_blackbox

        yield from _run_blackbox.run(self, ctx)


class Calibration(audit.Analysis):
    """Expected calibration error, Brier score and selective prediction (risk-coverage) from the clean pass."""

    name = "robustness.calibration"
    title = "Calibration and selective prediction"
    category = "robustness"
    requires = frozenset({"labels"})
    tags = TAGS
    meanings = MEANINGS

    def plan(self, info):
        from ._plan import calibration_plan

        return calibration_plan(self, info)

    class Options(audit.Options):
        bins: int = Field(15, ge=2, le=1000, description="confidence bins for the ECE")
        binning: Literal["width", "mass"] = Field("width", description="equal-width or equal-mass bins")
        max_ece: float = Field(0.05, ge=0, le=1, description="ECE above this fails")
        max_brier: float | None = Field(None, ge=0, description="Brier score above this fails (default: that of always predicting the class frequencies)")
        max_selective_risk_at_90: float | None = Field(
            None, ge=0, le=1, description="error at 90% coverage above this fails (default: the error at full coverage)")
        level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals verdicts rest on")
        min_rows: int = Field(30, ge=1, description="with fewer rows a check is inconclusive")

    def run(self, ctx):
        from . import _run_calibration

        yield from _run_calibration.run(self, ctx)


class OutOfDistribution(audit.Analysis):
    """Maximum-softmax and energy scores: AUROC and FPR at 95% TPR against OOD inputs (black-box)."""

    name = "robustness.ood"
    title = "Out-of-distribution detection"
    category = "robustness"
    requires = frozenset()
    tags = TAGS
    meanings = MEANINGS
    budget_knobs = {"synthetic_rows": 200}

    def plan(self, info):
        from ._plan import ood_plan

        return ood_plan(self, info)

    class Options(audit.Options):
        ood_data: str | None = Field(None, description="an .npz with an array 'x' of out-of-distribution inputs (default: synthetic noise)")
        synthetic_rows: int = Field(1000, ge=10, description="rows of each synthetic noise set")
        min_auroc: float = Field(0.8, ge=0, le=1, description="AUROC below this fails")
        level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals verdicts rest on")
        min_rows: int = Field(30, ge=1, description="with fewer in- or out-of-distribution rows the check is inconclusive")

    def skip_reason(self, ctx):
        if ctx.data.modality == "text":
            return "synthetic out-of-distribution inputs are numeric noise, which has no meaning for a text model"
        return None

    def run(self, ctx):
        from . import _run_ood

        yield from _run_ood.run(self, ctx)


ANALYSES = (Corruptions, Adversarial, BlackBoxAttack, Calibration, OutOfDistribution)


@audit.hookimpl
def register_analyses(register):
    for analysis in ANALYSES:
        register(analysis)
