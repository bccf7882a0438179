"""Group fairness: per-group rates from one bincount, multinomial bootstrap, parity gaps, dCov, JS."""

from __future__ import annotations

import itertools

import numpy as np

import audit
from audit import stats, toolkit

from . import _stats
from ._grading import not_judged

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
    singles = [_stats.group_attribute(n, data.attributes[n], options.max_categories, options.numeric_bins) for n in names]
    pairs = []
    if options.intersections:
        for a, b in itertools.combinations(singles, 2):
            pairs.append(_stats.intersect(a, b))
    return singles + pairs


class GroupTable:
    """Everything measured for one grouping: counts, rates, bootstrap replicates, per reported class."""

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
        boot = _stats.rates_from_cells(_stats.bootstrap_cells(cells, rng, options.n_bootstrap), self.has_labels)
        self.rates = {k: v for k, v in rates.items() if k != "n"}
        self.boot = {k: v for k, v in boot.items() if k != "n"}
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

    def replicates(self, metric, k):
        """Bootstrap replicates (B, G) of a metric for class k."""
        if metric == "mean_score":
            return self.boot_mean_score[:, :, k]
        if metric == "accuracy":
            return self.boot["accuracy"]
        return self.boot[metric][:, :, k]


def _spread(values: np.ndarray, groups: np.ndarray, kind: str):
    """max - min (or min / max) over the judged groups; NaN-aware, on the last axis."""
    v = values[..., groups]
    with np.errstate(invalid="ignore", divide="ignore"), _stats._quiet():
        hi = np.nanmax(v, axis=-1)
        lo = np.nanmin(v, axis=-1)
        if kind == "difference":
            return hi - lo
        return np.where(hi > 0, lo / hi, 1.0)


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
        ctx.note(f"{n_classes} classes: rates are one-vs-rest per class; each aggregate finding reports its worst class")
    rng = ctx.rng
    for grouping in groupings(ctx.data, options):
        if grouping.binned:
            ctx.note(grouping.binned)
        table = GroupTable(grouping, probs, predicted, y, classes, rng, options)
        yield from _group_metrics(table, class_names, binary, options)
        yield from _findings(table, probs, class_names, binary, rng, options)
        if grouping.n_groups <= options.max_plot_groups:
            from ._figures import group_bars, score_distributions

            primary = _primary_class(table, binary)
            yield audit.Figure(
                f"group_rates:{grouping.subject}", f"Rates per group: {grouping.subject}",
                group_bars(table, primary, class_names[primary], binary),
                caption=(f"Per-group rates with bootstrap 95% intervals ({options.n_bootstrap} resamples). "
                         f"Hatched grey bars: groups under {options.min_group_size} rows, not judged."
                         + ("" if binary else f" Class shown: {class_names[primary]} (largest parity gap)")),
                subject=grouping.subject,
            )
            yield audit.Figure(
                f"score_distributions:{grouping.subject}", f"Score distributions: {grouping.subject}",
                score_distributions(probs[:, primary], grouping, table.small, class_names[primary]),
                caption=f"Distribution of the model's probability for class {class_names[primary]} in each group.",
                subject=grouping.subject,
            )


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
            reps = table.replicates(metric, k)
            lower_q[metric, k], upper_q[metric, k] = stats.percentile_interval(reps, axis=0)
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


def _worst(table, metric, kind, worst="max"):
    """(value, class index, bootstrap interval) of a spread over judged groups, worst over classes."""
    best = None
    for k in table.classes:
        value = float(_spread(table.rates[metric][:, k], table.judged, kind))
        if not np.isfinite(value):
            continue
        if best is None or (value > best[0] if worst == "max" else value < best[0]):
            reps = _spread(table.replicates(metric, k), table.judged, kind)
            lo, hi = stats.percentile_interval(reps)
            best = (value, k, float(lo), float(hi))
    return best


def _extreme_groups(table, metric, k):
    values = table.rates[metric][table.judged, k] if metric != "accuracy" else table.rates["accuracy"][table.judged]
    with _stats._quiet():
        hi = table.judged[int(np.nanargmax(values))]
        lo = table.judged[int(np.nanargmin(values))]
    names = table.grouping.names
    return names[hi], names[lo]


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


