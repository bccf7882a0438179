"""Three verdicts: how a finding is judged by its interval, stored, gated, and corrected across a family."""

import json
import math
import sqlite3

import numpy as np
import pytest

from audit import Analysis, Finding, Severity, hookimpl, stats
from audit.gate import counted_failures, verdict_of
from audit.record_fields import checked_record


# --- Finding.judged / graded -------------------------------------------------------------

def test_judged_passes_fails_and_is_inconclusive_by_the_interval_not_the_point():
    common = dict(severity="high", floor=0.8, rows=200, method="wilson")
    assert Finding.judged("a", "A", 0.9, 0.85, 0.94, **common).verdict == "passed"
    assert Finding.judged("a", "A", 0.7, 0.62, 0.78, **common).verdict == "failed"
    # The point is above the floor, but the interval reaches below it: not shown to pass.
    straddling = Finding.judged("a", "A", 0.82, 0.75, 0.88, **common)
    assert straddling.verdict == "inconclusive" and straddling.passed is False
    assert straddling.severity is Severity.HIGH  # the severity its failure would have
    # Half-width 0.07 on the threshold's side, distance 0.02: (0.07 / 0.02)^2 * 200 rows.
    assert straddling.details["needs_rows"] == math.ceil(200 * (0.07 / 0.02) ** 2)
    assert "straddles" in straddling.details["inconclusive_because"]


def test_a_one_row_data_set_never_passes():
    lower, upper = stats.wilson(1, 1)
    finding = Finding.judged("accuracy", "Accuracy", 1.0, lower, upper, severity="high", floor=0.9, rows=1, method="wilson")
    assert finding.verdict == "inconclusive"
    assert finding.lower == pytest.approx(0.2065, abs=1e-4)


def test_too_few_rows_is_inconclusive_whatever_the_interval_says():
    finding = Finding.judged("a", "A", 1.0, 0.99, 1.0, severity="high", floor=0.5, rows=5, min_rows=30)
    assert finding.verdict == "inconclusive" and finding.details["needs_rows"] == 30


def test_ceiling_checks_mirror_floor_checks():
    assert Finding.judged("g", "G", 0.02, 0.0, 0.05, severity="medium", ceiling=0.1).verdict == "passed"
    assert Finding.judged("g", "G", 0.2, 0.12, 0.3, severity="medium", ceiling=0.1).verdict == "failed"
    assert Finding.judged("g", "G", 0.08, 0.01, 0.15, severity="medium", ceiling=0.1).verdict == "inconclusive"


def test_no_interval_is_inconclusive():
    assert Finding.judged("g", "G", 0.2, None, None, severity="medium", ceiling=0.1).verdict == "inconclusive"


def test_graded_with_an_interval_fails_high_only_on_evidence_of_the_high_limit():
    high = Finding.graded("gap", "Gap", 0.3, medium=0.1, high=0.2, lower=0.22, upper=0.38, rows=400)
    assert (high.verdict, high.severity) == ("failed", Severity.HIGH)
    # Shown above medium, not shown above high: fails at medium severity.
    medium = Finding.graded("gap", "Gap", 0.25, medium=0.1, high=0.2, lower=0.15, upper=0.35, rows=400)
    assert (medium.verdict, medium.severity) == ("failed", Severity.MEDIUM)
    passed = Finding.graded("gap", "Gap", 0.02, medium=0.1, high=0.2, lower=0.0, upper=0.08, rows=400)
    assert (passed.verdict, passed.severity) == ("passed", Severity.MEDIUM)
    unsure = Finding.graded("gap", "Gap", 0.12, medium=0.1, high=0.2, lower=0.05, upper=0.19, rows=400)
    assert (unsure.verdict, unsure.severity) == ("inconclusive", Severity.MEDIUM)


def test_graded_without_an_interval_keeps_the_point_rule():
    assert Finding.graded("g", "G", 0.25, medium=0.1, high=0.2).severity is Severity.HIGH
    assert Finding.graded("g", "G", 0.05, medium=0.1, high=0.2).verdict == "passed"
    assert Finding.graded("g", "G", float("nan"), medium=0.1, high=0.2).verdict == "failed"


