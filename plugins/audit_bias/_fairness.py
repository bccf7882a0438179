"""Group fairness: per-group counts from one bincount, simultaneous score intervals for the gaps, one family of verdicts."""

from __future__ import annotations

import itertools
import math

import numpy as np

import audit
from audit import stats, toolkit

from . import _stats
from ._grading import not_judged
from ._verdicts import Check, decide, max_of

RATE_TITLES = {
    "selection_rate": "selection rate",
    "accuracy": "accuracy",
    "tpr": "true positive rate",
    "fpr": "false positive rate",
    "fnr": "false negative rate",
    "precision": "precision",
    "mean_score": "mean score",
}


def groupings(data, options) -> list[_stats.Grouping]:
    """One grouping per selected attribute, then one per pair of them (intersections)."""
    names = list(options.attributes) if options.attributes else sorted(data.attributes)
    unknown = [n for n in names if n not in data.attributes]
    if unknown:
        raise audit.AuditError(
            f"bias.group_fairness: unknown attribute(s) {', '.join(unknown)}; the data has: {', '.join(sorted(data.attributes))}"
        )
    labels = getattr(data, "value_labels", None)
    labels = labels if isinstance(labels, dict) else {}
    singles = []
    for n in names:
        grouping = _stats.group_attribute(n, data.attributes[n], options.max_categories, options.numeric_bins)
        singles.append(_stats.labelled(grouping, labels.get(n)))
    pairs = []
    if options.intersections:
        for a, b in itertools.combinations(singles, 2):
            pairs.append(_stats.intersect(a, b))
    return singles + pairs


class GroupTable:
    """Everything measured for one grouping: cell counts, rates, mean scores with bootstrap replicates."""

    def __init__(self, grouping, probs, predicted, y, classes, rng, options):
        n_classes = probs.shape[1]
        self.grouping = grouping
        self.classes = classes  # class indices reported one-vs-rest
        self.has_labels = y is not None
        cells = _stats.cell_counts(grouping.codes, grouping.n_groups, y, predicted, n_classes)
        self.n = cells.sum(axis=(1, 2))
        self.small = self.n < options.min_group_size
        self.judged = np.flatnonzero(~self.small)
        rates = _stats.rates_from_cells(cells, self.has_labels)
        self.rates = {k: v for k, v in rates.items() if k != "n"}
        # Counts behind every rate: (successes, trials) per group and class, for score intervals.
        selected = cells.sum(axis=1)
        n_column = np.broadcast_to(self.n[:, None], selected.shape)
        self.counts = {"selection_rate": (selected, n_column)}
        if self.has_labels:
            positives = cells.sum(axis=2)
            true_pos = np.diagonal(cells, axis1=1, axis2=2)
            self.counts.update({
                "tpr": (true_pos, positives),
                "fnr": (positives - true_pos, positives),
                "fpr": (selected - true_pos, n_column - positives),
                "precision": (true_pos, selected),
                "accuracy": (true_pos.sum(axis=1), self.n),
            })
        self.mean_score = np.empty((grouping.n_groups, n_classes))
        self.boot_mean_score = np.empty((options.n_bootstrap, grouping.n_groups, n_classes))
        for k in classes:
            counts, sums = stats.binned_means(probs[:, k], grouping.codes, grouping.n_groups, 128)
            with np.errstate(invalid="ignore", divide="ignore"):
                self.mean_score[:, k] = sums.sum(axis=1) / counts.sum(axis=1)
            self.boot_mean_score[:, :, k] = stats.bootstrap_group_means(counts, sums, rng, options.n_bootstrap)

    def value(self, metric, g, k):
        if metric == "mean_score":
            return self.mean_score[g, k]
        if metric == "accuracy":
            return self.rates["accuracy"][g]
        return self.rates[metric][g, k]

    def successes_trials(self, metric, k):
        """(successes, trials) per group of a count metric for class k (accuracy: k ignored)."""
        successes, trials = self.counts[metric]
        if metric == "accuracy":
            return successes, trials
        return successes[:, k], trials[:, k]

    def intervals(self, metric, k, level: float = 0.95):
        """Per-group (lower, upper): Wilson for rates (width at 0/n and n/n), bootstrap percentile for mean scores."""
        if metric == "mean_score":
            return stats.percentile_interval(self.boot_mean_score[:, :, k], axis=0, level=level)
        successes, trials = self.successes_trials(metric, k)
        lower, upper = stats.wilson(successes, trials, level)
        return np.atleast_1d(lower), np.atleast_1d(upper)


