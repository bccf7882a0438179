"""Counterfactual substitution: vary one attribute column over its observed values, all else fixed."""

from __future__ import annotations

import numpy as np

import audit

from . import _stats
from ._grading import grade


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
    o = analysis.options
    data = ctx.data
    usable, reason = usable_attributes(data, o)
    if reason:
        ctx.note(reason)
        return
    x = np.asarray(data.x)
    probs = np.asarray(ctx.predictions, dtype=np.float64)
    logits = np.asarray(ctx.logits, dtype=np.float64)
    n_rows, n_classes = probs.shape
    binary = n_classes == 2
    rows = np.arange(n_rows)
    # The score followed per row: class 1 for a binary model, else the class the model originally predicted.
    score_class = np.ones(n_rows, dtype=np.int64) if binary else audit.predicted_classes(probs)
    clean_pred = audit.predicted_classes(probs)
    skipped = sorted(set(data.attribute_features) - {a for a, _ in usable})
    if skipped and not o.attributes:
        ctx.note(f"not varied (more than {o.max_values} distinct values in the column): {', '.join(skipped)}")

    for attribute, column_index in usable:
        column = x[:, column_index]
        values, own = np.unique(column, return_inverse=True)
        n_values = len(values)
        labels = value_labels(data, attribute, column, values)
        reference = _reference(o, attribute, labels, values, own)

        # Every row at every value other than its own: (values - 1) rows each, one predict call.
        variant_rows, variant_values = [], []
        for v in range(n_values):
            idx = np.flatnonzero(own != v)
            variant_rows.append(idx)
            variant_values.append(np.full(len(idx), v))
        variant_rows = np.concatenate(variant_rows)
        variant_values = np.concatenate(variant_values)
        batch = x[variant_rows].copy()
        batch[:, column_index] = values[variant_values].astype(batch.dtype)
        with ctx.progress(len(batch), f"counterfactual {attribute}") as progress:
            v_probs, v_logits = ctx.model.predict_both(batch)
            progress.advance(len(batch))

        score = np.empty((n_rows, n_values))
        odds = np.empty((n_rows, n_values))
        pred = np.empty((n_rows, n_values), dtype=np.int64)
        score[rows, own] = probs[rows, score_class]
        odds[rows, own] = log_odds(logits, score_class)
        pred[rows, own] = clean_pred
        k_variant = score_class[variant_rows]
        score[variant_rows, variant_values] = v_probs[np.arange(len(batch)), k_variant]
        odds[variant_rows, variant_values] = log_odds(v_logits, k_variant)
        pred[variant_rows, variant_values] = audit.predicted_classes(v_probs)

        any_flip = float((pred != pred[:, :1]).any(axis=1).mean())
        results = []
        for v in range(n_values):
            if v == reference:
                continue
            shift = score[:, v] - score[:, reference]
            odds_shift = odds[:, v] - odds[:, reference]
            flips = pred[:, v] != pred[:, reference]
            flip_rate = float(flips.mean())
            lo, hi = _stats.interval(_stats.bootstrap_mean(shift, ctx.rng, o.n_bootstrap))
            olo, ohi = _stats.interval(_stats.bootstrap_mean(odds_shift, ctx.rng, o.n_bootstrap))
            flo, fhi = _stats.interval(ctx.rng.binomial(n_rows, flip_rate, size=o.n_bootstrap) / n_rows)
            details = {"reference": labels[reference], "column": int(column_index), "value": float(values[v]),
                       "reference_value": float(values[reference]),
                       "score": "P(class 1)" if binary else "probability of the originally predicted class"}
            mean_shift, mean_odds = float(shift.mean()), float(odds_shift.mean())
            yield audit.Metric("counterfactual_score_shift", mean_shift, subject=attribute, group=labels[v],
                               lower=float(lo), upper=float(hi), count=n_rows, details=details)
            yield audit.Metric("counterfactual_logodds_shift", mean_odds, subject=attribute, group=labels[v],
                               lower=float(olo), upper=float(ohi), count=n_rows, unit="log-odds", details=details)
            yield audit.Metric("counterfactual_flip_rate", flip_rate, subject=attribute, group=labels[v],
                               lower=float(flo), upper=float(fhi), count=n_rows, details=details)
            results.append((labels[v], mean_shift, (float(lo), float(hi)), mean_odds, flip_rate, (float(flo), float(fhi))))

        yield from _findings(attribute, labels[reference], results, any_flip, n_rows, n_values, binary, o)
        from ._figures import counterfactual_bars

        yield audit.Figure(
            f"counterfactual:{attribute}", f"Counterfactual substitution: {attribute}",
            counterfactual_bars(attribute, labels[reference], results, binary),
            caption=(f"Each row's {attribute} set to every other observed value, all other inputs fixed; "
                     f"mean shift of the score against {labels[reference]} and the share of predictions that change, "
                     f"with bootstrap 95% intervals over rows."),
            subject=attribute,
        )


