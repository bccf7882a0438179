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


@pytest.mark.ray
def test_ray_run_equals_the_single_process_run(ray_session, cli):
    from audit.cli.running import demo_assets
    from audit.store import Store

    assets = demo_assets()
    analyses = ["-a", "bias.group_fairness", "-a", "robustness.corruptions", "-a", "robustness.adversarial",
                "-a", "robustness.blackbox_attack", "-a", "bias.counterfactual", "-a", "attribution.faithfulness", "-a", "attribution.sanity"]
    # Small shards, so the per-row work runs on the pool's two row workers under Ray, and one shard after another in the
    # single process: corruptions (2,000 rows: 7 shards), the Square attack (100 rows: 4 shards), PGD with a random start
    # (500 rows: 4 shards, each its own stream), the counterfactual variants (2,000 rows: 4 shards) and the explainer maps
    # (64 rows: 4 shards, SmoothGrad noise and RISE masks drawn per shard; the two attribution analyses share their maps in
    # one process and compute them each on its own under Ray).
    shards = ["--set", "robustness.corruptions.shard_rows=300", "--set", "robustness.blackbox_attack.shard_rows=28",
              "--set", "robustness.adversarial.shard_rows=128", "--set", "robustness.adversarial.random_start=true",
              "--set", "bias.counterfactual.shard_rows=500"]
    for name in ("attribution.faithfulness", "attribution.sanity"):
        shards += ["--set", f"{name}.shard_rows=16", "--set", f'{name}.explainers=["saliency", "smoothgrad", "occlusion", "rise"]',
                   "--set", f"{name}.rise_masks=50", "--set", f"{name}.smoothgrad_samples=4"]
    common = [assets / "credit.onnx", "--data", assets / "credit.npz", *analyses, *shards, "--seed", "7", "--fail-on", "never", "--json"]
    code, out, err = cli("run", *common)
    assert code == 0, err
    local = json.loads(out)["run_id"]
    code, out, err = cli("run", *common, "--executor", "ray")
    assert code == 0, err
    distributed = json.loads(out)["run_id"]
    store = Store()
    assert [r.status for r in store.results(distributed)] == [r.status for r in store.results(local)] == ["ok"] * 7
    # Bit for bit: every finding's value, interval and message, every metric.
    assert _findings(store, distributed) == _findings(store, local)
    assert _metrics(store, distributed) == _metrics(store, local)
    assert len(_findings(store, local)) > 10
    assert {f.analysis for f in store.findings(local)} >= {"robustness.adversarial", "bias.counterfactual", "attribution.faithfulness",
                                                           "attribution.sanity"}
    results = {r.analysis: r for r in store.results(distributed)}
    local_results = {r.analysis: r for r in store.results(local)}
    for name in ("robustness.corruptions", "robustness.blackbox_attack", "robustness.adversarial", "bias.counterfactual"):
        # The shards' passes, counted in the row workers, come back to the analysis.
        assert results[name].forward_rows == local_results[name].forward_rows > 0
    assert results["robustness.adversarial"].backward_rows == local_results["robustness.adversarial"].backward_rows > 0
    # In one process the second attribution analysis reuses the first's maps; under Ray each computes them, in its shards.
    attribution = ("attribution.faithfulness", "attribution.sanity")
    assert sum(results[n].backward_rows for n in attribution) > sum(local_results[n].backward_rows for n in attribution) > 0
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
    assert err.strip() == "Error: --executor ray needs Ray, which is not installed; run: pip install 'classifier-audit[ray]'"
    assert "Traceback" not in err


@pytest.mark.ray
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


def _dies_in_its_first_worker(model, rng, rows, *, marker):
    """A shard function that kills the process running it the first time it is called anywhere."""
    marker = Path(marker)
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return model.predict(rows) + rng.normal(size=(len(rows), 1))


@pytest.mark.ray
def test_a_row_worker_that_dies_is_restarted_and_its_shard_run_again(ray_session, assets, tmp_path):
    import functools

    import numpy as np

    from audit import models, sharding
    from audit.executor import RayRows
    from audit.runner import make_context

    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    options = models.LoadOptions(device="cpu")
    model = models.load(str(assets.mlp_onnx), options)
    x = np.asarray(assets.x, dtype=np.float32)
    ctx = make_context(model, type("Data", (), {"x": x})(), seed=3, analysis_name="test.rows")
    fn = functools.partial(_dies_in_its_first_worker, marker=str(tmp_path / "died"))
    pool = RayRows.start(str(assets.mlp_onnx), options, workers=2)
    try:
        with sharding.rows_on(pool):
            before = model.counters.forward_rows
            distributed = ctx.map_rows(fn, x, purpose="noise", shard_rows=30)  # 200 rows: 7 shards on 2 actors
            counted = model.counters.forward_rows - before
    finally:
        pool.close()
        ray_session.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (tmp_path / "died").exists()  # one actor really died mid-map
    local = ctx.map_rows(fn, x, purpose="noise", shard_rows=30)  # the same shards, here, one after another
    assert np.array_equal(distributed, local)  # bit for bit, the retried shard included
    assert counted == len(x)  # each shard's passes counted once: the dead attempt's never came back


