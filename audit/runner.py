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


def make_context(model, data, seed: int = 0, analysis_name: str = "", predictions=None, logits=None, progress_factory=Progress) -> Context:
    if predictions is None or logits is None:
        predictions, logits = model.predict_both(data.x)
    derived = analysis_seed(seed, analysis_name)
    return Context(
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
) -> AnalysisOutcome:
    """Run one analysis isolated: its exception becomes its error, never the run's."""
    cls = type(analysis)
    reason = unmet_requirement(cls, model, data)
    ctx = make_context(model, data, seed, cls.name, predictions, logits, progress_factory)
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
        records=records if status == "ok" else records,
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
