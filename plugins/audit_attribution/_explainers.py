"""The explainers: gradient-based (saliency, input x gradient, Integrated Gradients, SmoothGrad) and black-box (occlusion, Sobol, RISE)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._core import Layout, Scorer, gaussian_blur, masked_scores
from ._sobol import sobol_points

GRADIENT_EXPLAINERS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad")
BLACK_BOX_EXPLAINERS = ("occlusion", "sobol", "rise")
ALL_EXPLAINERS = GRADIENT_EXPLAINERS + BLACK_BOX_EXPLAINERS


@dataclass
class ExplainerSettings:
    """Settings shared by every explainer (a plain copy of the analysis options)."""

    ig_steps: int = 32
    ig_method: str = "gausslegendre"
    ig_baseline: str = "zeros"
    blur_sigma: float | None = None
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    patch_size: int | None = None
    sobol_grid: int | None = None
    sobol_designs: int = 32
    rise_masks: int = 500
    rise_grid: int | None = None
    rise_probability: float = 0.5


def integration_nodes(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in [0, 1] and weights of the path integral (Riemann or Gauss-Legendre)."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("the trapezoid rule needs at least 2 steps")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return np.linspace(0.0, 1.0, steps), weights
    raise ValueError(f"unknown integration method {method!r}")


def make_baseline(kind: str, x: np.ndarray, data_mean: np.ndarray, layout: Layout, sigma: float | None) -> np.ndarray:
    """Per-row baselines: zeros, the data mean, or (images) a blurred copy of each input."""
    if kind == "zeros":
        return np.zeros_like(x, dtype=np.float32)
    if kind == "mean" or (kind == "blurred" and not layout.is_image):
        return np.broadcast_to(data_mean.astype(np.float32), x.shape).copy()
    if kind == "blurred":
        return gaussian_blur(x, sigma if sigma is not None else max(layout.height, layout.width) / 8)
    raise ValueError(f"unknown baseline {kind!r}")


# -- gradient explainers (on the scorer's device) ------------------------------------
def _weighted_gradients(scorer: Scorer, x: np.ndarray, targets: np.ndarray, points, weights: np.ndarray):
    """Sum over k of weights[k] * gradient at points(x_rows, k), for all rows; returns numpy (R, ...).

    Every (row, point) pair is one row of a big tensor, cut into chunks of the
    model's batch size; the tensors stay on the device until the end.
    """
    import torch

    device = scorer.device
    n_points = len(weights)
    x_all = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)
    t_all = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=device)
    w = torch.as_tensor(weights, dtype=torch.float32, device=device)
    # Rows per group: a group's path points are one tensor of about 4 batches.
    step = scorer.gradient_batch_size
    group = max(1, (4 * step) // n_points)
    result = torch.zeros_like(x_all)
    for g in range(0, len(x_all), group):
        xs = x_all[g : g + group]
        path = points(g, xs)  # (rows * n_points, ...), row-major: row r's points are contiguous
        tgt = t_all[g : g + group].repeat_interleave(n_points)
        grads = [scorer.gradient(path[i : i + step], tgt[i : i + step]) for i in range(0, len(path), step)]
        grad = torch.cat(grads).view(len(xs), n_points, *xs.shape[1:])
        result[g : g + group] = (grad * w.view(1, -1, *([1] * (xs.dim() - 1)))).sum(dim=1)
    return result.detach().cpu().numpy().astype(np.float64)


def saliency(scorer, x, targets):
    """|d score / d x| (Simonyan et al.)."""
    grad = _weighted_gradients(scorer, x, targets, lambda g, xs: xs, np.ones(1))
    return np.abs(grad)


def input_x_gradient(scorer, x, targets):
    return x.astype(np.float64) * _weighted_gradients(scorer, x, targets, lambda g, xs: xs, np.ones(1))


def integrated_gradients(scorer, x, targets, baseline, steps: int, method: str):
    """(x - b) * integral over alpha of the gradient at b + alpha (x - b) (Sundararajan et al. 2017)."""
    import torch

    alphas, weights = integration_nodes(steps, method)
    b_all = torch.as_tensor(np.ascontiguousarray(baseline), dtype=torch.float32, device=scorer.device)
    a = torch.as_tensor(alphas, dtype=torch.float32, device=scorer.device)

    def points(g, xs):
        b = b_all[g : g + len(xs)]
        shape = (1, -1) + (1,) * (xs.dim() - 1)
        path = b.unsqueeze(1) + a.view(shape) * (xs - b).unsqueeze(1)
        return path.reshape(-1, *xs.shape[1:])

    avg = _weighted_gradients(scorer, x, targets, points, weights)
    return (x.astype(np.float64) - baseline.astype(np.float64)) * avg


def smoothgrad(scorer, x, targets, samples: int, noise_sd: np.ndarray, generator):
    """|mean gradient over Gaussian-noised copies| (Smilkov et al. 2017)."""
    import torch

    sd = torch.as_tensor(np.asarray(noise_sd, dtype=np.float32), device=scorer.device)

    def points(g, xs):
        noise = torch.randn((len(xs), samples, *xs.shape[1:]), generator=generator, device=xs.device, dtype=xs.dtype)
        return (xs.unsqueeze(1) + noise * sd).reshape(-1, *xs.shape[1:])

    return np.abs(_weighted_gradients(scorer, x, targets, points, np.full(samples, 1.0 / samples)))


# -- black-box explainers ----------------------------------------------------------
def _spread(region_values: np.ndarray, region_of_unit: np.ndarray) -> np.ndarray:
    """Region scores (R, D) -> unit maps (R, U), each region's score shared among its units."""
    sizes = np.bincount(region_of_unit, minlength=region_values.shape[1]).astype(np.float64)
    return region_values[:, region_of_unit] / sizes[region_of_unit]


