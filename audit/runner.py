"""One audit run: select analyses, share the clean pass, run each isolated, persist each at once."""

from __future__ import annotations

import difflib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from audit.analysis import Analysis, Context, Figure, Finding, Metric, Progress, derive_seed, iter_records
from audit.errors import AuditError, Terminated
from audit.gate import EXIT_ANALYSIS_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, counted_failures, gate_status, waivers_for_model  # noqa: F401 - re-exported
from audit.record_fields import checked_record
from audit.report.formats import REPORT_FORMATS, check_report_path  # noqa: F401 - re-exported
from audit.signals import interrupt_reason, signals_deferred, sigterm_as_interrupt

REQUIREMENTS = {
    "labels": ("the data has no labels (y)", lambda model, data: data.y is not None),
    "attributes": ("the data has no protected attributes (declare them with --attribute NAME, attributes = [...] under [data], "
                   "or an `attributes` array in the .npz)", lambda model, data: bool(data.attributes)),
    "gradients": ("the model's runtime gives no input gradients (use a PyTorch model)", lambda model, data: "gradients" in model.capabilities),
    "activations": ("the model's runtime exposes no intermediate activations", lambda model, data: "activations" in model.capabilities),
    "torch": ("the analysis needs a PyTorch model", lambda model, data: "torch" in model.capabilities),
    "trees": ("the model is not a tree ensemble audit reads (an ONNX TreeEnsemble graph)", lambda model, data: "trees" in model.capabilities),
    "images": ("the data is not images", lambda model, data: data.modality == "image"),
    "tabular": ("the data is not tabular", lambda model, data: data.modality == "tabular"),
}


def analysis_seed(seed: int, name: str) -> int:
    """Each analysis gets its own stream, so its results do not depend on which others ran."""
    return derive_seed(seed, name)


def make_context(model, data, seed: int = 0, analysis_name: str = "", predictions=None, logits=None, progress_factory=Progress,
                 shared: dict | None = None) -> Context:
    if predictions is None or logits is None:
        predictions, logits = model.predict_both(data.x)
    derived = analysis_seed(seed, analysis_name)
    return Context(
        run_seed=int(seed),
        shared={} if shared is None else shared,
        model=model,
        data=data,
        predictions=predictions,
        logits=logits,
        rng=np.random.default_rng(derived),
        seed=derived,
        device=model.device,
        progress_factory=progress_factory,
    )


def unmet_requirement(cls: type[Analysis], model, data) -> str | None:
    for requirement in sorted(cls.requires):
        if requirement not in REQUIREMENTS:
            return f"unknown requirement {requirement!r} declared by the analysis"
        reason, check = REQUIREMENTS[requirement]
        if not check(model, data):
            if requirement in ("gradients", "torch") and getattr(model, "gradient_reason", None):
                return f"no input gradients for this {model.format} model: {model.gradient_reason}"
            return reason
    return None


def select_analyses(registry: dict, selectors: list[str] | None) -> list[str]:
    """Names of the analyses to run: all, or those named or in a named category."""
    if not selectors:
        return sorted(registry)
    categories = {r.cls.category for r in registry.values()}
    chosen: list[str] = []
    for selector in selectors:
        if selector in registry:
            matched = [selector]
        elif selector in categories:
            matched = sorted(n for n, r in registry.items() if r.cls.category == selector)
        else:
            matched = sorted(n for n in registry if n.startswith(selector + "."))
        if not matched:
            candidates = list(registry) + sorted(categories)
            close = difflib.get_close_matches(selector, candidates, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise AuditError(f"unknown analysis {selector!r}; {hint}see `audit analyses` for the list")
        chosen.extend(m for m in matched if m not in chosen)
    return chosen


def build_options(cls: type[Analysis], values: dict[str, Any]):
    """Validate options for one analysis; unknown keys name the valid ones."""
    import pydantic

    fields = cls.Options.model_fields
    unknown = [k for k in values if k not in fields]
    if unknown:
        valid = ", ".join(sorted(fields)) or "none"
        raise AuditError(f"unknown option {cls.name}.{unknown[0]}; valid options of {cls.name}: {valid}")
    try:
        return cls.Options(**values)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(p) for p in first["loc"])
        raise AuditError(f"bad option {cls.name}.{location}: {first['msg']} (got {first.get('input')!r})") from None


