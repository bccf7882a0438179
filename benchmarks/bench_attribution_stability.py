"""Do the attribution verdicts hold across seeds? Each check's verdict on the demo models, seeds 0..N-1.

    python benchmarks/bench_attribution_stability.py --seeds 10
    python benchmarks/bench_attribution_stability.py --seeds 10 --first-seed 10   # seeds 10..19
    python benchmarks/bench_attribution_stability.py --seeds 10 --models digits.pt --analyses attribution.faithfulness

Runs attribution.faithfulness, attribution.sanity and attribution.agreement with
their default options on the demo's digits.pt (TorchScript CNN), digits.onnx (the
same CNN as ONNX) and credit.onnx (tabular MLP), once per seed, and counts, per
check (model, analysis, check, subject), how many seeds give each verdict.

A check is stable when one verdict comes out in at least 90% of the seeds (9 of
10). Flipping between passed and failed is the defect the issue names; a check
that moves between a verdict and inconclusive sits near its threshold.
Printed: one line per unstable check, then a summary (and JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"
MODELS = {"digits.pt": "digits.npz", "digits.onnx": "digits.npz", "credit.onnx": "credit.npz"}
ANALYSES = ("attribution.faithfulness", "attribution.sanity", "attribution.agreement")


def _classes():
    import audit_attribution

    return {cls.name: cls for cls in (audit_attribution.Faithfulness, audit_attribution.Sanity, audit_attribution.Agreement)}


def verdicts(model_name: str, analyses: list[str], seeds: list[int]) -> dict[tuple, Counter]:
    """{(model, analysis, check, subject): Counter of verdicts over the seeds}."""
    from audit.data import load as load_data
    from audit.models import load as load_model
    from audit.testing import run_analysis

    classes = _classes()
    data = load_data(DEMO / MODELS[model_name])
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for seed in seeds:
        # A fresh model per seed: nothing cached in one run (converted graphs, tree covers) leaks into the next.
        model = load_model(DEMO / model_name)
        shared: dict = {}
        for name in analyses:
            records = run_analysis(classes[name], model, data, seed=seed, shared=shared)
            for finding in records.findings:
                counts[(model_name, name, finding.check, finding.subject)][finding.verdict] += 1
    return counts


def summarise(counts: dict[tuple, Counter], seeds: int) -> dict:
    needed = -(-9 * seeds // 10)  # 9 of 10
    rows = []
    for key, counter in sorted(counts.items(), key=lambda item: tuple(str(k) for k in item[0])):
        modal, modal_count = counter.most_common(1)[0]
        rows.append({
            "model": key[0], "analysis": key[1], "check": key[2], "subject": key[3],
            "verdicts": dict(counter), "modal": modal, "modal_share": modal_count / seeds,
            "stable": modal_count >= needed,
            "passed_and_failed": counter["passed"] > 0 and counter["failed"] > 0,
        })
    return {
        "seeds": seeds,
        "checks": len(rows),
        "stable": sum(r["stable"] for r in rows),
        "unstable": [r for r in rows if not r["stable"]],
        "passed_and_failed": sum(r["passed_and_failed"] for r in rows),
        "by_verdict": dict(Counter(r["modal"] for r in rows)),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+N-1 (default 0)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--analyses", nargs="*", default=list(ANALYSES), choices=list(ANALYSES))
    parser.add_argument("--json", action="store_true", help="print the whole summary as JSON")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts: dict[tuple, Counter] = {}
    for model_name in args.models:
        counts.update(verdicts(model_name, args.analyses, list(range(args.first_seed, args.first_seed + args.seeds))))
        print(f"{model_name}: done at {time.perf_counter() - start:.0f} s", file=sys.stderr)
    summary = summarise(counts, args.seeds)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["first_seed"] = args.first_seed
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for row in summary["rows"]:
        flag = "" if row["stable"] else "  UNSTABLE"
        shown = ", ".join(f"{k} {v}" for k, v in sorted(row["verdicts"].items()))
        print(f"{row['model']:12} {row['analysis']:25} {row['check']:31} {str(row['subject']):21} {shown}{flag}")
    print(f"\n{summary['checks']} checks over seeds {args.first_seed}..{args.first_seed + args.seeds - 1}: {summary['stable']} stable (one verdict in >= 90% of seeds), "
          f"{len(summary['unstable'])} unstable, {summary['passed_and_failed']} both passed and failed; "
          f"modal verdicts {summary['by_verdict']}; {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
