"""The public interval toolkit against closed forms, SciPy/statsmodels/scikit-learn, and simulated truths."""

import math

import numpy as np
import pytest

from audit import stats as intervals

statsmodels_proportion = pytest.importorskip("statsmodels.stats.proportion")
multitest = pytest.importorskip("statsmodels.stats.multitest")
scipy_stats = pytest.importorskip("scipy.stats")


COUNTS = [(0, 10), (10, 10), (3, 17), (45, 100), (1, 2), (999, 1000)]


@pytest.mark.parametrize("k,n", COUNTS)
def test_wilson_equals_statsmodels_and_has_width_at_the_edges(k, n):
    lower, upper = intervals.wilson(k, n)
    expected = statsmodels_proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
    assert lower == pytest.approx(expected[0], abs=1e-12)
    assert upper == pytest.approx(expected[1], abs=1e-12)
    assert upper - lower > 0.0


def test_a_ten_of_ten_group_is_not_certain():
    lower, upper = intervals.wilson(10, 10)
    assert upper == 1.0
    assert lower == pytest.approx(0.7225, abs=1e-4)


@pytest.mark.parametrize("k,n", COUNTS)
def test_clopper_pearson_equals_statsmodels_beta(k, n):
    lower, upper = intervals.clopper_pearson(k, n)
    expected = statsmodels_proportion.proportion_confint(k, n, alpha=0.05, method="beta")
    assert lower == pytest.approx(expected[0], abs=1e-9)
    assert upper == pytest.approx(expected[1], abs=1e-9)


@pytest.mark.parametrize("a,b", [((30, 100), (20, 100)), ((0, 40), (5, 60)), ((50, 50), (48, 50)), ((7, 13), (7, 13))])
def test_newcombe_difference_equals_statsmodels(a, b):
    lower, upper = intervals.newcombe_difference(a[0], a[1], b[0], b[1])
    expected = statsmodels_proportion.confint_proportions_2indep(a[0], a[1], b[0], b[1], method="newcomb", compare="diff")
    assert lower == pytest.approx(expected[0], abs=1e-12)
    assert upper == pytest.approx(expected[1], abs=1e-12)


@pytest.mark.parametrize("a,b", [((30, 100), (20, 100)), ((0, 40), (5, 60)), ((50, 50), (48, 50))])
def test_adjusted_log_ratio_equals_statsmodels(a, b):
    lower, upper = intervals.ratio_log_adjusted(a[0], a[1], b[0], b[1])
    expected = statsmodels_proportion.confint_proportions_2indep(a[0], a[1], b[0], b[1], method="log-adjusted", compare="ratio")
    assert lower == pytest.approx(expected[0], rel=1e-12)
    assert upper == pytest.approx(expected[1], rel=1e-12)


def test_folding_a_signed_interval():
    assert intervals.absolute_gap_interval(-0.1, 0.2) == (0.0, 0.2)
    assert intervals.absolute_gap_interval(0.05, 0.2) == (0.05, 0.2)
    assert intervals.absolute_gap_interval(-0.3, -0.1) == (0.1, 0.3)
    assert intervals.min_over_max_interval(0.8, 1.25) == (0.8, 1.0)
    assert intervals.min_over_max_interval(1.5, 2.0) == (0.5, 1 / 1.5)


def test_homogeneity_test_equals_scipy_chi_square():
    successes = np.array([30, 45, 52, 20])
    trials = np.array([100, 110, 120, 90])
    table = np.stack([successes, trials - successes], axis=1)
    expected = scipy_stats.chi2_contingency(table, correction=False).pvalue
    assert intervals.homogeneity_test(successes, trials) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("statistic,df", [(0.5, 1), (3.84, 1), (12.0, 3), (40.0, 10), (150.0, 99), (1e-4, 2)])
def test_chi_square_tail_equals_scipy(statistic, df):
    assert intervals.chi_square_sf(statistic, df) == pytest.approx(scipy_stats.chi2.sf(statistic, df), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("df", [1, 2, 5, 30, 499])
def test_t_quantile_equals_scipy(df):
    assert intervals.t_quantile(0.95, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-9)


def test_average_ranks_equal_scipy():
    values = np.array([3.0, 1.0, 2.0, 3.0, 3.0, 0.5, 2.0])
    assert np.array_equal(intervals.average_ranks(values), scipy_stats.rankdata(values))


def test_auroc_equals_sklearn_and_delong_variance_equals_the_direct_sum():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    positive = rng.random(300) < 0.4
    scores = np.round(rng.normal(positive * 0.8, 1.0), 1)  # rounding makes ties
    estimate = intervals.auroc_interval(scores, positive)
    assert estimate.estimate == pytest.approx(metrics.roc_auc_score(positive, scores), abs=1e-12)
    # DeLong from the O(m n) kernel psi(x, y) = 1[x > y] + 1/2 1[x == y].
    x, y = scores[positive], scores[~positive]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    variance = psi.mean(1).var(ddof=1) / x.size + psi.mean(0).var(ddof=1) / y.size
    z = intervals.z_value(0.95)
    a = estimate.estimate
    logit_se = math.sqrt(variance) / (a * (1 - a))
    expected_lower = 1 / (1 + math.exp(-(math.log(a / (1 - a)) - z * logit_se)))
    assert estimate.lower == pytest.approx(expected_lower, rel=1e-10)


def test_holm_and_bh_equal_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001, 0.04, 0.9])
    assert np.allclose(intervals.adjust(p, "holm"), multitest.multipletests(p, method="holm")[1], atol=1e-15)
    assert np.allclose(intervals.adjust(p, "bh"), multitest.multipletests(p, method="fdr_bh")[1], atol=1e-15)
    with pytest.raises(ValueError, match="holm, bh or none"):
        intervals.adjust(p, "bonferonni")


