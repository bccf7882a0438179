"""Attribution verdicts: paired intervals against SciPy, families corrected as statsmodels corrects them, inconclusive
semantics, and model randomisation equal on a network as TorchScript and as ONNX."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from audit import stats
from audit.testing import export_onnx, linear_model, load_onnx_model, run_analysis, tiny_dataset

import audit_attribution as attribution
from audit_attribution._faithfulness import RemovalCurves, correlation_metrics, removal_records
from audit_attribution._metrics import subset_drops
from audit_attribution._run import judge_rows

scipy_stats = pytest.importorskip("scipy.stats")


# -- the t interval of a mean over rows ------------------------------------------------------
def test_mean_interval_and_its_quantile_equal_scipy():
    rng = np.random.default_rng(0)
    for n, level in ((2, 0.95), (7, 0.9), (64, 0.95), (64, 0.9993), (500, 0.5)):
        values = rng.normal(0.3, 2.0, size=n)
        found = stats.mean_interval(values, level)
        low, high = scipy_stats.t.interval(level, n - 1, loc=values.mean(), scale=scipy_stats.sem(values))
        assert (found.lower, found.upper) == pytest.approx((low, high), abs=1e-10)
    for df in (1, 2, 4, 5, 30, 10**5):
        for level in (0.5, 0.95, 0.999999):
            assert stats._t_quantile_newton(level, df) == pytest.approx(scipy_stats.t.ppf(0.5 + level / 2, df), rel=1e-9)
    for df in (1, 2, 3, 8, 63, 2000):
        for t in (0.0, 0.5, 2.0, 7.0, 80.0):  # the finite series, and the continued fraction it defers to far in the tail
            assert stats._t_sf_series(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-13)
    # NaN rows are left out; fewer than two rows leave the interval undefined; no spread gives the point.
    assert stats.mean_interval([1.0, np.nan, 3.0]).lower == pytest.approx(stats.mean_interval([1.0, 3.0]).lower)
    assert np.isnan(stats.mean_interval([1.0]).lower)
    assert (stats.mean_interval([0.4] * 5).lower, stats.mean_interval([0.4] * 5).upper) == (0.4, 0.4)


def test_paired_gain_interval_equals_scipy_ttest_rel():
    rng = np.random.default_rng(1)
    explainer = rng.random(40)
    random_orders = explainer + rng.normal(0.05, 0.1, size=40)
    ours = stats.mean_interval(random_orders - explainer, 0.95)
    reference = scipy_stats.ttest_rel(random_orders, explainer).confidence_interval(0.95)
    assert (ours.lower, ours.upper) == pytest.approx((reference.low, reference.high), abs=1e-12)
    paired = stats.paired_mean_difference(explainer, random_orders, 0.95)
    assert (ours.lower, ours.upper) == pytest.approx((paired.lower, paired.upper), abs=1e-9)


# -- faithfulness: the paired checks of one family of explainers -----------------------------------
def _options(**changes):
    options = attribution.Faithfulness.Options(**changes)
    return options


def _removal_findings(deletion_by_name, insertion_by_name, random_deletion, random_insertion, **options):
    names = list(deletion_by_name)
    n = len(random_deletion)
    deletion_auc = np.stack([deletion_by_name[k] for k in names] + [random_deletion])
    insertion_auc = np.stack([insertion_by_name[k] for k in names] + [random_insertion])
    curves = RemovalCurves(names, np.zeros((len(names) + 1, n, 2)), np.zeros((len(names) + 1, n, 2)), np.array([0.0, 1.0]),
                           deletion_auc, insertion_auc)
    ctx = SimpleNamespace(predictions=np.full((n, 2), 0.5))
    setup = SimpleNamespace(rows=np.arange(n), targets=np.zeros(n, dtype=np.int64), x=np.zeros((n, 3)))
    found = [r for r in removal_records(ctx, _options(**options), setup, curves) if hasattr(r, "verdict")]
    return {(f.check, f.subject): f for f in found}


def _expected_holm(samples: dict, threshold: float, higher_is_better: bool, alpha: float = 0.05):
    """Verdicts by SciPy one-sample t-tests and statsmodels' Holm: each side at alpha / 2, as a two-sided interval shows it."""
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    names = list(samples)
    good, bad = ("greater", "less") if higher_is_better else ("less", "greater")
    p_pass = [min(1.0, 2 * scipy_stats.ttest_1samp(samples[k], threshold, alternative=good).pvalue) for k in names]
    p_fail = [min(1.0, 2 * scipy_stats.ttest_1samp(samples[k], threshold, alternative=bad).pvalue) for k in names]
    passed = multitest.multipletests(p_pass, alpha=alpha, method="holm")[0]
    failed = multitest.multipletests(p_fail, alpha=alpha, method="holm")[0]
    return {k: "failed" if f else "passed" if p else "inconclusive" for k, p, f in zip(names, passed, failed)}


