"""robustness.calibration: ECE and reliability diagram, Brier score, risk-coverage curve and AURC."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import audit

from . import _figures

COVERAGES = (0.8, 0.9, 0.95)


def bin_statistics(confidence: np.ndarray, correct: np.ndarray, n_bins: int, binning: str = "width"):
    """Per-bin (edges, accuracy, mean confidence, count); bins are (low, high], the first one [0, high]."""
    if binning == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:  # equal mass: quantiles of the confidences
        edges = np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        edges = np.maximum.accumulate(edges)
    which = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(float)
    hits = np.bincount(which, weights=correct.astype(float), minlength=n_bins)
    confidence_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, hits / count, 0.0)
        mean_confidence = np.where(count > 0, confidence_sum / count, 0.0)
    return edges, accuracy, mean_confidence, count


def brier_score(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of sum over classes of (p - onehot)^2 (0 best, 2 worst)."""
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def risk_coverage(confidence: np.ndarray, correct: np.ndarray):
    """(coverage, selective risk) answering the k most confident rows, k = 1..N, and the area under it."""
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(~correct[order])
    answered = np.arange(1, len(order) + 1)
    risk = errors / answered
    coverage = answered / len(order)
    return coverage, risk, float(risk.mean())


def risk_at_coverage(risk: np.ndarray, level: float) -> float:
    k = max(1, int(math.ceil(level * len(risk) - 1e-9)))
    return float(risk[k - 1])


ECE_TOLERANCE = 0.002  # Monte Carlo error allowed on the ends of the ECE and Brier intervals
MAX_REPLICATES = 16_000
SUB_BINS = 64  # cells per confidence bin in the ECE bootstrap


def ece_interval(confidence, correct, edges, rng, level: float = 0.95) -> dict:
    """Bias-corrected ECE and its bootstrap interval.

    Rows are resampled as a multinomial over cells (confidence bin x 64 sub-bins x
    right/wrong) holding each cell's exact sum of confidences, so a replicate costs the
    same at 10^3 and 10^7 rows and loses only the spread of confidences inside a
    1/64-bin cell. The bin edges stay fixed (the ECE is defined for these bins).

    The plug-in ECE is biased upward, most at small n: each bin's |accuracy - mean
    confidence| absorbs its sampling noise, so even a perfectly calibrated model scores
    about sqrt(2 / pi) * sum_b (n_b / n) sqrt(p_b (1 - p_b) / n_b) > 0. The bootstrap
    measures that bias (mean replicate minus the estimate); the corrected estimate is the
    plug-in minus the bias, floored at 0, and its interval the replicates' percentile
    interval moved down by twice the bias (onto the corrected estimate), lower end floored
    at 0. Replicates double from 1000 until both ends' Monte Carlo error is below
    ``ECE_TOLERANCE``.
    """
    from audit import stats

    n = len(confidence)
    n_bins = len(edges) - 1
    which = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
    width = np.maximum(edges[which + 1] - edges[which], 1e-12)
    sub = np.clip(((confidence - edges[which]) / width * SUB_BINS).astype(np.int64), 0, SUB_BINS - 1)
    cell = (which * SUB_BINS + sub) * 2 + correct.astype(np.int64)
    n_cells = n_bins * SUB_BINS * 2
    counts = np.bincount(cell, minlength=n_cells).astype(float)
    used = np.flatnonzero(counts)
    counts = counts[used]
    confidence_sum = np.bincount(cell, weights=confidence, minlength=n_cells)[used]
    cell_mean = confidence_sum / counts
    cell_bin = used // (2 * SUB_BINS)
    cell_correct = (used % 2).astype(float)
    to_bins = np.zeros((used.size, n_bins))
    to_bins[np.arange(used.size), cell_bin] = 1.0
    # Per replicate: ECE = sum over bins |hits - confidence sum| / n.
    signed = to_bins * (cell_correct - cell_mean)[:, None]
    estimate = float(np.abs(counts @ signed).sum() / n)
    n_boot, draws = 1000, []
    while True:
        extra = n_boot - sum(len(d) for d in draws)
        draws.append(np.abs(rng.multinomial(n, counts / n, size=extra) @ signed).sum(axis=1) / n)
        replicates = np.concatenate(draws)
        lower, upper, error = stats.percentile_interval_with_error(replicates, level)
        if error <= ECE_TOLERANCE or n_boot >= MAX_REPLICATES:
            break
        n_boot *= 2
    bias = float(replicates.mean() - estimate)
    corrected = max(0.0, estimate - bias)
    return {"plug_in": estimate, "estimate": corrected, "lower": max(0.0, lower - 2 * bias),
            "upper": max(corrected, upper - 2 * bias), "bias": bias, "replicates": n_boot, "monte_carlo_error": error,
            "method": "bias-corrected percentile bootstrap (multinomial over confidence cells)"}