def _spread(values: np.ndarray, groups: np.ndarray, kind: str):
    """max - min (or min / max) over the judged groups; NaN-aware, on the last axis."""
    v = values[..., groups]
    with np.errstate(invalid="ignore", divide="ignore"), _stats._quiet():
        hi = np.nanmax(v, axis=-1)
        lo = np.nanmin(v, axis=-1)
        if kind == "difference":
            return hi - lo
        return np.where(hi > 0, lo / hi, 1.0)


# --- intervals of the gap statistics ---------------------------------------------------------

def gap_interval(successes, trials, level: float, kind: str) -> tuple[float, float]:
    """Simultaneous interval for max-min (kind "difference") or min/max ("ratio") of group rates.

    The construction of `audit.stats.largest_difference` / `smallest_ratio` (Newcombe or
    adjusted-log intervals for every pair at the Bonferroni level, folded to |d| or
    min(r, 1/r)), vectorised and without the homogeneity test, because the family
    decision asks for it at many levels. Groups without trials are left out.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    keep = n > 0
    k, n = k[keep], n[keep]
    if k.size < 2:
        return float("nan"), float("nan")
    if k.size == 2:  # the common case, asked for at many levels by the family decision: scalar arithmetic
        return _two_group_interval(float(k[0]), float(n[0]), float(k[1]), float(n[1]), level, kind)
    first, second = np.triu_indices(k.size, k=1)
    pair_level = stats.family_level(level, first.size)
    if kind == "difference":
        lower, upper = (np.atleast_1d(v) for v in stats.newcombe_difference(k[first], n[first], k[second], n[second], pair_level))
        straddles = (lower <= 0) & (upper >= 0)
        folded_lower = np.where(straddles, 0.0, np.minimum(np.abs(lower), np.abs(upper)))
        folded_upper = np.where(straddles, np.maximum(-lower, upper), np.maximum(np.abs(lower), np.abs(upper)))
        return float(folded_lower.max()), float(folded_upper.max())
    lower, upper = (np.atleast_1d(v) for v in stats.ratio_log_adjusted(k[first], n[first], k[second], n[second], pair_level))
    with np.errstate(divide="ignore"):
        inverse_upper = np.where(upper > 0, 1.0 / upper, 0.0)
        inverse_lower = np.where(lower > 0, 1.0 / lower, np.inf)
    straddles = (lower <= 1) & (upper >= 1)
    below = upper < 1
    folded_lower = np.where(straddles, np.minimum(lower, inverse_upper), np.where(below, lower, inverse_upper))
    folded_upper = np.where(straddles, 1.0, np.where(below, upper, inverse_lower))
    return float(folded_lower.min()), float(folded_upper.min())


def _wilson(k: float, n: float, z: float) -> tuple[float, float]:
    p = k / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    return (0.0 if k <= 0 else max(0.0, centre - half)), (1.0 if k >= n else min(1.0, centre + half))


def _two_group_interval(k1: float, n1: float, k2: float, n2: float, level: float, kind: str) -> tuple[float, float]:
    """`gap_interval` for two groups in plain floats (the same Newcombe / adjusted-log formulas as audit.stats)."""
    z = stats.z_value(level)
    if kind == "difference":
        p1, p2 = k1 / n1, k2 / n2
        (l1, u1), (l2, u2) = _wilson(k1, n1, z), _wilson(k2, n2, z)
        d = p1 - p2
        lower = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        upper = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
        if lower <= 0.0 <= upper:
            return 0.0, max(-lower, upper)
        return min(abs(lower), abs(upper)), max(abs(lower), abs(upper))
    a1, b1, a2, b2 = k1 + 0.5, n1 + 0.5, k2 + 0.5, n2 + 0.5
    log_ratio = math.log(a1 / b1) - math.log(a2 / b2)
    se = math.sqrt(1.0 / a1 - 1.0 / b1 + 1.0 / a2 - 1.0 / b2)
    lower, upper = math.exp(log_ratio - z * se), math.exp(log_ratio + z * se)
    if lower <= 1.0 <= upper:
        return min(lower, 1.0 / upper), 1.0
    if upper < 1.0:
        return lower, upper
    return 1.0 / upper, 1.0 / lower


def gap_estimate(successes, trials, kind: str) -> float:
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    rates = k[n > 0] / n[n > 0]
    if rates.size < 2:
        return float("nan")
    if kind == "difference":
        return float(rates.max() - rates.min())
    return float(rates.min() / rates.max()) if rates.max() > 0 else 1.0


def worst_group_interval(correct, trials, level: float) -> tuple[float, float]:
    """Interval for min_g p_g (worst-group accuracy) from per-group Wilson bounds.

    Lower end: the smallest of the groups' one-sided (alpha/2) Wilson lower bounds; it
    errs only if the worst group's own bound does. Upper end: the smallest of their
    one-sided (alpha/G) upper bounds; it errs if any group's does (a union, hence the
    Bonferroni share). With two groups both ends are the plain 95% Wilson bounds, and
    the coverage measured (benchmarks/bench_verdicts.py) is close to the level whether
    one group is clearly worst or all are equal.
    """
    k = np.asarray(correct, dtype=float)
    n = np.asarray(trials, dtype=float)
    keep = n > 0
    k, n = k[keep], n[keep]
    if k.size == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    lower, _ = stats.wilson(k, n, level)
    _, upper = stats.wilson(k, n, max(level, 1.0 - 2.0 * alpha / k.size))
    return float(np.min(lower)), float(np.min(upper))


def run(analysis, ctx):
    options = analysis.options
    probs = np.asarray(ctx.predictions, dtype=np.float64)
    n_rows, n_classes = probs.shape
    predicted = audit.predicted_classes(probs)
    y = None if ctx.data.y is None else np.asarray(ctx.data.y, dtype=np.int64)
    class_names = ctx.class_names
    binary = n_classes == 2
    classes = [1] if binary else list(range(n_classes))
    if y is None:
        ctx.note("no labels: only selection rate, mean score, distance covariance and JS divergence were computed "
                 "(accuracy, TPR, FPR, FNR, precision and the error-rate findings need labels)")
    if not binary:
        ctx.note(f"{n_classes} classes: rates are one-vs-rest per class; each aggregate finding covers every class "
                 "(simultaneous intervals) and names its worst class")
    rng = ctx.rng
    pending: list[Check] = []
    unjudged = []
    for grouping in groupings(ctx.data, options):
        if grouping.binned:
            ctx.note(grouping.binned)
        table = GroupTable(grouping, probs, predicted, y, classes, rng, options)
        yield from _group_metrics(table, class_names, binary, options)
        if len(table.judged) >= 2:
            pending.extend(_checks(table, probs, class_names, binary, rng, options))
        else:
            unjudged.extend(_not_judged(table, options))
        if grouping.n_groups <= options.max_plot_groups:
            from ._figures import group_bars, score_distributions

            primary = _primary_class(table, binary)
            yield audit.Figure(
                f"group_rates:{grouping.subject}", f"Rates per group: {grouping.subject}",
                group_bars(table, primary, class_names[primary], binary),
                caption=("Per-group rates with 95% Wilson intervals (mean score: bootstrap, "
                         f"{options.n_bootstrap} resamples). Hatched grey bars: groups under {options.min_group_size} rows, not judged."
                         + ("" if binary else f" Class shown: {class_names[primary]} (largest parity gap)")),
                subject=grouping.subject,
            )
            yield audit.Figure(
                f"score_distributions:{grouping.subject}", f"Score distributions: {grouping.subject}",
                score_distributions(probs[:, primary], grouping, table.small, class_names[primary]),
                caption=f"Distribution of the model's probability for class {class_names[primary]} in each group.",
                subject=grouping.subject,
            )
    yield from decide(pending, options.level, options.correction)
    yield from unjudged



def _primary_class(table, binary):
    if binary:
        return 1
    gaps = [_spread(table.rates["selection_rate"][:, k], table.judged, "difference") if len(table.judged) else 0.0 for k in table.classes]
    return table.classes[int(np.nanargmax(gaps))] if len(gaps) else 0


def _group_metrics(table, class_names, binary, options):
    g_names = table.grouping.names
    subject = table.grouping.subject
    lower_q, upper_q = {}, {}
    metrics = ["selection_rate", "mean_score"] + (["accuracy", "tpr", "fpr", "fnr", "precision"] if table.has_labels else [])
    for metric in metrics:
        for k in ([None] if metric == "accuracy" else table.classes):
            lower_q[metric, k], upper_q[metric, k] = table.intervals(metric, k)
    for g, group in enumerate(g_names):
        details = {"too_small": bool(table.small[g])}
        if table.small[g]:
            details["note"] = f"{int(table.n[g])} rows, under the minimum of {options.min_group_size}: reported, not judged"
        yield audit.Metric("group_size", float(table.n[g]), subject=subject, group=group, count=int(table.n[g]), unit="rows", details=details)
        for metric in metrics:
            for k in ([None] if metric == "accuracy" else table.classes):
                value = table.value(metric, g, k)
                name = metric if (binary or k is None) else f"{metric} [{class_names[k]}]"
                extra = dict(details)
                if k is not None and not binary:
                    extra["class"] = class_names[k]
                yield audit.Metric(
                    name, None if not np.isfinite(value) else float(value), subject=subject, group=group,
                    lower=_finite(lower_q[metric, k][g]), upper=_finite(upper_q[metric, k][g]),
                    count=int(table.n[g]), details=extra,
                )


def _finite(x):
    x = float(x)
    return x if np.isfinite(x) else None


def _excluded(table, options):
    small = np.flatnonzero(table.small)
    return {table.grouping.names[g]: int(table.n[g]) for g in small}


def _context_text(table, options, binary, class_names, k):
    parts = []
    if not binary and k is not None:
        parts.append(f"worst class: {class_names[k]}")
    excluded = _excluded(table, options)
    if excluded:
        shown = ", ".join(f"{name} (n={n})" for name, n in list(excluded.items())[:5])
        more = "" if len(excluded) <= 5 else f" and {len(excluded) - 5} more"
        parts.append(f"not judged, under {options.min_group_size} rows: {shown}{more}")
    return ("; " + "; ".join(parts)) if parts else ""


CHECK_TITLES = {
    "demographic_parity_difference": "Demographic parity difference",
    "demographic_parity_ratio": "Demographic parity ratio (four-fifths rule)",
    "equalized_odds_difference": "Equalized odds difference",
    "equal_opportunity_difference": "Equal opportunity difference",
    "worst_group_accuracy": "Worst-group accuracy",
    "accuracy_gap": "Accuracy gap between groups",
    "distance_covariance": "Distance covariance of scores and attribute",
    "score_js_divergence": "Jensen-Shannon divergence of group score distributions",
}


def _base_details(table, options):
    return {
        "groups": {name: int(n) for name, n in zip(table.grouping.names, table.n)},
        "excluded_small_groups": _excluded(table, options),
        "min_group_size": options.min_group_size,
        "binned": table.grouping.binned,
    }


def _not_judged(table, options):
    checks = ["demographic_parity_difference", "demographic_parity_ratio"]
    if table.has_labels:
        checks += ["equalized_odds_difference", "equal_opportunity_difference", "worst_group_accuracy", "accuracy_gap"]
    checks += ["distance_covariance", "score_js_divergence"]
    for check in checks:
        yield not_judged(check, CHECK_TITLES[check], table.grouping.subject, len(table.judged), options.min_group_size,
                         _base_details(table, options))


def _judged_counts(table, metric, k):
    successes, trials = table.successes_trials(metric, k)
    return successes[table.judged], trials[table.judged]


def _gap_over_classes(table, metric, kind):
    """The gap of `metric` for each reported class (largest difference or smallest ratio over judged groups),
    and a simultaneous interval over the classes; None when no class has two groups with trials."""
    found = []
    for k in table.classes:
        successes, trials = _judged_counts(table, metric, k)
        value = gap_estimate(successes, trials, kind)
        if np.isfinite(value):
            found.append((value, k, successes, trials))
    if not found:
        return None
    worst = max(found, key=lambda f: f[0]) if kind == "difference" else min(found, key=lambda f: f[0])
    components = [(lambda level, s=s, t=t: gap_interval(s, t, level, kind)) for _, _, s, t in found]
    interval = max_of(components, "max" if kind == "difference" else "min")
    return worst[0], worst[1], interval, len(found)


def _extremes(table, metric, k):
    """(display name, rate) of the highest and lowest judged groups."""
    successes, trials = table.successes_trials(metric, k)
    with np.errstate(invalid="ignore", divide="ignore"), _stats._quiet():
        rates = successes[table.judged] / trials[table.judged]
        hi = table.judged[int(np.nanargmax(rates))]
        lo = table.judged[int(np.nanargmin(rates))]
    shown = table.grouping.shown
    value = table.value(metric, hi, k), table.value(metric, lo, k)
    return (shown[hi], float(value[0])), (shown[lo], float(value[1]))


def _method(kind, groups, classes, extra=""):
    pairs = groups * (groups - 1) // 2
    base = "newcombe" if kind == "difference" else "adjusted log"
    parts = [base]
    if pairs > 1:
        parts.append(f"bonferroni over {pairs} pairs")
    if classes > 1:
        parts.append(f"over {classes} classes")
    return ", ".join(parts) + extra


def _checks(table, probs, class_names, binary, rng, options) -> list[Check]:
    subject = table.grouping.subject
    details = _base_details(table, options)
    rows = int(table.n[table.judged].sum())
    groups = len(table.judged)
    out = []

    def ctx_text(k):
        return _context_text(table, options, binary, class_names, k)

    value, k, interval, n_classes = _gap_over_classes(table, "selection_rate", "difference")
    (top, top_rate), (bottom, bottom_rate) = _extremes(table, "selection_rate", k)
    out.append(Check(
        "demographic_parity_difference", CHECK_TITLES["demographic_parity_difference"], subject, value, interval,
        options.parity_difference_medium, False, "medium", _method("difference", groups, n_classes), rows,
        lambda lo, hi, value=value, k=k, top=top, bottom=bottom, tr=top_rate, br=bottom_rate: (
            f"selection rate of {bottom} is {br:.3f} against {tr:.3f} for {top}: difference {value:.3f} "
            f"[95% CI {lo:.3f}, {hi:.3f}]; above {options.parity_difference_medium:g} is medium, "
            f"above {options.parity_difference_high:g} high" + ctx_text(k)),
        {**details, "highest_group": top, "lowest_group": bottom, "cls": class_names[k],
         "thresholds": {"medium": options.parity_difference_medium, "high": options.parity_difference_high}},
        high=options.parity_difference_high,
    ))
    value, k, interval, n_classes = _gap_over_classes(table, "selection_rate", "ratio")
    (top, top_rate), (bottom, bottom_rate) = _extremes(table, "selection_rate", k)
    out.append(Check(
        "demographic_parity_ratio", CHECK_TITLES["demographic_parity_ratio"], subject, value, interval,
        options.parity_ratio_min, True, "high", _method("ratio", groups, n_classes), rows,
        lambda lo, hi, value=value, k=k, top=top, bottom=bottom: (
            f"selection rate of {bottom} is {value:.3f} of {top}'s [95% CI {lo:.3f}, {hi:.3f}]; "
            f"the four-fifths rule asks for at least {options.parity_ratio_min:g} (below it is high)" + ctx_text(k)),
        {**details, "highest_group": top, "lowest_group": bottom, "cls": class_names[k],
         "thresholds": {"high_below": options.parity_ratio_min}},
        plain=lambda lo, hi, value=value, k=k, top=top, bottom=bottom, tr=top_rate, br=bottom_rate: parity_sentence(
            subject, bottom, top, class_names[k], value, br, tr, lo, hi),
    ))
    if table.has_labels:
        out.extend(_error_rate_checks(table, class_names, binary, options, details, rows, groups))
    out.append(_dcov_check(table, probs, binary, rng, options, details))
    out.append(_js_check(table, probs, class_names, binary, rng, options, details))
    return out


def _group_phrase(subject: str, shown: str) -> str:
    """ "sex=female" as "the female group (sex)"; an intersection keeps its "age=..., sex=..." name."""
    prefix = f"{subject}="
    if " x " not in subject and shown.startswith(prefix):
        return f"the {shown[len(prefix):]} group ({subject})"
    return f"the {shown} group"


def parity_sentence(subject, bottom, top, cls, ratio, bottom_rate, top_rate, lo, hi) -> str:
    """The parity ratio in a reviewer's words: who receives the outcome at what share of whose rate."""
    low, high = _group_phrase(subject, bottom), _group_phrase(subject, top)
    high = high.replace(f" ({subject})", "")  # the attribute is named once
    return (f"{low[0].upper()}{low[1:]} is predicted \u201c{cls}\u201d at {ratio:.0%} of the rate of {high} "
            f"({bottom_rate:.1%} of its rows against {top_rate:.1%}) [95% CI {lo:.0%}, {hi:.0%}]")


