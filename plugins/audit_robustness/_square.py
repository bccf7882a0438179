"""Square attack (Andriushchenko et al., 2020), L-inf, score-based: black-box, any model that predicts.

Random search over the vertices of the L-inf ball: start from vertical
stripes of +-eps, then each iteration redraws one random square window (its
side shrinking on the paper's schedule) to +-eps per channel and keeps the
change if the margin loss (logit of the label minus the best other logit)
went down. Rows already misclassified stop querying; all rows still being
attacked go through the model together, one batched predict per iteration.

Tabular rows have no spatial layout, so the "square" is a random subset of
p * features entries, each set to +-eps (the same random search on the ball's
vertices, without a locality prior that tabular columns do not have).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def p_selection(p_init: float, iteration: int, budget: int) -> float:
    """The paper's schedule of the share of pixels changed, halved at fixed points of a 10 000-query run."""
    it = int(iteration / max(budget, 1) * 10000)
    for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256)):
        if it <= bound:
            return p_init / divisor
    return p_init / 512


def margins(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """logit[target] - max over the other classes; <= 0 means misclassified."""
    rows = np.arange(len(target))
    own = logits[rows, target]
    others = logits.copy()
    others[rows, target] = -np.inf
    return own - others.max(axis=1)


def ball_limits(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """float32 bounds of the eps-ball around x, rounded inwards so |x_adv - x| <= eps holds exactly."""
    x64 = x.astype(np.float64)
    low = (x64 - eps).astype(np.float32)
    low = np.where(x64 - low.astype(np.float64) > eps, np.nextafter(low, np.float32(np.inf)), low)
    high = (x64 + eps).astype(np.float32)
    high = np.where(high.astype(np.float64) - x64 > eps, np.nextafter(high, np.float32(-np.inf)), high)
    return low, high


@dataclass
class SquareResult:
    x_adv: np.ndarray
    queries: np.ndarray  # per row, the clean pass not counted (it is the run's shared pass)
    robust: np.ndarray  # correctly classified at the end (margin > 0)
    fooled_by_attack: np.ndarray  # correct on clean data, misclassified after the attack


def square_attack(predict_logits, x, y, clean_logits, eps: float, budget: int, p_init: float, rng,
                  lower=None, upper=None, layout=None, progress=None, scale=None) -> SquareResult:
    """Run the attack; ``predict_logits(batch) -> logits`` is one counted batched pass.

    ``layout`` turns rows into (N, C, H, W) and back for images; None treats
    rows as flat feature vectors. ``scale`` (one row's shape) multiplies the
    radius per entry: each feature's std for tabular data.

    Longer than 60 lines on purpose: it is the one query loop of the
    published algorithm, with the per-row state (best loss, queries, margin)
    threaded through it; the square proposals are already a helper.
    """
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    to_grid = (lambda a: layout.to_nchw(a)) if layout else (lambda a: a.reshape(len(a), -1))
    from_grid = (lambda a: layout.from_nchw(a)) if layout else (lambda a: a.reshape((len(a),) + x.shape[1:]))
    grid = to_grid(x)
    # The ball is checked in float64 against the radius as given; the steps use its float32 value.
    exact_radius = float(eps) if scale is None else to_grid(np.broadcast_to(float(eps) * scale.astype(np.float64), (1,) + x.shape[1:]))
    radius = np.asarray(exact_radius, dtype=np.float32)
    ball_low, ball_high = ball_limits(grid, exact_radius)
    if lower is not None:
        lower_grid = to_grid(np.broadcast_to(lower, x.shape).astype(np.float32))
        upper_grid = to_grid(np.broadcast_to(upper, x.shape).astype(np.float32))
    else:
        lower_grid = upper_grid = None

    def constrain(candidate, rows):
        if lower_grid is not None:
            candidate = np.clip(candidate, lower_grid[rows], upper_grid[rows])
        return np.clip(candidate, ball_low[rows], ball_high[rows])

    margin_best = margins(clean_logits, y)
    queries = np.zeros(n, dtype=np.int64)
    clean_correct = margin_best > 0
    best = grid.copy()
    if budget < 1 or not clean_correct.any():
        return SquareResult(x.copy(), queries, clean_correct, np.zeros(n, dtype=bool))

    # Stripes: one sign per channel and column, as in the paper's initialisation.
    rows = np.flatnonzero(clean_correct)
    if layout:
        c, h, w = grid.shape[1:]
        stripes = radius * rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(len(rows), c, 1, w))
    else:
        stripes = radius * rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(len(rows), grid.shape[1]))
    best[rows] = constrain(grid[rows] + stripes, rows)
    margin_best[rows] = margins(predict_logits(from_grid(best[rows])), y[rows])
    queries[rows] += 1
    if progress is not None:
        progress.advance(1)

    for iteration in range(1, budget):
        rows = np.flatnonzero(margin_best > 0)
        if len(rows) == 0:
            break
        p = p_selection(p_init, iteration, budget)
        delta = best[rows] - grid[rows]
        if layout:
            side = int(min(max(round(math.sqrt(p * h * w)), 1), max(h - 1, 1)))
            top = rng.integers(0, h - side + 1, size=len(rows))
            left = rng.integers(0, w - side + 1, size=len(rows))
            in_rows = (np.arange(h)[None, :] >= top[:, None]) & (np.arange(h)[None, :] < top[:, None] + side)
            in_cols = (np.arange(w)[None, :] >= left[:, None]) & (np.arange(w)[None, :] < left[:, None] + side)
            window = (in_rows[:, :, None] & in_cols[:, None, :])[:, None, :, :]  # (m, 1, h, w)
            signs = radius * rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(len(rows), c, 1, 1))
            delta = np.where(window, np.broadcast_to(signs, delta.shape), delta)
        else:
            features = grid.shape[1]
            count = int(min(max(round(p * features), 1), features))
            chosen = rng.random((len(rows), features)).argsort(axis=1).argsort(axis=1) < count
            signs = radius * rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(len(rows), features))
            delta = np.where(chosen, signs, delta)
        candidate = constrain(grid[rows] + delta.astype(np.float32), rows)
        candidate_margin = margins(predict_logits(from_grid(candidate)), y[rows])
        queries[rows] += 1
        improved = candidate_margin < margin_best[rows]
        best[rows[improved]] = candidate[improved]
        margin_best[rows[improved]] = candidate_margin[improved]
        if progress is not None:
            progress.advance(1)

    robust = margin_best > 0
    return SquareResult(from_grid(best), queries, robust, clean_correct & ~robust)