def _brier_interval(per_row, rng, level: float):
    """Percentile bootstrap interval of the mean per-row Brier score, replicates doubled to the tolerance."""
    from audit import stats

    n_boot, draws = 1000, []
    while True:
        draws.append(stats.bootstrap_means(per_row, rng, n_boot - sum(len(d) for d in draws)))
        lower, upper, error = stats.percentile_interval_with_error(np.concatenate(draws), level)
        if error <= ECE_TOLERANCE or n_boot >= MAX_REPLICATES:
            return lower, upper, n_boot, error
        n_boot *= 2


@dataclass
class Calibration:
    """What robustness.calibration measures on the clean predictions: one row of numbers, no verdicts."""

    n: int
    edges: np.ndarray
    bin_accuracy: np.ndarray
    bin_confidence: np.ndarray
    bin_count: np.ndarray
    ece: float
    max_gap: float
    brier: float
    brier_reference: float
    nll: float
    coverage: np.ndarray
    risk: np.ndarray
    aurc: float
    risks: dict[float, float]
    error: float
    mean_confidence: float
    errors_at: dict[float, tuple[int, int]]  # coverage -> (errors, rows answered)
    ece_bootstrap: dict  # bias-corrected ECE, its interval, the bootstrap's bias, replicates and Monte Carlo error
    brier_interval: tuple[float, float, int, float]  # lower, upper, replicates, Monte Carlo error


def measure(ctx, options) -> Calibration:
    probabilities = ctx.predictions
    y = np.asarray(ctx.data.y, dtype=np.int64)
    n = len(y)
    confidence = probabilities.max(axis=1)
    correct = audit.predicted_classes(probabilities) == y
    edges, bin_accuracy, bin_confidence, bin_count = bin_statistics(confidence, correct, options.bins, options.binning)
    frequencies = np.bincount(y, minlength=probabilities.shape[1]) / n
    coverage, risk, aurc = risk_coverage(confidence, correct)
    order = np.argsort(-confidence, kind="stable")
    answered = {level: max(1, int(math.ceil(level * n - 1e-9))) for level in COVERAGES}
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(n), y] = 1.0
    per_row_brier = np.sum((probabilities - onehot) ** 2, axis=1)
    return Calibration(
        n=n, edges=edges, bin_accuracy=bin_accuracy, bin_confidence=bin_confidence, bin_count=bin_count,
        ece=float(np.sum(bin_count / n * np.abs(bin_accuracy - bin_confidence))),
        max_gap=float(np.max(np.abs(bin_accuracy - bin_confidence)[bin_count > 0])),
        brier=brier_score(probabilities, y),
        brier_reference=brier_score(np.broadcast_to(frequencies, probabilities.shape), y),
        nll=float(-np.mean(np.log(np.clip(probabilities[np.arange(n), y], 1e-12, None)))),
        coverage=coverage, risk=risk, aurc=aurc,
        risks={level: risk_at_coverage(risk, level) for level in COVERAGES},
        error=float(1.0 - correct.mean()),
        mean_confidence=float(confidence.mean()),
        errors_at={level: (int((~correct[order[:k]]).sum()), k) for level, k in answered.items()},
        ece_bootstrap=ece_interval(confidence, correct, edges, ctx.rng, options.level),
        brier_interval=_brier_interval(per_row_brier, ctx.rng, options.level),
    )


def metrics(m: Calibration, options):
    ece = m.ece_bootstrap
    brier_lower, brier_upper, brier_replicates, brier_error = m.brier_interval
    yield audit.Metric("expected_calibration_error", m.ece, count=m.n, details={"bins": options.bins, "binning": options.binning})
    yield audit.Metric("expected_calibration_error_corrected", ece["estimate"], count=m.n, lower=ece["lower"], upper=ece["upper"],
                       details={k: v for k, v in ece.items() if k not in ("estimate", "lower", "upper")} | {"level": options.level})
    yield audit.Metric("maximum_calibration_error", m.max_gap, count=m.n)
    yield audit.Metric("brier_score", m.brier, count=m.n, lower=brier_lower, upper=brier_upper,
                       details={"interval": "percentile bootstrap of the mean per-row score", "replicates": brier_replicates,
                                "monte_carlo_error": brier_error, "level": options.level})
    yield audit.Metric("negative_log_likelihood", m.nll, count=m.n)
    yield audit.Metric("aurc", m.aurc, count=m.n)
    from audit import stats

    for level, value in m.risks.items():
        errors, answered = m.errors_at[level]
        lower, upper = stats.wilson(errors, answered, options.level)
        yield audit.Metric("selective_risk", value, group=f"{level:.0%} coverage", count=answered, lower=lower, upper=upper,
                           details={"interval": "wilson", "level": options.level})
        yield audit.Metric("selective_accuracy", 1.0 - value, group=f"{level:.0%} coverage", count=answered,
                           lower=1.0 - upper, upper=1.0 - lower, details={"interval": "wilson", "level": options.level})