def test_removal_checks_are_paired_intervals_judged_as_a_holm_family():
    rng = np.random.default_rng(3)
    n = 48
    random_deletion, random_insertion = rng.uniform(0.3, 0.6, n), rng.uniform(0.3, 0.6, n)
    # Per-row differences from the random orders' AUC (deletion: negative is good), by design:
    # clearly better, borderline (t about 2.3: shown at 95% alone, not over a family of five), noise, worse.
    shifts = {"good": -0.10, "borderline": -0.033, "noise": 0.0, "worse": 0.08, "good2": -0.06}
    noise = {k: rng.normal(0.0, 0.1, n) for k in shifts}
    # Exact means and spreads, so each t statistic is as designed whatever the draw (borderline: t = 2.29).
    noise = {k: (v - v.mean()) / v.std(ddof=1) * 0.1 + shifts[k] for k, v in noise.items()}
    deletion = {k: random_deletion + noise[k] for k in shifts}
    insertion = {k: random_insertion - noise[k] for k in shifts}
    found = _removal_findings(deletion, insertion, random_deletion, random_insertion)

    differences = {k: deletion[k] - random_deletion for k in shifts}
    expected = _expected_holm(differences, 0.0, higher_is_better=False)
    assert expected == {"good": "passed", "borderline": "inconclusive", "noise": "inconclusive", "worse": "failed", "good2": "passed"}
    for name in shifts:
        finding = found[("deletion_auc", name)]
        assert finding.verdict == expected[name], name
        # Its interval is SciPy's paired t interval at the level the check was tested at.
        reference = scipy_stats.ttest_rel(deletion[name], random_deletion).confidence_interval(finding.level)
        assert (finding.lower, finding.upper) == pytest.approx((reference.low, reference.high), abs=1e-9), name
        assert finding.value == pytest.approx(differences[name].mean(), abs=1e-12)
        assert finding.details["comparisons"] == 5 and finding.details["correction"] == "holm" and finding.rows == n
        assert finding.method.startswith("paired t over rows")
    # Alone (no correction) the borderline explainer is shown better than random: the family is what holds it back.
    alone = stats.mean_interval(differences["borderline"], 0.95)
    assert alone.upper < 0
    uncorrected = _removal_findings(deletion, insertion, random_deletion, random_insertion, correction="none")
    assert uncorrected[("deletion_auc", "borderline")].verdict == "passed"
    assert "comparisons" not in uncorrected[("deletion_auc", "borderline")].details  # the report says "corrected" only when it was
    # faithful_vs_random judges the sum of both gains, against min_gain.
    gains = {k: (random_deletion - deletion[k]) + (insertion[k] - random_insertion) for k in shifts}
    assert {k: found[("faithful_vs_random", k)].verdict for k in shifts} == _expected_holm(gains, 0.0, higher_is_better=True)
    raised = _removal_findings(deletion, insertion, random_deletion, random_insertion, min_gain=0.5)
    assert raised[("faithful_vs_random", "good")].verdict == "failed"  # gain 0.2, shown below the demanded 0.5


