"""What the three attribution analyses share: the explained rows, explainer maps for them, and small statistics.

Each analysis is in its own module: _faithfulness.py, _sanity.py, _agreement.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from audit import stats
from audit.sharding import SHARD_ROWS, shard_seeds

from . import _treeshap
from ._core import Layout, ModelScorer, feature_groups
from ._explainers import (
    GRADIENT_EXPLAINERS,
    ExplainerSettings,
    ExplainInputs,
    explain,
    make_baseline,
)


@dataclass
class Setup:
    """The explained rows and everything the explainers need, shared within one analysis."""

    rows: np.ndarray
    x: np.ndarray
    targets: np.ndarray
    layout: Layout
    settings: ExplainerSettings
    explainers: list[str]
    data_mean: np.ndarray
    value_sd: np.ndarray  # per element: the spread SmoothGrad noise and infidelity perturbations scale with
    removal: str = "mean"
    skipped: dict[str, str] = field(default_factory=dict)
    shard_rows: int = SHARD_ROWS  # the maps of the audited model are computed over shards of this many rows


def gradient_skip_reason(model) -> str | None:
    if "gradients" in model.capabilities:
        return None
    if getattr(model, "gradient_reason", None):
        return f"no input gradients for this {model.format} model: {model.gradient_reason}"
    return f"no input gradients for {getattr(model, 'format', 'this')} models"


def settings_from(options) -> ExplainerSettings:
    names = ExplainerSettings.__dataclass_fields__
    return ExplainerSettings(**{k: getattr(options, k) for k in names})


def setup(analysis, ctx, n_rows: int | None = None) -> Setup:
    options = analysis.options
    data = ctx.data
    x_all = np.asarray(data.x, dtype=np.float32)
    n = len(x_all)
    count = min(n, n_rows or options.rows)
    # Rows come from the run's seed, not the analysis's: analyses explaining the
    # same number of rows explain the same rows and can share their maps.
    rows = ctx.sample_rows(count, rng=ctx.rng_for("attribution.rows"))
    rows = np.arange(n) if rows is None else rows
    groups = None
    if data.modality == "tabular" and options.feature_groups:
        groups = feature_groups(data.feature_names, options.feature_groups, x_all.shape[1])
    categorical = data.categorical_columns
    layout = Layout(x_all.shape[1:], data.modality, groups, categorical)
    reason = gradient_skip_reason(ctx.model)
    explainers, skipped = [], {}
    from . import chosen_explainers

    for name in chosen_explainers(options, reason is None):
        if name in GRADIENT_EXPLAINERS and reason:
            skipped[name] = reason
        else:
            explainers.append(name)
    if skipped:
        ctx.note(f"gradient explainers skipped ({', '.join(skipped)}): {reason}")
    elif reason and options.explainers is None:
        ctx.note(f"gradient explainers not run (the default without input gradients is occlusion, Sobol and RISE): {reason}")
    _treeshap.select(ctx, explainers, skipped, "explainers" in options.model_fields_set)
    data_mean = x_all.mean(axis=0)
    if layout.is_image:
        value_sd = np.full(x_all.shape[1:], float(x_all.max() - x_all.min()), dtype=np.float32)
    else:
        value_sd = x_all.std(axis=0).astype(np.float32)
    if categorical:
        # A categorical column is removed by putting its most frequent category there, and never gets noise.
        for j in categorical:
            data_mean[j] = np.bincount(x_all[:, j].astype(np.int64)).argmax()
        value_sd[categorical] = 0.0
        names = ", ".join(data.feature_names[j] for j in categorical)
        ctx.note(f"categorical column(s) {names}: removed by setting the most frequent category (never a mean of codes), "
                 "masked all or nothing, and given no noise")
    return Setup(rows, x_all[rows], ctx.predicted[rows].astype(np.int64), layout, settings_from(options), explainers, data_mean, value_sd,
                 options.removal, skipped, options.shard_rows)


def explain_one(name: str, scorer, layout: Layout, settings, rng, x, targets, ig_baseline, removal_baseline, noise_sd):
    """One explainer's maps (R, U) for rows x, its randomness (SmoothGrad noise, RISE masks) drawn from ``rng``."""
    torch_seed = int(rng.integers(2**63))  # drawn whatever the scorer, so the masks after it do not depend on gradients
    generator = None
    if scorer.has_gradients:
        import torch

        generator = torch.Generator(device=scorer.device)
        generator.manual_seed(torch_seed)
    inputs = ExplainInputs(x=x, targets=targets, ig_baseline=ig_baseline, removal_baseline=removal_baseline, noise_sd=noise_sd, rng=rng,
                           generator=generator)
    return explain(name, scorer, layout, inputs, settings)


