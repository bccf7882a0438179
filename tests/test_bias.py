"""Tests of the bias plugin: group fairness rates, dCov, JS, Fairlearn agreement, counterfactuals, leakage."""

from __future__ import annotations

import numpy as np
import pytest

from audit.data import Dataset
from audit.testing import export_onnx, linear_model, load_onnx_model, model_from_module, run_analysis, tiny_cnn

from audit_bias import Counterfactual, GroupFairness, Leakage
from audit_bias import _stats
from audit_bias._leakage import attentive_probe_cv, erased_per_fold, fold_ids, leace_eraser, linear_probe_cv, probe_scores

SIGMOID_2 = 1 / (1 + np.exp(-2.0))


def scored_table(groups: dict[str, tuple[int, int, int, int]], shuffle_seed: int = 0):
    """Rows with given (TP, FN, FP, TN) per group; x is the positive-class logit (+2 predicted positive, -2 not)."""
    xs, ys, gs = [], [], []
    for name, (tp, fn, fp, tn) in groups.items():
        pred = np.repeat([1, 0, 1, 0], [tp, fn, fp, tn])
        y = np.repeat([1, 1, 0, 0], [tp, fn, fp, tn])
        xs.append(np.where(pred == 1, 2.0, -2.0))
        ys.append(y)
        gs.append(np.full(len(y), name, dtype=object))
    order = np.random.default_rng(shuffle_seed).permutation(sum(len(y) for y in ys))
    x = np.concatenate(xs)[order].astype(np.float32)[:, None]
    y = np.concatenate(ys)[order].astype(np.int64)
    g = np.concatenate(gs)[order].astype(str)
    return x, y, g


def logit_passthrough():
    """A linear model whose class-1 logit is the single input column (class-0 logit 0)."""
    return linear_model([[0.0], [1.0]], [0.0, 0.0])


# -- group fairness ------------------------------------------------------------------------
def test_hand_built_confusion_tables_give_known_rates_and_findings():
    groups = {"a": (30, 10, 20, 40), "b": (20, 20, 5, 75), "c": (3, 2, 1, 4)}  # c: 10 rows, under the minimum
    x, y, g = scored_table(groups)
    data = Dataset(x=x, y=y, attributes={"grp": g})
    records = run_analysis(GroupFairness, logit_passthrough(), data, min_group_size=30)

    expected = {
        "a": dict(selection_rate=50 / 100, accuracy=70 / 100, tpr=30 / 40, fpr=20 / 60, fnr=10 / 40, precision=30 / 50),
        "b": dict(selection_rate=25 / 120, accuracy=95 / 120, tpr=20 / 40, fpr=5 / 80, fnr=20 / 40, precision=20 / 25),
    }
    for group, rates in expected.items():
        for name, value in rates.items():
            metric = records.metric(name, group=group, subject="grp")
            assert metric.value == pytest.approx(value, abs=1e-12)
            assert metric.lower <= value + 1e-12 and metric.upper >= value - 1e-12
        assert records.metric("mean_score", group=group, subject="grp").value == pytest.approx(
            (rates["selection_rate"] * SIGMOID_2 + (1 - rates["selection_rate"]) * (1 - SIGMOID_2)), abs=1e-6)
    assert records.metric("group_size", group="c").value == 10
    assert records.metric("selection_rate", group="c").details["too_small"] is True

    # Aggregates use a and b only: c (selection 0.4) is reported, not judged.
    dpd = records.finding("demographic_parity_difference", subject="grp")
    assert dpd.value == pytest.approx(0.5 - 25 / 120)
    # Verdicts rest on the interval (issue 13): the gap 0.29 fails because its interval, at the level the
    # family of checks tested it, lies wholly above 0.1; it is graded high only if that interval clears 0.2 too.
    assert dpd.verdict == "failed" and dpd.lower > 0.1
    assert dpd.severity.value == ("high" if dpd.lower > 0.2 else "medium")
    assert "c (n=10)" in dpd.message and dpd.details["excluded_small_groups"] == {"c": 10}
    ratio = records.finding("demographic_parity_ratio", subject="grp")
    assert ratio.value == pytest.approx((25 / 120) / 0.5) and ratio.severity.value == "high"
    eod = records.finding("equalized_odds_difference", subject="grp")
    assert eod.value == pytest.approx(max(0.75 - 0.5, 20 / 60 - 5 / 80))
    assert records.finding("equal_opportunity_difference", subject="grp").value == pytest.approx(0.25)
    assert records.finding("worst_group_accuracy", subject="grp").value == pytest.approx(0.7)
    gap = records.finding("accuracy_gap", subject="grp")
    assert gap.value == pytest.approx(95 / 120 - 0.7) and gap.severity.value == "medium"
    lo, hi = dpd.details["ci"]
    assert lo < dpd.value < hi