@dataclass
class AnalysisOutcome:
    name: str
    status: str  # ok | skipped | error | interrupted
    reason: str | None = None
    seconds: float = 0.0
    forward_rows: int = 0
    backward_rows: int = 0
    records: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    traceback: str | None = None


def execute(
    analysis: Analysis,
    model,
    data,
    *,
    seed: int,
    predictions,
    logits,
    progress_factory=Progress,
    shared: dict | None = None,
) -> AnalysisOutcome:
    """Run one analysis isolated: its exception becomes its error, never the run's."""
    cls = type(analysis)
    unmet = unmet_requirement(cls, model, data)
    ctx = make_context(model, data, seed, cls.name, predictions, logits, progress_factory, shared)
    not_run = _not_run_outcome(analysis, ctx, unmet)
    if not_run is not None:
        return not_run
    start_counters = model.counters.snapshot()
    start = time.perf_counter()
    records = []
    status, reason, trace, cause = _run_collecting(analysis, ctx, records)
    used = model.counters.since(start_counters)
    outcome = AnalysisOutcome(
        cls.name,
        status,
        reason,
        seconds=time.perf_counter() - start,
        forward_rows=used.forward_rows,
        backward_rows=used.backward_rows,
        records=records,
        notes=list(ctx.notes),
        traceback=trace,
    )
    if status == "interrupted":
        raise RunInterrupted(outcome, cause)
    return outcome


def _not_run_outcome(analysis: Analysis, ctx: Context, unmet: str | None) -> AnalysisOutcome | None:
    """Skipped (a requirement unmet, or the analysis's own skip_reason()), an error if skip_reason() raised, else None."""
    cls = type(analysis)
    reason = unmet
    if reason is None:
        try:
            reason = analysis.skip_reason(ctx)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - SystemExit from a plugin included
            return AnalysisOutcome(cls.name, "error", f"skip_reason() raised {type(error).__name__}: {error}", traceback=traceback.format_exc())
        if reason is not None and not isinstance(reason, str):
            reason = str(reason)
    if reason is not None:
        return AnalysisOutcome(cls.name, "skipped", reason)
    return None


def _run_collecting(analysis: Analysis, ctx: Context, records: list):
    """Run the analysis, appending its checked records to `records` as they come (an interruption keeps those so far).

    Returns (status, reason, traceback, cause): cause is the KeyboardInterrupt when interrupted, else None.
    """
    cls = type(analysis)
    status, reason, trace, cause = "ok", None, None, None
    try:
        for record in iter_records(analysis.run(ctx)):
            if not isinstance(record, (Finding, Metric, Figure)):
                raise TypeError(f"run() yielded {type(record).__name__}; yield audit.Finding, audit.Metric or audit.Figure")
            checked_record(record, cls.name)
            if isinstance(record, Finding):
                record.tags = frozenset(record.tags) | frozenset(cls.tags)
                if record.check in cls.meanings:
                    record.details.setdefault("meaning", cls.meanings[record.check])
            records.append(record)
    except KeyboardInterrupt as stop:
        status, reason, cause = "interrupted", interrupt_reason(stop), stop
    except AuditError as error:
        status, reason = "error", str(error)
    except SystemExit as error:
        # A plugin calling sys.exit() must not end the audit, least of all with exit 0 (a CI gate would pass).
        status, reason, trace = "error", f"run() called sys.exit({error.code!r})", traceback.format_exc()
    except BaseException as error:  # noqa: BLE001 - one analysis failing never loses the others, whatever it raises
        status, reason, trace = "error", f"{type(error).__name__}: {error}", traceback.format_exc()
    return status, reason, trace, cause


class RunInterrupted(Exception):
    def __init__(self, outcome: AnalysisOutcome, cause: BaseException):
        super().__init__("interrupted")
        self.outcome = outcome
        self.cause = cause


ProgressFactory = Callable[..., Progress]


# -- a whole run ----------------------------------------------------------------

@dataclass
class RunOutcome:
    run_id: str
    status: str
    exit_code: int
    store: Any
    reports: list[str] = field(default_factory=list)