def _error_rate_checks(table, class_names, binary, options, details, rows, groups):
    """Equalized odds and equal opportunity, then worst-group accuracy and the accuracy gap (labels needed)."""
    subject = table.grouping.subject

    def ctx_text(k):
        return _context_text(table, options, binary, class_names, k)

    # Equalized odds: the larger of the TPR and FPR gaps over every class; simultaneous over all of them.
    components, best = [], None
    for k in table.classes:
        gaps = {}
        for metric in ("tpr", "fpr"):
            successes, trials = _judged_counts(table, metric, k)
            gap = gap_estimate(successes, trials, "difference")
            if np.isfinite(gap):
                gaps[metric] = gap
                components.append(lambda level, s=successes, t=trials: gap_interval(s, t, level, "difference"))
        if gaps and (best is None or max(gaps.values()) > best[0]):
            best = (max(gaps.values()), k, gaps.get("tpr", float("nan")), gaps.get("fpr", float("nan")))
    if best is not None:
        value, k, tpr, fpr = best
        out_classes = len(table.classes)
        yield Check(
            # One class (binary): the TPR gap reads the positive rows, the FPR gap the negative ones, so they are independent.
            "equalized_odds_difference", CHECK_TITLES["equalized_odds_difference"], subject, value,
            max_of(components, independent=len(table.classes) == 1),
            options.odds_difference_medium, False, "medium",
            _method("difference", groups, 1, f", max of {len(components)} TPR/FPR gaps"
                    + (" (independent: lower ends and upper ends share the error)" if len(table.classes) == 1 else " each at the bonferroni level")), rows,
            lambda lo, hi, value=value, k=k, tpr=tpr, fpr=fpr: (
                f"largest gap between groups in true positive rate ({tpr:.3f}) or false positive rate ({fpr:.3f}) is "
                f"{value:.3f} [95% CI {lo:.3f}, {hi:.3f}]; above {options.odds_difference_medium:g} is medium, "
                f"above {options.odds_difference_high:g} high" + ctx_text(k)),
            {**details, "tpr_difference": tpr, "fpr_difference": fpr, "cls": class_names[k], "classes": out_classes,
             "thresholds": {"medium": options.odds_difference_medium, "high": options.odds_difference_high}},
            high=options.odds_difference_high,
        )
    found = _gap_over_classes(table, "tpr", "difference")
    if found is not None:
        value, k, interval, n_classes = found
        (top, top_rate), (bottom, bottom_rate) = _extremes(table, "tpr", k)
        yield Check(
            "equal_opportunity_difference", CHECK_TITLES["equal_opportunity_difference"], subject, value, interval,
            options.opportunity_difference_medium, False, "medium", _method("difference", groups, n_classes), rows,
            lambda lo, hi, value=value, k=k, top=top, bottom=bottom, tr=top_rate, br=bottom_rate: (
                f"true positive rate (recall) of {bottom} is {br:.3f} against {tr:.3f} for {top}: difference {value:.3f} "
                f"[95% CI {lo:.3f}, {hi:.3f}]; above {options.opportunity_difference_medium:g} is medium, "
                f"above {options.opportunity_difference_high:g} high" + ctx_text(k)),
            {**details, "highest_group": top, "lowest_group": bottom, "cls": class_names[k],
             "thresholds": {"medium": options.opportunity_difference_medium, "high": options.opportunity_difference_high}},
            high=options.opportunity_difference_high,
        )
    yield from _accuracy_checks(table, class_names, options, details, rows, groups)


