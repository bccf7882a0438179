"""`audit run` end to end: findings stored, reports written, exit codes, the JSON contract."""

import json

import numpy as np
import pytest

import audit
from audit.store import Store


def test_run_onnx_end_to_end(cli, assets, tmp_path):
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "--analysis", "performance",
                         "--report", tmp_path / "r.pdf", "--report", tmp_path / "r.json", "--json")
    document = json.loads(out)
    assert code == 0, err
    assert document["exit_code"] == 0 and document["status"] == "ok"
    assert document["model"]["format"] == "onnx"
    assert document["model"]["provider"] == "CPUExecutionProvider"
    assert len(document["model"]["sha256"]) == 64
    (analysis,) = document["analyses"]
    assert analysis["name"] == "performance" and analysis["status"] == "ok"
    accuracy = next(f for f in document["findings"] if f["check"] == "accuracy")
    assert accuracy["value"] == 1.0 and accuracy["passed"] is True
    assert set(accuracy) >= {"analysis", "check", "subject", "title", "severity", "passed", "value", "threshold", "message"}
    html, pdf, js = document["reports"]
    assert html.endswith(f"{document['run_id']}.html")
    assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    assert json.loads((tmp_path / "r.json").read_text())["run_id"] == document["run_id"]
    # The findings are in the database, under the run.
    store = Store()
    assert [f.check for f in store.findings(document["run_id"])] == ["accuracy", "balanced_accuracy", "worst_class_recall"]
    run = store.resolve_run(document["run_id"])
    assert run.model_sha256 == document["model"]["sha256"]
    assert run.versions["audit"] == audit.__version__ and run.versions["onnxruntime"]
    assert run.argv[:2] == ["audit", "run"] and run.seed == 0 and run.device == "cpu"


def test_summary_and_fail_on(cli, assets):
    # Random labels: accuracy near 0.5, below the 0.7 floor (a high-severity check).
    rng = np.random.default_rng(0)
    np.savez("noisy.npz", x=assets.x, y=rng.integers(0, 2, len(assets.x)))
    code, out, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "--analysis", "performance")
    assert code == 1
    assert "performance.accuracy" in out and "exit code 1" in out
    code, _, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "--analysis", "performance", "--fail-on", "never")
    assert code == 0
    code, _, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "--analysis", "performance", "--fail-on", "critical")
    assert code == 0
    code, _, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "--analysis", "performance", "--set", "performance.min_accuracy=0.1",
                     "--set", "performance.min_balanced_accuracy=0.1", "--set", "performance.min_class_recall=0", "--fail-on", "low")
    assert code == 0


class Broken(audit.Analysis):
    name = "test.broken"
    title = "Always raises"

    def run(self, ctx):
        yield audit.Finding(check="before", title="yielded before the error", severity="low", passed=True)
        raise RuntimeError("boom")


class ReadsPredictions(audit.Analysis):
    name = "test.reads_predictions"
    title = "Reads the shared predictions"

    def run(self, ctx):
        yield audit.Metric("mean_top_probability", float(ctx.predictions.max(axis=1).mean()))


class TestPlugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Broken)
        register(ReadsPredictions)


@pytest.fixture
def test_plugin():
    from audit.plugins import get_plugin_manager

    manager = get_plugin_manager()
    manager.register(TestPlugin(), name="test-plugin")
    yield manager
    manager.unregister(name="test-plugin")


def test_one_analysis_failing_keeps_the_others(cli, assets, test_plugin):
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "-a", "test.broken", "--json")
    assert code == 3
    document = json.loads(out)
    statuses = {a["name"]: (a["status"], a["reason"]) for a in document["analyses"]}
    assert statuses["test.broken"] == ("error", "RuntimeError: boom")
    assert statuses["performance"][0] == "ok"
    assert {f["check"] for f in document["findings"]} >= {"accuracy", "balanced_accuracy"}
    result = [r for r in Store().results(document["run_id"]) if r.analysis == "test.broken"][0]
    assert "RuntimeError: boom" in result.traceback


def test_clean_pass_is_shared(cli, assets, test_plugin):
    code, out, _ = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "-a", "test.reads_predictions", "--json")
    assert code == 0
    document = json.loads(out)
    rows = len(assets.x)
    assert [a["forward_rows"] for a in document["analyses"]] == [0, 0]
    run = Store().resolve_run(document["run_id"])
    assert run.clean_forward_rows == rows  # one pass over the data for both analyses