def _reference(o, attribute, labels, values, own) -> int:
    wanted = o.reference.get(attribute)
    if wanted is None:
        return int(np.bincount(own, minlength=len(values)).argmax())
    for i, (label, value) in enumerate(zip(labels, values)):
        if wanted == label or wanted == f"{value:g}":
            return i
    raise audit.AuditError(f"bias.counterfactual: reference {wanted!r} for {attribute} is not an observed value; values are {', '.join(labels)}")


def _findings(attribute, reference, results, any_flip, n_rows, n_values, binary, o):
    score_name = "P(positive class)" if binary else "probability of the predicted class"
    worst_flip = max(results, key=lambda r: r[4])
    label, _, _, _, flip_rate, (flo, fhi) = worst_flip
    severity, passed = grade(flip_rate, o.flip_rate_medium, o.flip_rate_high)
    yield audit.Finding(
        check="counterfactual_flip_rate", title="Counterfactual prediction flips", severity=severity, passed=passed,
        value=flip_rate, threshold=o.flip_rate_medium, subject=attribute,
        message=(f"changing {attribute} from {reference} to {label}, all other inputs fixed, changes {flip_rate:.1%} of "
                 f"predictions [95% CI {flo:.1%}, {fhi:.1%}] ({n_rows} rows; {any_flip:.1%} change under some value); "
                 f"above {o.flip_rate_medium:g} is medium, above {o.flip_rate_high:g} high"),
        details={"reference": reference, "value": label, "ci": [flo, fhi], "any_flip_rate": any_flip,
                 "per_value": {r[0]: r[4] for r in results}, "extra_forward_rows": n_rows * (n_values - 1),
                 "thresholds": {"medium": o.flip_rate_medium, "high": o.flip_rate_high}},
    )
    worst_shift = max(results, key=lambda r: abs(r[1]))
    label, shift, (lo, hi), odds_shift, _, _ = worst_shift
    severity, passed = grade(abs(shift), o.score_shift_medium, o.score_shift_high)
    yield audit.Finding(
        check="counterfactual_score_shift", title="Counterfactual score shift", severity=severity, passed=passed,
        value=shift, threshold=o.score_shift_medium, subject=attribute,
        message=(f"changing {attribute} from {reference} to {label} moves the {score_name} by {shift:+.4f} on average "
                 f"[95% CI {lo:+.4f}, {hi:+.4f}] ({odds_shift:+.3f} in log-odds); an absolute shift above "
                 f"{o.score_shift_medium:g} is medium, above {o.score_shift_high:g} high"),
        details={"reference": reference, "value": label, "ci": [lo, hi], "logodds_shift": odds_shift,
                 "per_value": {r[0]: r[1] for r in results},
                 "thresholds": {"medium": o.score_shift_medium, "high": o.score_shift_high}},
    )
