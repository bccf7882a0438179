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


def _failing_run(cli, model, data="noisy.npz"):
    code, out, err = cli("run", model, "--data", data, "-a", "performance", "--json")
    assert code == 1, err
    return json.loads(out)["run_id"]


def test_a_waiver_follows_the_model_file_not_the_path_typed(cli, assets, tmp_path):
    import shutil

    rng = np.random.default_rng(0)
    np.savez("noisy.npz", x=assets.x, y=rng.integers(0, 2, len(assets.x)))
    shutil.copy(assets.mlp_onnx, tmp_path / "model.onnx")
    run_id = _failing_run(cli, "model.onnx")
    assert cli("waive", run_id, "accuracy", "--reason", "noisy labels")[0] == 0
    # The same file by another relative path keeps its waiver ...
    (tmp_path / "sub").mkdir()
    code, out, err = cli("run", "sub/../model.onnx", "--data", "noisy.npz", "-a", "performance", "--json")
    assert code == 0, err
    assert next(f for f in json.loads(out)["findings"] if f["check"] == "accuracy")["waived"] is True
    # ... and a different model written to the same path does not inherit it.
    from audit.testing import export_onnx, tiny_mlp

    export_onnx(tiny_mlp(n_features=4, n_classes=2, seed=7), tmp_path / "model.onnx", assets.x)
    code, out, _ = cli("run", "model.onnx", "--data", "noisy.npz", "-a", "performance", "--json")
    accuracy = next(f for f in json.loads(out)["findings"] if f["check"] == "accuracy")
    assert accuracy["passed"] is False and accuracy["waived"] is False and code == 1


def test_show_after_waiving_agrees_with_the_waived_gate(cli, assets):
    rng = np.random.default_rng(0)
    np.savez("noisy.npz", x=assets.x, y=rng.integers(0, 2, len(assets.x)))
    run_id = _failing_run(cli, assets.mlp_onnx)
    code, out, _ = cli("show", run_id)
    assert "status failed, exit code 1" in out
    for check in ("accuracy", "balanced_accuracy", "worst_class_recall"):
        assert cli("waive", run_id, check, "--reason", "noisy labels")[0] == 0
    code, out, _ = cli("show", run_id)
    last = out.strip().splitlines()[-1]
    assert "(0 at or above high)" in last and last.endswith("status ok, exit code 0"), last
    document = json.loads(cli("show", run_id, "--json")[1])
    assert document["status"] == "ok" and document["exit_code"] == 0


def test_waivers_recorded_by_path_before_the_digest_still_apply(cli, assets, tmp_path):
    """A database from before m004: its path-keyed waiver gets the digest of the run it came from."""
    import sqlite3

    from sqlmodel import create_engine

    from audit.store import Store
    from audit.store.migrations import MIGRATIONS, migrate

    rng = np.random.default_rng(0)
    np.savez("noisy.npz", x=assets.x, y=rng.integers(0, 2, len(assets.x)))
    run_id = _failing_run(cli, assets.mlp_onnx)
    sha = Store().resolve_run(run_id).model_sha256
    # Rebuild the database at the schema before m004, holding that run and a waiver keyed by path.
    old = tmp_path / "old.db"
    previous = [name for name, _ in MIGRATIONS][[name for name, _ in MIGRATIONS].index("m004_run_frameworks_and_waiver_digest") - 1]
    migrate(create_engine(f"sqlite:///{old}"), upto=previous)
    connection = sqlite3.connect(old)
    connection.execute(
        "INSERT INTO run (id, started_at, status, model_path, model_sha256, fail_on) VALUES (?, '2026-01-01 00:00:00', 'failed', ?, ?, 'high')",
        (run_id, str(assets.mlp_onnx), sha))
    connection.execute(
        "INSERT INTO waiver (created_at, model_path, \"check\", reason, source_run_id, active) VALUES ('2026-01-01 00:00:00', ?, 'accuracy', 'old', ?, 1)",
        (str(assets.mlp_onnx), run_id))
    connection.execute(
        "INSERT INTO waiver (created_at, model_path, \"check\", reason, source_run_id, active) VALUES ('2026-01-01 00:00:00', 'gone.onnx', 'accuracy', 'orphan', 'nosuchrun', 1)")
    connection.commit()
    connection.close()
    waivers = {w.reason: w for w in Store(str(old)).waivers()}
    assert waivers["old"].model_sha256 == sha  # migrated to the digest
    assert waivers["orphan"].model_sha256 == "" and waivers["orphan"].model_path == "gone.onnx"  # matched by path
    from audit.gate import waivers_for_model

    assert [w.reason for w in waivers_for_model(waivers.values(), sha, "elsewhere/model.onnx")] == ["old"]
    assert [w.reason for w in waivers_for_model(waivers.values(), "other", "gone.onnx")] == ["orphan"]


