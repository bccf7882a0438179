"""robustness.corruptions: accuracy, flip rate and confidence under common corruptions."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import audit

from . import _corruptions as C
from . import _figures
from . import _verdicts as V
from ._common import audited_rows, frozen_columns, image_layout, input_range, note_frozen


@dataclass
class CorruptionTable:
    """What robustness.corruptions measures: per (corruption, severity) accuracy, flip rate and confidence."""

    names: list[str]
    severities: list[int]
    judged: int
    y: np.ndarray
    agreement: bool
    x: np.ndarray
    side: int | None
    layout: Any
    bounds: Any
    clean_predicted: np.ndarray
    clean_accuracy: float
    clean_confidence: float
    accuracy: dict = field(default_factory=dict)
    flips: dict = field(default_factory=dict)
    confidence: dict = field(default_factory=dict)
    correct: dict = field(default_factory=dict)  # (name, severity) -> per-row correctness, for paired intervals
    parameters: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)  # corruption -> (corrupted rows, their predictions), at the judged severity

    @property
    def what(self) -> str:
        return "agreement with clean predictions" if self.agreement else "accuracy"


N_EXAMPLES = 4


def _corruption_names(ctx, options, layout) -> list[str]:
    if ctx.data.modality == "image" and layout is None:
        ctx.note(f"rows of shape {ctx.data.x.shape[1:]} cannot be read as images; tabular corruptions used instead")
    available = C.IMAGE_CORRUPTIONS if layout else C.TABULAR_CORRUPTIONS
    if not layout and ctx.data.categorical_columns:
        available = available + C.CATEGORICAL_CORRUPTIONS
    names = list(options.corruptions or available)
    unknown = [n for n in names if n not in available]
    if unknown:
        kind = "image" if layout else "tabular"
        raise audit.AuditError(f"unknown {kind} corruption(s) {', '.join(unknown)}; available: {', '.join(available)}")
    return names


def _rows_to_corrupt(x, layout, bounds):
    """The rows as the corruptions take them: images in [0, 1] as (N, C, H, W), tabular rows as they are; and the image side."""
    if layout:
        nchw = layout.to_nchw(x)
        return ((nchw - bounds.low) / bounds.span).astype(np.float32), max(nchw.shape[2:])
    return x, None


def _corrupted_predictions(model, rng, rows, *, name, severity, layout, bounds, mean, std, columns, counts, movable, keep):
    """One shard: its rows corrupted, the model's probabilities on them, and the first ``keep`` corrupted rows (model layout)."""
    if layout:
        u = C.corrupt_image(name, rows, severity, rng)
        batch = layout.from_nchw(bounds.low + u * bounds.span).astype(np.float32)
    elif name in C.CATEGORICAL_CORRUPTIONS:
        batch = C.swap_categories(rows, severity, rng, columns, counts)
    else:
        batch = C.corrupt_tabular(name, rows, severity, rng, mean, std, movable)
        if columns:  # noise and dropout move numbers only: the categorical columns come back from the clean rows
            batch = np.array(batch, dtype=np.float32, copy=True)
            batch[:, columns] = rows[:, columns]
    return model.predict(batch), batch[:keep]  # one batched pass per shard, corruption and severity


