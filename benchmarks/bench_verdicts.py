"""Do the group-fairness verdicts hold up? False failures on pure noise and interval coverage on known truths.

    python benchmarks/bench_verdicts.py --replicates 20 --samples 300

Two measurements, both seeded:

1. Noise: the demo credit model with its protected columns (sex, age, region)
   permuted across rows, so every attribute is independent of the predictions and
   the labels. Any failed check is a false failure. Reported: the share of runs that
   fail the default gate (a failed check at high severity or above), the share of
   checks that fail, and high failures per run. Target: at most 5% and 5%.
2. Coverage: a simulated population (a logistic model of two features and a binary
   group) whose true group rates are computed on 2,000,000 rows; samples of 500 rows
   are drawn again and again and each check's 95% interval is tested for containing
   the population's value. Target: 93-97% for every gap statistic, both when the
   true parity difference is about 0.15 and when it is 0.

The coverage is that of each finding's 95% interval, `details["ci"]` (the interval
at the stated level, before the multiplicity correction); the interval in the
structured fields (`lower`/`upper`) is at the level the check was tested at after the
correction over the run's family of checks, wider, and is reported alongside
("coverage_corrected"). Code from before the verdict work has only `details["ci"]`,
so the script measures old and new alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEVERITY_ORDER = ["info", "low", "medium", "high", "critical"]
GAP_CHECKS = {
    "demographic_parity_difference": "parity_difference",
    "demographic_parity_ratio": "parity_ratio",
    "equalized_odds_difference": "equalized_odds",
    "equal_opportunity_difference": "equal_opportunity",
    "accuracy_gap": "accuracy_gap",
    "worst_group_accuracy": "worst_group_accuracy",
}


def _group_fairness():
    from audit_bias import GroupFairness

    return GroupFairness


def _interval(finding, corrected: bool = False):
    """The finding's 95% interval (details["ci"]), or with `corrected` the one in its structured fields."""
    if corrected:
        lower, upper = getattr(finding, "lower", None), getattr(finding, "upper", None)
    else:
        lower, upper = ((finding.details or {}).get("ci") or (None, None))
    if lower is None or upper is None:
        return None
    return float(lower), float(upper)


def _state(finding) -> str:
    """failed / passed / inconclusive / not judged, from whichever fields the code has."""
    verdict = getattr(finding, "verdict", None)
    if verdict:
        return str(verdict)
    if "not judged" in (finding.message or "") or (finding.details or {}).get("not_judged"):
        return "not judged"
    return "passed" if finding.passed else "failed"


def noise(replicates: int, fail_on: str = "high") -> dict:
    from audit.data import load as load_data
    from audit.testing import load_onnx_model, run_analysis

    demo = ROOT / "examples" / "demo"
    model = load_onnx_model(demo / "credit.onnx")
    data = load_data(demo / "credit.npz")
    rng = np.random.default_rng(20261202)
    gate = SEVERITY_ORDER.index(fail_on)
    runs_failing, checks, failed, high_failures, inconclusive, decided = 0, 0, 0, 0, 0, 0
    start = time.perf_counter()
    for replicate in range(replicates):
        order = rng.permutation(len(data))
        permuted = type(data)(**{**data.__dict__, "attributes": {k: v[order] for k, v in data.attributes.items()}})
        # Default options; figures off (they change no verdict, only the time).
        records = run_analysis(_group_fairness(), model, permuted, seed=replicate, max_plot_groups=0)
        states = [(f, _state(f)) for f in records.findings]
        judged = [(f, s) for f, s in states if s in ("passed", "failed")]
        checks += len(states)
        decided += len(judged)
        inconclusive += sum(s in ("inconclusive", "not judged") for _, s in states)
        failed_here = [f for f, s in judged if s == "failed"]
        failed += len(failed_here)
        gating = [f for f in failed_here if SEVERITY_ORDER.index(str(getattr(f.severity, "value", f.severity))) >= gate]
        high_failures += len(gating)
        runs_failing += bool(gating)
    return {
        "replicates": replicates,
        "runs_failing_gate": runs_failing / replicates,
        "checks": checks,
        "checks_failed_share": failed / max(checks, 1),
        "checks_failed_share_of_decided": failed / max(decided, 1),
        "checks_inconclusive_share": inconclusive / max(checks, 1),
        "gating_failures_per_run": high_failures / replicates,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _population(parity_effect: float, rows: int, rng: np.random.Generator):
    group = (rng.random(rows) < 0.5).astype(np.float32)
    features = rng.normal(size=(rows, 2)).astype(np.float32)
    labels = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(1.5 * features[:, 0] + 0.5 * features[:, 1])))).astype(np.int64)
    x = np.column_stack([features, group]).astype(np.float32)
    weights = np.array([[0.0, 0.0, 0.0], [1.5, 0.5, parity_effect]], dtype=np.float32)
    return x, labels, group


