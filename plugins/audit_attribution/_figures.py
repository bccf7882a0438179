"""Figures for the report: heat maps, feature bars, deletion/insertion curves, agreement matrices, sanity bars."""

from __future__ import annotations

import numpy as np

from audit.toolkit import new_figure


def _label(name: str) -> str:
    return name.replace("_", " ")


def _display(maps: np.ndarray) -> np.ndarray:
    """|map|, except that a row with no zero or negative value (RISE's offset E[f]) is shown above its minimum."""
    maps = np.asarray(maps, dtype=np.float64)
    positive = (maps > 0).all(axis=-1, keepdims=True)
    return np.where(positive, maps - maps.min(axis=-1, keepdims=True), np.abs(maps))


def image_maps(x: np.ndarray, maps: dict, layout, titles: list[str], n_show: int = 4):
    """Rows: inputs; columns: the input, then each explainer's heat map."""
    n_show = min(n_show, len(x))
    names = list(maps)
    cols = 1 + len(names)
    fig = new_figure(figsize=(min(1.35 * cols, 10.5), 1.45 * n_show + 0.3))
    axes = fig.subplots(n_show, cols, squeeze=False)
    for r in range(n_show):
        image = x[r]
        if image.ndim == 3:
            image = image[0] if image.shape[0] == 1 else np.transpose(image[:3], (1, 2, 0))
        low, high = float(image.min()), float(image.max())
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        axes[r, 0].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[r, 0].set_title(titles[r], fontsize=7)
        for c, name in enumerate(names, start=1):
            heat = _display(maps[name][r]).reshape(layout.unit_shape)
            axes[r, c].imshow(heat, cmap="inferno", vmin=0, vmax=heat.max() or 1.0)
            if r == 0:
                axes[r, c].set_title(_label(name), fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    return fig


def feature_bars(maps: dict, feature_names: list[str], top: int = 20):
    """Mean |attribution| per feature, one bar per explainer, each explainer scaled to its largest bar."""
    names = list(maps)
    means = np.stack([_display(maps[n]).mean(axis=0) for n in names])
    scaled = means / np.where(means.max(axis=1, keepdims=True) > 0, means.max(axis=1, keepdims=True), 1.0)
    order = np.argsort(-scaled.mean(axis=0))[:top]
    height = 0.8 / len(names)
    fig = new_figure(figsize=(6.5, 1.0 + 0.32 * len(order) * max(1, len(names) / 3)))
    ax = fig.subplots()
    for i, name in enumerate(names):
        ax.barh(np.arange(len(order)) + i * height, scaled[i, order], height=height, label=_label(name))
    ax.set_yticks(np.arange(len(order)) + 0.4 - height / 2, labels=[str(feature_names[j]) for j in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean |attribution| (scaled to each explainer's largest)")
    ax.set_title("Which features the explainers say drive predictions")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def curves(curve_by_name: dict, fractions: np.ndarray):
    """Mean deletion (left) and insertion (right) curves; the random order dashed."""
    fig = new_figure(figsize=(8.5, 3.2))
    axes = fig.subplots(1, 2, sharey=True)
    for panel, (ax, title) in enumerate(zip(axes, ("Deletion (lower is better)", "Insertion (higher is better)"))):
        for name, pair in curve_by_name.items():
            style = {"color": "black", "linestyle": "--", "linewidth": 1.5} if name == "random" else {"linewidth": 1.2}
            ax.plot(fractions, pair[panel], label=_label(name), **style)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("fraction of features " + ("removed" if panel == 0 else "added back"))
        ax.set_xlim(0, 1)
    axes[0].set_ylabel("predicted-class probability")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def agreement(names: list[str], rho: np.ndarray, overlap: np.ndarray, k: int):
    size = min(10.0, 3.0 + 0.9 * len(names))
    fig = new_figure(figsize=(size, size * 0.42))
    axes = fig.subplots(1, 2)
    labels = [_label(n) for n in names]
    for ax, matrix, title, low in ((axes[0], rho, "Spearman rank correlation", -1.0), (axes[1], overlap, f"top-{k} overlap", 0.0)):
        image = ax.imshow(matrix, vmin=low, vmax=1.0, cmap="viridis")
        ax.set_xticks(range(len(names)), labels=labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), labels=labels, fontsize=7)
        ax.set_title(title, fontsize=9)
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white" if value < (low + 1) / 2 else "black")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def sanity_bars(grid_shares: dict, correlations: dict, options):
    fig = new_figure(figsize=(8.5, 3.0))
    axes = fig.subplots(1, 2)
    for ax, values, title, line, xlabel in (
        (axes[0], grid_shares, "DiFull grid: share on the right cell", options.min_grid_share, "share of |attribution|"),
        (axes[1], correlations, "Model randomisation", options.max_randomization_correlation, "Spearman correlation with original"),
    ):
        names = list(values)
        numbers = [np.nan if values[n] is None else values[n] for n in names]
        ax.barh(range(len(names)), numbers, color="tab:blue")
        ax.set_yticks(range(len(names)), labels=[_label(n) for n in names], fontsize=8)
        ax.invert_yaxis()
        ax.axvline(line, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        if not names:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_xlim(0, 1)
    axes[1].set_xlim(-1, 1)
    fig.tight_layout()
    return fig
