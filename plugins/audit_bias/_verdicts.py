"""Verdicts of the bias analyses: each run's checks decided as one family, with intervals that show the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import audit
from audit import stats


@dataclass
class Check:
    """One bias check waiting for the family decision: its estimate, its interval at any level, its limit."""

    check: str
    title: str
    subject: str
    value: float
    interval: Callable[[float], tuple[float, float]]
    threshold: float
    higher_is_better: bool
    severity: str
    method: str
    rows: int
    describe: Callable[[float, float], str]  # the estimate in words, given its 95% interval
    details: dict = field(default_factory=dict)
    high: float | None = None  # graded checks: high severity when the interval clears this too
    is_test: bool = False  # a permutation test (dCov, JS): no interval of its own, see _fairness._test_interval
    by: float | None = None  # the number graded when it is not the value shown (a signed shift graded by its size)
    plain: Callable[[float, float], str] | None = None  # the finding as a reviewer's sentence, given its 95% interval

    @property
    def graded_value(self) -> float:
        return self.value if self.by is None else self.by


def decide(pending: list[Check], level: float = 0.95, correction: str = "holm"):
    """Verdicts of every check of the run as one family (audit.stats.decide_family), then the findings."""
    members = [stats.FamilyMember(key=i, interval=c.interval, threshold=c.threshold, higher_is_better=c.higher_is_better)
               for i, c in enumerate(pending)]
    decisions = stats.decide_family(members, level=level, correction=correction)
    for check, decision in zip(pending, decisions):
        yield _finding(check, decision, level)


def _pct(level: float) -> str:
    return f"{100 * level:.5g}%"


def _finding(check: Check, decision, stated_level: float) -> audit.Finding:
    lo95, hi95 = check.interval(stated_level)
    details = {**check.details, "comparisons": decision.comparisons, "correction": decision.correction,
               "p_fail": decision.p_fail, "p_pass": decision.p_pass}
    severity = check.severity
    if check.is_test:
        lower = upper = level = None
        shown = ""
    else:
        lower, upper, level = decision.lower, decision.upper, decision.level
        details["ci"] = [lo95, hi95]
        details["ci_level"] = stated_level
        shown = f"the {_pct(level)} interval [{lower:.3f}, {upper:.3f}] "
    side = "at or above" if check.higher_is_better else "at or below"
    bad = "below" if check.higher_is_better else "above"
    corrected = (f" ({decision.correction}-corrected for {decision.comparisons} comparisons)"
                 if decision.comparisons > 1 and decision.correction != "none" else "")
    if decision.verdict == "failed":
        if check.high is not None and decision.lower > check.high:
            severity = "high"
        tail = (f"failed: {shown}lies wholly {bad} {check.threshold:g}"
                + (f", and above {check.high:g}: high" if severity == "high" and check.high is not None else ""))
    elif decision.verdict == "passed":
        tail = f"passed: {shown}lies {side} {check.threshold:g}"
    else:
        if check.is_test and check.graded_value > check.threshold:
            details["inconclusive_because"] = "the effect is above the threshold but not significant after correction"
            tail = f"inconclusive: above {check.threshold:g} but not significant after correction"
        elif check.is_test:
            details["inconclusive_because"] = "the effect is within the threshold, but its spread over row resamples reaches past it"
            tail = (f"inconclusive: within {check.threshold:g}, but the upper end of its {_pct(decision.level)} range over row "
                    f"resamples, {decision.upper:.3f}, is not")
        else:
            details["inconclusive_because"] = "the interval straddles the threshold"
            needed = stats.rows_to_decide(check.graded_value, lower, upper, check.threshold, check.rows)
            if needed is not None:
                details["needs_rows"] = needed
            tail = (f"inconclusive: {shown}straddles {check.threshold:g}"
                    + (f"; about {needed} rows would settle it if the estimate held" if needed is not None else "; more rows would narrow it"))
    described = check.describe(lo95, hi95)
    if stated_level != 0.95:  # the descriptions name the usual level
        described = described.replace("[95% CI", f"[{_pct(stated_level)} CI")
    message = f"{described}; {tail}{corrected}"
    if check.plain is not None:
        # The report's page 1 and summary read details["plain"] in place of the message.
        details["plain"] = check.plain(lo95, hi95).replace("[95% CI", f"[{_pct(stated_level)} CI")
    return audit.Finding(
        check=check.check, title=check.title, severity=severity, verdict=decision.verdict, value=check.value,
        threshold=check.threshold, lower=lower, upper=upper, level=level, method=check.method or None,
        rows=check.rows, message=message, subject=check.subject, details=details,
    )


def independent_split(alpha: float, m: int) -> tuple[float, float]:
    """One-sided error rates (union side, single side) for the interval of the largest of ``m`` independent gaps.

    The union side (lower ends, for the largest) errs when any component's bound errs.
    Its worst case is no gap at all: a folded |difference| interval errs on that side
    whenever its signed interval misses 0, on either side, so each errs at 2a and the
    union at 1 - (1 - 2a)^m = alpha (Sidak). The single side (upper ends) errs only
    when the largest gap's own bound errs, so away from no gap the two ends err at
    a + b = alpha at the most, and b takes what the union side leaves.
    """
    if m <= 1:
        return alpha / 2, alpha / 2
    union = (1.0 - (1.0 - alpha) ** (1.0 / m)) / 2
    return union, alpha - union


def max_of(components: list[Callable[[float], tuple[float, float]]], worst: str = "max", independent: bool = False):
    """Interval for the largest (or smallest) of several figures from the components' intervals.

    For the largest, M = max_j theta_j: the upper end max_j hi_j errs only when the
    component that attains M has its own upper bound below it, one event, so the
    components' upper ends are taken at `level`; the lower end max_j lo_j errs when any
    component's lower bound exceeds its figure, a union, so lower ends are taken at the
    Bonferroni level 1 - alpha/m. Mirrored for the smallest. Both ends then hold with
    probability at least about `level` whatever the components' dependence (measured
    in benchmarks/bench_verdicts.py), and with one component it is that component's
    interval. Components estimated from disjoint rows (the TPR and FPR gaps of
    equalized odds) are ``independent``: the two ends then share the error by
    `independent_split`, whose upper ends are narrower.
    """
    def interval(level: float) -> tuple[float, float]:
        if len(components) == 1:
            lower, upper = components[0](level)
            return float(lower), float(upper)
        alpha = 1.0 - level
        if independent:
            union_error, single_error = independent_split(alpha, len(components))
            # Far below any level a verdict uses (a family inverting p-values asks for them) the split would ask for
            # a negative level: the point estimate is the narrowest interval there is.
            union_level, single_level = 1.0 - 2 * union_error, max(1.0 - 2 * single_error, 1e-9)
        else:
            union_level, single_level = stats.family_level(level, len(components)), level
        single = np.array([component(single_level) for component in components], dtype=float)
        union = np.array([component(union_level) for component in components], dtype=float)
        if worst == "max":
            return float(np.max(union[:, 0])), float(np.max(single[:, 1]))
        return float(np.min(single[:, 0])), float(np.min(union[:, 1]))
    return interval
