"""Reports: escaping of untrusted strings, the compliance mapping, JUnit and Markdown output."""

import json
import re
from xml.etree import ElementTree as ET

import pytest

import audit
from audit.plugins import get_plugin_manager


class Hostile(audit.Analysis):
    """Yields strings a model or data set could contain."""

    name = "test.hostile"
    title = "<i>title</i>"
    tags = {"eu-ai-act:art15"}

    def run(self, ctx):
        yield audit.Finding(check="xss", title="t", severity="high", passed=False, value=0.3, threshold=0.1,
                            subject="<script>alert(1)</script>", message="group <b>bold</b> & co")
        yield audit.Finding(check="fine", title="t", severity="low", passed=True, subject="a | b|c")
        yield audit.Metric("rate", 0.5, subject="sex", group="<img src=x onerror=alert(1)>")


class HostilePlugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Hostile)


@pytest.fixture
def hostile_run(cli, assets, tmp_path):
    manager = get_plugin_manager()
    manager.register(HostilePlugin(), name="hostile")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "test.hostile", "-a", "performance", "--json")
    assert code == 1, err
    yield json.loads(out)
    manager.unregister(name="hostile")


def test_untrusted_strings_are_escaped(hostile_run, tmp_path):
    html = (tmp_path / ".audit" / "reports" / f"{hostile_run['run_id']}.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>bold</b>" not in html and "group &lt;b&gt;bold&lt;/b&gt; &amp; co" in html
    assert "<i>title</i>" not in html
    # Self-contained: no external fetches.
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_compliance_matrix_maps_tags(hostile_run, cli, tmp_path):
    cli("report", hostile_run["run_id"], "--out", tmp_path / "r.json")
    document = json.loads((tmp_path / "r.json").read_text())
    eu = {r["id"]: r for r in next(f for f in document["compliance"] if f["id"] == "eu-ai-act")["requirements"]}
    # The hostile high failure is tagged for Article 15 and counted by the default gate (high): not met.
    assert eu["art15"]["status"] == "not met" and eu["art15"]["failed"] >= 1
    assert eu["art13"]["status"] == "not assessed" and eu["art13"]["passed"] == 0 == eu["art13"]["failed"]


def test_junit_counts(hostile_run, cli, tmp_path):
    code, _, err = cli("report", hostile_run["run_id"], "--out", tmp_path / "r.xml")
    assert code == 0, err
    root = ET.parse(tmp_path / "r.xml").getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    hostile = suites["test.hostile"]
    assert hostile.get("tests") == "2" and hostile.get("failures") == "1"
    failure = hostile.find("testcase/failure")
    assert failure.get("message") == "group <b>bold</b> & co"  # XML-escaped on disk, exact when parsed
    total_cases = sum(1 for _ in root.iter("testcase"))
    assert total_cases == len(hostile_run["findings"])


def test_markdown_escapes_pipes(hostile_run, cli, tmp_path):
    cli("report", hostile_run["run_id"], "--out", tmp_path / "card.md")
    text = (tmp_path / "card.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| test.hostile")]
    # A cell boundary is a pipe not escaped by a backslash: seven cells, eight boundaries, whatever the subject holds.
    # The card's table lists the checks that did not pass: the failed one.
    assert len(rows) == 1 and all(len(re.findall(r"(?<!\\)\|", row)) == 8 for row in rows), rows
    assert "\\<script\\>" in rows[0]


def test_markdown_is_a_hugging_face_model_card(hostile_run, cli, tmp_path):
    yaml = pytest.importorskip("yaml")
    cli("report", hostile_run["run_id"], "--out", tmp_path / "card.md")
    text = (tmp_path / "card.md").read_text()
    _, front, body = text.split("---\n", 2)
    card = yaml.safe_load(front)
    assert card["pipeline_tag"] == "tabular-classification"  # a Hugging Face task id, not "classification"
    [index] = card["model-index"]
    [result] = index["results"]
    assert result["task"]["type"] == card["pipeline_tag"]
    metrics = {m["type"]: m for m in result["metrics"]}
    assert set(metrics) == {"accuracy", "balanced_accuracy", "worst_class_recall"}  # the headline metrics, not every check
    assert all(m["verified"] is False and isinstance(m["value"], (int, float)) for m in metrics.values())
    for heading in ("## Uses", "### Direct Use", "### Out-of-Scope Use", "## Bias, Risks, and Limitations", "## Evaluation", "### Results"):
        assert heading in body, heading
    assert "Not stated (`intended_use` under `[report]`" in body
    assert "- **Performance**:" in body and "- **Fairness**: not assessed." in body


