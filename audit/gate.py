"""The gate: which failed findings count against `--fail-on`, which waivers cover them, and the exit code.

The runner uses it to set a run's status and exit code; the report uses it to
show them, so the two can never disagree. It imports only the severity model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from audit.analysis import Severity

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ANALYSIS_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143

FAIL_ON_CHOICES = tuple(severity.value for severity in Severity) + ("never",)

# Statuses the gate decides; "error", "interrupted" and "running" are facts of the run that waivers cannot change.
GATED_STATUSES = ("ok", "failed")


def _field(record, name: str, default=None):
    """Read a field from a store row, a record object or a report's finding dict alike."""
    if isinstance(record, dict):
        return record.get(name, default)
    return getattr(record, name, default)


def waiver_covers_model(waiver, model_sha256: str, model_path: str) -> bool:
    """A waiver covers the model file with this digest, wherever it lies; `--all-models` ones cover every model.

    A waiver recorded before waivers carried the digest (``model_sha256`` empty)
    falls back to the model path it was recorded for.
    """
    waiver_sha = _field(waiver, "model_sha256") or ""
    waiver_path = _field(waiver, "model_path") or ""
    if waiver_sha == "" and waiver_path == "":
        return True
    if waiver_sha:
        return bool(model_sha256) and waiver_sha == model_sha256
    return waiver_path == model_path


def waivers_for_model(waivers: Iterable, model_sha256: str, model_path: str) -> list:
    return [w for w in waivers if waiver_covers_model(w, model_sha256, model_path)]


def waiver_covers_finding(waiver, finding) -> bool:
    """Same check; and the same subject and analysis where the waiver names them."""
    return (
        _field(waiver, "check") == _field(finding, "check")
        and (_field(waiver, "subject") is None or _field(waiver, "subject") == _field(finding, "subject"))
        and (_field(waiver, "analysis") is None or _field(waiver, "analysis") == _field(finding, "analysis"))
    )


def waiver_for(finding, waivers: Iterable):
    """The first waiver (of those already narrowed to the run's model) that covers ``finding``, or None."""
    return next((w for w in waivers if waiver_covers_finding(w, finding)), None)


def verdict_of(finding) -> str:
    """passed, failed or inconclusive; a record from before verdicts (no ``verdict``) says it by ``passed``."""
    verdict = _field(finding, "verdict")
    if verdict:
        return str(verdict)
    return "passed" if _field(finding, "passed") else "failed"


def counted_failures(findings: Iterable, fail_on: str, waivers: Iterable = (), inconclusive_fails: bool = False) -> list:
    """Failed findings at or above ``fail_on`` that no waiver covers (waivers already narrowed to the model).

    An inconclusive finding is no failure: the evidence does not show the check
    failing. With ``inconclusive_fails`` (`--fail-on-inconclusive`, for reviewers
    who want a model shown to be fine) it counts as one.
    """
    if fail_on == "never":
        return []
    floor = Severity.parse(fail_on).rank
    waivers = list(waivers)
    blocking = ("failed", "inconclusive") if inconclusive_fails else ("failed",)
    return [
        f for f in findings
        if verdict_of(f) in blocking and Severity.rank_of(_field(f, "severity")) >= floor and waiver_for(f, waivers) is None
    ]


def gate_status(analysis_statuses: Iterable[str], failures: list) -> tuple[str, int]:
    """(status, exit code) of a finished run: an errored analysis first, then a run that assessed nothing,
    then gating failures."""
    analysis_statuses = list(analysis_statuses)
    if any(status == "error" for status in analysis_statuses):
        return "error", EXIT_ANALYSIS_ERROR
    if analysis_statuses and all(status == "skipped" for status in analysis_statuses):
        # Nothing was assessed: not "ok" (a gate would pass an unaudited model), not 1 (nothing failed).
        return "skipped", EXIT_ANALYSIS_ERROR
    if failures:
        return "failed", EXIT_FAILED
    return "ok", EXIT_OK


def gated_run_status(recorded_status: str, recorded_exit_code: Any, analysis_statuses: Iterable[str], failures: list) -> tuple[str, Any]:
    """The status and exit code to show for a stored run, with today's waivers applied.

    Waivers recorded after a run change its gate; a run that errored, was
    interrupted or is still running keeps what was recorded.
    """
    if recorded_status not in GATED_STATUSES:
        return recorded_status, recorded_exit_code
    return gate_status(analysis_statuses, failures)