def test_parity_ratio_in_plain_words_names_groups_and_outcome_by_label():
    # Coded groups (0 and 1) with labels, and named classes: the sentence page 1 shows for fairness.
    groups = {"0": (40, 20, 10, 130), "1": (70, 10, 30, 90)}  # selected: 50 of 200 against 100 of 200
    x, y, g = scored_table(groups)
    data = Dataset(x=x, y=y, attributes={"sex": g.astype(np.int64)}, class_names=["declined", "approved"],
                   value_labels={"sex": {"0": "female", "1": "male"}})
    records = run_analysis(GroupFairness, logit_passthrough(), data)
    ratio = records.finding("demographic_parity_ratio", subject="sex")
    predicted = x[:, 0] > 0
    sex = g.astype(np.int64)
    expected = predicted[sex == 0].mean() / predicted[sex == 1].mean()  # 0.25 / 0.5
    assert expected == pytest.approx(0.5) and ratio.value == pytest.approx(expected)
    plain = ratio.details["plain"]
    assert plain.startswith(f"The female group (sex) is predicted \u201capproved\u201d at {expected:.0%} of the rate of the male group")
    assert "(25.0% of its rows against 50.0%)" in plain
    lo, hi = ratio.details["ci"]
    assert f"[95% CI {lo:.0%}, {hi:.0%}]" in plain and lo < expected < hi
    # Only the ratio carries a sentence: page 1 prefers it as the fairness headline over the difference.
    assert "plain" not in records.finding("demographic_parity_difference", subject="sex").details


def test_too_few_large_groups_are_not_judged():
    x, y, g = scored_table({"a": (30, 10, 20, 40), "b": (2, 2, 2, 2)})
    records = run_analysis(GroupFairness, logit_passthrough(), Dataset(x=x, y=y, attributes={"grp": g}))
    finding = records.finding("demographic_parity_difference", subject="grp")
    assert finding.value is None and finding.passed is False and finding.severity.value == "info"
    assert finding.verdict == "inconclusive" and "not judged" in finding.message


def test_without_labels_only_label_free_checks_run():
    x, _, g = scored_table({"a": (30, 10, 20, 40), "b": (20, 20, 5, 75)})
    records = run_analysis(GroupFairness, logit_passthrough(), Dataset(x=x, y=None, attributes={"grp": g}))
    assert {f.check for f in records.findings} == {
        "demographic_parity_difference", "demographic_parity_ratio", "distance_covariance", "score_js_divergence"}
    assert records.metric("selection_rate", group="b").value == pytest.approx(25 / 120)
    assert any("no labels" in note for note in records.notes)


