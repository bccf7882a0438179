"""robustness.calibration: ECE and reliability diagram, Brier score, risk-coverage curve and AURC."""

from __future__ import annotations

import math

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


def run(analysis, ctx):
    o = analysis.options
    probabilities = ctx.predictions
    y = np.asarray(ctx.data.y, dtype=np.int64)
    n = len(y)
    confidence = probabilities.max(axis=1)
    correct = audit.predicted_classes(probabilities) == y
    edges, bin_accuracy, bin_confidence, bin_count = bin_statistics(confidence, correct, o.bins, o.binning)
    ece = float(np.sum(bin_count / n * np.abs(bin_accuracy - bin_confidence)))
    filled = bin_count > 0
    max_gap = float(np.max(np.abs(bin_accuracy - bin_confidence)[filled]))
    brier = brier_score(probabilities, y)
    frequencies = np.bincount(y, minlength=probabilities.shape[1]) / n
    brier_reference = brier_score(np.broadcast_to(frequencies, probabilities.shape), y)
    nll = float(-np.mean(np.log(np.clip(probabilities[np.arange(n), y], 1e-12, None))))
    coverage, risk, aurc = risk_coverage(confidence, correct)
    risks = {level: risk_at_coverage(risk, level) for level in COVERAGES}
    error = float(1.0 - correct.mean())

    yield audit.Metric("expected_calibration_error", ece, count=n, details={"bins": o.bins, "binning": o.binning})
    yield audit.Metric("maximum_calibration_error", max_gap, count=n)
    yield audit.Metric("brier_score", brier, count=n)
    yield audit.Metric("negative_log_likelihood", nll, count=n)
    yield audit.Metric("aurc", aurc, count=n)
    for level, value in risks.items():
        yield audit.Metric("selective_risk", value, group=f"{level:.0%} coverage")
        yield audit.Metric("selective_accuracy", 1.0 - value, group=f"{level:.0%} coverage")

    mean_confidence = float(confidence.mean())
    direction = "over-confident" if mean_confidence > 1 - error else "under-confident"
    yield audit.Finding(
        check="expected_calibration_error",
        title="Expected calibration error",
        severity=audit.Severity.MEDIUM,
        passed=ece <= o.max_ece,
        value=ece,
        threshold=o.max_ece,
        subject=f"{o.bins} {'equal-width' if o.binning == 'width' else 'equal-mass'} bins",
        message=(
            f"confidence and accuracy differ by {ece:.3f} on average over {o.bins} bins (allowed {o.max_ece:g}); "
            f"mean confidence {mean_confidence:.3f} against accuracy {1 - error:.3f}: {direction} overall; "
            f"worst bin gap {max_gap:.3f}"
        ),
        details={"bin_edges": edges.tolist(), "bin_accuracy": bin_accuracy.tolist(),
                 "bin_confidence": bin_confidence.tolist(), "bin_count": bin_count.astype(int).tolist()},
    )
    brier_threshold = o.max_brier if o.max_brier is not None else brier_reference
    yield audit.Finding(
        check="brier_score",
        title="Brier score",
        severity=audit.Severity.MEDIUM,
        passed=brier <= brier_threshold,
        value=brier,
        threshold=brier_threshold,
        message=(
            f"mean squared error of the predicted probabilities {brier:.4f} (multiclass definition, 0 best, 2 worst); "
            f"always predicting the class frequencies scores {brier_reference:.4f}"
            + ("" if o.max_brier is None else f"; allowed {o.max_brier:g}")
        ),
        details={"reference_class_frequencies": brier_reference, "negative_log_likelihood": nll},
    )
    risk_threshold = o.max_selective_risk_at_90 if o.max_selective_risk_at_90 is not None else error
    yield audit.Finding(
        check="selective_risk_at_90",
        title="Error rate on the 90% most confident rows",
        severity=audit.Severity.LOW,
        passed=risks[0.9] <= risk_threshold,
        value=risks[0.9],
        threshold=risk_threshold,
        subject="90% coverage",
        message=(
            f"abstaining on the 10% least confident rows gives error {risks[0.9]:.3f} against {error:.3f} answering all "
            + ("(confidence must not rank errors worse than chance)" if o.max_selective_risk_at_90 is None else f"(allowed {o.max_selective_risk_at_90:g})")
            + f"; at 80% coverage {risks[0.8]:.3f}, at 95% {risks[0.95]:.3f}; AURC {aurc:.4f}"
        ),
        details={"aurc": aurc, "risk_at_coverage": {f"{k:.2f}": v for k, v in risks.items()}, "full_coverage_error": error},
    )
    yield audit.Figure(
        "reliability_diagram", "Reliability diagram",
        _figures.reliability_diagram(edges, bin_accuracy, bin_confidence, bin_count, ece),
        caption="Bars: accuracy per confidence bin; shaded: gap to the bin's mean confidence; the diagonal is perfect calibration. Bottom: rows per bin.",
    )
    yield audit.Figure(
        "risk_coverage", "Risk-coverage curve",
        _figures.risk_coverage(coverage, risk, aurc, risks),
        caption="Error rate when answering only the most confident share of rows; marked at 80, 90 and 95% coverage. Lower is better.",
    )