def occlusion(scorer, layout: Layout, x, targets, baseline, patch: int):
    """Score drop when each patch (or feature group) is replaced by the baseline; all patches in one batch."""
    region_of_unit, n_regions = layout.patch_regions(patch)
    masks = np.ones((n_regions + 1, layout.n_units), dtype=np.float32)
    masks[1 + region_of_unit, np.arange(layout.n_units)] = 0.0
    s = masked_scores(scorer, layout, x, baseline, masks, targets)
    return _spread(s[:, :1] - s[:, 1:], region_of_unit)


def sobol_masks(n_regions: int, designs: int) -> np.ndarray:
    """Quasi-Monte Carlo matrices A, B and the d matrices A with column i from B, stacked (N (d + 2), d)."""
    points = sobol_points(designs, 2 * n_regions)
    a, b = points[:, :n_regions], points[:, n_regions:]
    c = np.repeat(a[None], n_regions, axis=0)  # (d, N, d)
    c[np.arange(n_regions), :, np.arange(n_regions)] = b.T
    return np.concatenate([a, b, c.reshape(-1, n_regions)], axis=0)


def sobol(scorer, layout: Layout, x, targets, baseline, grid: int, designs: int):
    """Total-order Sobol indices of region masks, Jansen estimator (Fel et al. 2021).

    Masks in [0, 1] per region, upsampled by nearest neighbour, blend each input
    with its baseline ("inpainting"); ST_i = E[(f(A) - f(A_B^i))^2] / (2 Var f).
    """
    region_of_unit, n_regions = layout.grid_regions(grid)
    region_masks = sobol_masks(n_regions, designs)
    s = masked_scores(scorer, layout, x, baseline, region_masks[:, region_of_unit], targets)
    f_a, f_b = s[:, :designs], s[:, designs : 2 * designs]
    f_c = s[:, 2 * designs :].reshape(len(x), n_regions, designs)
    variance = np.concatenate([f_a, f_b], axis=1).var(axis=1)
    total = ((f_a[:, None, :] - f_c) ** 2).mean(axis=2) / (2 * np.where(variance > 0, variance, np.inf))[:, None]
    return _spread(total, region_of_unit)


