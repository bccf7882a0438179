"""`audit sign` and `audit verify`: a reviewer's recorded decision, and whether a report still matches its run."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from audit.cli.options import DbOption, JsonOption
from audit.errors import AuditError


class Decision(str, Enum):
    approve = "approve"
    reject = "reject"
    conditional = "conditional"


def register(app: typer.Typer) -> None:
    app.command("sign")(sign)
    app.command("verify")(verify)


def sign(
    run_id: str = typer.Argument(..., help="The run decided on (id, prefix or `latest`)."),
    name: str = typer.Option(..., "--name", help="Who decides (recorded and shown in reports)."),
    role: str = typer.Option(..., "--role", help="In what capacity, e.g. 'model risk officer'."),
    decision: Decision = typer.Option(..., "--decision", help="approve, reject or conditional."),
    note: str = typer.Option("", "--note", help="Conditions or reasons; required for reject and conditional."),
    db: DbOption = None,
    as_json: JsonOption = False,
):
    """Record a sign-off decision bound to a digest of the run's findings, model and data."""
    from audit.store import Store

    if not name.strip() or not role.strip():
        raise AuditError("--name and --role must not be empty: a sign-off says who decided and in what capacity")
    if decision is not Decision.approve and not note.strip():
        raise AuditError(f"--decision {decision.value} needs --note saying why or on what conditions")
    store = Store(db, create=False)
    run = store.resolve_run(run_id)
    if run.status == "running":
        raise AuditError(f"run {run.id} is still running (or was abandoned); sign a finished run")
    signoff = store.add_signoff(run, name=name.strip(), role=role.strip(), decision=decision.value, note=note.strip())
    if as_json:
        print(json.dumps(signoff.model_dump(), indent=2, default=str))
        return
    print(f"Signed run {run.id}: {signoff.decision} by {signoff.name} ({signoff.role}) at {signoff.created_at:%Y-%m-%d %H:%M UTC}")
    print(f"Records digest {signoff.records_digest}; `audit verify REPORT` checks a report file against it.")


def verify(
    report: Path = typer.Argument(..., help="A report file written by `audit run`, `audit demo` or `audit report`."),
    db: DbOption = None,
    as_json: JsonOption = False,
):
    """Check that a report file was written from a run in the database and that nothing changed since. Exit 1 if not."""
    from audit.store import Store
    from audit.store.seal import verify_file

    if not report.is_file():
        raise AuditError(f"report file {report} not found; give the path of an HTML, PDF, JSON, XML or Markdown report")
    result = verify_file(Store(db, create=False), report)
    if as_json:
        print(json.dumps(result, indent=2, default=lambda o: o.model_dump() if hasattr(o, "model_dump") else str(o)))
    else:
        if result["known"]:
            print(f"{report}: the {result['format']} report of run {result['run_id']}, written {result['rendered_at']:%Y-%m-%d %H:%M UTC}")
            for signoff in result["signoffs"]:
                print(f"  signed: {signoff.decision} by {signoff.name} ({signoff.role}) at {signoff.created_at:%Y-%m-%d %H:%M UTC}"
                      + (f": {signoff.note}" if signoff.note else ""))
            if not result["signoffs"]:
                print("  unsigned")
        for problem in result["problems"]:
            print(f"  CHANGED: {problem}")
        for note in result.get("notes", []):
            print(f"  note: {note} (waivers are not covered by the records digest)")
        if not result["problems"]:
            print("  verified: the run's records are as they were when the report was written" + (" and signed" if result["signoffs"] else ""))
    raise typer.Exit(1 if result["problems"] else 0)