def test_distance_covariance_catches_nonlinear_dependence():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, size=600)
    s = a**2
    assert abs(np.corrcoef(a, s)[0, 1]) < 0.1
    result = _stats.distance_covariance(s, a, np.random.default_rng(1), n_permutations=199)
    assert result["dcov"] > 0.05 and result["p_value"] < 0.01
    independent = _stats.distance_covariance(rng.uniform(size=600), a, np.random.default_rng(1), n_permutations=199)
    assert independent["p_value"] > 0.05 and independent["dcov"] < result["dcov"] / 3

    # Through the analysis: score rises with age^2, age is numeric (binned for rates, raw for dCov).
    n = 3000
    age = rng.uniform(-1, 1, size=n)
    data = Dataset(x=(3 * (age**2 - 1 / 3)).astype(np.float32)[:, None], y=None, attributes={"age": age})
    records = run_analysis(GroupFairness, logit_passthrough(), data, dcov_max_rows=800)
    finding = records.finding("distance_covariance", subject="age")
    assert finding.details["p_value"] < 0.01 and finding.details["dcov"] > 0
    assert finding.details["rows_used"] == 800 and finding.details["subsampled"] is True
    assert "subsample of 800 of 3000" in finding.message
    assert any("quantile groups" in note for note in records.notes)


def test_distance_covariance_null_equals_float64_gathers():
    """The float32 permutation null matches B[p][:, p] gathered in float64 with the same seeded permutations."""
    rng = np.random.default_rng(4)
    n, permutations = 400, 49
    scores = rng.normal(size=(n, 2))
    age = rng.integers(18, 80, size=n).astype(np.float64)
    codes = rng.integers(0, 4, size=n)
    perms = np.argsort(np.random.default_rng(9).random((permutations, n)), axis=1)
    a = _stats._centred_distances(scores)
    for z, kwargs in [(age, {}), (None, {"codes": codes})]:
        b = _stats._centred_distances(age[:, None] if z is not None else np.eye(4)[codes])
        reference = np.array([(a * b[p][:, p]).mean() for p in perms])
        observed = (a * b).mean()
        result = _stats.distance_covariance(scores, z, np.random.default_rng(9), permutations, **kwargs)
        assert result["dcov2"] == pytest.approx(observed, rel=1e-12)
        assert result["null_mean"] == pytest.approx(reference.mean(), rel=1e-5)
        assert result["p_value"] == ((reference >= observed).sum() + 1) / (permutations + 1)


def test_distance_covariance_categorical_shortcut_equals_one_hot():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 3, size=300)
    scores = rng.normal(size=300) + 0.3 * codes
    fast = _stats.distance_covariance(scores, None, np.random.default_rng(5), 99, codes=codes)
    direct = _stats.distance_covariance(scores, np.eye(3)[codes], np.random.default_rng(5), 99)
    assert fast["dcov2"] == pytest.approx(direct["dcov2"], rel=1e-12)
    # Beyond the permutations the p-value is the chi-square(1) bound from the float32 null's mean: equal to its rounding.
    assert fast["p_value"] == pytest.approx(direct["p_value"], rel=1e-4)


def test_js_divergence_is_zero_for_identical_groups():
    scores = np.linspace(-3, 3, 200).astype(np.float32)
    x = np.concatenate([scores, scores])[:, None]
    g = np.repeat(["x", "y"], 200)
    records = run_analysis(GroupFairness, logit_passthrough(), Dataset(x=x, attributes={"grp": g}))
    finding = records.finding("score_js_divergence", subject="grp")
    assert finding.value == 0.0 and finding.passed


def test_pairwise_js_equals_scipy():
    """The JS divergence the analysis computes (every pair of groups at once) against scipy, pair by pair."""
    from scipy.spatial.distance import jensenshannon

    from audit_bias._fairness import _pairwise_js

    hist = np.random.default_rng(3).integers(0, 20, size=(4, 10)).astype(np.float64)
    hist[0, :5] = 0  # empty bins on one side
    js = _pairwise_js(hist)
    for i in range(4):
        for j in range(4):
            assert js[i, j] == pytest.approx(jensenshannon(hist[i], hist[j], base=2) ** 2, abs=1e-12)
    assert _pairwise_js(np.array([[1.0, 0.0], [0.0, 1.0]]))[0, 1] == pytest.approx(1.0)


