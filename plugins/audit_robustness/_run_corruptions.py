"""robustness.corruptions: accuracy, flip rate and confidence under common corruptions."""

from __future__ import annotations

import numpy as np

import audit

from . import _corruptions as C
from . import _figures
from ._common import audited_rows, class_names, image_layout, input_range


def run(analysis, ctx):
    o = analysis.options
    take, x, y, agreement = audited_rows(ctx, o.max_rows)
    clean_probabilities = take(ctx.predictions)
    clean_predicted = audit.predicted_classes(clean_probabilities)
    clean_accuracy = float(np.mean(clean_predicted == y))
    clean_confidence = float(np.mean(clean_probabilities.max(axis=1)))

    layout = image_layout(ctx.data)
    if ctx.data.modality == "image" and layout is None:
        ctx.note(f"rows of shape {ctx.data.x.shape[1:]} cannot be read as images; tabular corruptions used instead")
    available = C.IMAGE_CORRUPTIONS if layout else C.TABULAR_CORRUPTIONS
    names = list(o.corruptions or available)
    unknown = [n for n in names if n not in available]
    if unknown:
        kind = "image" if layout else "tabular"
        raise audit.AuditError(f"unknown {kind} corruption(s) {', '.join(unknown)}; available: {', '.join(available)}")
    severities = sorted(set(o.severities))
    judged = o.judged_severity if o.judged_severity in severities else max(severities)

    rng = ctx.rng
    bounds = input_range(ctx.data.x, ctx.data.modality)
    if layout:
        nchw = layout.to_nchw(x)
        side = max(nchw.shape[2:])
        unit = ((nchw - bounds.low) / bounds.span).astype(np.float32)
    else:
        side = None
        mean = ctx.data.x.mean(axis=0).astype(np.float32)
        std = ctx.data.x.std(axis=0).astype(np.float32)

    def corrupted(name, severity):
        if layout:
            u = C.corrupt_image(name, unit, severity, rng)
            return layout.from_nchw(bounds.low + u * bounds.span).astype(np.float32)
        return C.corrupt_tabular(name, x, severity, rng, mean, std)

    n_examples = min(4, len(x))
    accuracy, flips, confidence = {}, {}, {}
    examples = {}
    with ctx.progress(len(names) * len(severities), "corruptions") as bar:
        for name in names:
            for severity in severities:
                batch = corrupted(name, severity)
                probabilities = ctx.model.predict(batch)  # one batched pass per corruption and severity
                predicted = audit.predicted_classes(probabilities)
                key = (name, severity)
                accuracy[key] = float(np.mean(predicted == y))
                flips[key] = float(np.mean(predicted != clean_predicted))
                confidence[key] = float(np.mean(probabilities.max(axis=1)))
                if layout and severity == judged:
                    examples[name] = (batch[:n_examples], predicted[:n_examples])
                subject = f"{name} s={severity}"
                parameter = C.describe(name, severity, side)
                yield audit.Metric("accuracy", accuracy[key], subject=subject, count=len(y), details={"parameter": parameter})
                yield audit.Metric("flip_rate", flips[key], subject=subject, count=len(y))
                yield audit.Metric("mean_confidence", confidence[key], subject=subject, count=len(y))
                bar.advance(1)

    yield audit.Metric("clean_accuracy", clean_accuracy, count=len(y))
    yield audit.Metric("clean_mean_confidence", clean_confidence, count=len(y))
    what = "agreement with clean predictions" if agreement else "accuracy"

    drops = {name: clean_accuracy - accuracy[(name, judged)] for name in names}
    worst = max(drops, key=drops.get)
    worst_drop = drops[worst]
    yield audit.Finding(
        check="corruption_accuracy_drop",
        title="Accuracy drop under the worst corruption",
        severity=audit.Severity.MEDIUM,
        passed=worst_drop <= o.max_accuracy_drop,
        value=worst_drop,
        threshold=o.max_accuracy_drop,
        subject=f"{worst} s={judged}",
        message=(
            f"{worst} at severity {judged} ({C.describe(worst, judged, side)}) lowers {what} from "
            f"{clean_accuracy:.3f} to {accuracy[(worst, judged)]:.3f}, a drop of {worst_drop:.3f} "
            f"(allowed {o.max_accuracy_drop:g}); {flips[(worst, judged)]:.1%} of predictions change"
        ),
        details={
            "judged_severity": judged,
            "clean_accuracy": clean_accuracy,
            "drop_by_corruption": drops,
            "rows": len(y),
            "labels": "clean predictions" if agreement else "true labels",
        },
    )

    corrupted_levels = [s for s in severities if s > 0]
    if corrupted_levels:
        clean_error = 1.0 - clean_accuracy
        error_by_corruption = {n: float(np.mean([1.0 - accuracy[(n, s)] for s in corrupted_levels])) for n in names}
        mce = float(np.mean(list(error_by_corruption.values())))
        relative = mce - clean_error
        yield audit.Finding(
            check="mean_corruption_error",
            title="Mean corruption error relative to clean",
            severity=audit.Severity.MEDIUM,
            passed=relative <= o.max_mean_corruption_error,
            value=relative,
            threshold=o.max_mean_corruption_error,
            subject=f"{len(names)} corruptions s={','.join(map(str, corrupted_levels))}",
            message=(
                f"error averaged over {len(names)} corruptions and severities {corrupted_levels[0]}-{corrupted_levels[-1]} is "
                f"{mce:.3f} against {clean_error:.3f} on clean data: {relative:+.3f} (allowed {o.max_mean_corruption_error:g}); "
                f"worst corruption {max(error_by_corruption, key=error_by_corruption.get)}"
            ),
            details={
                "mean_corruption_error": mce,
                "clean_error": clean_error,
                "corruption_error": error_by_corruption,
                "definition": "mean over corruptions and severities of the error, minus the clean error (unnormalised relative mCE)",
            },
        )

    yield audit.Figure(
        "corruption_curves",
        "Accuracy and flip rate against corruption severity",
        _figures.severity_curves(names, severities, accuracy, flips, clean_accuracy, what),
        caption=(
            f"One line per corruption; severity 0 is the clean data. Left: {what}; right: share of predictions "
            "that differ from the clean prediction. Each point is one batched pass over "
            f"{len(y)} rows."
        ),
    )
    if layout and examples:
        yield audit.Figure(
            "corruption_examples",
            f"Examples: clean and corrupted at severity {judged}",
            _figures.image_grid(
                layout.to_nchw(x[:n_examples]),
                clean_predicted[:n_examples],
                [(name, layout.to_nchw(batch), predicted) for name, (batch, predicted) in examples.items()],
                class_names(ctx),
                y[:n_examples],
                bounds,
            ),
            caption="Each row one input; titles give the predicted class (red when it differs from the label).",
        )
