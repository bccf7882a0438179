"""Robustness plugin: corruptions, FGSM/PGD, Square attack, calibration and OOD against closed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audit.data import Dataset
from audit.testing import export_onnx, linear_model, load_onnx_model, model_from_module, run_analysis, tiny_dataset, tiny_images

from audit_robustness import Adversarial, BlackBoxAttack, Calibration, Corruptions, OutOfDistribution
from audit_robustness._adversarial import pgd
from audit.stats import auroc, average_ranks
from audit_robustness._common import ImageLayout, fpr_at_tpr
from audit_robustness._square import square_attack

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"


class Standardise(torch.nn.Module):
    """Per-image standardisation: (x - mean) / std over each input, before the classifier."""

    def forward(self, x):
        flat = x.flatten(1)
        return ((flat - flat.mean(dim=1, keepdim=True)) / flat.std(dim=1, keepdim=True)).view_as(x)


def image_classifier(standardise: bool = False, seed: int = 0, n_classes: int = 3):
    torch.manual_seed(seed)
    layers = [Standardise()] if standardise else []
    layers += [torch.nn.Flatten(), torch.nn.Linear(64, n_classes)]
    return model_from_module(torch.nn.Sequential(*layers), input_shape=(1, 8, 8))


def images_with_model_labels(model, n=96, seed=0):
    """Images labelled by the model itself, with a share flipped, so accuracy is neither 0 nor 1."""
    data = tiny_images(n=n, seed=seed)
    predicted = model.predict(data.x).argmax(axis=1)
    flip = np.random.default_rng(seed).random(n) < 0.2
    data.y = np.where(flip, (predicted + 1) % 3, predicted).astype(np.int64)
    return data


# -- corruptions ----------------------------------------------------------------------

def test_severity_zero_equals_clean_accuracy_images():
    model = image_classifier()
    data = images_with_model_labels(model)
    clean = float(np.mean(model.predict(data.x).argmax(1) == data.y))
    records = run_analysis(Corruptions, model, data, severities=[0, 5])
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "brightness", "contrast", "pixelate", "jpeg"):
        assert records.metric("accuracy", subject=f"{name} s=0").value == clean
        assert records.metric("flip_rate", subject=f"{name} s=0").value == 0.0
    # The corruptions do bite at severity 5, so the identity above is not vacuous.
    assert records.metric("flip_rate", subject="gaussian_noise s=5").value > 0.1
    assert records.metric("clean_accuracy").value == clean


def test_severity_zero_equals_clean_accuracy_tabular_and_rows_counted():
    data = tiny_dataset(n=200, seed=1)
    model = linear_model(np.random.default_rng(1).normal(size=(2, 4)))
    clean = float(np.mean(model.predict(data.x).argmax(1) == data.y))
    before = model.counters.snapshot()
    records = run_analysis(Corruptions, model, data, severities=[0, 1, 5])
    used = model.counters.since(before)
    for name in ("gaussian_noise", "feature_dropout"):
        assert records.metric("accuracy", subject=f"{name} s=0").value == clean
    assert records.metric("flip_rate", subject="gaussian_noise s=5").value > 0
    # One batched pass per corruption and severity (plus the shared clean pass run_analysis makes).
    assert used.forward_rows == 200 * (1 + 2 * 3)
    drop = records.finding("corruption_accuracy_drop")
    assert drop.subject.endswith("s=5")  # judged severity 3 is absent, so the highest is judged
    worst = max(clean - records.metric("accuracy", subject=f"{n} s=5").value for n in ("gaussian_noise", "feature_dropout"))
    assert drop.value == pytest.approx(worst)
    mce = records.finding("mean_corruption_error")
    errors = [1 - records.metric("accuracy", subject=f"{n} s={s}").value for n in ("gaussian_noise", "feature_dropout") for s in (1, 5)]
    assert mce.value == pytest.approx(np.mean(errors) - (1 - clean))


def test_per_image_standardisation_is_invariant_to_brightness():
    invariant = image_classifier(standardise=True)
    data = images_with_model_labels(invariant)
    records = run_analysis(Corruptions, invariant, data, corruptions=["brightness", "contrast"])
    for s in range(1, 6):
        assert records.metric("flip_rate", subject=f"brightness s={s}").value == 0.0
        assert records.metric("flip_rate", subject=f"contrast s={s}").value == 0.0
    # The same classifier without the standardisation does change its mind.
    plain = image_classifier(standardise=False)
    flips = run_analysis(Corruptions, plain, data, corruptions=["brightness"]).metric("flip_rate", subject="brightness s=5").value
    assert flips > 0.05
    assert {f.name for f in records.figures} == {"corruption_curves", "corruption_examples"}


# -- white-box attacks ----------------------------------------------------------------

def test_fgsm_on_a_linear_model_moves_inputs_by_eps_sign_w():
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(2, 5))
    model = linear_model(weights, bias=[0.1, -0.2])
    x = torch.as_tensor(rng.normal(size=(40, 5)), dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 2, size=40))
    eps = 0.3
    eps_rows = torch.full((40,), eps)
    x_adv, _, _ = pgd(model, x, y, eps_rows, "linf", steps=1, step_size=eps_rows)
    other = 1 - y.numpy()
    expected = eps * np.sign(weights[other] - weights[y.numpy()])  # d CE / dx points along w_other - w_label
    np.testing.assert_allclose((x_adv - x).numpy(), expected, atol=1e-6)

    # A single-logit binary model: logits [0, w.x], so the label-1 rows move by -eps sign(w).
    w = rng.normal(size=5)
    single = linear_model(w[None, :])
    x_adv, _, _ = pgd(single, x, y, eps_rows, "linf", steps=1, step_size=eps_rows)
    sign = np.where(y.numpy()[:, None] == 1, -1.0, 1.0)
    np.testing.assert_allclose((x_adv - x).numpy(), sign * eps * np.sign(w)[None, :], atol=1e-6)


def test_robust_accuracy_of_a_linear_model_matches_the_closed_form():
    """For a binary linear model the worst case in the (std-scaled) ball is exact: margin - eps * ||dw * std||_dual."""
    data = tiny_dataset(n=300, n_features=4, seed=2)
    data.x[:, 1] *= 10.0  # unequal feature scales: radii are in each feature's std
    rng = np.random.default_rng(2)
    weights, bias = rng.normal(size=(2, 4)), np.array([0.2, -0.1])
    model = linear_model(weights, bias)
    epsilons = [0.0, 0.1, 0.25, 0.5]
    records = run_analysis(Adversarial, model, data, epsilons_linf=epsilons, epsilons_l2=epsilons, clip=False)
    x, y = data.x.astype(np.float64), data.y
    std = data.x.std(axis=0).astype(np.float64)
    w_label, w_other = weights[y], weights[1 - y]
    margin = ((w_label - w_other) * x).sum(1) + bias[y] - bias[1 - y]
    dual = {"linf": (np.abs(w_label - w_other) * std).sum(1), "l2": np.linalg.norm((w_label - w_other) * std, axis=1)}
    for norm in ("linf", "l2"):
        for attack in ("fgsm", "pgd"):
            for eps in epsilons:
                expected = np.mean(margin - eps * dual[norm] > 0)
                got = records.finding("robust_accuracy", subject=f"{attack} {norm} eps={eps:.3g}").value
                assert got == pytest.approx(expected, abs=1.5 / len(y)), (attack, norm, eps)


def test_epsilon_zero_gives_clean_accuracy_and_robust_accuracy_never_rises():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    model = model_from_module(module, input_shape=(4,))
    data = tiny_dataset(n=150, n_classes=3, seed=4)
    data.y = np.where(np.random.default_rng(4).random(150) < 0.8, model.predict(data.x).argmax(1), data.y)
    clean = float(np.mean(model.predict(data.x).argmax(1) == data.y))
    epsilons = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    records = run_analysis(Adversarial, model, data, epsilons_linf=epsilons, epsilons_l2=epsilons, steps=5, early_stop=False)
    for attack in ("fgsm", "pgd"):
        for norm in ("linf", "l2"):
            values = [records.finding("robust_accuracy", subject=f"{attack} {norm} eps={e:.3g}").value for e in epsilons]
            assert values[0] == clean
            assert all(b <= a for a, b in zip(values, values[1:])), (attack, norm, values)
            assert values[-1] < clean - 0.2  # the attack does work
            alone = [records.finding("robust_accuracy", subject=f"{attack} {norm} eps={e:.3g}").details["robust_at_this_epsilon_alone"] for e in epsilons]
            assert all(v >= a - 1e-12 for v, a in zip(alone, values))
    pgd_values = [records.finding("robust_accuracy", subject=f"pgd linf eps={e:.3g}").value for e in epsilons]
    fgsm_values = [records.finding("robust_accuracy", subject=f"fgsm linf eps={e:.3g}").value for e in epsilons]
    assert sum(pgd_values) <= sum(fgsm_values)  # more steps, stronger attack


def test_adversarial_images_stay_in_range_and_batches_all_epsilons_together():
    model = image_classifier()
    data = images_with_model_labels(model, n=40)
    before = model.counters.snapshot()
    records = run_analysis(Adversarial, model, data, attacks=["pgd"], norms=["linf"], steps=4, early_stop=False)
    used = model.counters.since(before)
    n_eps = 5
    # 4 forward-and-backward steps plus 1 final forward per row and epsilon, the clean pass aside.
    assert used.backward_rows == 40 * n_eps * 4
    assert used.forward_rows == 40 + 40 * n_eps * 5
    assert len(records.findings) == n_eps
    assert {f.name for f in records.figures} == {"robust_accuracy_curves", "adversarial_examples"}


@pytest.mark.parametrize("random_start", [False, True])
def test_early_stop_gives_the_exhaustive_robust_accuracy_in_fewer_passes(random_start):
    """Stopping on a row once fooled, and skipping larger epsilons, changes no robust accuracy: only the passes."""
    model = image_classifier()
    data = images_with_model_labels(model, n=80)
    correct = int(np.sum(model.predict(data.x).argmax(1) == data.y))

    def audit_with(early_stop):
        before = model.counters.snapshot()
        records = run_analysis(Adversarial, model, data, steps=6, early_stop=early_stop, random_start=random_start)
        return records, model.counters.since(before)

    exhaustive, exhaustive_used = audit_with(False)
    stopping, stopping_used = audit_with(True)
    values = {f.subject: (f.value, f.verdict) for f in exhaustive.findings}
    assert len(values) == 20
    if not random_start:  # the same iterates, so the same rows broken
        assert {f.subject: (f.value, f.verdict) for f in stopping.findings} == values
    else:  # other random starts: the same curve up to a few rows
        for f in stopping.findings:
            assert f.value == pytest.approx(values[f.subject][0], abs=4 / len(data.y)), f.subject
    # Exhaustive: every row, epsilon and step; stopping: only clean-correct rows, at most that, and here far fewer.
    assert exhaustive_used.backward_rows == 80 * 5 * 2 * (1 + 6)
    assert stopping_used.backward_rows <= correct * 5 * 2 * (1 + 6)
    assert stopping_used.backward_rows < exhaustive_used.backward_rows / 2
    assert all("robust_at_this_epsilon_alone" not in f.details and f.details["early_stop"] for f in stopping.findings)
    curves = [f for f in stopping.figures if f.name == "adversarial_examples"]
    assert curves, "the examples figure is still drawn"


# -- black-box Square attack ----------------------------------------------------------

def test_square_attack_respects_budget_and_epsilon_ball_exactly():
    model = image_classifier(seed=5)
    data = images_with_model_labels(model, n=60, seed=5)
    logits = model.predict(data.x, output="logits")
    eps, budget = 0.07, 40
    before = model.counters.snapshot()
    result = square_attack(lambda b: model.predict(b, output="logits"), data.x, data.y, logits, eps, budget, 0.1,
                           np.random.default_rng(0), lower=np.float32(0.0), upper=np.float32(1.0),
                           layout=ImageLayout((1, 8, 8)))
    used = model.counters.since(before)
    assert result.queries.max() <= budget
    assert np.abs(result.x_adv.astype(np.float64) - data.x.astype(np.float64)).max() <= eps
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    # Rows stop querying once fooled: the model saw exactly the queries counted.
    assert used.forward_rows == result.queries.sum()
    fooled = result.fooled_by_attack
    assert fooled.any() and (result.queries[fooled] < budget).any()
    assert np.all(model.predict(result.x_adv).argmax(1)[fooled] != data.y[fooled])
    assert np.all(result.queries[logits.argmax(1) != data.y] == 0)

    records = run_analysis(BlackBoxAttack, model, data, epsilon=eps, budget=budget)
    finding = records.finding("robust_accuracy", subject="square linf eps=0.07")
    assert finding.details["max_queries_per_row"] <= budget
    clean = float(np.mean(logits.argmax(1) == data.y))
    assert finding.value < clean
    assert records.finding("median_queries").value <= budget


def test_square_attack_tabular_ball_is_in_feature_std_units():
    data = tiny_dataset(n=80, seed=6)
    data.x[:, 2] *= 50.0
    model = linear_model(np.random.default_rng(6).normal(size=(2, 4)))
    std = data.x.std(axis=0)
    logits = model.predict(data.x, output="logits")
    result = square_attack(lambda b: model.predict(b, output="logits"), data.x, data.y, logits, 0.3, 30, 0.5,
                           np.random.default_rng(1), scale=std)
    assert result.queries.max() <= 30
    assert np.all(np.abs(result.x_adv.astype(np.float64) - data.x) <= 0.3 * std.astype(np.float64) * (1 + 1e-6))
    assert result.fooled_by_attack.any()


# -- calibration ----------------------------------------------------------------------

def calibrated_binary(n, sharpen=1.0, seed=0):
    """A one-feature model whose P(y=1) is sigmoid(x); labels drawn from sigmoid(x / sharpen)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, size=n)
    logit = np.log(p / (1 - p))
    y = (rng.random(n) < p).astype(np.int64)
    x = (logit * sharpen).astype(np.float32)[:, None]
    return linear_model([[0.0], [1.0]]), Dataset(x=x, y=y, modality="tabular"), y