def _findings(table, probs, class_names, binary, rng, options):
    subject = table.grouping.subject
    base_details = {
        "groups": {name: int(n) for name, n in zip(table.grouping.names, table.n)},
        "excluded_small_groups": _excluded(table, options),
        "min_group_size": options.min_group_size,
        "binned": table.grouping.binned,
    }
    enough = len(table.judged) >= 2
    checks = [
        ("demographic_parity_difference", "Demographic parity difference"),
        ("demographic_parity_ratio", "Demographic parity ratio (four-fifths rule)"),
    ]
    if table.has_labels:
        checks += [
            ("equalized_odds_difference", "Equalized odds difference"),
            ("equal_opportunity_difference", "Equal opportunity difference"),
            ("worst_group_accuracy", "Worst-group accuracy"),
            ("accuracy_gap", "Accuracy gap between groups"),
        ]
    if not enough:
        for check, title in checks + [("distance_covariance", "Distance covariance of scores and attribute"),
                                      ("score_js_divergence", "Jensen-Shannon divergence of group score distributions")]:
            yield not_judged(check, title, subject, len(table.judged), options.min_group_size, base_details)
        return

    def details(**extra):
        return {**base_details, **extra}

    # Demographic parity.
    value, k, lo, hi = _worst(table, "selection_rate", "difference")
    top, bottom = _extreme_groups(table, "selection_rate", k)
    yield audit.Finding.graded(
        "demographic_parity_difference", "Demographic parity difference", value, medium=options.parity_difference_medium, high=options.parity_difference_high, subject=subject,
        message=(f"selection rate ranges from {table.rates['selection_rate'][:, k][_index(table, bottom)]:.3f} ({bottom}) to "
                 f"{table.rates['selection_rate'][:, k][_index(table, top)]:.3f} ({top}): difference {value:.3f} "
                 f"[95% CI {lo:.3f}, {hi:.3f}]; above {options.parity_difference_medium:g} is medium, above {options.parity_difference_high:g} high"
                 + _context_text(table, options, binary, class_names, k)),
        details=details(ci=[lo, hi], highest_group=top, lowest_group=bottom, cls=class_names[k],
                        thresholds={"medium": options.parity_difference_medium, "high": options.parity_difference_high}),
    )
    value, k, lo, hi = _worst(table, "selection_rate", "ratio", worst="min")
    top, bottom = _extreme_groups(table, "selection_rate", k)
    yield audit.Finding.against_limit(
        "demographic_parity_ratio", "Demographic parity ratio (four-fifths rule)", value, severity=audit.Severity.HIGH,
        floor=options.parity_ratio_min, subject=subject,
        message=(f"lowest selection rate ({bottom}) is {value:.3f} of the highest ({top}) [95% CI {lo:.3f}, {hi:.3f}]; "
                 f"the four-fifths rule asks for at least {options.parity_ratio_min:g} (below it is high)"
                 + _context_text(table, options, binary, class_names, k)),
        details=details(ci=[lo, hi], highest_group=top, lowest_group=bottom, cls=class_names[k],
                        thresholds={"high_below": options.parity_ratio_min}),
    )
    if table.has_labels:
        yield from _error_rate_findings(table, class_names, binary, options, details)
    yield _dcov_finding(table, probs, binary, rng, options, details)
    yield _js_finding(table, probs, class_names, binary, rng, options, details)


def _index(table, name):
    return table.grouping.names.index(name)


def _error_rate_findings(table, class_names, binary, options, details):
    """Equalized odds and equal opportunity (labels needed), then worst-group accuracy and the accuracy gap."""
    yield from _equalized_odds_finding(table, class_names, binary, options, details)
    yield from _equal_opportunity_finding(table, class_names, binary, options, details)
    yield from _accuracy_findings(table, class_names, options, details)


