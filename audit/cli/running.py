"""`audit run` and `audit demo`: audit a model, store the findings, write reports, set the exit code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from audit.errors import AuditError


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)


def run(
    model: str = typer.Argument(None, help="Model file: .onnx, TorchScript .pt/.pth, torch.export .pt2.", show_default=False),
    data: str = typer.Option(None, "--data", "-d", help="Data: .npz (x, y, attributes), .csv, .parquet, or an image folder."),
    analysis: list[str] = typer.Option(None, "--analysis", "-a", help="Analysis name or category to run (repeatable). Default: all."),
    set_: list[str] = typer.Option(None, "--set", "-s", help="NAME.KEY=VALUE: an analysis option, or model.output / data.KEY (repeatable)."),
    config: str = typer.Option(None, "--config", help="Config file (default: ./audit.toml or [tool.audit] in ./pyproject.toml)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N. Default: auto."),
    seed: int = typer.Option(None, "--seed", help="Seed for every random choice. Default: 0."),
    batch_size: int = typer.Option(None, "--batch-size", help="Rows per model call. Default: chosen automatically."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch and onnxruntime. Default: $AUDIT_THREADS, else the runtime's own."),
    db: str = typer.Option(None, "--db", help="Database path or URL. Default: $AUDIT_DB or ./.audit/audit.db."),
    report: list[str] = typer.Option(None, "--report", "-r", help="Also write a report here; format from the suffix: .html .pdf .json .xml .md (repeatable)."),
    fail_on: str = typer.Option(None, "--fail-on", help="Exit 1 if a check at or above this severity fails: info, low, medium, high, critical, never. Default: high."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    label: str = typer.Option(None, "--label", help="CSV/Parquet: the label column."),
    attribute: list[str] = typer.Option(None, "--attribute", help="Protected attribute column or array (repeatable)."),
    features: str = typer.Option(None, "--features", help="CSV/Parquet: comma-separated model input columns, in order."),
    sample: int = typer.Option(None, "--sample", help="Audit a seeded random subset of N rows."),
    template_dir: str = typer.Option(None, "--template-dir", help="Folder of templates overriding the report's."),
    trust_model_code: bool = typer.Option(False, "--trust-model-code", help="Allow loading a pickled PyTorch module (runs code from the file)."),
    executor: str = typer.Option(None, "--executor", help="Where analyses run: local (this process) or ray (Ray tasks; pip install 'audit[ray]'). Default: local."),
    ray_address: str = typer.Option(None, "--ray", help="Ray cluster address for --executor ray (e.g. ray://head:10001). Default: a local Ray."),
):
    """Audit MODEL on --data: run the analyses, store every finding, write the report, exit 0/1/3."""
    from audit.config import RunSpec, apply_config, apply_set, find_config

    from audit.cli import current_argv

    spec = RunSpec(argv=current_argv())
    config_path, table = find_config(config)
    if config_path is not None:
        apply_config(spec, table, config_path.parent)
        spec.config_file = str(config_path)
    if model is not None:
        spec.model = model
    if data is not None:
        spec.data = data
    if analysis:
        spec.analyses = list(analysis)
    for name, value in (("device", device), ("seed", seed), ("batch_size", batch_size), ("threads", threads), ("db", db), ("fail_on", fail_on), ("template_dir", template_dir),
                        ("executor", executor), ("ray_address", ray_address)):
        if value is not None:
            setattr(spec, name, value)
    if report:
        spec.reports = list(report)
    if trust_model_code:
        spec.trust_model_code = True
    if label is not None:
        spec.data_options.label = label
    if attribute:
        spec.data_options.attributes = list(attribute)
    if features is not None:
        spec.data_options.features = [f.strip() for f in features.split(",") if f.strip()]
    if sample is not None:
        spec.data_options.sample = sample
    apply_set(spec, list(set_ or []))
    code = execute_spec(spec, as_json=as_json)
    raise typer.Exit(code)


def execute_spec(spec, as_json: bool = False, default_report: bool = True, extra_formats: tuple[str, ...] = ()) -> int:
    """Run ``spec``, write its reports, print a summary (or the JSON document); return the exit code."""
    from audit.cli.progress import console_progress
    from audit.report import load_view, run_document, write_report

    with console_progress(enabled=not as_json) as (factory, on_analysis):
        outcome = run_audit_spec(spec, factory, on_analysis)
    store = outcome.store
    targets = list(spec.reports)
    if default_report:
        base = Path(".audit") / "reports" / outcome.run_id
        targets.insert(0, str(base.with_suffix(".html")))
        targets += [str(base.with_suffix("." + fmt)) for fmt in extra_formats]
    written = []
    for target in targets:
        try:
            written.append(str(write_report(store, outcome.run_id, target, template_dir=spec.template_dir)))
        except Exception as error:  # noqa: BLE001 - the findings are stored; say what failed and go on
            print(f"Error: report {target} was not written: {type(error).__name__ + ': ' if not isinstance(error, AuditError) else ''}{error}", file=sys.stderr)
    view = load_view(store, outcome.run_id)
    if as_json:
        print(json.dumps(run_document(view, written), indent=2, default=str))
    else:
        print_summary(view, written)
    return outcome.exit_code


def run_audit_spec(spec, factory, on_analysis):
    from audit.runner import run_audit

    return run_audit(spec, progress_factory=factory, on_analysis=on_analysis)


def print_summary(view, written: list[str]) -> None:
    run = view["run"]
    print(f"Run {run['id']}: {run['model_path']} on {run['data_path']} ({run['data_rows']:,} rows, {run['provider']})")
    for result in view["results"]:
        findings = [f for f in view["findings"] if f["analysis"] == result["analysis"]]
        failed = sum(1 for f in findings if not f["passed"])
        detail = f"{len(findings) - failed} passed, {failed} failed" if result["status"] == "ok" else (result["reason"] or "")
        print(f"  {result['analysis']:<32} {result['status']:<8} {detail}")
    gating = [f for f in view["findings"] if f.get("gating")]
    if gating:
        print(f"Failed at or above {run['fail_on']}:")
        for f in gating:
            subject = f" [{f['subject']}]" if f["subject"] else ""
            print(f"  {f['severity']:<8} {f['analysis']}.{f['check']}{subject}: {f['message']}")
    for path in written:
        print(f"Report: {path}")
    verdict = view["verdict"]
    gate = "not gating (--fail-on never)" if run["fail_on"] == "never" else f"{verdict['gating_failures']} at or above {run['fail_on']}"
    print(f"{verdict['passed']} checks passed, {verdict['failed']} failed ({gate}); status {run['status']}, exit code {run['exit_code']}")


def demo_assets() -> Path:
    """The bundled demo models: inside the wheel, or examples/demo in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "demo_assets", here.parent / "examples" / "demo"):
        if (candidate / "credit.onnx").exists():
            return candidate
    raise AuditError("the demo models are missing from this installation; reinstall audit")


