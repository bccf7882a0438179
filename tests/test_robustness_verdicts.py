"""Verdicts of the performance and robustness analyses: every interval against an independent computation,
too few rows is inconclusive, families are corrected, and tabular attacks leave categorical columns alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as scipy_stats
from statsmodels.stats.proportion import proportion_confint

from audit import stats
from audit.data import Dataset
from audit.testing import linear_model, run_analysis, tiny_dataset

from audit_performance import Performance, balanced_accuracy_interval
from audit_robustness import Adversarial, BlackBoxAttack, Calibration, Corruptions, OutOfDistribution
from audit_robustness._common import frozen_columns
from audit_robustness._run_calibration import ece_interval

Z95 = scipy_stats.norm.ppf(0.975)


def wilson_sm(k, n, level=0.95):
    return proportion_confint(k, n, alpha=1 - level, method="wilson")


# -- statistics added for these verdicts ---------------------------------------------------

def _tango_score_by_optimiser(b, c, n, delta):
    """Tango's score statistic with the nuisance cell maximised numerically (not the closed form)."""
    def negative_log_likelihood(q21):
        q12 = q21 + delta
        rest = 1 - q12 - q21
        if q21 <= 0 or q12 <= 0 or rest <= 0:
            return np.inf
        return -(b * np.log(q12) + c * np.log(q21) + (n - b - c) * np.log(rest))

    low, high = max(1e-12, -delta + 1e-12), (1 - delta) / 2 - 1e-12
    q21 = optimize.minimize_scalar(negative_log_likelihood, bounds=(low, high), method="bounded",
                                   options={"xatol": 1e-13}).x
    return (b - c - n * delta) / math.sqrt(n * (2 * q21 + delta * (1 - delta)))


@pytest.mark.parametrize("b,c,n", [(12, 4, 150), (3, 9, 60), (25, 0, 200)])
def test_tango_paired_interval_ends_are_where_the_score_test_reaches_z(b, c, n):
    found = stats.paired_proportion_difference(b, c, n)
    assert found.lower < (b - c) / n < found.upper
    assert _tango_score_by_optimiser(b, c, n, found.lower) == pytest.approx(Z95, abs=2e-3)
    assert _tango_score_by_optimiser(b, c, n, found.upper) == pytest.approx(-Z95, abs=2e-3)


def test_tango_interval_keeps_width_when_nothing_changed_and_covers():
    # No discordant pair: the paired t interval is [0, 0]; the score interval is +-z^2 / (n + z^2).
    found = stats.paired_proportion_difference(0, 0, 100)
    assert found.upper == pytest.approx(Z95**2 / (100 + Z95**2), rel=1e-6) and found.lower == pytest.approx(-found.upper)
    rng = np.random.default_rng(3)
    truth, hits = 0.04, 0
    draws = rng.multinomial(250, [0.07, 0.03, 0.90], size=1500)
    for b, c, _ in draws:
        found = stats.paired_proportion_difference(b, c, 250)
        hits += found.lower <= truth <= found.upper
    assert 0.93 <= hits / len(draws) <= 0.97


def test_quantile_interval_order_statistics_match_the_binomial():
    values = np.random.default_rng(0).normal(size=101)
    lower, upper = stats.quantile_interval(values, 0.5, 0.95)
    ordered = np.sort(values)
    j, k = int(np.flatnonzero(ordered == lower)[0]) + 1, int(np.flatnonzero(ordered == upper)[0]) + 1
    # P(X_(j) <= median <= X_(k)) = P(j <= Bin(n, 1/2) <= k - 1) >= 0.95, and neither end can move inwards.
    coverage = scipy_stats.binom.cdf(k - 1, 101, 0.5) - scipy_stats.binom.cdf(j - 1, 101, 0.5)
    assert coverage >= 0.95
    assert scipy_stats.binom.sf(j, 101, 0.5) < 0.975 and scipy_stats.binom.cdf(k - 2, 101, 0.5) < 0.975


def test_fpr_at_tpr_interval_covers_the_population_fpr():
    rng = np.random.default_rng(5)
    threshold = scipy_stats.norm.ppf(0.05, loc=2.0)  # 95% of positives N(2, 1) score above it
    truth = scipy_stats.norm.sf(threshold)  # share of negatives N(0, 1) above it
    hits = 0
    for _ in range(400):
        found = stats.fpr_at_tpr_interval(rng.normal(2.0, 1.0, 300), rng.normal(0.0, 1.0, 300))
        hits += found.lower <= truth <= found.upper
    assert hits / 400 >= 0.93  # conservative by construction (Bonferroni over two sources of error)


