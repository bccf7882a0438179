"""The Analysis base class, its options, the Context it runs in, and the records it yields."""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Union

import pydantic

if TYPE_CHECKING:  # heavy modules stay out of `audit --help`
    import numpy as np

    from audit.data import Dataset
    from audit.models import Model


class Severity(str, enum.Enum):
    """How bad a failure of a check would be; `--fail-on` compares against this order.

    The members are declared from least to most severe: that declaration is the
    one order every part of audit (gate, reports, summary, config) derives from.
    A finding carries the severity its failure would have whether it passed or
    failed (see ``Finding.against_limit`` and ``Finding.graded``).
    """

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 4 for critical: larger is worse."""
        return list(Severity).index(self)

    @classmethod
    def descending(cls) -> list["Severity"]:
        """Most severe first: the order reports list severities in."""
        return sorted(cls, key=lambda severity: severity.rank, reverse=True)

    @classmethod
    def rank_of(cls, value: Union[str, "Severity"]) -> int:
        """The rank of a stored severity string; an unknown one ranks with info."""
        try:
            return cls.parse(value).rank
        except ValueError:
            return 0

    @classmethod
    def parse(cls, value: Union[str, "Severity"]) -> "Severity":
        if isinstance(value, Severity):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {value!r}; use one of {valid}") from None


def derive_seed(seed: int, label: str) -> int:
    """A seed for ``label`` derived from ``seed``: stable across runs and processes, different per label."""
    return (int(seed) * 1_000_003 + zlib.crc32(label.encode())) % (2**63)


class Options(pydantic.BaseModel):
    """Base class for an analysis's options: typed, with defaults, unknown keys refused."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)


VERDICTS = ("passed", "failed", "inconclusive")


