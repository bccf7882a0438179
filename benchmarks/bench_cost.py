"""Benchmark: a full default audit of a CIFAR-style ResNet-14, per analysis, against the cost model's plan; and ResNet-50 projected.

    python -m benchmarks.bench_cost [--rows 1000] [--threads 2] [--device cpu] [--modes full quick]

Builds a ResNet-14 (three stages of two basic blocks, widths 16/32/64), trains it for a
few seeded epochs on 797 of scikit-learn's digits upsampled to 3x32x32, and audits it on
the other 1,000 with one random protected attribute, in a temporary folder; runs `audit run` on them as a user would (one
process per mode: the default audit, then `--quick`), timing the whole command,
and reads back from the store each analysis's seconds and passes beside the plan
the run printed and stored. Then it projects a ResNet-50 on 224x224 images (the
same default audit on 1,000 rows) from the cost model, with the per-row speed of a
seeded ResNet-50 measured here on the chosen device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    def __init__(self, inputs: int, width: int, stride: int):
        super().__init__()
        outputs = 4 * width
        self.body = nn.Sequential(
            nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, outputs, 1, bias=False), nn.BatchNorm2d(outputs),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet14(n_classes: int = 10) -> nn.Module:
    """CIFAR-style: a 3x3 stem, three stages of two basic blocks (16, 32, 64 channels), global pooling."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    inputs = 16
    for width, stride in ((16, 1), (32, 2), (64, 2)):
        layers += [BasicBlock(inputs, width, stride), BasicBlock(width, width, 1)]
        inputs = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes)]
    return nn.Sequential(*layers).eval()


