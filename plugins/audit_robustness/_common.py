"""Helpers shared by the robustness analyses: input range, image layout, sampling, ranks, AUROC."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class InputRange:
    """Where the model's inputs live, inferred from the audit data.

    ``lower``/``upper`` broadcast against one row: scalars for images (one
    pixel range), per feature for tabular data (a binary column stays in
    [0, 1] when attacked). ``span`` is the global max - min, the unit in
    which default epsilons and noise levels are expressed.
    """

    lower: np.ndarray
    upper: np.ndarray
    low: float
    high: float

    @property
    def span(self) -> float:
        return max(self.high - self.low, 1e-12)


def input_range(x: np.ndarray, modality: str) -> InputRange:
    low, high = float(np.min(x)), float(np.max(x))
    if modality == "image":
        lower = np.full((1,) * (x.ndim - 1), low, dtype=np.float32)
        upper = np.full((1,) * (x.ndim - 1), high, dtype=np.float32)
    else:
        lower = np.min(x, axis=0).astype(np.float32)
        upper = np.max(x, axis=0).astype(np.float32)
    return InputRange(lower, upper, low, high)


class ImageLayout:
    """Turns the data's image array into (N, C, H, W) and back, whatever layout it came in."""

    def __init__(self, shape: tuple):
        self.shape = tuple(shape)  # one row's shape
        if len(shape) == 3 and shape[0] <= 4:
            self.kind = "nchw"
        elif len(shape) == 3 and shape[-1] <= 4:
            self.kind = "nhwc"
        elif len(shape) == 2:
            self.kind = "nhw"
        elif len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0] and shape[0] >= 4:
            self.kind = "flat"
        else:
            raise ValueError(f"cannot read rows of shape {shape} as images")

    def to_nchw(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "nchw":
            return x
        if self.kind == "nhwc":
            return np.moveaxis(x, -1, 1)
        if self.kind == "nhw":
            return x[:, None]
        side = math.isqrt(self.shape[0])
        return x.reshape(len(x), 1, side, side)

    def from_nchw(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "nchw":
            return x
        if self.kind == "nhwc":
            return np.moveaxis(x, 1, -1)
        if self.kind == "nhw":
            return x[:, 0]
        return x.reshape(len(x), -1)


def image_layout(data) -> ImageLayout | None:
    if data.modality != "image":
        return None
    try:
        return ImageLayout(data.x.shape[1:])
    except ValueError:
        return None


def reference_labels(ctx) -> tuple[np.ndarray, bool]:
    """True labels, or the clean predictions when the data has none (then accuracy means agreement)."""
    if ctx.data.y is not None:
        return np.asarray(ctx.data.y, dtype=np.int64), False
    ctx.note("the data has no labels: accuracies are agreement with the model's own clean predictions")
    return ctx.predicted.astype(np.int64), True


def audited_rows(ctx, max_rows: int | None):
    """(take, x, y, agreement): the rows an analysis works on, their inputs and reference labels.

    ``take`` selects the same rows from any per-row array (predictions, logits);
    ``agreement`` is True when the data has no labels and ``y`` is the model's own.
    """
    index = ctx.sample_rows(max_rows, note="{n} rows in the data; {max_rows} sampled (seeded) to bound the cost (option max_rows)")
    take = (lambda a: a) if index is None else (lambda a: a[index])
    labels, agreement = reference_labels(ctx)
    return take, take(ctx.data.x).astype(np.float32), take(labels), agreement


def fmt(value: float) -> str:
    """Compact epsilon for subjects: 0.03, 0.5, 1.2e-05."""
    return f"{float(value):.3g}"


def fpr_at_tpr(positive_scores: np.ndarray, negative_scores: np.ndarray, tpr: float = 0.95) -> float:
    """Share of negatives accepted at the highest threshold that accepts ``tpr`` of the positives."""
    ordered = np.sort(np.asarray(positive_scores, dtype=np.float64))[::-1]
    k = max(1, int(math.ceil(tpr * len(ordered))))
    threshold = ordered[k - 1]
    return float(np.mean(np.asarray(negative_scores) >= threshold))


def perturbation_scale(data) -> np.ndarray | None:
    """Unit of attack radii: None (the data's own units) for images, each feature's std otherwise.

    Tabular features come in unrelated units (a credit score in hundreds, a
    0/1 flag), so one radius in raw units would be meaningless; in standard
    deviations it means the same for every column.
    """
    if data.modality == "image":
        return None
    scale = data.x.std(axis=0).astype(np.float32)
    # A categorical column holds category codes: a radius of 0 leaves it exactly as it is.
    scale[data.categorical_columns] = 0.0
    return scale


def note_categorical(ctx, what: str, also: str = "") -> None:
    """Say in the report which categorical columns a perturbation leaves alone (codes are never shifted as numbers)."""
    names = [ctx.data.feature_names[j] for j in ctx.data.categorical_columns]
    if names:
        ctx.note(f"categorical column(s) {', '.join(names)} left as they are: {what} the numeric columns only{also}")