def _explain_shard(model, rng, x, targets, ig_baseline, removal_baseline, *, name, score, layout, settings, noise_sd):
    """`explain_one` on a shard of rows with the audited model, in this process or on a Ray row worker."""
    return explain_one(name, ModelScorer(model, score), layout, settings, rng, x, targets, ig_baseline, removal_baseline, noise_sd)


def explain_all(ctx, s: Setup, scorer, x, targets, layout: Layout, data_mean, value_sd, settings=None, label="explainers",
                share: tuple | None = None, stream: int = 0):
    """Maps (R, U) of every explainer in ``s.explainers`` for rows x, with the run's seeded randomness.

    The randomness (SmoothGrad noise, RISE masks) comes from the run's seed, the
    explainer and the shard of ``s.shard_rows`` rows, so two calls with the same
    rows and settings give the same maps. Maps of the audited model itself go
    through ``ctx.map_rows`` (on Ray row workers under ``--executor ray``); those
    of another scorer (a wrapped or randomised model) are computed here with the
    streams of shard ``stream``, so a row explained again alone can draw what its
    shard drew. With ``share`` (what is scored, e.g. ("model", "probability")),
    the maps go into ``ctx.shared`` and another analysis of the run asking for
    the same maps gets them without a pass over the model.
    """
    import dataclasses

    o_settings = settings or s.settings
    key = None
    if share is not None:
        key = ("attribution.maps", share, tuple(int(r) for r in s.rows), tuple(s.explainers),
               dataclasses.astuple(o_settings), s.removal, len(x), s.shard_rows)
        if key in ctx.shared:
            return ctx.shared[key]
    seed = ctx.seed_for("attribution.maps")
    inputs = ExplainInputs(
        x=x,
        targets=targets,
        ig_baseline=make_baseline(o_settings.ig_baseline, x, data_mean, layout, o_settings.blur_sigma),
        removal_baseline=np.broadcast_to(data_mean if s.removal == "mean" else np.zeros_like(data_mean), x.shape).astype(np.float32),
        noise_sd=value_sd * o_settings.smoothgrad_noise,
    )  # no randomness of its own: each explainer draws from its shard's stream (explain_one)
    on_model = isinstance(scorer, ModelScorer) and scorer.model is ctx.model
    maps = {}
    with ctx.progress(len(s.explainers), label) as bar:
        for name in s.explainers:
            if on_model:
                shard = functools.partial(_explain_shard, name=name, score=scorer.score, layout=layout, settings=o_settings,
                                          noise_sd=inputs.noise_sd)
                maps[name] = ctx.map_rows(shard, x, targets, inputs.ig_baseline, inputs.removal_baseline, purpose=name,
                                          shard_rows=s.shard_rows, seed=seed)
            else:
                rng = np.random.default_rng(shard_seeds(seed, name, stream + 1)[stream])
                maps[name] = explain_one(name, scorer, layout, o_settings, rng, x, targets, inputs.ig_baseline, inputs.removal_baseline,
                                         inputs.noise_sd)
            bar.advance(1)
    if key is not None:
        ctx.shared[key] = (maps, inputs)
    return maps, inputs


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