def test_same_seed_same_findings(cli, assets):
    # bias.group_fairness draws bootstrap resamples and dCov permutations from the seed; their intervals are in the messages.
    documents = []
    for seed in (3, 3, 4):
        code, out, _ = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "bias.group_fairness", "--json",
                           "--seed", seed, "--set", "bias.group_fairness.n_bootstrap=50", "--fail-on", "never")
        documents.append(json.loads(out))
    assert documents[0]["findings"] == documents[1]["findings"]
    assert documents[0]["run_id"] != documents[1]["run_id"]
    # The seed really drives them: another seed moves the intervals.
    assert [f["message"] for f in documents[0]["findings"]] != [f["message"] for f in documents[2]["findings"]]


def test_report_structure_and_counts(cli, assets, tmp_path):
    code, out, _ = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    document = json.loads(out)
    html = (tmp_path / ".audit" / "reports" / f"{document['run_id']}.html").read_text()
    for anchor in ('id="verdict"', 'id="summary"', 'id="identity"', 'id="findings"', 'id="compliance"', 'id="a-1"', 'id="cost"', 'id="manifest"'):
        assert anchor in html, anchor
    passed = sum(f["passed"] for f in document["findings"])
    assert '<div class="gate-word">PASSED</div>' in html and f"{passed} passed, 0 failed" in html
    assert html.count("Options and thresholds") == 1 and "min_accuracy" in html  # once, in the appendix
    from audit.report import load_view
    from audit.store import Store

    view = load_view(Store(), document["run_id"])
    areas = {a["key"]: a for a in view["areas"]}
    assert areas["performance"]["state"] == "passed" and areas["performance"]["counts"]["passed"] == passed
    assert areas["fairness"]["state"] == "not assessed" and areas["fairness"]["finding"] is None
    eu = {r["id"]: r for r in next(f for f in view["compliance"] if f["id"] == "eu-ai-act")["requirements"]}
    # Only performance ran: Article 15 also requires robustness, Annex IV 3 also bias; Article 9 needs the intended use stated.
    assert eu["art15"]["passed"] == passed and eu["art15"]["status"] == "partly met" and "robustness" in eu["art15"]["why"]
    assert eu["annex-iv-3"]["status"] == "partly met" and "bias" in eu["annex-iv-3"]["why"]
    assert eu["art9"]["status"] == "partly met" and "intended use not stated" in eu["art9"]["why"]
    assert eu["annex-iv-2g"]["status"] == "met" and eu["annex-iv-2g"]["findings"] == []  # a documentation duty: this report
    assert eu["art13"]["status"] == "not assessed" and eu["art10"]["status"] == "not assessed"
    assert eu["art14"]["status"] == "needs attestation"
    nist = {r["id"]: r for r in next(f for f in view["compliance"] if f["id"] == "nist-ai-rmf")["requirements"]}
    assert nist["measure-2.3"]["status"] == "met" and nist["measure-2.11"]["status"] == "not assessed"


def test_report_statement_and_attestations_from_config(cli, assets, tmp_path):
    (tmp_path / "audit.toml").write_text(
        '[report]\nintended_use = "Screening <b>loan</b> applications for a human underwriter"\n'
        'out_of_scope = ["fully automated decisions"]\nlimitations = "trained on one region"\n'
        '[report.attestations]\n"eu-ai-act:art14" = "Underwriters review every decline (policy UW-7)"\n')
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 0, err
    document = json.loads(out)
    from audit.report import load_view
    from audit.store import Store

    view = load_view(Store(), document["run_id"])
    eu = {r["id"]: r for r in next(f for f in view["compliance"] if f["id"] == "eu-ai-act")["requirements"]}
    assert eu["art14"]["status"] == "attested" and "UW-7" in eu["art14"]["why"]
    assert eu["art9"]["status"] == "met"  # performance passed and the intended use is stated
    html = (tmp_path / ".audit" / "reports" / f"{document['run_id']}.html").read_text()
    assert "Screening &lt;b&gt;loan&lt;/b&gt; applications" in html and "fully automated decisions" in html
    assert "not stated" not in html.split('id="statement"')[1].split("</section>")[0]
    # A [report] key of the wrong type is refused with one line, before any work.
    (tmp_path / "audit.toml").write_text('[report]\nintended_use = 3\n')
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance")
    assert code == 2 and "report.intended_use" in err and "Traceback" not in err


