"""White-box FGSM and PGD (L-inf and L2) on the model's device, all epsilons of a batch attacked together.

Every attack step is one forward-and-backward pass of the model through
``Model.input_gradient`` (inputs-only gradients, parameters frozen, counted).
The rows of a batch are replicated once per epsilon, so one pass advances
the attack at every epsilon at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audit.toolkit import is_out_of_memory


def loss_gradient(model, x_adv, target):
    """(logits, d CE / d x): the cross-entropy gradient is minus that of log p(target)."""
    logits, grad = model.input_gradient(x_adv, target, output="log_probability")
    return logits, -grad


def _per_row(values, like):
    """Shape a (B,) tensor to broadcast against a (B, ...) batch."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def _row_norms(t):
    return t.flatten(1).norm(p=2, dim=1)


def ascend(x_adv, grad, step, norm: str):
    """One steepest-ascent step of length ``step`` (per row) in the given norm."""
    import torch

    if norm == "linf":
        return x_adv + _per_row(step, x_adv) * torch.sign(grad)
    unit = grad / _per_row(_row_norms(grad).clamp_min(1e-12), grad)
    return x_adv + _per_row(step, x_adv) * unit


def project(x_adv, x, eps, norm: str):
    """Back into the eps-ball around x (per-row eps)."""
    import torch

    delta = x_adv - x
    if norm == "linf":
        bound = _per_row(eps, delta)
        delta = torch.maximum(torch.minimum(delta, bound), -bound)
    else:
        norms = _row_norms(delta)
        factor = torch.where(norms > eps, eps / norms.clamp_min(1e-12), torch.ones_like(norms))
        delta = delta * _per_row(factor, delta)
    return x + delta


def clip(x_adv, lower, upper):
    import torch

    if lower is None:
        return x_adv
    return torch.maximum(torch.minimum(x_adv, upper), lower)


def random_start(x, eps, norm: str, generator):
    import torch

    if norm == "linf":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        return x + noise * _per_row(eps, x)
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / _per_row(_row_norms(direction).clamp_min(1e-12), x)
    d = x[0].numel()
    radius = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype) ** (1.0 / d) * eps
    return x + direction * _per_row(radius, x)