def test_values_equal_fairlearn():
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                                   equalized_odds_difference, false_positive_rate, selection_rate,
                                   true_positive_rate)
    from sklearn.metrics import accuracy_score, precision_score

    rng = np.random.default_rng(7)
    n = 3000
    logit = rng.normal(size=n)
    sex = rng.choice(["f", "m"], size=n, p=[0.4, 0.6])
    region = rng.choice(["n", "s", "e"], size=n)
    logit = logit + 0.5 * (sex == "m")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    data = Dataset(x=logit.astype(np.float32)[:, None], y=y, attributes={"sex": sex, "region": region})
    records = run_analysis(GroupFairness, logit_passthrough(), data)
    y_pred = (logit.astype(np.float32) > 0).astype(int)

    metrics = {"selection_rate": selection_rate, "accuracy": accuracy_score, "tpr": true_positive_rate,
               "fpr": false_positive_rate, "precision": precision_score}
    for subject, sensitive in [("sex", sex), ("region", region), ("region x sex", np.stack([region, sex], axis=1))]:
        frame = MetricFrame(metrics=metrics, y_true=y, y_pred=y_pred, sensitive_features=sensitive)
        for key, row in frame.by_group.iterrows():
            group = ", ".join(key) if isinstance(key, tuple) else key
            for name in metrics:
                assert records.metric(name, group=group, subject=subject).value == pytest.approx(row[name], abs=1e-12)
        kwargs = dict(y_true=y, y_pred=y_pred, sensitive_features=sensitive)
        assert records.finding("demographic_parity_difference", subject=subject).value == pytest.approx(
            demographic_parity_difference(**kwargs), abs=1e-12)
        assert records.finding("demographic_parity_ratio", subject=subject).value == pytest.approx(
            demographic_parity_ratio(**kwargs), abs=1e-12)
        assert records.finding("equalized_odds_difference", subject=subject).value == pytest.approx(
            equalized_odds_difference(**kwargs), abs=1e-12)
        assert records.finding("equal_opportunity_difference", subject=subject).value == pytest.approx(
            frame.difference()["tpr"], abs=1e-12)
        assert records.finding("accuracy_gap", subject=subject).value == pytest.approx(frame.difference()["accuracy"], abs=1e-12)


