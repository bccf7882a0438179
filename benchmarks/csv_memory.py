"""Peak memory of a CSV audit against the float32 size of its data (issue 17, target: at most 3x).

    python -m benchmarks.csv_memory                        # 2,000,000 x 30, performance + bias.group_fairness
    python -m benchmarks.csv_memory --rows 200000          # a quicker run

Builds the CSV and a 30-input ONNX MLP in a temporary folder (nothing is kept), then runs, each in a fresh
process under /usr/bin/time -v: the loader alone, and `audit run` on it; and both again on a 1,000-row CSV of
the same columns, whose peak is the fixed cost (interpreter, numpy, torch, onnxruntime, the model). The
figure compared with the target is the peak above that fixed cost.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LOAD_ONLY = (
    "import sys; from audit.data import DataOptions, load; "
    "d = load(sys.argv[1], DataOptions(label='label', attributes=['group'])); print(d.x.shape)"
)


def write_csv(path: Path, rows: int, columns: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        handle.write(",".join(f"f{j}" for j in range(columns)) + ",label,group\n")
        block = 200_000
        for start in range(0, rows, block):
            n = min(block, rows - start)
            x = rng.normal(size=(n, columns)).astype(np.float32)
            label = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
            group = np.where(rng.random(n) < 0.3, "b", "a")
            lines = [",".join(f"{v:.5g}" for v in row) + f",{label[i]},{group[i]}" for i, row in enumerate(x.tolist())]
            handle.write("\n".join(lines) + "\n")


def peak_mb(command: list[str]) -> tuple[float, float]:
    """(peak resident MB, wall seconds) of one fresh process."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if result.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    seconds = int(clock.group(1) or 0) * 3600 + int(clock.group(2)) * 60 + float(clock.group(3))
    return peak, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--columns", type=int, default=30)
    args = parser.parse_args()

    from audit.testing import export_onnx, tiny_mlp

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        big, small = folder / "big.csv", folder / "small.csv"
        write_csv(big, args.rows, args.columns)
        write_csv(small, 1000, args.columns)
        model = folder / "mlp.onnx"
        export_onnx(tiny_mlp(n_features=args.columns, n_classes=2, seed=0), model, np.zeros((4, args.columns), np.float32))
        float32_mb = args.rows * args.columns * 4 / 2**20
        print(f"{args.rows:,} x {args.columns} CSV: {big.stat().st_size / 2**20:,.0f} MB on disk, float32 data {float32_mb:,.0f} MB")
        audit_run = [sys.executable, "-m", "audit", "run", str(model), "--label", "label", "--attribute", "group",
                     "-a", "performance", "-a", "bias.group_fairness", "--fail-on", "never", "--threads", "1",
                     "--db", str(folder / "audit.db")]
        runs = {
            "load only": lambda data: [sys.executable, "-c", LOAD_ONLY, str(data)],
            "audit run": lambda data: [*audit_run, "--data", str(data)],
        }
        for name, command in runs.items():
            big_peak, seconds = peak_mb(command(big))
            base_peak, _ = peak_mb(command(small))
            above = big_peak - base_peak
            print(f"{name:<10} peak {big_peak:,.0f} MB, fixed cost {base_peak:,.0f} MB, above it {above:,.0f} MB "
                  f"= {above / float32_mb:.2f}x the float32 data ({seconds:.0f} s)")

if __name__ == "__main__":
    main()