def test_a_requirement_whose_analyses_were_all_skipped_is_not_assessed():
    from audit.report import compliance_matrix
    from audit.report.frameworks import BUILTIN_FRAMEWORKS

    accuracy = {"analysis": "performance", "check": "accuracy", "subject": None, "verdict": "passed", "tags": [], "severity_rank": 3}
    matrix = compliance_matrix([accuracy], BUILTIN_FRAMEWORKS, {"performance": "performance", "bias.group_fairness": "bias"})
    eu = {r["id"]: r for r in matrix[0]["requirements"]}
    # Annex IV 3 (accuracy for groups, discrimination) is never "met" on overall accuracy alone.
    assert eu["annex-iv-3"]["status"] == "partly met" and eu["art10"]["status"] == "not assessed"
    assert not any(r["status"] == "met" for r in eu.values() if r["kind"] == "test" and r["id"] != "art15" and "bias" in str(r["text"]).lower())


def test_template_dir_overrides_and_is_recorded(cli, assets, tmp_path):
    overrides = tmp_path / "mytemplates"
    (overrides / "analysis").mkdir(parents=True)
    (overrides / "analysis" / "performance.html").write_text("<p>COMPANY SECTION {{ s.findings|length }} checks</p>")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json", "--template-dir", overrides)
    assert code == 0, err
    document = json.loads(out)
    html = (tmp_path / ".audit" / "reports" / f"{document['run_id']}.html").read_text()
    assert "COMPANY SECTION 3 checks" in html
    from audit.store import Store

    assert Store().resolve_run(document["run_id"]).template_dir == str(overrides)


def test_a_plugin_cannot_replace_the_default_templates(cli, assets, tmp_path):
    folder = tmp_path / "styled_plugin"
    (folder / "templates" / "analysis").mkdir(parents=True)
    (folder / "templates" / "report.html").write_text("HIJACKED")
    (folder / "templates" / "analysis" / "performance.html").write_text("<p>restyled someone else's section</p>")
    (folder / "templates" / "analysis" / "styled.check.html").write_text("<p>own section: {{ s.findings|length }} finding</p>")

    class Styled(audit.Analysis):
        name = "styled.check"
        title = "Styled"

        def run(self, ctx):
            yield audit.Finding(check="ok", title="ok", severity="low", passed=True)

    class StyledPlugin:
        __file__ = str(folder / "__init__.py")

        @audit.hookimpl
        def register_analyses(self, register):
            register(Styled)

    get_plugin_manager().register(StyledPlugin(), name="styled")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "-a", "styled.check", "--json")
    assert code == 0, err
    html = (tmp_path / ".audit" / "reports" / f"{json.loads(out)['run_id']}.html").read_text()
    assert "HIJACKED" not in html and "Model audit report" in html
    assert "restyled someone else" not in html  # only its own analyses' sections
    assert "own section: 1 finding" in html


def test_an_old_run_renders_the_same_after_the_frameworks_change(cli, assets, tmp_path):
    """The framework texts a run was judged against are stored with it; plugins changing later do not alter its report."""

    class Policy:
        @audit.hookimpl
        def register_frameworks(self, register):
            register("house", "House policy v1", {"perf": "Accuracy is measured before release."})

    manager = get_plugin_manager()
    manager.register(Policy(), name="policy")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    for suffix in ("html", "json", "md"):
        assert cli("report", run_id, "--out", tmp_path / f"before.{suffix}")[0] == 0
    manager.unregister(name="policy")

    class PolicyV2:
        @audit.hookimpl
        def register_frameworks(self, register):
            register("house", "House policy v2", {"perf": "REWRITTEN requirement", "new": "A requirement added later."})
            register("eu-ai-act", "REPLACED", {"art15": "REPLACED text"})

    manager.register(PolicyV2(), name="policy2")
    for suffix in ("html", "json", "md"):
        assert cli("report", run_id, "--out", tmp_path / f"after.{suffix}")[0] == 0
        assert (tmp_path / f"after.{suffix}").read_text() == (tmp_path / f"before.{suffix}").read_text(), suffix
    html = (tmp_path / "after.html").read_text()
    assert "House policy v1" in html and "Accuracy is measured before release." in html
    assert "REWRITTEN" not in html and "REPLACED" not in html
    # A new run is judged against the frameworks installed now.
    code, out, _ = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    assert cli("report", json.loads(out)["run_id"], "--out", tmp_path / "new.html")[0] == 0
    assert "House policy v2" in (tmp_path / "new.html").read_text()
    manager.unregister(name="policy2")


