"""Counterfactual substitution: vary one attribute column over its observed values, all else fixed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import audit
from audit import stats


class ValueShift(NamedTuple):
    """What substituting one attribute value for the reference does, with bootstrap 95% intervals."""

    label: str
    shift: float
    shift_ci: tuple[float, float]
    odds_shift: float
    flip_rate: float
    flip_ci: tuple[float, float]


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
    for attribute, column_index in usable:
        substitution = substitute(ctx, options, attribute, column_index)
        results = []
        for record in _value_metrics(substitution, ctx, options, binary):
            if isinstance(record, ValueShift):
                results.append(record)
            else:
                yield record
        reference = substitution.labels[substitution.reference]
        yield from _findings(attribute, reference, results, substitution.any_flip, len(substitution.score), len(substitution.values), binary, options)
        from ._figures import counterfactual_bars

        yield audit.Figure(
            f"counterfactual:{attribute}", f"Counterfactual substitution: {attribute}",
            counterfactual_bars(attribute, reference, results, binary),
            caption=(f"Each row's {attribute} set to every other observed value, all other inputs fixed; "
                     f"mean shift of the score against {reference} and the share of predictions that change, "
                     f"with bootstrap 95% intervals over rows."),
            subject=attribute,
        )


def substitute(ctx, options, attribute: str, column_index: int) -> Substitution:
    """Every row at every value of the column other than its own, in one predict call."""
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
    variant_rows = np.concatenate([np.flatnonzero(own != v) for v in range(len(values))])
    variant_values = np.concatenate([np.full(int((own != v).sum()), v) for v in range(len(values))])
    batch = x[variant_rows].copy()
    batch[:, column_index] = values[variant_values].astype(batch.dtype)
    with ctx.progress(len(batch), f"counterfactual {attribute}") as progress:
        v_probs, v_logits = ctx.model.predict_both(batch)
        progress.advance(len(batch))
    score = np.empty((n_rows, len(values)))
    odds = np.empty((n_rows, len(values)))
    pred = np.empty((n_rows, len(values)), dtype=np.int64)
    score[rows, own] = probs[rows, score_class]
    odds[rows, own] = log_odds(logits, score_class)
    pred[rows, own] = audit.predicted_classes(probs)
    k_variant = score_class[variant_rows]
    score[variant_rows, variant_values] = v_probs[np.arange(len(batch)), k_variant]
    odds[variant_rows, variant_values] = log_odds(v_logits, k_variant)
    pred[variant_rows, variant_values] = audit.predicted_classes(v_probs)
    return Substitution(attribute, int(column_index), values, labels, reference, score, odds, pred)


def _value_metrics(sub: Substitution, ctx, options, binary: bool):
    """Metrics per substituted value, then its ValueShift (for the findings and the figure)."""
    n_rows, reference = len(sub.score), sub.reference
    for v in range(len(sub.values)):
        if v == reference:
            continue
        shift = sub.score[:, v] - sub.score[:, reference]
        odds_shift = sub.odds[:, v] - sub.odds[:, reference]
        flip_rate = float((sub.pred[:, v] != sub.pred[:, reference]).mean())
        lo, hi = stats.percentile_interval(stats.bootstrap_means(shift, ctx.rng, options.n_bootstrap))
        olo, ohi = stats.percentile_interval(stats.bootstrap_means(odds_shift, ctx.rng, options.n_bootstrap))
        flo, fhi = stats.percentile_interval(ctx.rng.binomial(n_rows, flip_rate, size=options.n_bootstrap) / n_rows)
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
        yield ValueShift(group, mean_shift, (float(lo), float(hi)), mean_odds, flip_rate, (float(flo), float(fhi)))


def _reference(options, attribute, labels, values, own) -> int:
    wanted = options.reference.get(attribute)
    if wanted is None:
        return int(np.bincount(own, minlength=len(values)).argmax())
    for i, (label, value) in enumerate(zip(labels, values)):
        if wanted == label or wanted == f"{value:g}":
            return i
    raise audit.AuditError(f"bias.counterfactual: reference {wanted!r} for {attribute} is not an observed value; values are {', '.join(labels)}")


def _findings(attribute, reference, results, any_flip, n_rows, n_values, binary, options):
    score_name = "P(positive class)" if binary else "probability of the predicted class"
    worst_flip = max(results, key=lambda r: r.flip_rate)
    label, flip_rate, (flo, fhi) = worst_flip.label, worst_flip.flip_rate, worst_flip.flip_ci
    yield audit.Finding.graded(
        "counterfactual_flip_rate", "Counterfactual prediction flips", flip_rate, medium=options.flip_rate_medium, high=options.flip_rate_high, subject=attribute,
        message=(f"changing {attribute} from {reference} to {label}, all other inputs fixed, changes {flip_rate:.1%} of "
                 f"predictions [95% CI {flo:.1%}, {fhi:.1%}] ({n_rows} rows; {any_flip:.1%} change under some value); "
                 f"above {options.flip_rate_medium:g} is medium, above {options.flip_rate_high:g} high"),
        details={"reference": reference, "value": label, "ci": [flo, fhi], "any_flip_rate": any_flip,
                 "per_value": {r.label: r.flip_rate for r in results}, "extra_forward_rows": n_rows * (n_values - 1),
                 "thresholds": {"medium": options.flip_rate_medium, "high": options.flip_rate_high}},
    )
    worst_shift = max(results, key=lambda r: abs(r.shift))
    label, shift, (lo, hi), odds_shift = worst_shift.label, worst_shift.shift, worst_shift.shift_ci, worst_shift.odds_shift
    yield audit.Finding.graded(
        "counterfactual_score_shift", "Counterfactual score shift", shift, medium=options.score_shift_medium, high=options.score_shift_high, by=abs(shift), subject=attribute,
        message=(f"changing {attribute} from {reference} to {label} moves the {score_name} by {shift:+.4f} on average "
                 f"[95% CI {lo:+.4f}, {hi:+.4f}] ({odds_shift:+.3f} in log-odds); an absolute shift above "
                 f"{options.score_shift_medium:g} is medium, above {options.score_shift_high:g} high"),
        details={"reference": reference, "value": label, "ci": [lo, hi], "logodds_shift": odds_shift,
                 "per_value": {r.label: r.shift for r in results},
                 "thresholds": {"medium": options.score_shift_medium, "high": options.score_shift_high}},
    )
