"""`audit sign` and `audit verify`: decisions bound to a digest of the run's records, and tamper evidence."""

import json
import sqlite3

import pytest


@pytest.fixture
def finished_run(cli, assets, tmp_path):
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance",
                         "--report", tmp_path / "r.html", "--report", tmp_path / "r.json", "--json")
    assert code in (0, 1), err
    return json.loads(out)


def _edit_finding(db, sql):
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(sql)
    connection.close()


def test_sign_then_verify_round_trips(finished_run, cli, tmp_path):
    run_id = finished_run["run_id"]
    code, out, err = cli("verify", tmp_path / "r.html")
    assert code == 0, out + err
    assert f"report of run {run_id}" in out and "unsigned" in out and "verified" in out

    code, out, err = cli("sign", run_id, "--name", "Ada Reviewer", "--role", "model risk", "--decision", "approve")
    assert code == 0, err
    assert "approve by Ada Reviewer" in out

    # A report written after the sign-off shows it, and verifies with it.
    code, _, err = cli("report", run_id, "--out", tmp_path / "signed.html")
    assert code == 0, err
    html = (tmp_path / "signed.html").read_text()
    assert "Ada Reviewer" in html and "approve" in html and "Unsigned" not in html
    code, out, _ = cli("verify", tmp_path / "signed.html", "--json")
    result = json.loads(out)
    assert code == 0 and result["problems"] == [] and result["signoffs"][0]["name"] == "Ada Reviewer"
    # The JSON report of the run carries the same digest the verifier recomputes.
    assert json.loads((tmp_path / "r.json").read_text())["records_digest"] == result["current_digest"]


def test_verify_catches_a_finding_edited_in_the_database(finished_run, cli, tmp_path):
    run_id = finished_run["run_id"]
    assert cli("sign", run_id, "--name", "A", "--role", "r", "--decision", "approve")[0] == 0
    _edit_finding(tmp_path / "audit.db", f"UPDATE finding SET value = value + 0.001 WHERE run_id = '{run_id}' AND \"check\" = 'accuracy'")
    code, out, _ = cli("verify", tmp_path / "r.html")
    assert code == 1
    assert "changed after this report was written" in out and "changed after the last sign-off" in out


def test_verify_catches_a_deleted_finding_and_an_edited_file(finished_run, cli, tmp_path):
    run_id = finished_run["run_id"]
    _edit_finding(tmp_path / "audit.db", f"DELETE FROM finding WHERE id = (SELECT max(id) FROM finding WHERE run_id = '{run_id}')")
    assert cli("verify", tmp_path / "r.json")[0] == 1
    edited = tmp_path / "edited.html"
    edited.write_text((tmp_path / "r.html").read_text().replace("Model audit report", "Model audit report (final)"))
    code, out, _ = cli("verify", edited)
    assert code == 1 and "matches no report written from this database" in out


def test_sign_off_chain_detects_an_edited_or_removed_decision(finished_run, cli, tmp_path):
    run_id = finished_run["run_id"]
    assert cli("sign", run_id, "--name", "A", "--role", "r", "--decision", "conditional", "--note", "retrain by Q3")[0] == 0
    assert cli("sign", run_id, "--name", "B", "--role", "r", "--decision", "approve")[0] == 0
    assert cli("verify", tmp_path / "r.html")[0] == 0
    _edit_finding(tmp_path / "audit.db", "UPDATE signoff SET decision = 'approve' WHERE name = 'A'")
    code, out, _ = cli("verify", tmp_path / "r.html")
    assert code == 1 and "was edited after it was recorded" in out
    _edit_finding(tmp_path / "audit.db", "DELETE FROM signoff WHERE name = 'A'")
    code, out, _ = cli("verify", tmp_path / "r.html")
    assert code == 1 and "does not follow the one before it" in out


def test_the_digest_is_a_function_of_the_records_only(finished_run, tmp_path):
    from audit.store import Store
    from audit.store.seal import record_chain, records_digest

    store = Store(str(tmp_path / "audit.db"), create=False)
    run = store.resolve_run(finished_run["run_id"])
    chain = record_chain(store, run)
    assert records_digest(store, run) == chain[-1][1] == records_digest(Store(str(tmp_path / "audit.db"), create=False), run)
    kinds = {what.split()[0] for what, _ in chain}
    assert {"run", "analysis_result", "finding", "metric", "artifact"} <= kinds
    assert len({link for _, link in chain}) == len(chain)


@pytest.mark.parametrize("args,message", [
    (["--decision", "maybe"], "maybe"),
    (["--decision", "reject"], "needs --note"),
    (["--decision", "approve", "--name", " "], "must not be empty"),
])
def test_bad_sign_off_is_one_error_line(finished_run, cli, tmp_path, args, message):
    base = {"--name": "A", "--role": "r"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    before = (tmp_path / "audit.db").read_bytes()
    code, _, err = cli("sign", finished_run["run_id"], *[x for kv in base.items() for x in kv])
    assert code == 2 and message in err and err.count("Error:") == 1 and "Traceback" not in err
    assert (tmp_path / "audit.db").read_bytes() == before


def test_verify_a_missing_file_is_exit_2(cli, tmp_path):
    code, _, err = cli("verify", tmp_path / "nope.html")
    assert code == 2 and "not found" in err


def test_verify_says_when_waivers_changed_after_the_report(finished_run, cli, tmp_path):
    """Waivers are not run records (the digest does not cover them), but they change the gate: verify says so."""
    run_id = finished_run["run_id"]
    code, out, err = cli("verify", tmp_path / "r.html")
    assert code == 0 and "note:" not in out, out + err
    code, out, err = cli("waive", run_id, "accuracy", "--reason", "accepted", "--author", "lee", "--force")
    assert code == 0, err
    code, out, err = cli("verify", tmp_path / "r.html")
    assert code == 0 and "verified" in out  # the records themselves are unchanged
    assert "note: waiver 1 (accuracy, by lee) was added after the report was written" in out
    notes = json.loads(cli("verify", tmp_path / "r.html", "--json")[1])["notes"]
    assert len(notes) == 1 and "the gate counts that check no more" in notes[0]