def _accuracy_checks(table, class_names, options, details, rows, groups):
    subject = table.grouping.subject
    correct, trials = _judged_counts(table, "accuracy", None)
    (best_name, best_acc), (worst_name, worst_acc) = _extremes(table, "accuracy", None)
    worst_g = table.judged[int(np.argmin(correct / trials))]
    with _stats._quiet():
        recall = table.rates["tpr"][table.judged][:, table.classes]
        worst_recall = float(np.nanmin(recall)) if np.isfinite(recall).any() else None
    context = _context_text(table, options, True, class_names, None)
    yield Check(
        "worst_group_accuracy", CHECK_TITLES["worst_group_accuracy"], subject, worst_acc,
        lambda level, c=correct, t=trials: worst_group_interval(c, t, level),
        options.min_group_accuracy, True, "medium",
        "wilson: smallest lower bound (alpha/2), smallest upper bound (bonferroni alpha/G)", rows,
        lambda lo, hi: (
            f"lowest accuracy is {worst_acc:.3f}, in {worst_name} (n={int(table.n[worst_g])}) [95% CI {lo:.3f}, {hi:.3f}]; "
            f"below {options.min_group_accuracy:g} is medium"
            + (f"; worst-group recall {worst_recall:.3f}" if worst_recall is not None else "") + context),
        {**details, "group": worst_name, "worst_group_recall": worst_recall,
         "thresholds": {"medium_below": options.min_group_accuracy}},
    )
    gap = best_acc - worst_acc
    yield Check(
        "accuracy_gap", CHECK_TITLES["accuracy_gap"], subject, gap,
        lambda level, c=correct, t=trials: gap_interval(c, t, level, "difference"),
        options.accuracy_gap_medium, False, "medium", _method("difference", groups, 1), rows,
        lambda lo, hi: (
            f"accuracy {best_acc:.3f} in {best_name} against {worst_acc:.3f} in {worst_name}: gap {gap:.3f} "
            f"[95% CI {lo:.3f}, {hi:.3f}]; above {options.accuracy_gap_medium:g} is medium, "
            f"above {options.accuracy_gap_high:g} high" + context),
        {**details, "best_group": best_name, "worst_group": worst_name,
         "thresholds": {"medium": options.accuracy_gap_medium, "high": options.accuracy_gap_high}},
        high=options.accuracy_gap_high,
    )