def test_perfectly_calibrated_predictor_has_ece_near_zero():
    model, data, y = calibrated_binary(40000)
    records = run_analysis(Calibration, model, data)
    ece = records.finding("expected_calibration_error")
    assert ece.value < 0.012 and ece.passed
    p1 = model.predict(data.x)[:, 1]
    assert records.finding("brier_score").value == pytest.approx(2 * np.mean((p1 - y) ** 2), rel=1e-9)

    # An over-confident model (logits x3) on the same labels is badly calibrated.
    over, data_over, _ = calibrated_binary(40000, sharpen=3.0)
    ece_over = run_analysis(Calibration, over, data_over).finding("expected_calibration_error")
    assert ece_over.value > 0.08 and not ece_over.passed


def test_ece_risk_coverage_and_selective_risk_against_direct_computation():
    rng = np.random.default_rng(7)
    model = linear_model(rng.normal(size=(3, 4)))
    data = tiny_dataset(n=500, n_classes=3, seed=7)
    records = run_analysis(Calibration, model, data, bins=10)
    probabilities = model.predict(data.x)
    confidence, correct = probabilities.max(1), probabilities.argmax(1) == data.y
    ece = 0.0
    for low in np.arange(10) / 10:
        inside = (confidence > low) & (confidence <= low + 0.1) if low > 0 else confidence <= 0.1
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    assert records.metric("expected_calibration_error").value == pytest.approx(ece, abs=1e-12)
    finding = records.finding("expected_calibration_error")
    # The finding judges the bias-corrected ECE: the plug-in above less the bootstrap's estimate of its bias.
    assert finding.details["plug_in_ece"] == pytest.approx(ece, abs=1e-12)
    assert finding.value == pytest.approx(max(0.0, ece - finding.details["bias"]), abs=1e-12)
    order = np.argsort(-confidence, kind="stable")
    assert records.finding("selective_risk_at_90").value == pytest.approx(1 - correct[order[:450]].mean())
    aurc = np.mean([1 - correct[order[: k + 1]].mean() for k in range(500)])
    assert records.metric("aurc").value == pytest.approx(aurc)
    assert records.metric("selective_accuracy", group="80% coverage").value == pytest.approx(correct[order[:400]].mean())
    assert {f.name for f in records.figures} == {"reliability_diagram", "risk_coverage"}


