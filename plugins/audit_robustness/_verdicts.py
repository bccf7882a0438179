"""Verdicts of the robustness analyses: paired accuracy drops, robust/clean ratios, and families of checks.

A family is a set of checks of the same hypothesis over several subjects (every
corruption's accuracy drop, every attack radius's robust accuracy); it is decided with
`audit.stats.decide_family`, so the chance of a false failure anywhere in it stays at
about 1 - level, and the finding says how many comparisons it was corrected for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import audit
from audit import stats

DROP_METHOD = "tango paired score"
RATIO_METHOD = "wilson on the clean-correct rows"


def drop_interval(clean_correct: np.ndarray, correct: np.ndarray):
    """(drop, interval(level)) of clean accuracy minus accuracy on the same rows, paired (Tango's score interval)."""
    clean_correct, correct = np.asarray(clean_correct, bool), np.asarray(correct, bool)
    lost = int(np.sum(clean_correct & ~correct))  # right before, wrong after
    gained = int(np.sum(~clean_correct & correct))
    rows = len(correct)

    def interval(level: float):
        found = stats.paired_proportion_difference(lost, gained, rows, level)
        return found.lower, found.upper

    return (lost - gained) / rows if rows else float("nan"), interval, {"lost": lost, "gained": gained}


def ratio_interval(robust: int, clean_correct: int):
    """interval(level) of robust / clean accuracy on the same rows: a robust row is a clean-correct row the attack did
    not break, so the ratio is a binomial proportion over the clean-correct rows (Wilson)."""
    return lambda level: stats.wilson(int(robust), int(clean_correct), level)


@dataclass
class Judged:
    """One member's verdict within its family, ready to become a finding."""

    verdict: str
    lower: float
    upper: float
    level: float
    details: dict


def decide(members: list[stats.FamilyMember], estimates, rows, level: float, correction: str, min_rows: int) -> list[Judged]:
    """Each member's verdict, corrected over the family, with what would settle an inconclusive one."""
    decisions = stats.decide_family(members, level=level, correction=correction)
    judged = []
    for member, decision, estimate, n in zip(members, decisions, estimates, rows):
        details = {"comparisons": len(members), "correction": correction}
        if decision.verdict == "inconclusive":
            if not member.enough_rows:
                details["inconclusive_because"] = f"{n} row(s); the check needs at least {min_rows}"
                details["needs_rows"] = int(min_rows)
            else:
                details["inconclusive_because"] = "the interval straddles the threshold"
                needed = stats.rows_to_decide(estimate, decision.lower, decision.upper, member.threshold, n)
                if needed is not None:
                    details["needs_rows"] = needed
        judged.append(Judged(decision.verdict, decision.lower, decision.upper, decision.level, details))
    return judged


def worst_of_family(members, estimates, rows, level, correction, min_rows, higher_is_better: bool):
    """(verdict of "every member is on the good side", index of the member to show, its Judged, all Judged)."""
    judged = decide(members, estimates, rows, level, correction, min_rows)
    decisions = [stats.FamilyDecision(j.verdict, j.lower, j.upper, j.level, len(members), correction, 1.0, 1.0) for j in judged]
    verdict, shown = stats.family_summary(decisions, estimates, higher_is_better)
    return verdict, shown, judged[shown], judged


def finding(check: str, title: str, severity, verdict: str, value: float, threshold: float, shown: Judged, method: str,
            rows: int, subject: str, message: str, details: dict) -> audit.Finding:
    return audit.Finding(check=check, title=title, severity=severity, verdict=verdict, value=value, threshold=threshold,
                         lower=shown.lower, upper=shown.upper, level=shown.level, method=method, rows=rows, subject=subject,
                         message=message, details={**details, **shown.details})
