"""robustness.adversarial: robust accuracy under FGSM and PGD against epsilon, L-inf and L2."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import audit

from . import _adversarial, _figures
from . import _verdicts as V
from ._common import audited_rows, fmt, image_layout, input_range, movable_scale

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


@dataclass
class AttackCurve:
    """One attack and norm over its epsilons: robust accuracy counted three ways."""

    attack: str
    norm: str
    epsilons: list[float]
    steps: int
    step_factor: float
    robust: np.ndarray  # broken at this or any smaller epsilon counts as broken (monotone)
    robust_here: np.ndarray  # this epsilon's attack alone
    final_only: np.ndarray  # the final iterate only


@dataclass
class AdversarialRun:
    """What robustness.adversarial measures: the attacked rows and one curve per attack and norm."""

    x: np.ndarray
    y: np.ndarray
    predicted: np.ndarray
    agreement: bool
    clean_accuracy: float
    image: bool
    dimensions: int
    bounds: Any
    layout: Any
    curves: list[AttackCurve] = field(default_factory=list)
    frozen: dict = field(default_factory=dict)  # column name -> why the attacks leave it alone
    examples: dict = field(default_factory=dict)  # (attack, norm) -> (epsilons, adversarial rows, their predictions)

    @property
    def what(self) -> str:
        return "agreement" if self.agreement else "accuracy"

    def curve_points(self) -> dict:
        """norm -> attack -> (epsilons with 0 first, robust accuracy with clean first), as the figure draws them."""
        points: dict = {}
        for c in self.curves:
            points.setdefault(c.norm, {})[c.attack] = ([0.0] + list(c.epsilons), [self.clean_accuracy] + list(c.robust))
        return points


def _epsilons(options, bounds, dimensions: int, image: bool) -> dict[str, list[float]]:
    return {
        "linf": sorted(set(options.epsilons_linf if options.epsilons_linf is not None else default_epsilons("linf", bounds.span, dimensions, image))),
        "l2": sorted(set(options.epsilons_l2 if options.epsilons_l2 is not None else default_epsilons("l2", bounds.span, dimensions, image))),
    }


def _note_setup(ctx, options, rows: int, bounds, image: bool) -> None:
    clipping = (f"inputs kept in the data's range [{bounds.low:.4g}, {bounds.high:.4g}]" if image
                else "each feature kept in its observed range") if options.clip else "no clipping"
    ctx.note(
        f"{rows} rows; "
        + ("each attacked only while unbroken (rows the model gets wrong are not attacked; a row fooled at one epsilon "
           "counts as fooled at every larger one; PGD stops on a row at its first fooling step); " if options.early_stop else "")
        + f"PGD: {options.steps} steps of {options.step_size_factor:g} * eps / {options.steps}, "
        f"{'random start' if options.random_start else 'no random start'}; {clipping}"
        + ("" if image else "; epsilons are in standard deviations of each feature (tabular columns have unrelated units)")
    )


def _attack_shard(model, rng, x, y, attack_rows, clean_predictions, *, epsilons, norm, steps, step_factor, lower, upper,
                  start_random, keep, scale, early_stop):
    """One attack and norm on one shard of rows: (broken, final_wrong) row-major (N, E), then its first ``keep`` rows'
    examples (k, E, ...) and their predictions (k, E), which the caller cuts to the first shard's."""
    generator = None
    if start_random:
        import torch

        generator = torch.Generator(device=model.device)
        generator.manual_seed(int(rng.integers(2**63)))
    common = dict(keep=keep, scale_np=scale)
    if early_stop:
        result = _adversarial.attack_until_broken(model, x, y, epsilons, norm, steps, step_factor, lower, upper, start_random, generator,
                                                  attack_rows=attack_rows, clean_predictions=clean_predictions, **common)
    else:
        result = _adversarial.attack(model, x, y, epsilons, norm, steps, step_factor, lower, upper, start_random, generator, **common)
    if result.examples is None:
        examples = np.zeros((0, len(epsilons), *x.shape[1:]), dtype=np.float32)
        predictions = np.zeros((0, len(epsilons)), dtype=np.int64)
    else:
        examples, predictions = result.examples.swapaxes(0, 1), result.example_predictions.swapaxes(0, 1)
    return result.broken.T, result.final_wrong.T, examples, predictions