def _bilinear_matrix(out_size: int, in_size: int) -> np.ndarray:
    """Linear interpolation from in_size samples to out_size (pixel centres aligned, edges clamped)."""
    position = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = position - low
    matrix = np.zeros((out_size, in_size))
    matrix[np.arange(out_size), low] += 1 - frac
    matrix[np.arange(out_size), high] += frac
    return matrix


def rise_masks(layout: Layout, n_masks: int, grid: int, p: float, rng) -> np.ndarray:
    """RISE masks (Petsiuk et al. 2018): random binary grid, bilinear upsampling, random shift."""
    if not layout.is_image:
        region_of_unit, n_regions = layout.grid_regions(0)
        return (rng.random((n_masks, n_regions)) < p).astype(np.float32)[:, region_of_unit]
    h, w = layout.height, layout.width
    cell_h, cell_w = -(-h // grid), -(-w // grid)
    cells = (rng.random((n_masks, grid, grid)) < p).astype(np.float64)
    up = np.einsum("ai,nij,bj->nab", _bilinear_matrix((grid + 1) * cell_h, grid), cells, _bilinear_matrix((grid + 1) * cell_w, grid))
    dy = rng.integers(0, cell_h, n_masks)
    dx = rng.integers(0, cell_w, n_masks)
    rows = dy[:, None, None] + np.arange(h)[None, :, None]
    cols = dx[:, None, None] + np.arange(w)[None, None, :]
    return up[np.arange(n_masks)[:, None, None], rows, cols].reshape(n_masks, -1).astype(np.float32)


def rise(scorer, layout: Layout, x, targets, baseline, n_masks: int, grid: int, p: float, rng):
    """Mean score under random masks, weighted by each unit's mask value: E[f(x . M) M] / p."""
    masks = rise_masks(layout, n_masks, grid, p, rng)
    s = masked_scores(scorer, layout, x, baseline, masks, targets)
    return s @ masks.astype(np.float64) / (n_masks * p)


# -- dispatch ------------------------------------------------------------------------
@dataclass
class ExplainInputs:
    """What every explainer gets: the rows, their targets and baselines, and the seeded randomness."""

    x: np.ndarray
    targets: np.ndarray
    ig_baseline: np.ndarray
    removal_baseline: np.ndarray
    noise_sd: np.ndarray
    rng: np.random.Generator | None = None  # for SmoothGrad noise and RISE masks; None where no explainer will run
    generator: object = None


def explain(name: str, scorer: Scorer, layout: Layout, inputs: ExplainInputs, settings: ExplainerSettings) -> np.ndarray:
    """Unit maps (R, U) of one explainer."""
    x, t = inputs.x, inputs.targets
    if name == "saliency":
        return layout.to_units(saliency(scorer, x, t))
    if name == "input_x_gradient":
        return layout.to_units(input_x_gradient(scorer, x, t))
    if name == "integrated_gradients":
        return layout.to_units(integrated_gradients(scorer, x, t, inputs.ig_baseline, settings.ig_steps, settings.ig_method))
    if name == "smoothgrad":
        return layout.to_units(smoothgrad(scorer, x, t, settings.smoothgrad_samples, inputs.noise_sd, inputs.generator))
    if name == "treeshap":
        from ._treeshap import treeshap

        return layout.to_units(treeshap(scorer.model, x, t))
    base = inputs.removal_baseline
    if name == "occlusion":
        return occlusion(scorer, layout, x, t, base, settings.patch_size or layout.default_patch())
    if name == "sobol":
        return sobol(scorer, layout, x, t, base, settings.sobol_grid or layout.default_grid(), settings.sobol_designs)
    if name == "rise":
        grid = settings.rise_grid or (max(2, min(7, layout.height // 2, layout.width // 2)) if layout.is_image else 0)
        return rise(scorer, layout, x, t, base, settings.rise_masks, grid, settings.rise_probability, inputs.rng)
    raise ValueError(f"unknown explainer {name!r}")
