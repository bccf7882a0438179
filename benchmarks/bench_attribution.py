"""Benchmark: our Integrated Gradients against Captum's, and our deletion curves against Quantus' PixelFlipping, same model and data.

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_attribution.py [--rows 64] [--size 28] [--steps 50] [--device cpu]

Both comparisons run in one process on one seeded CNN and one batch of seeded
images; each pair must agree (maximum absolute difference printed) before any
time is reported. Quantus is LGPL and used here only, never by the package.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from audit.testing import model_from_module
from audit_attribution._core import Layout, ModelScorer
from audit_attribution._explainers import integrated_gradients
from audit_attribution._metrics import removal_curves


def seeded_cnn(size: int, n_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, n_classes),
    ).eval()


def best_of(function, repeats: int = 3):
    """Run once to warm up, then keep the best of ``repeats`` timings and the last result."""
    result = function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    module = seeded_cnn(args.size)
    model = model_from_module(module, device=args.device, input_shape=(1, args.size, args.size))
    rng = np.random.default_rng(0)
    x = rng.random((args.rows, 1, args.size, args.size)).astype(np.float32)
    targets = model.predict(x).argmax(1)
    print(f"model: seeded CNN on 1x{args.size}x{args.size}, {args.rows} rows, device {model.device}, torch threads {torch.get_num_threads()}")

    # -- Integrated Gradients: Gauss-Legendre, zero baseline, probability of the predicted class.
    from captum.attr import IntegratedGradients

    baseline = np.zeros_like(x)
    forward = lambda t: torch.softmax(model.module(t), dim=1)  # noqa: E731
    x_t = torch.as_tensor(x, device=model.device)
    t_t = torch.as_tensor(targets, device=model.device)
    captum_ig = IntegratedGradients(forward)

    def run_captum():
        return captum_ig.attribute(x_t, baselines=torch.zeros_like(x_t), target=t_t, n_steps=args.steps,
                                   method="gausslegendre", internal_batch_size=model.batch_size).detach().cpu().numpy()

    def run_ours():
        return integrated_gradients(ModelScorer(model, "probability"), x, targets, baseline, args.steps, "gausslegendre")

    captum_seconds, captum_map = best_of(run_captum)
    ours_seconds, our_map = best_of(run_ours)
    difference = float(np.abs(captum_map - our_map).max())
    print(f"IG ({args.steps} Gauss-Legendre steps, zero baseline): max |captum - ours| = {difference:.2e} "
          f"(largest attribution {np.abs(captum_map).max():.2e})")
    assert difference <= 1e-5 * max(1.0, float(np.abs(captum_map).max())), "IG maps disagree"
    print(f"IG time: captum {captum_seconds:.3f} s, ours {ours_seconds:.3f} s, captum/ours = {captum_seconds / ours_seconds:.2f}x")

    # -- Deletion (pixel flipping): one pixel per step, removed pixels set to each image's minimum
    # (Quantus' "black"), ordered by the IG map. A deterministic tiny tie-breaker makes both
    # libraries use the same order where the map has exact ties.
    import quantus

    attribution = our_map.reshape(args.rows, -1) + 1e-12 * np.arange(args.size * args.size)[None, ::-1]
    attribution = attribution.reshape(x.shape)
    metric = quantus.PixelFlipping(features_in_step=1, perturb_baseline="black", abs=False, normalise=False,
                                   disable_warnings=True, display_progressbar=False)

    def run_quantus():
        return np.asarray(metric(model=module, x_batch=x, y_batch=targets, a_batch=attribution, device=args.device,
                                 softmax=True, channel_first=True, batch_size=args.rows))

    layout = Layout(x.shape[1:], "image")
    black = np.broadcast_to(x.reshape(args.rows, -1).min(axis=1)[:, None, None, None], x.shape).astype(np.float32)
    flat = attribution.reshape(args.rows, -1)
    ranks = np.argsort(-flat, axis=1, kind="stable").argsort(axis=1)[None]
    scorer = ModelScorer(model, "probability")

    def run_our_deletion():
        deletion, _, _ = removal_curves(scorer, layout, x, black, targets, ranks, layout.n_units, insertion=False)
        return deletion[0]

    # Quantus runs one step at a time; a single timing of it is enough.
    start = time.perf_counter()
    quantus_curves = run_quantus()
    quantus_seconds = time.perf_counter() - start
    ours_seconds, our_curves = best_of(run_our_deletion, repeats=1)
    # Our curve starts at the unperturbed input; Quantus' starts after the first pixel.
    difference = float(np.abs(quantus_curves - our_curves[:, 1:]).max())
    print(f"deletion ({layout.n_units} single-pixel steps, {args.rows} rows): max |quantus - ours| = {difference:.2e}")
    assert difference <= 1e-5, "deletion curves disagree"
    print(f"deletion time: quantus {quantus_seconds:.3f} s, ours {ours_seconds:.3f} s, "
          f"quantus/ours = {quantus_seconds / ours_seconds:.2f}x")


if __name__ == "__main__":
    main()
