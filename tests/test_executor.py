"""`--executor ray`: the analyses of a run as Ray tasks give the findings of a single-process run."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

import audit
from audit.errors import AuditError


class DiesOnce(audit.Analysis):
    """Kills its worker process the first time (as an out-of-memory kill would), works the second."""

    name = "test.dies_once"
    title = "Dies once"

    class Options(audit.Options):
        marker: str = ""

    def run(self, ctx):
        marker = Path(self.options.marker)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        yield audit.Finding(check="survived", title="survived", severity="low", passed=True, value=float(len(ctx.data)))


class DiesAlways(audit.Analysis):
    name = "test.dies_always"
    title = "Dies always"

    def run(self, ctx):
        os._exit(1)
        yield  # pragma: no cover


class Dying:
    @audit.hookimpl
    def register_analyses(self, register):
        register(DiesOnce)
        register(DiesAlways)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray with 2 worker slots, started once (Ray starts slowly) and stopped after these tests."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed; pip install '.[ray]'")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _findings(store, run_id):
    return [(f.analysis, f.check, f.subject, f.severity, f.passed, f.value, f.threshold, f.message) for f in store.findings(run_id)]


def _metrics(store, run_id):
    return [(m.analysis, m.name, m.subject, m.group, m.value, m.lower, m.upper, m.count) for m in store.metrics(run_id)]


def test_ray_run_equals_the_single_process_run(ray_session, cli):
    from audit.cli.running import demo_assets
    from audit.store import Store

    assets = demo_assets()
    analyses = ["-a", "bias.group_fairness", "-a", "robustness.corruptions", "-a", "robustness.adversarial"]
    common = [assets / "credit.onnx", "--data", assets / "credit.npz", *analyses, "--seed", "7", "--fail-on", "never", "--json"]
    code, out, err = cli("run", *common)
    assert code == 0, err
    local = json.loads(out)["run_id"]
    code, out, err = cli("run", *common, "--executor", "ray")
    assert code == 0, err
    distributed = json.loads(out)["run_id"]
    store = Store()
    assert [r.status for r in store.results(distributed)] == [r.status for r in store.results(local)]
    # Bit for bit: every finding's value, interval and message, every metric.
    assert _findings(store, distributed) == _findings(store, local)
    assert _metrics(store, distributed) == _metrics(store, local)
    assert len(_findings(store, local)) > 10
    results = {r.analysis: r for r in store.results(distributed)}
    assert results["robustness.adversarial"].backward_rows > 0  # counted in the worker, stored by the driver
    assert store.resolve_run(distributed).config["executor"] == "ray"


def test_unknown_executor_and_missing_ray_are_one_line_errors(cli, assets, monkeypatch):
    from audit.executor import check_executor

    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "--executor", "dask")
    assert code == 2 and err.strip() == "Error: --executor 'dask': choose one of local, ray"
    with pytest.raises(AuditError, match="--ray ADDRESS is for --executor ray"):
        check_executor("local", "ray://head:10001")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "--executor", "ray")
    assert code == 2
    assert err.strip() == "Error: --executor ray needs Ray, which is not installed; run: pip install 'audit[ray]'"
    assert "Traceback" not in err


def test_a_dead_worker_is_retried_and_one_that_keeps_dying_is_that_analysis_error(ray_session, cli, assets, tmp_path):
    from audit.plugins import get_plugin_manager
    from audit.store import Store

    # Workers cannot import this test module: ship the test analyses by value.
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "died"
    manager = get_plugin_manager()
    manager.register(Dying(), name="dying")
    try:
        code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "-a", "test.dies_once",
                             "-a", "test.dies_always", "--set", f"test.dies_once.marker={marker}",
                             "--executor", "ray", "--json", "--fail-on", "never")
    finally:
        manager.unregister(name="dying")
        ray_session.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert code == 3, err
    document = json.loads(out)  # Ray's messages about the dead workers went to stderr, not into the JSON
    statuses = {a["name"]: (a["status"], a["reason"]) for a in document["analyses"]}
    assert marker.exists()  # the first attempt really died
    assert statuses["test.dies_once"] == ("ok", None)
    assert statuses["performance"][0] == "ok"
    assert statuses["test.dies_always"][0] == "error"
    assert "the Ray task failed after its retries" in statuses["test.dies_always"][1]
    findings = {(f.analysis, f.check): f.value for f in Store().findings(document["run_id"])}
    assert findings[("test.dies_once", "survived")] == 200.0
