"""Scale-out: one tabular audit (group fairness, corruptions, calibration) in one process and on 1 and 2 Ray workers.

    python benchmarks/bench_scale.py [--rows 10000 100000 1000000] [--workers 1 2]

Each configuration runs in a fresh interpreter, the modes interleaved per row count.
`wall_s` is `run_audit` end to end (load, clean pass, analyses, store) after
`ray.init`; `ray_init_s` is Ray's start-up, reported apart. Ray's fixed overhead is
the Ray run's wall time minus the local one at the smallest row count; the break-even
row count is where the Ray run with the most workers starts to win.
"""

from __future__ import annotations

import argparse
import json
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
    np.savez(data_path, x=x, y=y, group=np.array(["a", "b", "c"])[group])
    return model_path, data_path


def one(mode: str, workers: int, model: str, data: str, db: str) -> dict:
    """One configuration, in this (fresh) process."""
    from audit.config import RunSpec
    from audit.runner import run_audit

    ray_init = 0.0
    if mode == "ray":
        import ray

        began = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ray_init = time.perf_counter() - began
    spec = RunSpec(model=model, data=data, analyses=list(ANALYSES), db=db, fail_on="never", seed=0, executor=mode)
    began = time.perf_counter()
    outcome = run_audit(spec)
    wall = time.perf_counter() - began
    findings = [(f.analysis, f.check, f.subject, f.value) for f in outcome.store.findings(outcome.run_id)]
    import hashlib

    # Equal digests: the Ray run stored exactly the single-process run's findings.
    digest = hashlib.sha256(json.dumps(findings).encode()).hexdigest()[:12]
    return {"wall_s": round(wall, 2), "ray_init_s": round(ray_init, 2), "status": outcome.status, "findings": len(findings),
            "digest": digest}


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
        for mode, workers in [("local", 1)] + [("ray", w) for w in args.workers]:
            db = folder / f"{mode}-{workers}-{rows}.db"
            done = subprocess.run([sys.executable, __file__, "--one", mode, str(workers), str(model), str(data), str(db)],
                                  capture_output=True, text=True, timeout=3600)
            line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
            result = json.loads(line[7:]) if line else {"error": done.stderr.strip().splitlines()[-1:]}
            row = {"rows": rows, "mode": mode, "workers": workers, **result}
            table.append(row)
            print(json.dumps(row), flush=True)
    print("\n| rows | mode | workers | wall s | ray.init s | speed-up vs one process |\n|---|---|---|---|---|---|")
    for row in table:
        local = next((r for r in table if r["rows"] == row["rows"] and r["mode"] == "local"), {})
        speedup = local.get("wall_s", 0) / row["wall_s"] if row.get("wall_s") else float("nan")
        print(f"| {row['rows']:,} | {row['mode']} | {row['workers']} | {row.get('wall_s')} | {row.get('ray_init_s')} | {speedup:.2f} |")


if __name__ == "__main__":
    main()
