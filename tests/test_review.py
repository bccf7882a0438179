"""`audit compare` and `audit waive`: regressions between runs, and accepted risks in the gate."""

import json

import numpy as np


def test_waiver_changes_the_exit_code_and_shows_in_reports(cli, assets, tmp_path):
    rng = np.random.default_rng(0)
    np.savez("noisy.npz", x=assets.x, y=rng.integers(0, 2, len(assets.x)))
    code, out, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "-a", "performance", "--json")
    assert code == 1
    run_id = json.loads(out)["run_id"]
    code, out, err = cli("waive", run_id, "accuracy", "--reason", "labels are noisy <on purpose>", "--author", "reviewer")
    assert code == 0, err
    assert "accepted by reviewer" in out and "1 failed finding(s)" in out
    code, out, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "-a", "performance", "--json")
    document = json.loads(out)
    assert code == 0 and document["status"] == "ok"
    accuracy = next(f for f in document["findings"] if f["check"] == "accuracy")
    assert accuracy["passed"] is False and accuracy["waived"] is True
    html = (tmp_path / ".audit" / "reports" / f"{document['run_id']}.html").read_text()
    assert "Waived by reviewer: labels are noisy &lt;on purpose&gt;" in html
    # A waiver is for this model: another model's failure still counts.
    code, _, err = cli("waive", run_id, "no_such_check", "--reason", "x")
    assert code == 2 and "has no check 'no_such_check'" in err


def test_compare_two_models(cli, assets, tmp_path):
    # Model A on its own labels passes; model B (another seed) on the same labels regresses.
    from audit.testing import export_onnx, tiny_mlp

    export_onnx(tiny_mlp(n_features=4, n_classes=2, seed=5), tmp_path / "other.onnx", assets.x)
    code, out_a, _ = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    code, out_b, _ = cli("run", tmp_path / "other.onnx", "--data", assets.data_npz, "-a", "performance", "--json", "--fail-on", "never")
    a, b = json.loads(out_a), json.loads(out_b)
    code, out, _ = cli("compare", a["run_id"], b["run_id"], "--json", "--out", tmp_path / "diff.html")
    diff = json.loads(out)
    assert code == 1  # new failures
    by_check = {r["check"]: r for r in diff["checks"]}
    accuracy_a = next(f["value"] for f in a["findings"] if f["check"] == "accuracy")
    accuracy_b = next(f["value"] for f in b["findings"] if f["check"] == "accuracy")
    assert by_check["accuracy"]["delta"] == accuracy_b - accuracy_a
    assert by_check["accuracy"]["change"] == ("new failure" if accuracy_b < 0.7 else "still passing")
    assert diff["counts"].get("new failure", 0) == len(diff["new_failures"]) >= 1
    html = (tmp_path / "diff.html").read_text()
    assert "Audit comparison" in html and a["run_id"] in html and b["run_id"] in html
    code, out, _ = cli("compare", a["run_id"], a["run_id"])
    assert code == 0 and "3 still passing" in out
