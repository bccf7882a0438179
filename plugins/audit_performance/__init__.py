"""Built-in `performance` analysis: accuracy, balanced accuracy, per-class P/R/F1, confusion matrix."""

from __future__ import annotations

from typing import Literal

import audit
from pydantic import Field

TAGS = {"eu-ai-act:art15", "nist-ai-rmf:measure-2.3", "eu-ai-act:art9", "eu-ai-act:annex-iv-2g", "eu-ai-act:annex-iv-3"}

# What a failed check means for whoever deploys the model (the report's summary shows it).
MEANINGS = {
    "accuracy": "The model is wrong too often on data like the audit set; decisions based on it will carry that error rate.",
    "balanced_accuracy": "Averaged over classes the model does poorly: a rare class is likely being missed.",
    "worst_class_recall": "One class is mostly missed; cases of that class will be handled as something else.",
}


def confusion_matrix(y_true, y_pred, n_classes: int):
    import numpy as np

    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_scores(confusion):
    """Precision, recall and F1 per class from a confusion matrix (rows = truth)."""
    import numpy as np

    true_positive = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    actual = confusion.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, np.nan)
        f1 = np.where(precision + np.nan_to_num(recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


CORRECTION_CHOICES = Literal["holm", "bh", "bonferroni", "none"]
F1_TOLERANCE = 0.005  # bootstrap Monte Carlo error allowed on the ends of an F1 interval
F1_MAX_REPLICATES = 16_000


def balanced_accuracy_interval(hits, support, level: float = 0.95) -> tuple[float, float, float]:
    """Balanced accuracy (mean recall over the classes present) and its MOVER interval from per-class Wilson intervals.

    Given the class counts, each recall is an independent binomial proportion; MOVER adds
    the Wilson distances in quadrature, so the interval keeps its width at 0/n and n/n.
    """
    import numpy as np

    from audit import stats

    hits, support = np.asarray(hits, dtype=float), np.asarray(support, dtype=float)
    present = support > 0
    lower, upper = stats.wilson(hits[present], support[present], level)
    weights = np.full(int(present.sum()), 1.0 / present.sum())
    return stats.mover_weighted_sum(hits[present] / support[present], lower, upper, weights)


def f1_intervals(confusion, rng, level: float = 0.95):
    """Per-class F1 percentile intervals and macro F1's, from a multinomial bootstrap of the confusion matrix.

    Replicates double from 1000 until the Monte Carlo error of every interval end is
    below ``F1_TOLERANCE`` (or ``F1_MAX_REPLICATES`` is reached); returns
    (lower (C,), upper (C,), macro (lower, upper), replicates, largest Monte Carlo error).
    """
    import numpy as np

    from audit import stats

    present = confusion.sum(axis=1) > 0
    n_boot, draws = 1000, []
    while True:
        draws.append(stats.bootstrap_confusion(confusion, rng, n_boot - sum(len(d) for d in draws)))
        replicates = np.concatenate(draws)
        true_positive = np.diagonal(replicates, axis1=1, axis2=2).astype(float)
        denominator = replicates.sum(axis=1) + replicates.sum(axis=2)  # (tp + fn) + (tp + fp) = 2tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2 * true_positive / denominator, 0.0)
        macro = f1[:, present].mean(axis=1)
        results = [stats.percentile_interval_with_error(f1[:, k], level) for k in range(confusion.shape[0])]
        macro_result = stats.percentile_interval_with_error(macro, level)
        error = max([r[2] for r in results] + [macro_result[2]])
        if error <= F1_TOLERANCE or n_boot >= F1_MAX_REPLICATES:
            break
        n_boot *= 2
    lower = np.array([r[0] for r in results])
    upper = np.array([r[1] for r in results])
    return lower, upper, macro_result[:2], n_boot, error


class Performance(audit.Analysis):
    """Accuracy, balanced accuracy and per-class precision, recall and F1 on the audit data."""

    name = "performance"
    title = "Predictive performance"
    category = "performance"
    requires = {"labels"}
    tags = TAGS
    meanings = MEANINGS

    def plan(self, info):
        # Its intervals and two figures, on the 2-core CPU of BENCHMARKS.md's cost table (0.7 s on a ResNet-14's 1,000 rows).
        return audit.Plan(0, 0, other_seconds=0.7, notes=["reads the clean pass"])

    class Options(audit.Options):
        min_accuracy: float = Field(0.7, ge=0, le=1, description="accuracy below this fails (high)")
        min_balanced_accuracy: float = Field(0.6, ge=0, le=1, description="balanced accuracy below this fails (medium)")
        min_class_recall: float = Field(0.5, ge=0, le=1, description="any class's recall below this fails (medium)")
        level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals verdicts rest on")
        min_rows: int = Field(10, ge=1, description="with fewer rows (or rows of a class) a check is inconclusive")
        correction: CORRECTION_CHOICES = Field(
            "holm", description="multiplicity correction over the per-class recall checks: holm, bh, bonferroni or none")

    def run(self, ctx: audit.Context):
        import numpy as np

        from audit import stats

        y = ctx.data.y
        predicted = ctx.predicted
        n_classes = ctx.n_classes
        names = ctx.class_names
        options = self.options
        level = options.level
        confusion = confusion_matrix(y, predicted, n_classes)
        precision, recall, f1 = per_class_scores(confusion)
        support = confusion.sum(axis=1)
        predicted_count = confusion.sum(axis=0)
        hits = np.diag(confusion)
        present = support > 0
        rows = int(confusion.sum())
        accuracy = float(np.trace(confusion) / rows)
        accuracy_interval = stats.wilson(int(np.trace(confusion)), rows, level)
        balanced, balanced_lower, balanced_upper = balanced_accuracy_interval(hits, support, level)
        macro_f1 = float(np.mean(f1[present]))
        precision_lower, precision_upper = stats.wilson(hits, predicted_count, level)
        recall_lower, recall_upper = stats.wilson(hits, support, level)
        f1_lower, f1_upper, macro_interval, replicates, mc_error = f1_intervals(confusion, ctx.rng, level)
        bootstrap = {"method": "multinomial bootstrap of the confusion matrix, percentile", "replicates": replicates,
                     "monte_carlo_error": mc_error, "tolerance": F1_TOLERANCE}

        yield audit.Metric("accuracy", accuracy, count=rows, lower=accuracy_interval[0], upper=accuracy_interval[1],
                           details={"interval": "wilson", "level": level})
        yield audit.Metric("balanced_accuracy", balanced, count=rows, lower=balanced_lower, upper=balanced_upper,
                           details={"interval": "MOVER over per-class wilson intervals", "level": level})
        yield audit.Metric("macro_f1", macro_f1, count=rows, lower=macro_interval[0], upper=macro_interval[1],
                           details={"interval": bootstrap, "level": level})
        for i in range(n_classes):
            yield audit.Metric("precision", float(precision[i]), group=names[i], count=int(predicted_count[i]),
                               lower=None if not predicted_count[i] else float(precision_lower[i]),
                               upper=None if not predicted_count[i] else float(precision_upper[i]),
                               details={"interval": "wilson", "level": level})
            yield audit.Metric("recall", None if not present[i] else float(recall[i]), group=names[i], count=int(support[i]),
                               lower=None if not present[i] else float(recall_lower[i]),
                               upper=None if not present[i] else float(recall_upper[i]),
                               details={"interval": "wilson", "level": level})
            yield audit.Metric("f1", float(f1[i]), group=names[i], count=int(support[i]),
                               lower=float(f1_lower[i]), upper=float(f1_upper[i]), details={"interval": bootstrap, "level": level})

        yield audit.Finding.judged(
            "accuracy", "Accuracy", accuracy, *accuracy_interval, severity=audit.Severity.HIGH, floor=options.min_accuracy,
            level=level, method="wilson", rows=rows, min_rows=options.min_rows,
            message=(f"accuracy {accuracy:.3f} on {rows} rows [{level:.0%} CI {accuracy_interval[0]:.3f}, "
                     f"{accuracy_interval[1]:.3f}] (floor {options.min_accuracy:g})"),
        )
        yield audit.Finding.judged(
            "balanced_accuracy", "Balanced accuracy", balanced, balanced_lower, balanced_upper, severity=audit.Severity.MEDIUM,
            floor=options.min_balanced_accuracy, level=level, method="MOVER over per-class wilson intervals", rows=rows,
            min_rows=options.min_rows,
            message=(f"mean per-class recall {balanced:.3f} [{level:.0%} CI {balanced_lower:.3f}, {balanced_upper:.3f}] "
                     f"(floor {options.min_balanced_accuracy:g})"),
        )
        yield _worst_class_recall(confusion, names, options, macro_f1)
        yield audit.Figure("confusion_matrix", "Confusion matrix", _confusion_figure(confusion, names),
                           caption="Rows: true class; columns: predicted class; cells: row counts.")


def _worst_class_recall(confusion, names, options, macro_f1):
    """One finding for "every class's recall is at least the floor", decided as a family over the classes."""
    import numpy as np

    from audit import stats

    hits, support = np.diag(confusion), confusion.sum(axis=1)
    classes = [int(k) for k in np.flatnonzero(support > 0)]
    members = [
        stats.FamilyMember(
            key=names[k], interval=(lambda level, k=k: stats.wilson(int(hits[k]), int(support[k]), level)),
            threshold=options.min_class_recall, higher_is_better=True, enough_rows=bool(support[k] >= options.min_rows))
        for k in classes
    ]
    decisions = stats.decide_family(members, level=options.level, correction=options.correction)
    recalls = [hits[k] / support[k] for k in classes]
    verdict, shown = stats.family_summary(decisions, recalls, higher_is_better=True)
    k, decision = classes[shown], decisions[shown]
    details = {
        "comparisons": len(members), "correction": options.correction,
        "by_class": {names[c]: {"recall": float(hits[c] / support[c]), "rows": int(support[c]), "verdict": d.verdict,
                                "lower": d.lower, "upper": d.upper, "level": d.level}
                     for c, d in zip(classes, decisions)},
    }
    if verdict == "inconclusive":
        if support[k] < options.min_rows:
            details["inconclusive_because"] = f"class {names[k]} has {int(support[k])} row(s); the check needs at least {options.min_rows}"
            details["needs_rows"] = int(options.min_rows)
        else:
            details["inconclusive_because"] = "the interval straddles the threshold"
            needed = stats.rows_to_decide(recalls[shown], decision.lower, decision.upper, options.min_class_recall, int(support[k]))
            if needed is not None:
                details["needs_rows"] = needed
    return audit.Finding(
        check="worst_class_recall", title="Recall of the worst class", severity=audit.Severity.MEDIUM, verdict=verdict,
        value=float(recalls[shown]), threshold=options.min_class_recall, lower=decision.lower, upper=decision.upper,
        level=decision.level, method="wilson", rows=int(support[k]), subject=names[k], details=details,
        message=(f"class {names[k]} has recall {recalls[shown]:.3f} [{decision.level:.1%} CI {decision.lower:.3f}, "
                 f"{decision.upper:.3f}] on {int(support[k])} rows (floor {options.min_class_recall:g}; {len(members)} classes, "
                 f"{options.correction} correction); macro F1 {macro_f1:.3f}"),
    )


def _confusion_figure(confusion, names):
    from audit.toolkit import new_figure

    size = min(7.0, 2.5 + 0.45 * len(names))
    fig = new_figure(figsize=(size, size * 0.85))
    ax = fig.subplots()
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(names)), labels=names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    high = confusion.max() / 2 if confusion.size else 0
    if len(names) <= 12:
        for (i, j), count in __import__("numpy").ndenumerate(confusion):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if count > high else "black")
    fig.tight_layout()
    return fig


@audit.hookimpl
def register_analyses(register):
    register(Performance)
