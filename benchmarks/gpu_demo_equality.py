"""Does the demo give the same findings and verdicts on the GPU as on the CPU?

    python benchmarks/gpu_demo_equality.py               # cuda against cpu (needs a CUDA device)
    python benchmarks/gpu_demo_equality.py --b cpu       # cpu against cpu: checks the script itself

Runs `audit demo --json` once per device into separate databases, pairs the findings
of each demo model by (analysis, check, subject) and prints, per model, how many
verdicts differ and the largest difference of an estimate and of an interval end.
Float32 kernels differ between devices, so estimates agree to rounding, not bit for
bit; a verdict that differs is reported by name (it should only be one whose interval
touches its threshold). Exit 1 when any verdict differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def demo_documents(device: str, workdir: Path) -> list[dict]:
    env = {**os.environ, "AUDIT_DB": str(workdir / f"{device.replace(':', '_')}.db")}
    completed = subprocess.run(
        [sys.executable, "-m", "audit", "demo", "--json", "--no-pdf", "--device", device],
        capture_output=True, text=True, env=env, cwd=workdir,
    )
    if completed.returncode not in (0, 1):
        raise SystemExit(f"audit demo --device {device} exited {completed.returncode}: {completed.stderr.strip()[-800:]}")
    return json.loads(completed.stdout)


def _key(finding: dict) -> tuple:
    return finding["analysis"], finding["check"], finding.get("subject")


def _largest_gap(pairs, field: str) -> float:
    gaps = [abs(a[field] - b[field]) for a, b in pairs if a.get(field) is not None and b.get(field) is not None]
    return max(gaps, default=0.0)


def compare(documents_a: list[dict], documents_b: list[dict]) -> tuple[list[dict], int]:
    rows, differing = [], 0
    for run_a, run_b in zip(documents_a, documents_b):
        a = {_key(f): f for f in run_a["findings"]}
        b = {_key(f): f for f in run_b["findings"]}
        shared = [(a[k], b[k]) for k in a.keys() & b.keys()]
        flipped = [f"{fa['analysis']}.{fa['check']}[{fa.get('subject') or ''}]: {fa['verdict']} -> {fb['verdict']}"
                   for fa, fb in shared if fa["verdict"] != fb["verdict"]]
        differing += len(flipped)
        rows.append({
            "model": Path(run_a["model"]["path"]).name, "findings": len(shared),
            "only_on_one": len(a.keys() ^ b.keys()), "verdicts_differ": flipped,
            "largest_estimate_gap": _largest_gap(shared, "value"),
            "largest_interval_gap": max(_largest_gap(shared, "lower"), _largest_gap(shared, "upper")),
            "providers": (run_a["model"].get("provider"), run_b["model"].get("provider")),
        })
    return rows, differing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="cpu", help="first device (default cpu)")
    parser.add_argument("--b", default="cuda", help="second device (default cuda)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        rows, differing = compare(demo_documents(args.a, workdir), demo_documents(args.b, workdir))
    for row in rows:
        print(f"{row['model']:<14} {row['findings']:>4} findings  providers {row['providers'][0]} / {row['providers'][1]}  "
              f"verdicts differing {len(row['verdicts_differ'])}  only on one device {row['only_on_one']}  "
              f"largest |estimate gap| {row['largest_estimate_gap']:.2e}  largest |interval gap| {row['largest_interval_gap']:.2e}")
        for flip in row["verdicts_differ"]:
            print(f"    {flip}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