def _starting_point(x, eps, norm: str, scale, lower, upper, start_random: bool, generator):
    """(x_adv, scale, safe_scale): the first iterate (x, or a seeded point in the ball) and the ball's per-entry scale."""
    import torch

    if scale is None:
        scale = torch.ones((1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    safe_scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    x_adv = x.clone()
    if start_random:
        delta = project(random_start(torch.zeros_like(x), eps, norm, generator), torch.zeros_like(x), eps, norm)
        x_adv = clip(x + delta * scale, lower, upper)
    return x_adv, scale, safe_scale


def _scaled_step(x_adv, x, grad, scale, safe_scale, step_size, eps, norm: str, lower, upper):
    """One PGD step taken in the rescaled space (where the gradient is grad * scale), projected and clipped back."""
    import torch

    delta = ascend((x_adv - x) / safe_scale, grad * scale, step_size, norm)
    delta = project(delta, torch.zeros_like(delta), eps, norm)
    return clip(x + delta * scale, lower, upper).detach()


def _linf_box(x, eps, lower, upper):
    """The L-inf ball around each row intersected with the data bounds: the (low, high) a plain step clamps to."""
    import torch

    radius = _per_row(eps, x)
    low, high = x - radius, x + radius
    if lower is not None:
        low, high = torch.maximum(low, lower), torch.minimum(high, upper)
    return low, high


def pgd(model, x, target, eps, norm: str, steps: int, step_size, lower=None, upper=None, start_random=False,
        generator=None, scale=None):
    """Untargeted PGD on device tensors; FGSM is ``steps=1, step_size=eps``.

    ``eps`` and ``step_size`` are per-row tensors. ``scale`` (broadcast
    against one row, e.g. each tabular feature's standard deviation) makes the
    ball that of the rescaled input x / scale; None is the plain ball.
    Returns (x_adv, broken, final prediction): ``broken`` is True where any
    iterate, each inside the ball and the bounds, was misclassified, which
    includes the final one (one extra forward pass).
    """
    import torch

    if scale is None and norm == "linf" and not start_random:
        return _pgd_linf_plain(model, x, target, eps, steps, step_size, lower, upper)
    x_adv, scale, safe_scale = _starting_point(x, eps, norm, scale, lower, upper, start_random, generator)
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        logits, grad = loss_gradient(model, x_adv, target)
        broken |= logits.argmax(dim=1) != target
        x_adv = _scaled_step(x_adv, x, grad, scale, safe_scale, step_size, eps, norm, lower, upper)
    with torch.no_grad():
        final = model.logits_torch(x_adv).argmax(dim=1)
    broken |= final != target
    return x_adv, broken, final


def _pgd_linf_plain(model, x, target, eps, steps: int, step_size, lower, upper):
    """The common case (L-inf, no feature scaling, no random start) in three element-wise ops a step.

    The eps-ball and the data bounds are intersected once, so a step is
    add, sign and one clamp: the same iterates as ascend/project/clip up to
    float rounding, with a third of the memory traffic.
    """
    import torch

    low, high = _linf_box(x, eps, lower, upper)
    step = _per_row(step_size, x)
    x_adv = x.clone()
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        logits, grad = loss_gradient(model, x_adv, target)
        broken |= logits.argmax(dim=1) != target
        x_adv = torch.clamp(x_adv + step * torch.sign(grad), low, high).detach()
    with torch.no_grad():
        final = model.logits_torch(x_adv).argmax(dim=1)
    broken |= final != target
    return x_adv, broken, final


def pgd_until_broken(model, x, target, eps, norm: str, steps: int, step_size, lower=None, upper=None, start_random=False,
                     generator=None, scale=None):
    """PGD that stops attacking a row once an iterate is misclassified: the same ``broken`` as `pgd`, in fewer passes.

    A row counts as broken when any iterate fools the model, so the iterates after the
    first that does cannot change it; only the rows still standing go forward and
    backward at the next step. Returns (x_adv, broken, predicted): for a broken row its
    first fooling iterate and the class it got there, for the others the final ones.
    """
    import torch

    plain = scale is None and norm == "linf" and not start_random
    x_adv, scale, safe_scale = _starting_point(x, eps, norm, scale, lower, upper, start_random, generator)
    if plain:  # the ball and the data bounds intersected once, as in _pgd_linf_plain
        low, high = _linf_box(x, eps, lower, upper)
    broken = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    predicted = target.clone()
    standing = torch.arange(len(x), device=x.device)
    for _ in range(steps):
        logits, grad = loss_gradient(model, x_adv[standing], target[standing])
        classes = logits.argmax(dim=1)
        fooled = classes != target[standing]
        broken[standing[fooled]] = True
        predicted[standing[fooled]] = classes[fooled]
        standing, grad = standing[~fooled], grad[~fooled]
        if len(standing) == 0:
            return x_adv, broken, predicted
        current, origin = x_adv[standing], x[standing]
        step = step_size[standing]
        if plain:
            moved = torch.clamp(current + _per_row(step, current) * torch.sign(grad), low[standing], high[standing])
        else:
            moved = _scaled_step(current, origin, grad, scale, safe_scale, step, eps[standing], norm, lower, upper)
        x_adv[standing] = moved.detach()
    with torch.no_grad():
        final = model.logits_torch(x_adv[standing]).argmax(dim=1)
    broken[standing[final != target[standing]]] = True
    predicted[standing] = final
    return x_adv, broken, predicted


def _on_device(model, lower_np, upper_np, scale_np):
    """The data bounds and the ball's scale as tensors on the model's device (None stays None)."""
    import torch

    device = model.device
    lower = None if lower_np is None else torch.as_tensor(lower_np, device=device)
    upper = None if upper_np is None else torch.as_tensor(upper_np, device=device)
    scale = None if scale_np is None else torch.as_tensor(np.asarray(scale_np, dtype=np.float32), device=device)
    return lower, upper, scale


def _halved_after(error: Exception, chunk: int, device) -> int:
    """The chunk to retry with after ``error``: half, on out-of-memory with more than one row; otherwise re-raise it."""
    if not (is_out_of_memory(error) and chunk > 1):
        raise error
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
    return max(1, chunk // 2)


@dataclass
class AttackResult:
    broken: np.ndarray  # (E, N): misclassified at some iterate, at each epsilon
    final_wrong: np.ndarray  # (E, N): misclassified at the final iterate only
    examples: np.ndarray | None  # (E, k, ...) adversarial inputs of the first k rows
    example_predictions: np.ndarray | None  # (E, k)


def attack_until_broken(model, x_np, y_np, epsilons, norm: str, steps: int, step_factor: float, lower_np, upper_np,
                        start_random: bool, generator, progress=None, keep: int = 0, scale_np=None,
                        attack_rows: np.ndarray | None = None, clean_predictions: np.ndarray | None = None) -> AttackResult:
    """Attack the rows epsilon by epsilon, smallest first, each row only while no attack has broken it.

    An adversarial input inside a smaller ball lies inside every larger one, so a row
    broken at one epsilon is broken at all larger ones without another pass; within an
    epsilon, PGD stops on a row at its first fooling iterate (`pgd_until_broken`).
    Rows outside ``attack_rows`` (those the model already gets wrong) are not attacked
    and count as broken everywhere; ``clean_predictions`` are their classes in the examples.
    ``broken`` is monotone in epsilon, and ``final_wrong`` equals it: an attack that
    stops on success has no later iterate.
    """
    import torch

    device = model.device
    n = len(x_np)
    n_eps = len(epsilons)
    lower, upper, scale = _on_device(model, lower_np, upper_np, scale_np)
    broken = np.zeros((n_eps, n), dtype=bool)
    standing = np.ones(n, dtype=bool) if attack_rows is None else np.asarray(attack_rows, dtype=bool).copy()
    kept = min(keep, n)
    examples = np.repeat(np.asarray(x_np[:kept], dtype=np.float32)[None], n_eps, axis=0) if kept else None
    example_rows = np.asarray(x_np[:kept], dtype=np.float32).copy() if kept else None  # each row's latest adversarial input
    example_classes = (np.asarray(clean_predictions[:kept]) if clean_predictions is not None else np.asarray(y_np[:kept])).copy()
    predictions = np.zeros((n_eps, kept), dtype=np.int64) if kept else None
    chunk = max(1, model.gradient_batch_size)
    for e, eps in enumerate(epsilons):
        broken[e] = ~standing
        index = np.flatnonzero(standing)
        start = 0
        while start < len(index):
            rows = index[start:start + chunk]
            xb = torch.as_tensor(np.ascontiguousarray(x_np[rows]), dtype=torch.float32, device=device)
            yb = torch.as_tensor(y_np[rows], dtype=torch.int64, device=device)
            eps_t = torch.full((len(rows),), float(eps), dtype=torch.float32, device=device)
            try:
                x_adv, hit, classes = pgd_until_broken(model, xb, yb, eps_t, norm, steps, eps_t * step_factor, lower, upper,
                                                       start_random, generator, scale)
            except Exception as error:  # noqa: BLE001 - only out-of-memory is retried, with half the rows
                chunk = _halved_after(error, chunk, device)
                continue
            hit = hit.cpu().numpy()
            broken[e, rows] = hit
            standing[rows[hit]] = False
            shown = rows < kept
            if shown.any():
                picked = torch.as_tensor(np.flatnonzero(shown), device=device)
                example_rows[rows[shown]] = x_adv[picked].cpu().numpy()
                example_classes[rows[shown]] = classes[picked].cpu().numpy()
            start += len(rows)
        if progress is not None:  # the bar counts rows x epsilons as the exhaustive attack does
            progress.advance(n * (e + 1) // n_eps - n * e // n_eps)
        if kept:
            examples[e], predictions[e] = example_rows, example_classes
    return AttackResult(broken, broken.copy(), examples, predictions)


def attack(model, x_np, y_np, epsilons, norm: str, steps: int, step_factor: float, lower_np, upper_np,
           start_random: bool, generator, progress=None, keep: int = 0, scale_np=None) -> AttackResult:
    """Attack every row at every epsilon for every step: rows x epsilons replicated into one batch per step."""
    import torch

    device = model.device
    n_eps = len(epsilons)
    eps_t = torch.as_tensor(np.asarray(epsilons, dtype=np.float32), device=device)
    lower, upper, scale = _on_device(model, lower_np, upper_np, scale_np)
    n = len(x_np)
    broken = np.zeros((n_eps, n), dtype=bool)
    final_wrong = np.zeros((n_eps, n), dtype=bool)
    examples = predictions = None
    chunk = max(1, model.gradient_batch_size // n_eps)
    start = 0
    while start < n:
        rows = slice(start, min(n, start + chunk))
        xb = torch.as_tensor(np.ascontiguousarray(x_np[rows]), dtype=torch.float32, device=device)
        yb = torch.as_tensor(y_np[rows], dtype=torch.int64, device=device)
        b = len(xb)
        x_rep = xb.repeat(n_eps, *([1] * (xb.dim() - 1)))  # epsilon-major: rows of eps 0, then eps 1, ...
        y_rep = yb.repeat(n_eps)
        eps_rep = eps_t.repeat_interleave(b)
        try:
            x_adv, hit, final = pgd(model, x_rep, y_rep, eps_rep, norm, steps, eps_rep * step_factor, lower, upper, start_random, generator, scale)
        except Exception as error:  # noqa: BLE001 - only out-of-memory is retried, with half the rows
            chunk = _halved_after(error, chunk, device)
            continue
        broken[:, rows] = hit.view(n_eps, b).cpu().numpy()
        final_wrong[:, rows] = (final != y_rep).view(n_eps, b).cpu().numpy()
        if keep and examples is None:
            k = min(keep, b)
            examples = x_adv.view(n_eps, b, *xb.shape[1:])[:, :k].cpu().numpy()
            predictions = final.view(n_eps, b)[:, :k].cpu().numpy()
        if progress is not None:
            progress.advance(b)
        start += b
    return AttackResult(broken, final_wrong, examples, predictions)

