"""Verdicts of the bias analyses (issue 13): intervals against statsmodels/SciPy, coverage, one family, inconclusive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit.data import Dataset
from audit.testing import linear_model, run_analysis

from audit_bias import GroupFairness
from audit_bias import _stats
from audit_bias._fairness import gap_interval, max_of, worst_group_interval

ROOT = Path(__file__).resolve().parents[1]


def _fold(lower, upper):
    """|d| from a signed interval, written out independently of the plugin."""
    if lower <= 0 <= upper:
        return 0.0, max(-lower, upper)
    return min(abs(lower), abs(upper)), max(abs(lower), abs(upper))


def logit_passthrough():
    return linear_model([[0.0], [1.0]], [0.0, 0.0])


def labelled_rows(groups: dict[str, tuple[int, int, int, int]], seed: int = 0):
    """Rows with (TP, FN, FP, TN) per group; x is the class-1 logit (+2 predicted positive, -2 not)."""
    xs, ys, gs = [], [], []
    for name, (tp, fn, fp, tn) in groups.items():
        pred = np.repeat([1, 0, 1, 0], [tp, fn, fp, tn])
        ys.append(np.repeat([1, 1, 0, 0], [tp, fn, fp, tn]))
        xs.append(np.where(pred == 1, 2.0, -2.0))
        gs.append(np.full(len(pred), name))
    order = np.random.default_rng(seed).permutation(sum(len(y) for y in ys))
    return (np.concatenate(xs)[order].astype(np.float32)[:, None], np.concatenate(ys)[order].astype(np.int64),
            np.concatenate(gs)[order])


# -- intervals against independent computations ----------------------------------------------------

def test_two_group_difference_is_folded_newcombe_of_statsmodels():
    from statsmodels.stats.proportion import confint_proportions_2indep

    for (k1, n1, k2, n2) in [(30, 100, 45, 120), (0, 40, 3, 50), (40, 40, 12, 60), (20, 80, 20, 80)]:
        for level in (0.95, 0.999):
            lo, hi = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - level)
            assert gap_interval([k1, k2], [n1, n2], level, "difference") == pytest.approx(_fold(lo, hi), abs=1e-10)


def test_many_group_gaps_equal_the_public_toolkit():
    from audit import stats

    k, n = np.array([12, 40, 33, 5]), np.array([60, 90, 70, 40])
    for level in (0.9, 0.95, 0.99):
        d = stats.largest_difference(k, n, level)
        assert gap_interval(k, n, level, "difference") == pytest.approx((d.lower, d.upper), abs=1e-12)
        r = stats.smallest_ratio(k, n, level)
        assert gap_interval(k, n, level, "ratio") == pytest.approx((r.lower, r.upper), abs=1e-12)
        # Two groups take a scalar path: the same numbers.
        for a, b in [(0, 1), (1, 3), (3, 2)]:
            for kind, public in (("difference", stats.largest_difference), ("ratio", stats.smallest_ratio)):
                expected = public(k[[a, b]], n[[a, b]], level)
                assert gap_interval(k[[a, b]], n[[a, b]], level, kind) == pytest.approx((expected.lower, expected.upper), abs=1e-12)
    assert gap_interval([0, 0], [30, 40], 0.95, "ratio")[1] == 1.0 and gap_interval([30, 40], [30, 40], 0.95, "difference")[0] == 0.0


def test_two_group_ratio_is_the_adjusted_log_interval():
    from scipy.stats import norm

    k1, n1, k2, n2 = 25, 120, 50, 100
    z = norm.ppf(0.975)
    log_ratio = np.log((k1 + 0.5) / (n1 + 0.5)) - np.log((k2 + 0.5) / (n2 + 0.5))
    se = np.sqrt(1 / (k1 + 0.5) - 1 / (n1 + 0.5) + 1 / (k2 + 0.5) - 1 / (n2 + 0.5))
    expected = (np.exp(log_ratio - z * se), np.exp(log_ratio + z * se))  # below 1: min(r, 1/r) = r
    assert expected[1] < 1
    assert gap_interval([k1, k2], [n1, n2], 0.95, "ratio") == pytest.approx(expected, rel=1e-10)
    assert gap_interval([k2, k1], [n2, n1], 0.95, "ratio") == pytest.approx(expected, rel=1e-10)


def test_group_rates_carry_statsmodels_wilson_intervals():
    from statsmodels.stats.proportion import proportion_confint

    x, y, g = labelled_rows({"a": (30, 10, 20, 40), "b": (20, 20, 5, 75), "c": (10, 0, 0, 30)})
    records = run_analysis(GroupFairness, logit_passthrough(), Dataset(x=x, y=y, attributes={"grp": g}))
    for group, counts in {"a": {"selection_rate": (50, 100), "tpr": (30, 40), "fpr": (20, 60), "accuracy": (70, 100)},
                          "c": {"selection_rate": (10, 40), "tpr": (10, 10), "fpr": (0, 30)}}.items():
        for name, (k, n) in counts.items():
            metric = records.metric(name, group=group, subject="grp")
            assert (metric.lower, metric.upper) == pytest.approx(proportion_confint(k, n, alpha=0.05, method="wilson"), abs=1e-10)
    # 10/10 has width, not [1, 1] as a bootstrap gives.
    assert records.metric("tpr", group="c", subject="grp").lower == pytest.approx(0.7225, abs=1e-4)


def test_worst_group_interval_is_built_from_wilson_bounds():
    from statsmodels.stats.proportion import proportion_confint

    k, n = np.array([70, 95, 40]), np.array([100, 120, 50])
    lower, upper = worst_group_interval(k, n, 0.95)
    assert lower == pytest.approx(min(proportion_confint(a, b, 0.05, "wilson")[0] for a, b in zip(k, n)), abs=1e-12)
    assert upper == pytest.approx(min(proportion_confint(a, b, 2 * 0.05 / 3, "wilson")[1] for a, b in zip(k, n)), abs=1e-12)


def test_max_of_takes_lower_ends_at_bonferroni_and_upper_ends_at_the_level():
    from statsmodels.stats.proportion import confint_proportions_2indep

    tpr, fpr = ([30, 20], [40, 40]), ([20, 5], [60, 80])
    interval = max_of([lambda level: gap_interval(*tpr, level, "difference"),
                       lambda level: gap_interval(*fpr, level, "difference")])(0.95)

    def folded(pair, alpha):
        (k1, k2), (n1, n2) = pair
        return _fold(*confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", alpha=alpha))

    assert interval[0] == pytest.approx(max(folded(tpr, 0.025)[0], folded(fpr, 0.025)[0]), abs=1e-10)
    assert interval[1] == pytest.approx(max(folded(tpr, 0.05)[1], folded(fpr, 0.05)[1]), abs=1e-10)


def test_independent_gaps_take_sidak_lower_ends_and_upper_ends_with_the_rest_of_alpha():
    """Equalized odds of one class: the TPR and FPR gaps read disjoint rows. Lower ends at the Sidak level (no gap at
    all: either folded interval errs when its signed one misses 0), upper ends at one-sided alpha less that."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    tpr, fpr = ([30, 20], [40, 40]), ([20, 5], [60, 80])
    interval = max_of([lambda level: gap_interval(*tpr, level, "difference"),
                       lambda level: gap_interval(*fpr, level, "difference")], independent=True)(0.95)

    def folded(pair, alpha):
        (k1, k2), (n1, n2) = pair
        return _fold(*confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", alpha=alpha))

    union = 1 - 0.95 ** 0.5  # two-sided, per gap
    assert interval[0] == pytest.approx(max(folded(tpr, union)[0], folded(fpr, union)[0]), abs=1e-10)
    assert interval[1] == pytest.approx(max(folded(tpr, 2 * (0.05 - union / 2))[1], folded(fpr, 2 * (0.05 - union / 2))[1]), abs=1e-10)

    # Coverage of the largest of two gaps on counts, with no gap at all and with two near-equal gaps.
    rng = np.random.default_rng(2)
    for p_tpr, p_fpr in [((0.7, 0.7), (0.2, 0.2)), ((0.75, 0.62), (0.35, 0.18))]:
        truth = max(abs(p_tpr[0] - p_tpr[1]), abs(p_fpr[0] - p_fpr[1]))
        hits = 0
        for _ in range(400):
            positives, negatives = rng.multinomial(250, [0.5, 0.5]), rng.multinomial(250, [0.5, 0.5])
            k_tpr, k_fpr = rng.binomial(positives, p_tpr), rng.binomial(negatives, p_fpr)
            lo, hi = max_of([lambda level: gap_interval(k_tpr, positives, level, "difference"),
                             lambda level: gap_interval(k_fpr, negatives, level, "difference")], independent=True)(0.95)
            hits += lo <= truth <= hi
        assert 0.92 <= hits / 400 <= 0.99, (p_tpr, p_fpr, hits / 400)


def test_permutation_p_value_beyond_the_draws_is_the_fitted_gamma_tail():
    from scipy.stats import gamma

    null = np.random.default_rng(0).gamma(2.0, 0.5, size=199)
    p, how = _stats.permutation_p_value(float(null.max()) * 2, null)
    mean, var = null.mean(), null.var(ddof=1)
    assert how.startswith("gamma") and p == pytest.approx(gamma.sf(null.max() * 2, mean**2 / var, scale=var / mean), rel=1e-8)
    assert p <= 1 / 200
    p, how = _stats.permutation_p_value(float(np.sort(null)[-10]), null)
    assert how == "permutation" and p == pytest.approx(11 / 200)


def test_dcov_beyond_its_permutations_takes_the_chi_square_bound_which_never_understates_p():
    """Scores independent of a two-valued attribute, but a sample whose groups differ by chance (t-test p = 0.001):
    199 permutations are all below the observed dCov. The moment-fitted gamma tail gave 2e-4 here; the chi-square(1)
    bound must not fall below the p-value of 4,999 permutations."""
    from scipy.stats import chi2

    rng = np.random.default_rng(13)
    n = 400
    scores = 1 / (1 + np.exp(-rng.normal(size=n)))
    codes = np.unique(rng.choice(["p", "q"], size=n), return_inverse=True)[1]
    result = _stats.distance_covariance(scores[:, None], None, np.random.default_rng(0), 199, codes=codes)
    assert result["p_method"].startswith("chi-square(1) bound")
    bound = chi2.sf(result["dcov2"] / result["null_mean"], 1)
    assert result["p_value"] == pytest.approx(min(1 / 200, bound), rel=1e-8)  # never above the permutations' own floor
    many = _stats.distance_covariance(scores[:, None], None, np.random.default_rng(1), 4999, codes=codes)
    assert many["p_method"] == "permutation" and 0.001 < many["p_value"] < 0.02
    assert bound >= many["p_value"] and result["p_value"] >= many["p_value"]
    # A real dependence is still far beyond: the bound does not stop a true effect from passing a correction.
    strong = _stats.distance_covariance((scores + 0.3 * codes)[:, None], None, np.random.default_rng(0), 199, codes=codes)
    assert strong["p_value"] < 1e-6


def test_coverage_at_and_away_from_no_gap():
    """A small version of benchmarks/bench_verdicts.py on counts: two groups of ~250, 400 samples each."""
    rng = np.random.default_rng(11)
    samples = 400
    for p_a, p_b in [(0.4, 0.4), (0.45, 0.30)]:
        hits = {"difference": 0, "ratio": 0, "worst": 0}
        for _ in range(samples):
            n = rng.multinomial(500, [0.5, 0.5])
            k = rng.binomial(n, [p_a, p_b])
            lo, hi = gap_interval(k, n, 0.95, "difference")
            hits["difference"] += lo <= abs(p_a - p_b) <= hi
            lo, hi = gap_interval(k, n, 0.95, "ratio")
            hits["ratio"] += lo <= min(p_a, p_b) / max(p_a, p_b) <= hi
            lo, hi = worst_group_interval(k, n, 0.95)
            hits["worst"] += lo <= min(p_a, p_b) <= hi
        for name, hit in hits.items():
            assert 0.91 <= hit / samples <= 0.99, (p_a, p_b, name, hit / samples)


# -- verdicts -------------------------------------------------------------------------------------

def test_pure_noise_attributes_fail_nothing_after_correction():
    """Ten attributes of four random levels (groups of ~100 rows): before the family correction and the
    interval verdicts, max-min gaps of chance size failed here."""
    rng = np.random.default_rng(4)
    n = 400
    logit = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    attributes = {f"a{i}": rng.choice(["p", "q", "r", "s"], size=n) for i in range(10)}
    data = Dataset(x=logit.astype(np.float32)[:, None], y=y, attributes=attributes)
    records = run_analysis(GroupFairness, logit_passthrough(), data, intersections=False, max_plot_groups=0,
                           dcov_permutations=19, js_null_draws=20)
    gaps = [f for f in records.findings if f.check in ("demographic_parity_difference", "equalized_odds_difference")]
    assert max(f.value for f in gaps) > 0.1  # chance alone crosses the medium threshold...
    assert not [f for f in records.findings if f.verdict == "failed"]  # ...and nothing fails
    members = len(records.findings)
    assert all(f.details["comparisons"] == members and f.details["correction"] == "holm" for f in records.findings)
    assert all(f.level is None or f.level >= 0.95 for f in records.findings)


def test_weighted_dcor_of_a_resample_equals_dcor_of_the_duplicated_rows():
    """The resampling identity behind dCor's spread, against the V-statistic computed on the resampled rows themselves."""
    rng = np.random.default_rng(3)
    n = 50
    scores, codes = rng.normal(size=(n, 2)), rng.integers(0, 3, n)
    one_hot = np.eye(3)[codes]

    def dcor(x, z):  # written out: double-centred distance matrices of the rows, no shortcut
        def centred(v):
            d = np.sqrt(((v[:, None, :] - v[None, :, :]) ** 2).sum(axis=2))
            return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()
        a, b = centred(x), centred(z)
        return np.sqrt((a * b).mean() / np.sqrt((a * a).mean() * (b * b).mean()))

    counts = rng.multinomial(n, np.full(n, 1 / n), size=4).T
    distances = np.sqrt(((scores[:, None] - scores[None]) ** 2).sum(axis=2))
    got = _stats.weighted_dcor(distances, np.sqrt(2) * (codes[:, None] != codes[None, :]), counts / n)
    want = [dcor(np.repeat(scores, counts[:, b], axis=0), np.repeat(one_hot, counts[:, b], axis=0)) for b in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert _stats.weighted_dcor(distances, np.sqrt(2) * (codes[:, None] != codes[None, :]), np.full((n, 1), 1 / n))[0] == pytest.approx(
        dcor(scores, one_hot))


def test_dcov_passes_only_when_its_spread_stays_within_the_threshold():
    """Scores independent of the attribute: on 80 rows dCor's resampling spread reaches past 0.1 (inconclusive, where
    a point estimate under 0.1 used to pass); on 3,000 rows it stays under it (passed)."""
    verdicts = {}
    for n in (80, 3000):
        rng = np.random.default_rng(11)
        logit = rng.normal(size=n)
        data = Dataset(x=logit.astype(np.float32)[:, None], y=None, attributes={"grp": rng.choice(["p", "q"], size=n)})
        records = run_analysis(GroupFairness, logit_passthrough(), data, max_plot_groups=0, dcov_permutations=49, js_null_draws=20,
                               dcov_max_rows=n)
        finding = records.finding("distance_covariance", subject="grp")
        sd = finding.details["dcor_bootstrap_sd"]
        assert sd > 0 and finding.details["dcor_resamples"] == 100
        verdicts[n] = (finding.verdict, finding.value, sd)
    verdict, value, sd = verdicts[80]
    assert verdict == "inconclusive" and value + 1.96 * sd > 0.1, verdicts
    verdict, value, sd = verdicts[3000]
    assert verdict == "passed" and value + 3 * sd < 0.1, verdicts


def test_js_divergence_passes_only_when_its_spread_stays_within_the_threshold():
    """Group score histograms of noise: on 80 rows the divergence (0.075) is under 0.1 but its spread over resampled
    groups reaches past it (inconclusive, a pass before); on 5,000 rows it passes."""
    verdicts = {}
    for n in (80, 5000):
        rng = np.random.default_rng(5)
        logit = rng.normal(size=n)
        data = Dataset(x=logit.astype(np.float32)[:, None], y=None, attributes={"grp": rng.choice(["p", "q"], size=n)})
        records = run_analysis(GroupFairness, logit_passthrough(), data, max_plot_groups=0, min_group_size=10,
                               dcov_permutations=49, js_null_draws=100)
        finding = records.finding("score_js_divergence", subject="grp")
        verdicts[n] = (finding.verdict, finding.value, finding.details["js_resample_sd"])
    verdict, value, sd = verdicts[80]
    assert verdict == "inconclusive" and value < 0.1 < value + 1.96 * sd, verdicts
    verdict, value, sd = verdicts[5000]
    assert verdict == "passed" and value + 3 * sd < 0.1, verdicts


def test_small_groups_and_straddling_intervals_are_inconclusive_with_what_would_settle_them():
    x, y, g = labelled_rows({"a": (30, 10, 20, 40), "b": (2, 2, 2, 2)})
    records = run_analysis(GroupFairness, logit_passthrough(), Dataset(x=x, y=y, attributes={"grp": g}))
    finding = records.finding("demographic_parity_difference", subject="grp")
    assert finding.verdict == "inconclusive" and not finding.failed
    assert "collect more data" in finding.message and "inconclusive_because" in finding.details

    # 0.125 against 0.10 with 80 rows a group: the interval straddles 0.1.
    x, y, g = labelled_rows({"a": (20, 20, 10, 30), "b": (15, 25, 5, 35)})
    records = run_analysis(GroupFairness, logit_passthrough(), Dataset(x=x, y=y, attributes={"grp": g}))
    gap = records.finding("demographic_parity_difference", subject="grp")
    assert gap.value == pytest.approx(0.125) and gap.verdict == "inconclusive"
    assert gap.lower <= 0.1 < gap.upper and gap.details["needs_rows"] > 160
    assert "rows would settle it" in gap.message


def test_correction_is_an_option_and_none_tests_each_check_at_the_level():
    x, y, g = labelled_rows({"a": (30, 10, 20, 40), "b": (20, 20, 5, 75)})
    data = Dataset(x=x, y=y, attributes={"grp": g})
    plain = run_analysis(GroupFairness, logit_passthrough(), data, correction="none")
    holm = run_analysis(GroupFairness, logit_passthrough(), data)
    ratio_plain = plain.finding("demographic_parity_ratio")
    ratio_holm = holm.finding("demographic_parity_ratio")
    assert ratio_plain.level == pytest.approx(0.95) and ratio_plain.details["correction"] == "none"
    assert ratio_holm.level > 0.95 and ratio_holm.upper >= ratio_plain.upper
    assert (ratio_plain.lower, ratio_plain.upper) == pytest.approx(tuple(ratio_plain.details["ci"]))
    with pytest.raises(Exception):
        GroupFairness({"correction": "sidak"})


def test_value_labels_name_the_groups_in_metrics_and_messages():
    x, y, _ = labelled_rows({"a": (30, 10, 20, 40), "b": (20, 20, 5, 75)})
    sex = np.where(np.arange(len(x)) < 100, 0, 1)
    x[:, 0] = np.where(sex == 0, 2.0, -2.0)
    data = Dataset(x=x, y=y, attributes={"sex": sex})
    data.value_labels = {"sex": {"0": "female", "1": "male"}}
    records = run_analysis(GroupFairness, logit_passthrough(), data)
    assert records.metric("selection_rate", group="female", subject="sex").value == 1.0
    ratio = records.finding("demographic_parity_ratio", subject="sex")
    assert "selection rate of sex=male is 0.000 of sex=female's" in ratio.message


def test_demo_credit_sex_bias_fails_high_with_its_interval():
    from audit.data import load as load_data
    from audit.testing import load_onnx_model

    demo = ROOT / "examples" / "demo"
    records = run_analysis(GroupFairness, load_onnx_model(demo / "credit.onnx"), load_data(demo / "credit.npz"),
                           attributes=["sex", "region"], max_plot_groups=0)
    for check in ("demographic_parity_difference", "demographic_parity_ratio"):
        finding = records.finding(check, subject="sex")
        assert finding.verdict == "failed" and finding.severity.value == "high", finding.message
        assert finding.lower is not None and finding.level > 0.95 and "sex=" in finding.message
    parity = records.finding("demographic_parity_difference", subject="sex")
    assert parity.lower > 0.2 and parity.method == "newcombe"


def test_counterfactual_intervals_are_paired_t_and_wilson():
    from scipy.stats import t
    from statsmodels.stats.proportion import proportion_confint

    from audit_bias import Counterfactual

    rng = np.random.default_rng(8)
    n = 600
    sex = rng.integers(0, 2, n).astype(np.float32)
    x = np.column_stack([rng.normal(size=n), rng.normal(size=n), sex]).astype(np.float32)
    data = Dataset(x=x, attributes={"sex": np.where(sex == 1, "male", "female")}, attribute_features={"sex": 2})
    model = linear_model([[0.0, 0.0, 0.0], [1.0, -0.5, 0.4]], [0.0, 0.3])
    records = run_analysis(Counterfactual, model, data, correction="none")
    base = (x[:, 0].astype(np.float64) - 0.5 * x[:, 1] + 0.3)
    reference_is_male = records.finding("counterfactual_score_shift").details["reference"] == "male"
    ref = base + (0.4 if reference_is_male else 0.0)
    other = base + (0.0 if reference_is_male else 0.4)
    shift = 1 / (1 + np.exp(-other)) - 1 / (1 + np.exp(-ref))
    expected = t.interval(0.95, n - 1, loc=shift.mean(), scale=shift.std(ddof=1) / np.sqrt(n))
    metric = records.metric("counterfactual_score_shift", subject="sex")
    assert metric.value == pytest.approx(shift.mean(), abs=1e-6)
    assert (metric.lower, metric.upper) == pytest.approx(expected, abs=1e-6)
    finding = records.finding("counterfactual_score_shift", subject="sex")
    assert (finding.lower, finding.upper) == pytest.approx(sorted(abs(v) for v in expected), abs=1e-6)  # one value: |shift|
    flips = int(((ref > 0) != (other > 0)).sum())
    flip = records.metric("counterfactual_flip_rate", subject="sex")
    assert flip.value == pytest.approx(flips / n)
    assert (flip.lower, flip.upper) == pytest.approx(proportion_confint(flips, n, 0.05, "wilson"), abs=1e-9)


def test_leakage_lift_interval_is_wilson_less_the_majority_rate():
    from statsmodels.stats.proportion import proportion_confint

    from audit_bias._leakage import _accuracy_interval

    lower, upper = _accuracy_interval(0.74, 500, 0.6)(0.95)
    expected = proportion_confint(370, 500, 0.05, "wilson")
    assert (lower, upper) == pytest.approx((expected[0] - 0.6, expected[1] - 0.6), abs=1e-12)
