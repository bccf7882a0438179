"""robustness.blackbox_attack: Square attack robust accuracy and queries, for any model that predicts."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

import audit

from . import _figures
from audit import stats

from ._common import audited_rows, fmt, image_layout, input_range, movable_scale
from ._square import SquareResult, square_attack


@dataclass
class SquareRun:
    """What robustness.blackbox_attack measures: one Square attack over the audited rows."""

    x: np.ndarray
    y: np.ndarray
    clean_logits: np.ndarray
    agreement: bool
    image: bool
    eps: float
    bounds: Any
    layout: Any
    result: Any  # the square_attack result: robust, queries, fooled_by_attack, x_adv
    frozen: dict  # column name -> why the attack leaves it alone

    @property
    def what(self) -> str:
        return "agreement" if self.agreement else "accuracy"

    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(audit.predicted_classes(self.clean_logits) == self.y))

    @property
    def subject(self) -> str:
        return f"square linf eps={fmt(self.eps)}"


def _attack_shard(model, rng, x, y, clean_logits, *, eps, budget, p_init, layout, scale, lower, upper):
    """The Square attack on one shard of rows: every row's queries are its own, only the random draws are shared."""

    def predict_logits(batch):
        return model.predict(batch, output="logits")

    result = square_attack(predict_logits, x, y, clean_logits, eps, budget, p_init, rng, lower=lower, upper=upper, layout=layout, scale=scale)
    return result.x_adv, result.queries, result.robust, result.fooled_by_attack


def measure(ctx, options) -> SquareRun:
    take, x, y, agreement = audited_rows(ctx, options.max_rows)
    clean_logits = take(ctx.logits)
    bounds = input_range(ctx.data.x, ctx.data.modality)
    image = ctx.data.modality == "image"
    eps = options.epsilon if options.epsilon is not None else (float(f"{0.05 * bounds.span:.4g}") if image else 0.25)
    layout = image_layout(ctx.data)
    if ctx.model.output_kind == "probabilities":
        ctx.note("the model outputs probabilities: the margin loss uses log-probabilities in place of logits")

    scale, frozen = movable_scale(ctx, options.immutable, "the attack's perturbations")

    attack = functools.partial(
        _attack_shard, eps=eps, budget=options.budget, p_init=options.p_init, layout=layout, scale=scale,
        lower=bounds.lower if options.clip else None, upper=bounds.upper if options.clip else None,
    )
    with ctx.progress(1, "square attack") as bar:
        x_adv, queries, robust, fooled = ctx.map_rows(attack, x, y, clean_logits, purpose="square", shard_rows=options.shard_rows)
        bar.advance(1)
    result = SquareResult(x_adv, queries, robust, fooled)
    return SquareRun(x, y, clean_logits, agreement, image, eps, bounds, layout, result, frozen)


