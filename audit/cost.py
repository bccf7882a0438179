"""The cost of an audit: each analysis's planned passes, the model's measured speed, the run order and a budget."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from audit.analysis import Analysis, Plan, PlanInfo
from audit.errors import AuditError

# `--quick`: a first look. Seconds of estimated analysis time, after loading and the clean pass.
QUICK_BUDGET = 30.0
NAMED_BUDGETS = {"quick": QUICK_BUDGET}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}

# Calibration: enough repeats for a stable per-row time, never much more than this many seconds.
CALIBRATION_SECONDS = 0.5
# The rows of one call when an analysis explains a row alone (Integrated Gradients' steps, SmoothGrad's samples, a
# row's occlusion patches): on a CPU such calls cost 1.5-3x per row what batches of hundreds do.
SMALL_BATCH = 16


def parse_duration(value) -> float:
    """Seconds from 90, 90s, 5m, 1.5h or a named budget (quick); anything else is a ValueError that says how to write it."""
    if isinstance(value, bool):
        raise ValueError("write a duration such as 90s, 5m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if text in NAMED_BUDGETS:
            return NAMED_BUDGETS[text]
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"write a duration such as 90s, 5m or 1h, or {', '.join(NAMED_BUDGETS)}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s")[0].lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a budget must be a positive duration")
    return seconds


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))  # rounded once, so 479.6 s is 8m00s, not 7m60s
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{seconds / 3600:.1f}h"


# -- the model's speed ----------------------------------------------------------

@dataclass
class Speed:
    """Seconds per row forward, and forward plus input backward, at the batch sizes the run uses."""

    forward: float
    backward: float | None  # None: the model gives no input gradients
    batch_size: int
    gradient_batch_size: int
    cached: bool = False
    measured_at: str = ""
    # Per row in calls of SMALL_BATCH rows, through the module gradients use: what a row explained alone costs.
    forward_small: float | None = None
    backward_small: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"forward_seconds_per_row": self.forward, "backward_seconds_per_row": self.backward,
                "batch_size": self.batch_size, "gradient_batch_size": self.gradient_batch_size,
                "forward_seconds_per_row_small": self.forward_small, "backward_seconds_per_row_small": self.backward_small,
                "small_batch": SMALL_BATCH, "cached": self.cached, "measured_at": self.measured_at}

    def seconds(self, plan: Plan, shared: tuple[int, int] = (0, 0)) -> float:
        forward = plan.forward_rows + shared[0]
        backward = plan.backward_rows + shared[1]
        per_backward = self.backward if self.backward is not None else 3 * self.forward
        small_forward, small_backward = plan.small_batches
        small_forward, small_backward = min(small_forward, forward), min(small_backward, backward)
        # Rows sent in small calls cost their small-batch rate; without one measured, the large-batch rate.
        extra = 0.0
        if small_backward and self.backward_small is not None:
            extra += small_backward * (self.backward_small - per_backward)
        if small_forward - small_backward > 0 and self.forward_small is not None:
            extra += (small_forward - small_backward) * (self.forward_small - self.forward)
        return max(0, forward - backward) * self.forward + backward * per_backward + max(0.0, extra) + plan.other_seconds


def calibration_key(model, threads) -> dict[str, Any]:
    """What the measured speed depends on besides the model's bytes."""
    from audit.store.liveness import this_host

    return {"device": str(model.device), "batch_size": int(model.batch_size), "gradient_batch_size": int(model.gradient_batch_size),
            "small_batch": SMALL_BATCH, "threads": threads, "host": this_host(), "provider": getattr(model, "provider", "")}


def _call_seconds(call, fewest: int, most: int) -> list[float]:
    """Seconds of ``most`` calls at the most, stopping once ``fewest`` were made and CALIBRATION_SECONDS spent."""
    times: list[float] = []
    for _ in range(most):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        if len(times) >= fewest and sum(times) > CALIBRATION_SECONDS:
            break
    return times


def _best_per_row(call, rows: int, warm=None) -> float:
    """Fastest seconds per row over 2 to 5 calls; ``warm`` runs first, untimed.

    At least two calls: the first at full batch size still pays for growing the allocator's
    pools (seen 2.5x the steady time for a ResNet's backward on the CPU).
    """
    if warm is not None:
        warm()
    return min(_call_seconds(call, 2, 5)) / rows


