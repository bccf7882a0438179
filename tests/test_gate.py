"""The severity model, the Finding helpers that apply its rule, and the gate both runner and report use."""

import math

import pytest

import audit
from audit.gate import (
    FAIL_ON_CHOICES,
    counted_failures,
    gated_run_status,
    waiver_covers_model,
    waiver_for,
)


def test_one_severity_order_from_the_enum():
    assert [s.value for s in audit.Severity.descending()] == ["critical", "high", "medium", "low", "info"]
    assert [audit.Severity(s).rank for s in ("info", "low", "medium", "high", "critical")] == [0, 1, 2, 3, 4]
    assert audit.Severity.rank_of("HIGH") == 3 and audit.Severity.rank_of("nonsense") == 0
    assert FAIL_ON_CHOICES == ("info", "low", "medium", "high", "critical", "never")
    from audit.config import FAIL_ON
    from audit.report import SEVERITIES

    assert FAIL_ON == FAIL_ON_CHOICES and SEVERITIES == ["critical", "high", "medium", "low", "info"]


@pytest.mark.parametrize(("value", "severity", "passed"), [
    (0.05, "medium", True),   # a pass carries the lowest failing grade
    (0.10, "medium", True),   # at the medium limit: not above it
    (0.15, "medium", False),
    (0.20, "medium", False),  # at the high limit: not above it
    (0.25, "high", False),
    (float("nan"), "medium", False),  # an unknown value never passes
])
def test_graded(value, severity, passed):
    finding = audit.Finding.graded("gap", "Gap", value, medium=0.1, high=0.2, subject="sex", message="m")
    assert (finding.severity.value, finding.passed, finding.threshold, finding.subject) == (severity, passed, 0.1, "sex")


def test_graded_by_magnitude_shows_the_signed_value():
    finding = audit.Finding.graded("shift", "Shift", -0.3, medium=0.1, high=0.2, by=0.3)
    assert finding.value == -0.3 and finding.severity is audit.Severity.HIGH and not finding.passed


def test_against_limit_keeps_its_severity_passed_or_not():
    floor_pass = audit.Finding.against_limit("accuracy", "Accuracy", 0.8, severity="high", floor=0.8)
    floor_fail = audit.Finding.against_limit("accuracy", "Accuracy", 0.79, severity="high", floor=0.8)
    ceiling_fail = audit.Finding.against_limit("ece", "ECE", 0.06, severity="medium", ceiling=0.05)
    assert floor_pass.passed and not floor_fail.passed and not ceiling_fail.passed
    assert floor_pass.severity is floor_fail.severity is audit.Severity.HIGH
    assert ceiling_fail.threshold == 0.05 and math.isclose(ceiling_fail.value, 0.06)
    with pytest.raises(ValueError, match="exactly one"):
        audit.Finding.against_limit("x", "x", 1.0, severity="low", floor=0.0, ceiling=2.0)


class W:
    def __init__(self, check, model_sha256="", model_path="", subject=None, analysis=None):
        self.check, self.model_sha256, self.model_path, self.subject, self.analysis = check, model_sha256, model_path, subject, analysis


def test_waivers_match_by_digest_then_by_path_and_narrow_by_subject():
    assert waiver_covers_model(W("a", "abc", "m.onnx"), "abc", "elsewhere.onnx")
    assert not waiver_covers_model(W("a", "abc", "m.onnx"), "def", "m.onnx")  # another file at the same path
    assert waiver_covers_model(W("a", "", "m.onnx"), "def", "m.onnx")  # recorded before digests: by path
    assert waiver_covers_model(W("a"), "anything", "any.onnx")  # --all-models
    finding = {"check": "a", "subject": "sex", "analysis": "bias.group_fairness", "passed": False, "severity": "high"}
    assert waiver_for(finding, [W("a", subject="age")]) is None
    assert waiver_for(finding, [W("a", subject="sex", analysis="bias.group_fairness")]) is not None


def test_counted_failures_and_the_status_shown():
    findings = [
        {"check": "a", "subject": None, "analysis": "x", "passed": False, "severity": "high"},
        {"check": "b", "subject": None, "analysis": "x", "passed": False, "severity": "medium"},
        {"check": "c", "subject": None, "analysis": "x", "passed": True, "severity": "critical"},
    ]
    assert [f["check"] for f in counted_failures(findings, "high")] == ["a"]
    assert [f["check"] for f in counted_failures(findings, "medium")] == ["a", "b"]
    assert counted_failures(findings, "never") == []
    assert counted_failures(findings, "high", [W("a")]) == []
    assert gated_run_status("failed", 1, ["ok"], []) == ("ok", 0)
    assert gated_run_status("ok", 0, ["ok"], [findings[0]]) == ("failed", 1)
    assert gated_run_status("error", 3, ["error"], []) == ("error", 3)
    assert gated_run_status("interrupted", 130, ["ok"], []) == ("interrupted", 130)