def test_verdict_and_passed_must_agree():
    assert Finding("c", "C", "low", passed=True).verdict == "passed"
    assert Finding("c", "C", "low", passed=False).verdict == "failed"
    assert Finding("c", "C", "low", verdict="inconclusive").passed is False
    with pytest.raises(ValueError, match="contradicts"):
        Finding("c", "C", "low", passed=True, verdict="failed")
    with pytest.raises(ValueError, match="verdict must be one of"):
        Finding("c", "C", "low", verdict="maybe")
    with pytest.raises(ValueError, match="give verdict"):
        Finding("c", "C", "low")


def test_a_later_edit_that_splits_verdict_and_passed_is_refused_naming_the_analysis():
    finding = Finding("c", "C", "low", verdict="failed")
    finding.passed = True
    with pytest.raises(TypeError, match="my.analysis yielded Finding 'c': passed=True contradicts"):
        checked_record(finding, "my.analysis")


@pytest.mark.parametrize("field,value,message", [
    ("level", 95.0, "level must lie strictly between 0 and 1"),
    ("lower", "0.1", "lower must be a number"),
    ("rows", 2.5, "rows must be a whole number"),
    ("method", 3, "method must be a string"),
])
def test_bad_interval_fields_are_refused(field, value, message):
    finding = Finding.judged("c", "C", 0.5, 0.4, 0.6, severity="low", floor=0.1, rows=10)
    setattr(finding, field, value)
    with pytest.raises(TypeError, match=message):
        checked_record(finding, "x")


def test_one_sided_interval_is_refused():
    finding = Finding.judged("c", "C", 0.5, 0.4, 0.6, severity="low", floor=0.1, rows=10)
    finding.upper = None
    with pytest.raises(TypeError, match="both ends"):
        checked_record(finding, "x")


# --- rows_to_decide ----------------------------------------------------------------------

def test_rows_to_decide_makes_a_wilson_interval_just_clear_the_threshold():
    rows, rate, floor = 100, 0.85, 0.8
    lower, upper = stats.wilson(int(rate * rows), rows)
    needed = stats.rows_to_decide(rate, lower, upper, floor, rows)
    bigger_lower, _ = stats.wilson(round(rate * needed), needed)
    assert bigger_lower == pytest.approx(floor, abs=0.01)
    assert stats.rows_to_decide(0.8, 0.7, 0.9, 0.8, 100) is None  # on the threshold: no size settles it


# --- the gate ----------------------------------------------------------------------------

def _dict(verdict, severity="high"):
    return {"check": "c", "subject": None, "analysis": "a", "severity": severity, "verdict": verdict,
            "passed": verdict == "passed"}


def test_the_gate_counts_failures_not_inconclusive_unless_asked():
    findings = [_dict("passed"), _dict("inconclusive"), _dict("failed", "low")]
    assert counted_failures(findings, "high") == []
    assert counted_failures(findings, "high", inconclusive_fails=True) == [findings[1]]
    assert counted_failures(findings, "low") == [findings[2]]


def test_records_from_before_verdicts_read_by_their_passed_flag():
    assert verdict_of({"passed": False}) == "failed"
    assert verdict_of({"passed": True}) == "passed"
    assert verdict_of({"passed": False, "verdict": "inconclusive"}) == "inconclusive"


# --- families ----------------------------------------------------------------------------

def _difference_member(key, k_a, k_b, n, threshold):
    def interval(level):
        lower, upper = stats.newcombe_difference(k_a, n, k_b, n, level)
        return float(lower), float(upper)
    return stats.FamilyMember(key, interval, threshold, higher_is_better=False)


def test_a_family_at_its_threshold_fails_at_most_alpha_of_the_time_and_uncorrected_checks_fail_more():
    """20 checks whose truth sits exactly on the threshold (the hardest null): Holm keeps the family-wise
    false-failure rate near or below 5%; judging each at 95% alone fails a family far more often."""
    rng = np.random.default_rng(7)
    n, families, checks = 400, 60, 20
    corrected = uncorrected = 0
    for _ in range(families):
        members = [_difference_member(j, rng.binomial(n, 0.6), rng.binomial(n, 0.5), n, 0.1) for j in range(checks)]
        corrected += any(d.verdict == "failed" for d in stats.decide_family(members, correction="holm"))
        uncorrected += any(d.verdict == "failed" for d in stats.decide_family(members, correction="none"))
    assert corrected / families <= 0.08  # about 0.025 expected: a failure needs the one-sided tail
    assert uncorrected / families >= 0.2  # 1 - 0.975^20 is about 0.40


