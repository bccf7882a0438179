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
        print(f"A {diff['a']['run_id']} ({diff['a']['model']})  ->  B {diff['b']['run_id']} ({diff['b']['model']})")
        for row in diff["checks"]:
            if row["change"] in ("still passing",):
                continue
            a = "–" if row["a"] is None else f"{row['a']['value']}"
            b = "–" if row["b"] is None else f"{row['b']['value']}"
            subject = f" [{row['subject']}]" if row["subject"] else ""
            print(f"  {row['change']:<14} {row['analysis']}.{row['check']}{subject}: {a} -> {b}")
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
    db: DbOption = None,
):
    """Record an accepted risk: later runs and reports show it, and --fail-on no longer counts it."""
    from audit.store import Store

    if not reason.strip():
        raise AuditError("--reason must say why the risk is accepted")
    store = Store(db, create=False)
    run = store.resolve_run(run_id)
    matches = [f for f in store.findings(run.id) if f.check == check and (subject is None or f.subject == subject)
               and (analysis is None or f.analysis == analysis)]
    if not matches:
        known = sorted({f.check for f in store.findings(run.id)})
        raise AuditError(f"run {run.id} has no check {check!r}" + (f" with subject {subject!r}" if subject else "") + f"; its checks: {', '.join(known[:12])}")
    waiver = store.add_waiver(
        model_path="" if all_models else run.model_path, model_sha256="" if all_models else run.model_sha256,
        analysis=analysis, check=check, subject=subject,
        reason=reason.strip(), author=author or os.environ.get("AUDIT_USER") or _user(), source_run_id=run.id,
    )
    failed = [f for f in matches if not f.passed]
    print(f"Waiver {waiver.id}: {check}" + (f" [{subject}]" if subject else "") + f" accepted by {waiver.author} "
          f"for {'every model' if all_models else run.model_path} ({len(failed)} failed finding(s) in run {run.id} covered)")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