def test_waivers_are_listed_expire_and_are_revoked(cli, assets, tmp_path):
    from datetime import datetime, timedelta, timezone

    rng = np.random.default_rng(0)
    np.savez("noisy.npz", x=assets.x, y=rng.integers(0, 2, len(assets.x)))
    run_id = _failing_run(cli, assets.mlp_onnx)
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date()
    # A bad date and a past day are refused with one line, and nothing is recorded.
    for bad, said in (("31/12/2026", "YYYY-MM-DD"), ("2000-01-01", "that day is past")):
        code, out, err = cli("waive", run_id, "accuracy", "--reason", "r", "--expires", bad)
        assert code == 2 and said in err and "Traceback" not in err
    code, out, _ = cli("waivers")
    assert code == 0 and "No waivers" in out
    code, out, err = cli("waive", run_id, "accuracy", "--reason", "noisy labels", "--author", "ana", "--expires", str(tomorrow))
    assert code == 0 and f"until {tomorrow}" in out, err
    code, out, _ = cli("waivers")
    assert out.splitlines()[0].split()[:3] == ["ID", "STATE", "CHECK"]
    assert "active" in out and "ana" in out and str(tomorrow) in out and "noisy labels" in out and "1 active" in out
    [listed] = json.loads(cli("waivers", "--json")[1])
    code, out, _ = cli("run", assets.mlp_onnx, "--data", "noisy.npz", "-a", "performance", "--json")
    assert code == 0  # waived
    # Revoked: the check counts again, and the waiver stays listed with who revoked it.
    code, out, err = cli("unwaive", str(listed["id"]), "--by", "lead")
    assert code == 0 and "revoked by lead" in out, err
    assert cli("run", assets.mlp_onnx, "--data", "noisy.npz", "-a", "performance", "--json")[0] == 1
    assert cli("waivers")[1].startswith("No waivers")
    [revoked] = json.loads(cli("waivers", "--all", "--json")[1])
    assert revoked["state"] == "revoked" and revoked["revoked"].endswith("by lead")
    code, _, err = cli("unwaive", str(listed["id"]))
    assert code == 2 and "already revoked" in err
    code, _, err = cli("unwaive", "999")
    assert code == 2 and "no waiver 999" in err


def test_an_expired_waiver_stops_applying():
    from datetime import datetime

    from audit.gate import counted_failures, waiver_state, waivers_for_model

    class W:
        def __init__(self, expires_at, active=True):
            self.check, self.subject, self.analysis, self.model_sha256, self.model_path = "accuracy", None, None, "", ""
            self.expires_at, self.active = expires_at, active

    finding = {"check": "accuracy", "subject": None, "analysis": "performance", "severity": "high", "verdict": "failed"}
    last_day = W(datetime(2026, 12, 31))
    assert waiver_state(last_day, now=datetime(2026, 12, 31, 23, 59)) == "active"  # the last day is included
    assert waiver_state(last_day, now=datetime(2027, 1, 1, 0, 1)) == "expired"
    assert waiver_state(W(None, active=False)) == "revoked"
    in_force = waivers_for_model([last_day], "sha", "m.onnx", now=datetime(2027, 1, 1, 0, 1))
    assert in_force == [] and counted_failures([finding], "high", in_force) == [finding]
    assert counted_failures([finding], "high", waivers_for_model([last_day], "sha", "m.onnx", now=datetime(2026, 6, 1))) == []


def test_waiving_a_check_that_passes_is_refused_unless_forced(cli, assets):
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, err = cli("waive", run_id, "accuracy", "--reason", "pre-accept")
    assert code == 2 and err.count("\n") == 1 and err.startswith("Error: accuracy passed in run") and "--force" in err
    assert json.loads(cli("waivers", "--all", "--json")[1]) == []
    code, out, err = cli("waive", run_id, "accuracy", "--reason", "pre-accept", "--force")
    assert code == 0 and "0 failed finding(s)" in out, err