DEMO_RUNS = [
    ("credit.onnx", "credit.npz", "tabular credit-approval MLP (ONNX) with a protected attribute it leans on"),
    ("digits.pt", "digits.npz", "8x8 digits CNN (TorchScript)"),
    ("digits.onnx", "digits.npz", "8x8 digits CNN (ONNX)"),
]


def demo(
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    db: str = typer.Option(None, "--db", help="Database path or URL. Default: $AUDIT_DB or ./.audit/audit.db."),
    analysis: list[str] = typer.Option(None, "--analysis", "-a", help="Analysis name or category (repeatable). Default: all."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document per run, as a JSON list."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also write a PDF report for each run."),
):
    """Audit the bundled example models (no network, no training): writes HTML and PDF reports."""
    from audit.cli import current_argv
    from audit.config import RunSpec

    assets = demo_assets()
    codes = []
    documents = []
    for model_file, data_file, description in DEMO_RUNS:
        if not as_json:
            print(f"== {description}: {model_file}")
        spec = RunSpec(
            model=str(assets / model_file), data=str(assets / data_file), device=device, db=db,
            analyses=list(analysis or []), fail_on="never", argv=current_argv(),
        )
        if as_json:
            import contextlib
            import io

            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                codes.append(execute_spec(spec, as_json=True, extra_formats=("pdf",) if pdf else ()))
            documents.append(json.loads(buffer.getvalue()))
        else:
            codes.append(execute_spec(spec, extra_formats=("pdf",) if pdf else ()))
            print()
    if as_json:
        print(json.dumps(documents, indent=2))
    # The demo models have findings on purpose; only a broken analysis fails the demo.
    raise typer.Exit(max(codes) if any(c == 3 for c in codes) else 0)
