"""Scale-out: one tabular audit (group fairness, corruptions, calibration) in one process and on 1 and 2 Ray workers.

    python benchmarks/bench_scale.py [--rows 10000 100000 1000000] [--workers 1 2]

Each configuration runs in a fresh interpreter, the modes interleaved per row count.
The corruptions see every row (max_rows off) in shards of 65,536 rows (the default
shard_rows), so 10^6 rows are 16 shards: one after another in the single process
(`local`), spread over the row workers under Ray. `local-1shard` is the single
process with the whole data as one shard: what the corruptions cost before
sharding, to show sharding itself costs the single process nothing.

`wall_s` is `run_audit` end to end (load, clean pass, analyses, store) after
`ray.init`; `ray_init_s` is Ray's start-up, reported apart. Per mode a line
wall = fixed + per_row x rows is fitted over the row counts: Ray's fixed overhead is
its fixed part less the single process's (plus ray.init), and the break-even row
count is where the two lines cross (none when Ray's per-row cost is not lower).
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

ANALYSES = ["bias.group_fairness", "robustness.corruptions", "robustness.calibration"]


def make_inputs(folder: Path, rows: int) -> tuple[Path, Path]:
    import numpy as np

    from audit.testing import export_onnx, tiny_mlp

    model_path, data_path = folder / "model.onnx", folder / f"data-{rows}.npz"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 8)).astype(np.float32)
    group = rng.integers(0, 3, size=rows)
    x[:, 0] += 0.5 * group  # the model sees the group through feature 0
    mlp = tiny_mlp(n_features=8, n_classes=2, seed=0)
    if not model_path.exists():
        export_onnx(mlp, model_path, x[:64])
    scores = mlp.predict(x)
    y = np.where(rng.random(rows) < 0.9, scores.argmax(1), 1 - scores.argmax(1))  # 90% accurate labels
    np.savez(data_path, x=x, y=y, group=np.array(["a", "b", "c"])[group], attributes=np.array(["group"]))
    return model_path, data_path


def one(mode: str, workers: int, model: str, data: str, db: str) -> dict:
    """One configuration, in this (fresh) process."""
    import numpy as np

    from audit.config import RunSpec
    from audit.runner import run_audit

    ray_init = 0.0
    if mode == "ray":
        import ray

        began = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ray_init = time.perf_counter() - began
    corruptions = {"max_rows": None}
    if mode == "local-1shard":
        corruptions["shard_rows"] = len(np.load(data)["y"])
    spec = RunSpec(model=model, data=data, analyses=list(ANALYSES), db=db, fail_on="never", seed=0,
                   executor="ray" if mode == "ray" else "local", options={"robustness.corruptions": corruptions})
    began = time.perf_counter()
    outcome = run_audit(spec)
    wall = time.perf_counter() - began
    findings = [(f.analysis, f.check, f.subject, f.value) for f in outcome.store.findings(outcome.run_id)]
    import hashlib

    # Equal digests: the Ray run stored exactly the single-process run's findings.
    digest = hashlib.sha256(json.dumps(findings).encode()).hexdigest()[:12]
    seconds = {r.analysis: round(r.seconds, 2) for r in outcome.store.results(outcome.run_id)}
    return {"wall_s": round(wall, 2), "ray_init_s": round(ray_init, 2), "status": outcome.status, "findings": len(findings),
            "digest": digest, "analysis_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--one", nargs=5, metavar=("MODE", "WORKERS", "MODEL", "DATA", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        mode, workers, model, data, db = args.one
        print("RESULT " + json.dumps(one(mode, int(workers), model, data, db)), flush=True)
        return
    folder = Path(tempfile.mkdtemp(prefix="audit-bench-scale-"))
    table = []
    for rows in args.rows:
        model, data = make_inputs(folder, rows)
        for mode, workers in [("local", 1), ("local-1shard", 1)] + [("ray", w) for w in args.workers]:
            db = folder / f"{mode}-{workers}-{rows}.db"
            done = subprocess.run([sys.executable, __file__, "--one", mode, str(workers), str(model), str(data), str(db)],
                                  capture_output=True, text=True, timeout=3600)
            line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
            result = json.loads(line[7:]) if line else {"error": done.stderr.strip().splitlines()[-1:]}
            # Others share this machine: the 1-minute load average when the configuration ended goes with its figures.
            row = {"rows": rows, "mode": mode, "workers": workers, **result, "load_1min": round(os.getloadavg()[0], 1)}
            table.append(row)
            print(json.dumps(row), flush=True)
    print_table(table)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed seconds, seconds per row) of the least-squares line through (rows, wall)."""
    import numpy as np

    rows, wall = np.array(points, dtype=float).T
    if len(rows) < 2:
        return float(wall[0]), 0.0
    per_row, fixed = np.polyfit(rows, wall, 1)
    return float(fixed), float(per_row)


def print_table(table: list[dict]) -> None:
    print("\n| rows | mode | workers | wall s | ray.init s | speed-up vs one process | corruptions s | group fairness s | findings digest | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in table:
        local = next((r for r in table if r["rows"] == row["rows"] and r["mode"] == "local"), {})
        speedup = local.get("wall_s", 0) / row["wall_s"] if row.get("wall_s") else float("nan")
        seconds = row.get("analysis_s", {})
        print(f"| {row['rows']:,} | {row['mode']} | {row['workers']} | {row.get('wall_s')} | {row.get('ray_init_s')} | {speedup:.2f} | "
              f"{seconds.get('robustness.corruptions')} | {seconds.get('bias.group_fairness')} | {row.get('digest')} | {row.get('load_1min')} |")
    lines = {}
    for key in sorted({(r["mode"], r["workers"]) for r in table if "wall_s" in r}):
        lines[key] = fit([(r["rows"], r["wall_s"]) for r in table if (r["mode"], r["workers"]) == key and "wall_s" in r])
    if ("local", 1) not in lines:
        return
    local_fixed, local_per_row = lines[("local", 1)]
    print("\n| mode | workers | fixed s (fit) | us per row (fit) | Ray's fixed overhead s (fit, + ray.init) | break-even rows |")
    print("|---|---|---|---|---|---|")
    for (mode, workers), (fixed, per_row) in lines.items():
        overhead = breakeven = "—"
        if mode == "ray":
            init = max(r["ray_init_s"] for r in table if (r["mode"], r["workers"]) == (mode, workers) and "ray_init_s" in r)
            overhead = f"{fixed - local_fixed:.2f} + {init:.2f}"
            breakeven = f"{(fixed - local_fixed) / (local_per_row - per_row):,.0f}" if per_row < local_per_row else "none (not faster per row)"
        print(f"| {mode} | {workers} | {fixed:.2f} | {per_row * 1e6:.2f} | {overhead} | {breakeven} |")


if __name__ == "__main__":
    main()
