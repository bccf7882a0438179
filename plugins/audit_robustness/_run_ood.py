"""robustness.ood: maximum-softmax and energy scores separating the audit data from out-of-distribution inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import audit
from audit import stats

from . import _figures
from ._common import fpr_at_tpr, input_range, note_categorical


def energy_score(logits: np.ndarray) -> np.ndarray:
    """Negative free energy logsumexp(logits): higher means more in-distribution."""
    top = logits.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))[:, 0]


def load_ood(path: str, row_shape: tuple) -> np.ndarray:
    file = Path(path)
    if not file.exists():
        raise audit.AuditError(f"ood_data {file} does not exist; give an .npz with an array 'x'")
    try:
        with np.load(file, allow_pickle=False) as archive:
            if "x" not in archive:
                raise audit.AuditError(f"ood_data {file} has no array 'x' (found: {', '.join(archive.files) or 'none'})")
            x = np.asarray(archive["x"], dtype=np.float32)
    except (OSError, ValueError) as error:
        raise audit.AuditError(f"ood_data {file}: not a readable .npz ({error})") from None
    if x.shape[1:] != tuple(row_shape):
        raise audit.AuditError(f"ood_data {file}: rows of shape {x.shape[1:]}, but the model's data has {tuple(row_shape)}")
    return x


def synthetic_sources(ctx, rows: int) -> dict[str, tuple[np.ndarray, str]]:
    x = ctx.data.x
    bounds = input_range(x, ctx.data.modality)
    shape = (rows,) + x.shape[1:]
    low = np.broadcast_to(bounds.lower, x.shape[1:])
    high = np.broadcast_to(bounds.upper, x.shape[1:])
    uniform = (low + (high - low) * ctx.rng.random(shape)).astype(np.float32)
    mean, std = x.mean(axis=0), x.std(axis=0)
    gaussian = (mean + std * ctx.rng.standard_normal(shape)).astype(np.float32)
    if ctx.data.categorical_columns:
        # Category codes are not numbers to draw noise over: each synthetic row keeps the categories of a random data row.
        donors = x[ctx.rng.integers(0, len(x), size=rows)]
        uniform, gaussian = ctx.data.keep_categorical(uniform, donors), ctx.data.keep_categorical(gaussian, donors)
        note_categorical(ctx, "synthetic noise replaces")
    return {
        "uniform_noise": (uniform, "synthetic uniform noise over the data's range (not real out-of-distribution data)"),
        "gaussian_noise": (gaussian, "synthetic Gaussian noise with the data's per-feature mean and std (not real out-of-distribution data)"),
    }


def _sources(ctx, options):
    """{source: (x, description)} and the severity of a failure: medium for real OOD data, low for synthetic noise."""
    if options.ood_data:
        data = load_ood(options.ood_data, ctx.data.x.shape[1:])
        return {"ood_data": (data, f"the out-of-distribution set {Path(options.ood_data).name}")}, audit.Severity.MEDIUM
    ctx.note(
        "no ood_data given: the out-of-distribution sets are synthetic noise inputs (uniform over the data range, "
        "and Gaussian with the data's mean and std), a floor for OOD detection, not evidence about real shifts"
    )
    return synthetic_sources(ctx, min(len(ctx.data), options.synthetic_rows)), audit.Severity.LOW


SCORE_LABELS = {"msp": "maximum softmax probability", "energy": "energy (logsumexp of logits)"}


def measure(ctx, sources):
    """Scores of the audit data and of each OOD source: {score: array} and {score: {source: array}}."""
    energy_usable = ctx.model.output_kind != "probabilities"
    if not energy_usable:
        ctx.note("the model outputs probabilities, so logsumexp of its log-probabilities is always 0: the energy score is degenerate and skipped")
    in_scores = {"msp": ctx.predictions.max(axis=1)}
    if energy_usable:
        in_scores["energy"] = energy_score(ctx.logits)
    out_scores: dict[str, dict[str, np.ndarray]] = {score: {} for score in in_scores}
    for source, (x_out, _) in sources.items():
        probabilities, logits = ctx.model.predict_both(x_out)  # one batched pass per source
        out_scores["msp"][source] = probabilities.max(axis=1)
        if energy_usable:
            out_scores["energy"][source] = energy_score(logits)
    return in_scores, out_scores


def judge(ctx, options, sources, severity, in_scores, out_scores):
    for source, (x_out, description) in sources.items():
        for score in in_scores:
            area = stats.auroc(in_scores[score], out_scores[score][source])
            fpr = fpr_at_tpr(in_scores[score], out_scores[score][source], 0.95)
            subject, label = f"{score} vs {source}", SCORE_LABELS[score]
            yield audit.Metric("ood_auroc", area, subject=subject, count=len(x_out))
            yield audit.Metric("fpr_at_95_tpr", fpr, subject=subject, count=len(x_out))
            yield audit.Finding.against_limit(
                "ood_auroc", f"Out-of-distribution detection by {label}", area, severity=severity, floor=options.min_auroc,
                subject=subject,
                message=(
                    f"{label} separates the audit data from {description} with AUROC {area:.3f} "
                    f"(0.5 is chance, wanted at least {options.min_auroc:g}); keeping 95% of the audit data "
                    f"still accepts {fpr:.1%} of the {len(x_out)} out-of-distribution inputs"
                ),
                details={
                    "source": source, "description": description, "synthetic": not options.ood_data, "fpr_at_95_tpr": fpr,
                    "in_distribution_rows": len(ctx.predictions), "out_of_distribution_rows": len(x_out), "score": score,
                },
            )


def figures(options, in_scores, out_scores):
    for score in in_scores:
        yield audit.Figure(
            f"ood_scores_{score}",
            f"{'Maximum softmax probability' if score == 'msp' else 'Energy score'}: audit data vs OOD",
            _figures.score_histograms(in_scores[score], out_scores[score], "max softmax probability" if score == "msp" else "energy (logsumexp)"),
            caption="Higher scores mean the model treats the input as in-distribution. "
            + ("Out-of-distribution sets here are synthetic noise." if not options.ood_data else ""),
        )


def run(analysis, ctx):
    """Score the audit data and each OOD source, then judge and draw from the scores."""
    options = analysis.options
    sources, severity = _sources(ctx, options)
    in_scores, out_scores = measure(ctx, sources)
    yield from judge(ctx, options, sources, severity, in_scores, out_scores)
    yield from figures(options, in_scores, out_scores)