@dataclass
class Finding:
    """One check with a verdict: `check` is a stable id, `subject` what it is about.

    ``value`` is the estimate; ``lower``/``upper`` its interval at confidence
    ``level``, made by ``method``, from ``rows`` rows. ``verdict`` is one of
    passed, failed, inconclusive: passed or failed only where the evidence (the
    interval) lies wholly on one side of ``threshold``. Give either ``verdict``
    or ``passed``; ``passed`` is kept for plugins written before verdicts, and is
    true exactly when the verdict is "passed". An inconclusive finding never
    counts as a failure. Build judged findings with `Finding.judged` or
    `Finding.graded` rather than by hand.
    """

    check: str
    title: str
    severity: Severity
    passed: bool | None = None
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    subject: str | None = None
    tags: frozenset[str] = frozenset()
    details: dict[str, Any] = field(default_factory=dict)
    verdict: str | None = None
    lower: float | None = None
    upper: float | None = None
    level: float | None = None
    method: str | None = None
    rows: int | None = None

    def __post_init__(self):
        self.severity = Severity.parse(self.severity)
        self.verdict, self.passed = _settle_verdict(self.verdict, self.passed, self.check)
        self.value = _plain_number(self.value)
        self.threshold = _plain_number(self.threshold)
        self.lower = _plain_number(self.lower)
        self.upper = _plain_number(self.upper)
        self.level = _plain_number(self.level)
        self.rows = None if self.rows is None else int(self.rows)
        self.tags = frozenset(self.tags)

    @property
    def failed(self) -> bool:
        return self.verdict == "failed"

    @property
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"

    @classmethod
    def judged(cls, check: str, title: str, value, lower, upper, *, severity: "Severity | str", floor=None, ceiling=None,
               level: float = 0.95, method: str = "", rows: int | None = None, min_rows: int = 1, message: str = "",
               subject: str | None = None, details: dict[str, Any] | None = None) -> "Finding":
        """A value with its interval, judged against one limit by the interval, not by the point.

        Give exactly one of ``floor`` (higher is better: passes when ``lower``
        is at or above it) or ``ceiling`` (lower is better: passes when
        ``upper`` is at or below it). Fails when the interval lies wholly on the
        bad side; otherwise, or with fewer than ``min_rows`` rows, or without
        an interval, it is inconclusive and ``details["needs_rows"]`` estimates
        the rows that would settle it. The finding keeps ``severity`` whatever
        the verdict (the one severity rule).
        """
        if (floor is None) == (ceiling is None):
            raise ValueError("Finding.judged: give exactly one of floor= or ceiling=")
        from audit import stats

        limit = floor if ceiling is None else ceiling
        number, low, high = _plain_number(value), _plain_number(lower), _plain_number(upper)
        details = dict(details or {})
        enough = rows is None or rows >= min_rows
        if not enough:
            outcome = "inconclusive"
            details.setdefault("inconclusive_because", f"{rows} row(s); the check needs at least {min_rows}")
            details.setdefault("needs_rows", int(min_rows))
        elif low is None or high is None or number is None:
            outcome = "inconclusive"
            details.setdefault("inconclusive_because", "no interval could be computed")
        else:
            outcome = stats.verdict(low, high, limit, higher_is_better=ceiling is None)
            if outcome == "inconclusive":
                details.setdefault("inconclusive_because", "the interval straddles the threshold")
                needed = stats.rows_to_decide(number, low, high, limit, rows)
                if needed is not None:
                    details.setdefault("needs_rows", needed)
        return cls(check=check, title=title, severity=severity, verdict=outcome, value=number, threshold=limit,
                   lower=low, upper=high, level=level, method=method or None, rows=rows, message=message,
                   subject=subject, details=details)

    @classmethod
    def against_limit(cls, check: str, title: str, value, *, severity: "Severity | str", floor=None, ceiling=None,
                      message: str = "", subject: str | None = None, details: dict[str, Any] | None = None) -> "Finding":
        """A value judged against one limit by its point value, for figures that have no sampling error
        (a count of broken constraints, a determinism check).

        Give exactly one of the two. The finding keeps ``severity`` whether it
        passes or fails (the one severity rule). A missing or NaN value fails.
        For an estimate from a sample, use `Finding.judged` with its interval.
        """
        if (floor is None) == (ceiling is None):
            raise ValueError("Finding.against_limit: give exactly one of floor= or ceiling=")
        limit = floor if ceiling is None else ceiling
        number = _plain_number(value)
        passed = number is not None and (number >= limit if ceiling is None else number <= limit)
        return cls(check=check, title=title, severity=severity, passed=passed, value=number, threshold=limit,
                   message=message, subject=subject, details=dict(details or {}))

    @classmethod
    def graded(cls, check: str, title: str, value, *, medium, high, by=None, lower=None, upper=None, level: float = 0.95,
               method: str = "", rows: int | None = None, min_rows: int = 1, message: str = "",
               subject: str | None = None, details: dict[str, Any] | None = None) -> "Finding":
        """A value where larger is worse, graded: above ``high`` fails high, above ``medium`` fails medium.

        With an interval (``lower``/``upper``, on the scale of ``by`` when given)
        the evidence decides: failed when the interval lies wholly above
        ``medium`` (high severity when it also lies wholly above ``high``),
        passed when it lies at or below ``medium``, inconclusive otherwise or
        with fewer than ``min_rows`` rows. Without an interval the point value
        decides (for figures with no sampling error). A passed or inconclusive
        finding carries severity medium, the lowest its failure would have (the
        one severity rule). ``threshold`` is ``medium``. ``by`` grades another
        number than the one shown (a signed shift graded by its size). A
        missing or NaN value fails, graded medium, unless an interval is given.
        """
        number = _plain_number(value if by is None else by)
        low, high_end = _plain_number(lower), _plain_number(upper)
        if low is None and high_end is None and lower is None and upper is None and rows is None:
            if number is not None and number > high:
                severity, passed = Severity.HIGH, False
            elif number is not None and number > medium:
                severity, passed = Severity.MEDIUM, False
            else:  # NaN compares False above: an unknown value is no pass
                severity, passed = Severity.MEDIUM, number is not None and number == number
            return cls(check=check, title=title, severity=severity, passed=passed, value=value, threshold=medium,
                       message=message, subject=subject, details=dict(details or {}))
        finding = cls.judged(check, title, number, low, high_end, severity=Severity.MEDIUM, ceiling=medium, level=level,
                             method=method, rows=rows, min_rows=min_rows, message=message, subject=subject,
                             details=details)
        finding.value = _plain_number(value)
        if finding.failed and low is not None and low > high:
            finding.severity = Severity.HIGH
        return finding


