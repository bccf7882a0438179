"""robustness.blackbox_attack: Square attack robust accuracy and queries, for any model that predicts."""

from __future__ import annotations

import numpy as np

import audit

from . import _figures
from ._common import audited_rows, class_names, fmt, image_layout, input_range, perturbation_scale
from ._square import square_attack


def run(analysis, ctx):
    o = analysis.options
    take, x, y, agreement = audited_rows(ctx, o.max_rows)
    clean_logits = take(ctx.logits)
    what = "agreement" if agreement else "accuracy"
    bounds = input_range(ctx.data.x, ctx.data.modality)
    image = ctx.data.modality == "image"
    scale = perturbation_scale(ctx.data)
    eps = o.epsilon if o.epsilon is not None else (float(f"{0.05 * bounds.span:.4g}") if image else 0.25)
    unit = "" if image else " standard deviations of each feature"
    where = f" ({eps / bounds.span:.1%} of the data range)" if image else ""
    layout = image_layout(ctx.data)
    if ctx.model.output_kind == "probabilities":
        ctx.note("the model outputs probabilities: the margin loss uses log-probabilities in place of logits")

    def predict_logits(batch):
        return ctx.model.predict(batch, output="logits")

    with ctx.progress(o.budget, "square attack queries") as bar:
        result = square_attack(
            predict_logits, x, y, clean_logits, eps, o.budget, o.p_init, ctx.rng,
            lower=bounds.lower if o.clip else None, upper=bounds.upper if o.clip else None,
            layout=layout, progress=bar, scale=scale,
        )
    clean_accuracy = float(np.mean(audit.predicted_classes(clean_logits) == y))
    robust_accuracy = float(np.mean(result.robust))
    subject = f"square linf eps={fmt(eps)}"
    threshold = o.min_robust_accuracy_ratio * clean_accuracy
    successful = result.queries[result.fooled_by_attack]
    attacked = result.queries[result.queries > 0]
    median = float(np.median(successful)) if len(successful) else None
    details = {
        "epsilon": float(eps),
        "epsilon_unit": "data units" if image else "standard deviations per feature",
        "budget": o.budget,
        "p_init": o.p_init,
        "rows": len(y),
        "clean_accuracy": clean_accuracy,
        "rows_fooled": int(result.fooled_by_attack.sum()),
        "mean_queries_per_attacked_row": float(attacked.mean()) if len(attacked) else 0.0,
        "max_queries_per_row": int(result.queries.max()),
        "total_queries": int(result.queries.sum()),
        "labels": "clean predictions" if agreement else "true labels",
    }
    yield audit.Metric("robust_accuracy", robust_accuracy, subject=subject, count=len(y))
    yield audit.Metric("queries", float(result.queries.sum()), subject=subject, unit="rows", count=len(y))
    yield audit.Finding(
        check="robust_accuracy",
        title=f"Robust {what} under a black-box Square attack",
        severity=audit.Severity.MEDIUM,
        passed=robust_accuracy >= threshold,
        value=robust_accuracy,
        threshold=threshold,
        subject=subject,
        message=(
            f"with at most {o.budget} queries per row and L-inf perturbations of {fmt(eps)}{unit}{where}, {what} falls from {clean_accuracy:.3f} to {robust_accuracy:.3f}; "
            f"required at least {o.min_robust_accuracy_ratio:g} x clean = {threshold:.3f}"
        ),
        details=details,
    )
    if median is None:
        message = f"no row was fooled within {o.budget} queries at eps {fmt(eps)}"
        passed = True
    else:
        message = (
            f"the attack fooled {len(successful)} of {int((result.queries > 0).sum())} attacked rows; half of them "
            f"within {median:g} queries (at least {o.min_median_queries} wanted: fewer means a cheap black-box attack suffices)"
        )
        passed = median >= o.min_median_queries
    yield audit.Finding(
        check="median_queries",
        title="Median queries of a successful Square attack",
        severity=audit.Severity.LOW,
        passed=passed,
        value=median,
        threshold=float(o.min_median_queries),
        subject=subject,
        message=message,
        details=details,
    )
    if layout:
        k = min(4, len(x))
        adversarial_predictions = audit.predicted_classes(ctx.model.predict(result.x_adv[:k]))
        yield audit.Figure(
            "square_examples",
            "Examples: clean and Square-attack inputs",
            _figures.image_grid(
                layout.to_nchw(x[:k]), audit.predicted_classes(clean_logits[:k]),
                [(f"square {fmt(eps)}", layout.to_nchw(result.x_adv[:k]), adversarial_predictions)],
                class_names(ctx), y[:k], bounds,
            ),
            caption="Each row one input; titles give the predicted class (red when it differs from the label).",
        )