def test_junit_failures_are_exactly_the_gate(cli, assets, tmp_path):
    """A failure below --fail-on is a passed test case that says so; only what fails the job is red."""
    manager = get_plugin_manager()
    manager.register(HostilePlugin(), name="hostile")
    try:
        code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "test.hostile", "--json", "--fail-on", "critical")
    finally:
        manager.unregister(name="hostile")
    assert code == 0, err  # the high failure is below the gate: the job passes
    run_id = json.loads(out)["run_id"]
    assert cli("report", run_id, "--out", tmp_path / "r.xml")[0] == 0
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert sum(int(s.get("failures")) for s in root.iter("testsuite")) == 0 == len(list(root.iter("failure")))
    case = next(c for c in root.iter("testcase") if c.get("name").startswith("xss"))
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["verdict"] == "failed" and properties["severity"] == "high" and "below --fail-on critical" in properties["below_gate"]
    assert "group <b>bold</b> & co" in case.find("system-out").text


def test_group_codes_are_named_by_their_labels_and_numbers_are_left_alone():
    from audit.report.summary import area_lines, plain_sentence, relabel

    labels = {"sex": {"0": "female", "1": "male"}}
    assert relabel("lowest selection rate (0) is 0.430 of the highest (1) [95% CI 0.387, 0.484]", "sex", labels) == \
        "lowest selection rate (female) is 0.430 of the highest (male) [95% CI 0.387, 0.484]"
    assert relabel("lowest in [19, 33), 0, highest in [48, 75], 1; above 0.1", "age x sex", labels) == \
        "lowest in [19, 33), female, highest in [48, 75], male; above 0.1"
    assert relabel("changing sex from 0 to 1 changes 10 of 2000 rows", "sex", labels) == "changing sex from female to male changes 10 of 2000 rows"
    assert relabel("group 0 of region", "region", labels) == "group 0 of region"  # only the subject's attributes
    assert relabel("sex=female vs sex=male, 10 bins; 0 = identical, 1 = disjoint)", "age x sex", labels) == \
        "sex=female vs sex=male, 10 bins; 0 = identical, 1 = disjoint)"  # a scale's ends, not groups
    finding = {"check": "demographic_parity_ratio", "subject": "sex", "message": "lowest selection rate (0) is 0.43 of the highest (1)",
               "lower": 0.387, "upper": 0.484, "level": 0.95, "details": {}, "verdict": "failed", "severity": "high",
               "gating": True, "analysis": "bias.group_fairness", "value": 0.43, "threshold": 0.8}
    assert plain_sentence(finding, labels) == "lowest selection rate (female) is 0.43 of the highest (male) [95% CI 0.387, 0.484]"
    # A family-corrected level is rounded down, never up to a "100% CI".
    assert plain_sentence({**finding, "level": 0.99886}, labels).endswith("[99.8% CI 0.387, 0.484]")
    from audit.report.summary import level_percent
    assert [level_percent(x) for x in (0.95, 0.975, 0.9999, None)] == ["95%", "97.5%", "99.9%", "95%"]
    finding["details"] = {"plain": "female applicants are approved at 43% of the rate of male applicants"}
    assert plain_sentence(finding, labels).startswith("female applicants are approved at 43%")
    accuracy = {**finding, "check": "accuracy", "subject": None, "analysis": "performance", "verdict": "passed", "gating": False,
                "message": "accuracy 0.9", "details": {}, "lower": None}
    results = [{"analysis": "bias.group_fairness", "category": "bias", "status": "ok"},
               {"analysis": "performance", "category": "performance", "status": "ok"},
               {"analysis": "robustness.ood", "category": "robustness", "status": "skipped", "reason": "no logits"}]
    areas = {a["key"]: a for a in area_lines([finding, accuracy], results, labels)}
    assert areas["fairness"]["state"] == "failed" and areas["fairness"]["finding"] is finding
    assert areas["performance"]["state"] == "passed" and areas["robustness"]["state"] == "not assessed"
    assert "robustness.ood skipped: no logits" in areas["robustness"]["sentence"]
    assert areas["explainability"]["sentence"] == "no analysis of this area was run"