def _settle_verdict(verdict, passed, check):
    """One verdict from ``verdict`` and/or the older ``passed`` flag; they must agree when both are given."""
    if verdict is None:
        if passed is None:
            raise ValueError(f"Finding {check!r}: give verdict= (passed, failed or inconclusive) or passed=")
        if hasattr(passed, "item"):
            passed = passed.item()
        return ("passed" if passed else "failed"), passed
    verdict = str(verdict).lower()
    if verdict not in VERDICTS:
        raise ValueError(f"Finding {check!r}: verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    if passed is not None and bool(passed) != (verdict == "passed"):
        raise ValueError(f"Finding {check!r}: passed={passed!r} contradicts verdict={verdict!r}")
    return verdict, verdict == "passed"


@dataclass
class Metric:
    """A named value, optionally for one group, with an optional confidence interval."""

    name: str
    value: float | None
    subject: str | None = None
    group: str | None = None
    lower: float | None = None
    upper: float | None = None
    count: int | None = None
    unit: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.value = _plain_number(self.value)
        self.lower = _plain_number(self.lower)
        self.upper = _plain_number(self.upper)
        self.count = None if self.count is None else int(self.count)


@dataclass
class Figure:
    """A chart or image for the report: a matplotlib figure, or an (H, W[, C]) array."""

    name: str
    title: str
    figure: Any
    caption: str = ""
    subject: str | None = None


Record = Union[Finding, Metric, Figure]


def _plain_number(value):
    """Store plain floats: numpy scalars and 0-d arrays do not survive JSON or SQLite."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"expected a number or None, got {value!r}") from None


class Progress:
    """A progress handle; the runner swaps in one that draws a bar on stderr."""

    def __init__(self, total: int | None = None, description: str = ""):
        self.total = total
        self.description = description
        self.completed = 0

    def advance(self, amount: int = 1) -> None:
        self.completed += amount

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@dataclass
class Context:
    """What an analysis sees: the model, the data, the shared clean predictions, a seeded rng.

    ``predictions`` are class probabilities (N, C) from the one clean forward
    pass of the run; ``logits`` come from the same pass (for a model that
    outputs probabilities they are log-probabilities). ``seed`` and ``rng``
    are this analysis's own; ``run_seed`` is the run's, for work that several
    analyses share through ``shared``, a dict all analyses of one run see.
    Whatever goes in ``shared`` must be exactly what an analysis would compute
    itself, so results never depend on which analyses ran before.
    """

    model: "Model"
    data: "Dataset"
    predictions: "np.ndarray"
    logits: "np.ndarray"
    rng: "np.random.Generator"
    seed: int = 0
    device: str = "cpu"
    progress_factory: Callable[..., Progress] = Progress
    notes: list[str] = field(default_factory=list)
    run_seed: int = 0
    shared: dict = field(default_factory=dict)

    @property
    def predicted(self) -> "np.ndarray":
        """Predicted class per row; ties go to the lowest class index (see `predicted_classes`)."""
        return predicted_classes(self.predictions)

    @property
    def n_classes(self) -> int:
        return int(self.predictions.shape[1])

    def progress(self, total: int | None = None, description: str = "") -> Progress:
        """A progress handle: ``with ctx.progress(n, "steps") as p: p.advance()``."""
        return self.progress_factory(total=total, description=description)

    def note(self, text: str) -> None:
        """Record a limitation or caveat; the report shows it with the analysis."""
        self.notes.append(str(text))

    @property
    def class_names(self) -> list[str]:
        """The data's class names when it names every class the model outputs, else "0", "1", ..."""
        names = self.data.class_names
        if names and len(names) >= self.n_classes:
            return [str(name) for name in names]
        return [str(i) for i in range(self.n_classes)]

    def seed_for(self, purpose: str) -> int:
        """A seed for one purpose, derived from the run's seed: every analysis of the run gets the same one.

        Use it for choices several analyses must agree on (the rows they
        explain, say); ``seed``/``rng`` are this analysis's own stream.
        """
        return derive_seed(self.run_seed, purpose)

    def rng_for(self, purpose: str) -> "np.random.Generator":
        """A fresh generator seeded with ``seed_for(purpose)``."""
        import numpy as np

        return np.random.default_rng(self.seed_for(purpose))

    def sample_rows(self, max_rows: int | None, *, rng: "np.random.Generator | None" = None, note: str | None = None) -> "np.ndarray | None":
        """Sorted indices of a seeded random subset of ``max_rows`` rows, or None when the data has no more.

        Draws from ``rng`` (default: this analysis's ``rng``). ``note``, if
        given, is recorded (``{n}`` and ``{max_rows}`` are filled in) so the
        report says the analysis saw a sample.
        """
        from audit.toolkit import subsample

        n = len(self.data)
        index = subsample(n, max_rows, self.rng if rng is None else rng)
        if index is not None and note:
            self.note(note.format(n=n, max_rows=max_rows))
        return index

    def map_rows(self, fn: Callable, *arrays, purpose: str, shard_rows: int | None = None, seed: int | None = None):
        """``fn(model, rng, *shard)`` over row shards of ``arrays``, the results (an array or a tuple) concatenated in row order.

        Each shard's ``rng`` is seeded from this analysis's seed, ``purpose`` and the
        shard's index, so results depend on ``shard_rows`` but not on where the shards
        run: in this process one after another, or, under ``--executor ray``, on a pool
        of workers that each hold the model. ``seed`` replaces this analysis's seed:
        ``seed_for(...)`` gives work that several analyses share the same draws in each.
        ``fn`` must pickle without the Context (a module-level function or a
        ``functools.partial``). See `audit.sharding`.
        """
        from audit import sharding

        return sharding.map_rows(self, fn, arrays, purpose, sharding.SHARD_ROWS if shard_rows is None else shard_rows, seed)

    def torch_generator(self):
        """A torch.Generator on the model's device, seeded from this analysis's seed."""
        import torch

        generator = torch.Generator(device=self.model.device)
        generator.manual_seed(int(self.seed))
        return generator


class Analysis:
    """Base class of every analysis; subclass it, set the class attributes, write run().

    ``requires`` may name: ``labels``, ``attributes``, ``gradients``,
    ``activations``, ``images``, ``torch``. An analysis whose requirements the
    model or data cannot meet is recorded as skipped with the reason.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    category: ClassVar[str] = "other"
    requires: ClassVar[frozenset[str] | set[str]] = frozenset()
    tags: ClassVar[frozenset[str] | set[str]] = frozenset()
    # check id -> what a failure means for whoever deploys the model, in plain
    # words; stored as the finding's details["meaning"] (unless the finding
    # sets its own) and shown in the report's summary.
    meanings: ClassVar[dict[str, str]] = {}

    class Options(Options):
        pass

    def __init__(self, options: "Options | dict | None" = None, **kwargs):
        if options is None or isinstance(options, dict):
            options = self.Options(**{**(options or {}), **kwargs})
        self.options = options

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def skip_reason(self, ctx: Context) -> str | None:
        """Return why this analysis cannot run on ``ctx``, or None; called after `requires`."""
        return None

    def run(self, ctx: Context) -> Iterable[Record]:
        raise NotImplementedError(f"{type(self).__name__}.run is not implemented")

    # The cost contract (see `Plan`): options a budget may scale down, in the
    # order it reduces them, each mapped to the smallest value it may take.
    budget_knobs: ClassVar[dict[str, int]] = {}

    def plan(self, info: "PlanInfo") -> "Plan | None":
        """Estimate the model passes ``run`` will make on data like ``info``; None: the runner assumes a conservative default."""
        return None


TIE_TOLERANCE = 1e-5


def predicted_classes(scores, tolerance: float = TIE_TOLERANCE):
    """The predicted class of each row of probabilities (or logits): the lowest class index whose score is
    within ``tolerance`` of the row's best.

    Plain argmax breaks a tie by rounding noise: a forest scoring a row 0.5/0.5 gives 0.50000006/0.49999997
    with one thread and the reverse with two, so verdicts would depend on the thread count. The tolerance is
    scaled by the best score's size when that exceeds 1 (logits).
    """
    import numpy as np

    scores = np.asarray(scores)
    best = scores.max(axis=1, keepdims=True)
    near = scores >= best - tolerance * np.maximum(1.0, np.abs(best))
    return near.argmax(axis=1)


def option_fields(options_cls: type[Options]) -> list[dict[str, Any]]:
    """Describe an Options class for `audit analyses`: name, type, default, description."""
    fields = []
    for name, info in options_cls.model_fields.items():
        annotation = info.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        fields.append(
            {
                "name": name,
                "type": type_name,
                "default": default,
                "required": info.is_required(),
                "description": info.description or "",
            }
        )
    return fields


def iter_records(result: Iterable[Record] | None) -> Iterator[Record]:
    """Accept run() written as a generator, or returning a list, or returning None."""
    if result is None:
        return iter(())
    return iter(result)


@dataclass
class PlanInfo:
    """What an analysis's `plan` sees: the data's size and shape and what the model offers; no model passes."""

    rows: int
    row_shape: tuple
    modality: str
    n_classes: int
    capabilities: frozenset = frozenset()
    attributes: tuple = ()  # protected attribute names
    feature_names: tuple | None = None
    sample: int | None = None  # the run's --sample, when given
    accuracy: float | None = None  # the clean pass's accuracy (1.0 without labels), when the run has made it


@dataclass
class Plan:
    """An analysis's estimated cost: rows it sends forward (gradient rows included) and, of those, backward.

    ``other_seconds`` is work outside model passes (bootstraps, probes);
    ``shared`` names passes another analysis of the run may already have made
    (key -> (forward_rows, backward_rows)): the run counts each key once.
    ``at_least`` marks a plan whose passes depend on the model's answers: the
    plan shows the range from it to the forward and backward rows.
    """

    forward_rows: int = 0
    backward_rows: int = 0
    other_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    shared: dict[str, tuple[int, int]] = field(default_factory=dict)
    # When the passes depend on the model's answers (an attack leaves a row once it is fooled):
    # (forward_rows, backward_rows) at the fewest; forward_rows and backward_rows are then the most.
    at_least: tuple[int, int] | None = None
    # Of forward_rows and backward_rows, those sent in calls of a few rows (a row explained alone): timed at the
    # model's small-batch speed, which on a CPU is well below its speed on full batches.
    small_batches: tuple[int, int] = (0, 0)


__all__ = [
    "Analysis",
    "Context",
    "Figure",
    "Finding",
    "Metric",
    "Options",
    "Plan",
    "PlanInfo",
    "Progress",
    "Record",
    "Severity",
    "VERDICTS",
    "predicted_classes",
]
