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


def measure(ctx, options) -> Calibration:
    probabilities = ctx.predictions
    y = np.asarray(ctx.data.y, dtype=np.int64)
    n = len(y)
    confidence = probabilities.max(axis=1)
    correct = audit.predicted_classes(probabilities) == y
    edges, bin_accuracy, bin_confidence, bin_count = bin_statistics(confidence, correct, options.bins, options.binning)
    frequencies = np.bincount(y, minlength=probabilities.shape[1]) / n
    coverage, risk, aurc = risk_coverage(confidence, correct)
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
    )


def metrics(m: Calibration, options):
    yield audit.Metric("expected_calibration_error", m.ece, count=m.n, details={"bins": options.bins, "binning": options.binning})
    yield audit.Metric("maximum_calibration_error", m.max_gap, count=m.n)
    yield audit.Metric("brier_score", m.brier, count=m.n)
    yield audit.Metric("negative_log_likelihood", m.nll, count=m.n)
    yield audit.Metric("aurc", m.aurc, count=m.n)
    for level, value in m.risks.items():
        yield audit.Metric("selective_risk", value, group=f"{level:.0%} coverage")
        yield audit.Metric("selective_accuracy", 1.0 - value, group=f"{level:.0%} coverage")


def findings(m: Calibration, options):
    direction = "over-confident" if m.mean_confidence > 1 - m.error else "under-confident"
    yield audit.Finding.against_limit(
        "expected_calibration_error", "Expected calibration error", m.ece, severity=audit.Severity.MEDIUM, ceiling=options.max_ece,
        subject=f"{options.bins} {'equal-width' if options.binning == 'width' else 'equal-mass'} bins",
        message=(
            f"confidence and accuracy differ by {m.ece:.3f} on average over {options.bins} bins (allowed {options.max_ece:g}); "
            f"mean confidence {m.mean_confidence:.3f} against accuracy {1 - m.error:.3f}: {direction} overall; "
            f"worst bin gap {m.max_gap:.3f}"
        ),
        details={"bin_edges": m.edges.tolist(), "bin_accuracy": m.bin_accuracy.tolist(),
                 "bin_confidence": m.bin_confidence.tolist(), "bin_count": m.bin_count.astype(int).tolist()},
    )
    yield audit.Finding.against_limit(
        "brier_score", "Brier score", m.brier, severity=audit.Severity.MEDIUM,
        ceiling=options.max_brier if options.max_brier is not None else m.brier_reference,
        message=(
            f"mean squared error of the predicted probabilities {m.brier:.4f} (multiclass definition, 0 best, 2 worst); "
            f"always predicting the class frequencies scores {m.brier_reference:.4f}"
            + ("" if options.max_brier is None else f"; allowed {options.max_brier:g}")
        ),
        details={"reference_class_frequencies": m.brier_reference, "negative_log_likelihood": m.nll},
    )
    allowed = options.max_selective_risk_at_90
    yield audit.Finding.against_limit(
        "selective_risk_at_90", "Error rate on the 90% most confident rows", m.risks[0.9], severity=audit.Severity.LOW,
        ceiling=allowed if allowed is not None else m.error, subject="90% coverage",
        message=(
            f"abstaining on the 10% least confident rows gives error {m.risks[0.9]:.3f} against {m.error:.3f} answering all "
            + ("(confidence must not rank errors worse than chance)" if allowed is None else f"(allowed {allowed:g})")
            + f"; at 80% coverage {m.risks[0.8]:.3f}, at 95% {m.risks[0.95]:.3f}; AURC {m.aurc:.4f}"
        ),
        details={"aurc": m.aurc, "risk_at_coverage": {f"{k:.2f}": v for k, v in m.risks.items()}, "full_coverage_error": m.error},
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
