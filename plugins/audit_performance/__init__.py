"""Built-in `performance` analysis: accuracy, balanced accuracy, per-class P/R/F1, confusion matrix."""

from __future__ import annotations

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


class Performance(audit.Analysis):
    """Accuracy, balanced accuracy and per-class precision, recall and F1 on the audit data."""

    name = "performance"
    title = "Predictive performance"
    category = "performance"
    requires = {"labels"}
    tags = TAGS
    meanings = MEANINGS

    def plan(self, info):
        return audit.Plan(0, 0, other_seconds=0.2, notes=["reads the clean pass"])

    class Options(audit.Options):
        min_accuracy: float = Field(0.7, ge=0, le=1, description="accuracy below this fails (high)")
        min_balanced_accuracy: float = Field(0.6, ge=0, le=1, description="balanced accuracy below this fails (medium)")
        min_class_recall: float = Field(0.5, ge=0, le=1, description="any class's recall below this fails (medium)")

    def run(self, ctx: audit.Context):
        import numpy as np

        y = ctx.data.y
        predicted = ctx.predicted
        n_classes = ctx.n_classes
        names = ctx.class_names
        confusion = confusion_matrix(y, predicted, n_classes)
        precision, recall, f1 = per_class_scores(confusion)
        present = confusion.sum(axis=1) > 0
        accuracy = float(np.trace(confusion) / confusion.sum())
        balanced = float(np.nanmean(recall[present]))
        macro_f1 = float(np.mean(f1[present]))
        options = self.options

        yield audit.Metric("accuracy", accuracy, count=len(y))
        yield audit.Metric("balanced_accuracy", balanced)
        yield audit.Metric("macro_f1", macro_f1)
        for i in range(n_classes):
            support = int(confusion[i].sum())
            yield audit.Metric("precision", float(precision[i]), group=names[i], count=int(confusion[:, i].sum()))
            yield audit.Metric("recall", None if not present[i] else float(recall[i]), group=names[i], count=support)
            yield audit.Metric("f1", float(f1[i]), group=names[i], count=support)

        yield audit.Finding.against_limit(
            "accuracy", "Accuracy", accuracy, severity=audit.Severity.HIGH, floor=options.min_accuracy,
            message=f"accuracy {accuracy:.3f} on {len(y)} rows (floor {options.min_accuracy:g})",
        )
        yield audit.Finding.against_limit(
            "balanced_accuracy", "Balanced accuracy", balanced, severity=audit.Severity.MEDIUM, floor=options.min_balanced_accuracy,
            message=f"mean per-class recall {balanced:.3f} (floor {options.min_balanced_accuracy:g})",
        )
        worst = int(np.nanargmin(np.where(present, recall, np.nan)))
        yield audit.Finding.against_limit(
            "worst_class_recall", "Recall of the worst class", float(recall[worst]), severity=audit.Severity.MEDIUM,
            floor=options.min_class_recall, subject=names[worst],
            message=f"class {names[worst]} has recall {recall[worst]:.3f} (floor {options.min_class_recall:g}); macro F1 {macro_f1:.3f}",
        )
        yield audit.Figure("confusion_matrix", "Confusion matrix", _confusion_figure(confusion, names),
                           caption="Rows: true class; columns: predicted class; cells: row counts.")


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