def test_the_fairness_headline_is_the_plain_parity_finding_and_the_summary_adds_to_the_area_lines():
    from audit.report.summary import area_lines, executive_summary

    def failed(check, subject, value, lower, upper, threshold, analysis="bias.group_fairness", plain=None):
        return {"check": check, "subject": subject, "value": value, "lower": lower, "upper": upper, "level": 0.95,
                "threshold": threshold, "verdict": "failed", "severity": "high", "gating": True, "analysis": analysis,
                "message": f"{check} {value}", "details": {"plain": plain} if plain else {}}

    # The flip rate is 37 thresholds past its limit, the parity ratio half of one: at equal gate and severity,
    # the finding its plugin put in plain words leads, a whole attribute before an intersection, then the one
    # whose whole interval lies furthest past the threshold (sex [0.36, 0.51] before age [0.31, 0.56]).
    flips = failed("counterfactual_flip_rate", "sex", 0.382, 0.358, 0.407, 0.01, analysis="bias.counterfactual")
    age = failed("demographic_parity_ratio", "age", 0.419, 0.315, 0.561, 0.8, plain="The [19, 33) group (age) ...")
    sex = failed("demographic_parity_ratio", "sex", 0.430, 0.364, 0.510, 0.8, plain="The female group (sex) ...")
    both = failed("demographic_parity_ratio", "age x sex", 0.144, 0.073, 0.292, 0.8, plain="The age=[19, 33), sex=female group ...")
    results = [{"analysis": "bias.group_fairness", "category": "bias", "status": "ok"},
               {"analysis": "bias.counterfactual", "category": "bias", "status": "ok"}]
    findings = [flips, age, both, sex]
    fairness = next(a for a in area_lines(findings, results) if a["key"] == "fairness")
    assert fairness["finding"] is sex and fairness["sentence"].startswith("The female group (sex)")
    summary = executive_summary(findings, shown=[fairness["finding"]])
    # By how far past the threshold, at most two per analysis; the parity ratio of sex is page 1's, not repeated.
    assert [(f["check"], f["subject"]) for f in summary] == [
        ("counterfactual_flip_rate", "sex"), ("demographic_parity_ratio", "age x sex"), ("demographic_parity_ratio", "age")]
    assert ("demographic_parity_ratio", "sex") in [(f["check"], f["subject"]) for f in executive_summary(findings, per_analysis=3)]


def test_model_input_columns_are_shown(cli, assets):
    from audit.report import load_view, render_html
    from audit.store import Store

    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    view = load_view(Store(), json.loads(out)["run_id"])
    assert "Input columns" not in render_html(view)  # a plain tensor input has none to show
    view["run"]["model_info"]["input_columns"] = ["income: float32 [batch, 1] <- column income",
                                                  "region: string [batch, 1] <- column <b>region</b>"]
    for for_print in (False, True):
        html = render_html(view, for_print=for_print)
        assert "Input columns" in html and "income: float32 [batch, 1] &lt;- column income" in html
        assert "&lt;b&gt;region&lt;/b&gt;" in html


def test_detail_tables_print_as_aligned_text_that_fits_the_page():
    from audit.report import MONO_ADVANCE, PRINT_WIDTH_PX, text_table

    metric = lambda value, lower=None, upper=None: {"value": value, "lower": lower, "upper": upper}  # noqa: E731
    table = {"kind": "grouped", "columns": ["group_size", "selection_rate"], "rows": [
        {"heading": "age x sex"},
        {"group": "[19, 33), female", "cells": {"group_size": metric(108.0), "selection_rate": metric(0.2412, 0.17, 0.329)}},
        {"group": "x" * 80, "cells": {"selection_rate": metric(0.5)}},
    ]}
    text = text_table(table)
    header, rule, heading, first, interval, long = text["lines"]
    assert header.split() == ["Group", "group", "size", "selection", "rate"] and set(rule) == {"-"}
    assert heading == "age x sex:" and first.split() == ["[19,", "33),", "female", "108", "0.241"]
    # Columns are right-aligned: the interval ends where its value ends; a long name is cut, not wrapped.
    assert interval.rstrip().endswith("[0.17, 0.329]") and len(interval.rstrip()) == len(first)
    assert long.startswith("x" * 29 + "\u2026") and long.rstrip().endswith("0.5")
    assert text["font_px"] <= 9 and max(map(len, text["lines"])) * MONO_ADVANCE * text["font_px"] <= PRINT_WIDTH_PX


def test_json_outputs_match_the_shipped_schema(hostile_run, cli, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path

    schema = json.loads((Path(audit.__file__).parent / "schemas" / "run.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(hostile_run)) == []  # `audit run --json`
    cli("report", hostile_run["run_id"], "--out", tmp_path / "r.json")
    document = json.loads((tmp_path / "r.json").read_text())
    assert list(validator.iter_errors(document)) == []
    assert {r["status"] for fw in document["compliance"] for r in fw["requirements"]} >= {"not met", "needs attestation", "met"}
    # The schema can fail: a verdict outside the three is refused.
    broken = {**hostile_run, "findings": [{**hostile_run["findings"][0], "verdict": "ok"}]}
    assert list(validator.iter_errors(broken))