def test_inconclusive_checks_say_why_and_never_count_as_failed():
    rng = np.random.default_rng(4)
    values = rng.normal(0.02, 0.2, 30)
    verdicts = judge_rows({"straddles": values, "one_row": np.array([0.3, np.nan])}, 0.0, True, _options())
    straddles, one_row = verdicts["straddles"], verdicts["one_row"]
    assert straddles.verdict == "inconclusive" and straddles.lower < 0 < straddles.upper
    details = straddles.details()
    assert details["inconclusive_because"] == "the interval straddles the threshold"
    assert details["needs_rows"] == stats.rows_to_decide(straddles.value, straddles.lower, straddles.upper, 0.0, 30) > 30
    assert one_row.verdict == "inconclusive" and one_row.lower is None and one_row.rows == 1
    assert "at least 2" in one_row.details()["inconclusive_because"]

    # Through the analysis: a model whose output no feature moves ties every explainer with the random orders
    # on every row. The interval is the point 0, on the threshold: a tie shows nothing, so inconclusive, not passed.
    model = linear_model(np.zeros((2, 4)))
    data = tiny_dataset(48, 4, 2, seed=5)
    records = run_analysis(attribution.Faithfulness, model, data, rows=24, explainers=["saliency", "occlusion"], removal="zeros",
                           random_orders=2)
    for check in ("deletion_auc", "insertion_auc", "faithful_vs_random"):
        for name in ("saliency", "occlusion"):
            finding = records.finding(check, subject=name)
            assert finding.value == 0.0 and finding.lower == finding.upper == 0.0, (check, name)
            assert finding.inconclusive and not finding.failed and not finding.passed, (check, name)
            assert "tie" in finding.details["inconclusive_because"] and "needs_rows" not in finding.details


def test_faithfulness_correlation_interval_equals_scipy_per_row_pearson():
    model = linear_model(np.array([[1.0, -2.0, 0.5, 0.0, 1.5], [0.0, 1.0, -1.0, 2.0, 0.0]]))
    data = tiny_dataset(40, 5, 2, seed=6)
    from audit_attribution._core import Layout, ModelScorer

    x = data.x[:20]
    targets = model.predict(x).argmax(1)
    layout = Layout((5,), "tabular")
    maps = {"a": np.random.default_rng(7).normal(size=(20, 5)), "b": np.tile([1.0, -2.0, 0.5, 0.0, 1.5], (20, 1))}
    options = _options(subsets=16, level=0.9)
    setup = SimpleNamespace(layout=layout, x=x, targets=targets, value_sd=np.ones(5, np.float32))
    baseline = np.zeros_like(x)
    ctx = SimpleNamespace(rng=np.random.default_rng(8))
    metrics = {(m.name, m.subject): m for m in correlation_metrics(ctx, options, setup, ModelScorer(model, "logit"), maps, baseline)}
    # The same subsets, drawn from the same seed, scored independently of the metric's code.
    seed = np.random.default_rng(8).integers(2**63)
    removed, drops = subset_drops(ModelScorer(model, "logit"), layout, x, baseline, targets, 16, options.subset_fraction,
                                  np.random.default_rng(seed))
    for name, attribution_map in maps.items():
        per_row = [scipy_stats.pearsonr(attribution_map[r] @ removed.T, drops[r]).statistic for r in range(20)]
        low, high = scipy_stats.t.interval(0.9, 19, loc=np.mean(per_row), scale=scipy_stats.sem(per_row))
        metric = metrics[("faithfulness_correlation", name)]
        assert metric.value == pytest.approx(np.mean(per_row), abs=1e-9)
        assert (metric.lower, metric.upper) == pytest.approx((low, high), abs=1e-9)
        assert metric.details["level"] == 0.9


def test_agreement_correlations_carry_scipys_t_interval_of_per_row_spearman():
    from audit.testing import tiny_cnn, tiny_images

    model, data = tiny_cnn(seed=0), tiny_images(24, seed=1)
    shared = {}
    records = run_analysis(attribution.Agreement, model, data, shared=shared, rows=8, explainers=["saliency", "occlusion"])
    (maps, _), = [value for key, value in shared.items() if key[0] == "attribution.maps"]
    per_row = [scipy_stats.spearmanr(a, b).statistic for a, b in zip(maps["saliency"], maps["occlusion"])]
    low, high = scipy_stats.t.interval(0.95, 7, loc=np.mean(per_row), scale=scipy_stats.sem(per_row))
    metric = records.metric("rank_correlation", subject="saliency", group="occlusion")
    assert metric.value == pytest.approx(np.mean(per_row), abs=1e-12)
    assert (metric.lower, metric.upper) == pytest.approx((low, high), abs=1e-9)
    finding = records.finding("explainer_agreement")  # a diagnostic: never failed, but its interval is shown
    assert finding.passed and finding.severity.value == "info"
    assert (finding.lower, finding.upper) == pytest.approx((low, high), abs=1e-9) and finding.level == 0.95 and finding.rows == 8