def _typical_per_row(call, rows: int) -> float:
    """Median seconds per row over 3 to 7 calls.

    Small calls are what an analysis makes by the hundred, each paying its own overhead:
    their typical time is what the plan needs, and the fastest of a few (as for full
    batches) took them as no slower per row than full batches in one run of two.
    """
    times = sorted(_call_seconds(call, 3, 7))
    return times[len(times) // 2] / rows


def measure_speed(model, x) -> Speed:
    """Time forward batches and forward+backward batches of real rows, at the batch sizes the analyses send them.

    The clean pass has already warmed the forward path; a two-row backward warms the other. Per-call
    overhead is spread over a full batch, as in the analyses' batched passes (the Square attack's
    shrinking batches are slower per row than this).
    """
    import numpy as np

    forward_rows = x[: max(1, min(len(x), int(model.batch_size)))]
    forward = _best_per_row(lambda: model.predict(forward_rows), len(forward_rows))
    backward = None
    if "gradients" in model.capabilities:
        import torch

        def step_on(rows):
            xb = torch.as_tensor(np.ascontiguousarray(rows), dtype=torch.float32, device=model.device)
            target = torch.zeros(len(rows), dtype=torch.long, device=model.device)

            def step():
                model.input_gradient(xb, target, output="log_probability")
                if str(model.device).startswith("cuda"):
                    torch.cuda.synchronize()

            return step

        batch = x[: max(1, min(len(x), int(model.gradient_batch_size)))]
        backward = _best_per_row(step_on(batch), len(batch), warm=step_on(x[:2]))
        small = x[: max(1, min(len(x), SMALL_BATCH))]
        backward_small = _typical_per_row(step_on(small), len(small))
        forward_small = _typical_per_row(_forward_through_module(model, small), len(small))
        return Speed(forward, backward, int(model.batch_size), int(model.gradient_batch_size),
                     forward_small=forward_small, backward_small=backward_small)
    return Speed(forward, backward, int(model.batch_size), int(model.gradient_batch_size))


def _forward_through_module(model, rows):
    """A forward call of ``rows`` through the module gradients use (not the frozen inference copy), as explainers make it."""
    import numpy as np
    import torch

    xb = torch.as_tensor(np.ascontiguousarray(rows), dtype=torch.float32, device=model.device)
    try:
        module = model.torch_module()
    except AuditError:  # gradients without a module of its own (none built in): its inference path
        module = None

    def call():
        with torch.no_grad():
            model.logits_of(module, xb) if module is not None else model.predict(rows)
        if str(model.device).startswith("cuda"):
            torch.cuda.synchronize()

    return call


def calibrate(model, x, store=None, model_sha256: str = "", threads=None) -> Speed:
    """The model's speed: from an earlier run of the same model bytes on the same device and host, else measured now."""
    key = calibration_key(model, threads)
    cached = _cached_speed(store, model_sha256, key) if store is not None and model_sha256 else None
    if cached is not None:
        return cached
    counters = model.counters.snapshot()
    speed = measure_speed(model, x)
    # The calibration's passes are the run's overhead, not any analysis's: put the counters back.
    model.counters.forward_rows, model.counters.backward_rows = counters.forward_rows, counters.backward_rows
    model.counters.forward_seconds, model.counters.backward_seconds = counters.forward_seconds, counters.backward_seconds
    from audit.store.models import utcnow

    speed.measured_at = str(utcnow())[:19]
    return speed


def _cached_speed(store, model_sha256: str, key: dict[str, Any]) -> Speed | None:
    from sqlmodel import select

    from audit.store.models import Run

    with store.session() as session:
        runs = session.exec(select(Run).where(Run.model_sha256 == model_sha256).order_by(Run.started_at.desc()).limit(20)).all()
        for run in runs:
            stored = (run.cost_plan or {}).get("calibration") or {}
            if stored.get("key") == key and stored.get("forward_seconds_per_row"):
                return Speed(stored["forward_seconds_per_row"], stored.get("backward_seconds_per_row"), key["batch_size"],
                             key["gradient_batch_size"], cached=True, measured_at=stored.get("measured_at", ""),
                             forward_small=stored.get("forward_seconds_per_row_small"),
                             backward_small=stored.get("backward_seconds_per_row_small"))
    return None


# -- plans ----------------------------------------------------------------------

def plan_info(model, dataset, sample: int | None = None, predictions=None) -> PlanInfo:
    """What the analyses plan from: the data's size and shape, the model's capabilities, and its clean accuracy when known."""
    import numpy as np

    accuracy = None
    if predictions is not None and len(predictions):
        # Without labels the attacks measure agreement with the clean predictions: every row starts correct.
        labels = None if dataset.y is None else np.asarray(dataset.y)
        if labels is None:
            accuracy = 1.0
        elif labels.shape == (len(predictions),) and np.asarray(predictions).ndim == 2:
            from audit.analysis import predicted_classes  # ties to the lowest class, as every analysis reads them

            accuracy = float(np.mean(predicted_classes(np.asarray(predictions)) == labels))
    try:
        n_classes = int(model.n_classes)
    except AuditError:  # known once the model has run; the run plans after its clean pass
        n_classes = 2
    return PlanInfo(
        rows=len(dataset), row_shape=tuple(int(d) for d in dataset.x.shape[1:]), modality=dataset.modality,
        n_classes=n_classes, capabilities=frozenset(model.capabilities),
        attributes=tuple(dataset.attributes or ()), feature_names=tuple(dataset.feature_names) if dataset.feature_names else None,
        sample=sample, accuracy=accuracy,
    )


def default_plan(analysis: Analysis, info: PlanInfo) -> Plan:
    """For an analysis that states no plan: ten passes over the data, backward too if it needs gradients."""
    passes = 10 * info.rows
    backward = passes if "gradients" in type(analysis).requires else 0
    return Plan(passes, backward, 1.0, ["no plan() stated: assumed ten passes over the data"])


def plan_for(analysis: Analysis, info: PlanInfo, skipped: str | None = None) -> Plan:
    """The analysis's own plan, else the default; nothing for one the run will skip (``skipped``: why)."""
    if skipped is not None:
        return Plan(notes=[f"skipped: {skipped}"])
    try:
        plan = analysis.plan(info)
    except Exception as error:  # noqa: BLE001 - a broken estimate must not stop the audit; the run itself reports real errors
        plan = default_plan(analysis, info)
        plan.notes.append(f"plan() raised {type(error).__name__}: {error}")
        return plan
    if plan is None:
        return default_plan(analysis, info)
    if not isinstance(plan, Plan):
        returned = type(plan).__name__
        plan = default_plan(analysis, info)
        plan.notes.append(f"plan() returned {returned}, not audit.Plan or None")
    return plan


@dataclass
class Planned:
    """One analysis in the run's plan: its estimate in run order (shared passes counted once) and what a budget reduced."""

    name: str
    plan: Plan
    seconds: float = 0.0
    forward_rows: int = 0
    backward_rows: int = 0
    reduced: dict[str, list] = field(default_factory=dict)  # option -> [from, to]
    fewest_seconds: float | None = None  # the plan's `at_least`, in seconds: None when its passes are fixed

    def as_dict(self) -> dict[str, Any]:
        return {"forward_rows": self.forward_rows, "backward_rows": self.backward_rows, "seconds": self.seconds,
                "fewest_seconds": self.fewest_seconds, "notes": list(self.plan.notes), "reduced": self.reduced}


def _stand_alone(plan: Plan) -> tuple[int, int]:
    return (plan.forward_rows + sum(f for f, _ in plan.shared.values()), plan.backward_rows + sum(b for _, b in plan.shared.values()))


def order_and_count(entries: dict[str, Planned], categories: dict[str, str], speed: Speed) -> list[str]:
    """Cheap first: performance, then by estimated seconds, attribution last; shared passes counted for the first that makes them."""
    def alone(name):
        forward, backward = _stand_alone(entries[name].plan)
        return speed.seconds(Plan(forward, backward, entries[name].plan.other_seconds, small_batches=entries[name].plan.small_batches))

    def rank(name):
        group = 0 if categories[name] == "performance" else 2 if categories[name] == "attribution" else 1
        return (group, alone(name), name)

    names = sorted(entries, key=rank)
    made: set[str] = set()
    for name in names:
        entry = entries[name]
        new = [key for key in entry.plan.shared if key not in made]
        made.update(new)
        extra = (sum(entry.plan.shared[k][0] for k in new), sum(entry.plan.shared[k][1] for k in new))
        entry.forward_rows = entry.plan.forward_rows + extra[0]
        entry.backward_rows = entry.plan.backward_rows + extra[1]
        entry.seconds = speed.seconds(entry.plan, extra)
        if entry.plan.at_least is not None:
            fewest = Plan(*entry.plan.at_least, other_seconds=entry.plan.other_seconds)
            entry.fewest_seconds = min(entry.seconds, speed.seconds(fewest, extra))
    return names


# -- the budget -----------------------------------------------------------------

def knob_values(cls: type[Analysis], given: dict[str, Any], stage: float) -> dict[str, list]:
    """Reduced options at ``stage``: knob i (in `budget_knobs` order) goes from its default at stage i to its minimum at i + 1.

    A knob the user set stays as set; a knob the options lack keeps its place in
    the order (analyses sharing work list the same knobs, so they reduce alike).
    """
    reduced = {}
    fields = cls.Options.model_fields
    for position, (knob, minimum) in enumerate(cls.budget_knobs.items()):
        if knob not in fields or knob in given:
            continue
        default = fields[knob].get_default(call_default_factory=True)
        if not isinstance(default, int) or isinstance(default, bool) or default <= minimum:
            continue
        share = min(1.0, max(0.0, stage - position))
        if share <= 0:
            continue
        value = max(int(minimum), int(round(default * (minimum / default) ** share)))
        if value < default:
            reduced[knob] = [default, value]
    return reduced


def max_stage(classes) -> int:
    return max([len(cls.budget_knobs) for cls in classes] or [0])


def fit_budget(budget: float, names: list[str], instances: dict, given: dict[str, dict], build, info: PlanInfo, categories, speed: Speed,
               skipped: dict[str, str] | None = None):
    """The analyses reduced just enough to fit ``budget`` seconds: (instances, entries, run order, fitted).

    Every analysis moves through its knobs together (one stage for the run), the
    smallest stage whose estimate fits is taken; at the last stage every knob is at
    its minimum and the plan may still exceed the budget (``fitted`` False).
    """
    classes = {name: type(instances[name]) for name in names}

    def attempt(stage):
        chosen, entries = {}, {}
        for name in names:
            reduced = knob_values(classes[name], given.get(name, {}), stage)
            analysis = build(classes[name], {**given.get(name, {}), **{k: v[1] for k, v in reduced.items()}}) if reduced else instances[name]
            chosen[name] = analysis
            entries[name] = Planned(name, plan_for(analysis, info, (skipped or {}).get(name)), reduced=reduced)
        order = order_and_count(entries, categories, speed)
        return chosen, entries, order, sum(e.seconds for e in entries.values())

    full = attempt(0.0)
    if full[3] <= budget:
        return (*full[:3], True)
    top = float(max_stage(classes.values()))
    floor = attempt(top)
    if floor[3] > budget:
        return (*floor[:3], False)
    low, high = 0.0, top
    for _ in range(30):
        middle = (low + high) / 2
        if attempt(middle)[3] <= budget:
            high = middle
        else:
            low = middle
    return (*attempt(high)[:3], True)


def plan_lines(entries: dict[str, Planned], order: list[str], speed: Speed, budget: float | None, fitted: bool) -> list[str]:
    """The plan as printed before the run: one line per analysis in run order, then the total and the budget."""
    per = f"{speed.forward * 1e6:.1f} us/row forward" + (f", {speed.backward * 1e6:.1f} us/row forward+backward" if speed.backward else "")
    lines = [f"Plan ({per}{', measured earlier' if speed.cached else ''}):"]
    for name in order:
        e = entries[name]
        reduced = "; reduced " + ", ".join(f"{k} {a}->{b}" for k, (a, b) in e.reduced.items()) if e.reduced else ""
        seconds = f"~{format_seconds(e.seconds):>7}" if e.fewest_seconds is None else f"{format_seconds(e.fewest_seconds)} to {format_seconds(e.seconds)}"
        most = "" if e.fewest_seconds is None else " at most"
        lines.append(f"  {name:<28} {e.forward_rows:>12,} fwd {e.backward_rows:>11,} bwd{most}  {seconds}{reduced}")
    total = sum(e.seconds for e in entries.values())
    fewest = sum(e.seconds if e.fewest_seconds is None else e.fewest_seconds for e in entries.values())
    tail = ""
    if budget is not None:
        tail = f" (budget {format_seconds(budget)}" + ("" if fitted else ": cannot be met with every knob at its minimum") + ")"
    span = f"~{format_seconds(total)}" if fewest >= total else (f"{format_seconds(fewest)} to {format_seconds(total)} "
                                                              "(attacks stop on a row once it is fooled)")
    lines.append(f"  estimated total {span}{tail}")
    return lines