def test_multiclass_reports_worst_class_by_name():
    rng = np.random.default_rng(2)
    n = 900
    g = np.repeat(["p", "q"], n // 2)
    logits = rng.normal(size=(n, 3)) * 0.1
    logits[:, 2] += np.where(g == "p", 1.0, -1.0)  # class 2 is chosen for p, almost never for q
    data = Dataset(x=logits.astype(np.float32), y=rng.integers(0, 3, n), attributes={"grp": g},
                   class_names=["low", "mid", "high"])
    records = run_analysis(GroupFairness, linear_model(np.eye(3)), data)
    dpd = records.finding("demographic_parity_difference", subject="grp")
    pred = logits.astype(np.float32).argmax(1)
    expected = max(abs(np.mean(pred[g == "p"] == k) - np.mean(pred[g == "q"] == k)) for k in range(3))
    assert dpd.value == pytest.approx(expected) and dpd.details["cls"] == "high" and "high" in dpd.message
    assert records.metric("selection_rate [high]", group="p").value == pytest.approx(np.mean(pred[g == "p"] == 2))


def test_attribute_values_are_stored_raw():
    x, y, _ = scored_table({"a": (30, 10, 20, 40), "b": (20, 20, 5, 75)})
    g = np.where(np.arange(len(x)) % 2 == 0, "<script>alert(1)</script>", "plain")
    records = run_analysis(GroupFairness, logit_passthrough(), Dataset(x=x, y=y, attributes={"grp": g}))
    assert records.metric("group_size", group="<script>alert(1)</script>").value == len(x) / 2


def test_bootstrap_cells_is_the_row_bootstrap():
    # The multinomial draw of cell counts has the row bootstrap's mean and variance.
    cells = np.array([[[30.0, 10.0], [20.0, 40.0]]])
    draws = _stats.bootstrap_cells(cells, np.random.default_rng(0), 20000)
    share = cells / cells.sum()
    assert np.allclose(draws.mean(axis=0), cells, rtol=0.02)
    assert np.allclose(draws.var(axis=0), 100 * share * (1 - share), rtol=0.05)


# -- counterfactual ------------------------------------------------------------------------
def _credit_like(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    x[:, 2] = (rng.random(n) < 0.4).astype(np.float32)
    sex = np.where(x[:, 2] == 1, "female", "male")
    return Dataset(x=x, y=(x[:, 0] > 0).astype(np.int64), attributes={"sex": sex}, attribute_features={"sex": 2})


def test_counterfactual_model_ignoring_attribute_shows_exactly_zero():
    data = _credit_like()
    model = linear_model([[0.0, 0.0, 0.0], [1.0, -0.5, 0.0]], [0.0, 0.3])
    records = run_analysis(Counterfactual, model, data)
    assert records.finding("counterfactual_score_shift", subject="sex").value == 0.0
    assert records.finding("counterfactual_flip_rate", subject="sex").value == 0.0
    assert records.metric("counterfactual_logodds_shift", group="female").value == 0.0
    assert model.counters.forward_rows == 2 * len(data)  # clean pass + (values - 1) rows each


def test_counterfactual_fixed_logit_offset_is_recovered_exactly():
    data = _credit_like()
    offset = 1.5
    model = linear_model([[0.0, 0.0, 0.0], [1.0, -0.5, offset]], [0.0, 0.3])
    records = run_analysis(Counterfactual, model, data)
    assert records.metric("counterfactual_logodds_shift", group="female", subject="sex").value == pytest.approx(offset, abs=1e-5)
    base = (data.x[:, 0] - 0.5 * data.x[:, 1] + 0.3).astype(np.float64)
    expected_shift = np.mean(1 / (1 + np.exp(-(base + offset))) - 1 / (1 + np.exp(-base)))
    shift = records.finding("counterfactual_score_shift", subject="sex")
    assert shift.value == pytest.approx(expected_shift, abs=1e-6) and shift.details["reference"] == "male"
    expected_flips = np.mean((base > 0) != (base + offset > 0))
    assert records.finding("counterfactual_flip_rate", subject="sex").value == pytest.approx(expected_flips)
    assert not shift.passed and shift.severity.value == "high"


def test_counterfactual_skips_without_attribute_inputs():
    data = _credit_like()
    data.attribute_features = {}
    analysis = Counterfactual()
    from audit.runner import make_context

    ctx = make_context(linear_model(np.eye(2, 3)), data)
    assert "no attribute is a model input" in analysis.skip_reason(ctx)
    data.attribute_features = {"sex": 0}  # a continuous column: too many values to substitute
    assert "distinct values" in analysis.skip_reason(ctx)


# -- leakage --------------------------------------------------------------------------------
def _embeddings(n=1000, d=12, share=0.3, seed=0):
    rng = np.random.default_rng(seed)
    z = (rng.random(n) < share).astype(np.int64)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    x = rng.normal(size=(n, d)) + 4.0 * np.outer(z, direction)
    return x, z


def test_linear_probe_finds_attribute_and_erasure_removes_it():
    x, z = _embeddings()
    folds = fold_ids(len(z), 5, np.random.default_rng(0))
    before = probe_scores(linear_probe_cv(x, z, 2, folds), z, 2)
    assert before["accuracy"] > 0.95 and before["auroc"] > 0.98
    erased, rank = erased_per_fold(x, z, 2, folds)
    after = probe_scores(linear_probe_cv(erased, z, 2, folds), z, 2)
    majority = max(z.mean(), 1 - z.mean())
    assert abs(after["accuracy"] - majority) < 0.03 and rank == 1
    assert abs(after["auroc"] - 0.5) < 0.1


def test_linear_probe_equals_scikit_learn_per_fold():
    """Held-out probabilities equal scikit-learn's multinomial logistic regression fit on each training fold.

    Ours minimises mean cross-entropy + l2 ||W||^2 (intercept free); scikit-learn
    minimises ||W||^2 / 2 + C * sum of cross-entropies, the same optimum at C = 1 / (2 l2 n_train).
    """
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    n, d, k, l2 = 600, 5, 3, 1e-2
    z = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)) + 0.8 * np.eye(k, d)[z]
    folds = fold_ids(n, 4, np.random.default_rng(0))
    logits = linear_probe_cv(x, z, k, folds, l2=l2, max_iter=500)
    ours = np.exp(logits - logits.max(axis=1, keepdims=True))
    ours /= ours.sum(axis=1, keepdims=True)
    theirs = np.empty_like(ours)
    for f in range(4):
        train = folds != f
        fit = sklearn_linear.LogisticRegression(C=1 / (2 * l2 * train.sum()), tol=1e-12, max_iter=10_000).fit(x[train], z[train])
        theirs[~train] = fit.predict_proba(x[~train])
    assert np.abs(ours - theirs).max() < 1e-5
    assert 0.5 < (ours.argmax(axis=1) == z).mean() < 1.0  # a problem where the fit matters