@pytest.mark.ray
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("how", ["sigterm", "kill"])
def test_a_ray_run_whose_driver_stops_or_dies_is_interrupted_or_abandoned(tmp_path, assets, cli, how):
    """The driver holds the run: SIGTERM ends it as interrupted (exit 143), kill -9 leaves it abandoned.
    The slow analysis sleeps in a Ray worker, not in the driver."""
    import contextlib
    import signal
    import subprocess
    import time

    from test_signals import SCRIPT

    script = tmp_path / "slow_run.py"
    # A Ray worker has its own sys.argv: the class carries the path, pickled by value with it.
    script.write_text(SCRIPT.replace("class Second(audit.Analysis):\n", "class Second(audit.Analysis):\n    READY = sys.argv[1]\n")
                      .replace("pathlib.Path(sys.argv[1])", "pathlib.Path(self.READY)"))
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, str(script), str(ready), "run", str(assets.mlp_onnx), "--data", str(assets.data_npz),
         "-a", "t.first", "-a", "t.second", "-a", "t.third", "--executor", "ray"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never reached its second analysis"
            time.sleep(0.1)
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)
        else:
            process.kill()
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    code, listed, _ = cli("runs", "--json")
    [run] = json.loads(listed)
    if how == "sigterm":
        assert process.returncode == 143, err
        assert run["status"] == "interrupted"
        code, shown, _ = cli("show", run["run_id"])
        assert "t.first" in shown and "terminated (SIGTERM)" in shown
    else:
        assert run["status"] == "abandoned"
    # Ray's own processes (raylet, GCS, the worker asleep in t.second) notice a dead driver late on a
    # busy machine; this test's (its session's) are ended here, not left to the next test.
    for pid in subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


@pytest.mark.ray
def test_several_models_as_one_ray_job_each_its_own_run_equal_to_in_process(ray_session, cli, assets, tmp_path):
    from audit.store import Store

    manifest = tmp_path / "models.toml"
    manifest.write_text(f"""
[[run]]
model = "{assets.mlp_onnx}"
data = "{assets.data_npz}"
analyses = ["performance", "robustness.corruptions"]
set = ["robustness.corruptions.shard_rows=64"]

[[run]]
model = "{assets.cnn_onnx}"
data = "{assets.images_npz}"
analyses = ["performance"]
""")
    code, out, err = cli("run", "--manifest", manifest, "--json", "--fail-on", "never", "--seed", "3")
    assert code == 0, err
    local = [document["run_id"] for document in json.loads(out)]
    code, out, err = cli("run", "--manifest", manifest, "--json", "--fail-on", "never", "--seed", "3", "--executor", "ray")
    assert code == 0, err
    distributed = [document["run_id"] for document in json.loads(out)]
    store = Store()
    assert len(set(local + distributed)) == 4
    for here, there in zip(local, distributed):
        assert store.resolve_run(there).config["executor"] == "ray"
        assert store.resolve_run(there).model_path == store.resolve_run(here).model_path
        assert _findings(store, there) == _findings(store, here) and _findings(store, here)
        assert _metrics(store, there) == _metrics(store, here)


@pytest.mark.ray
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_a_ray_fan_out_marks_every_run_in_flight_interrupted(tmp_path, assets, cli):
    import contextlib
    import signal
    import subprocess
    import time

    from test_signals import SCRIPT

    script = tmp_path / "slow_run.py"
    script.write_text(SCRIPT.replace("class Second(audit.Analysis):\n", "class Second(audit.Analysis):\n    READY = sys.argv[1]\n")
                      .replace("pathlib.Path(sys.argv[1])", "pathlib.Path(self.READY)"))
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, str(script), str(ready), "run", str(assets.mlp_onnx), str(assets.mlp_pt), "--data", str(assets.data_npz),
         "-a", "t.first", "-a", "t.second", "--executor", "ray"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no run reached its second analysis"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for pid in subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True).stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    assert process.returncode == 143, err
    code, listed, _ = cli("runs", "--json")
    statuses = [r["status"] for r in json.loads(listed)]
    # The run in t.second is interrupted; the other, if its thread had already stored it, too (or, if it stored
    # it in the instant between the marking and the exit, abandoned): none is left "running".
    assert "interrupted" in statuses and set(statuses) <= {"interrupted", "abandoned"}, statuses
