"""Input layouts (features, pixels, regions), scorers around a model, and batched variant scoring."""

from __future__ import annotations

import math
import time

import numpy as np

# Perturbed copies of the inputs are built in chunks of about this many values
# (float32), so that a few large images times thousands of masks never sit in
# memory at once, while small inputs still go to the model in large batches.
_CHUNK_VALUES = 1 << 23


class Layout:
    """How attributions are indexed: "units" (pixels, features) and the regions black-box explainers move.

    An image (C, H, W) has H*W units, one per pixel, with its channels moved
    together; a tabular row has one unit per feature; other tensors one unit per
    value. Explainers return maps over units, which is what the metrics compare.
    """

    def __init__(self, sample_shape, modality: str, groups: list[list[int]] | None = None, categorical: list[int] | None = None):
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.is_image = modality == "image" and len(self.sample_shape) in (2, 3)
        if self.is_image:
            self.height, self.width = self.sample_shape[-2:]
            self.unit_shape = (self.height, self.width)
            self.view_shape = (1, self.height, self.width) if len(self.sample_shape) == 3 else self.unit_shape
        else:
            self.unit_shape = (int(np.prod(self.sample_shape)),)
            self.view_shape = self.sample_shape
        self.n_units = int(np.prod(self.unit_shape))
        self.n_values = int(np.prod(self.sample_shape))
        self.groups = groups  # tabular feature groups moved together, or None
        # Units holding category codes: a mask keeps such a unit or puts the baseline's category there, never a blend of codes.
        self.categorical = list(categorical or []) if not self.is_image else []

    def categorical_masks(self, unit_masks):
        """Masks with their categorical units rounded to 0 or 1 (numpy or torch); the others untouched."""
        if not self.categorical:
            return unit_masks
        masks = unit_masks.clone() if hasattr(unit_masks, "clone") else np.array(unit_masks, dtype=np.float32, copy=True)
        flat = masks.reshape(len(masks), -1)
        flat[:, self.categorical] = (flat[:, self.categorical] >= 0.5) * 1.0
        return masks

    # -- maps ---------------------------------------------------------------------
    def to_units(self, attributions: np.ndarray) -> np.ndarray:
        """Element-wise attributions (R, *sample_shape) -> unit maps (R, U): channels summed."""
        a = np.asarray(attributions, dtype=np.float64)
        if self.is_image and len(self.sample_shape) == 3:
            a = a.sum(axis=1)
        return a.reshape(len(a), self.n_units)

    def blend(self, x: np.ndarray, baseline: np.ndarray, unit_masks: np.ndarray) -> np.ndarray:
        """x where the mask is 1, the baseline where it is 0, linear in between; one row per mask."""
        m = self.categorical_masks(unit_masks).reshape(len(unit_masks), *self.view_shape).astype(np.float32, copy=False)
        return (baseline + m * (x - baseline)).astype(np.float32, copy=False)

    def subtract_units(self, x: np.ndarray, unit_values: np.ndarray) -> np.ndarray:
        """x minus a per-unit perturbation, the same value on every channel of a pixel."""
        d = unit_values.reshape(len(unit_values), *self.view_shape).astype(np.float32, copy=False)
        return (x - d).astype(np.float32, copy=False)

    # -- regions ------------------------------------------------------------------
    def patch_regions(self, patch: int) -> tuple[np.ndarray, int]:
        """Region id per unit: square patches for images, feature groups for tabular data."""
        if self.is_image:
            rows = np.arange(self.height) // patch
            cols = np.arange(self.width) // patch
            per_row = math.ceil(self.width / patch)
            ids = rows[:, None] * per_row + cols[None, :]
            return ids.reshape(-1), int(ids.max()) + 1
        return self._flat_regions(max(1, math.ceil(self.n_units / 64)) if self.groups is None and self.n_units > 256 else 1)

    def grid_regions(self, grid: int) -> tuple[np.ndarray, int]:
        """Region id per unit on a grid x grid partition (nearest-neighbour upsampling of a mask)."""
        if self.is_image:
            rows = np.minimum(np.arange(self.height) * grid // self.height, grid - 1)
            cols = np.minimum(np.arange(self.width) * grid // self.width, grid - 1)
            ids = rows[:, None] * grid + cols[None, :]
            return ids.reshape(-1), grid * grid
        return self._flat_regions(max(1, math.ceil(self.n_units / 64)) if self.groups is None and self.n_units > 256 else 1)

    def _flat_regions(self, block: int) -> tuple[np.ndarray, int]:
        if self.groups is not None:
            ids = np.full(self.n_units, -1, dtype=np.int64)
            for region, members in enumerate(self.groups):
                ids[members] = region
            return ids, len(self.groups)
        ids = np.arange(self.n_units) // block
        return ids, int(ids.max()) + 1

    def default_patch(self) -> int:
        return max(1, min(self.height, self.width) // 8) if self.is_image else 1

    def default_grid(self) -> int:
        # Fel et al. use about 8 to 11 regions a side; tiny images get fewer so regions are not single pixels.
        return min(8, max(1, min(self.height, self.width) // 2)) if self.is_image else 0


def feature_groups(feature_names, groups_by_name: dict[str, list[str]], n_features: int) -> list[list[int]] | None:
    """Column indices of each group; features in no group are groups of their own."""
    if not groups_by_name:
        return None
    names = list(feature_names or [f"x{i}" for i in range(n_features)])
    position = {name: i for i, name in enumerate(names)}
    seen: set[int] = set()
    groups = []
    for group, members in groups_by_name.items():
        unknown = [m for m in members if m not in position]
        if unknown:
            raise ValueError(f"feature group {group!r} names unknown features: {', '.join(unknown)}")
        indices = [position[m] for m in members if position[m] not in seen]
        seen.update(indices)
        if indices:
            groups.append(indices)
    groups.extend([i] for i in range(n_features) if i not in seen)
    return groups


class Scorer:
    """The scalar an explanation explains: score of a target output per row, numpy and torch.

    ``scores(x)`` returns (N, T) scores in their final form (probabilities or
    logits), and the target indexes its columns; ``gradient`` returns
    d score[target] / d x for a device tensor.
    """

    has_gradients = False
    device = "cpu"
    batch_size = 256
    gradient_batch_size = 256

    def scores(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gradient(self, x, target):
        raise NotImplementedError

    def target_scores(self, x: np.ndarray, targets: np.ndarray) -> np.ndarray:
        s = self.scores(x)
        return s[np.arange(len(s)), targets]


class _OfModel(Scorer):
    """A scorer backed by the audited model: device and batch sizes are read from it, so out-of-memory halving shows."""

    model = None

    @property
    def device(self):
        return self.model.device

    @property
    def batch_size(self):
        return self.model.batch_size

    @property
    def gradient_batch_size(self):
        return self.model.gradient_batch_size


class ModelScorer(_OfModel):
    """Scores straight from the audited model: its class probabilities or logits."""

    def __init__(self, model, score: str = "probability"):
        self.model = model
        self.score = score
        self.has_gradients = "gradients" in model.capabilities

    def scores(self, x):
        probabilities, logits = self.model.predict_both(x)
        return probabilities if self.score == "probability" else logits

    def gradient(self, x, target):
        _, grad = self.model.input_gradient(x, target, output=self.score)
        return grad


class TorchScorer(_OfModel):
    """Scores from a torch function of a device tensor (a wrapped or randomised model).

    Forward rows are counted by the function (it calls ``model.logits_torch``
    or counts its own); backward rows are added to the model's counters here.
    """

    has_gradients = True

    def __init__(self, model, function):
        self.model = model
        self.function = function

    def scores(self, x):
        import torch

        outputs = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch_size):
                chunk = torch.as_tensor(np.ascontiguousarray(x[i : i + self.batch_size]), dtype=torch.float32, device=self.device)
                outputs.append(self.function(chunk).double().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def gradient(self, x, target):
        import torch

        start = time.perf_counter()
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            picked = self.function(x).gather(1, target.view(-1, 1).long()).sum()
            (grad,) = torch.autograd.grad(picked, x)
        self.model.count(backward_rows=len(x), backward_seconds=time.perf_counter() - start)
        return grad


class NumpyScorer(Scorer):
    """Scores from a numpy function (a black-box wrapper around ``model.predict``)."""

    def __init__(self, function, batch_size: int):
        self.function = function
        self.batch_size = batch_size

    def scores(self, x):
        return self.function(x)


def variant_scores(scorer: Scorer, n_rows: int, n_variants: int, make, targets: np.ndarray, values_per_row: int) -> np.ndarray:
    """Score ``n_rows * n_variants`` perturbed inputs, built chunk by chunk; returns (R, V).

    ``make(row_index, variant_index)`` builds the perturbed inputs for those
    pairs (flat integer arrays). Chunks hold many rows' variants together, so
    the model sees a few large batches rather than one call per variant.
    """
    total = n_rows * n_variants
    chunk = max(scorer.batch_size, _CHUNK_VALUES // max(values_per_row, 1))
    chunk = max(1, min(chunk, total))
    out = np.empty(total, dtype=np.float64)
    for start in range(0, total, chunk):
        flat = np.arange(start, min(start + chunk, total))
        rows, variants = flat // n_variants, flat % n_variants
        scores = scorer.scores(make(rows, variants))
        out[flat] = scores[np.arange(len(flat)), targets[rows]]
    return out.reshape(n_rows, n_variants)


def masked_scores(scorer, layout: Layout, x, baseline, unit_masks, targets) -> np.ndarray:
    """Scores of ``x`` blended with its baseline through masks shared by all rows: (R, V)."""
    model = getattr(scorer, "model", None)
    if isinstance(scorer, ModelScorer) and "torch" in model.capabilities and (model.format != "onnx" or model.device != "cpu"):
        # On a CPU onnxruntime runs an ONNX graph faster than its torch conversion;
        # on a GPU keeping the variants on the device matters more.
        return _masked_scores_on_device(scorer, layout, x, baseline, unit_masks, targets)

    masks = np.ascontiguousarray(layout.categorical_masks(unit_masks), dtype=np.float32).reshape(len(unit_masks), *layout.view_shape)
    chunk = max(scorer.batch_size, _CHUNK_VALUES // max(layout.n_values, 1))

    def score(batch, r0, r1, count):
        return scorer.target_scores(batch, np.repeat(targets[r0:r1], count))

    x32, base32 = np.asarray(x, dtype=np.float32), np.asarray(baseline, dtype=np.float32)
    out = np.empty((len(x), len(masks)), dtype=np.float64)
    _blend_in_blocks(x32, base32, masks, chunk, score, out)
    return out


def _blend_in_blocks(x, baseline, masks, per_call: int, score, out) -> None:
    """Fill out[r, v] with the score of baseline[r] + masks[v] * (x[r] - baseline[r]), numpy arrays or torch tensors alike.

    Each call takes whole rows times their variants, built by broadcasting
    rather than by gathering rows and masks with index arrays; a row with more
    variants than ``per_call`` has them split over several calls.
    ``score(batch, r0, r1, count)`` returns the flat scores of rows r0:r1,
    ``count`` consecutive variants each.
    """
    n_rows, n_variants = out.shape
    rows_per_call, variants_per_call = max(1, per_call // n_variants), min(n_variants, per_call)
    for r0 in range(0, n_rows, rows_per_call):
        r1 = min(n_rows, r0 + rows_per_call)
        base = baseline[r0:r1][:, None]
        difference = x[r0:r1][:, None] - base
        for v0 in range(0, n_variants, variants_per_call):
            v1 = min(n_variants, v0 + variants_per_call)
            batch = (base + masks[None, v0:v1] * difference).reshape(-1, *x.shape[1:])
            out[r0:r1, v0:v1] = score(batch, r0, r1, v1 - v0).reshape(r1 - r0, v1 - v0)


def _masked_scores_on_device(scorer: "ModelScorer", layout: Layout, x, baseline, unit_masks, targets) -> np.ndarray:
    """The torch path of masked_scores: inputs, masks and blends stay on the model's device.

    Building the variants in numpy and copying each chunk to the device cost
    more than the model passes themselves on a GPU (and for small models on a
    CPU); here only the inputs and masks cross once, and only the picked
    scores come back.
    """
    import torch

    model = scorer.model
    device = model.device
    xs = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
    bs = torch.as_tensor(np.ascontiguousarray(baseline), dtype=torch.float32, device=device)
    masks = torch.as_tensor(np.ascontiguousarray(layout.categorical_masks(unit_masks), dtype=np.float32).reshape(len(unit_masks), *layout.view_shape),
                            device=device)
    picks = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=device)

    def score(batch, r0, r1, count):
        return target_scores_torch(model.logits_torch(batch), picks[r0:r1].repeat_interleave(count), scorer.score)

    out = torch.empty((len(x), len(masks)), dtype=torch.float64, device=device)
    with torch.inference_mode():
        _blend_in_blocks(xs, bs, masks, model.batch_size, score, out)
    return out.cpu().numpy()


def target_scores_torch(logits, targets, score: str):
    """Each row's score of its target class in float64: the probability, or the logit.

    The probability is 1 / sum_j exp(z_j - z_target), no full softmax: for a
    handful of classes that is a third of softmax's time on a CPU, and it
    saturates to 0, never NaN, when the target's logit is far below the others.
    """
    z = logits.double()
    own = z.gather(1, targets.view(-1, 1))
    if score != "probability":
        return own.squeeze(1)
    import torch

    terms = torch.exp(z - own)
    if terms.shape[1] <= 16:
        # torch's CPU sum over a short last axis is ~8x slower than a
        # matrix-vector product (58 vs 6 us for 4096 x 2 doubles).
        return torch.mv(terms, torch.ones(terms.shape[1], dtype=terms.dtype, device=terms.device)).reciprocal()
    return terms.sum(dim=1).reciprocal()


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of images (N, [C,] H, W) with reflected borders."""
    if sigma <= 0:
        return x.copy()
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = x.astype(np.float64)
    for axis in (-2, -1):
        size = out.shape[axis]
        index = np.arange(size)[:, None] + offsets[None, :]
        # Reflect (d c b | a b c d | c b a) so the borders keep their brightness.
        period = 2 * (size - 1) if size > 1 else 1
        index = np.abs(np.mod(index, period)) if size > 1 else np.zeros_like(index)
        index = np.where(index >= size, period - index, index)
        moved = np.moveaxis(out, axis, -1)
        out = np.moveaxis((moved[..., index] * kernel).sum(-1), -1, axis)
    return out.astype(np.float32)
