"""The demo's runs side by side in worker processes: the same findings as one after another, in order, and a stop leaves no run running."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from audit.store import Store


def findings_of(documents):
    return [
        [(f["analysis"], f["check"], f["subject"], f["value"], f["lower"], f["upper"], f["verdict"]) for f in d["findings"]]
        for d in documents
    ]


def test_side_by_side_gives_the_findings_of_one_after_another_in_the_same_order(cli):
    args = ["demo", "--threads", "1", "-a", "performance", "-a", "robustness.calibration", "--no-pdf", "--json"]
    code, out, err = cli(*args, "--jobs", "1")
    assert code == 0, err
    in_turn = json.loads(out)
    code, out, err = cli(*args, "--jobs", "2")
    assert code == 0, err
    side_by_side = json.loads(out)
    assert [d["model"]["path"] for d in side_by_side] == [d["model"]["path"] for d in in_turn]
    assert findings_of(side_by_side) == findings_of(in_turn)
    assert sum(len(f) for f in findings_of(in_turn)) > 20
    # Every run is its own, stored once, by the worker that made it.
    assert len({d["run_id"] for d in in_turn + side_by_side}) == 10 and len(Store().runs()) == 10


def test_side_by_side_prints_each_run_under_its_heading_in_order(cli):
    code, out, err = cli("demo", "-a", "performance", "--no-pdf", "--jobs", "2")
    assert code == 0, err
    sections = out.split("== ")[1:]
    assert [section.splitlines()[0].rsplit(": ", 1)[1] for section in sections] == [
        "credit.onnx", "digits.pt", "digits.onnx", "text.onnx", "text.pt"]
    # Each section holds its own run's summary, not a neighbour's: the model named in the heading ran.
    for section in sections:
        model = section.splitlines()[0].rsplit(": ", 1)[1]
        assert f"/{model} on " in section and "  performance                      ok" in section, section
    # The workers' plan and progress lines come back on stderr, one block per run.
    assert err.count("[1/1] performance: ok") == 5


def test_a_bad_option_is_refused_before_any_worker_starts(cli):
    code, out, err = cli("demo", "--jobs", "-1")
    assert code == 2 and "--jobs" in err
    code, out, err = cli("demo", "--threads", "0", "--jobs", "2")
    assert code == 2 and "--threads" in err
    assert not os.path.exists(os.environ["AUDIT_DB"])  # nothing was stored: no run began


SLOW_DEMO = '''
import pathlib, sys, time
import audit
from audit.plugins import get_plugin_manager

class Slow(audit.Analysis):
    name, title, category = "t.slow", "Slow", "performance"
    def run(self, ctx):
        ready = pathlib.Path(sys.argv[1])
        ready.mkdir(exist_ok=True)
        (ready / str(ctx.seed)).write_text("ready")
        time.sleep(120)
        yield from ()

class Plugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Slow)

# The workers import this file as their main module: they register the plugin too, and must not start a demo.
get_plugin_manager().register(Plugin(), name="t")
if __name__ == "__main__":
    from audit.cli import main
    main(sys.argv[2:])
'''


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_stops_the_runs_in_flight_and_starts_no_other(tmp_path):
    script = tmp_path / "slow_demo.py"
    script.write_text(SLOW_DEMO)
    ready = tmp_path / "ready"
    process = subprocess.Popen([sys.executable, str(script), str(ready), "demo", "-a", "t.slow", "--no-pdf", "--jobs", "2"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = None
    deadline = time.monotonic() + 120
    while store is None or len([r for r in store.runs() if r.status == "running"]) < 2 or not ready.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the two runs never started"
        time.sleep(0.1)
        if store is None and os.path.exists(os.environ["AUDIT_DB"]):
            store = Store(os.environ["AUDIT_DB"], create=False)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, (out, err)
    assert "terminated (SIGTERM)" in err
    runs = store.runs()
    # The two runs in flight stored themselves interrupted; the three others never began.
    assert len(runs) == 2 and {r.status for r in runs} == {"interrupted"} and {r.exit_code for r in runs} == {143}
    assert all(r.finished_at is not None for r in runs)