def test_skipped_analysis_recorded_with_reason(cli, assets):
    np.savez("unlabelled.npz", x=assets.x)
    code, out, _ = cli("run", assets.mlp_onnx, "--data", "unlabelled.npz", "-a", "performance", "--json")
    document = json.loads(out)
    assert code == 3  # nothing was assessed: not a pass (test_degenerate.py)
    assert document["analyses"] == [{"name": "performance", "status": "skipped", "reason": "the data has no labels (y)",
                                     "seconds": 0.0, "forward_rows": 0, "backward_rows": 0}]


def test_show_runs_and_report_rerender(cli, assets, tmp_path):
    code, out, _ = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    run_id = json.loads(out)["run_id"]
    code, out, _ = cli("show", run_id[:6], "--json")
    assert code == 0 and json.loads(out)["run_id"] == run_id
    code, out, _ = cli("runs", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [run_id]
    first = (tmp_path / ".audit" / "reports" / f"{run_id}.html").read_text()
    code, out, _ = cli("report", run_id, "--out", tmp_path / "again.html")
    assert code == 0
    assert (tmp_path / "again.html").read_text() == first  # rendered from the database alone
    for suffix, head in ((".md", "---\ntags:\n- audit\n"), (".xml", "<?xml")):
        code, _, err = cli("report", "latest", "--out", tmp_path / f"r{suffix}")
        assert code == 0, err
        assert (tmp_path / f"r{suffix}").read_text().startswith(head)
    card = (tmp_path / "r.md").read_text()
    assert "## Evaluation" in card and '- name: "mlp.onnx"' in card and '    - type: "accuracy"\n      value: 1\n' in card


def test_runs_filters(cli, assets, tmp_path):
    from audit.testing import export_onnx, tiny_mlp

    export_onnx(tiny_mlp(seed=9), tmp_path / "other.onnx", assets.x)
    cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance")
    cli("run", tmp_path / "other.onnx", "--data", assets.data_npz, "-a", "performance")
    code, out, _ = cli("runs", "--json", "--model", "other.onnx")
    assert [r["model"] for r in json.loads(out)] == [str(tmp_path / "other.onnx")]
    statuses = {r["model"]: r["status"] for r in json.loads(cli("runs", "--json")[1])}
    code, out, _ = cli("runs", "--json", "--status", "failed")
    assert {r["model"] for r in json.loads(out)} == {m for m, s in statuses.items() if s == "failed"}
    assert len(json.loads(cli("runs", "--json", "--since", "1d")[1])) == 2
    assert json.loads(cli("runs", "--json", "--since", "2099-01-01")[1]) == []


def test_config_file_and_flags(cli, assets, tmp_path):
    (tmp_path / "audit.toml").write_text(
        f'model = "{assets.mlp_onnx}"\ndata = "{assets.data_npz}"\nanalyses = ["performance"]\nseed = 7\n'
        '[analysis.performance]\nmin_accuracy = 0.99\n'
    )
    code, out, err = cli("run", "--json")
    assert code == 0, err
    run = Store().resolve_run(json.loads(out)["run_id"])
    assert run.seed == 7
    assert next(f for f in json.loads(out)["findings"] if f["check"] == "accuracy")["threshold"] == 0.99
    code, out, _ = cli("run", "--seed", "3", "--set", "performance.min_accuracy=0.5", "--json")
    run = Store().resolve_run(json.loads(out)["run_id"])
    assert run.seed == 3  # flags win over the file
    assert next(f for f in json.loads(out)["findings"] if f["check"] == "accuracy")["threshold"] == 0.5


class Interrupts(audit.Analysis):
    name = "test.zz_interrupts"
    title = "Simulates Ctrl-C"

    def run(self, ctx):
        yield audit.Metric("started", 1.0)
        raise KeyboardInterrupt


class InterruptPlugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Interrupts)


def test_ctrl_c_marks_the_run_interrupted_and_keeps_what_finished(cli, assets):
    from audit.plugins import get_plugin_manager

    get_plugin_manager().register(InterruptPlugin(), name="interrupts")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "-a", "test.zz_interrupts", "--json")
    assert code == 130
    document = json.loads(out)
    assert document["status"] == "interrupted"
    assert {a["name"]: a["status"] for a in document["analyses"]} == {"performance": "ok", "test.zz_interrupts": "interrupted"}
    assert any(f["check"] == "accuracy" for f in document["findings"])
