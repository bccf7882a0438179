"""The robustness analyses' cost plans: model rows from the options and the data's size."""

from __future__ import annotations

import audit

IMAGE_CORRUPTION_COUNT = 8  # C.IMAGE_CORRUPTIONS (the keys below), without importing the corruption code to plan
TABULAR_CORRUPTION_COUNT = 2
TEXT_CORRUPTION_COUNT = 8
DEFAULT_EPSILONS = 5  # IMAGE_FRACTIONS / TABULAR_STDS
# Building corrupted copies is numpy and torch work: seconds per input value, per severity, for each image corruption
# (measured on 200 3x32x32 images on a 2-core Xeon at load ~2, torch 2.13; JPEG and blur cost most).
IMAGE_CORRUPTION_SECONDS_PER_VALUE = {"gaussian_noise": 3e-8, "shot_noise": 9e-8, "impulse_noise": 1e-8, "gaussian_blur": 1.2e-7,
                                      "brightness": 1e-8, "contrast": 2e-8, "pixelate": 5e-8, "jpeg": 2.4e-7}
ELEMENTWISE_SECONDS_PER_VALUE = 2e-8


def _values(info: audit.PlanInfo) -> int:
    size = 1
    for d in info.row_shape:
        size *= int(d)
    return size


def _attacked(info: audit.PlanInfo, max_rows) -> int:
    return info.rows if max_rows is None else min(info.rows, max_rows)


def corruptions_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    rows = _attacked(info, options.max_rows)
    default = {"image": IMAGE_CORRUPTION_COUNT, "text": TEXT_CORRUPTION_COUNT}.get(info.modality, TABULAR_CORRUPTION_COUNT)
    names = options.corruptions or (list(IMAGE_CORRUPTION_SECONDS_PER_VALUE) if info.modality == "image" else [None] * default)
    severities = len(set(options.severities))
    per_value = sum(IMAGE_CORRUPTION_SECONDS_PER_VALUE.get(name, ELEMENTWISE_SECONDS_PER_VALUE) if info.modality == "image"
                    else ELEMENTWISE_SECONDS_PER_VALUE for name in names)
    return audit.Plan(len(names) * severities * rows, 0, other_seconds=severities * rows * _values(info) * per_value)


def _clean_correct(info: audit.PlanInfo, rows: int) -> int:
    """The attacked rows the model gets right (all of them when the run's accuracy is not known): only those are attacked."""
    return rows if info.accuracy is None else int(round(rows * info.accuracy))


def adversarial_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    """Every row at every epsilon: PGD's steps forward and backward, then one forward to judge the final point.

    With early_stop this is an upper bound: only the clean-correct rows are attacked,
    a row leaves once fooled, and a row fooled at one epsilon skips the larger ones.
    """
    options = analysis.options
    rows = _attacked(info, options.max_rows)
    if options.early_stop:
        rows = _clean_correct(info, rows)
    forward = backward = 0
    for attack in dict.fromkeys(options.attacks):
        steps = 1 if attack == "fgsm" else options.steps
        for norm in dict.fromkeys(options.norms):
            given = options.epsilons_linf if norm == "linf" else options.epsilons_l2
            epsilons = len(set(given)) if given is not None else DEFAULT_EPSILONS
            forward += epsilons * rows * (steps + 1)
            backward += epsilons * rows * steps
    if not options.early_stop:
        return audit.Plan(forward, backward)
    # The fewest: every row fooled at the first step of each attack and norm, at the smallest epsilon.
    runs = len(dict.fromkeys(options.attacks)) * len(dict.fromkeys(options.norms))
    return audit.Plan(forward, backward, notes=["at most: a row is attacked only until it is fooled"], at_least=(runs * rows, runs * rows))


def blackbox_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    rows = _clean_correct(info, _attacked(info, options.max_rows))
    return audit.Plan(rows * options.budget, 0, notes=["at most: a row stops querying once it is fooled"], at_least=(rows, 0))


# Scores, AUROC and FPR@95 intervals and figures: what the OOD analysis costs besides its passes (measured as
# BENCHMARKS.md's cost table: 0.5 s at 200 and at 1,000 synthetic rows).
OOD_FIXED_SECONDS = 0.5


def ood_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    if options.ood_data:
        return audit.Plan(options.synthetic_rows, 0, OOD_FIXED_SECONDS, notes=["the OOD file's rows are not known before it is read"])
    return audit.Plan(2 * min(info.rows, options.synthetic_rows), 0, OOD_FIXED_SECONDS)


def calibration_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    return audit.Plan(0, 0, other_seconds=0.2, notes=["reads the clean pass"])