def test_mover_balanced_accuracy_against_sklearn_and_statsmodels():
    from sklearn.metrics import balanced_accuracy_score

    y = np.r_[np.zeros(40), np.ones(25), np.full(10, 2)].astype(int)
    predicted = y.copy()
    predicted[:6], predicted[40:45], predicted[65:66] = 1, 0, 0
    hits = np.array([34, 20, 9])
    support = np.array([40, 25, 10])
    value, lower, upper = balanced_accuracy_interval(hits, support)
    assert value == pytest.approx(balanced_accuracy_score(y, predicted), abs=1e-12)
    bounds = [wilson_sm(k, n) for k, n in zip(hits, support)]
    p = hits / support
    assert lower == pytest.approx(value - math.sqrt(sum(((pk - lo) / 3) ** 2 for pk, (lo, _) in zip(p, bounds))), abs=1e-12)
    assert upper == pytest.approx(value + math.sqrt(sum(((hi - pk) / 3) ** 2 for pk, (_, hi) in zip(p, bounds))), abs=1e-12)
    # All classes recalled perfectly: still an interval, not [1, 1].
    assert balanced_accuracy_interval([10, 10], [10, 10])[1] < 0.85


def test_mover_balanced_accuracy_covers_the_truth():
    rng = np.random.default_rng(9)
    recall, support, hits = np.array([0.9, 0.6, 0.75]), np.array([60, 30, 15]), 0
    for _ in range(1500):
        _, lower, upper = balanced_accuracy_interval(rng.binomial(support, recall), support)
        hits += lower <= recall.mean() <= upper
    assert 0.93 <= hits / 1500 <= 0.975


# -- performance ------------------------------------------------------------------------------

def _labelled(n, seed, accuracy=0.8):
    model = linear_model([[1.0, 0.0], [-1.0, 0.0]])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    predicted = (x[:, 0] < 0).astype(np.int64)
    y = np.where(rng.random(n) < accuracy, predicted, 1 - predicted)
    return model, Dataset(x=x, y=y, modality="tabular", feature_names=["a", "b"])


def test_performance_intervals_against_statsmodels_and_sklearn():
    from sklearn.metrics import f1_score, precision_score, recall_score

    model, data = _labelled(400, 1)
    records = run_analysis(Performance, model, data)
    predicted = model.predict(data.x).argmax(1)
    correct = int((predicted == data.y).sum())
    accuracy = records.finding("accuracy")
    assert (accuracy.lower, accuracy.upper) == pytest.approx(wilson_sm(correct, 400), abs=1e-12)
    assert accuracy.rows == 400 and accuracy.method == "wilson" and accuracy.verdict == "passed"
    for k in (0, 1):
        precision = records.metric("precision", group=str(k))
        recall = records.metric("recall", group=str(k))
        tp = int(((predicted == k) & (data.y == k)).sum())
        assert precision.value == pytest.approx(precision_score(data.y, predicted, pos_label=k))
        assert (precision.lower, precision.upper) == pytest.approx(wilson_sm(tp, int((predicted == k).sum())), abs=1e-12)
        assert (recall.lower, recall.upper) == pytest.approx(wilson_sm(tp, int((data.y == k).sum())), abs=1e-12)
        assert recall.value == pytest.approx(recall_score(data.y, predicted, pos_label=k))
        f1 = records.metric("f1", group=str(k))
        assert f1.value == pytest.approx(f1_score(data.y, predicted, pos_label=k))
        # The multinomial bootstrap of the confusion matrix is the row bootstrap: compare with one done by hand.
        rng = np.random.default_rng(0)
        index = rng.integers(0, 400, size=(2000, 400))
        brute = [f1_score(data.y[i], predicted[i], pos_label=k) for i in index]
        assert f1.lower == pytest.approx(np.quantile(brute, 0.025), abs=0.012)
        assert f1.upper == pytest.approx(np.quantile(brute, 0.975), abs=0.012)
        assert f1.details["interval"]["monte_carlo_error"] <= 0.005 or f1.details["interval"]["replicates"] == 16000


