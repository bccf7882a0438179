"""`audit run` over several models: a list of model files, or a manifest; one run each, in turn or as one Ray job.

A manifest is a TOML file of ``[[run]]`` tables, each an audit.toml for one run
(its keys and types, checked the same way) plus ``set``, a list of
NAME.KEY=VALUE strings as for ``--set``; every entry names its ``model``.
Relative paths are relative to the manifest's folder. An entry's keys win over
the command line's flags and the config file, which give the defaults::

    [[run]]
    model = "candidates/a.onnx"
    data = "holdout.npz"

    [[run]]
    model = "candidates/b.onnx"
    data = { path = "holdout.csv", label = "approved", attributes = ["sex"] }
    analyses = ["bias"]
    set = ["bias.group_fairness.min_group_size=50"]

Every entry is checked (keys and types, files present, analyses and options
known, report paths writable) before the first run starts. The exit code is the
worst of the runs: 2 (a model or its data refused when loaded) over 3 (an
analysis errored, or nothing was assessed) over 1 (findings at or above
--fail-on) over 0; a stop (Ctrl-C, SIGTERM) ends them all with 130 or 143.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from pathlib import Path

from audit.errors import AuditError, Terminated

# Keys an entry may not set: the runs share one store, and unpickling a model is the command line's decision alone.
REFUSED_KEYS = {
    "db": "the runs of a manifest share one store: give --db (or AUDIT_DB) on the command line",
    "trust_model_code": "a manifest may not turn on unpickling: pass --trust-model-code on the command line",
}
# Worst first: a model refused when loaded, an analysis errored, failures at or above --fail-on, a pass;
# a stop (130 Ctrl-C, 143 SIGTERM) ranks above them all.
SEVERITY_OF_EXIT = {2: 3, 3: 2, 1: 1, 0: 0}
STOPPED = (130, 143)


def worst_exit_code(codes: list[int]) -> int:
    """The exit code of several runs: the worst by SEVERITY_OF_EXIT (0 for none)."""
    return max(codes, key=lambda code: SEVERITY_OF_EXIT.get(code, 4), default=0)


def read_manifest(path: str, base_spec) -> list:
    """(where, RunSpec) per ``[[run]]`` of the manifest at ``path``, each spec a copy of ``base_spec`` with the entry applied."""
    from audit.config import TOP_LEVEL_KEYS, _read_toml, _unknown, apply_config, apply_set

    manifest = Path(path)
    if not manifest.is_file():
        raise AuditError(f"--manifest {manifest}: no such file; give a TOML file of [[run]] tables (see `audit run --help`)")
    table = _read_toml(manifest)
    if set(table) - {"run"}:
        raise AuditError(f"{manifest}: unknown top-level key {sorted(set(table) - {'run'})[0]!r}; a manifest holds only [[run]] tables")
    entries = table.get("run")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise AuditError(f"{manifest}: no [[run]] tables; write one [[run]] table with a model = \"...\" per model")
    specs = []
    for number, entry in enumerate(entries, start=1):
        where = f"{manifest} [[run]] #{number}"
        for key, why in REFUSED_KEYS.items():
            if key in entry:
                raise AuditError(f"{where}: {key} is not allowed in a manifest entry; {why}")
        for key in entry:
            if key not in TOP_LEVEL_KEYS | {"set"}:
                raise _unknown(f"{where}: ", key, (TOP_LEVEL_KEYS - set(REFUSED_KEYS)) | {"set"})
        if "model" not in entry:
            raise AuditError(f"{where}: no model; write model = \"PATH\" in each [[run]] table")
        assignments = entry.get("set", [])
        if not isinstance(assignments, list) or not all(isinstance(a, str) for a in assignments):
            raise AuditError(f"{where}: set must be a list of \"NAME.KEY=VALUE\" strings, got {assignments!r}")
        spec = copy.deepcopy(base_spec)
        spec.data_options = copy.deepcopy(base_spec.data_options)
        apply_config(spec, {k: v for k, v in entry.items() if k != "set"}, manifest.parent, source=where, explicit=True)
        try:
            apply_set(spec, assignments)
        except AuditError as error:
            raise AuditError(f"{where}: {error}") from None
        specs.append((where, spec))
    return specs


def model_list_specs(base_spec, models: list[str]) -> list:
    """(where, RunSpec) per model file given on the command line, each with the same data and options."""
    if base_spec.reports:
        raise AuditError("--report writes one file, and several models would overwrite it: drop --report (each run's report goes to "
                         ".audit/reports/RUN_ID.html) or give a manifest with reports per [[run]]")
    specs = []
    for number, model in enumerate(models, start=1):
        spec = copy.deepcopy(base_spec)
        spec.model = model
        specs.append((f"model argument #{number}", spec))
    return specs


def check_specs(entries: list) -> None:
    """What can be wrong with any entry, found before the first run: files, analyses, options, outputs, executor."""
    from audit import models
    from audit.config import check_fail_on
    from audit.executor import check_executor
    from audit.plugins import get_plugin_manager
    from audit.report.formats import check_report_path
    from audit.runner import build_options, select_analyses
    from audit.store import check_location

    registry = get_plugin_manager().analyses()
    reports: dict[str, str] = {}
    for where, spec in entries:
        try:
            spec.fail_on = check_fail_on(spec.fail_on)
            models.parse_device(spec.device)
            if spec.data is None:
                raise AuditError("no data given: pass --data PATH, or data = \"...\" in its [[run]] table")
            for kind, path in (("model", spec.model), ("data", spec.data)):
                if not Path(path).exists():
                    raise AuditError(f"{kind} {path} does not exist")
            select_analyses(registry, spec.analyses)
            for name, values in spec.options.items():
                if name not in registry:
                    raise AuditError(f"options given for unknown analysis {name!r}")
                build_options(registry[name].cls, values)
            for report in spec.reports:
                check_report_path(report)
                if str(Path(report).resolve()) in reports:
                    raise AuditError(f"report {report} is also written by {reports[str(Path(report).resolve())]}; give each run its own")
                reports[str(Path(report).resolve())] = where
            spec.executor = check_executor(spec.executor, spec.ray_address)
            check_location(spec.db)
        except AuditError as error:
            raise AuditError(f"{where}: {error}") from None


def run_many(base_spec, models: list[str], manifest: str | None, as_json: bool) -> int:
    """Audit every model (a list, or a manifest's entries), each its own run in the store; return the worst exit code."""
    from audit.cli.running import print_summary

    if manifest is not None and models:
        raise AuditError("give the models either as arguments or in --manifest, not both")
    entries = read_manifest(manifest, base_spec) if manifest is not None else model_list_specs(base_spec, models)
    check_specs(entries)
    specs = [spec for _, spec in entries]
    documents: list = []
    codes: list[int] = []

    def show(spec, result) -> None:
        code, view, written, error = result
        codes.append(code)
        if as_json:
            from audit.report import run_document

            documents.append(run_document(view, written) if view is not None else
                             {"status": "rejected", "exit_code": code, "model": str(spec.model), "error": error})
        elif view is not None:
            print_summary(view, written, spec.config_file)
            print()

    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        if specs[0].executor == "ray":
            stopped = _run_on_ray(specs, show)
            if stopped is not None:
                codes.append(stopped)
        else:
            for spec in specs:
                if not as_json:
                    print(f"== {spec.model} on {spec.data}")
                show(spec, _one_run(spec, progress=not as_json))
                if codes[-1] in STOPPED:  # Ctrl-C or SIGTERM ended this run: the rest do not start
                    break
    if as_json:
        print(json.dumps(documents, indent=2, default=str))
    return worst_exit_code(codes)


def _one_run(spec, progress: bool):
    """(exit code, view, reports written, error): a model or data refused when loaded is that run's exit 2, not the others' end."""
    from audit.cli.running import _audit_and_report

    try:
        code, view, written = _audit_and_report(spec, progress, True, ())
    except AuditError as error:
        print(f"Error: {spec.model}: {error}", file=sys.stderr)
        return 2, None, [], str(error)
    return code, view, written, None


def _run_on_ray(specs: list, show) -> int | None:
    """The runs as one Ray job: up to one run per worker slot at once, each run's analyses (and their shards) as Ray tasks.

    Each run's driver side (load, clean pass, storing) runs in a thread of this
    process, the only writer; the results are shown in the runs' order. A stop
    (Ctrl-C, SIGTERM) is passed to the runs' threads, which cancel their Ray tasks
    and store their runs interrupted; a run that has not done so within 30 s is
    marked here. Its exit code (130, 143) is returned, as a single run returns
    it; None when every run finished.
    """
    import threading
    import time

    from audit.executor import clear_stop, cluster_workers, init_ray, request_stop, stop_requested
    from audit.signals import sigterm_as_interrupt

    clear_stop()
    init_ray(specs[0].ray_address)
    slots = threading.BoundedSemaphore(min(len(specs), cluster_workers(False)))
    results: list = [None] * len(specs)
    done = [threading.Event() for _ in specs]

    def one(index: int) -> None:
        with slots:
            try:
                if stop_requested() is not None:  # stopped before this run began: it never starts
                    raise stop_requested()
                results[index] = _one_run(specs[index], False)
            except BaseException as error:  # noqa: BLE001 - shown by the main thread, in order
                results[index] = error
            finally:
                done[index].set()

    threads = [threading.Thread(target=one, args=(i,), name=f"audit-run-{i}", daemon=True) for i in range(len(specs))]
    from audit.store.models import utcnow

    began = utcnow()
    try:
        with sigterm_as_interrupt():
            for thread in threads:
                thread.start()
            for index, spec in enumerate(specs):
                while not done[index].wait(0.5):  # a timed wait, so Ctrl-C and SIGTERM land at once
                    pass
                if isinstance(results[index], BaseException):
                    raise results[index]
                show(spec, results[index])
    except KeyboardInterrupt as stop:
        import ray

        # Each run waiting on Ray sees the stop within half a second, cancels its tasks and
        # stores itself interrupted; a run still loading its model gets there when it first waits.
        request_stop(stop)
        deadline = time.monotonic() + 30
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        finished = {result[1]["run"]["id"] for event, result in zip(done, results)
                    if event.is_set() and isinstance(result, tuple) and result[1] is not None}
        ray.shutdown()
        # A run whose thread did not get there in time is marked here: no run is left "running".
        code = _mark_in_flight_interrupted(specs[0].db, stop, began, finished)
        clear_stop()  # a later Ray run in this process (a library caller's) starts unstopped
        return code
    return None


def _mark_in_flight_interrupted(db, stop: BaseException, began, finished: set) -> int:
    """The runs this process left running are stored interrupted (their analyses so far kept), as one run's stop does;
    returns the stop's exit code."""
    import os

    from audit.gate import EXIT_INTERRUPTED, EXIT_TERMINATED
    from audit.store import Store
    from audit.store.liveness import this_host
    from audit.store.models import utcnow

    store = Store(db)
    code = EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    for run in store.runs(since=began):
        if run.pid == os.getpid() and run.host == this_host() and run.id not in finished:
            store.update_run(run.id, status="interrupted", exit_code=code, finished_at=utcnow())
    print(f"Error: {'terminated (SIGTERM)' if code == EXIT_TERMINATED else 'interrupted'}: the runs in flight are stored as interrupted",
          file=sys.stderr)
    return code