def measure(ctx, options) -> CorruptionTable:
    take, x, y, agreement = audited_rows(ctx, options.max_rows)
    clean_probabilities = take(ctx.predictions)
    clean_predicted = audit.predicted_classes(clean_probabilities)
    layout = image_layout(ctx.data)
    names = _corruption_names(ctx, options, layout)
    severities = sorted(set(options.severities))
    bounds = input_range(ctx.data.x, ctx.data.modality)
    rows, side = _rows_to_corrupt(x, layout, bounds)
    mean = std = movable = None
    columns, counts = [], []
    if not layout:
        mean, std = ctx.data.x.mean(axis=0).astype(np.float32), ctx.data.x.std(axis=0).astype(np.float32)
        columns = list(ctx.data.categorical_columns)
        counts = [len(ctx.data.categories[ctx.data.feature_names[j]]) for j in columns]
        frozen = frozen_columns(ctx.data, options.immutable)
        movable = np.ones(x.shape[1:], dtype=bool)
        if frozen:
            movable[list(frozen)] = False
            note_frozen(ctx, frozen, "gaussian_noise and feature_dropout", "; category_swap swaps their categories for others")
    table = CorruptionTable(
        names=names, severities=severities,
        judged=options.judged_severity if options.judged_severity in severities else max(severities),
        y=y, agreement=agreement, x=x, side=side, layout=layout, bounds=bounds, clean_predicted=clean_predicted,
        clean_accuracy=float(np.mean(clean_predicted == y)), clean_confidence=float(np.mean(clean_probabilities.max(axis=1))),
    )
    n_examples = min(N_EXAMPLES, len(x))
    with ctx.progress(len(names) * len(severities), "corruptions") as bar:
        for name in names:
            for severity in severities:
                keep = n_examples if layout and severity == table.judged else 0
                corrupt = functools.partial(_corrupted_predictions, name=name, severity=severity, layout=layout, bounds=bounds,
                                            mean=mean, std=std, columns=columns, counts=counts, movable=movable, keep=keep)
                probabilities, head = ctx.map_rows(corrupt, rows, purpose=f"{name}/s{severity}", shard_rows=options.shard_rows)
                predicted = audit.predicted_classes(probabilities)
                key = (name, severity)
                table.correct[key] = predicted == y
                table.accuracy[key] = float(np.mean(predicted == y))
                table.flips[key] = float(np.mean(predicted != clean_predicted))
                table.confidence[key] = float(np.mean(probabilities.max(axis=1)))
                table.parameters[key] = C.describe(name, severity, side)
                if layout and severity == table.judged:
                    table.examples[name] = (head[:n_examples], predicted[:n_examples])
                bar.advance(1)
    return table


def metrics(table: CorruptionTable, options):
    n = len(table.y)
    clean_correct = table.clean_predicted == table.y
    for name in table.names:
        for severity in table.severities:
            key, subject = (name, severity), f"{name} s={severity}"
            yield audit.Metric("accuracy", table.accuracy[key], subject=subject, count=n, details={"parameter": table.parameters[key]})
            drop, interval, counts = V.drop_interval(clean_correct, table.correct[key])
            lower, upper = interval(options.level)
            yield audit.Metric("accuracy_drop", drop, subject=subject, count=n, lower=lower, upper=upper,
                               details={"interval": V.DROP_METHOD, "level": options.level, **counts})
            yield audit.Metric("flip_rate", table.flips[key], subject=subject, count=n)
            yield audit.Metric("mean_confidence", table.confidence[key], subject=subject, count=n)
    yield audit.Metric("clean_accuracy", table.clean_accuracy, count=n)
    yield audit.Metric("clean_mean_confidence", table.clean_confidence, count=n)


def drop_family(names, judged, clean_correct, correct, options):
    """Every corruption's paired accuracy drop at the judged severity, decided as one family.

    Returns (verdict, worst shown, its Judged, drops by name, all Judged by name).
    """
    rows = len(clean_correct)
    members, drops = [], []
    for name in names:
        drop, interval, _ = V.drop_interval(clean_correct, correct[(name, judged)])
        drops.append(drop)
        members.append(audit.stats.FamilyMember(name, interval, options.max_accuracy_drop, higher_is_better=False,
                                                enough_rows=rows >= options.min_rows))
    verdict, shown, decided, everything = V.worst_of_family(members, drops, [rows] * len(names), options.level,
                                                            options.correction, options.min_rows, higher_is_better=False)
    by_name = {name: {"drop": d, "verdict": j.verdict, "lower": j.lower, "upper": j.upper, "level": j.level}
               for name, d, j in zip(names, drops, everything)}
    return verdict, names[shown], decided, dict(zip(names, drops)), by_name


def mean_corruption_error(names, levels, clean_correct, correct, options):
    """(relative mCE, its paired t interval): per row, clean correctness minus the mean correctness over corruptions and
    severities; the mean of that is the mean corruption error minus the clean error."""
    corrupted = np.mean([correct[(name, s)] for name in names for s in levels], axis=0)
    difference = clean_correct.astype(float) - corrupted
    if len(difference) < 2:
        return float(difference.mean()), None
    interval = audit.stats.paired_mean_difference(corrupted, clean_correct.astype(float), options.level)
    return float(difference.mean()), interval


