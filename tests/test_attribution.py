"""Attribution plugin: explainers against closed forms and Captum, the DiFull grid, randomisation, faithfulness metrics, ONNX."""

import numpy as np
import pytest
import torch

from audit.data import Dataset
from audit.testing import export_onnx, linear_model, load_onnx_model, model_from_module, run_analysis, tiny_cnn, tiny_dataset, tiny_images, tiny_mlp

import audit_attribution as attribution
from audit_attribution._core import Layout, ModelScorer
from audit_attribution._explainers import ALL_EXPLAINERS, ExplainerSettings, ExplainInputs, explain, integrated_gradients, integration_nodes
from audit.stats import average_ranks as rankdata
from audit_attribution._metrics import spearman_rows
from audit_attribution._sobol import sobol_points

GRADIENT = ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad"]


def _ig(model, x, targets, baseline, steps=16, method="gausslegendre", score="logit"):
    return integrated_gradients(ModelScorer(model, score), x, targets, baseline, steps, method)


# -- Integrated Gradients ------------------------------------------------------------
def test_ig_on_a_linear_model_is_exactly_x_minus_baseline_times_weight():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 5))
    model = linear_model(weights, bias=[0.5, -1.0, 0.2])
    x = rng.normal(size=(12, 5)).astype(np.float32)
    baseline = rng.normal(size=(12, 5)).astype(np.float32)
    targets = rng.integers(0, 3, size=12)
    for method, steps in (("gausslegendre", 3), ("riemann_midpoint", 5), ("riemann_trapezoid", 2)):
        ig = _ig(model, x, targets, baseline, steps, method)
        np.testing.assert_allclose(ig, (x - baseline) * weights[targets], atol=1e-5)
        logits = model.predict(x, output="logits")[np.arange(12), targets] - model.predict(baseline, output="logits")[np.arange(12), targets]
        np.testing.assert_allclose(ig.sum(axis=1), logits, atol=1e-5)


def test_ig_completeness_finding_is_exact_for_a_linear_model_and_close_for_an_mlp():
    data = tiny_dataset(48, 4, 2, seed=1)
    linear = run_analysis(attribution.Faithfulness, linear_model(np.array([[1.0, -2, 0.5, 3], [-1, 0, 2, 1]])), data,
                          rows=24, score="logit", explainers=["integrated_gradients"], ig_steps=4)
    assert linear.finding("ig_completeness_error").value < 1e-5

    mlp = tiny_mlp(4, 2, hidden=16, seed=3)
    records = run_analysis(attribution.Faithfulness, mlp, data, rows=24, explainers=["integrated_gradients"], ig_steps=128)
    finding = records.finding("ig_completeness_error")
    assert finding.passed and finding.value < 0.005
    # Independently: the sum of IG equals softmax(f(x)) - softmax(f(0)) for the predicted class.
    x = data.x[:10]
    target = mlp.predict(x).argmax(1)
    ig = _ig(mlp, x, target, np.zeros_like(x), steps=128, score="probability")
    with torch.no_grad():
        p = torch.softmax(mlp.module(torch.as_tensor(x)), 1).numpy()[np.arange(10), target]
        p0 = torch.softmax(mlp.module(torch.zeros(10, 4)), 1).numpy()[np.arange(10), target]
    np.testing.assert_allclose(ig.sum(axis=1), p - p0, atol=1e-3)


def test_ig_implementation_invariance():
    torch.manual_seed(0)
    first = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    second = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    # Same function, other parameters: permute the hidden units and scale them by positive
    # factors (ReLU is positively homogeneous), undoing both in the output layer.
    perm = torch.randperm(8)
    scale = torch.rand(8) * 3 + 0.2
    with torch.no_grad():
        second[0].weight.copy_(first[0].weight[perm] * scale[:, None])
        second[0].bias.copy_(first[0].bias[perm] * scale)
        second[2].weight.copy_(first[2].weight[:, perm] / scale[None, :])
        second[2].bias.copy_(first[2].bias)
    a, b = model_from_module(first, input_shape=(4,)), model_from_module(second, input_shape=(4,))
    x = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_allclose(a.predict(x), b.predict(x), atol=1e-6)
    targets = a.predict(x).argmax(1)
    baseline = np.zeros_like(x)
    ig_a = _ig(a, x, targets, baseline, 32, score="probability")
    ig_b = _ig(b, x, targets, baseline, 32, score="probability")
    assert np.abs(ig_a).max() > 1e-3
    np.testing.assert_allclose(ig_a, ig_b, atol=1e-5)