def _equalized_odds_finding(table, class_names, binary, options, details):
    subject = table.grouping.subject
    # Equalized odds: the larger of the TPR and FPR spreads, worst class.
    best = None
    for k in table.classes:
        tpr = float(_spread(table.rates["tpr"][:, k], table.judged, "difference"))
        fpr = float(_spread(table.rates["fpr"][:, k], table.judged, "difference"))
        value = np.nanmax([tpr, fpr])
        if np.isfinite(value) and (best is None or value > best[0]):
            reps = np.fmax(_spread(table.replicates("tpr", k), table.judged, "difference"),
                           _spread(table.replicates("fpr", k), table.judged, "difference"))
            lo, hi = stats.percentile_interval(reps)
            best = (float(value), k, tpr, fpr, float(lo), float(hi))
    if best is not None:
        value, k, tpr, fpr, lo, hi = best
        yield audit.Finding.graded(
            "equalized_odds_difference", "Equalized odds difference", value, medium=options.odds_difference_medium, high=options.odds_difference_high, subject=subject,
            message=(f"largest gap between groups in TPR ({tpr:.3f}) or FPR ({fpr:.3f}) is {value:.3f} [95% CI {lo:.3f}, {hi:.3f}]; "
                     f"above {options.odds_difference_medium:g} is medium, above {options.odds_difference_high:g} high"
                     + _context_text(table, options, binary, class_names, k)),
            details=details(ci=[lo, hi], tpr_difference=tpr, fpr_difference=fpr, cls=class_names[k],
                            thresholds={"medium": options.odds_difference_medium, "high": options.odds_difference_high}),
        )


def _equal_opportunity_finding(table, class_names, binary, options, details):
    subject = table.grouping.subject
    found = _worst(table, "tpr", "difference")
    if found is not None:
        value, k, lo, hi = found
        top, bottom = _extreme_groups(table, "tpr", k)
        yield audit.Finding.graded(
            "equal_opportunity_difference", "Equal opportunity difference", value, medium=options.opportunity_difference_medium, high=options.opportunity_difference_high, subject=subject,
            message=(f"true positive rate (recall) ranges over groups by {value:.3f} [95% CI {lo:.3f}, {hi:.3f}], "
                     f"lowest in {bottom}, highest in {top}; above {options.opportunity_difference_medium:g} is medium, "
                     f"above {options.opportunity_difference_high:g} high" + _context_text(table, options, binary, class_names, k)),
            details=details(ci=[lo, hi], highest_group=top, lowest_group=bottom, cls=class_names[k],
                            thresholds={"medium": options.opportunity_difference_medium, "high": options.opportunity_difference_high}),
        )


def _accuracy_findings(table, class_names, options, details):
    subject = table.grouping.subject
    accuracy = table.rates["accuracy"]
    judged = table.judged
    worst_g = judged[int(np.nanargmin(accuracy[judged]))]
    best_g = judged[int(np.nanargmax(accuracy[judged]))]
    worst_acc = float(accuracy[worst_g])
    reps = table.boot["accuracy"][:, judged]
    with _stats._quiet():
        lo, hi = stats.percentile_interval(np.nanmin(reps, axis=1))
        gap_lo, gap_hi = stats.percentile_interval(np.nanmax(reps, axis=1) - np.nanmin(reps, axis=1))
        recall = table.rates["tpr"][judged][:, table.classes]
        worst_recall = float(np.nanmin(recall)) if np.isfinite(recall).any() else None
    names = table.grouping.names
    yield audit.Finding.against_limit(
        "worst_group_accuracy", "Worst-group accuracy", worst_acc, severity=audit.Severity.MEDIUM,
        floor=options.min_group_accuracy, subject=subject,
        message=(f"lowest accuracy is {worst_acc:.3f} in group {names[worst_g]} (n={int(table.n[worst_g])}) "
                 f"[95% CI {float(lo):.3f}, {float(hi):.3f}]; below {options.min_group_accuracy:g} is medium"
                 + (f"; worst-group recall {worst_recall:.3f}" if worst_recall is not None else "")
                 + _context_text(table, options, True, class_names, None)),
        details=details(ci=[float(lo), float(hi)], group=names[worst_g], worst_group_recall=worst_recall,
                        thresholds={"medium_below": options.min_group_accuracy}),
    )
    gap = float(accuracy[best_g] - accuracy[worst_g])
    yield audit.Finding.graded(
        "accuracy_gap", "Accuracy gap between groups", gap, medium=options.accuracy_gap_medium, high=options.accuracy_gap_high, subject=subject,
        message=(f"accuracy {accuracy[best_g]:.3f} in {names[best_g]} against {accuracy[worst_g]:.3f} in {names[worst_g]}: "
                 f"gap {gap:.3f} [95% CI {float(gap_lo):.3f}, {float(gap_hi):.3f}]; above {options.accuracy_gap_medium:g} is medium, "
                 f"above {options.accuracy_gap_high:g} high" + _context_text(table, options, True, class_names, None)),
        details=details(ci=[float(gap_lo), float(gap_hi)], best_group=names[best_g], worst_group=names[worst_g],
                        thresholds={"medium": options.accuracy_gap_medium, "high": options.accuracy_gap_high}),
    )


