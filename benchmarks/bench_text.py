"""A full text audit of generated sentences on the demo text models, timed end to end per analysis.

    python benchmarks/bench_text.py                  # 2,000 sentences, ONNX and TorchScript, 2 threads
    python benchmarks/bench_text.py --rows 500 --threads 1

Each model is audited by `audit run` in a fresh process (what a user runs),
with every analysis; the sentences come from the demo's own generator with
another seed, so none of them is in the demo's data.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_sentences(path: Path, rows: int, seed: int) -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT / "examples"))
    import make_demo

    columns = make_demo.text_sentences(rows, np.random.default_rng(seed))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label", "gender"])
        for text, label, gender in zip(columns["text"], columns["label"], columns["gender"]):
            writer.writerow([text, make_demo.TEXT_CLASSES[int(label)], gender])


def audit_once(model: Path, data: Path, threads: int, folder: Path) -> dict:
    env = dict(os.environ, AUDIT_DB=str(folder / "bench.db"), OMP_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "audit", "run", str(model), "--data", str(data), "--text", "text", "--label", "label",
               "--attribute", "gender", "--fail-on", "never", "--threads", str(threads), "--json"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"audit run {model.name} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return {"wall": wall, "document": json.loads(result.stdout)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "sentences.csv"
        write_sentences(data, args.rows, args.seed)
        for name in ("text.onnx", "text.pt"):
            outcome = audit_once(ROOT / "examples" / "demo" / name, data, args.threads, folder)
            print(f"{name}: {args.rows} sentences, {args.threads} thread(s): {outcome['wall']:.1f} s wall for `audit run` (all analyses, report included)")
            for analysis in outcome["document"]["analyses"]:
                seconds = analysis.get("seconds") or 0.0
                rows = analysis.get("forward_rows") or 0
                print(f"  {analysis['name']:<28} {analysis['status']:<8} {seconds:6.2f} s  {rows:>8,} forward rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