def measure(ctx, options) -> AdversarialRun:
    take, x, y, agreement = audited_rows(ctx, options.max_rows)
    clean_wrong = take(ctx.predicted) != y
    bounds = input_range(ctx.data.x, ctx.data.modality)
    image = ctx.data.modality == "image"
    measured = AdversarialRun(x=x, y=y, predicted=take(ctx.predicted), agreement=agreement, clean_accuracy=float(np.mean(~clean_wrong)),
                              image=image, dimensions=int(np.prod(x.shape[1:])), bounds=bounds, layout=image_layout(ctx.data))
    lower, upper = (bounds.lower, bounds.upper) if options.clip else (None, None)
    epsilons = _epsilons(options, bounds, measured.dimensions, image)
    scale, measured.frozen = movable_scale(ctx, options.immutable, "the attacks")
    plans = [(attack, norm) for attack in options.attacks for norm in options.norms if epsilons[norm]]
    _note_setup(ctx, options, len(x), bounds, image)
    keep = 4 if measured.layout else 0
    with ctx.progress(len(x) * len(plans), "adversarial attacks") as bar:
        for attack, norm in plans:
            eps_list = epsilons[norm]
            steps, factor = (1, 1.0) if attack == "fgsm" else (options.steps, options.step_size_factor / options.steps)
            shard = functools.partial(
                _attack_shard, epsilons=eps_list, norm=norm, steps=steps, step_factor=factor, lower=lower, upper=upper,
                start_random=options.random_start and attack == "pgd", keep=keep, scale=scale, early_stop=options.early_stop,
            )
            broken, final_wrong, examples, example_predictions = ctx.map_rows(
                shard, x, y, ~clean_wrong, measured.predicted, purpose=f"{attack}/{norm}", shard_rows=options.shard_rows)
            bar.advance(len(x))
            broken_here = broken.T | clean_wrong[None, :]
            measured.curves.append(AttackCurve(
                attack, norm, eps_list, steps, factor,
                robust=1.0 - np.logical_or.accumulate(broken_here, axis=0).mean(axis=1),
                robust_here=1.0 - broken_here.mean(axis=1),
                final_only=1.0 - (final_wrong.T | clean_wrong[None, :]).mean(axis=1),
            ))
            if len(examples):
                measured.examples[(attack, norm)] = (eps_list, examples[:keep].swapaxes(0, 1), example_predictions[:keep].swapaxes(0, 1))
    return measured


def _size_text(m: AdversarialRun, norm: str, eps: float) -> str:
    unit = "" if m.image else " standard deviations of each feature"
    if not m.image:
        return f"{fmt(eps)}{unit} "
    share = eps / (m.bounds.span * (1 if norm == "linf" else math.sqrt(m.dimensions)))
    return f"{fmt(eps)}{unit} ({share:.1%} of the {'range' if norm == 'linf' else 'range x sqrt(input size)'}) "


def robust_members(m: AdversarialRun, options):
    """Every (attack, norm, epsilon) as a member of one family on the robust/clean scale, with its counts."""
    n = len(m.y)
    clean_correct = int(round(m.clean_accuracy * n))
    members, ratios, plan = [], [], []
    for c in m.curves:
        for i, eps in enumerate(c.epsilons):
            robust = int(round(float(c.robust[i]) * n))
            members.append(audit.stats.FamilyMember((c.attack, c.norm, eps), V.ratio_interval(robust, clean_correct),
                                                    options.min_robust_accuracy_ratio, higher_is_better=True,
                                                    enough_rows=clean_correct >= options.min_rows))
            ratios.append(robust / clean_correct if clean_correct else float("nan"))
            plan.append((c, i, eps, robust))
    return members, ratios, plan, clean_correct


