"""Figures for the bias analyses: per-group bars with intervals, score distributions, leakage per layer."""

from __future__ import annotations

import numpy as np

from audit.toolkit import new_figure


def _figure(width: float, height: float):
    return new_figure(figsize=(width, height))


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "\u2026"


def group_bars(table, k: int, class_name: str, binary: bool):
    """Selection rate (and accuracy, TPR when labelled) per group, with 95% intervals (Wilson; mean score: bootstrap)."""
    metrics = ["selection_rate"] + (["accuracy", "tpr"] if table.has_labels else ["mean_score"])
    names = [_short(n) for n in table.grouping.names]
    positions = np.arange(len(names))
    fig = _figure(2.4 * len(metrics) + 1.2, 0.32 * len(names) + 1.6)
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        values = np.array([table.value(metric, g, k) for g in range(len(names))], dtype=float)
        lower, upper = table.intervals(metric, k)
        err = np.vstack([np.clip(values - lower, 0, None), np.clip(upper - values, 0, None)])
        err = np.nan_to_num(err)
        colors = ["#bbbbbb" if s else "#3b6ea8" for s in table.small]
        bars = ax.barh(positions, np.nan_to_num(values), xerr=err, color=colors, ecolor="#333333", capsize=2)
        for bar, small in zip(bars, table.small):
            if small:
                bar.set_hatch("//")
        label = {"selection_rate": "selection rate", "accuracy": "accuracy", "tpr": "true positive rate", "mean_score": "mean score"}[metric]
        ax.set_xlabel(label if binary or metric == "accuracy" else f"{label} ({class_name})")
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(positions, labels=names, fontsize=8)
    axes[0][0].set_ylabel(table.grouping.subject)
    fig.suptitle(f"Group rates by {table.grouping.subject}", fontsize=10)
    fig.tight_layout()
    return fig


def score_distributions(scores: np.ndarray, grouping, small: np.ndarray, class_name: str, bins: int = 20):
    """Step histograms (densities) of one class's score per group; the largest 8 groups."""
    fig = _figure(5.5, 3.2)
    ax = fig.subplots()
    sizes = np.bincount(grouping.codes, minlength=grouping.n_groups)
    edges = np.linspace(0, 1, bins + 1)
    for g in np.argsort(-sizes)[:8]:
        hist, _ = np.histogram(scores[grouping.codes == g], bins=edges, density=True)
        label = f"{_short(grouping.names[g])} (n={sizes[g]}{', too small' if small[g] else ''})"
        ax.step(edges[:-1], hist, where="post", label=label, linestyle="--" if small[g] else "-")
    ax.set_xlabel(f"P({class_name})")
    ax.set_ylabel("density")
    ax.set_title(f"Score distribution by {grouping.subject}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def leakage_curve(attribute: str, layers: list[str], rows: dict[str, list], baseline: float):
    """Probe accuracy per layer: linear, attentive (if any), after erasure, against the majority rate."""
    fig = _figure(5.5, 3.2)
    ax = fig.subplots()
    positions = np.arange(len(layers))
    styles = {"linear probe": "o-", "attentive probe": "s-", "linear probe after erasure": "x--"}
    for label, values in rows.items():
        values = np.array([np.nan if v is None else v for v in values], dtype=float)
        if np.isfinite(values).any():
            ax.plot(positions, values, styles.get(label, "o-"), label=label)
    ax.axhline(baseline, color="#888888", linestyle=":", label=f"majority rate {baseline:.2f}")
    shown = [_short(layer.strip("/").removesuffix("_output_0"), 18) for layer in layers]  # ONNX value names are long
    ax.set_xticks(positions, labels=shown, rotation=30 if len(layers) > 3 else 0, fontsize=8)
    ax.set_ylim(min(baseline, 0.5) - 0.05, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel("cross-validated accuracy")
    ax.set_title(f"Leakage of {attribute} per layer", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def counterfactual_bars(attribute: str, reference: str, results: list, binary: bool):
    """Mean score shift and flip rate per substituted value, with intervals."""
    labels = [_short(r.label) for r in results]
    positions = np.arange(len(labels))
    fig = _figure(6.4, 0.32 * len(labels) + 1.8)
    left, right = fig.subplots(1, 2, sharey=True)
    shifts = np.array([r.shift for r in results])
    shift_err = np.abs(np.array([[r.shift - r.shift_ci[0], r.shift_ci[1] - r.shift] for r in results]).T)
    left.barh(positions, shifts, xerr=shift_err, color=np.where(shifts >= 0, "#3b6ea8", "#c0504d"), capsize=2)
    left.axvline(0, color="#333333", linewidth=0.8)
    left.set_xlabel("mean score shift" + ("" if binary else " (predicted class)"))
    flips = np.array([r.flip_rate for r in results])
    flip_err = np.abs(np.array([[r.flip_rate - r.flip_ci[0], r.flip_ci[1] - r.flip_rate] for r in results]).T)
    right.barh(positions, flips, xerr=flip_err, color="#7f7f7f", capsize=2)
    right.set_xlabel("prediction flip rate")
    right.set_xlim(0, max(0.05, float(flips.max()) * 1.3 + 1e-9))
    left.set_yticks(positions, labels=labels, fontsize=8)
    left.set_ylabel(f"{attribute} set to")
    fig.suptitle(f"{attribute}: against {_short(reference)}", fontsize=10)
    fig.tight_layout()
    return fig
