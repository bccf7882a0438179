"""The executive summary: the few findings that matter most, in plain words for a deployer."""

from __future__ import annotations

from typing import Any

from audit.analysis import Severity


def exceedance(finding: dict[str, Any]) -> float:
    value, threshold = finding.get("value"), finding.get("threshold")
    if value is None or threshold is None:
        return 0.0
    return abs(value - threshold) / max(abs(threshold), 1e-9)


def executive_summary(findings: list[dict[str, Any]], limit: int = 5, per_analysis: int = 2) -> list[dict[str, Any]]:
    """The most important failed checks: highest severity first, then furthest past the threshold.

    At most ``per_analysis`` come from one analysis, so one noisy analysis
    cannot crowd out the rest.
    """
    failed = [f for f in findings if f["verdict"] == "failed" and not f.get("waiver")]
    failed.sort(key=lambda f: (-Severity.rank_of(f["severity"]), -exceedance(f)))
    chosen, per = [], {}
    for finding in failed:
        if per.get(finding["analysis"], 0) >= per_analysis:
            continue
        per[finding["analysis"]] = per.get(finding["analysis"], 0) + 1
        # The plugin that owns the check says what it means (stored in details); the core knows no check ids.
        meaning = (finding.get("details") or {}).get("meaning") or \
            f"This {finding['severity']}-severity check failed; see the analysis section for what was measured."
        chosen.append({**finding, "meaning": meaning})
        if len(chosen) == limit:
            break
    return chosen
