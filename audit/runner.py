"""One audit run: select analyses, share the clean pass, run each isolated, persist each at once."""

from __future__ import annotations

import difflib
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audit.analysis import Analysis, Context, Figure, Finding, Metric, Progress, iter_records
from audit.errors import AuditError

REQUIREMENTS = {
    "labels": ("the data has no labels (y)", lambda model, data: data.y is not None),
    "attributes": ("the data has no protected attributes", lambda model, data: bool(data.attributes)),
    "gradients": ("the model's runtime gives no input gradients (use a PyTorch model)", lambda model, data: "gradients" in model.capabilities),
    "activations": ("the model's runtime exposes no intermediate activations", lambda model, data: "activations" in model.capabilities),
    "torch": ("the analysis needs a PyTorch model", lambda model, data: "torch" in model.capabilities),
    "images": ("the data is not images", lambda model, data: data.modality == "image"),
    "tabular": ("the data is not tabular", lambda model, data: data.modality == "tabular"),
}


def analysis_seed(seed: int, name: str) -> int:
    """Each analysis gets its own stream, so its results do not depend on which others ran."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


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
    reason = unmet_requirement(cls, model, data)
    ctx = make_context(model, data, seed, cls.name, predictions, logits, progress_factory, shared)
    if reason is None:
        try:
            reason = analysis.skip_reason(ctx)
        except Exception as error:  # noqa: BLE001
            return AnalysisOutcome(cls.name, "error", f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    if reason is not None:
        return AnalysisOutcome(cls.name, "skipped", reason)
    start_counters = model.counters.snapshot()
    start = time.perf_counter()
    records = []
    status, reason, trace = "ok", None, None
    try:
        for record in iter_records(analysis.run(ctx)):
            if not isinstance(record, (Finding, Metric, Figure)):
                raise TypeError(f"run() yielded {type(record).__name__}; yield audit.Finding, audit.Metric or audit.Figure")
            if isinstance(record, Finding):
                record.tags = frozenset(record.tags) | frozenset(cls.tags)
            records.append(record)
    except KeyboardInterrupt:
        status, reason = "interrupted", "interrupted by the user (Ctrl-C)"
    except AuditError as error:
        status, reason = "error", str(error)
    except Exception as error:  # noqa: BLE001 - one analysis failing never loses the others
        status, reason, trace = "error", f"{type(error).__name__}: {error}", traceback.format_exc()
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
        raise RunInterrupted(outcome)
    return outcome


class RunInterrupted(Exception):
    def __init__(self, outcome: AnalysisOutcome):
        super().__init__("interrupted")
        self.outcome = outcome


ProgressFactory = Callable[..., Progress]


# -- a whole run ----------------------------------------------------------------

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ANALYSIS_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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


def counted_failures(findings, fail_on: str, waivers=()) -> list:
    """Failed findings at or above `fail_on` that no active waiver covers."""
    from audit.analysis import Severity

    if fail_on == "never":
        return []
    floor = Severity.parse(fail_on).rank

    def waived(finding):
        return any(
            w.check == finding.check
            and (w.subject is None or w.subject == finding.subject)
            and (w.analysis is None or w.analysis == finding.analysis)
            for w in waivers
        )

    return [f for f in findings if not f.passed and Severity.parse(f.severity).rank >= floor and not waived(f)]


def prepare(spec, plugin_manager=None, warn=None):
    """Everything that can be wrong with the input, checked before the database is touched."""
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
    from audit.executor import check_executor

    spec.executor = check_executor(getattr(spec, "executor", "local"), getattr(spec, "ray_address", None))
    model = models.load(spec.model, model_load_options(spec), plugin_manager=pm)
    dataset = data_module.load(spec.data, spec.data_options, seed=spec.seed)
    data_module.validate_against_model(dataset, model)
    if spec.executor == "ray":
        from audit.executor import init_ray

        init_ray(spec.ray_address)  # a cluster that cannot be reached is bad input: nothing stored yet
    return pm, registry, names, instances, model, dataset, db_location


def model_load_options(spec):
    """How the run loads its model: the same in this process and in every Ray worker."""
    from audit import models

    return models.LoadOptions(device=spec.device, batch_size=spec.batch_size, output=spec.model_output,
                              trust_model_code=spec.trust_model_code, threads=spec.threads, onnx_gradients=spec.model_gradients,
                              optimize=spec.model_optimize)


REPORT_FORMATS = {".html": "html", ".htm": "html", ".pdf": "pdf", ".json": "json", ".xml": "junit", ".md": "markdown"}


def check_report_path(report: str) -> str:
    import os
    from pathlib import Path

    path = Path(report)
    fmt = REPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AuditError(f"--report {report}: unknown format {path.suffix or '(no suffix)'}; use .html, .pdf, .json, .xml (JUnit) or .md")
    if path.is_dir():
        raise AuditError(f"--report {report} is a folder; give a file name such as {path / 'audit.html'}")
    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AuditError(f"--report {report}: cannot write there ({probe} is not writable); choose another path")
    return fmt


def run_audit(spec, plugin_manager=None, warn=None, progress_factory=Progress, on_analysis=None) -> RunOutcome:
    """Run an audit end to end and persist it; bad input raises AuditError before any write."""
    from audit.data import sha256_of
    from audit.report.figures import figure_to_artifact
    from audit.store import Store, hide_passwords
    from pathlib import Path

    from audit.allocator import tune_malloc

    tune_malloc()  # before the model and data allocate anything
    pm, registry, names, instances, model, dataset, db_location = prepare(spec, plugin_manager, warn)
    store = Store(db_location)
    run = store.create_run(
        model_path=str(spec.model),
        model_sha256=sha256_of(Path(spec.model)),
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
        template_dir=spec.template_dir,
    )
    status = "running"
    try:
        clean_start = model.counters.snapshot()
        predictions, logits = model.predict_both(dataset.x)
        clean = model.counters.since(clean_start)
        store.update_run(run.id, clean_forward_rows=clean.forward_rows, clean_seconds=clean.forward_seconds,
                         model_info=model.describe())
        shared: dict = {}  # one per run: analyses share work through ctx.shared
        remote = None
        if spec.executor == "ray":
            from audit.executor import RayAnalyses

            remote = RayAnalyses(spec, dataset, predictions, logits, {n: instances[n] for n in names}, model_load_options(spec))
        for position, name in enumerate(names):
            analysis = instances[name]
            entry = registry[name]
            interrupted = False
            try:
                if remote is not None:
                    outcome = remote.outcome(name)
                else:
                    outcome = execute(analysis, model, dataset, seed=int(spec.seed), predictions=predictions, logits=logits,
                                      progress_factory=progress_factory, shared=shared)
            except RunInterrupted as stop:
                outcome, interrupted = stop.outcome, True
            except KeyboardInterrupt:
                outcome, interrupted = AnalysisOutcome(name, "interrupted", "interrupted by the user (Ctrl-C)"), True
            _persist(store, run.id, position, entry, analysis, outcome, figure_to_artifact)
            if on_analysis is not None:
                on_analysis(outcome)
            if interrupted:
                raise KeyboardInterrupt
        results = store.results(run.id)
        waivers = store.waivers()
        failures = counted_failures(store.findings(run.id), spec.fail_on, [w for w in waivers if w.model_path in ("", str(spec.model))])
        if any(r.status == "error" for r in results):
            status, exit_code = "error", EXIT_ANALYSIS_ERROR
        elif failures:
            status, exit_code = "failed", EXIT_FAILED
        else:
            status, exit_code = "ok", EXIT_OK
    except KeyboardInterrupt:
        status, exit_code = "interrupted", EXIT_INTERRUPTED
    except BaseException:
        store.update_run(run.id, status="error", exit_code=EXIT_ANALYSIS_ERROR, finished_at=_now(), model_info=model.describe())
        raise
    store.update_run(run.id, status=status, exit_code=exit_code, finished_at=_now(), model_info=model.describe())
    return RunOutcome(run.id, status, exit_code, store)


def _persist(store, run_id, position, entry, analysis, outcome: AnalysisOutcome, figure_to_artifact) -> None:
    findings, metrics, artifacts = [], [], []
    notes = list(outcome.notes)
    for record in outcome.records:
        if isinstance(record, Finding):
            findings.append({
                "check": record.check, "subject": record.subject, "title": record.title,
                "severity": record.severity.value, "passed": record.passed, "value": _finite(record.value),
                "threshold": _finite(record.threshold), "message": record.message,
                "tags": sorted(record.tags), "details": _jsonable(record.details),
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
            "notes": notes, "tags": sorted(cls.tags),
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
