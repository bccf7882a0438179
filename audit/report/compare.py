"""Two runs side by side: the same checks, their values and change, new failures and fixed ones."""

from __future__ import annotations

from typing import Any

from audit.gate import verdict_of

# (verdict in A, verdict in B) -> what changed; an inconclusive check is neither a failure nor a fix.
CHANGES = {
    ("passed", "failed"): "new failure", ("inconclusive", "failed"): "new failure",
    ("failed", "passed"): "fixed", ("failed", "inconclusive"): "no longer shown failing",
    ("failed", "failed"): "still failing", ("passed", "passed"): "still passing",
    ("inconclusive", "inconclusive"): "still inconclusive", ("passed", "inconclusive"): "no longer shown passing",
    ("inconclusive", "passed"): "now shown passing",
}


def _change(old: str, new: str) -> str:
    return CHANGES[(old, new)]

def compare_runs(store, ref_a: str, ref_b: str) -> dict[str, Any]:
    from audit.report import load_view

    a, b = load_view(store, ref_a), load_view(store, ref_b)

    def key(f):
        return (f["analysis"], f["check"], f["subject"])

    before = {key(f): f for f in a["findings"]}
    after = {key(f): f for f in b["findings"]}
    rows = []
    for k in sorted(set(before) | set(after), key=lambda k: tuple("" if p is None else str(p) for p in k)):
        old, new = before.get(k), after.get(k)
        if old and new:
            change = _change(verdict_of(old), verdict_of(new))
        else:
            change = "only in B" if new else "only in A"
        delta = None
        if old and new and old["value"] is not None and new["value"] is not None:
            delta = new["value"] - old["value"]
        rows.append({
            "analysis": k[0], "check": k[1], "subject": k[2], "change": change,
            "severity": (new or old)["severity"],
            "a": None if old is None else {"value": old["value"], "passed": old["passed"], "verdict": verdict_of(old), "threshold": old["threshold"]},
            "b": None if new is None else {"value": new["value"], "passed": new["passed"], "verdict": verdict_of(new), "threshold": new["threshold"]},
            "delta": delta,
        })
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["change"]] = counts.get(row["change"], 0) + 1
    return {
        "a": _identity(a["run"]),
        "b": _identity(b["run"]),
        "counts": counts,
        "new_failures": [r for r in rows if r["change"] == "new failure"],
        "fixed": [r for r in rows if r["change"] == "fixed"],
        "checks": rows,
    }


def _identity(run) -> dict[str, Any]:
    return {"run_id": run["id"], "started_at": str(run["started_at"])[:19], "status": run["status"], "model": run["model_path"],
            "model_sha256": run["model_sha256"], "data": run["data_path"], "data_sha256": run["data_sha256"]}


def render_compare_html(diff: dict[str, Any]) -> str:
    import audit
    from audit.report import environment

    return environment().get_template("compare.html").render(diff=diff, audit_version=audit.__version__)
