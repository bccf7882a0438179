"""Counterfactual substitution: vary one attribute column over its observed values, all else fixed."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import audit
from audit import stats

from ._verdicts import Check, decide, max_of


class ValueShift(NamedTuple):
    """What substituting one attribute value for the reference does, with 95% intervals (paired t, Wilson)."""

    label: str
    shift: float
    shift_ci: tuple[float, float]
    odds_shift: float
    flip_rate: float
    flip_ci: tuple[float, float]
    rows: int = 0
    flips: int = 0
    shift_sd: float = 0.0


def mean_interval(mean: float, sd: float, rows: int, level: float) -> tuple[float, float]:
    """t interval of a mean of per-row differences (paired: the same rows before and after the swap)."""
    if rows < 2:
        return float("nan"), float("nan")
    half = stats.t_quantile(level, rows - 1) * sd / np.sqrt(rows)
    return float(mean - half), float(mean + half)


def absolute(interval: tuple[float, float]) -> tuple[float, float]:
    """Interval of |shift| from that of the signed shift (contains 0 exactly when the signed one does)."""
    lower, upper = interval
    if not (np.isfinite(lower) and np.isfinite(upper)):
        return interval
    return stats.absolute_gap_interval(lower, upper)


@dataclass
class Substitution:
    """Per row and attribute value: the followed score, its log-odds and the prediction (the row's own value included)."""

    attribute: str
    column_index: int
    values: np.ndarray
    labels: list[str]
    reference: int
    score: np.ndarray  # (rows, values)
    odds: np.ndarray
    pred: np.ndarray

    @property
    def any_flip(self) -> float:
        return float((self.pred != self.pred[:, :1]).any(axis=1).mean())


def usable_attributes(data, options):
    """[(attribute, column)] that can be varied, and a skip reason when there are none."""
    mapping = dict(data.attribute_features or {})
    if not mapping:
        return [], ("no attribute is a model input: the data maps no attribute to a column of x "
                    "(attribute_features is empty), so there is nothing to substitute")
    names = list(options.attributes) if options.attributes else sorted(mapping)
    missing = [n for n in names if n not in mapping]
    if missing:
        return [], f"attribute(s) {', '.join(missing)} are not model inputs; inputs are: {', '.join(sorted(mapping))}"
    if data.x.ndim != 2:
        return [], "counterfactual substitution needs tabular inputs (rows x columns)"
    usable, too_many = [], []
    for name in names:
        n_values = len(np.unique(data.x[:, mapping[name]]))
        (usable if 2 <= n_values <= options.max_values else too_many).append((name, mapping[name], n_values))
    if not usable:
        why = "; ".join(f"{n} has {v} distinct values" for n, _, v in too_many)
        return [], f"no attribute column has between 2 and {options.max_values} distinct values to substitute ({why})"
    return [(n, c) for n, c, _ in usable], None


def log_odds(logits: np.ndarray, k: np.ndarray) -> np.ndarray:
    """log p_k - log(1 - p_k) per row, from logits (for two classes exactly z_1 - z_0)."""
    rows = np.arange(len(logits))
    others = logits.astype(np.float64).copy()
    others[rows, k] = -np.inf
    top = others.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
    return logits[rows, k] - lse


def value_labels(data, attribute: str, column: np.ndarray, values: np.ndarray) -> list[str]:
    """Name column values by the attribute value they carry (e.g. 1.0 -> 'female') when that is unambiguous."""
    raw = data.attributes.get(attribute)
    labels = []
    for v in values:
        label = f"{v:g}"
        if raw is not None:
            carried = np.unique(np.asarray(raw)[column == v].astype(str))
            if len(carried) == 1:
                label = str(carried[0])
        labels.append(label)
    if len(set(labels)) < len(labels):  # two column values map to one attribute value: keep the numbers
        labels = [f"{v:g}" for v in values]
    return labels


def run(analysis, ctx):
    options = analysis.options
    data = ctx.data
    usable, reason = usable_attributes(data, options)
    if reason:
        ctx.note(reason)
        return
    skipped = sorted(set(data.attribute_features) - {a for a, _ in usable})
    if skipped and not options.attributes:
        ctx.note(f"not varied (more than {options.max_values} distinct values in the column): {', '.join(skipped)}")
    binary = ctx.n_classes == 2
    pending = []
    for attribute, column_index in usable:
        substitution = substitute(ctx, options, attribute, column_index)
        results = []
        for record in _value_metrics(substitution, ctx, options, binary):
            if isinstance(record, ValueShift):
                results.append(record)
            else:
                yield record
        reference = substitution.labels[substitution.reference]
        pending.extend(_checks(attribute, reference, results, substitution.any_flip, len(substitution.score), len(substitution.values), binary, options))
        from ._figures import counterfactual_bars

        yield audit.Figure(
            f"counterfactual:{attribute}", f"Counterfactual substitution: {attribute}",
            counterfactual_bars(attribute, reference, results, binary),
            caption=(f"Each row's {attribute} set to every other observed value, all other inputs fixed; "
                     f"mean shift of the score against {reference} and the share of predictions that change, "
                     f"with 95% intervals over rows (paired t for the shift, Wilson for the flip rate)."),
            subject=attribute,
        )
    yield from decide(pending, options.level, options.correction)


def _substitute_shard(model, rng, x, own, score_class, *, column_index: int, values):
    """Each row of a shard at every value of the column other than its own, in one predict call.

    Returns (score, odds, pred), each (rows, values); a row's own value is left at zero for the caller, who has its clean figures.
    """
    n_rows, n_values = len(x), len(values)
    variant_rows = np.concatenate([np.flatnonzero(own != v) for v in range(n_values)])
    variant_values = np.concatenate([np.full(int((own != v).sum()), v) for v in range(n_values)])
    batch = x[variant_rows].copy()
    batch[:, column_index] = values[variant_values].astype(batch.dtype)
    v_probs, v_logits = model.predict_both(batch)
    score = np.zeros((n_rows, n_values))
    odds = np.zeros((n_rows, n_values))
    pred = np.zeros((n_rows, n_values), dtype=np.int64)
    k_variant = score_class[variant_rows]
    score[variant_rows, variant_values] = v_probs[np.arange(len(batch)), k_variant]
    odds[variant_rows, variant_values] = log_odds(v_logits, k_variant)
    pred[variant_rows, variant_values] = audit.predicted_classes(v_probs)
    return score, odds, pred


def substitute(ctx, options, attribute: str, column_index: int) -> Substitution:
    """Every row at every value of the column other than its own: one predict call per shard of rows."""
    x = np.asarray(ctx.data.x)
    probs = np.asarray(ctx.predictions, dtype=np.float64)
    logits = np.asarray(ctx.logits, dtype=np.float64)
    n_rows, n_classes = probs.shape
    rows = np.arange(n_rows)
    # The score followed per row: class 1 for a binary model, else the class the model originally predicted.
    score_class = np.ones(n_rows, dtype=np.int64) if n_classes == 2 else audit.predicted_classes(probs)
    column = x[:, column_index]
    values, own = np.unique(column, return_inverse=True)
    labels = value_labels(ctx.data, attribute, column, values)
    reference = _reference(options, attribute, labels, values, own)
    shard = functools.partial(_substitute_shard, column_index=int(column_index), values=values)
    with ctx.progress(n_rows * (len(values) - 1), f"counterfactual {attribute}") as progress:
        score, odds, pred = ctx.map_rows(shard, x, own, score_class, purpose=f"counterfactual/{attribute}", shard_rows=options.shard_rows)
        progress.advance(n_rows * (len(values) - 1))
    score[rows, own] = probs[rows, score_class]
    odds[rows, own] = log_odds(logits, score_class)
    pred[rows, own] = audit.predicted_classes(probs)
    return Substitution(attribute, int(column_index), values, labels, reference, score, odds, pred)


def _value_metrics(sub: Substitution, ctx, options, binary: bool):
    """Metrics per substituted value, then its ValueShift (for the findings and the figure)."""
    n_rows, reference = len(sub.score), sub.reference
    for v in range(len(sub.values)):
        if v == reference:
            continue
        shift = sub.score[:, v] - sub.score[:, reference]
        odds_shift = sub.odds[:, v] - sub.odds[:, reference]
        flips = int((sub.pred[:, v] != sub.pred[:, reference]).sum())
        flip_rate = flips / n_rows
        shift_sd = float(shift.std(ddof=1)) if n_rows > 1 else 0.0
        lo, hi = mean_interval(float(shift.mean()), shift_sd, n_rows, 0.95)
        olo, ohi = stats.percentile_interval(stats.bootstrap_means(odds_shift, ctx.rng, options.n_bootstrap))
        flo, fhi = stats.wilson(flips, n_rows, 0.95)
        details = {"reference": sub.labels[reference], "column": sub.column_index, "value": float(sub.values[v]),
                   "reference_value": float(sub.values[reference]),
                   "score": "P(class 1)" if binary else "probability of the originally predicted class"}
        mean_shift, mean_odds = float(shift.mean()), float(odds_shift.mean())
        group = sub.labels[v]
        yield audit.Metric("counterfactual_score_shift", mean_shift, subject=sub.attribute, group=group,
                           lower=float(lo), upper=float(hi), count=n_rows, details=details)
        yield audit.Metric("counterfactual_logodds_shift", mean_odds, subject=sub.attribute, group=group,
                           lower=float(olo), upper=float(ohi), count=n_rows, unit="log-odds", details=details)
        yield audit.Metric("counterfactual_flip_rate", flip_rate, subject=sub.attribute, group=group,
                           lower=float(flo), upper=float(fhi), count=n_rows, details=details)
        yield ValueShift(group, mean_shift, (float(lo), float(hi)), mean_odds, flip_rate, (float(flo), float(fhi)),
                         n_rows, flips, shift_sd)


def _reference(options, attribute, labels, values, own) -> int:
    wanted = options.reference.get(attribute)
    if wanted is None:
        return int(np.bincount(own, minlength=len(values)).argmax())
    for i, (label, value) in enumerate(zip(labels, values)):
        if wanted == label or wanted == f"{value:g}":
            return i
    raise audit.AuditError(f"bias.counterfactual: reference {wanted!r} for {attribute} is not an observed value; values are {', '.join(labels)}")


def _checks(attribute, reference, results, any_flip, n_rows, n_values, binary, options):
    """The flip-rate and score-shift checks of one attribute, worst substituted value, simultaneous over values."""
    score_name = "P(positive class)" if binary else "probability of the predicted class"
    worst_flip = max(results, key=lambda r: r.flip_rate)
    label, flip_rate = worst_flip.label, worst_flip.flip_rate
    flip_interval = max_of([lambda level, r=r: stats.wilson(r.flips, r.rows, level) for r in results])
    yield Check(
        "counterfactual_flip_rate", "Counterfactual prediction flips", attribute, flip_rate, flip_interval,
        options.flip_rate_medium, False, "medium", "wilson" + (f", max over {len(results)} values" if len(results) > 1 else ""),
        n_rows,
        lambda lo, hi: (
            f"changing {attribute} from {reference} to {label}, all other inputs fixed, changes {flip_rate:.1%} of "
            f"predictions [95% CI {lo:.1%}, {hi:.1%}] ({n_rows} rows; {any_flip:.1%} change under some value); "
            f"above {options.flip_rate_medium:g} is medium, above {options.flip_rate_high:g} high"),
        {"reference": reference, "value": label, "any_flip_rate": any_flip,
         "per_value": {r.label: r.flip_rate for r in results}, "extra_forward_rows": n_rows * (n_values - 1),
         "thresholds": {"medium": options.flip_rate_medium, "high": options.flip_rate_high}},
        high=options.flip_rate_high,
    )
    worst_shift = max(results, key=lambda r: abs(r.shift))
    label, shift, odds_shift = worst_shift.label, worst_shift.shift, worst_shift.odds_shift
    shift_interval = max_of([lambda level, r=r: absolute(mean_interval(r.shift, r.shift_sd, r.rows, level)) for r in results])
    signed = worst_shift.shift_ci
    yield Check(
        "counterfactual_score_shift", "Counterfactual score shift", attribute, shift, shift_interval,
        options.score_shift_medium, False, "medium", "paired t" + (f", max over {len(results)} values" if len(results) > 1 else ""),
        n_rows,
        lambda lo, hi: (
            f"changing {attribute} from {reference} to {label} moves the {score_name} by {shift:+.4f} on average "
            f"[95% CI {signed[0]:+.4f}, {signed[1]:+.4f}] ({odds_shift:+.3f} in log-odds); the absolute shift, "
            f"[{lo:.4f}, {hi:.4f}] over all values, above {options.score_shift_medium:g} is medium, above {options.score_shift_high:g} high"),
        {"reference": reference, "value": label, "logodds_shift": odds_shift, "signed_ci": list(signed),
         "per_value": {r.label: r.shift for r in results},
         "thresholds": {"medium": options.score_shift_medium, "high": options.score_shift_high}},
        high=options.score_shift_high, by=abs(shift),
    )