def _dcov_finding(table, probs, binary, rng, options, details):
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
        result = _stats.distance_covariance(scores, grouping.raw[index], rng, options.dcov_permutations)
        kind = "raw numeric values" if grouping.binned else "numeric values"
    else:  # categories, and two-valued numbers (same statistic up to scale, cheaper)
        codes = np.unique(grouping.codes[index], return_inverse=True)[1]
        result = _stats.distance_covariance(scores, None, rng, options.dcov_permutations, codes=codes)
        kind = "one-hot group codes"
    dcor, p_value = result["dcor"], result["p_value"]
    significant = p_value < options.dcov_alpha
    passed = not (significant and dcor > options.dcor_threshold)
    sample_text = (f"on a seeded random subsample of {len(index)} of {n} rows (the distance matrices are O(n^2))"
                   if subsampled else f"on all {n} rows")
    return audit.Finding(
        check="distance_covariance", title="Distance covariance of scores and attribute",
        severity=audit.Severity.MEDIUM, passed=passed,
        value=dcor, threshold=options.dcor_threshold, subject=subject,
        message=(f"distance correlation {dcor:.3f} between the model's scores and {subject} (distance covariance "
                 f"{result['dcov']:.4g}, permutation p = {p_value:.3g} from {options.dcov_permutations} permutations), {sample_text}; "
                 f"medium when p < {options.dcov_alpha:g} and distance correlation above {options.dcor_threshold:g}. "
                 "Unlike a correlation, it also catches nonlinear dependence."),
        details=details(dcov=result["dcov"], dcov2=result["dcov2"], dcor=dcor, p_value=p_value,
                        permutations=options.dcov_permutations, rows_used=int(len(index)), rows_total=int(n),
                        subsampled=bool(subsampled), attribute_encoding=kind,
                        thresholds={"alpha": options.dcov_alpha, "dcor": options.dcor_threshold}),
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


def _js_finding(table, probs, class_names, binary, rng, options, details):
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
            pooled = hist.sum(axis=0) / hist.sum()
            null = np.stack([rng.multinomial(int(n), pooled, size=options.js_null_draws) for n in hist.sum(axis=1)], axis=1)
            # A few draws per array op keeps (draws, G, G, bins) small when there are many groups.
            step = max(1, 2_000_000 // max(len(judged) ** 2 * options.js_bins, 1))
            null_max = np.concatenate([
                _pairwise_js(null[i : i + step].astype(np.float64)).reshape(len(null[i : i + step]), -1).max(axis=1)
                for i in range(0, options.js_null_draws, step)
            ])
            best = (value, k, judged[i], judged[j], float(np.quantile(null_max, 0.95)))
    value, k, gi, gj, chance = best
    names = grouping.names
    # Below chance level the divergence is noise: it passes whatever its size (still graded medium, the rule for a pass).
    return audit.Finding.graded(
        "score_js_divergence", "Jensen-Shannon divergence of group score distributions", value,
        medium=options.js_medium, high=options.js_high, by=0.0 if value <= chance else value, subject=grouping.subject,
        message=(f"largest Jensen-Shannon divergence between groups' score distributions is {value:.3f} bits "
                 f"({names[gi]} vs {names[gj]}, {options.js_bins} bins; 0 = identical, 1 = disjoint); chance level for these "
                 f"group sizes {chance:.3f} (95th percentile); above {options.js_medium:g} is medium, above {options.js_high:g} high, "
                 "when also above chance" + _context_text(table, options, binary, class_names, k)),
        details=details(pair=[names[gi], names[gj]], chance_95=chance, bins=options.js_bins, cls=class_names[k],
                        thresholds={"medium": options.js_medium, "high": options.js_high}),
    )