# -- out-of-distribution --------------------------------------------------------------

def test_identical_id_and_ood_data_give_auroc_one_half(tmp_path):
    model = linear_model(np.random.default_rng(8).normal(size=(3, 4)))
    data = tiny_dataset(n=2000, n_classes=3, seed=8)
    same = tmp_path / "same.npz"
    np.savez(same, x=data.x)
    records = run_analysis(OutOfDistribution, model, data, ood_data=str(same))
    assert records.finding("ood_auroc", subject="msp vs ood_data").value == 0.5
    assert records.finding("ood_auroc", subject="energy vs ood_data").value == 0.5

    fresh = tmp_path / "fresh.npz"
    np.savez(fresh, x=tiny_dataset(n=2000, seed=9).x)
    records = run_analysis(OutOfDistribution, model, data, ood_data=str(fresh))
    assert abs(records.finding("ood_auroc", subject="msp vs ood_data").value - 0.5) < 0.04

    far = tmp_path / "far.npz"
    np.savez(far, x=(tiny_dataset(n=500, seed=10).x * 0.01).astype(np.float32))  # near the decision boundary: low confidence
    found = run_analysis(OutOfDistribution, model, data, ood_data=str(far)).finding("ood_auroc", subject="msp vs ood_data")
    assert found.value > 0.9 and found.passed