@pytest.mark.parametrize("method,captum_method", [("gausslegendre", "gausslegendre"), ("riemann_midpoint", "riemann_middle"), ("riemann_trapezoid", "riemann_trapezoid")])
def test_ig_equals_captum(method, captum_method):
    pytest.importorskip("captum")  # a test-only dependency ('.[test]'); absent on some GPU images
    from captum.attr import IntegratedGradients

    model = tiny_cnn(channels=1, size=8, n_classes=3, seed=2)
    x = tiny_images(6, seed=4).x
    targets = model.predict(x).argmax(1)
    baseline = np.full_like(x, 0.3)
    ours = _ig(model, x, targets, baseline, 20, method, score="probability")
    captum = IntegratedGradients(lambda t: torch.softmax(model.module(t), dim=1)).attribute(
        torch.as_tensor(x), baselines=torch.as_tensor(baseline), target=torch.as_tensor(targets), n_steps=20, method=captum_method
    ).numpy()
    assert np.abs(captum).max() > 1e-4
    if method == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n (halved at the ends), summing to (n - 1)/n
        # rather than 1; ours are the trapezoid rule's 1/(n - 1). Same nodes otherwise.
        captum = captum * 20 / 19
    np.testing.assert_allclose(ours, captum, atol=1e-6)


def test_integration_nodes_integrate_polynomials():
    for method, steps, degree in (("gausslegendre", 4, 7), ("riemann_trapezoid", 2, 1), ("riemann_midpoint", 1, 1)):
        alphas, weights = integration_nodes(steps, method)
        assert abs((weights * alphas**degree).sum() - 1 / (degree + 1)) < 1e-12


# -- DiFull controlled grid ------------------------------------------------------------
@pytest.mark.parametrize("kind", ["image", "tabular"])
def test_grid_exact_zero_outside_the_cell_that_matters(kind):
    if kind == "image":
        model, data = tiny_cnn(channels=1, size=8, n_classes=3, seed=0), tiny_images(24, seed=0)
    else:
        model, data = tiny_mlp(5, 3, seed=0), tiny_dataset(24, 5, 3)
    records = run_analysis(attribution.Sanity, model, data, grid_samples=8, rows=4, rise_masks=200, sobol_designs=8,
                           smoothgrad_samples=4, ig_steps=8, explainers=list(ALL_EXPLAINERS))
    for name in GRADIENT + ["occlusion", "sobol"]:
        finding = records.finding("grid_share", subject=name)
        assert finding.details["max_outside"] == 0.0, name
        assert finding.details["grids_exactly_zero_outside"] == 8
        # The share is inside / total over the same values summed in two orders: equal up to rounding.
        assert finding.value == pytest.approx(1.0, abs=1e-12) and finding.passed
    # RISE's masks straddle cells: it does put mass on cells that cannot matter.
    rise = records.finding("grid_share", subject="rise")
    assert rise.value < 0.9 and not rise.passed