# -- model randomisation: the same network as TorchScript and as ONNX ---------------------------------
def _cnn():
    torch.manual_seed(11)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3),
    ).eval()


def _mlp():
    torch.manual_seed(12)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("kind,layers", [("cnn", 1), ("mlp", 2)])
def test_model_randomisation_is_the_same_on_torchscript_and_onnx(tmp_path, kind, layers):
    from audit.data import Dataset
    from audit.models import load

    module = _cnn() if kind == "cnn" else _mlp()
    rng = np.random.default_rng(13)
    shape = (1, 8, 8) if kind == "cnn" else (6,)
    x = rng.random((32, *shape)).astype(np.float32)
    data = Dataset(x=x, y=rng.integers(0, 3, 32), modality="image" if kind == "cnn" else "tabular")
    torch.jit.save(torch.jit.script(module), str(tmp_path / "model.pt"))
    scripted = load(tmp_path / "model.pt")
    onnx_model = load_onnx_model(export_onnx(module, tmp_path / "model.onnx", x))
    assert "torch" in onnx_model.capabilities
    explainers = ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad"]
    options = dict(rows=8, explainers=explainers, randomize_layers=layers, grid_samples=2, ig_steps=8, smoothgrad_samples=4)
    found = {}
    for name, model in (("torchscript", scripted), ("onnx", onnx_model)):
        records = run_analysis(attribution.Sanity, model, data, seed=5, **options)
        found[name] = {f.subject: f for f in records.findings if f.check == "randomization_rank_correlation"}
    for explainer in explainers:
        torchscript, onnx = found["torchscript"][explainer], found["onnx"][explainer]
        assert onnx.details["layers"] == torchscript.details["layers"] == layers
        assert onnx.value < 0.99  # something was re-initialised
        assert onnx.value == pytest.approx(torchscript.value, abs=1e-5), explainer
        assert (onnx.lower, onnx.upper) == pytest.approx((torchscript.lower, torchscript.upper), abs=1e-5)
        assert onnx.verdict == torchscript.verdict


def test_each_reinitialisation_is_seeded_keeps_the_original_spread_and_leaves_the_model_alone():
    from audit.testing import model_from_module

    from audit_attribution._sanity import _randomized_function

    module = _mlp()
    model = model_from_module(module, input_shape=(6,))
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    copy, function, reinitialise, layers = _randomized_function(model, 2, "logit")
    x = torch.as_tensor(np.random.default_rng(15).random((5, 6)), dtype=torch.float32)
    reinitialise(1)
    first = function(x).detach()
    reinitialise(2)
    second = function(x).detach()
    reinitialise(1)
    again = function(x).detach()
    assert layers == 2 and torch.equal(first, again) and not torch.allclose(first, second)
    assert torch.equal(copy[0].weight, before["0.weight"])  # layers before the last two keep their weights
    for name, p in module.named_parameters():  # the audited module is untouched
        assert torch.equal(p, before[name]), name
    # Over many draws each layer's weights keep the spread of the original ones (measured once, not from the last draw).
    spreads = []
    for seed in range(40):
        reinitialise(seed)
        spreads.append(float(copy[4].weight.std()))
    assert np.mean(spreads) == pytest.approx(float(before["4.weight"].std()), rel=0.05)


