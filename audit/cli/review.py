"""`audit compare` and `audit waive`: how a retrained model moved, and accepted risks."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import typer

from audit.cli.options import DbOption, JsonOption
from audit.errors import AuditError


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("waive")(waive)
    app.command("waivers")(waivers)
    app.command("unwaive")(unwaive)


def compare(
    run_a: str = typer.Argument(..., help="The earlier run (id, prefix or `latest`)."),
    run_b: str = typer.Argument(..., help="The later run."),
    out: str = typer.Option(None, "--out", "-o", help="Write an HTML diff report here."),
    as_json: JsonOption = False,
    db: DbOption = None,
):
    """Compare two runs check by check: values, their change, new failures and fixed ones. Exit 1 on new failures."""
    from audit.report.compare import compare_runs, render_compare_html
    from audit.store import Store

    if out is not None and Path(out).suffix.lower() not in (".html", ".htm"):
        raise AuditError(f"--out {out}: the comparison report is HTML; give a .html path")
    diff = compare_runs(Store(db, create=False), run_a, run_b)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(render_compare_html(diff), encoding="utf-8")
    if as_json:
        print(json.dumps(diff, indent=2, default=str))
    else:
        from audit.report import format_number

        print(f"A {diff['a']['run_id']} ({diff['a']['model']})  ->  B {diff['b']['run_id']} ({diff['b']['model']})")
        for difference in diff["differences"]:
            print(f"  Note: {difference}")
        for row in diff["checks"]:
            if row["change"] in ("still passing",):
                continue
            a = "–" if row["a"] is None else format_number(row["a"]["value"])
            b = "–" if row["b"] is None else format_number(row["b"]["value"])
            delta = "" if row["delta"] is None else f" ({'+' if row['delta'] >= 0 else ''}{format_number(row['delta'])})"
            subject = f" [{row['subject']}]" if row["subject"] else ""
            print(f"  {row['change']:<23} {row['analysis']}.{row['check']}{subject}: {a} -> {b}{delta}")
        print(", ".join(f"{n} {change}" for change, n in sorted(diff["counts"].items())) or "no checks")
        if out:
            print(f"Report: {out}")
    raise typer.Exit(1 if diff["new_failures"] else 0)


def waive(
    run_id: str = typer.Argument(..., help="The run whose failed check is accepted."),
    check: str = typer.Argument(..., help="The check id, e.g. demographic_parity_ratio."),
    reason: str = typer.Option(..., "--reason", help="Why the risk is accepted (recorded and shown in reports)."),
    subject: str = typer.Option(None, "--subject", help="Only for this subject (attribute, corruption, explainer)."),
    analysis: str = typer.Option(None, "--analysis", help="Only for this analysis."),
    author: str = typer.Option(None, "--author", help="Who accepts it. Default: the current user."),
    all_models: bool = typer.Option(False, "--all-models", help="Apply to every model, not only this run's model file (matched by its sha256, wherever it lies)."),
    expires: str = typer.Option(None, "--expires", metavar="DATE", help="The last day the waiver applies (YYYY-MM-DD, UTC); after it the check counts again."),
    force: bool = typer.Option(False, "--force", help="Record it even though the check passed in this run (it would pre-accept a future failure)."),
    db: DbOption = None,
):
    """Record an accepted risk: later runs and reports show it, and --fail-on no longer counts it."""
    from audit.store import Store

    if not reason.strip():
        raise AuditError("--reason must say why the risk is accepted")
    expires_at = _expiry(expires)
    store = Store(db, create=False)
    run = store.resolve_run(run_id)
    matches = [f for f in store.findings(run.id) if f.check == check and (subject is None or f.subject == subject)
               and (analysis is None or f.analysis == analysis)]
    if not matches:
        known = sorted({f.check for f in store.findings(run.id)})
        raise AuditError(f"run {run.id} has no check {check!r}" + (f" with subject {subject!r}" if subject else "") + f"; its checks: {', '.join(known[:12])}")
    from audit.gate import verdict_of

    failed = [f for f in matches if verdict_of(f) == "failed"]
    if all(verdict_of(f) == "passed" for f in matches) and not force:
        raise AuditError(f"{check}" + (f" [{subject}]" if subject else "") + f" passed in run {run.id}: a waiver now would accept a "
                         "future failure unseen; waive it when it fails, or pass --force to record it anyway")
    waiver = store.add_waiver(
        model_path="" if all_models else run.model_path, model_sha256="" if all_models else run.model_sha256,
        analysis=analysis, check=check, subject=subject, expires_at=expires_at,
        reason=reason.strip(), author=author or os.environ.get("AUDIT_USER") or _user(), source_run_id=run.id,
    )
    until = f" until {expires_at:%Y-%m-%d}" if expires_at else " with no expiry"
    print(f"Waiver {waiver.id}: {check}" + (f" [{subject}]" if subject else "") + f" accepted by {waiver.author}{until} "
          f"for {'every model' if all_models else run.model_path} ({len(failed)} failed finding(s) in run {run.id} covered)")


def _expiry(text: str | None):
    """--expires DATE as the datetime of that day (00:00 UTC); a day already past is refused."""
    from datetime import date, datetime, timezone

    if text is None:
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise AuditError(f"--expires {text!r}: give the last day the waiver applies as YYYY-MM-DD") from None
    if day < datetime.now(timezone.utc).date():
        raise AuditError(f"--expires {day}: that day is past; give today or a later day")
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def waivers(
    show_all: bool = typer.Option(False, "--all", help="Also list revoked and expired waivers."),
    as_json: JsonOption = False,
    db: DbOption = None,
):
    """List waivers: id, check, model, author, reason, expiry and state (active, expired, revoked)."""
    from audit.gate import waiver_state
    from audit.store import Store

    rows = []
    for w in Store(db, create=False).waivers(active_only=False):
        state = waiver_state(w)
        if state != "active" and not show_all:
            continue
        rows.append({"id": w.id, "state": state, "check": w.check, "subject": w.subject, "analysis": w.analysis,
                     "model": w.model_path or "(every model)", "model_sha256": w.model_sha256, "author": w.author,
                     "reason": w.reason, "created_at": f"{w.created_at:%Y-%m-%d}",
                     "expires": None if w.expires_at is None else f"{w.expires_at:%Y-%m-%d}",
                     "revoked": None if w.revoked_at is None else f"{w.revoked_at:%Y-%m-%d} by {w.revoked_by}",
                     "source_run_id": w.source_run_id})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("No waivers" + ("." if show_all else " in force (--all also lists revoked and expired ones)."))
        return
    header = f"{'ID':>4}  {'STATE':<8} {'CHECK':<34} {'AUTHOR':<12} {'SINCE':<10}  {'UNTIL':<10}  MODEL / REASON"
    print(header)
    for r in rows:
        check = r["check"] + (f" [{r['subject']}]" if r["subject"] else "")
        print(f"{r['id']:>4}  {r['state']:<8} {check[:34]:<34} {r['author'][:12]:<12} {r['created_at']:<10}  {r['expires'] or 'no expiry':<10}  "
              f"{Path(r['model']).name if r['model_sha256'] else r['model']}: {r['reason']}")
    states = {s: sum(1 for r in rows if r["state"] == s) for s in ("active", "expired", "revoked")}
    print(", ".join(f"{n} {s}" for s, n in states.items() if n))


def unwaive(
    waiver_id: int = typer.Argument(..., help="The waiver's id (see `audit waivers`)."),
    by: str = typer.Option(None, "--by", help="Who revokes it. Default: the current user."),
    db: DbOption = None,
):
    """Revoke a waiver: the check counts against --fail-on again. The waiver stays listed (`audit waivers --all`)."""
    from audit.store import Store

    store = Store(db, create=False)
    known = {w.id: w for w in store.waivers(active_only=False)}
    if waiver_id not in known:
        raise AuditError(f"no waiver {waiver_id}; `audit waivers --all` lists them")
    if not known[waiver_id].active:
        raise AuditError(f"waiver {waiver_id} was already revoked ({known[waiver_id].revoked_at:%Y-%m-%d} by {known[waiver_id].revoked_by})")
    waiver = store.revoke_waiver(waiver_id, by or os.environ.get("AUDIT_USER") or _user())
    print(f"Waiver {waiver.id} revoked by {waiver.revoked_by}: {waiver.check}" + (f" [{waiver.subject}]" if waiver.subject else "")
          + " counts against --fail-on again")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