def test_one_row_never_passes_the_accuracy_check():
    model, data = _labelled(1, 0, accuracy=1.0)
    accuracy = run_analysis(Performance, model, data).finding("accuracy")
    assert accuracy.value == 1.0
    assert accuracy.verdict == "inconclusive" and not accuracy.passed and not accuracy.failed
    assert "row" in accuracy.details["inconclusive_because"]
    # Above min_rows, a perfect score on a handful of rows is still not evidence: Wilson at 12/12 reaches below 0.8.
    model, data = _labelled(12, 0, accuracy=1.0)
    accuracy = run_analysis(Performance, model, data, min_accuracy=0.8).finding("accuracy")
    assert accuracy.verdict == "inconclusive" and accuracy.details["needs_rows"] > 12


def test_worst_class_recall_is_a_corrected_family():
    model, data = _labelled(300, 2, accuracy=0.9)
    finding = run_analysis(Performance, model, data, correction="bonferroni").finding("worst_class_recall")
    assert finding.details["comparisons"] == 2 and finding.details["correction"] == "bonferroni"
    hits = {k: int(((model.predict(data.x).argmax(1) == k) & (data.y == k)).sum()) for k in (0, 1)}
    k = int(finding.subject)
    assert finding.level == pytest.approx(1 - 0.05 / 2)
    assert (finding.lower, finding.upper) == pytest.approx(wilson_sm(hits[k], int((data.y == k).sum()), 1 - 0.05 / 2), abs=1e-12)
    assert finding.verdict == "passed"
    # A floor inside the worst class's interval: inconclusive, and never a failure.
    straddled = run_analysis(Performance, model, data, min_class_recall=finding.value).finding("worst_class_recall")
    assert straddled.verdict == "inconclusive"


# -- calibration ----------------------------------------------------------------------------

def _brute_ece(confidence, correct, edges):
    which = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, len(edges) - 2)
    total = 0.0
    for b in range(len(edges) - 1):
        inside = which == b
        if inside.any():
            total += abs(correct[inside].sum() - confidence[inside].sum())
    return total / len(confidence)


def test_ece_bootstrap_matches_a_row_bootstrap_done_by_hand():
    rng = np.random.default_rng(4)
    n = 400
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.random(n) < confidence - 0.05
    edges = np.linspace(0, 1, 11)
    found = ece_interval(confidence, correct, edges, np.random.default_rng(0))
    assert found["plug_in"] == pytest.approx(_brute_ece(confidence, correct, edges), abs=1e-12)
    index = np.random.default_rng(1).integers(0, n, size=(1500, n))
    brute = np.array([_brute_ece(confidence[i], correct[i], edges) for i in index])
    bias = brute.mean() - found["plug_in"]
    assert found["bias"] == pytest.approx(bias, abs=0.002)
    lower, upper = np.quantile(brute, [0.025, 0.975])
    assert found["lower"] == pytest.approx(max(0.0, lower - 2 * bias), abs=0.006)
    assert found["upper"] == pytest.approx(upper - 2 * bias, abs=0.006)


def test_calibration_findings_carry_intervals_and_small_data_is_inconclusive():
    rng = np.random.default_rng(7)
    model = linear_model(rng.normal(size=(3, 4)))
    data = tiny_dataset(n=500, n_classes=3, seed=7)
    records = run_analysis(Calibration, model, data)
    probabilities = model.predict(data.x)
    onehot = np.eye(3)[data.y]
    per_row = ((probabilities - onehot) ** 2).sum(1)
    brier = records.finding("brier_score")
    # Percentile bootstrap of a mean: close to the t interval at n = 500.
    t_interval = scipy_stats.t.interval(0.95, 499, loc=per_row.mean(), scale=scipy_stats.sem(per_row))
    assert (brier.lower, brier.upper) == pytest.approx(t_interval, abs=0.01)
    order = np.argsort(-probabilities.max(1), kind="stable")
    errors = int((probabilities.argmax(1)[order[:450]] != data.y[order[:450]]).sum())
    risk = records.finding("selective_risk_at_90")
    assert (risk.lower, risk.upper) == pytest.approx(wilson_sm(errors, 450), abs=1e-12)
    assert records.finding("expected_calibration_error").lower is not None
    tiny = run_analysis(Calibration, model, tiny_dataset(n=12, n_classes=3, seed=1))
    assert all(f.verdict == "inconclusive" for f in tiny.findings)


