"""audit-example: a worked third-party plugin for audit, written only against the public `audit` API.

It adds two analyses and one compliance framework:

* ``example.accuracy_floor``: accuracy with a Wilson confidence interval, against a floor;
* ``example.prediction_balance``: whether the predicted classes keep the class balance of
  the labels, or the model has collapsed onto some classes;
* the ``example-policy`` framework, a stand-in for a company's own model release policy.

This module is imported every time `audit` starts, so it imports nothing heavy:
numpy and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

from pydantic import Field

import audit

POLICY = "example-policy"


class AccuracyFloor(audit.Analysis):
    """Accuracy on the audit data, with a Wilson confidence interval, against a floor."""

    name = "example.accuracy_floor"
    title = "Accuracy above a floor"
    category = "performance"
    requires = {"labels"}
    tags = {"eu-ai-act:art15", "nist-ai-rmf:measure-2.5", f"{POLICY}:accuracy-floor"}

    class Options(audit.Options):
        floor: float = Field(0.5, ge=0, le=1, description="accuracy below this fails")
        confidence: float = Field(0.95, gt=0, lt=1, description="coverage of the Wilson interval")
        strict: bool = Field(False, description="judge the interval's lower bound instead of the accuracy itself")

    def run(self, ctx: audit.Context):
        from audit_example._stats import wilson_interval

        o = self.options
        rows = len(ctx.data.y)
        correct = int((ctx.predicted == ctx.data.y).sum())
        accuracy = correct / rows
        lower, upper = wilson_interval(correct, rows, o.confidence)

        yield audit.Metric("accuracy", accuracy, lower=lower, upper=upper, count=rows, details={"confidence": o.confidence})

        judged, what = (lower, f"the lower end of its {o.confidence:.0%} interval") if o.strict else (accuracy, "accuracy")
        yield audit.Finding(
            check="accuracy",
            title="Accuracy above the floor",
            severity=audit.Severity.HIGH,
            passed=judged >= o.floor,
            value=judged,
            threshold=o.floor,
            message=(
                f"accuracy {accuracy:.3f} on {rows} rows ({correct} correct), {o.confidence:.0%} interval "
                f"[{lower:.3f}, {upper:.3f}]; {what} is {'at or above' if judged >= o.floor else 'below'} "
                f"the floor {o.floor:g}"
            ),
            details={"correct": correct, "rows": rows, "strict": o.strict},
        )
        if rows < 100:
            ctx.note(f"only {rows} labelled rows: the accuracy interval is wide ({upper - lower:.2f})")


class PredictionBalance(audit.Analysis):
    """Whether the predicted classes keep the labels' class balance, or collapse onto a few classes."""

    name = "example.prediction_balance"
    title = "Balance of predicted classes"
    category = "performance"
    requires = {"labels"}
    tags = {"nist-ai-rmf:measure-2.5", f"{POLICY}:class-balance"}

    class Options(audit.Options):
        max_distance: float = Field(
            0.1, ge=0, le=1, description="largest total variation distance between predicted and true class shares"
        )

    def skip_reason(self, ctx: audit.Context) -> str | None:
        import numpy as np

        if len(np.unique(ctx.data.y)) < 2:
            return "the labels hold a single class, so there is no balance to keep"
        return None

    def run(self, ctx: audit.Context):
        import numpy as np

        names = ctx.data.class_names or [str(c) for c in range(ctx.n_classes)]
        rows = len(ctx.data.y)
        true_share = np.bincount(ctx.data.y, minlength=ctx.n_classes) / rows
        predicted_share = np.bincount(ctx.predicted, minlength=ctx.n_classes) / rows
        distance = float(0.5 * np.abs(predicted_share - true_share).sum())

        for c, name in enumerate(names):
            yield audit.Metric("true_share", float(true_share[c]), group=name, count=int(round(true_share[c] * rows)))
            yield audit.Metric("predicted_share", float(predicted_share[c]), group=name, count=int(round(predicted_share[c] * rows)))
        yield audit.Metric("total_variation_distance", distance)

        worst = int(np.argmax(np.abs(predicted_share - true_share)))
        yield audit.Finding(
            check="balance",
            title="Predicted class shares match the labels",
            severity=audit.Severity.MEDIUM,
            passed=distance <= self.options.max_distance,
            value=distance,
            threshold=self.options.max_distance,
            message=(
                f"total variation distance {distance:.3f} between predicted and true class shares "
                f"(limit {self.options.max_distance:g}); the largest gap is class {names[worst]}: "
                f"{predicted_share[worst]:.1%} predicted against {true_share[worst]:.1%} in the labels"
            ),
        )

        never = [names[c] for c in range(ctx.n_classes) if true_share[c] > 0 and predicted_share[c] == 0]
        yield audit.Finding(
            check="unpredicted_classes",
            title="Every labelled class is predicted at least once",
            severity=audit.Severity.HIGH,
            passed=not never,
            value=len(never),
            threshold=0,
            message=(
                f"{len(never)} class(es) present in the labels are never predicted: {', '.join(never)}"
                if never
                else f"all {int((true_share > 0).sum())} labelled classes are predicted at least once"
            ),
            details={"classes": never},
        )
        yield audit.Figure(
            "class_shares",
            "Predicted and true class shares",
            _shares_figure(names, true_share, predicted_share),
            caption="Share of rows per class in the labels and in the model's predictions.",
        )


def _shares_figure(names, true_share, predicted_share):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    positions = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(min(7.0, 2.5 + 0.5 * len(names)), 2.8))
    ax.bar(positions - 0.2, true_share, width=0.4, label="labels")
    ax.bar(positions + 0.2, predicted_share, width=0.4, label="predictions")
    ax.set_xticks(positions, labels=names)
    ax.set_xlabel("class")
    ax.set_ylabel("share of rows")
    ax.set_title("Class shares")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@audit.hookimpl
def register_analyses(register):
    register(AccuracyFloor)
    register(PredictionBalance)


@audit.hookimpl
def register_frameworks(register):
    register(
        POLICY,
        "Example model release policy",
        {
            "accuracy-floor": "Accuracy on held-out data meets the floor agreed for the use case.",
            "class-balance": "The model predicts every class it was trained for, in roughly the proportions it meets.",
        },
    )
