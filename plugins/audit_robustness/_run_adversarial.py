"""robustness.adversarial: robust accuracy under FGSM and PGD against epsilon, L-inf and L2."""

from __future__ import annotations

import math

import numpy as np

import audit

from . import _adversarial, _figures
from ._common import audited_rows, fmt, image_layout, input_range, perturbation_scale

# Default radii. Images: fractions of the data's range (L-inf), and of the
# range times sqrt(input size) (L2: the same budget as a per-coordinate RMS
# change). Tabular: standard deviations of each feature, L2 times sqrt(features).
IMAGE_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2)
TABULAR_STDS = (0.05, 0.1, 0.2, 0.5, 1.0)

MONOTONE_NOTE = (
    "a row counts as broken at an epsilon if the attack broke it at that or any smaller epsilon: "
    "an adversarial input inside a smaller ball also lies inside the larger one"
)


def default_epsilons(norm: str, span: float, dimensions: int, image: bool) -> list[float]:
    unit = span if image else 1.0
    if norm == "l2":
        unit *= math.sqrt(dimensions)
    return [float(f"{f * unit:.4g}") for f in (IMAGE_FRACTIONS if image else TABULAR_STDS)]


def run(analysis, ctx):
    options = analysis.options
    take, x, y, agreement = audited_rows(ctx, options.max_rows)
    clean_wrong = take(ctx.predicted) != y
    clean_accuracy = float(np.mean(~clean_wrong))
    what = "agreement" if agreement else "accuracy"

    bounds = input_range(ctx.data.x, ctx.data.modality)
    lower, upper = (bounds.lower, bounds.upper) if options.clip else (None, None)
    dimensions = int(np.prod(x.shape[1:]))
    image = ctx.data.modality == "image"
    scale = perturbation_scale(ctx.data)
    unit = "" if image else " standard deviations of each feature"
    epsilons = {
        "linf": sorted(set(options.epsilons_linf if options.epsilons_linf is not None else default_epsilons("linf", bounds.span, dimensions, image))),
        "l2": sorted(set(options.epsilons_l2 if options.epsilons_l2 is not None else default_epsilons("l2", bounds.span, dimensions, image))),
    }
    layout = image_layout(ctx.data)
    keep = 4 if layout else 0
    generator = ctx.torch_generator() if options.random_start else None
    pgd_step_factor = options.step_size_factor / options.steps

    plans = [(attack, norm) for attack in options.attacks for norm in options.norms if epsilons[norm]]
    curves: dict = {}
    examples = {}
    clipping = (f"inputs kept in the data's range [{bounds.low:.4g}, {bounds.high:.4g}]" if image
                else "each feature kept in its observed range") if options.clip else "no clipping"
    ctx.note(
        f"{len(x)} rows attacked; PGD: {options.steps} steps of {options.step_size_factor:g} * eps / {options.steps}, "
        f"{'random start' if options.random_start else 'no random start'}; {clipping}"
        + ("" if image else "; epsilons are in standard deviations of each feature (tabular columns have unrelated units)")
    )
    with ctx.progress(len(x) * len(plans), "adversarial attacks") as bar:
        for attack, norm in plans:
            eps_list = epsilons[norm]
            steps, factor = (1, 1.0) if attack == "fgsm" else (options.steps, pgd_step_factor)
            result = _adversarial.attack(
                ctx.model, x, y, eps_list, norm, steps, factor, lower, upper,
                start_random=options.random_start and attack == "pgd", generator=generator, progress=bar, keep=keep, scale_np=scale,
            )
            broken_here = result.broken | clean_wrong[None, :]
            broken_cumulative = np.logical_or.accumulate(broken_here, axis=0)
            robust = 1.0 - broken_cumulative.mean(axis=1)
            robust_here = 1.0 - broken_here.mean(axis=1)
            final_only = 1.0 - (result.final_wrong | clean_wrong[None, :]).mean(axis=1)
            curves.setdefault(norm, {})[attack] = ([0.0] + list(eps_list), [clean_accuracy] + list(robust))
            if result.examples is not None:
                examples[(attack, norm)] = (eps_list, result.examples, result.example_predictions)
            for i, eps in enumerate(eps_list):
                subject = f"{attack} {norm} eps={fmt(eps)}"
                threshold = options.min_robust_accuracy_ratio * clean_accuracy
                yield audit.Metric("robust_accuracy", float(robust[i]), subject=subject, count=len(y))
                yield audit.Finding(
                    check="robust_accuracy",
                    title=f"Robust {what} under {attack.upper()} ({norm})",
                    severity=audit.Severity.MEDIUM,
                    passed=bool(robust[i] >= threshold),
                    value=float(robust[i]),
                    threshold=threshold,
                    subject=subject,
                    message=(
                        f"{attack.upper()} with {norm} perturbations of size {fmt(eps)}{unit} "
                        + (f"({eps / (bounds.span * (1 if norm == 'linf' else math.sqrt(dimensions))):.1%} of the "
                           f"{'range' if norm == 'linf' else 'range x sqrt(input size)'}) " if image else "")
                        + f"leaves {what} at {robust[i]:.3f} "
                        f"against {clean_accuracy:.3f} clean; required at least {options.min_robust_accuracy_ratio:g} x clean = {threshold:.3f}"
                    ),
                    details={
                        "attack": attack,
                        "norm": norm,
                        "epsilon": float(eps),
                        "epsilon_unit": "data units" if image else "standard deviations per feature",
                        "steps": steps,
                        "step_size": float(eps * factor),
                        "random_start": bool(options.random_start and attack == "pgd"),
                        "clean_accuracy": clean_accuracy,
                        "robust_at_this_epsilon_alone": float(robust_here[i]),
                        "robust_final_iterate_only": float(final_only[i]),
                        "monotone": MONOTONE_NOTE,
                        "rows": len(y),
                        "labels": "clean predictions" if agreement else "true labels",
                    },
                )

    yield audit.Figure(
        "robust_accuracy_curves",
        "Robust accuracy against epsilon",
        _figures.epsilon_curves(curves, clean_accuracy, what, "" if image else "std per feature"),
        caption=(
            f"Share of {len(y)} rows still classified correctly under attack; epsilon 0 is the clean data. "
            f"PGD: {options.steps} steps, step {options.step_size_factor:g} eps/{options.steps}. A row broken at a smaller "
            "epsilon counts as broken at every larger one."
        ),
    )
    if layout and examples:
        columns = []
        for (attack, norm), (eps_list, adversarial, predicted) in examples.items():
            if attack == "fgsm" and norm == "l2":
                continue
            # Show the epsilon where robust accuracy is nearest half of clean: where the attack starts to win.
            values = curves[norm][attack][1][1:]
            j = int(np.argmin([abs(v - clean_accuracy / 2) for v in values]))
            columns.append((f"{attack} {norm} {fmt(eps_list[j])}", layout.to_nchw(adversarial[j]), predicted[j]))
        k = len(next(iter(examples.values()))[1][0])
        yield audit.Figure(
            "adversarial_examples",
            "Examples: clean and adversarial inputs",
            _figures.image_grid(layout.to_nchw(x[:k]), take(ctx.predicted)[:k], columns, ctx.class_names, y[:k], bounds),
            caption="Each row one input; column titles give attack, norm and epsilon (where robust accuracy is nearest half the clean accuracy); "
            "image titles give the predicted class (red when it differs from the label).",
        )