def test_auroc_and_fpr_match_sklearn_and_synthetic_sets_are_labelled():
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(11)
    pos, neg = rng.integers(0, 20, 300).astype(float), rng.integers(5, 25, 200).astype(float)  # many ties
    labels = np.r_[np.ones(300), np.zeros(200)]
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)
    fpr, tpr, _ = roc_curve(labels, np.r_[pos, neg])
    assert fpr_at_tpr(pos, neg, 0.95) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)])
    from scipy.stats import rankdata

    np.testing.assert_array_equal(average_ranks(np.r_[pos, neg]), rankdata(np.r_[pos, neg]))

    model = linear_model(rng.normal(size=(3, 4)))
    records = run_analysis(OutOfDistribution, model, tiny_dataset(n=300, n_classes=3, seed=11))
    subjects = {f.subject for f in records.findings}
    assert subjects == {"msp vs uniform_noise", "msp vs gaussian_noise", "energy vs uniform_noise", "energy vs gaussian_noise"}
    assert all("synthetic" in f.message and f.details["synthetic"] for f in records.findings)
    assert any("synthetic noise" in note for note in records.notes)


# -- ONNX: black-box analyses run; the white-box one only through the checked torch conversion ---

def test_onnx_models_get_black_box_analyses_and_adversarial_is_skipped(tmp_path):
    from audit.runner import execute

    torch_model = image_classifier(seed=12)
    data = images_with_model_labels(torch_model, n=48, seed=12)
    path = export_onnx(torch_model, tmp_path / "m.onnx", data.x)
    onnx_model = load_onnx_model(path, gradients=False)
    for cls, options in ((Corruptions, {"severities": [1, 3]}), (BlackBoxAttack, {"budget": 25}), (Calibration, {}), (OutOfDistribution, {})):
        on_onnx = run_analysis(cls, onnx_model, data, **options)
        on_torch = run_analysis(cls, torch_model, data, **options)
        assert on_onnx.findings
        for a, b in zip(on_onnx.findings, on_torch.findings):
            assert (a.check, a.subject) == (b.check, b.subject)
            assert a.value == pytest.approx(b.value, abs=0.03), (cls.name, a.subject)
    outcome = execute(Adversarial(), onnx_model, data, seed=0, predictions=None, logits=None)
    assert outcome.status == "skipped" and "gradient" in outcome.reason


