"""Tests of the example plugin, through audit.testing: tiny models whose answers are known in advance."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import subprocess
import sys

import numpy as np
import pydantic
import pytest

import audit
from audit.testing import export_onnx, linear_model, load_onnx_model, run_analysis, tiny_dataset
from audit_example import AccuracyFloor, PredictionBalance, register_analyses, register_frameworks

IDENTITY = [[1.0, 0.0], [0.0, 1.0]]


def labelled(n: int, wrong: int):
    """Rows whose label is the identity model's prediction, except for the first `wrong` rows."""
    data = tiny_dataset(n=n, n_features=2, n_classes=2, seed=3)
    predicted = (data.x[:, 1] > data.x[:, 0]).astype(np.int64)
    y = predicted.copy()
    y[:wrong] = 1 - y[:wrong]
    return dataclasses.replace(data, y=y)


def test_accuracy_and_its_wilson_interval():
    stats = pytest.importorskip("scipy.stats")
    records = run_analysis(AccuracyFloor, linear_model(IDENTITY), labelled(50, wrong=10), floor=0.75)

    metric = records.metric("accuracy")
    assert metric.value == pytest.approx(0.8)
    assert metric.count == 50
    expected = stats.binomtest(40, 50).proportion_ci(confidence_level=0.95, method="wilson")
    assert metric.lower == pytest.approx(expected.low, abs=1e-12)
    assert metric.upper == pytest.approx(expected.high, abs=1e-12)

    finding = records.finding("accuracy")
    assert finding.passed and finding.value == pytest.approx(0.8) and finding.threshold == 0.75
    assert "40 correct" in finding.message
    assert records.notes and "50 labelled rows" in records.notes[0]


def test_floor_above_accuracy_fails():
    finding = run_analysis(AccuracyFloor, linear_model(IDENTITY), labelled(50, wrong=10), floor=0.85).finding("accuracy")
    assert not finding.passed
    assert finding.severity is audit.Severity.HIGH
    assert "below the floor 0.85" in finding.message


def test_strict_mode_judges_the_lower_bound():
    data = labelled(50, wrong=10)
    # 0.8 clears 0.7, but the 95% Wilson lower bound for 40/50 is 0.670, which does not.
    loose = run_analysis(AccuracyFloor, linear_model(IDENTITY), data, floor=0.7).finding("accuracy")
    strict = run_analysis(AccuracyFloor, linear_model(IDENTITY), data, floor=0.7, strict=True).finding("accuracy")
    assert loose.passed and not strict.passed
    assert strict.value == pytest.approx(0.6697, abs=1e-4)


def test_collapsed_model_fails_both_balance_checks():
    data = tiny_dataset(n=40, n_features=2, n_classes=2, seed=5)
    y = np.zeros(40, dtype=np.int64)
    y[:12] = 1  # 30 % of the rows are class 1
    data = dataclasses.replace(data, y=y, class_names=["no", "yes"])
    always_no = linear_model(np.zeros((2, 2)), bias=[1.0, 0.0])

    records = run_analysis(PredictionBalance, always_no, data)

    assert records.metric("true_share", group="yes").value == pytest.approx(0.3)
    assert records.metric("predicted_share", group="yes").value == 0.0
    assert records.metric("predicted_share", group="no").value == 1.0
    balance = records.finding("balance")
    assert balance.value == pytest.approx(0.3) and not balance.passed
    unpredicted = records.finding("unpredicted_classes")
    assert not unpredicted.passed and unpredicted.value == 1 and unpredicted.details["classes"] == ["yes"]
    assert [f.name for f in records.figures] == ["class_shares"]


def test_errors_that_cancel_out_keep_the_balance():
    # Six wrong rows: three true 0s predicted 1 and three true 1s predicted 0, so the
    # accuracy drops to 0.9 while the class shares stay exactly equal.
    data = labelled(60, wrong=6)
    assert sorted(data.y[:6]) == [0, 0, 0, 1, 1, 1]
    records = run_analysis(PredictionBalance, linear_model(IDENTITY), data, max_distance=0.0)
    assert records.finding("balance").value == 0.0 and records.finding("balance").passed
    assert records.finding("unpredicted_classes").passed
    assert run_analysis(AccuracyFloor, linear_model(IDENTITY), data).finding("accuracy").value == pytest.approx(0.9)


def test_single_class_labels_are_skipped():
    data = dataclasses.replace(tiny_dataset(n=10, n_features=2), y=np.zeros(10, dtype=np.int64))
    analysis = PredictionBalance()
    from audit.runner import make_context  # what the runner calls before run()

    ctx = make_context(linear_model(IDENTITY), data)
    assert "single class" in analysis.skip_reason(ctx)


def test_onnx_runtime_gives_the_same_findings(tmp_path):
    data = labelled(50, wrong=10)
    torch_model = linear_model([[0.5, -1.0], [2.0, 0.25]], bias=[0.1, -0.2])
    onnx_model = load_onnx_model(export_onnx(torch_model, tmp_path / "linear.onnx", data.x))
    for cls in (AccuracyFloor, PredictionBalance):
        via_torch = run_analysis(cls, torch_model, data)
        via_onnx = run_analysis(cls, onnx_model, data)
        assert [(f.check, f.passed, f.value) for f in via_torch.findings] == [(f.check, f.passed, f.value) for f in via_onnx.findings]


def test_options_are_validated():
    with pytest.raises(pydantic.ValidationError):
        AccuracyFloor(floor=1.5)
    with pytest.raises(pydantic.ValidationError):
        AccuracyFloor(flor=0.9)  # a typo is an error, not a silently ignored key
    assert AccuracyFloor(floor=0.9).options.floor == 0.9


def test_hooks_register_analyses_and_the_policy():
    analyses, frameworks = [], {}
    register_analyses(register=analyses.append)
    register_frameworks(register=lambda framework_id, title, requirements: frameworks.update({framework_id: requirements}))
    assert [cls.name for cls in analyses] == ["example.accuracy_floor", "example.prediction_balance"]
    # Every policy tag an analysis sets names a requirement the framework defines.
    policy_tags = {tag.split(":", 1)[1] for cls in analyses for tag in cls.tags if tag.startswith("example-policy:")}
    assert policy_tags == set(frameworks["example-policy"])


def test_importing_the_plugin_stays_light():
    # audit imports every plugin at start-up, `audit --help` included.
    code = "import sys, audit_example; print(sorted({'numpy', 'torch', 'matplotlib'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_entry_point_is_installed():
    points = importlib.metadata.entry_points(group="audit", name="example")
    assert [p.value for p in points] == ["audit_example"]
