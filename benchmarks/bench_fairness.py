"""Time bias.group_fairness against Fairlearn's MetricFrame on the same predictions; check the values agree.

    python benchmarks/bench_fairness.py [--rows 10000 1000000] [--boot 200]

Both sides get identical labels, predictions and two attributes (sex, region)
and compute per-group selection rate, accuracy, TPR, FPR and precision for each
attribute and for their intersection. Three timings per size:
  point:  per-group rates only (ours: one bincount per grouping; Fairlearn: MetricFrame groupby);
  full:   ours = the whole analysis (rates, multinomial bootstrap intervals, the eight
          findings, distance covariance with permutations, JS), figures off;
          Fairlearn = MetricFrame with n_boot bootstrap intervals (a Python loop of resamples).
At 1e6 rows Fairlearn's bootstrap runs a reduced number of resamples and its time is
scaled up linearly to n_boot (printed as "scaled"), because the full run takes minutes.
"""

from __future__ import annotations

import argparse
import time
import types
import warnings

import numpy as np


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sex = rng.choice(np.array(["female", "male"]), size=n, p=[0.45, 0.55])
    region = rng.choice(np.array(["north", "south", "east", "west"]), size=n)
    logit = rng.normal(size=n) + 0.6 * (sex == "male") - 0.3 * (region == "east")
    p = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit + rng.normal(size=n))))).astype(np.int64)
    probs = np.stack([1 - p, p], axis=1)
    return probs, y, {"sex": sex, "region": region}


def ours_point(probs, y, attributes):
    from audit_bias import _stats

    predicted = probs.argmax(axis=1)
    singles = [_stats.group_attribute(k, v, 10, 4) for k, v in attributes.items()]
    groupings = singles + [_stats.intersect(singles[1], singles[0])]
    out = {}
    for g in groupings:
        rates = _stats.rates_from_cells(_stats.cell_counts(g.codes, g.n_groups, y, predicted, 2), True)
        for i, name in enumerate(g.names):
            out[(g.subject, name)] = {
                "selection_rate": rates["selection_rate"][i, 1], "accuracy": rates["accuracy"][i],
                "tpr": rates["tpr"][i, 1], "fpr": rates["fpr"][i, 1], "precision": rates["precision"][i, 1],
            }
    return out


def ours_full(probs, y, attributes, n_boot):
    from audit.analysis import iter_records
    from audit.data import Dataset
    from audit.runner import make_context
    from audit_bias import GroupFairness

    data = Dataset(x=np.zeros((len(y), 1), np.float32), y=y, attributes=attributes)
    ctx = make_context(types.SimpleNamespace(device="cpu"), data, predictions=probs, logits=np.log(probs.clip(1e-12)),
                       analysis_name=GroupFairness.name)
    analysis = GroupFairness(n_bootstrap=n_boot, max_plot_groups=0)
    return list(iter_records(analysis.run(ctx)))


def fairlearn_frames(probs, y, attributes, n_boot=None, seed=0):
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, precision_score

    metrics = {"selection_rate": selection_rate, "accuracy": accuracy_score, "tpr": true_positive_rate,
               "fpr": false_positive_rate, "precision": precision_score}
    y_pred = probs.argmax(axis=1)
    extra = {} if not n_boot else {"n_boot": n_boot, "ci_quantiles": [0.025, 0.975], "random_state": seed}
    frames = {}
    for subject, sensitive in [("sex", attributes["sex"]), ("region", attributes["region"]),
                               ("region x sex", np.stack([attributes["region"], attributes["sex"]], axis=1))]:
        frames[subject] = MetricFrame(metrics=metrics, y_true=y, y_pred=y_pred, sensitive_features=sensitive, **extra)
    return frames


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--fairlearn-boot-large", type=int, default=3,
                        help="bootstrap resamples Fairlearn really runs at 1e6 rows (time scaled to --boot)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    ours_full(*make_data(1000), n_boot=10)  # imports and first-call costs out of the timings
    fairlearn_frames(*make_data(1000))

    for n in args.rows:
        probs, y, attributes = make_data(n)
        ours, t_ours_point = timed(ours_point, probs, y, attributes)
        frames, t_fl_point = timed(fairlearn_frames, probs, y, attributes)
        worst = 0.0
        for subject, frame in frames.items():
            for key, row in frame.by_group.iterrows():
                group = ", ".join(key) if isinstance(key, tuple) else key
                for metric, value in row.items():
                    worst = max(worst, abs(float(ours[(subject, group)][metric]) - float(value)))
        records, t_ours_full = timed(ours_full, probs, y, attributes, args.boot)
        findings = {(f.check, f.subject): f.value for f in records if hasattr(f, "check")}
        from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

        y_pred = probs.argmax(axis=1)
        for subject in ("sex", "region"):
            kwargs = dict(y_true=y, y_pred=y_pred, sensitive_features=attributes[subject])
            worst = max(worst, abs(findings[("demographic_parity_difference", subject)] - demographic_parity_difference(**kwargs)))
            worst = max(worst, abs(findings[("equalized_odds_difference", subject)] - equalized_odds_difference(**kwargs)))
        fl_boot = args.boot if n <= 100_000 else args.fairlearn_boot_large
        _, t_fl_boot = timed(fairlearn_frames, probs, y, attributes, n_boot=fl_boot)
        t_fl_full = t_fl_boot * args.boot / fl_boot
        scaled = "" if fl_boot == args.boot else f" (scaled from {fl_boot} resamples)"
        status = "agree" if worst < 1e-9 else "DISAGREE"
        print(f"rows={n:>9,}  values {status} (max abs difference {worst:.1e} over per-group rates, DPD, EOD)")
        print(f"  point estimates: ours {t_ours_point:8.3f} s   fairlearn MetricFrame {t_fl_point:8.3f} s   "
              f"ratio {t_fl_point / t_ours_point:7.1f}x")
        print(f"  with {args.boot} bootstrap: ours {t_ours_full:8.3f} s (whole analysis, incl. dCov + JS)   "
              f"fairlearn {t_fl_full:8.3f} s{scaled}   ratio {t_fl_full / t_ours_full:7.1f}x")


if __name__ == "__main__":
    main()