def _test_interval(effect: float, p_value: float, sd: float | None = None):
    """A permutation test as a family member: at level 1 - alpha its "interval" reaches down to the effect when
    the test rejects independence at alpha, else to 0; it reaches up to the effect plus z standard deviations of
    its bootstrap (``sd``), or to the effect itself when there is none. So it fails only when the dependence is
    significant at the corrected level and its size exceeds the threshold, passes only when even the upper end
    lies within the threshold, and is inconclusive otherwise. No coverage is claimed: the finding stores no
    interval."""
    def interval(level: float) -> tuple[float, float]:
        upper = effect if sd is None else effect + stats.z_value(level) * sd
        return (effect if p_value <= 1.0 - level else 0.0), upper
    return interval


def _dcov_check(table, probs, binary, rng, options, details):
    grouping = table.grouping
    subject = grouping.subject
    n = len(grouping.codes)
    # Rows of small groups stay in: dCov judges the dependence over the whole data, not per group.
    index = toolkit.subsample(n, options.dcov_max_rows, rng)
    subsampled = index is not None
    if not subsampled:
        index = np.arange(n)
    scores = probs[index, 1:2] if binary else probs[index]
    if grouping.raw is not None and grouping.n_groups > 2:
        result = _stats.distance_covariance(scores, grouping.raw[index], rng, options.dcov_permutations, resamples=options.dcor_resamples)
        kind = "raw numeric values" if grouping.binned else "numeric values"
    else:  # categories, and two-valued numbers (same statistic up to scale, cheaper)
        codes = np.unique(grouping.codes[index], return_inverse=True)[1]
        result = _stats.distance_covariance(scores, None, rng, options.dcov_permutations, codes=codes, resamples=options.dcor_resamples)
        kind = "one-hot group codes"
    # The spread of dCor over row resamples: a pass needs the dependence shown small, not a point estimate below the bar.
    dcor, p_value, dcor_sd = result["dcor"], result["p_value"], result["dcor_sd"]
    sample_text = (f"on a seeded random subsample of {len(index)} of {n} rows (the distance matrices are O(n^2))"
                   if subsampled else f"on all {n} rows")
    return Check(
        "distance_covariance", CHECK_TITLES["distance_covariance"], subject, dcor, _test_interval(dcor, p_value, dcor_sd),
        options.dcor_threshold, False, "medium", f"permutation test ({options.dcov_permutations} permutations)", int(len(index)),
        lambda lo, hi: (
            f"distance correlation {dcor:.3f} between the model's scores and {subject} (distance covariance "
            f"{result['dcov']:.4g}, p = {p_value:.3g} from {options.dcov_permutations} permutations{'' if result['p_method'] == 'permutation' else ', chi-square(1) bound beyond them'}), {sample_text}; "
            f"medium when above {options.dcor_threshold:g} and significant. Unlike a correlation, it also catches nonlinear dependence"),
        {**details, "dcov": result["dcov"], "dcov2": result["dcov2"], "dcor": dcor, "dcor_bootstrap_sd": dcor_sd,
         "dcor_resamples": options.dcor_resamples, "p_value": p_value,
         "p_method": result["p_method"], "permutations": options.dcov_permutations, "rows_used": int(len(index)), "rows_total": int(n),
         "subsampled": bool(subsampled), "attribute_encoding": kind, "thresholds": {"dcor": options.dcor_threshold}},
        is_test=True,
    )


