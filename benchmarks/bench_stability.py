"""Do verdicts hold across seeds? The demo models audited with seeds 0..9, verdict agreement per check.

    python benchmarks/bench_stability.py                      # performance + robustness on every demo model
    python benchmarks/bench_stability.py -a attribution       # any analyses (names or categories), repeatable
    python benchmarks/bench_stability.py --models credit --seeds 5 --json /tmp/stability.json

Each (model, seed) is one `audit run ... --seed S --json` in a fresh process, at the
defaults, on the same data; only the seed changes (row sampling, corruption noise,
attack starts and proposals, synthetic OOD sets, bootstrap replicates). A check is
one (analysis, check id, subject); a check that appears once per run (a "worst of"
check whose subject depends on the seed) is keyed without its subject.

Reported per check: the share of seeds giving its most common verdict (agreement),
and whether it ever both passed and failed (a decisive flip). Target (issue 13): the
same verdict in at least 9 of 10 seeds, or the variation is only between one
decisive verdict and inconclusive (no decisive flip).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
MODELS = {
    "credit": ("credit.onnx", "credit.npz", []),
    "digits": ("digits.pt", "digits.npz", []),
    "text": ("text.onnx", "text.csv", ["--text", "text", "--label", "label", "--attribute", "gender"]),
}
DEFAULT_ANALYSES = ["performance", "robustness"]


def run_once(model: str, seed: int, analyses: list[str], workdir: Path, threads: int) -> dict:
    model_file, data_file, extra = MODELS[model]
    workdir = workdir / f"{model}-{seed}"  # one database and report folder per run: runs may go in parallel
    workdir.mkdir()
    command = [sys.executable, "-m", "audit", "run", str(DEMO / model_file), "--data", str(DEMO / data_file), *extra,
               "--seed", str(seed), "--json", "--db", str(workdir / "stability.db")]
    if threads:
        command += ["--threads", str(threads)]
    for analysis in analyses:
        command += ["-a", analysis]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"audit run failed for {model} seed {seed} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    document = json.loads(done.stdout)
    return {"seconds": time.perf_counter() - started, "findings": document["findings"]}


def keyed(findings: list[dict]) -> dict[tuple, str]:
    """(analysis, check[, subject]) -> verdict; the subject is left out of checks that appear once per run."""
    per_check = Counter((f["analysis"], f["check"]) for f in findings)
    verdicts = {}
    for f in findings:
        key = (f["analysis"], f["check"]) if per_check[(f["analysis"], f["check"])] == 1 else (f["analysis"], f["check"], f["subject"])
        verdicts[key] = f.get("verdict") or ("passed" if f["passed"] else "failed")
    return verdicts


def summarise(runs: dict[str, list[dict[tuple, str]]]) -> list[dict]:
    rows = []
    for model, seeds in runs.items():
        seen = defaultdict(list)
        for verdicts in seeds:
            for key, verdict in verdicts.items():
                seen[key].append(verdict)
        for key, verdicts in sorted(seen.items()):
            counts = Counter(verdicts)
            verdict, top = counts.most_common(1)[0]
            rows.append({
                "model": model, "analysis": key[0], "check": key[1], "subject": key[2] if len(key) > 2 else "",
                "verdicts": dict(counts), "modal": verdict, "agreement": top / len(seeds),
                "decisive_flip": "passed" in counts and "failed" in counts, "seeds": len(seeds),
            })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-a", "--analysis", action="append", help="analysis name or category (repeatable; default: performance, robustness)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--json", type=Path, help="write every check's verdict counts here")
    parser.add_argument("--jobs", type=int, default=1, help="audit runs at once (each with --threads 1 when above 1)")
    args = parser.parse_args(argv)
    analyses = args.analysis or DEFAULT_ANALYSES
    runs: dict[str, list] = {model: [None] * args.seeds for model in args.models}
    seconds = 0.0
    plan = [(model, seed) for model in args.models for seed in range(args.seeds)]
    threads = 1 if args.jobs > 1 else 0
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_once, model, seed, analyses, Path(tmp), threads): (model, seed) for model, seed in plan}
        for future, (model, seed) in futures.items():
            result = future.result()
            seconds += result["seconds"]
            runs[model][seed] = keyed(result["findings"])
            print(f"{model} seed {seed}: {len(result['findings'])} findings, {result['seconds']:.1f} s", file=sys.stderr)
    rows = summarise(runs)
    print(f"| model | analysis | check | subject | verdicts over {args.seeds} seeds | agreement |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(row["verdicts"].items()))
        flag = " (decisive flip)" if row["decisive_flip"] else ""
        print(f"| {row['model']} | {row['analysis']} | {row['check']} | {row['subject']} | {counts} | {row['agreement']:.0%}{flag} |")
    below = [r for r in rows if r["agreement"] < 0.9]
    flips = [r for r in rows if r["decisive_flip"]]
    worst = min(rows, key=lambda r: r["agreement"]) if rows else None
    print()
    print(f"{len(rows)} checks over {len(args.models)} model(s) and {args.seeds} seeds ({seconds:.0f} s of audit runs); "
          f"{len(rows) - len(below)} agree in at least 90% of seeds; {len(below)} below 90%, "
          f"of which {len(flips)} both passed and failed (decisive flips).")
    if worst:
        print(f"worst: {worst['model']} {worst['analysis']} {worst['check']} {worst['subject']} "
              f"{worst['agreement']:.0%} ({', '.join(f'{v} {k}' for k, v in sorted(worst['verdicts'].items()))})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