@dataclass
class RowVerdict:
    """One explainer's verdict on the mean of a per-row figure, decided within its family (the explainers of one check)."""

    verdict: str
    value: float | None
    threshold: float
    lower: float | None
    upper: float | None
    level: float
    rows: int
    comparisons: int
    correction: str
    method: str = "t over rows"
    tie: bool = False  # every row exactly on the threshold (e.g. a model whose output nothing moves)

    def fields(self) -> dict:
        """The Finding fields that carry the verdict and its evidence."""
        return {"verdict": self.verdict, "value": self.value, "threshold": self.threshold, "lower": self.lower,
                "upper": self.upper, "level": self.level, "method": self.method, "rows": self.rows}

    def details(self, **more) -> dict:
        """comparisons and correction when a correction applied (the report says "corrected for N comparisons"), and what would
        settle an inconclusive check."""
        corrected = self.comparisons > 1 and self.correction != "none"
        found = {**({"comparisons": self.comparisons, "correction": self.correction} if corrected else {}), **more}
        if self.verdict == "inconclusive":
            if self.rows < 2:
                found["inconclusive_because"] = f"{self.rows} usable row(s); an interval needs at least 2"
            elif self.tie:
                found["inconclusive_because"] = "every row sits exactly on the threshold: a tie is no evidence either way"
            else:
                found["inconclusive_because"] = "the interval straddles the threshold"
                needed = stats.rows_to_decide(self.value, self.lower, self.upper, self.threshold, self.rows)
                if needed is not None:
                    found["needs_rows"] = needed
        return found

    def interval_text(self, sign: str = "+", unit: str = "rows") -> str:
        """'95% CI +0.10 to +0.20' (at the level the check was tested at), or why there is none."""
        if self.lower is None or self.upper is None or not (np.isfinite(self.lower) and np.isfinite(self.upper)):
            return f"no interval from {self.rows} {unit}"
        held = f"; {self.correction}-corrected over {self.comparisons} explainers" if self.comparisons > 1 and self.correction != "none" else ""
        return f"{self.level:.1%} CI {self.lower:{sign}.3f} to {self.upper:{sign}.3f}, {self.rows} {unit}{held}".replace(".0% CI", "% CI")


def judge_rows(per_row: dict[str, np.ndarray], threshold: float, higher_is_better: bool, options,
               strict: bool = False) -> dict[str, RowVerdict]:
    """Verdicts on the row means of each explainer's figure, as one family (``options.level``, ``options.correction``).

    Each mean gets a t interval over rows (for a paired figure, the per-row
    differences: the paired interval); the family's verdicts come from
    `audit.stats.decide_family`, so with several explainers the chance that any
    of them is judged wrongly stays near ``1 - level``. Rows with an undefined
    figure (NaN) are left out. ``strict``: an interval that only touches the
    threshold shows nothing (an explainer tied with random orders on every row
    is not better than them), so it is inconclusive rather than passed.
    """
    names = list(per_row)
    members = [stats.mean_member(name, per_row[name], threshold, higher_is_better) for name in names]
    decisions = stats.decide_family(members, level=options.level, correction=options.correction)
    found = {}
    for name, decision in zip(names, decisions):
        values = np.asarray(per_row[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        finite = np.isfinite(decision.lower) and np.isfinite(decision.upper)
        verdict, tie = decision.verdict, False
        if strict and verdict == "passed" and (decision.lower if higher_is_better else decision.upper) == threshold:
            verdict, tie = "inconclusive", bool(decision.lower == decision.upper)
        found[name] = RowVerdict(verdict, float(values.mean()) if len(values) else None, float(threshold),
                                 decision.lower if finite else None, decision.upper if finite else None, decision.level,
                                 int(len(values)), decision.comparisons, decision.correction, tie=tie)
    return found


def row_interval(values, level: float) -> tuple[float | None, float | None]:
    """The t interval over rows of a per-row figure's mean, for metrics (no verdict); None ends when undefined."""
    found = stats.mean_interval(values, level)
    if not (np.isfinite(found.lower) and np.isfinite(found.upper)):
        return None, None
    return float(found.lower), float(found.upper)


def gain_over_random(deletion, insertion, random_deletion, random_insertion, min_gain: float, level: float = 0.95):
    """Per-row gain (random deletion AUC - deletion AUC) + (insertion AUC - random insertion AUC), its paired interval, the verdict.

    The explainer and the random orders are scored on the same rows, so the
    interval is of the mean per-row difference (paired t), never two
    independent intervals. Passed when the interval lies above ``min_gain``,
    failed when it lies below, inconclusive when it straddles: an advantage over
    random that could be chance is not shown.
    """
    gain = (random_deletion - deletion) + (insertion - random_insertion)
    interval = stats.mean_interval(gain, level)
    return gain, interval, stats.verdict(interval.lower, interval.upper, min_gain, higher_is_better=True)
