"""The bias analyses' cost plans: model rows and the bootstrap and probe work, from the options and the data's size."""

from __future__ import annotations

import audit

# Rough seconds of numpy work, measured on the demo data: one bootstrap resample of one grouping's rates,
# one distance-covariance permutation per million distance pairs, one full-batch step of one attentive probe.
BOOTSTRAP_SECONDS = 2e-4
PERMUTATION_SECONDS_PER_MILLION_PAIRS = 2e-3
RESAMPLE_SECONDS_PER_MILLION_PAIRS = 1e-3  # dCor's spread: three (n, n) x (n, resamples) products
PROBE_STEP_SECONDS = 5e-3
VALUES_PER_ATTRIBUTE = 2  # the values a model-input attribute takes are read from the data at run time


def _groupings(info: audit.PlanInfo, attributes, intersections: bool = False) -> int:
    count = len(attributes if attributes is not None else info.attributes)
    return count + (count * (count - 1) // 2 if intersections else 0)


def group_fairness_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    groupings = _groupings(info, options.attributes, options.intersections)
    pairs = min(info.rows, options.dcov_max_rows) ** 2 / 1e6
    seconds = groupings * (options.n_bootstrap * BOOTSTRAP_SECONDS + options.dcov_permutations * pairs * PERMUTATION_SECONDS_PER_MILLION_PAIRS
                           + options.dcor_resamples * pairs * RESAMPLE_SECONDS_PER_MILLION_PAIRS + 2 * options.js_null_draws * BOOTSTRAP_SECONDS)
    return audit.Plan(0, 0, other_seconds=seconds, notes=["reads the clean pass"])


def counterfactual_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    if info.modality == "text":
        return audit.Plan(8 * info.rows, 0, notes=["text: rows with identity terms, each swapped per group, roughly"])
    names = set(info.feature_names or ())
    inputs = [a for a in (options.attributes or info.attributes) if a in names]
    forward = len(inputs) * (VALUES_PER_ATTRIBUTE - 1) * info.rows
    return audit.Plan(forward, 0, other_seconds=len(inputs) * options.n_bootstrap * BOOTSTRAP_SECONDS)


def leakage_plan(analysis, info: audit.PlanInfo) -> audit.Plan:
    options = analysis.options
    rows = min(info.rows, options.max_rows)
    layers = len(options.layers) if options.layers else options.n_layers
    attributes = _groupings(info, options.attributes)
    # The attentive probe reads token or spatial activations, which tabular models have not.
    probe_steps = options.attentive_epochs if options.attentive and info.modality != "tabular" else 0
    # Two linear probes per fold (before and after erasure), one-threaded: ~0.05 s each on the demo credit MLP.
    seconds = attributes * layers * (options.folds * 2 * 0.05 + probe_steps * PROBE_STEP_SECONDS * rows / 1000)
    return audit.Plan(rows, 0, other_seconds=seconds, notes=["one pass for the activations, then probes"])