def findings(m: Calibration, options):
    from audit import stats

    direction = "over-confident" if m.mean_confidence > 1 - m.error else "under-confident"
    ece = m.ece_bootstrap
    yield audit.Finding.judged(
        "expected_calibration_error", "Expected calibration error", ece["estimate"], ece["lower"], ece["upper"],
        severity=audit.Severity.MEDIUM, ceiling=options.max_ece, level=options.level, method=ece["method"], rows=m.n,
        min_rows=options.min_rows, subject=f"{options.bins} {'equal-width' if options.binning == 'width' else 'equal-mass'} bins",
        message=(
            f"confidence and accuracy differ by {ece['estimate']:.3f} on average over {options.bins} bins "
            f"[{options.level:.0%} CI {ece['lower']:.3f}, {ece['upper']:.3f}] (allowed {options.max_ece:g}; plug-in {m.ece:.3f} "
            f"less its bootstrap bias {ece['bias']:.3f}); mean confidence {m.mean_confidence:.3f} against accuracy "
            f"{1 - m.error:.3f}: {direction} overall; worst bin gap {m.max_gap:.3f}"
        ),
        details={"plug_in_ece": m.ece, "bias": ece["bias"], "replicates": ece["replicates"],
                 "monte_carlo_error": ece["monte_carlo_error"], "bin_edges": m.edges.tolist(),
                 "bin_accuracy": m.bin_accuracy.tolist(), "bin_confidence": m.bin_confidence.tolist(),
                 "bin_count": m.bin_count.astype(int).tolist()},
    )
    brier_lower, brier_upper, brier_replicates, brier_error = m.brier_interval
    yield audit.Finding.judged(
        "brier_score", "Brier score", m.brier, brier_lower, brier_upper, severity=audit.Severity.MEDIUM,
        ceiling=options.max_brier if options.max_brier is not None else m.brier_reference, level=options.level,
        method="percentile bootstrap", rows=m.n, min_rows=options.min_rows,
        message=(
            f"mean squared error of the predicted probabilities {m.brier:.4f} [{options.level:.0%} CI {brier_lower:.4f}, "
            f"{brier_upper:.4f}] (multiclass definition, 0 best, 2 worst); "
            f"always predicting the class frequencies scores {m.brier_reference:.4f}"
            + ("" if options.max_brier is None else f"; allowed {options.max_brier:g}")
        ),
        details={"reference_class_frequencies": m.brier_reference, "negative_log_likelihood": m.nll,
                 "replicates": brier_replicates, "monte_carlo_error": brier_error},
    )
    allowed = options.max_selective_risk_at_90
    errors, answered = m.errors_at[0.9]
    risk_lower, risk_upper = stats.wilson(errors, answered, options.level)
    yield audit.Finding.judged(
        "selective_risk_at_90", "Error rate on the 90% most confident rows", m.risks[0.9], risk_lower, risk_upper,
        severity=audit.Severity.LOW, ceiling=allowed if allowed is not None else m.error, subject="90% coverage",
        level=options.level, method="wilson", rows=answered, min_rows=options.min_rows,
        message=(
            f"abstaining on the 10% least confident rows gives error {m.risks[0.9]:.3f} [{options.level:.0%} CI "
            f"{risk_lower:.3f}, {risk_upper:.3f}] against {m.error:.3f} answering all "
            + ("(confidence must not rank errors worse than chance)" if allowed is None else f"(allowed {allowed:g})")
            + f"; at 80% coverage {m.risks[0.8]:.3f}, at 95% {m.risks[0.95]:.3f}; AURC {m.aurc:.4f}"
        ),
        details={"aurc": m.aurc, "risk_at_coverage": {f"{k:.2f}": v for k, v in m.risks.items()}, "full_coverage_error": m.error,
                 "errors": errors, "interval_note": "wilson on the answered rows, the selection taken as given"},
    )


def figures(m: Calibration):
    yield audit.Figure(
        "reliability_diagram", "Reliability diagram",
        _figures.reliability_diagram(m.edges, m.bin_accuracy, m.bin_confidence, m.bin_count, m.ece),
        caption="Bars: accuracy per confidence bin; shaded: gap to the bin's mean confidence; the diagonal is perfect calibration. Bottom: rows per bin.",
    )
    yield audit.Figure(
        "risk_coverage", "Risk-coverage curve",
        _figures.risk_coverage(m.coverage, m.risk, m.aurc, m.risks),
        caption="Error rate when answering only the most confident share of rows; marked at 80, 90 and 95% coverage. Lower is better.",
    )


def run(analysis, ctx):
    """Measure, then judge and draw from the measurements."""
    measured = measure(ctx, analysis.options)
    yield from metrics(measured, analysis.options)
    yield from findings(measured, analysis.options)
    yield from figures(measured)