def versions(registry: dict, names: list[str]) -> dict[str, Any]:
    import importlib.metadata
    import platform

    import audit

    def version_of(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    plugins = {}
    for name in names:
        entry = registry[name]
        plugins[entry.plugin] = {"distribution": entry.distribution, "version": entry.version}
    onnxruntime = version_of("onnxruntime-gpu") or version_of("onnxruntime")
    return {
        "audit": audit.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": version_of("torch"),
        "onnxruntime": onnxruntime,
        "onnx": version_of("onnx"),
        "numpy": version_of("numpy"),
        "plugins": plugins,
    }


def prepare(spec, plugin_manager=None, warn=None):
    """Everything that can be wrong with the input and the outputs, checked before the database is touched."""
    from pathlib import Path

    from audit import data as data_module
    from audit import models
    from audit.config import check_fail_on
    from audit.plugins import get_plugin_manager
    from audit.store import check_location

    spec.fail_on = check_fail_on(spec.fail_on)
    models.parse_device(spec.device)
    if spec.batch_size is not None and int(spec.batch_size) < 1:
        raise AuditError(f"--batch-size {spec.batch_size}: give a positive number")
    if spec.threads is not None and int(spec.threads) < 1:
        raise AuditError(f"--threads {spec.threads}: give a positive number of CPU threads")
    if spec.model is None:
        raise AuditError("no model given: audit run MODEL --data DATA")
    if spec.data is None:
        raise AuditError("no data given: pass --data PATH (an .npz, .csv, .parquet or image folder)")
    db_location = check_location(spec.db)
    pm = plugin_manager or get_plugin_manager(warn=warn)
    registry = pm.analyses(warn=warn)
    names = select_analyses(registry, spec.analyses)
    unknown = [name for name in spec.options if name not in registry]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(registry), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise AuditError(f"options given for unknown analysis {unknown[0]!r}{hint}")
    instances = {name: registry[name].cls(build_options(registry[name].cls, spec.options.get(name, {}))) for name in names}
    for report in spec.reports:
        check_report_path(report)
    if spec.template_dir is not None and not Path(spec.template_dir).is_dir():
        raise AuditError(f"--template-dir {spec.template_dir} is not a folder; give the folder that holds your report templates")
    check_database_writable(db_location)
    from audit.executor import check_executor

    spec.executor = check_executor(getattr(spec, "executor", "local"), getattr(spec, "ray_address", None))
    model = models.load(spec.model, model_load_options(spec), plugin_manager=pm)
    dataset = data_module.load(spec.data, spec.data_options, seed=spec.seed, model_features=getattr(model, "feature_names", None),
                               string_features=getattr(model, "string_features", None))
    data_module.validate_against_model(dataset, model)
    if len(dataset) < spec.min_rows:
        raise AuditError(
            f"{spec.data}: {len(dataset):,} row{'s' if len(dataset) != 1 else ''}, fewer than the {spec.min_rows} a check needs: with fewer, even a perfect "
            "score cannot show 90% accuracy with 95% confidence; audit more rows, or pass --min-rows "
            f"{len(dataset)} to accept checks on this few"
        )
    if spec.executor == "ray":
        from audit.executor import init_ray

        init_ray(spec.ray_address)  # a cluster that cannot be reached is bad input: nothing stored yet
    return Prepared(pm, registry, names, instances, model, dataset, db_location)


def model_load_options(spec):
    """How the run loads its model: the same in this process and in every Ray worker."""
    from audit import models

    return models.LoadOptions(device=spec.device, batch_size=spec.batch_size, output=spec.model_output,
                              trust_model_code=spec.trust_model_code, threads=spec.threads, onnx_gradients=spec.model_gradients,
                              optimize=spec.model_optimize, tokenizer=spec.model_tokenizer)


def check_database_writable(location: str) -> None:
    """A SQLite database must be writable and intact before the audit starts, not found broken after it ran."""
    import os
    import sqlite3

    from audit.store import _sqlite_path

    path = _sqlite_path(location)
    if path is None or not path.exists() or path.is_dir():
        return  # a server database, or a new file (check_location vetted its folder)
    companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    unwritable = [p for p in [path, *companions] if p.exists() and not os.access(p, os.W_OK)]
    if unwritable or not os.access(path.parent, os.W_OK):
        which = unwritable[0] if unwritable else path.parent
        raise AuditError(f"database {path} cannot be written ({which} is read-only); make it writable, or pass --db with another path")
    if path.stat().st_size == 0:
        return
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        problems = [str(error)]
    if problems != ["ok"]:
        raise AuditError(
            f"database {path} is corrupted (PRAGMA integrity_check: {problems[0][:120]}); "
            "restore it from a backup, or pass --db with a new file"
        )


class Prepared(NamedTuple):
    """What `prepare` checked and loaded, before the database is touched."""

    plugin_manager: Any
    registry: dict
    names: list[str]
    instances: dict[str, Analysis]
    model: Any
    dataset: Any
    db_location: str


def judged_frameworks(plugin_manager, warn=None) -> list[dict[str, Any]]:
    """The compliance frameworks, texts included, as stored with a run: the report reads them from there."""
    return [
        {"id": fw.id, "title": fw.title, "plugin": fw.plugin, "requirements": _jsonable(fw.requirements)}
        for fw in plugin_manager.frameworks(warn=warn).values()
    ]


def run_audit(spec, plugin_manager=None, warn=None, progress_factory=Progress, on_analysis=None, on_plan=None) -> RunOutcome:
    """Run an audit end to end and persist it; bad input raises AuditError before any write.

    ``on_plan`` gets the plan's printable lines (run order, passes, estimated seconds, budget reductions) before the first analysis.
    """
    from pathlib import Path

    from audit.allocator import tune_malloc
    from audit.data import sha256_of
    from audit.store import Store

    tune_malloc()  # before the model and data allocate anything
    pm, registry, names, instances, model, dataset, db_location = prepare(spec, plugin_manager, warn)
    frameworks = judged_frameworks(pm, warn)
    model_sha256 = sha256_of(Path(spec.model))
    # The clean pass comes before the database is opened: outputs that cannot be
    # audited (NaN, infinite) are bad input, refused with the database untouched.
    clean_start = model.counters.snapshot()
    predictions, logits = model.predict_both(dataset.x)
    clean = model.counters.since(clean_start)
    check_outputs(spec.model, dataset.x, predictions, logits)
    store = Store(db_location)
    names, instances, cost_plan = plan_run(spec, store, registry, names, instances, model, dataset, clean, model_sha256, predictions)
    if on_plan is not None:
        on_plan(cost_plan["lines"])
    with sigterm_as_interrupt():
        return _run_stored(spec, store, registry, names, instances, model, dataset, progress_factory, on_analysis,
                           predictions, logits, clean, frameworks, model_sha256, cost_plan)


def plan_run(spec, store, registry, names, instances, model, dataset, clean, model_sha256, predictions=None):
    """The run's plan: the model's speed, each analysis's estimated passes, the budget fitted, cheap analyses first.

    Returns (names in run order, the analyses with their budgeted options, the plan as stored with the run).
    """
    from audit import cost

    try:
        speed = cost.calibrate(model, dataset.x, store, model_sha256, spec.threads)
    except Exception as error:  # noqa: BLE001 - a model that cannot be timed is still audited, estimated from its clean pass
        per_row = clean.forward_seconds / max(1, clean.forward_rows)
        speed = cost.Speed(per_row, None, int(model.batch_size), int(model.gradient_batch_size), measured_at=f"clean pass ({type(error).__name__})")
    info = cost.plan_info(model, dataset, spec.data_options.sample, predictions)
    categories = {name: registry[name].cls.category for name in names}
    skipped = {name: reason for name in names if (reason := unmet_requirement(registry[name].cls, model, dataset)) is not None}
    budget = getattr(spec, "budget", None)
    if budget is None:
        entries = {name: cost.Planned(name, cost.plan_for(instances[name], info, skipped.get(name))) for name in names}
        order, fitted = cost.order_and_count(entries, categories, speed), True
    else:
        instances, entries, order, fitted = cost.fit_budget(budget, names, instances, spec.options,
                                                           lambda cls, values: cls(build_options(cls, values)), info, categories, speed, skipped)
    lines = cost.plan_lines(entries, order, speed, budget, fitted)
    plan = {
        "calibration": {**speed.as_dict(), "key": cost.calibration_key(model, spec.threads)},
        "budget_seconds": budget, "fitted": fitted,
        "estimated_seconds": sum(e.seconds for e in entries.values()),
        "analyses": {name: entries[name].as_dict() for name in order},
        "lines": lines,
    }
    return order, instances, plan


def check_outputs(model_path, x, predictions, logits) -> None:
    """Refuse non-finite model outputs on finite inputs: every check computed from them would be meaningless."""
    rows_finite_in = np.isfinite(x.reshape(len(x), -1)).all(axis=1) if np.issubdtype(x.dtype, np.floating) else np.ones(len(x), bool)
    rows_finite_out = np.isfinite(predictions).all(axis=1) & np.isfinite(logits).all(axis=1)
    bad = np.flatnonzero(rows_finite_in & ~rows_finite_out)
    if len(bad) or not rows_finite_out.any():
        count = len(bad) if len(bad) else len(x)
        first = int(bad[0]) if len(bad) else 0
        raise AuditError(
            f"{model_path}: the model gave NaN or infinite outputs for {count:,} of {len(x):,} rows (first: row {first}); "
            "such outputs cannot be audited: check the model's weights and its input scaling"
        )


def _run_stored(spec, store, registry, names, instances, model, dataset, progress_factory, on_analysis,
                predictions, logits, clean, frameworks, model_sha256, cost_plan=None) -> RunOutcome:
    from audit.store.artifacts import figure_to_artifact

    cost_plan = cost_plan or {}
    run = _create_run(spec, store, registry, names, model, dataset, clean, frameworks, model_sha256, cost_plan)
    status = "running"
    try:
        shared: dict = {}  # one per run: analyses share work through ctx.shared
        remote = None
        if spec.executor == "ray":
            from audit.executor import RayAnalyses

            remote = RayAnalyses(spec, dataset, predictions, logits, {n: instances[n] for n in names}, model_load_options(spec))
        for position, name in enumerate(names):
            analysis = instances[name]
            if hasattr(on_analysis, "starting"):  # a console that shows which analysis runs (audit.cli.progress)
                on_analysis.starting(name, position, len(names))
            outcome, stop = _analysis_outcome(spec, name, analysis, remote, model, dataset, predictions, logits,
                                              progress_factory, shared)
            with signals_deferred():
                _persist(store, run.id, position, registry[name], analysis, outcome, figure_to_artifact,
                         cost_plan.get("analyses", {}).get(name))
                store.update_run(run.id, heartbeat_at=_now())
            if on_analysis is not None:
                on_analysis(outcome)
            if stop is not None:
                raise stop
        status, exit_code = _gate(spec, store, run.id, model_sha256)
    except KeyboardInterrupt as stop:
        status, exit_code = "interrupted", EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    except BaseException:
        store.update_run(run.id, status="error", exit_code=EXIT_ANALYSIS_ERROR, finished_at=_now(), model_info=model.describe())
        raise
    with signals_deferred():
        store.update_run(run.id, status=status, exit_code=exit_code, finished_at=_now(), model_info=model.describe())
    return RunOutcome(run.id, status, exit_code, store)


def _create_run(spec, store, registry, names, model, dataset, clean, frameworks, model_sha256, cost_plan=None):
    """The stored run, before any analysis: its inputs, versions, planned analyses and the clean pass's cost."""
    import os

    from audit.store import hide_passwords
    from audit.store.liveness import this_host

    return store.create_run(
        model_path=str(spec.model),
        model_sha256=model_sha256,
        model_format=model.format,
        provider=model.provider,
        device=model.device,
        model_info=model.describe(),
        data_path=str(spec.data),
        data_sha256=dataset.sha256 or "",
        data_rows=len(dataset),
        data_info=dataset.describe(),
        seed=int(spec.seed),
        argv=[hide_passwords(arg) for arg in spec.argv],
        config=hide_passwords(_jsonable(spec.as_dict())),
        versions=versions(registry, names),
        fail_on=spec.fail_on,
        fail_on_inconclusive=bool(spec.fail_on_inconclusive),
        template_dir=spec.template_dir,
        frameworks=frameworks,
        pid=os.getpid(),
        host=this_host(),
        heartbeat_at=_now(),
        planned=list(names),
        clean_forward_rows=clean.forward_rows,
        clean_seconds=clean.forward_seconds,
        cost_plan=_jsonable(cost_plan) if cost_plan else None,
    )


def _analysis_outcome(spec, name, analysis, remote, model, dataset, predictions, logits, progress_factory, shared):
    """One analysis's outcome, here or from the Ray executor, and the interruption to re-raise once it is stored (or None)."""
    stop = None
    try:
        if remote is not None:
            outcome = remote.outcome(name)
        else:
            outcome = execute(analysis, model, dataset, seed=int(spec.seed), predictions=predictions, logits=logits,
                              progress_factory=progress_factory, shared=shared)
    except RunInterrupted as interrupted:
        outcome, stop = interrupted.outcome, interrupted.cause
    except KeyboardInterrupt as interrupted:
        outcome, stop = AnalysisOutcome(name, "interrupted", interrupt_reason(interrupted)), interrupted
    return outcome, stop


def _gate(spec, store, run_id, model_sha256) -> tuple[str, int]:
    """The finished run's status and exit code: its results, and its findings less the model's waivers against --fail-on."""
    waivers = waivers_for_model(store.waivers(), model_sha256, str(spec.model))
    failures = counted_failures(store.findings(run_id), spec.fail_on, waivers, inconclusive_fails=bool(spec.fail_on_inconclusive))
    return gate_status([r.status for r in store.results(run_id)], failures)


def _persist(store, run_id, position, entry, analysis, outcome: AnalysisOutcome, figure_to_artifact, plan=None) -> None:
    findings, metrics, artifacts = [], [], []
    notes = list(outcome.notes)
    if plan and plan.get("reduced"):
        changes = ", ".join(f"{option} {was} -> {now}" for option, (was, now) in plan["reduced"].items())
        notes.append(f"reduced to fit the run's budget ({changes}): fewer samples, so wider intervals and more inconclusive checks")
    for record in outcome.records:
        if isinstance(record, Finding):
            findings.append({
                "check": record.check, "subject": record.subject, "title": record.title,
                "severity": record.severity.value, "passed": record.passed, "value": _finite(record.value),
                "threshold": _finite(record.threshold), "message": record.message,
                "tags": sorted(record.tags), "details": _jsonable(record.details),
                "verdict": record.verdict, "lower": _finite(record.lower), "upper": _finite(record.upper),
                "level": _finite(record.level), "method": record.method, "rows": record.rows,
            })
        elif isinstance(record, Metric):
            metrics.append({
                "name": record.name, "subject": record.subject, "group": None if record.group is None else str(record.group),
                "value": _finite(record.value), "lower": _finite(record.lower), "upper": _finite(record.upper),
                "count": record.count, "unit": record.unit, "details": _jsonable(record.details),
            })
        elif isinstance(record, Figure):
            try:
                artifacts.append(figure_to_artifact(record))
            except Exception as error:  # noqa: BLE001 - a broken chart must not lose the findings
                notes.append(f"figure {record.name!r} could not be rendered: {type(error).__name__}: {error}")
    cls = type(analysis)
    store.save_result(
        run_id,
        {
            "position": position, "analysis": cls.name, "title": cls.title or cls.name, "category": cls.category,
            "plugin": entry.plugin, "plugin_version": entry.version,
            "options": _jsonable(analysis.options.model_dump()),
            "status": outcome.status, "reason": outcome.reason, "traceback": outcome.traceback,
            "seconds": outcome.seconds, "forward_rows": outcome.forward_rows, "backward_rows": outcome.backward_rows,
            "notes": notes, "tags": sorted(cls.tags), "plan": _jsonable(plan) if plan is not None else None,
        },
        findings, metrics, artifacts,
    )


def _finite(value):
    import math

    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value):
    """Plain JSON types only: numpy scalars and arrays, paths and sets become lists, numbers, strings."""
    import math
    from pathlib import PurePath

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _now():
    from audit.store.models import utcnow

    return utcnow()