def test_grid_wrapper_scores_each_cell_with_the_model_alone():
    from audit_attribution._sanity import _grid_functions, _tile

    model = tiny_cnn(channels=2, size=6, n_classes=3, seed=1)
    cells = np.random.default_rng(0).random((5, 4, 2, 6, 6)).astype(np.float32)
    layout = Layout((2, 6, 6), "image")
    grid = _tile(cells, layout)
    assert grid.shape == (5, 2, 12, 12)
    np.testing.assert_array_equal(grid[:, :, 6:, :6], cells[:, 2])  # cell 2 = bottom left
    torch_fn, numpy_fn = _grid_functions(model, layout, "probability")
    expected = model.predict(cells.reshape(20, 2, 6, 6)).reshape(5, 12)
    np.testing.assert_allclose(numpy_fn(grid), expected, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(torch_fn(torch.as_tensor(grid)).numpy(), expected, atol=1e-6)


# -- one feature drives the output ---------------------------------------------------------
def _one_feature_case(n=32):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    x[:, 2] = np.sign(rng.normal(size=n)) * (1.0 + rng.random(n))  # away from the mean, so the signal is clear
    model = linear_model(np.array([[0.0, 0.0, -2.0, 0.0], [0.0, 0.0, 2.0, 0.0]]))
    return model, Dataset(x=x, y=(x[:, 2] > 0).astype(np.int64), modality="tabular", feature_names=["a", "b", "c", "d"])


def test_every_explainer_ranks_the_only_relevant_feature_first_and_beats_random():
    model, data = _one_feature_case()
    x = data.x
    targets = model.predict(x).argmax(1)
    layout = Layout((4,), "tabular")
    rng = np.random.default_rng(0)
    inputs = ExplainInputs(x, targets, np.zeros_like(x), np.zeros_like(x), np.full(4, 0.15, np.float32), rng, torch.Generator().manual_seed(0))
    for name in ALL_EXPLAINERS:
        maps = explain(name, ModelScorer(model), layout, inputs, ExplainerSettings(rise_masks=2000, sobol_designs=64))
        assert (maps.argmax(axis=1) == 2).all(), name

    records = run_analysis(attribution.Faithfulness, model, data, rows=32, removal="zeros", curve_steps=4, rise_masks=2000, random_orders=64,
                           explainers=list(ALL_EXPLAINERS))
    p = model.predict(x)[np.arange(len(x)), targets]
    # Removing feature c first drops the probability to exactly 0.5 (equal logits):
    # the curve is p, 0.5, 0.5, 0.5, 0.5 over fractions 0, 1/4, ..., 1.
    exact = ((p + 0.5) / 2 * 0.25 + 0.5 * 0.75).mean()
    random_curve = np.array([p.mean() * (1 - k / 4) + 0.5 * k / 4 for k in range(5)])
    expected_random = ((random_curve[1:] + random_curve[:-1]) / 2 * 0.25).sum()
    random_auc = records.metric("deletion_auc", subject="random").value
    for name in ALL_EXPLAINERS:
        deletion = records.finding("deletion_auc", subject=name)
        assert deletion.details["auc"] == pytest.approx(exact, abs=1e-6), name
        assert records.metric("deletion_auc", subject=name).value == pytest.approx(exact, abs=1e-6), name
        # The judged figure is the paired difference from the random orders (lower is better), shown below 0.
        assert deletion.value == pytest.approx(exact - random_auc, abs=1e-6) and deletion.threshold == 0.0, name
        assert deletion.verdict == "passed" and deletion.upper < 0 and deletion.details["comparisons"] == len(ALL_EXPLAINERS), name
        assert records.finding("faithful_vs_random", subject=name).verdict == "passed", name
    assert random_auc == pytest.approx(expected_random, abs=0.01)
    assert records.finding("deletion_auc", subject="saliency").details["random_auc"] > exact + 0.02


def test_faithfulness_correlation_and_infidelity_closed_forms():
    # Linear logits: the drop of any removed subset is exactly the sum of occlusion
    # attributions over it, and the drop under a perturbation I is w . I (saliency = |w|).
    model = linear_model(np.array([[1.0, 2.0, 3.0, 4.0, 0.5], [-1.0, -2.0, -3.0, -4.0, -0.5]]))
    data = tiny_dataset(32, 5, 2, seed=2)
    records = run_analysis(attribution.Faithfulness, model, data, rows=16, score="logit", explainers=["saliency", "occlusion", "rise"],
                           removal="zeros", rise_masks=100)
    assert records.metric("faithfulness_correlation", subject="occlusion").value == pytest.approx(1.0, abs=1e-6)
    assert records.metric("infidelity", subject="saliency").value == pytest.approx(0.0, abs=1e-6)
    assert records.metric("infidelity", subject="rise").value > 0.01


def test_faithful_vs_random_passes_the_true_map_fails_the_reversed_one_and_leaves_noise_inconclusive():
    from audit_attribution._metrics import curve_auc, order_ranks, removal_curves
    from audit_attribution._run import gain_over_random

    model, data = _one_feature_case(48)
    x = data.x
    targets = model.predict(x).argmax(1)
    rng = np.random.default_rng(1)
    true_map = np.zeros((48, 4))
    true_map[:, 2] = 1.0
    noise_map = rng.normal(size=(48, 4))
    random_ranks = np.stack([np.argsort(rng.random((48, 4)), axis=1).argsort(axis=1) for _ in range(8)])
    ranks = np.concatenate([order_ranks(true_map, rng)[None], order_ranks(noise_map, rng)[None], random_ranks])
    deletion, insertion, fractions = removal_curves(ModelScorer(model), Layout((4,), "tabular"), x, np.zeros_like(x), targets, ranks, 4)
    d, i = curve_auc(deletion, fractions), curve_auc(insertion, fractions)
    rd, ri = d[2:].mean(0), i[2:].mean(0)
    assert gain_over_random(d[0], i[0], rd, ri, 0.0)[2] == "passed"
    # Noise is no better than random, and not shown worse either: inconclusive, never passed.
    gain, interval, verdict = gain_over_random(d[1], i[1], rd, ri, 0.0)
    assert verdict == "inconclusive" and interval.lower < 0 < interval.upper
    # A map ranking the relevant feature last is shown worse than random: failed.
    assert gain_over_random(*_curve_aucs(model, x, targets, -true_map, random_ranks, rng), 0.0)[2] == "failed"


def _curve_aucs(model, x, targets, explainer_map, random_ranks, rng):
    from audit_attribution._metrics import curve_auc, order_ranks, removal_curves

    ranks = np.concatenate([order_ranks(explainer_map, rng)[None], random_ranks])
    deletion, insertion, fractions = removal_curves(ModelScorer(model), Layout((4,), "tabular"), x, np.zeros_like(x), targets, ranks, 4)
    d, i = curve_auc(deletion, fractions), curve_auc(insertion, fractions)
    return d[0], i[0], d[1:].mean(0), i[1:].mean(0)


# -- model randomisation -------------------------------------------------------------------
def test_randomising_the_model_changes_saliency_maps():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    model = model_from_module(module, input_shape=(10,))
    data = tiny_dataset(64, 10, 3, seed=0)
    before = model.predict(data.x)
    records = run_analysis(attribution.Sanity, model, data, rows=32, explainers=["saliency", "integrated_gradients"],
                           randomize_layers=2, grid_samples=4, ig_steps=8)
    saliency = records.finding("randomization_rank_correlation", subject="saliency")
    assert saliency.value < 0.5 and saliency.passed
    np.testing.assert_array_equal(model.predict(data.x), before)  # the audited model itself is untouched


# -- ONNX: black-box only ----------------------------------------------------------------------
def test_onnx_models_get_black_box_explainers_and_the_same_numbers(tmp_path):
    mlp = tiny_mlp(4, 2, seed=0)
    data = tiny_dataset(40, 4, 2)
    onnx_model = load_onnx_model(export_onnx(mlp, tmp_path / "mlp.onnx", data.x), gradients=False)
    options = dict(rows=16, rise_masks=100, sobol_designs=8)
    onnx_records = run_analysis(attribution.Faithfulness, onnx_model, data, **options)
    assert any("no input gradients for this onnx model: ONNX gradients turned off" in note for note in onnx_records.notes)
    subjects = {f.subject for f in onnx_records.findings}
    assert subjects == {"occlusion", "sobol", "rise"}
    torch_records = run_analysis(attribution.Faithfulness, mlp, data, **options, explainers=["occlusion", "sobol", "rise"])
    # By default a model with gradients gets the gradient explainers and occlusion, not the costly Sobol and RISE.
    defaults = run_analysis(attribution.Faithfulness, mlp, data, rows=8, curve_steps=4, subsets=4, infidelity_samples=4)
    assert {f.subject for f in defaults.findings if f.check == "deletion_auc"} == set(GRADIENT) | {"occlusion"}
    for check in ("deletion_auc", "insertion_auc"):
        for name in ("occlusion", "sobol", "rise"):
            assert onnx_records.finding(check, subject=name).details["auc"] == pytest.approx(torch_records.finding(check, subject=name).details["auc"], abs=1e-5)
    sanity = run_analysis(attribution.Sanity, onnx_model, data, grid_samples=4, **options)
    assert {f.check for f in sanity.findings} == {"grid_share"}
    assert sanity.finding("grid_share", subject="occlusion").details["max_outside"] == 0.0
    assert any("randomisation skipped" in note for note in sanity.notes)


# -- agreement: diagnostic only -----------------------------------------------------------------
def test_agreement_is_a_diagnostic_with_a_symmetric_matrix():
    model, data = tiny_cnn(seed=0), tiny_images(24, seed=1)
    records = run_analysis(attribution.Agreement, model, data, rows=8, explainers=["saliency", "smoothgrad", "occlusion"], smoothgrad_samples=4)
    finding = records.finding("explainer_agreement")
    assert finding.passed and finding.severity.value == "info"
    assert len(records.metrics) == 6 and len(records.figures) == 1
    overlap = records.metric("top_k_overlap", subject="saliency", group="occlusion").value
    assert 0.0 <= overlap <= 1.0


# -- helpers against independent implementations -------------------------------------------------
def test_rank_helpers_match_scipy():
    pytest.importorskip("scipy")
    from scipy.stats import rankdata as scipy_rankdata
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(4, 30)).astype(float)
    b = rng.normal(size=(4, 30))
    for row in a:
        np.testing.assert_allclose(rankdata(row), scipy_rankdata(row))
    np.testing.assert_allclose(spearman_rows(a, b), [spearmanr(x, y).statistic for x, y in zip(a, b)], atol=1e-12)