def judge(m: SquareRun, options):
    result, eps = m.result, m.eps
    clean_accuracy, robust_accuracy = m.clean_accuracy, float(np.mean(result.robust))
    unit = "" if m.image else " standard deviations of each feature"
    where = f" ({eps / m.bounds.span:.1%} of the data range)" if m.image else ""
    threshold = options.min_robust_accuracy_ratio * clean_accuracy
    successful = result.queries[result.fooled_by_attack]
    attacked = result.queries[result.queries > 0]
    details = {
        "epsilon": float(eps),
        "epsilon_unit": "data units" if m.image else "standard deviations per feature",
        "budget": options.budget,
        "p_init": options.p_init,
        "rows": len(m.y),
        "clean_accuracy": clean_accuracy,
        "rows_fooled": int(result.fooled_by_attack.sum()),
        "mean_queries_per_attacked_row": float(attacked.mean()) if len(attacked) else 0.0,
        "max_queries_per_row": int(result.queries.max()),
        "total_queries": int(result.queries.sum()),
        "labels": "clean predictions" if m.agreement else "true labels",
    }
    n = len(m.y)
    robust = int(np.sum(result.robust))
    clean_correct = max(int(round(clean_accuracy * n)), robust)  # robust rows are clean-correct rows
    fooled = int(result.fooled_by_attack.sum())
    details["frozen_columns"] = m.frozen
    robust_lower, robust_upper = stats.wilson(robust, n, options.level)
    success_lower, success_upper = stats.wilson(fooled, clean_correct, options.level)
    ratio_lower, ratio_upper = stats.wilson(robust, clean_correct, options.level)
    yield audit.Metric("robust_accuracy", robust_accuracy, subject=m.subject, count=n, lower=robust_lower, upper=robust_upper,
                       details={"interval": "wilson", "level": options.level})
    yield audit.Metric("attack_success_rate", fooled / clean_correct if clean_correct else None, subject=m.subject,
                       count=clean_correct, lower=success_lower if clean_correct else None,
                       upper=success_upper if clean_correct else None, details={"interval": "wilson", "level": options.level})
    yield audit.Metric("queries", float(result.queries.sum()), subject=m.subject, unit="rows", count=n)
    details.update({"robust_over_clean": robust / clean_correct if clean_correct else None,
                    "robust_over_clean_interval": [ratio_lower, ratio_upper]})
    yield audit.Finding.judged(
        "robust_accuracy", f"Robust {m.what} under a black-box Square attack", robust_accuracy,
        ratio_lower * clean_accuracy, ratio_upper * clean_accuracy, severity=audit.Severity.MEDIUM, floor=threshold,
        subject=m.subject, level=options.level, method="wilson on the clean-correct rows", rows=clean_correct,
        min_rows=options.min_rows,
        message=(
            f"with at most {options.budget} queries per row and L-inf perturbations of {fmt(eps)}{unit}{where}, {m.what} falls from {clean_accuracy:.3f} to {robust_accuracy:.3f} "
            f"[{options.level:.0%} CI {ratio_lower * clean_accuracy:.3f}, {ratio_upper * clean_accuracy:.3f}]; "
            f"required at least {options.min_robust_accuracy_ratio:g} x clean = {threshold:.3f}"
        ),
        details=details,
    )
    yield _median_queries_finding(m, successful, options, details)


def _median_queries_finding(m: SquareRun, successful, options, details):
    """Median queries of the successful attacks, judged by its distribution-free (order-statistic) interval."""
    if not len(successful):
        # No row fooled: nothing to take a median of, and nothing cheap about this attack.
        return audit.Finding(
            check="median_queries", title="Median queries of a successful Square attack", severity=audit.Severity.LOW,
            passed=True, value=None, threshold=float(options.min_median_queries), subject=m.subject,
            message=f"no row was fooled within {options.budget} queries at eps {fmt(m.eps)}", details=details,
        )
    median = float(np.median(successful))
    lower, upper = stats.quantile_interval(successful, 0.5, options.level)
    return audit.Finding.judged(
        "median_queries", "Median queries of a successful Square attack", median,
        lower if np.isfinite(lower) else None, upper if np.isfinite(upper) else None, severity=audit.Severity.LOW,
        floor=float(options.min_median_queries), level=options.level, method="order statistics (binomial)",
        rows=len(successful), subject=m.subject, details=details,
        message=(
            f"the attack fooled {len(successful)} of {int((m.result.queries > 0).sum())} attacked rows; half of them "
            f"within {median:g} queries [{options.level:.0%} CI {lower:g}, {upper:g}] (at least {options.min_median_queries} "
            "wanted: fewer means a cheap black-box attack suffices)"
        ),
    )


def figures(m: SquareRun, ctx):
    if not m.layout:
        return
    k = min(4, len(m.x))
    adversarial_predictions = audit.predicted_classes(ctx.model.predict(m.result.x_adv[:k]))
    yield audit.Figure(
        "square_examples",
        "Examples: clean and Square-attack inputs",
        _figures.image_grid(
            m.layout.to_nchw(m.x[:k]), audit.predicted_classes(m.clean_logits[:k]),
            [(f"square {fmt(m.eps)}", m.layout.to_nchw(m.result.x_adv[:k]), adversarial_predictions)],
            ctx.class_names, m.y[:k], m.bounds,
        ),
        caption="Each row one input; titles give the predicted class (red when it differs from the label).",
    )


def run(analysis, ctx):
    """Attack, then judge and draw from the result."""
    measured = measure(ctx, analysis.options)
    yield from judge(measured, analysis.options)
    yield from figures(measured, ctx)