def test_converted_graph_owns_each_layers_weights_as_parameters_and_still_matches_onnxruntime(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from audit.models.onnx_torch import convert, layer_weights

    rng = np.random.default_rng(14)
    weight, bias = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    scale = rng.normal(size=5).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["scaled"]), helper.make_node("MatMul", ["scaled", "w"], ["h"]),
         helper.make_node("Add", ["h", "b"], ["y"])],
        "matmul_add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b"), numpy_helper.from_array(scale, "scale")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    assert layer_weights(list(proto.graph.node), {"w": weight, "b": bias, "scale": scale}) == [{"weight": "w", "bias": "b"}]
    module = convert(proto, "x", "y")
    owners = [name for name, m in module.named_modules() if any(True for _ in m.named_parameters(recurse=False))]
    assert owners == ["layers.0"]
    assert not any(p.requires_grad for p in module.parameters())  # gradients flow to the input only
    x = rng.normal(size=(4, 5)).astype(np.float32)
    expected = (x * scale) @ weight + bias
    np.testing.assert_allclose(module(torch.as_tensor(x)).detach().numpy(), expected, atol=1e-5)


def test_attribution_explains_at_most_the_rows_of_the_runs_sample(cli, tmp_path):
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "examples" / "demo"
    code, out, err = cli("run", demo / "credit.onnx", "--data", demo / "credit.npz", "--analysis", "attribution.faithfulness",
                         "--sample", "40", "--fail-on", "never", "--json", "--set", "attribution.faithfulness.explainers=[\"occlusion\"]")
    assert code == 0, err
    import json

    findings = [f for f in json.loads(out)["findings"] if f["check"] in ("deletion_auc", "insertion_auc", "faithful_vs_random")]
    assert findings and all(f["rows"] == 40 for f in findings)  # default 64 rows, but the run audits a sample of 40
    assert all(f["verdict"] in ("passed", "failed", "inconclusive") and f["lower"] is not None for f in findings)


class _KeyCount(torch.nn.Module):
    """Logits [0, 3 * (number of `key` tokens)]: only the key token moves the score."""

    def __init__(self, key: int):
        super().__init__()
        self.key = key

    def forward(self, input_ids, attention_mask):
        count = ((input_ids == self.key).to(torch.float32) * attention_mask.to(torch.float32)).sum(1)
        return torch.stack([torch.zeros_like(count), 3.0 * count], dim=1)


def test_text_eraser_verdict_is_the_paired_interval_of_the_comprehensiveness_gain(tmp_path):
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    from audit.data import Dataset
    from audit.models import LoadOptions, load

    words = ["key", "a", "b", "c", "d", "e", "f", "g", "h"]
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[MASK]"] + words)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A", special_tokens=[("[CLS]", 2)])
    tokenizer.save(str(tmp_path / "m.tokenizer.json"))
    torch.jit.save(torch.jit.script(_KeyCount(vocab["key"])), str(tmp_path / "m.pt"))
    model = load(tmp_path / "m.pt", LoadOptions(device="cpu"))
    rng = np.random.default_rng(16)
    texts = []
    for _ in range(24):
        row = list(rng.choice(words[1:], size=7))
        row.insert(int(rng.integers(0, 8)), "key")
        texts.append(" ".join(row))
    data = Dataset(x=np.array(texts, dtype=object), y=np.ones(24, dtype=np.int64), modality="text")
    records = run_analysis(attribution.Faithfulness, model, data, rows=24, explainers=["occlusion"], random_orders=4)
    finding = records.finding("faithful_vs_random", subject="occlusion")
    gain = records.metric("comprehensiveness_gain_vs_random", subject="occlusion")
    # One explainer: no correction, so the verdict's interval is the paired 95% t interval of the per-text gain.
    assert finding.verdict == "passed" and finding.level == 0.95 and finding.rows == 24 and "comparisons" not in finding.details
    assert (finding.value, finding.lower, finding.upper) == pytest.approx((gain.value, gain.lower, gain.upper), abs=1e-12)
    assert finding.lower > 0 and finding.method.startswith("paired t over texts")
    # Occlusion ranks the key first, so removing its top-k% always removes the key: sigmoid(3) - 1/2 on every text.
    assert records.metric("eraser_comprehensiveness", subject="occlusion").value == pytest.approx(1 / (1 + math.exp(-3)) - 0.5, abs=1e-6)
