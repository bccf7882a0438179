"""The "not judged" finding shared by the bias analyses (grading is `audit.Finding.graded`)."""

from __future__ import annotations

import audit


def not_judged(check: str, title: str, subject: str, n_judged: int, min_size: int, details: dict):
    """A finding that says plainly that a check could not be judged (too few large-enough groups)."""
    return audit.Finding(
        check=check, title=title, severity=audit.Severity.INFO, verdict="inconclusive", value=None, subject=subject,
        message=(f"not judged: {n_judged} group(s) of {subject} have at least {min_size} rows, and a comparison needs two; "
                 "collect more data for the small groups or lower min_group_size"),
        details={**details, "judged": False, "inconclusive_because": f"fewer than two groups have {min_size} rows"},
    )
