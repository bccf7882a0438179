"""Fields of the records an analysis yields, coerced to the types the store keeps, or refused naming the analysis."""

from __future__ import annotations

import numpy as np

from audit.analysis import VERDICTS, Figure, Finding, Metric


def _text(value, owner: str, field_name: str, *, optional: bool = False, numbers: bool = False):
    """A record's text field as a plain str: numpy strings and, where allowed, numbers become text; anything else is refused."""
    if value is None and optional:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return str(value)
    if numbers and isinstance(value, (bool, int, float)):
        return str(value)
    allowed = "a string or a number" if numbers else "a string"
    raise TypeError(f"{owner}: {field_name} must be {allowed}, not {type(value).__name__} ({str(value)[:60]!r})")


def _number(value, owner: str, field_name: str):
    import math

    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(())[()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {field_name} must be a number or None, not {type(value).__name__} ({str(value)[:60]!r})")
    value = float(value)
    return value if math.isfinite(value) else None


def _count(value, owner: str, field_name: str):
    if value is None:
        return None
    count = value.item() if isinstance(value, np.generic) else value
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"{owner}: {field_name} must be a whole number or None, not {type(count).__name__} ({str(count)[:60]!r})")
    return int(count)


def checked_record(record, analysis_name: str):
    """Coerce a record's fields to the stored types (numpy scalars to int/float/str) or refuse it, naming the analysis.

    Done after run() yields, not only in the record's constructor, because a
    plugin may set fields afterwards.
    """
    kind = type(record).__name__
    owner = f"{analysis_name} yielded a {kind}"
    if isinstance(record, Finding):
        record.check = _text(record.check, owner, "check")
        owner = f"{analysis_name} yielded Finding {record.check!r}"
        record.title = _text(record.title, owner, "title")
        record.message = _text(record.message, owner, "message")
        record.subject = _text(record.subject, owner, "subject", optional=True, numbers=True)
        if isinstance(record.passed, np.generic):
            record.passed = record.passed.item()
        if not isinstance(record.passed, bool):
            raise TypeError(f"{owner}: passed must be true or false, not {type(record.passed).__name__}")
        if record.verdict not in VERDICTS:
            raise TypeError(f"{owner}: verdict must be one of {', '.join(VERDICTS)}, not {record.verdict!r}")
        if record.passed != (record.verdict == "passed"):
            # Both are set at construction and agree; a later change to one of them cannot say which one is meant.
            raise TypeError(f"{owner}: passed={record.passed} contradicts verdict={record.verdict!r}; "
                            "change a finding's outcome by setting verdict (passed follows it) when you build it")
        record.value = _number(record.value, owner, "value")
        record.threshold = _number(record.threshold, owner, "threshold")
        record.lower = _number(record.lower, owner, "lower")
        record.upper = _number(record.upper, owner, "upper")
        record.level = _number(record.level, owner, "level")
        if record.level is not None and not 0.0 < record.level < 1.0:
            raise TypeError(f"{owner}: level must lie strictly between 0 and 1 (0.95 for a 95% interval), not {record.level}")
        if (record.lower is None) != (record.upper is None):
            raise TypeError(f"{owner}: give both ends of the interval (lower and upper) or neither")
        record.method = _text(record.method, owner, "method", optional=True)
        record.rows = _count(record.rows, owner, "rows")
        if not isinstance(record.details, dict):
            raise TypeError(f"{owner}: details must be a dict, not {type(record.details).__name__}")
        record.tags = frozenset(_text(tag, owner, "a tag") for tag in record.tags)
    elif isinstance(record, Metric):
        record.name = _text(record.name, owner, "name")
        owner = f"{analysis_name} yielded Metric {record.name!r}"
        record.subject = _text(record.subject, owner, "subject", optional=True, numbers=True)
        record.group = _text(record.group, owner, "group", optional=True, numbers=True)
        record.unit = _text(record.unit, owner, "unit", optional=True)
        record.value = _number(record.value, owner, "value")
        record.lower = _number(record.lower, owner, "lower")
        record.upper = _number(record.upper, owner, "upper")
        record.count = _count(record.count, owner, "count")
        if not isinstance(record.details, dict):
            raise TypeError(f"{owner}: details must be a dict, not {type(record.details).__name__}")
    elif isinstance(record, Figure):
        record.name = _text(record.name, owner, "name")
        record.title = _text(record.title, owner, "title")
        record.caption = _text(record.caption, owner, "caption")
        record.subject = _text(record.subject, owner, "subject", optional=True, numbers=True)
    return record