def _truths(x, labels, group, weights):
    predicted = (x @ weights[1] > 0).astype(int)
    rates = {}
    for g in (0.0, 1.0):
        mask = group == g
        p, y = predicted[mask], labels[mask]
        rates[g] = {
            "selection": p.mean(),
            "tpr": p[y == 1].mean(),
            "fpr": p[y == 0].mean(),
            "accuracy": (p == y).mean(),
        }
    a, b = rates[0.0], rates[1.0]
    return {
        "parity_difference": abs(a["selection"] - b["selection"]),
        "parity_ratio": min(a["selection"], b["selection"]) / max(a["selection"], b["selection"]),
        "equalized_odds": max(abs(a["tpr"] - b["tpr"]), abs(a["fpr"] - b["fpr"])),
        "equal_opportunity": abs(a["tpr"] - b["tpr"]),
        "accuracy_gap": abs(a["accuracy"] - b["accuracy"]),
        "worst_group_accuracy": min(a["accuracy"], b["accuracy"]),
    }


def coverage(parity_effect: float, samples: int, rows: int = 500) -> dict:
    from audit.data import Dataset
    from audit.testing import linear_model, run_analysis

    rng = np.random.default_rng(7)
    x, labels, group = _population(parity_effect, 2_000_000, rng)
    weights = np.array([[0.0, 0.0, 0.0], [1.5, 0.5, parity_effect]], dtype=np.float32)
    truths = _truths(x, labels, group, weights)
    model = linear_model(weights)
    covered = {name: 0 for name in truths}
    counted = {name: 0 for name in truths}
    covered_corrected = {name: 0 for name in truths}
    counted_corrected = {name: 0 for name in truths}
    start = time.perf_counter()
    for sample in range(samples):
        index = rng.choice(len(x), size=rows, replace=False)
        data = Dataset(x=x[index], y=labels[index], attributes={"group": np.where(group[index] > 0, "b", "a")},
                       feature_names=["f0", "f1", "group"], path="<simulated>")
        # Coverage concerns the gap intervals only: the permutation tests and figures are kept cheap.
        findings = run_analysis(_group_fairness(), model, data, seed=sample, max_plot_groups=0, dcov_permutations=19,
                                js_null_draws=10, n_bootstrap=10).findings
        for finding in findings:
            name = GAP_CHECKS.get(finding.check)
            interval = _interval(finding) if name else None
            if interval is None:
                continue
            counted[name] += 1
            covered[name] += interval[0] - 1e-12 <= truths[name] <= interval[1] + 1e-12
            corrected = _interval(finding, corrected=True)
            if corrected is not None:
                counted_corrected[name] += 1
                covered_corrected[name] += corrected[0] - 1e-12 <= truths[name] <= corrected[1] + 1e-12
    return {
        "parity_effect_logit": parity_effect,
        "truth": {k: round(float(v), 4) for k, v in truths.items()},
        "coverage": {k: round(covered[k] / counted[k], 3) if counted[k] else None for k in truths},
        "coverage_corrected": {k: round(covered_corrected[k] / counted_corrected[k], 3) if counted_corrected[k] else None
                               for k in truths},
        "samples": samples,
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20, help="permuted-attribute runs of the demo credit model")
    parser.add_argument("--samples", type=int, default=300, help="samples of 500 rows per simulated population")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--only", choices=["noise", "coverage"], help="run one of the two measurements")
    parser.add_argument("--effects", type=float, nargs="+", default=[0.0, 0.61],
                        help="group effects on the logit for the coverage populations (0.61: parity difference ~0.15)")
    args = parser.parse_args(argv)
    results = {}
    if args.only != "coverage":
        results["noise"] = noise(args.replicates)
        print(json.dumps(results["noise"], indent=2), flush=True)
    if args.only != "noise":
        # An effect of 0 gives no gap; 0.61 on the group's logit gives a parity difference near 0.15.
        results["coverage"] = []
        for effect in args.effects:
            results["coverage"].append(coverage(effect, args.samples))
            print(json.dumps(results["coverage"][-1], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