# -- corruptions ----------------------------------------------------------------------------

def test_corruption_drops_are_paired_and_decided_as_a_family():
    model = linear_model(np.random.default_rng(2).normal(size=(2, 4)))
    data = tiny_dataset(n=300, seed=2)
    records = run_analysis(Corruptions, model, data, severities=[1, 5], judged_severity=5, correction="none")
    clean_correct = model.predict(data.x).argmax(1) == data.y
    drop = records.finding("corruption_accuracy_drop")
    assert drop.details["comparisons"] == 2 and drop.details["correction"] == "none"
    metric = records.metric("accuracy_drop", subject=drop.subject)
    assert drop.value == pytest.approx(metric.value)
    found = stats.paired_proportion_difference(metric.details["lost"], metric.details["gained"], 300)
    assert (metric.lower, metric.upper) == pytest.approx((found.lower, found.upper))
    assert (drop.lower, drop.upper) == pytest.approx((found.lower, found.upper))  # no correction: the 95% interval
    assert metric.details["lost"] - metric.details["gained"] == pytest.approx(metric.value * 300)
    # mCE: the paired t interval of per-row clean correctness minus mean corrupted correctness.
    mce = records.finding("mean_corruption_error")
    assert mce.method == "paired t over rows" and mce.rows == 300
    accuracy = {(name, s): records.metric("accuracy", subject=f"{name} s={s}").value for name in ("gaussian_noise", "feature_dropout") for s in (1, 5)}
    assert mce.value == pytest.approx((1 - np.mean(list(accuracy.values()))) - (1 - clean_correct.mean()), abs=1e-12)
    assert mce.lower < mce.value < mce.upper
    holm = run_analysis(Corruptions, model, data, severities=[1, 5], judged_severity=5).finding("corruption_accuracy_drop")
    assert holm.details["correction"] == "holm" and holm.level >= 0.95


# -- attacks ----------------------------------------------------------------------------------

def test_robust_accuracy_judged_on_the_clean_correct_rows():
    model = linear_model(np.random.default_rng(3).normal(size=(2, 4)))
    data = tiny_dataset(n=200, seed=3)
    records = run_analysis(Adversarial, model, data, attacks=["pgd"], norms=["linf"], epsilons_linf=[0.1, 1.0], correction="none")
    clean_correct = int((model.predict(data.x).argmax(1) == data.y).sum())
    clean = clean_correct / 200
    for eps in (0.1, 1.0):
        finding = records.finding("robust_accuracy", subject=f"pgd linf eps={eps:.3g}")
        robust = int(round(finding.value * 200))
        lower, upper = wilson_sm(robust, clean_correct)
        assert (finding.lower, finding.upper) == pytest.approx((lower * clean, upper * clean), abs=1e-12)
        assert finding.details["comparisons"] == 2
        metric = records.metric("robust_accuracy", subject=f"pgd linf eps={eps:.3g}")
        assert (metric.lower, metric.upper) == pytest.approx(wilson_sm(robust, 200), abs=1e-12)


def test_blackbox_success_rate_and_median_queries_intervals():
    model = linear_model(np.random.default_rng(6).normal(size=(2, 4)))
    data = tiny_dataset(n=150, seed=6)
    records = run_analysis(BlackBoxAttack, model, data, epsilon=1.0, budget=60)
    rate = records.metric("attack_success_rate")
    fooled = int(round(rate.value * rate.count))
    assert (rate.lower, rate.upper) == pytest.approx(wilson_sm(fooled, rate.count), abs=1e-12)
    median = records.finding("median_queries")
    if median.value is not None:
        assert median.lower <= median.value <= median.upper and median.method == "order statistics (binomial)"


def _mixed_columns(n=400, seed=0):
    """income (continuous), flag (binary), region (5 categories), sex (a protected attribute that is an input), debt."""
    rng = np.random.default_rng(seed)
    income = rng.normal(size=n)
    flag = (rng.random(n) < 0.5).astype(float)
    region = rng.integers(0, 5, n).astype(float)
    sex = rng.normal(size=n)  # continuous on purpose: only its being an attribute freezes it
    debt = rng.normal(size=n)
    x = np.c_[income, flag, region, sex, debt].astype(np.float32)
    weights = np.array([[0.5, 3.0, 1.0, 2.0, 1.0], [-0.5, -3.0, -1.0, -2.0, -1.0]])
    y = (x @ weights.T).argmax(1)
    data = Dataset(x=x, y=y, attributes={"sex": sex}, modality="tabular",
                   feature_names=["income", "flag", "region", "sex", "debt"], attribute_features={"sex": 3})
    return linear_model(weights), data


