"""SIGTERM ends a run as Ctrl-C does; a run whose process died is shown as abandoned, with what never ran."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SCRIPT = '''
import pathlib, sys, time
import audit
from audit.plugins import get_plugin_manager

class First(audit.Analysis):
    name, title, category = "t.first", "First", "performance"
    def run(self, ctx):
        yield audit.Finding(check="done", title="Done", severity="low", passed=True, value=1.0, threshold=0.0, message="finished")

class Second(audit.Analysis):
    name, title, category = "t.second", "Second", "performance"
    def run(self, ctx):
        pathlib.Path(sys.argv[1]).write_text("ready")
        time.sleep(120)
        yield from ()

class Third(audit.Analysis):
    name, title, category = "t.third", "Third", "performance"
    def run(self, ctx):
        yield from ()

class Plugin:
    @audit.hookimpl
    def register_analyses(self, register):
        for cls in (First, Second, Third):
            register(cls)

get_plugin_manager().register(Plugin(), name="t")
from audit.cli import main
main(sys.argv[2:])
'''


def start_run(tmp_path, assets):
    script = tmp_path / "slow_run.py"
    script.write_text(SCRIPT)
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, str(script), str(ready), "run", str(assets.mlp_onnx), "--data", str(assets.data_npz),
         "-a", "t.first", "-a", "t.second", "-a", "t.third", "--report", str(tmp_path / "r.json")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached its second analysis"
        time.sleep(0.05)
    return process


def test_sigterm_marks_the_run_interrupted_and_keeps_what_finished(tmp_path, assets, cli):
    process = start_run(tmp_path, assets)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, (out, err)
    from audit.store import Store

    store = Store(os.environ["AUDIT_DB"], create=False)
    run = store.runs()[0]
    assert run.status == "interrupted" and run.exit_code == 143 and run.finished_at is not None
    results = {r.analysis: r for r in store.results(run.id)}
    assert results["t.first"].status == "ok" and len(store.findings(run.id)) == 1
    assert results["t.second"].status == "interrupted" and results["t.second"].reason == "terminated (SIGTERM)"
    document = json.loads((tmp_path / "r.json").read_text())
    statuses = {a["name"]: a["status"] for a in document["analyses"]}
    assert statuses == {"t.first": "ok", "t.second": "interrupted", "t.third": "not run"}


def test_killed_run_is_shown_as_abandoned_with_what_never_ran(tmp_path, assets, cli):
    process = start_run(tmp_path, assets)
    process.kill()
    process.communicate(timeout=60)
    code, out, err = cli("runs", "--json")
    assert code == 0, err
    [listed] = json.loads(out)
    assert listed["status"] == "abandoned"
    code, out, err = cli("show", listed["run_id"])
    assert "status abandoned" in out
    assert "t.second" in out and "t.third" in out and "never ran: the process running it died first" in out
    code, out, err = cli("report", listed["run_id"], "--out", tmp_path / "after.md")
    assert code == 0, err
    text = (tmp_path / "after.md").read_text()
    assert "status **abandoned**" in text and "- t.third: not run" in text and "- t.second: not run" in text
    code, out, err = cli("runs", "--status", "abandoned", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [listed["run_id"]]
    code, out, err = cli("runs", "--status", "running", "--json")
    assert json.loads(out) == []


def test_a_live_run_on_another_host_stays_running_until_silent(monkeypatch):
    from datetime import datetime, timedelta, timezone

    from audit.store.liveness import effective_status
    from audit.store.models import Run

    now = datetime.now(timezone.utc)
    run = Run(id="x", model_path="m", model_sha256="", status="running", pid=1, host="elsewhere", heartbeat_at=now - timedelta(hours=1))
    assert effective_status(run, now) == "running"
    run.heartbeat_at = now - timedelta(hours=25)
    assert effective_status(run, now) == "abandoned"
    run.status = "ok"
    assert effective_status(run, now) == "ok"
