"""The executive summary: the few findings that matter most, in plain words for a deployer."""

from __future__ import annotations

from typing import Any

from audit.analysis import Severity


def exceedance(finding: dict[str, Any]) -> float:
    value, threshold = finding.get("value"), finding.get("threshold")
    if value is None or threshold is None:
        return 0.0
    return abs(value - threshold) / max(abs(threshold), 1e-9)


def executive_summary(findings: list[dict[str, Any]], limit: int = 5, per_analysis: int = 2,
                      value_labels: dict[str, dict[str, str]] | None = None,
                      shown: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The most important failed checks: those the gate counts first, then highest severity, then furthest past the threshold.

    At most ``per_analysis`` come from one analysis, so one noisy analysis
    cannot crowd out the rest. Findings in ``shown`` (page 1's area lines) are
    left out: the summary adds to them rather than repeating them.
    """
    skip = {id(f) for f in shown or []}
    failed = [f for f in findings if f["verdict"] == "failed" and not f.get("waiver") and id(f) not in skip]
    failed.sort(key=lambda f: (not f.get("gating"), -Severity.rank_of(f["severity"]), -exceedance(f)))
    chosen, per = [], {}
    for finding in failed:
        if per.get(finding["analysis"], 0) >= per_analysis:
            continue
        per[finding["analysis"]] = per.get(finding["analysis"], 0) + 1
        # The plugin that owns the check says what it means (stored in details); the core knows no check ids.
        meaning = (finding.get("details") or {}).get("meaning") or \
            f"This {finding['severity']}-severity check failed; see the analysis section for what was measured."
        chosen.append({**finding, "meaning": meaning, "sentence": plain_sentence(finding, value_labels)})
        if len(chosen) == limit:
            break
    return chosen


# The areas page 1 has one line for, and the analysis categories each gathers.
AREAS = (
    ("performance", "Performance", ("performance",)),
    ("fairness", "Fairness", ("bias", "fairness")),
    ("robustness", "Robustness", ("robustness",)),
    ("explainability", "Explainability", ("attribution", "explainability")),
)


def _split_groups(text: str) -> list[str]:
    """"[19, 33), 0" -> ["[19, 33)", "0"]: a cell of an intersection, split at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(" and 1 or 0
        depth -= char in "])" and 1 or 0
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def relabel(text: str, subject: str | None, value_labels: dict[str, dict[str, str]] | None) -> str:
    """``text`` with the coded values of ``subject``'s attributes ("0", "1") replaced by their labels.

    Only whole tokens that stand as a group name (at the start or after "(", a space or a comma,
    and at the end or before ")", ",", ";" or a space, but not before "=") are replaced, and only for the
    attributes the subject names ("sex", "age x sex"), so numbers elsewhere are left alone.
    """
    import re

    if not text or not subject or not value_labels:
        return text
    labels: dict[str, str] = {}
    for attribute in subject.split(" x "):
        labels.update(value_labels.get(attribute.strip()) or {})
    for code in sorted(labels, key=len, reverse=True):
        if labels[code] != code:
            # Not before "=": "0 = identical, 1 = disjoint" defines a scale, it names no group.
            text = re.sub(rf"(?<![^( ,]){re.escape(code)}(?![^),; ])(?! ?=)", labels[code], text)
    return text


def level_percent(level: float | None) -> str:
    """An interval's level as a percentage, rounded down to 0.1: a family-corrected 0.9989 is "99.8%", never "100%"."""
    import math

    return f"{math.floor((level or 0.95) * 1000 + 1e-9) / 10:g}%"


def plain_sentence(finding: dict[str, Any], value_labels: dict[str, dict[str, str]] | None = None) -> str:
    """One finding as a sentence a reviewer reads: the plugin's own plain sentence, else its message, groups by label.

    A plugin may store ``details["plain"]``; the report adds the interval when the
    sentence does not already carry one.
    """
    from audit.report import format_number

    details = finding.get("details") or {}
    text = relabel(str(details.get("plain") or finding.get("message") or finding.get("title") or finding["check"]),
                   finding.get("subject"), value_labels)
    if finding.get("lower") is not None and finding.get("upper") is not None and "CI" not in text and "interval" not in text:
        level = level_percent(finding.get("level"))
        text += f" [{level} CI {format_number(finding['lower'])}, {format_number(finding['upper'])}]"
    return text


def near_exceedance(finding: dict[str, Any]) -> float:
    """How far past its threshold the near end of the finding's interval lies (the point estimate without one).

    Of two findings past the same threshold, the one whose whole interval is further past it is the
    clearer failure: a wide interval on a small intersection does not outrank a narrow one on a whole
    attribute just because its estimate is more extreme.
    """
    value, threshold = finding.get("value"), finding.get("threshold")
    lower, upper = finding.get("lower"), finding.get("upper")
    if value is None or threshold is None:
        return 0.0
    if lower is not None and upper is not None:
        value = lower if value >= threshold else upper
    return abs(value - threshold) / max(abs(threshold), 1e-9)


def _worst(findings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The area's headline: the gate's failures first, then severity; at equal rank a finding its plugin put
    in plain words (``details["plain"]``) and one on a whole attribute rather than an intersection, then the
    clearest failure (`near_exceedance`)."""
    ranked = sorted(findings, key=lambda f: (not f.get("gating"), -Severity.rank_of(f["severity"]),
                                             not (f.get("details") or {}).get("plain"),
                                             " x " in str(f.get("subject") or ""), -near_exceedance(f)))
    return ranked[0] if ranked else None


def area_lines(findings: list[dict[str, Any]], results: list[dict[str, Any]],
               value_labels: dict[str, dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """One line per area: its state under the gate and its worst finding as a sentence.

    State: "failed" when a finding the gate counts is in it; "concerns" when
    checks failed below the gate (or are waived); "inconclusive" when none failed but
    some could not be decided; "passed" when every check passed; "not assessed" when
    no analysis of the area produced a finding (skipped, or not requested).
    """
    categories = {r["analysis"]: r.get("category") for r in results}
    lines = []
    for key, title, members in AREAS:
        analyses = [r for r in results if r.get("category") in members]
        own = [f for f in findings if categories.get(f["analysis"]) in members]
        failed = [f for f in own if f["verdict"] == "failed"]
        gating = [f for f in failed if f.get("gating")]
        inconclusive = [f for f in own if f["verdict"] == "inconclusive"]
        if not own:
            state = "not assessed"
            skipped = [r for r in analyses if r["status"] != "ok"]
            # The reason's first clause: the hint after it ("declare them with ...") is in the analysis section.
            why = ("; ".join(f"{r['analysis']} {r['status']}: {(r.get('reason') or '').split(' (')[0]}".rstrip(": ") for r in skipped)
                   if skipped else "no analysis of this area was run")
            lines.append({"key": key, "title": title, "state": state, "sentence": why, "finding": None,
                          "counts": {"passed": 0, "failed": 0, "inconclusive": 0}, "gating": 0})
            continue
        if gating:
            state, worst = "failed", _worst(gating)
        elif failed:
            state, worst = "concerns", _worst([f for f in failed if not f.get("waiver")] or failed)
        elif inconclusive:
            state, worst = "inconclusive", _worst(inconclusive)
        else:
            state, worst = "passed", _worst(own)
        lines.append({
            "key": key, "title": title, "state": state, "finding": worst,
            "sentence": plain_sentence(worst, value_labels) if worst else "",
            "counts": {v: sum(1 for f in own if f["verdict"] == v) for v in ("passed", "failed", "inconclusive")},
            "gating": len(gating),
        })
    return lines