def test_paired_interval_equals_scipy_t_interval_of_differences():
    rng = np.random.default_rng(1)
    before = rng.random(50)
    after = before - 0.1 + rng.normal(0, 0.05, 50)
    result = intervals.paired_mean_difference(before, after)
    difference = after - before
    expected = scipy_stats.t.interval(0.95, difference.size - 1, loc=difference.mean(), scale=scipy_stats.sem(difference))
    assert (result.lower, result.upper) == pytest.approx(expected, rel=1e-9)


def test_verdicts_follow_the_interval_not_the_point():
    assert intervals.verdict(0.82, 0.90, 0.8, higher_is_better=True) == "passed"
    assert intervals.verdict(0.70, 0.79, 0.8, higher_is_better=True) == "failed"
    assert intervals.verdict(0.75, 0.85, 0.8, higher_is_better=True) == "inconclusive"
    assert intervals.verdict(0.01, 0.08, 0.1, higher_is_better=False) == "passed"
    assert intervals.verdict(0.12, 0.30, 0.1, higher_is_better=False) == "failed"
    assert intervals.verdict(float("nan"), 0.3, 0.1, higher_is_better=False) == "inconclusive"


def _simulate_coverage(true_rates, rows, samples, seed, statistic):
    """Share of samples whose interval covers the population's value."""
    rng = np.random.default_rng(seed)
    groups = len(true_rates)
    covered = 0
    for _ in range(samples):
        sizes = rng.multinomial(rows, np.full(groups, 1.0 / groups))
        successes = rng.binomial(sizes, true_rates)
        covered += statistic(successes, sizes)
    return covered / samples


@pytest.mark.parametrize("rates", [(0.5, 0.5), (0.55, 0.40)])
def test_parity_difference_interval_reaches_its_coverage_on_a_known_truth(rates):
    truth = abs(rates[0] - rates[1])

    def covers(successes, sizes):
        gap = intervals.largest_difference(successes, sizes)
        return gap.lower <= truth <= gap.upper

    coverage = _simulate_coverage(rates, rows=500, samples=600, seed=2, statistic=covers)
    # 600 samples: the binomial standard error at 0.95 is 0.009.
    assert 0.925 <= coverage <= 0.975


@pytest.mark.parametrize("rates", [(0.5, 0.5), (0.6, 0.45)])
def test_parity_ratio_interval_reaches_its_coverage_on_a_known_truth(rates):
    truth = min(rates) / max(rates)

    def covers(successes, sizes):
        ratio = intervals.smallest_ratio(successes, sizes)
        return ratio.lower <= truth <= ratio.upper

    coverage = _simulate_coverage(rates, rows=500, samples=600, seed=3, statistic=covers)
    assert 0.925 <= coverage <= 0.975


def test_many_equal_groups_rarely_show_a_gap():
    """Sixteen groups of ~125 rows with one true rate: the max-min gap is large by chance,
    but the simultaneous interval keeps 0 inside at least 95% of the time."""

    def excludes_zero(successes, sizes):
        return intervals.largest_difference(successes, sizes).lower > 0.0

    false_alarms = _simulate_coverage([0.4] * 16, rows=2000, samples=300, seed=4, statistic=excludes_zero)
    assert false_alarms <= 0.05
    test_rejections = _simulate_coverage(
        [0.4] * 16, rows=2000, samples=300, seed=4,
        statistic=lambda s, n: intervals.homogeneity_test(s, n) < 0.05,
    )
    assert 0.02 <= test_rejections <= 0.09


def test_percentile_interval_reports_a_shrinking_monte_carlo_error():
    rng = np.random.default_rng(5)
    small = intervals.percentile_interval_with_error(rng.normal(size=500))
    large = intervals.percentile_interval_with_error(rng.normal(size=50_000))
    assert large[0] == pytest.approx(-1.96, abs=0.05)
    assert large[1] == pytest.approx(1.96, abs=0.05)
    assert large[2] < small[2] / 5
    # The stated error is the real spread of the interval end across repetitions.
    ends = [intervals.percentile_interval_with_error(rng.normal(size=2000))[0] for _ in range(200)]
    stated = intervals.percentile_interval_with_error(rng.normal(size=2000))[2]
    assert np.std(ends) == pytest.approx(stated, rel=0.35)
