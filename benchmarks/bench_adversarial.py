"""PGD and FGSM: ours (audit_robustness) against ART on the same model, data and settings, in one run.

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_adversarial.py [--device cpu|cuda] [--rows 5000] [--steps 10]

Model and data: the demo digit CNN (examples/demo/digits.pt, 8x8 images in
[0, 1]); its 500 audit images are tiled to --rows. Both sides attack the
same rows with the same epsilon, step size (2.5 eps / steps), steps, no
random start, clipping to [0, 1] and the same batch size. Printed: seconds,
the ratio, rows through the model (forward / backward), and both robust
accuracies on the final iterate, which must agree; ours also reports the
robust accuracy counting a row broken at any iterate (what the analysis
reports, never higher).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"


class CountingModule(torch.nn.Module):
    """Counts the rows ART sends forward (ART has no counters of its own)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x):
        self.rows += len(x)
        return self.inner(x)


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ours(model, x, y, attack, norm, eps, steps, factor, device):
    from audit_robustness._adversarial import attack as run_attack

    before = model.counters.snapshot()
    synchronise(device)
    start = time.perf_counter()
    result = run_attack(model, x, y, [eps], norm, steps, factor, np.float32(0.0), np.float32(1.0), False, None)
    synchronise(device)
    seconds = time.perf_counter() - start
    used = model.counters.since(before)
    final = 1.0 - result.final_wrong[0].mean()
    anywhere = 1.0 - result.broken[0].mean()
    return seconds, final, anywhere, used.forward_rows, used.backward_rows


def art(module_path, x, y, attack, norm, eps, steps, step, batch_size, device):
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    counting = CountingModule(torch.jit.load(str(module_path), map_location="cpu")).eval()
    classifier = PyTorchClassifier(
        model=counting, loss=torch.nn.CrossEntropyLoss(), input_shape=x.shape[1:], nb_classes=10,
        clip_values=(0.0, 1.0), device_type="gpu" if device.startswith("cuda") else "cpu",
    )
    art_norm = np.inf if norm == "linf" else 2
    if attack == "fgsm":
        attacker = FastGradientMethod(classifier, norm=art_norm, eps=eps, eps_step=eps, batch_size=batch_size)
    else:
        attacker = ProjectedGradientDescent(
            classifier, norm=art_norm, eps=eps, eps_step=step, max_iter=steps, num_random_init=0,
            batch_size=batch_size, verbose=False,
        )
    counting.rows = 0
    synchronise(device)
    start = time.perf_counter()
    x_adv = attacker.generate(x, y=y)
    # Robust accuracy needs one more pass over the adversarial inputs, as ours makes.
    robust = float(np.mean(classifier.predict(x_adv, batch_size=batch_size).argmax(1) == y))
    synchronise(device)
    seconds = time.perf_counter() - start
    return seconds, robust, counting.rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--eps-linf", type=float, default=0.1)
    parser.add_argument("--eps-l2", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side after one warm-up; the fastest is reported")
    args = parser.parse_args()

    from audit.models import load
    from audit.models.base import LoadOptions

    archive = np.load(DEMO / "digits.npz")
    repeats = -(-args.rows // len(archive["x"]))
    x = np.tile(archive["x"], (repeats, 1, 1, 1))[: args.rows].astype(np.float32)
    y = np.tile(archive["y"], repeats)[: args.rows].astype(np.int64)
    model = load(DEMO / "digits.pt", LoadOptions(device=args.device, batch_size=args.batch_size))
    clean = float(np.mean(model.predict(x).argmax(1) == y))
    print(f"device {model.device}, torch {torch.__version__}, {len(x)} rows of digits 8x8, clean accuracy {clean:.4f}, "
          f"steps {args.steps}, step 2.5 eps/steps, batch {args.batch_size}, no random start")

    factor = 2.5 / args.steps
    cases = [
        ("fgsm", "linf", args.eps_linf, 1, 1.0),
        ("pgd", "linf", args.eps_linf, args.steps, factor),
        ("pgd", "l2", args.eps_l2, args.steps, factor),
    ]
    for attack, norm, eps, steps, step_factor in cases:
        # One untimed warm-up each (CUDA kernels, TorchScript's profiling executor), then the fastest of --repeats.
        runs_ours = [ours(model, x, y, attack, norm, eps, steps, step_factor, model.device) for _ in range(1 + args.repeats)][1:]
        runs_art = [art(DEMO / "digits.pt", x, y, attack, norm, eps, steps, eps * step_factor, args.batch_size, model.device)
                    for _ in range(1 + args.repeats)][1:]
        our_s = min(r[0] for r in runs_ours)
        _, our_final, our_any, forward, backward = runs_ours[0]
        art_s = min(r[0] for r in runs_art)
        _, art_robust, art_rows = runs_art[0]
        agree = abs(our_final - art_robust) <= 0.005
        print(
            f"{attack.upper():4s} {norm:4s} eps={eps:g}: ours {our_s:7.3f} s  ART {art_s:7.3f} s  "
            f"ratio ART/ours {art_s / our_s:5.2f}x | robust accuracy ours {our_final:.4f} (any iterate {our_any:.4f}) "
            f"ART {art_robust:.4f} -> {'agree' if agree else 'DISAGREE'} | rows ours F {forward} FB {backward}, ART F {art_rows}"
        )


if __name__ == "__main__":
    main()