def test_sobol_points_are_stratified_and_match_scipy_in_the_first_dimensions():
    from scipy.stats import qmc

    points = sobol_points(256, 120)
    for d in range(120):  # every dimension puts exactly one of 256 points in each 1/256 interval
        assert len(np.unique(np.floor(points[:, d] * 256))) == 256
    np.testing.assert_array_equal(points[:64, :2], qmc.Sobol(2, scramble=False).random(64))


def test_sobol_total_indices_of_a_linear_score():
    # Score = sum_i w_i M_i for masks M uniform on [0, 1]: total-order index w_i^2 / sum w^2.
    weights = np.array([1.0, 2.0, 0.0, 3.0])
    model = linear_model(np.stack([weights, -weights]))
    layout = Layout((4,), "tabular")
    x = np.ones((1, 4), np.float32)
    inputs = ExplainInputs(x, np.array([0]), np.zeros_like(x), np.zeros_like(x), np.zeros(4, np.float32), np.random.default_rng(0))
    st = explain("sobol", ModelScorer(model, "logit"), layout, inputs, ExplainerSettings(sobol_designs=1024))[0]
    np.testing.assert_allclose(st, weights**2 / (weights**2).sum(), atol=0.01)
    assert st[2] == 0.0


def test_maps_are_shared_between_analyses_of_a_run_without_changing_results():
    """faithfulness after agreement in one run reuses the maps: same findings, fewer passes."""
    import audit_attribution

    from audit.testing import run_analysis, tiny_cnn, tiny_images

    data = tiny_images(n=24, seed=3)
    alone_model = tiny_cnn(seed=1)
    alone = run_analysis(audit_attribution.Faithfulness, alone_model, data, rows=8, explainers=["saliency", "smoothgrad", "rise"])
    alone_rows = alone_model.counters.forward_rows

    shared = {}
    model = tiny_cnn(seed=1)
    run_analysis(audit_attribution.Agreement, model, data, shared=shared, rows=8, explainers=["saliency", "smoothgrad", "rise"])
    before = model.counters.forward_rows
    after_sharing = run_analysis(audit_attribution.Faithfulness, model, data, shared=shared, rows=8,
                                 explainers=["saliency", "smoothgrad", "rise"])
    shared_rows = model.counters.forward_rows - before
    assert [(f.check, f.subject, f.value) for f in after_sharing.findings] == [(f.check, f.subject, f.value) for f in alone.findings]
    assert shared_rows < alone_rows


