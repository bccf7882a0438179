"""A plugin's faults stay its own: sys.exit and other BaseExceptions, and records with fields of the wrong type."""

import sqlite3
import sys

import numpy as np
import pytest

import audit
from audit.plugins import get_plugin_manager


def finding(**fields):
    return audit.Finding(**{"check": "c", "title": "C", "severity": "low", "passed": True, "value": 1.0, "threshold": 0.0, **fields})


class Exits(audit.Analysis):
    name, title, category = "fault.exits", "Exits", "performance"

    def run(self, ctx):
        yield finding(check="before_exit")
        sys.exit(0)


class RaisesBase(audit.Analysis):
    name, title, category = "fault.base", "Raises a BaseException", "performance"

    class Stop(BaseException):
        pass

    def run(self, ctx):
        raise self.Stop("custom base exception")


class SkipExits(audit.Analysis):
    name, title, category = "fault.skip_exits", "Exits while deciding to skip", "performance"

    def skip_reason(self, ctx):
        sys.exit(0)

    def run(self, ctx):
        return []


class DictSubject(audit.Analysis):
    name, title, category = "fault.dict_subject", "A dict subject", "performance"

    def run(self, ctx):
        yield finding(subject={"group": "a"})


class NumpyFields(audit.Analysis):
    name, title, category = "fault.numpy", "Numpy scalars everywhere", "performance"

    def run(self, ctx):
        record = finding(subject=np.int64(5), passed=np.bool_(True))
        record.value = np.float32(0.25)  # set after construction, past __post_init__
        yield record
        yield audit.Metric("rate", np.float64(0.5), group=np.int64(2), count=np.int64(7))


class BadCount(audit.Analysis):
    name, title, category = "fault.bad_count", "A fractional count", "performance"

    def run(self, ctx):
        metric = audit.Metric("rate", 0.5)
        metric.count = 2.5
        yield metric


class Fine(audit.Analysis):
    name, title, category = "fault.fine", "Works", "performance"

    def run(self, ctx):
        yield finding(check="fine")


class Plugin:
    @audit.hookimpl
    def register_analyses(self, register):
        for cls in (Exits, RaisesBase, SkipExits, DictSubject, NumpyFields, BadCount, Fine):
            register(cls)


@pytest.fixture
def faulty():
    get_plugin_manager().register(Plugin(), name="faulty")


def run_json(cli, assets, *analyses):
    import json

    args = ["run", assets.mlp_onnx, "--data", assets.data_npz, "--json"]
    for name in analyses:
        args += ["-a", name]
    code, out, err = cli(*args)
    return code, json.loads(out) if out.strip() else None, err


@pytest.mark.parametrize("name, fragment", [
    ("fault.exits", "run() called sys.exit(0)"),
    ("fault.base", "Stop: custom base exception"),
    ("fault.skip_exits", "skip_reason() raised SystemExit"),
    ("fault.dict_subject", "fault.dict_subject yielded Finding 'c': subject must be a string or a number, not dict"),
    ("fault.bad_count", "fault.bad_count yielded Metric 'rate': count must be a whole number or None, not float"),
])
def test_fault_is_that_analysis_error_and_the_run_goes_on(name, fragment, faulty, cli, assets):
    code, document, err = run_json(cli, assets, name, "fault.fine")
    assert code == 3, err
    statuses = {a["name"]: (a["status"], a["reason"]) for a in document["analyses"]}
    assert statuses[name][0] == "error" and fragment in statuses[name][1], statuses
    assert statuses["fault.fine"] == ("ok", None)
    assert any(f["check"] == "fine" for f in document["findings"])
    assert document["status"] == "error" and document["exit_code"] == 3


def test_numpy_fields_are_stored_as_plain_values(faulty, cli, assets, tmp_path):
    code, document, err = run_json(cli, assets, "fault.numpy")
    assert code == 0, err
    connection = sqlite3.connect(tmp_path / "audit.db")
    row = connection.execute("SELECT subject, typeof(subject), value, typeof(value), passed FROM finding").fetchone()
    assert row == ("5", "text", 0.25, "real", 1)
    row = connection.execute('SELECT "group", typeof("group"), count, typeof(count), value FROM metric').fetchone()
    assert row == ("2", "text", 7, "integer", 0.5)