def resnet50(n_classes: int = 1000) -> nn.Module:
    """ImageNet ResNet-50: 7x7 stem, bottleneck stages of 3, 4, 6, 3 blocks."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    inputs = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(inputs, width, stride if i == 0 else 1))
            inputs = 4 * width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, n_classes)]
    return nn.Sequential(*layers).eval()


def digits_images(side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits as 3 x side x side images in [0, 1] (bilinear upsampling, grey in RGB)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    large = torch.nn.functional.interpolate(small, size=(side, side), mode="bilinear", align_corners=False)
    return large.repeat(1, 3, 1, 1).clamp(0, 1).numpy(), digits.target.astype(np.int64)


def train(module: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 6, seed: int = 0) -> nn.Module:
    """A few seeded epochs of Adam: enough for a model whose outputs depend on its input (a random ResNet's barely do)."""
    torch.manual_seed(seed)
    module.train()
    optimiser = torch.optim.Adam(module.parameters(), lr=3e-3)
    order = np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in np.array_split(order.permutation(len(x)), max(1, len(x) // 64)):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(module(torch.from_numpy(x[batch])), torch.from_numpy(y[batch]))
            loss.backward()
            optimiser.step()
    return module.eval()


def write_inputs(folder: Path, rows: int) -> tuple[Path, Path]:
    """A ResNet-14 trained briefly on scikit-learn's digits (32x32 RGB), audited on ``rows`` images it did not see.

    A model with random weights predicts one class for nearly every input and no attack
    moves it: the attacks' early stop would never fire and the benchmark would show
    their worst case only. Trained, it behaves as the models users bring.
    """
    x, y = digits_images()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    audited, trained_on = order[:rows], order[rows:]
    if len(trained_on) < 200:
        raise SystemExit(f"--rows {rows}: at most {len(x) - 200} of the 1,797 digits can be audited (the rest train the model)")
    module = train(resnet14(), x[trained_on], y[trained_on])
    model_path = folder / "resnet14.pt"
    torch.jit.trace(module, torch.zeros(1, 3, 32, 32)).save(str(model_path))
    data_path = folder / "images.npz"
    np.savez(data_path, x=x[audited], y=y[audited], group=rng.integers(0, 2, len(audited)), attributes=np.array(["group"]))
    return model_path, data_path


def run_mode(model_path: Path, data_path: Path, folder: Path, mode: str, threads: int, device: str) -> dict:
    db = folder / f"{mode}.db"
    command = [sys.executable, "-m", "audit", "run", str(model_path), "--data", str(data_path), "--db", str(db),
               "--threads", str(threads), "--device", device, "--fail-on", "never", "--report", str(folder / f"{mode}.html")]
    if mode == "quick":
        command.append("--quick")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{mode}: audit run exited {done.returncode}\n{done.stderr[-3000:]}")
    from audit.store import Store

    store = Store(str(db))
    run = store.runs()[0]
    results = []
    for r in store.results(run.id):
        plan = r.plan or {}
        results.append({"analysis": r.analysis, "status": r.status, "seconds": r.seconds, "forward_rows": r.forward_rows,
                        "backward_rows": r.backward_rows, "planned_seconds": plan.get("seconds"),
                        "planned_forward_rows": plan.get("forward_rows"), "planned_backward_rows": plan.get("backward_rows"),
                        "fewest_seconds": plan.get("fewest_seconds"),
                        "reduced": plan.get("reduced") or {}})
    plan_lines = [line for line in done.stderr.splitlines() if line.startswith(("Plan", "  "))]
    return {"mode": mode, "wall_seconds": wall, "results": results, "calibration": (run.cost_plan or {}).get("calibration"),
            "clean_seconds": run.clean_seconds, "plan_lines": plan_lines}


def resnet50_projection(device: str, rows: int) -> dict:
    """The default audit of a ResNet-50 on ``rows`` 224x224 images, by the cost model, at the speed measured here."""
    from audit import cost
    from audit.plugins import get_plugin_manager
    from audit.runner import build_options
    from audit.testing import model_from_module

    model = model_from_module(resnet50().to(device), device=device, input_shape=(3, 224, 224))
    x = np.random.default_rng(0).random((64, 3, 224, 224), dtype=np.float32)
    model.fit_batch_size(x.shape[1:])
    model.predict(x[:2])  # what the run's clean pass does before it calibrates
    speed = cost.measure_speed(model, x)
    registry = get_plugin_manager().analyses()
    # ImageNet top-1 of a trained ResNet-50: the attacks plan only the rows it gets right.
    info = cost.PlanInfo(rows=rows, row_shape=(3, 224, 224), modality="image", n_classes=1000,
                         capabilities=frozenset(model.capabilities), attributes=("group",), accuracy=0.76)
    entries = {name: cost.Planned(name, cost.plan_for(entry.cls(build_options(entry.cls, {})), info)) for name, entry in registry.items()}
    order = cost.order_and_count(entries, {n: e.cls.category for n, e in registry.items()}, speed)
    return {"device": device, "forward_us_per_row": speed.forward * 1e6,
            "backward_us_per_row": None if speed.backward is None else speed.backward * 1e6,
            "batch_size": speed.batch_size, "gradient_batch_size": speed.gradient_batch_size,
            "analyses": {n: {"seconds": entries[n].seconds, "fewest_seconds": entries[n].fewest_seconds,
                             "forward_rows": entries[n].forward_rows, "backward_rows": entries[n].backward_rows}
                         for n in order},
            "total_seconds": sum(e.seconds for e in entries.values()),
            "fewest_total_seconds": sum(e.seconds if e.fewest_seconds is None else e.fewest_seconds for e in entries.values())}


def passes_seconds(result: dict, calibration: dict) -> float:
    """Seconds the analysis's counted passes take at the calibrated (best, full-batch) per-row speeds."""
    forward, backward = calibration["forward_seconds_per_row"], calibration.get("backward_seconds_per_row") or 0.0
    return max(0, result["forward_rows"] - result["backward_rows"]) * forward + result["backward_rows"] * backward


def table(outcome: dict) -> list[str]:
    calibration = outcome.get("calibration") or {}
    lines = [f"{outcome['mode']}: {outcome['wall_seconds']:.1f} s wall (whole `audit run`, clean pass {outcome['clean_seconds']:.2f} s)",
             "| analysis | status | planned fwd | actual fwd | planned bwd | actual bwd | estimated s | actual s | actual/estimate "
             "| actual/passes | reduced |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in outcome["results"]:
        low = r.get("fewest_seconds")
        estimate = f"{low:.1f} to {r['planned_seconds']:.1f}" if low else f"{r['planned_seconds'] or 0:.1f}"
        ratio = r["seconds"] / r["planned_seconds"] if r["planned_seconds"] else float("nan")
        ideal = passes_seconds(r, calibration) if calibration else 0.0
        reduced = ", ".join(f"{k} {a}->{b}" for k, (a, b) in r["reduced"].items())
        lines.append(f"| {r['analysis']} | {r['status']} | {r['planned_forward_rows'] or 0:,} | {r['forward_rows']:,} | "
                     f"{r['planned_backward_rows'] or 0:,} | {r['backward_rows']:,} | {estimate} | {r['seconds']:.1f} | "
                     f"{'(range)' if low else f'{ratio:.2f}'} | {r['seconds'] / ideal if ideal > 0.5 else float('nan'):.2f} | {reduced} |")
    planned = sum(r["planned_seconds"] or 0 for r in outcome["results"])
    actual = sum(r["seconds"] for r in outcome["results"])
    ideal = sum(passes_seconds(r, calibration) for r in outcome["results"]) if calibration else 0.0
    lines.append(f"| total | | | | | | {planned:.1f} (most) | {actual:.1f} | | {actual / ideal if ideal else float('nan'):.2f} | |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", nargs="*", default=["full", "quick"], choices=["full", "quick"])
    parser.add_argument("--no-projection", action="store_true")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"load_average_before": os.getloadavg(), "rows": args.rows, "threads": args.threads, "device": args.device, "modes": []}
    print(f"load average before: {report['load_average_before']}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path, data_path = write_inputs(folder, args.rows)
        for mode in args.modes:
            outcome = run_mode(model_path, data_path, folder, mode, args.threads, args.device)
            report["modes"].append(outcome)
            print("\n".join(outcome["plan_lines"]))
            print("\n".join(table(outcome)))
            print(f"load average now: {os.getloadavg()}")
    if not args.no_projection:
        projection = resnet50_projection(args.device, args.rows)
        report["resnet50"] = projection
        print(f"ResNet-50 224x224 on {args.device}: {projection['forward_us_per_row']:.0f} us/row forward, "
              f"{projection['backward_us_per_row'] or 0:.0f} us/row forward+backward; default audit of {args.rows} rows "
              f"{projection['fewest_total_seconds'] / 60:.1f} to {projection['total_seconds'] / 60:.1f} min:")
        for name, entry in projection["analyses"].items():
            fewest = "" if entry["fewest_seconds"] is None else f"{entry['fewest_seconds'] / 60:8.1f} to"
            print(f"  {name:<28} {entry['forward_rows']:>12,} fwd {entry['backward_rows']:>11,} bwd {fewest:>11} {entry['seconds'] / 60:8.1f} min")
    report["load_average_after"] = os.getloadavg()
    print(f"load average after: {report['load_average_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