def test_a_family_still_finds_a_real_gap_and_shows_the_interval_it_was_judged_at():
    members = [_difference_member("real", 300, 100, 400, 0.1)] + [
        _difference_member(j, 200, 200, 400, 0.1) for j in range(9)]
    decisions = stats.decide_family(members, correction="holm")
    real = decisions[0]
    assert real.verdict == "failed" and real.comparisons == 10 and real.correction == "holm"
    assert real.lower > 0.1  # the shown interval agrees with the verdict
    # The most significant check is tested at alpha / m under Holm.
    assert real.level == pytest.approx(1 - 0.05 / 10)
    assert all(d.verdict != "failed" for d in decisions[1:])


def test_p_values_from_inverting_the_interval_match_the_level_where_the_verdict_flips():
    member = _difference_member("x", 260, 200, 400, 0.05)
    decision = stats.decide_family([member], correction="none")[0]
    lower_just_above, _ = member.interval(1 - decision.p_fail * 1.01)
    lower_just_below, _ = member.interval(1 - decision.p_fail * 0.99)
    assert lower_just_above > 0.05 >= lower_just_below


def test_benjamini_hochberg_rejects_what_statsmodels_rejects():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(3)
    members, p_values = [], []
    for j in range(15):
        k_a = rng.binomial(300, 0.5 + 0.02 * j)
        members.append(_difference_member(j, k_a, 150, 300, 0.0))
    decisions = stats.decide_family(members, correction="bh")
    p_values = [d.p_fail for d in decisions]
    expected = multitest.multipletests(p_values, alpha=0.05, method="fdr_bh")[0]
    assert [d.verdict == "failed" for d in decisions] == list(expected)


def test_unknown_correction_is_refused():
    with pytest.raises(ValueError, match="holm, bh, bonferroni, none"):
        stats.decide_family([], correction="sidak")


# --- store, JSON, JUnit ------------------------------------------------------------------

class Judged(Analysis):
    """Three verdicts, one of each, all at high severity."""

    name = "test.judged"

    def run(self, ctx):
        yield Finding.judged("ok", "OK", 0.9, 0.85, 0.95, severity="high", floor=0.8, rows=300, method="wilson")
        yield Finding.judged("bad", "Bad", 0.5, 0.45, 0.55, severity="high", floor=0.8, rows=300, method="wilson")
        yield Finding.judged("unsure", "Unsure", 0.82, 0.7, 0.9, severity="high", floor=0.8, rows=60, method="wilson")


class JudgedPlugin:
    @hookimpl
    def register_analyses(self, register):
        register(Judged)


@pytest.fixture
def judged_run():
    from audit.plugins import get_plugin_manager

    manager = get_plugin_manager()
    manager.register(JudgedPlugin(), name="judged")
    return manager