def _pairwise_js(hist: np.ndarray) -> np.ndarray:
    """JS divergence (bits) between every pair of rows of a (..., G, bins) histogram array."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hist / hist.sum(axis=-1, keepdims=True)
        a = p[..., :, None, :]
        b = p[..., None, :, :]
        m = (a + b) / 2
        kl_a = np.where(a > 0, a * np.log2(a / m), 0.0).sum(axis=-1)
        kl_b = np.where(b > 0, b * np.log2(b / m), 0.0).sum(axis=-1)
    return np.clip((kl_a + kl_b) / 2, 0.0, None)


def _largest_pairwise_js(draws: np.ndarray, bins: int) -> np.ndarray:
    """The largest pairwise JS divergence of each draw of group histograms (draws, G, bins)."""
    # A few draws per array op keeps (draws, G, G, bins) small when there are many groups.
    step = max(1, 2_000_000 // max(draws.shape[1] ** 2 * bins, 1))
    return np.concatenate([
        _pairwise_js(draws[s : s + step].astype(np.float64)).reshape(len(draws[s : s + step]), -1).max(axis=1)
        for s in range(0, len(draws), step)
    ])


def _js_check(table, probs, class_names, binary, rng, options, details):
    grouping = table.grouping
    judged = table.judged
    best = None
    for k in table.classes:
        hist = _stats.score_histograms(probs[:, k], grouping.codes, grouping.n_groups, options.js_bins)[judged]
        js = _pairwise_js(hist)
        i, j = np.unravel_index(int(np.argmax(js)), js.shape)
        value = float(js[i, j])
        if best is None or value > best[0]:
            # Chance level: the same group sizes drawn from the pooled distribution.
            sizes = hist.sum(axis=1)
            pooled = hist.sum(axis=0) / hist.sum()
            null = np.stack([rng.multinomial(int(n), pooled, size=options.js_null_draws) for n in sizes], axis=1)
            null_max = _largest_pairwise_js(null, options.js_bins)
            p_value, p_method = _stats.permutation_p_value(value, null_max)
            # Its spread: each group's rows resampled (a multinomial on its own histogram), so a pass rests on more
            # than a point estimate below the bar.
            resampled = np.stack([rng.multinomial(int(n), h / max(n, 1), size=options.js_null_draws) for n, h in zip(sizes, hist)], axis=1)
            spread = float(np.std(_largest_pairwise_js(resampled, options.js_bins), ddof=1))
            best = (value, k, judged[i], judged[j], float(np.quantile(null_max, 0.95)), p_value, p_method, spread)
    value, k, gi, gj, chance, p_value, p_method, spread = best
    shown = grouping.shown
    return Check(
        "score_js_divergence", CHECK_TITLES["score_js_divergence"], grouping.subject, value, _test_interval(value, p_value, spread),
        options.js_medium, False, "medium", f"draws from the pooled distribution ({options.js_null_draws})",
        int(table.n[judged].sum()),
        lambda lo, hi: (
            f"largest Jensen-Shannon divergence between groups' score distributions is {value:.3f} bits "
            f"({shown[gi]} vs {shown[gj]}, {options.js_bins} bins; 0 = identical, 1 = disjoint); chance level for these "
            f"group sizes {chance:.3f} (95th percentile, p = {p_value:.3g}); above {options.js_medium:g} is medium, "
            f"above {options.js_high:g} high, when also significant" + _context_text(table, options, binary, class_names, k)),
        {**details, "pair": [grouping.names[gi], grouping.names[gj]], "chance_95": chance, "p_value": p_value, "p_method": p_method,
         "js_resample_sd": spread,
         "bins": options.js_bins, "cls": class_names[k], "thresholds": {"medium": options.js_medium, "high": options.js_high}},
        high=options.js_high, is_test=True,
    )
