"""`audit runs`, `audit show` and `audit report`: past runs, read back from the store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import typer

from audit.cli.options import RUN_STATUSES, DbOption, JsonOption
from audit.errors import AuditError


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("show")(show)
    app.command("report")(report)


def _store(db: str | None):
    from audit.config import database_location
    from audit.store import Store

    return Store(database_location(db), create=False)


def _since(text: str | None):
    if text is None:
        return None
    text = text.strip()
    units = {"d": "days", "h": "hours", "w": "weeks"}
    if text[:-1].isdigit() and text[-1] in units:
        return datetime.now(timezone.utc) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise AuditError(f"--since {text!r}: give a date (2026-11-01) or an age (7d, 12h, 2w)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def runs(
    model: str = typer.Option(None, "--model", help="Only runs whose model path contains this."),
    status: str = typer.Option(None, "--status", help=f"Only runs with this status: {', '.join(RUN_STATUSES)}."),
    since: str = typer.Option(None, "--since", help="Only runs since a date (2026-11-01) or an age (7d, 12h)."),
    limit: int = typer.Option(50, "--limit", help="At most this many runs, newest first."),
    db: DbOption = None,
    as_json: JsonOption = False,
):
    """List past runs, newest first."""
    from audit.store.liveness import effective_status

    if status is not None and status not in RUN_STATUSES:
        raise AuditError(f"--status {status!r} is not a run status; use one of: {', '.join(RUN_STATUSES)}")
    cutoff = _since(since)
    store = _store(db)
    # `abandoned` is not stored: it is a `running` run whose process is gone.
    rows = store.runs(model=model, status="running" if status == "abandoned" else status, since=cutoff, limit=limit)
    if status in ("running", "abandoned"):
        rows = [r for r in rows if effective_status(r) == status]
    from audit.gate import verdict_of

    out = []
    for r in rows:
        verdicts = [verdict_of(f) for f in store.findings(r.id)]
        out.append({"run_id": r.id, "started_at": r.started_at.isoformat(), "status": effective_status(r), "exit_code": r.exit_code,
                    "model": r.model_path, "model_sha256": r.model_sha256, "data": r.data_path, "rows": r.data_rows, "provider": r.provider,
                    "fail_on": r.fail_on, **{v: verdicts.count(v) for v in ("passed", "failed", "inconclusive")}})
    if as_json:
        print(json.dumps(out, indent=2))
        return
    if not out:
        print("No runs match.")
        return
    print(f"{'RUN':<12}  {'STARTED (UTC)':<16}  {'STATUS':<11} {'EXIT':>4}  {'GATE':<8} {'PASS':>5} {'FAIL':>5} {'INCONC':>6}  {'ROWS':>9}  MODEL")
    for r in out:
        exit_code = "" if r["exit_code"] is None else str(r["exit_code"])
        print(f"{r['run_id']:<12}  {r['started_at'][:16].replace('T', ' '):<16}  {r['status']:<11} {exit_code:>4}  {r['fail_on']:<8} "
              f"{r['passed']:>5} {r['failed']:>5} {r['inconclusive']:>6}  {r['rows']:>9,}  {r['model']}")
    print(f"{len(out)} run{'s' if len(out) != 1 else ''}" + (f" (at most {limit}; --limit shows more)" if len(out) == limit else "")
          + ": " + ", ".join(f"{n} {status}" for status, n in sorted(_count(r["status"] for r in out).items())))


def _count(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def show(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `latest`."),
    db: DbOption = None,
    as_json: JsonOption = False,
):
    """Show one run: its analyses and findings."""
    from audit.cli.running import print_summary
    from audit.report import load_view, run_document

    view = load_view(_store(db), run_id)
    if as_json:
        print(json.dumps(run_document(view), indent=2, default=str))
    else:
        print_summary(view, [])


def report(
    run_id: str = typer.Argument(..., help="Run id, a unique prefix of one, or `latest`."),
    out: str = typer.Option(..., "--out", "-o", help="Output file; format from the suffix unless --format."),
    fmt: str = typer.Option(None, "--format", "-f", help="html, pdf, json, junit or markdown."),
    template_dir: str = typer.Option(None, "--template-dir", help="Folder of templates overriding the report's."),
    db: DbOption = None,
):
    """Re-render the report of a past run from the database."""
    from audit.plugins import get_plugin_manager
    from audit.report import write_report
    from audit.report.formats import check_report_path

    if fmt is None:
        try:
            check_report_path(out)
        except AuditError as error:
            # The shared check speaks of `audit run --report`; here the path came from --out.
            message = str(error)
            raise AuditError("--out" + message[len("--report"):] if message.startswith("--report") else message) from None
    path = write_report(_store(db), run_id, out, fmt=fmt, template_dir=template_dir, plugin_manager=get_plugin_manager())
    print(f"Report: {path}")
