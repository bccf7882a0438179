"""Full-batch L-BFGS and Adam for the leakage probes, without torch.optim.

torch.optim's constructors import torch._dynamo on first use, 0.8 s of a
ten-second audit run on the demo credit model; the probes need neither its
generality nor its hooks, only these two loops.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np


def minimise_lbfgs(loss_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray,
                   max_iter: int = 100, history: int = 20, tolerance_grad: float = 1e-7,
                   tolerance_change: float = 1e-10) -> np.ndarray:
    """Minimise a smooth function of a float64 vector by L-BFGS with a backtracking (Armijo) line search.

    Stops when the largest gradient entry is below ``tolerance_grad``, the loss
    changes by less than ``tolerance_change`` (or than its own float64
    resolution), the step by less than ``tolerance_change``, no step decreases
    the loss, or after ``max_iter`` iterations. Pairs with s'y <= 0 are not
    kept, so the two-loop recursion always gives a descent direction.
    """
    x = np.array(start, dtype=np.float64)
    loss, gradient = loss_and_gradient(x)
    pairs: deque = deque(maxlen=history)  # (s, y, 1 / y's)
    for _ in range(max_iter):
        if np.abs(gradient).max() <= tolerance_grad:
            break
        direction = -gradient.copy()
        alphas = []
        for s, y, rho in reversed(pairs):
            alpha = rho * s.dot(direction)
            direction -= alpha * y
            alphas.append(alpha)
        if pairs:
            s, y, _ = pairs[-1]
            direction *= s.dot(y) / y.dot(y)
        else:  # no curvature yet: a first step of unit length in the l1 sense, as torch.optim.LBFGS takes
            direction *= min(1.0, 1.0 / np.abs(gradient).sum())
        for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
            direction += s * (alpha - rho * y.dot(direction))
        slope = gradient.dot(direction)
        if slope > -tolerance_change:
            break
        step = 1.0
        while True:
            candidate = x + step * direction
            new_loss, new_gradient = loss_and_gradient(candidate)
            if new_loss <= loss + 1e-4 * step * slope:
                break
            step *= 0.5
            if step < 1e-10:  # no decrease the loss's precision can show: as converged as it gets
                return x
        s, y = candidate - x, new_gradient - gradient
        curvature = s.dot(y)
        if curvature > 1e-12:
            pairs.append((s, y, 1.0 / curvature))
        # A change within the loss's float64 resolution is no evidence of progress: stop rather than creep.
        resolution = 4 * np.finfo(np.float64).eps * abs(loss)
        converged = abs(new_loss - loss) <= max(tolerance_change, resolution) or np.abs(s).max() < tolerance_change
        x, loss, gradient = candidate, new_loss, new_gradient
        if converged:
            break
    return x


class Adam:
    """Adam (Kingma and Ba) over a list of torch tensors whose .grad the caller fills."""

    def __init__(self, parameters, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        import torch

        self.parameters = list(parameters)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.first = [torch.zeros_like(p) for p in self.parameters]
        self.second = [torch.zeros_like(p) for p in self.parameters]
        self.steps = 0

    def step(self) -> None:
        import torch

        self.steps += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.steps
        correction2 = 1 - beta2**self.steps
        with torch.no_grad():
            for p, m, v in zip(self.parameters, self.first, self.second):
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denominator = (v / correction2).sqrt_().add_(self.eps)
                p.addcdiv_(m, denominator, value=-self.lr / correction1)
                p.grad = None