def judge(m: AdversarialRun, options):
    """A metric and a finding per attack, norm and epsilon; the findings decided as one family.

    A robust row is a clean-correct row no attack iterate broke, so robust accuracy over
    clean accuracy is a proportion of the clean-correct rows (Wilson); the finding shows it
    on the accuracy scale (the ratio's interval times the clean accuracy of these rows).
    """
    n = len(m.y)
    threshold = options.min_robust_accuracy_ratio * m.clean_accuracy
    members, ratios, plan, clean_correct = robust_members(m, options)
    judged = V.decide(members, ratios, [clean_correct] * len(members), options.level, options.correction, options.min_rows)
    for (c, i, eps, robust), ratio, decided in zip(plan, ratios, judged):
        subject = f"{c.attack} {c.norm} eps={fmt(eps)}"
        lower, upper = audit.stats.wilson(robust, n, options.level)
        yield audit.Metric("robust_accuracy", float(c.robust[i]), subject=subject, count=n, lower=lower, upper=upper,
                           details={"interval": "wilson", "level": options.level})
        shown = V.Judged(decided.verdict, decided.lower * m.clean_accuracy, decided.upper * m.clean_accuracy, decided.level,
                         decided.details)
        yield V.finding(
            "robust_accuracy", f"Robust {m.what} under {c.attack.upper()} ({c.norm})", audit.Severity.MEDIUM, decided.verdict,
            float(c.robust[i]), threshold, shown, V.RATIO_METHOD, n, subject,
            message=(
                f"{c.attack.upper()} with {c.norm} perturbations of size {_size_text(m, c.norm, eps)}"
                f"leaves {m.what} at {c.robust[i]:.3f} [{decided.level:.1%} CI {shown.lower:.3f}, {shown.upper:.3f}] "
                f"against {m.clean_accuracy:.3f} clean; required at least {options.min_robust_accuracy_ratio:g} x clean = {threshold:.3f}"
                f" ({len(members)} attacks and radii, {options.correction} correction)"
            ),
            details={
                "attack": c.attack, "norm": c.norm, "epsilon": float(eps),
                "epsilon_unit": "data units" if m.image else "standard deviations per feature",
                "steps": c.steps, "step_size": float(eps * c.step_factor),
                "random_start": bool(options.random_start and c.attack == "pgd"),
                "clean_accuracy": m.clean_accuracy,
                "robust_over_clean": ratio, "robust_over_clean_interval": [decided.lower, decided.upper],
                **({} if options.early_stop else {  # an attack that stops on success has neither
                    "robust_at_this_epsilon_alone": float(c.robust_here[i]),
                    "robust_final_iterate_only": float(c.final_only[i]),
                }),
                "early_stop": bool(options.early_stop),
                "monotone": MONOTONE_NOTE,
                "labels": "clean predictions" if m.agreement else "true labels",
                "frozen_columns": m.frozen,
            },
        )


def figures(m: AdversarialRun, options, ctx):
    curves = m.curve_points()
    yield audit.Figure(
        "robust_accuracy_curves",
        "Robust accuracy against epsilon",
        _figures.epsilon_curves(curves, m.clean_accuracy, m.what, "" if m.image else "std per feature"),
        caption=(
            f"Share of {len(m.y)} rows still classified correctly under attack; epsilon 0 is the clean data. "
            f"PGD: {options.steps} steps, step {options.step_size_factor:g} eps/{options.steps}. A row broken at a smaller "
            "epsilon counts as broken at every larger one."
        ),
    )
    if not (m.layout and m.examples):
        return
    columns = []
    for (attack, norm), (eps_list, adversarial, predicted) in m.examples.items():
        if attack == "fgsm" and norm == "l2":
            continue
        # Show the epsilon where robust accuracy is nearest half of clean: where the attack starts to win.
        values = curves[norm][attack][1][1:]
        j = int(np.argmin([abs(v - m.clean_accuracy / 2) for v in values]))
        columns.append((f"{attack} {norm} {fmt(eps_list[j])}", m.layout.to_nchw(adversarial[j]), predicted[j]))
    k = len(next(iter(m.examples.values()))[1][0])
    yield audit.Figure(
        "adversarial_examples",
        "Examples: clean and adversarial inputs",
        _figures.image_grid(m.layout.to_nchw(m.x[:k]), m.predicted[:k], columns, ctx.class_names, m.y[:k], m.bounds),
        caption="Each row one input; column titles give attack, norm and epsilon (where robust accuracy is nearest half the clean accuracy); "
        "image titles give the predicted class (red when it differs from the label).",
    )


def run(analysis, ctx):
    """Attack every row at every epsilon, then judge and draw from the curves."""
    measured = measure(ctx, analysis.options)
    yield from judge(measured, analysis.options)
    yield from figures(measured, analysis.options, ctx)