def test_adversarial_on_a_converted_onnx_model_equals_torch(tmp_path):
    torch_model = image_classifier(seed=12)
    data = images_with_model_labels(torch_model, n=48, seed=12)
    onnx_model = load_onnx_model(export_onnx(torch_model, tmp_path / "m.onnx", data.x))
    assert {"gradients", "torch"} <= onnx_model.capabilities
    on_onnx = run_analysis(Adversarial, onnx_model, data)
    on_torch = run_analysis(Adversarial, torch_model, data)
    assert [(f.subject, f.value) for f in on_onnx.findings] == [(f.subject, f.value) for f in on_torch.findings]


def test_probability_outputs_make_energy_degenerate_and_it_is_skipped():
    torch.manual_seed(13)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1))
    model = model_from_module(module, input_shape=(4,))
    records = run_analysis(OutOfDistribution, model, tiny_dataset(n=100, n_classes=3, seed=13))
    assert {f.subject.split()[0] for f in records.findings} == {"msp"}
    assert any("energy score is degenerate" in note for note in records.notes)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_attacks_on_cuda_match_the_closed_form_and_random_start_is_seeded():
    data = tiny_dataset(n=300, n_features=4, seed=14)
    rng = np.random.default_rng(14)
    weights, bias = rng.normal(size=(2, 4)), np.array([0.3, -0.3])
    epsilons = [0.0, 0.2, 0.5]
    on_gpu = run_analysis(Adversarial, linear_model(weights, bias, device="cuda"), data, epsilons_linf=epsilons, norms=["linf"], clip=False)
    std = data.x.std(axis=0).astype(np.float64)
    w_label, w_other = weights[data.y], weights[1 - data.y]
    margin = ((w_label - w_other) * data.x).sum(1) + bias[data.y] - bias[1 - data.y]
    for eps in epsilons:
        expected = np.mean(margin - eps * (np.abs(w_label - w_other) * std).sum(1) > 0)
        assert on_gpu.finding("robust_accuracy", subject=f"pgd linf eps={eps:.3g}").value == pytest.approx(expected, abs=1.5 / 300)
    model = image_classifier()
    cuda_model = model_from_module(model.module.to("cuda"), device="cuda", input_shape=(1, 8, 8))
    images = images_with_model_labels(cuda_model, n=64)
    first = run_analysis(Adversarial, cuda_model, images, attacks=["pgd"], random_start=True, steps=3)
    again = run_analysis(Adversarial, cuda_model, images, attacks=["pgd"], random_start=True, steps=3)
    assert [f.value for f in first.findings] == [f.value for f in again.findings]