def test_lbfgs_reaches_the_minimum_of_an_ill_conditioned_quadratic():
    from audit_bias._optim import minimise_lbfgs

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    hessian = q @ np.diag(np.logspace(-1.5, 1.5, 30)) @ q.T  # condition number 1e3
    b = rng.normal(size=30)
    evaluations = []

    def quadratic(x):
        evaluations.append(1)
        return 0.5 * x @ hessian @ x - b @ x, hessian @ x - b

    solution = minimise_lbfgs(quadratic, np.zeros(30), max_iter=1000, tolerance_grad=1e-10, tolerance_change=0.0)
    exact = np.linalg.solve(hessian, b)
    assert np.abs(solution - exact).max() < 1e-6 * np.abs(exact).max()
    assert len(evaluations) < 400  # stops once the loss cannot show progress, instead of creeping to max_iter


def test_adam_matches_torch_optim_adam():
    import torch

    from audit_bias._optim import Adam

    torch.manual_seed(0)
    target = torch.randn(7, 3)
    ours, theirs = torch.zeros(7, 3), torch.zeros(7, 3, requires_grad=True)
    adam, reference = Adam([ours], lr=0.05), torch.optim.Adam([theirs], lr=0.05)
    for _ in range(25):
        ours.grad = 2 * (ours - target) ** 3 + (ours - target)
        adam.step()
        reference.zero_grad()
        (0.5 * (theirs - target) ** 4 + 0.5 * (theirs - target) ** 2).sum().backward()
        reference.step()
    assert torch.allclose(ours, theirs.detach(), atol=1e-6) and not torch.allclose(ours, torch.zeros(7, 3))


def test_leace_projection_is_idempotent_and_equalises_class_means():
    x, z = _embeddings(d=8)
    z3 = np.where(z == 1, 2, np.random.default_rng(1).integers(0, 2, len(z)))
    for target, k in [(z, 2), (z3, 3)]:
        mean, eraser = leace_eraser(x, target, k)
        projection = np.eye(x.shape[1]) - eraser
        assert np.allclose(projection @ projection, projection, atol=1e-10)
        erased = x - (x - mean) @ eraser.T
        class_means = np.stack([erased[target == c].mean(axis=0) for c in range(k)])
        assert np.allclose(class_means, class_means[0], atol=1e-10)