def _spy(model, name, seen):
    original = getattr(model, name)

    def recorded(x, *args, **kwargs):
        seen.append(np.array(x.detach().cpu().numpy() if hasattr(x, "detach") else x, copy=True))
        return original(x, *args, **kwargs)

    setattr(model, name, recorded)


def test_frozen_columns_say_why():
    _, data = _mixed_columns()
    assert frozen_columns(data, ["debt"]) == {1: "binary", 2: "categorical (5 integer values)", 3: "protected attribute sex",
                                              4: "declared immutable"}


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_white_box_attacks_leave_binary_categorical_and_protected_columns_exactly_alone(attack, norm):
    model, data = _mixed_columns()
    seen = []
    _spy(model, "input_gradient", seen)
    _spy(model, "logits_torch", seen)
    records = run_analysis(Adversarial, model, data, attacks=[attack], norms=[norm], immutable=["debt"], max_rows=100)
    rows = {tuple(r) for r in data.x[:, 1:].tolist()}
    batches = [s for s in seen if s.ndim == 2 and s.shape[1] == 5]
    assert batches
    for batch in batches:
        # Every attacked row keeps its flag, region, sex and debt exactly as in some data row.
        assert all(tuple(r) in rows for r in batch[:, 1:].astype(np.float32).tolist())
    assert any(not np.isin(batch[:, 0], data.x[:, 0]).all() for batch in batches)  # income does move
    finding = records.findings[0]
    assert set(finding.details["frozen_columns"]) == {"flag", "region", "sex", "debt"}
    assert any("leave 4 column(s) unchanged" in note for note in records.notes)


def test_square_attack_and_tabular_corruptions_leave_categorical_columns_alone():
    model, data = _mixed_columns()
    seen = []
    _spy(model, "predict", seen)
    records = run_analysis(BlackBoxAttack, model, data, epsilon=0.5, budget=30, max_rows=100)
    assert records.finding("robust_accuracy").details["frozen_columns"].keys() == {"flag", "region", "sex"}
    corrupted = run_analysis(Corruptions, model, data, severities=[5], max_rows=100)
    assert any("leave 3 column(s) unchanged" in note for note in corrupted.notes)
    rows = {tuple(r) for r in data.x[:, 1:4].tolist()}
    batches = [s for s in seen if s.ndim == 2 and s.shape[1] == 5]
    assert len(batches) > 3
    for batch in batches:
        assert all(tuple(r) in rows for r in batch[:, 1:4].astype(np.float32).tolist())


def test_unknown_immutable_column_is_a_clear_error():
    import audit

    model, data = _mixed_columns()
    with pytest.raises(audit.AuditError, match="no input column salary"):
        run_analysis(Adversarial, model, data, immutable=["salary"])


# -- out-of-distribution ------------------------------------------------------------------

def test_ood_auroc_interval_is_delong_and_fpr_interval_brackets_the_estimate(tmp_path):
    from sklearn.metrics import roc_auc_score

    model = linear_model(np.random.default_rng(8).normal(size=(3, 4)))
    data = tiny_dataset(n=600, n_classes=3, seed=8)
    far = tmp_path / "far.npz"
    np.savez(far, x=(tiny_dataset(n=300, seed=10).x * 0.3).astype(np.float32))
    records = run_analysis(OutOfDistribution, model, data, ood_data=str(far))
    finding = records.finding("ood_auroc", subject="msp vs ood_data")
    inside = model.predict(data.x).max(1)
    outside = model.predict(np.load(far)["x"]).max(1)
    labels = np.r_[np.ones(600), np.zeros(300)]
    assert finding.value == pytest.approx(roc_auc_score(labels, np.r_[inside, outside]), abs=1e-12)
    expected = stats.auroc_interval(np.r_[inside, outside], labels.astype(bool))
    assert (finding.lower, finding.upper) == pytest.approx((expected.lower, expected.upper))
    fpr = records.metric("fpr_at_95_tpr", subject="msp vs ood_data")
    assert fpr.lower <= fpr.value <= fpr.upper
