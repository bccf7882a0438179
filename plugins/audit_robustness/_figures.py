"""Matplotlib figures of the robustness analyses, sized for an A4 report."""

from __future__ import annotations

import numpy as np

from audit.toolkit import new_figure




def severity_curves(names, severities, accuracy, flips, clean_accuracy, what):
    fig = new_figure((8.0, 3.4))
    left, right = fig.subplots(1, 2)
    levels = [0] + [s for s in severities if s > 0]
    for name in names:
        acc = [clean_accuracy] + [accuracy[(name, s)] for s in severities if s > 0]
        flip = [0.0] + [flips[(name, s)] for s in severities if s > 0]
        left.plot(levels, acc, marker="o", markersize=3, label=name)
        right.plot(levels, flip, marker="o", markersize=3, label=name)
    left.axhline(clean_accuracy, color="grey", linestyle="--", linewidth=0.8)
    left.set_title(what.capitalize(), fontsize=9)
    left.set_xlabel("severity")
    left.set_ylabel(what)
    left.set_ylim(-0.02, 1.02)
    right.set_title("Flip rate against clean prediction", fontsize=9)
    right.set_xlabel("severity")
    right.set_ylabel("flip rate")
    right.set_ylim(-0.02, 1.02)
    for ax in (left, right):
        ax.set_xticks(levels)
        ax.grid(alpha=0.3)
    right.legend(fontsize=7, loc="upper left", frameon=False)
    fig.tight_layout()
    return fig


def _displayable(image, bounds):
    """(C, H, W) in the data's range -> (H, W) or (H, W, 3) in [0, 1]."""
    unit = np.clip((np.asarray(image, dtype=np.float64) - bounds.low) / bounds.span, 0, 1)
    if unit.shape[0] == 3:
        return np.moveaxis(unit, 0, -1)
    return unit[0]


def image_grid(clean, clean_predicted, columns, names, labels, bounds):
    """Rows: inputs; first column clean, then one column per (title, images, predictions)."""
    rows = len(clean)
    cols = 1 + len(columns)
    cell = min(1.15, 7.5 / cols)
    fig = new_figure((cell * cols, cell * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    panels = [("clean", clean, clean_predicted)] + list(columns)
    for j, (title, images, predicted) in enumerate(panels):
        for i in range(rows):
            ax = axes[i][j]
            shown = _displayable(images[i], bounds)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            wrong = labels is not None and int(predicted[i]) != int(labels[i])
            ax.set_title(f"{names[int(predicted[i])]}"[:10], fontsize=6, color="red" if wrong else "black", pad=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_xlabel("")
                ax.text(0.5, 1.35, title.replace("_", " "), transform=ax.transAxes, ha="center", fontsize=6)
    fig.subplots_adjust(wspace=0.1, hspace=0.35, top=0.88, bottom=0.02, left=0.02, right=0.98)
    return fig


def epsilon_curves(curves, clean_accuracy, what, unit=""):
    """``curves``: {norm: {attack: (epsilons, robust accuracies)}}; one panel per norm."""
    norms = list(curves)
    fig = new_figure((4.0 * len(norms), 3.3))
    axes = fig.subplots(1, len(norms), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for attack, (epsilons, values) in curves[norm].items():
            ax.plot(epsilons, values, marker="o", markersize=3, label=attack)
        ax.axhline(clean_accuracy, color="grey", linestyle="--", linewidth=0.8, label="clean")
        ax.set_title(f"{norm} attacks", fontsize=9)
        ax.set_xlabel(f"epsilon ({norm} norm{', ' + unit if unit else ''})")
        ax.set_ylabel(f"robust {what}")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def reliability_diagram(edges, bin_accuracy, bin_confidence, bin_count, ece):
    fig = new_figure((4.2, 4.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    centers = (edges[:-1] + edges[1:]) / 2
    width = np.diff(edges)
    filled = bin_count > 0
    top.bar(centers[filled], bin_accuracy[filled], width=width[filled], edgecolor="black", linewidth=0.4, color="#4c72b0", label="accuracy")
    top.bar(
        centers[filled], (bin_confidence - bin_accuracy)[filled], bottom=bin_accuracy[filled], width=width[filled],
        color="#dd8452", alpha=0.5, edgecolor="none", label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    top.set_ylabel("accuracy in bin")
    top.set_ylim(0, 1)
    top.set_title(f"Reliability diagram (ECE {ece:.3f})", fontsize=9)
    top.legend(fontsize=7, frameon=False, loc="upper left")
    bottom.bar(centers, bin_count, width=width, color="grey", edgecolor="black", linewidth=0.3)
    bottom.set_xlabel("confidence (max probability)")
    bottom.set_ylabel("rows")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def risk_coverage(coverage, risk, aurc, marks):
    fig = new_figure((4.2, 3.2))
    ax = fig.subplots()
    ax.plot(coverage, risk, color="#4c72b0")
    for level, value in marks.items():
        ax.plot([level], [value], marker="o", color="#c44e52", markersize=4)
        ax.annotate(f"{value:.3f}", (level, value), textcoords="offset points", xytext=(-10, 6), fontsize=7)
    ax.set_xlabel("coverage (share of rows answered, most confident first)")
    ax.set_ylabel("selective risk (error rate)")
    ax.set_title(f"Risk-coverage curve (AURC {aurc:.4f})", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def score_histograms(in_scores, out_scores, score_name):
    """``out_scores``: {source name: scores}; one panel."""
    fig = new_figure((4.6, 3.0))
    ax = fig.subplots()
    everything = np.concatenate([in_scores] + list(out_scores.values()))
    low, high = float(np.min(everything)), float(np.max(everything))
    bins = np.linspace(low, high if high > low else low + 1, 40)
    ax.hist(in_scores, bins=bins, alpha=0.6, density=True, label="audit data")
    for name, scores in out_scores.items():
        ax.hist(scores, bins=bins, alpha=0.5, density=True, label=name)
    ax.set_xlabel(score_name)
    ax.set_ylabel("density")
    ax.set_title(f"{score_name}: in- vs out-of-distribution", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