def test_attentive_probe_reads_a_token_the_mean_dilutes():
    rng = np.random.default_rng(0)
    n, tokens, d = 400, 16, 6
    z = rng.integers(0, 2, n)
    x = rng.normal(size=(n, tokens, d)).astype(np.float32)
    where = rng.integers(0, tokens, n)
    x[np.arange(n), where, 0] = 6.0  # a marker token anywhere, carrying the attribute in feature 1
    x[np.arange(n), where, 1] = np.where(z == 1, 3.0, -3.0)
    folds = fold_ids(n, 4, rng)
    attentive = probe_scores(attentive_probe_cv(x, z, 2, folds, n_queries=2, epochs=200, l2=1e-4, seed=0), z, 2)
    linear = probe_scores(linear_probe_cv(x.mean(axis=1), z, 2, folds), z, 2)
    assert attentive["accuracy"] > 0.95
    assert attentive["accuracy"] > linear["accuracy"]


def _leaky_mlp():
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential()
    module.add_module("fc1", torch.nn.Linear(4, 16))
    module.add_module("act1", torch.nn.ReLU())
    module.add_module("fc2", torch.nn.Linear(16, 2))
    return module


def _leaky_data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return Dataset(x=x, y=(x[:, 1] > 0).astype(np.int64), attributes={"sex": np.where(x[:, 0] > 0, "f", "m")})


def test_leakage_on_torch_model_with_task_cost():
    data = _leaky_data()
    records = run_analysis(Leakage, model_from_module(_leaky_mlp(), input_shape=(4,)), data, folds=4)
    leak = records.finding("attribute_leakage", subject="sex")
    majority = max(np.mean(data.attributes["sex"] == "f"), np.mean(data.attributes["sex"] == "m"))
    assert leak.details["accuracy"] > 0.95 and leak.value == pytest.approx(leak.details["accuracy"] - majority)
    assert {m.group for m in records.metrics if m.name == "probe_accuracy"} == {"fc1", "act1"}  # fc2 is the output
    after = records.finding("leakage_after_erasure", subject="sex")
    assert after.passed and abs(after.value) < 0.06
    task = after.details["task"]
    assert task["layer"] == "act1" and 0 <= task["changed_predictions"] <= 1 and task["accuracy_change"] is not None
    assert [f.name for f in records.figures] == ["leakage:sex"]


def test_leakage_on_onnx_model_through_extra_graph_outputs(tmp_path):
    data = _leaky_data()
    path = export_onnx(_leaky_mlp(), tmp_path / "mlp.onnx", data.x)
    model = load_onnx_model(path)
    records = run_analysis(Leakage, model, data, folds=4)
    layers = {m.group for m in records.metrics if m.name == "probe_accuracy"}
    assert layers and layers <= set(model.layers())
    assert records.finding("attribute_leakage", subject="sex").details["accuracy"] > 0.95
    assert records.finding("leakage_after_erasure", subject="sex").details["task"] is None
    assert any("task cost of erasure not computed" in note for note in records.notes)


def test_leakage_attentive_probe_on_conv_activations():
    rng = np.random.default_rng(0)
    x = rng.random((300, 1, 8, 8)).astype(np.float32)
    bright = x[:, 0, :4, :4].mean(axis=(1, 2)) > 0.5
    data = Dataset(x=x, attributes={"bright": np.where(bright, "yes", "no")}, modality="image")
    records = run_analysis(Leakage, tiny_cnn(), data, folds=3, attentive_epochs=60)
    attentive = [m for m in records.metrics if m.name == "attentive_probe_accuracy"]
    assert attentive and all(0 <= m.value <= 1 for m in attentive)


def test_leakage_skips_model_without_layers():
    from audit.runner import make_context

    class NoLayers:
        device = "cpu"
        capabilities = frozenset({"predict"})

        def layers(self):
            return []

    ctx = make_context(NoLayers(), _leaky_data(), predictions=np.full((500, 2), 0.5), logits=np.zeros((500, 2)))
    assert Leakage().skip_reason(ctx) == "the model exposes no layers to probe"