# -- the demo models ------------------------------------------------------------------

@pytest.mark.skipif(not (DEMO / "digits.npz").exists() or not (DEMO / "credit.npz").exists(), reason="demo assets not built")
def test_demo_models_give_curves_worth_reading():
    from audit.data import load as load_data
    from audit.models import load as load_model

    digits = load_data(DEMO / "digits.npz")
    digits_onnx = load_model(DEMO / "digits.onnx")
    corr = run_analysis(Corruptions, digits_onnx, digits)
    accuracies = [m.value for m in corr.metrics if m.name == "accuracy"]
    assert min(accuracies) < 0.5 and 0.9 < max(accuracies) < 1.0 and len(set(accuracies)) > 20
    if (DEMO / "digits.pt").exists():
        digits_torch = load_model(DEMO / "digits.pt")
        adv = run_analysis(Adversarial, digits_torch, digits, max_rows=100, steps=5)
        pgd_curve = [f.value for f in adv.findings if f.subject.startswith("pgd linf")]
        assert pgd_curve[0] > 0.8 and pgd_curve[-1] < 0.3 and any(0.3 < v < 0.95 for v in pgd_curve)

    credit = load_data(DEMO / "credit.npz")
    credit_onnx = load_model(DEMO / "credit.onnx")
    corr = run_analysis(Corruptions, credit_onnx, credit)
    drops = [m.value for m in corr.metrics if m.name == "flip_rate"]
    assert 0 < max(drops) < 0.6
    square = run_analysis(BlackBoxAttack, credit_onnx, credit, budget=100, max_rows=200)
    robust = square.finding("robust_accuracy")
    assert 0.1 < robust.value < robust.details["clean_accuracy"]
    calibration = run_analysis(Calibration, credit_onnx, credit)
    assert 0 < calibration.finding("expected_calibration_error").value < 0.1
