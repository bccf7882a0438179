"""Common corruptions (Hendrycks and Dietterich) for images and their tabular counterparts.

Image corruptions work on a batch in [0, 1] space, shape (N, C, H, W): the
caller maps the data's own range there and back. Severity 0 is the identity
for every corruption; 1 to 5 follow the ImageNet-C parameters, with the blur
and pixelation scaled to the image size.
"""

from __future__ import annotations

import io

import numpy as np

IMAGE_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "gaussian_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg",
)
TABULAR_CORRUPTIONS = ("gaussian_noise", "feature_dropout")
# Tables with categorical columns (category codes in x) also get this; the others leave those columns alone.
CATEGORICAL_CORRUPTIONS = ("category_swap",)

# Index = severity (0 is the identity). ImageNet-C values unless noted.
GAUSSIAN_SIGMA = (0.0, 0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_PHOTONS = (None, 60.0, 25.0, 12.0, 5.0, 3.0)
IMPULSE_AMOUNT = (0.0, 0.03, 0.06, 0.09, 0.17, 0.27)
# CIFAR-10-C blur sigmas (32 px images), scaled with side/32 for larger images.
BLUR_SIGMA_32PX = (0.0, 0.4, 0.6, 0.7, 0.8, 1.0)
# Brightening towards white: u + c (1 - u). An affine map that needs no
# clipping, so a model that standardises each input is exactly invariant.
BRIGHTNESS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
CONTRAST = (1.0, 0.4, 0.3, 0.2, 0.1, 0.05)
PIXELATE = (1.0, 0.6, 0.5, 0.4, 0.3, 0.25)
JPEG_QUALITY = (None, 25, 18, 15, 10, 7)

# Tabular: Gaussian noise in units of each feature's standard deviation, and
# the share of entries replaced by their feature's mean.
TABULAR_NOISE = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
TABULAR_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def describe(name: str, severity: int, image_side: int | None = None) -> str:
    """The parameter a corruption uses at a severity, for the report."""
    table = {
        "gaussian_noise": lambda s: f"sigma {GAUSSIAN_SIGMA[s]} of the range" if image_side else f"sigma {TABULAR_NOISE[s]} std",
        "shot_noise": lambda s: f"{SHOT_PHOTONS[s]} photons at full scale" if s else "none",
        "impulse_noise": lambda s: f"{IMPULSE_AMOUNT[s]:.0%} salt and pepper",
        "gaussian_blur": lambda s: f"sigma {blur_sigma(s, image_side or 32):.2f} px",
        "brightness": lambda s: f"u + {BRIGHTNESS[s]} (1 - u)",
        "contrast": lambda s: f"contrast x{CONTRAST[s]}",
        "pixelate": lambda s: f"resampled to {PIXELATE[s]:.0%} size",
        "jpeg": lambda s: f"JPEG quality {JPEG_QUALITY[s]}" if s else "none",
        "feature_dropout": lambda s: f"{TABULAR_DROPOUT[s]:.0%} of entries set to the feature mean",
        "category_swap": lambda s: f"{TABULAR_DROPOUT[s]:.0%} of categorical entries swapped for another category",
    }
    return table[name](severity)


def blur_sigma(severity: int, side: int) -> float:
    return BLUR_SIGMA_32PX[severity] * max(1.0, side / 32.0)


def corrupt_image(name: str, u: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Corrupt a (N, C, H, W) float batch in [0, 1]; returns a new float32 array in [0, 1]."""
    if severity == 0:
        return u.copy()
    function = _IMAGE_FUNCTIONS[name]
    out = function(u.astype(np.float32, copy=False), severity, rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _gaussian_noise(u, s, rng):
    return u + rng.normal(0.0, GAUSSIAN_SIGMA[s], size=u.shape).astype(np.float32)


def _shot_noise(u, s, rng):
    photons = SHOT_PHOTONS[s]
    return (rng.poisson(np.clip(u, 0, 1) * photons) / photons).astype(np.float32)


def _impulse_noise(u, s, rng):
    amount = IMPULSE_AMOUNT[s]
    draw = rng.random(u.shape)
    out = u.copy()
    out[draw < amount / 2] = 0.0
    out[(draw >= amount / 2) & (draw < amount)] = 1.0
    return out


def _gaussian_blur(u, s, rng):
    import torch
    import torch.nn.functional as F

    n, c, h, w = u.shape
    sigma = blur_sigma(s, max(h, w))
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = torch.from_numpy(np.ascontiguousarray(u)).reshape(n * c, 1, h, w)
    # Reflect padding cannot exceed the image side; replicate is the fallback.
    mode = "reflect" if radius < min(h, w) else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))  # along width
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))  # along height
    return x.reshape(n, c, h, w).numpy()


def _brightness(u, s, rng):
    c = BRIGHTNESS[s]
    return u + c * (1.0 - u)


def _contrast(u, s, rng):
    c = CONTRAST[s]
    means = u.mean(axis=(1, 2, 3), keepdims=True)
    return (u - means) * c + means


def _pixelate(u, s, rng):
    import torch
    import torch.nn.functional as F

    n, c, h, w = u.shape
    # int() truncates, as ImageNet-C's resize does; rounding would make severity
    # 1 finer than 2 on tiny images yet distort more (8 -> 5 -> 8 pixels).
    small = (max(1, int(h * PIXELATE[s])), max(1, int(w * PIXELATE[s])))
    x = torch.from_numpy(np.ascontiguousarray(u))
    x = F.adaptive_avg_pool2d(x, small)  # box filter down, as PIL's BOX resize
    x = F.interpolate(x, size=(h, w), mode="nearest")
    return x.numpy()


def _jpeg(u, s, rng):
    """Round-trip each image through libjpeg (Pillow): the real codec, chroma subsampling included."""
    from PIL import Image

    quality = JPEG_QUALITY[s]
    n, c, h, w = u.shape
    pixels = np.round(np.clip(u, 0, 1) * 255).astype(np.uint8)
    out = np.empty_like(pixels)
    for i in range(n):
        if c == 3:
            planes = [(Image.fromarray(np.moveaxis(pixels[i], 0, -1), mode="RGB"), slice(None))]
        else:  # grey, or channels that are not RGB: each plane on its own
            planes = [(Image.fromarray(pixels[i, k], mode="L"), k) for k in range(c)]
        for image, where in planes:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(quality))
            buffer.seek(0)
            decoded = np.asarray(Image.open(buffer).convert(image.mode))
            if c == 3:
                out[i] = np.moveaxis(decoded, -1, 0)
            else:
                out[i, where] = decoded
    return out.astype(np.float32) / 255.0


_IMAGE_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "gaussian_blur": _gaussian_blur,
    "brightness": _brightness,
    "contrast": _contrast,
    "pixelate": _pixelate,
    "jpeg": _jpeg,
}


def corrupt_tabular(name: str, x: np.ndarray, severity: int, rng: np.random.Generator, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Tabular corruption in the data's own units; ``mean``/``std`` per feature."""
    if severity == 0:
        return x.copy()
    if name == "gaussian_noise":
        noise = rng.normal(size=x.shape).astype(np.float32)
        return (x + noise * (TABULAR_NOISE[severity] * std)).astype(np.float32)
    if name == "feature_dropout":
        dropped = rng.random(x.shape) < TABULAR_DROPOUT[severity]
        return np.where(dropped, np.broadcast_to(mean, x.shape), x).astype(np.float32)
    raise ValueError(f"unknown tabular corruption {name!r}")


def swap_categories(x: np.ndarray, severity: int, rng: np.random.Generator, columns: list[int], counts: list[int]) -> np.ndarray:
    """Each entry of the categorical ``columns`` (codes 0..count-1), with probability TABULAR_DROPOUT[severity],
    replaced by one of its column's other categories, uniformly; every other column untouched."""
    out = x.copy()
    if severity == 0:
        return out
    for column, count in zip(columns, counts):
        if count < 2:
            continue
        swapped = rng.random(len(x)) < TABULAR_DROPOUT[severity]
        other = (x[:, column].astype(np.int64) + rng.integers(1, count, size=len(x))) % count
        out[:, column] = np.where(swapped, other, x[:, column])
    return out