def test_verdicts_and_intervals_reach_the_store_json_and_junit(judged_run, assets, tmp_path):
    from audit.config import RunSpec
    from audit.runner import run_audit

    db = tmp_path / "v.db"
    spec = RunSpec(model=str(assets.mlp_onnx), data=str(assets.data_npz), analyses=["test.judged"], db=str(db))
    outcome = run_audit(spec, plugin_manager=judged_run)
    assert outcome.exit_code == 1  # "bad" fails at high; "unsure" does not count
    from audit.report import write_report
    from audit.store import Store

    for name in ("r.json", "r.xml"):
        write_report(Store(str(db)), outcome.run_id, tmp_path / name, plugin_manager=judged_run)

    rows = sqlite3.connect(db).execute(
        "SELECT \"check\", verdict, passed, lower, upper, level, method, rows FROM finding ORDER BY position").fetchall()
    assert rows[0] == ("ok", "passed", 1, 0.85, 0.95, 0.95, "wilson", 300)
    assert rows[1][:3] == ("bad", "failed", 0)
    assert rows[2][:3] == ("unsure", "inconclusive", 0)

    document = json.loads((tmp_path / "r.json").read_text())
    unsure = next(f for f in document["findings"] if f["check"] == "unsure")
    assert unsure["verdict"] == "inconclusive" and unsure["lower"] == 0.7 and unsure["rows"] == 60
    assert unsure["needs_rows"] > 60

    junit = (tmp_path / "r.xml").read_text()
    assert junit.count("<failure") == 1 and "inconclusive:" in junit

    spec.fail_on_inconclusive = True
    assert run_audit(spec, plugin_manager=judged_run).exit_code == 1
    spec.fail_on = "critical"
    assert run_audit(spec, plugin_manager=judged_run).exit_code == 0


def test_fail_on_inconclusive_is_type_checked_from_the_config(tmp_path):
    from audit.config import RunSpec, apply_config

    spec = RunSpec()
    apply_config(spec, {"fail_on_inconclusive": True}, tmp_path, source="audit.toml")
    assert spec.fail_on_inconclusive is True
    from audit.errors import AuditError

    with pytest.raises(AuditError, match="fail_on_inconclusive"):
        apply_config(RunSpec(), {"fail_on_inconclusive": "sometimes"}, tmp_path, source="audit.toml")


def test_m005_keeps_old_findings_verdicts_and_their_signed_digest(tmp_path):
    """A database from before m005: its findings read as passed/failed, and a digest taken then still verifies."""
    from sqlalchemy import create_engine

    from audit.store import Store
    from audit.store.migrations import migrate
    from audit.store.seal import records_digest

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    migrate(engine, upto="m004_run_frameworks_and_waiver_digest")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO run (id, started_at, status, model_path, model_sha256) VALUES ('r1', '2026-01-01', 'failed', 'm', 'abc')")
        connection.exec_driver_sql(
            "INSERT INTO analysis_result (id, run_id, position, analysis, status) VALUES (1, 'r1', 0, 'a', 'ok')")
        for i, passed in enumerate((1, 0)):
            connection.exec_driver_sql(
                "INSERT INTO finding (run_id, result_id, position, analysis, \"check\", severity, passed, value) "
                f"VALUES ('r1', 1, {i}, 'a', 'c{i}', 'high', {passed}, 0.5)")
    engine.dispose()

    connection = sqlite3.connect(tmp_path / "old.db")
    columns_before = {row[1] for row in connection.execute("PRAGMA table_info(finding)")}
    connection.close()

    store = Store(url)
    findings = store.findings("r1")
    assert [f.verdict for f in findings] == ["passed", "failed"]
    assert [f.lower for f in findings] == [None, None]
    # What the chain hashes for an old finding is exactly the row as it was before m005, so its digest is unchanged.
    from audit.store.seal import _without_implied_verdict_fields

    assert set(_without_implied_verdict_fields(findings[0].model_dump())) == columns_before
    digest_now = records_digest(store, store.resolve_run("r1"))
    # Giving a finding an interval after the fact changes the digest: the new fields are covered when they say something.
    connection = sqlite3.connect(tmp_path / "old.db")
    with connection:
        connection.execute("UPDATE finding SET lower = 0.1, upper = 0.9 WHERE \"check\" = 'c0'")
    connection.close()
    assert records_digest(Store(url), store.resolve_run("r1")) != digest_now


def test_the_shipped_schema_describes_a_real_run_document(judged_run, assets, tmp_path, cli):
    """`audit schema` prints the schema; a run's `--json` document validates against it, verdict fields included."""
    jsonschema = pytest.importorskip("jsonschema")
    code, out, err = cli("schema")
    assert code == 0, err
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "test.judged", "-a", "performance", "--json")
    assert code == 1, err
    document = json.loads(out)
    jsonschema.validate(document, schema)
    assert {f["verdict"] for f in document["findings"]} >= {"passed", "failed", "inconclusive"}
    broken = json.loads(out)
    broken["findings"][0]["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