@pytest.mark.parametrize("batch_size", [7, 4096])
def test_masked_scores_on_device_and_in_numpy_equal_a_loop_over_variants(batch_size, monkeypatch):
    from audit_attribution import _core
    from audit_attribution._core import NumpyScorer, masked_scores

    model = tiny_cnn(n_classes=3)
    model.batch_size = batch_size  # 7: fewer rows than variants per call, so variants are split too
    x = tiny_images(n=5).x
    baseline = np.full_like(x, 0.25)
    layout = Layout(x.shape[1:], "image")
    masks = (np.random.default_rng(0).random((9, layout.n_units)) < 0.5).astype(np.float32)
    targets = np.array([0, 1, 2, 1, 0])
    expected = np.array([[model.predict((baseline[r] + m.reshape(1, 8, 8) * (x[r] - baseline[r]))[None])[0, targets[r]] for m in masks]
                         for r in range(len(x))])
    on_device = masked_scores(ModelScorer(model, "probability"), layout, x, baseline, masks, targets)
    in_numpy = masked_scores(NumpyScorer(model.predict, batch_size), layout, x, baseline, masks, targets)
    monkeypatch.setattr(_core, "_CHUNK_VALUES", 4 * x[0].size)  # 4 variants a call: variants split in numpy too
    split = masked_scores(NumpyScorer(model.predict, 1), layout, x, baseline, masks, targets)
    np.testing.assert_allclose(split, expected, atol=1e-7)
    np.testing.assert_allclose(on_device, expected, atol=1e-7)
    np.testing.assert_allclose(in_numpy, expected, atol=1e-7)


def test_target_probability_without_softmax_saturates_instead_of_nan():
    from audit_attribution._core import target_scores_torch

    logits = torch.tensor([[0.0, 1.0, -2.0], [800.0, -800.0, 0.0], [-800.0, 800.0, 0.0]])
    targets = torch.tensor([1, 0, 0])
    picked = target_scores_torch(logits, targets, "probability")
    reference = torch.softmax(logits.double(), dim=1).gather(1, targets.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(picked, reference, rtol=1e-12, atol=1e-300)
    assert picked[2] == 0.0 and picked[1] == 1.0
    assert torch.equal(target_scores_torch(logits, targets, "logit"), logits.double()[[0, 1, 2], [1, 0, 0]])