def findings(table: CorruptionTable, options):
    judged, accuracy = table.judged, table.accuracy
    clean_correct = table.clean_predicted == table.y
    rows = len(table.y)
    verdict, worst, shown, drops, by_name = drop_family(table.names, judged, clean_correct, table.correct, options)
    yield V.finding(
        "corruption_accuracy_drop", "Accuracy drop under the worst corruption", audit.Severity.MEDIUM, verdict, drops[worst],
        options.max_accuracy_drop, shown, V.DROP_METHOD, rows, f"{worst} s={judged}",
        message=(
            f"{worst} at severity {judged} ({C.describe(worst, judged, table.side)}) lowers {table.what} from "
            f"{table.clean_accuracy:.3f} to {accuracy[(worst, judged)]:.3f}, a drop of {drops[worst]:.3f} "
            f"[{shown.level:.1%} CI {shown.lower:.3f}, {shown.upper:.3f}, paired over {rows} rows] "
            f"(allowed {options.max_accuracy_drop:g}; {len(table.names)} corruptions, {options.correction} correction); "
            f"{table.flips[(worst, judged)]:.1%} of predictions change"
        ),
        details={"judged_severity": judged, "clean_accuracy": table.clean_accuracy, "drop_by_corruption": drops,
                 "by_corruption": by_name, "labels": "clean predictions" if table.agreement else "true labels"},
    )
    levels = [s for s in table.severities if s > 0]
    if not levels:
        return
    clean_error = 1.0 - table.clean_accuracy
    error_by_corruption = {n: float(np.mean([1.0 - accuracy[(n, s)] for s in levels])) for n in table.names}
    mce = float(np.mean(list(error_by_corruption.values())))
    relative, interval = mean_corruption_error(table.names, levels, clean_correct, table.correct, options)
    yield audit.Finding.judged(
        "mean_corruption_error", "Mean corruption error relative to clean", relative,
        None if interval is None else interval.lower, None if interval is None else interval.upper,
        severity=audit.Severity.MEDIUM, ceiling=options.max_mean_corruption_error, level=options.level,
        method="paired t over rows", rows=rows, min_rows=options.min_rows,
        subject=f"{len(table.names)} corruptions s={','.join(map(str, levels))}",
        message=(
            f"error averaged over {len(table.names)} corruptions and severities {levels[0]}-{levels[-1]} is "
            f"{mce:.3f} against {clean_error:.3f} on clean data: {relative:+.3f}"
            + ("" if interval is None else f" [{options.level:.0%} CI {interval.lower:+.3f}, {interval.upper:+.3f}, paired over {rows} rows]")
            + f" (allowed {options.max_mean_corruption_error:g}); "
            f"worst corruption {max(error_by_corruption, key=error_by_corruption.get)}"
        ),
        details={
            "mean_corruption_error": mce,
            "clean_error": clean_error,
            "corruption_error": error_by_corruption,
            "definition": "mean over corruptions and severities of the error, minus the clean error (unnormalised relative mCE)",
        },
    )


def figures(table: CorruptionTable, ctx):
    yield audit.Figure(
        "corruption_curves",
        "Accuracy and flip rate against corruption severity",
        _figures.severity_curves(table.names, table.severities, table.accuracy, table.flips, table.clean_accuracy, table.what),
        caption=(
            f"One line per corruption; severity 0 is the clean data. Left: {table.what}; right: share of predictions "
            "that differ from the clean prediction. Each point is one batched pass over "
            f"{len(table.y)} rows."
        ),
    )
    if table.layout and table.examples:
        k, layout = min(N_EXAMPLES, len(table.x)), table.layout
        yield audit.Figure(
            "corruption_examples",
            f"Examples: clean and corrupted at severity {table.judged}",
            _figures.image_grid(
                layout.to_nchw(table.x[:k]),
                table.clean_predicted[:k],
                [(name, layout.to_nchw(batch), predicted) for name, (batch, predicted) in table.examples.items()],
                ctx.class_names,
                table.y[:k],
                table.bounds,
            ),
            caption="Each row one input; titles give the predicted class (red when it differs from the label).",
        )


def run(analysis, ctx):
    """Measure every corruption and severity, then judge and draw from the table."""
    table = measure(ctx, analysis.options)
    yield from metrics(table, analysis.options)
    yield from findings(table, analysis.options)
    yield from figures(table, ctx)
