"""Benchmark: our TreeSHAP read from an ONNX graph against shap.TreeExplainer on the same scikit-learn forest.

    pip install shap scikit-learn skl2onnx
    python benchmarks/bench_treeshap.py [--rows 10000] [--trees 100] [--depth 6] [--threads 1]

One process, one seeded RandomForestClassifier (100 trees of depth 6 by
default) on 30 synthetic features, exported with skl2onnx. Both sides use
path-dependent TreeSHAP with node covers counted on the same reference rows
(shap: the Independent masker with every reference row, since ONNX graphs
carry no training covers), explain the same rows, and must agree to 1e-5
before any time is reported. Each side runs once to warm up, then the best of
``--repeats`` timed runs. ``--threads`` pins torch's thread pool (shap's C
extension runs on one thread); the default, 1, compares like with like.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def best_of(function, repeats: int):
    result = function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--reference", type=int, default=2_000, help="rows the node covers are counted on")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import shap
    import torch
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from skl2onnx import to_onnx

    from audit.models.trees import TreeShap, find_tree_node, read_trees

    torch.set_num_threads(args.threads)
    x, y = make_classification(args.rows + args.reference, 30, n_informative=10, random_state=0)
    x = x.astype(np.float32)
    reference, rows = x[: args.reference], x[args.reference :]
    forest = RandomForestClassifier(args.trees, max_depth=args.depth, random_state=0, n_jobs=1).fit(reference, y[: args.reference])
    trees = read_trees(find_tree_node(to_onnx(forest, x[:1], options={"zipmap": False})))
    print(f"forest: {args.trees} trees of depth {args.depth}, {len(trees.leaves)} leaves; {len(rows)} rows explained, "
          f"covers on {len(reference)} reference rows; torch threads {torch.get_num_threads()}")

    def ours():
        explainer = TreeShap(trees, reference)
        return explainer.shap_values(rows)[:, :, 0]

    def theirs():
        masker = shap.maskers.Independent(reference, max_samples=len(reference))
        explainer = shap.TreeExplainer(forest, data=masker, feature_perturbation="tree_path_dependent")
        return np.asarray(explainer.shap_values(rows, check_additivity=False))[:, :, 1]

    our_time, our_values = best_of(ours, args.repeats)
    their_time, their_values = best_of(theirs, args.repeats)
    difference = float(np.abs(our_values - their_values).max())
    print(f"max |ours - shap| = {difference:.2e}")
    if difference > 1e-5:
        raise SystemExit("the two disagree; no timing reported")
    print(f"ours (covers + tables + values): {our_time:.2f} s   shap.TreeExplainer: {their_time:.2f} s   speed-up {their_time / our_time:.1f}x")


if __name__ == "__main__":
    main()
