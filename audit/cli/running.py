"""`audit run` and `audit demo`: audit a model, store the findings, write reports, set the exit code."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import typer

from audit.cli.options import DbOption, JsonOption, ThreadsOption
from audit.errors import AuditError, Terminated


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)


# Long on purpose: a Typer command declares its options as parameters; the body only merges them into the RunSpec and runs it.
def run(
    model: list[str] = typer.Argument(None, help="Model file(s): .onnx, TorchScript .pt/.pth, torch.export .pt2; several: one run each.", show_default=False),
    data: str = typer.Option(None, "--data", "-d", metavar="PATH", help="Data: .npz (x, y, attributes), .csv, .parquet, or an image folder."),
    analysis: list[str] = typer.Option(None, "--analysis", "-a", metavar="NAME", help="Analysis name or category to run (repeatable). Default: all."),
    set_: list[str] = typer.Option(None, "--set", "-s", metavar="NAME.KEY=VALUE", help="NAME.KEY=VALUE: an analysis option, or model.output / data.KEY (repeatable)."),
    config: str = typer.Option(None, "--config", help="Config file (default: ./audit.toml or [tool.audit] in ./pyproject.toml)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N. Default: auto."),
    seed: int = typer.Option(None, "--seed", help="Seed for every random choice. Default: 0."),
    batch_size: int = typer.Option(None, "--batch-size", help="Rows per model call. Default: chosen automatically."),
    threads: ThreadsOption = None,
    db: DbOption = None,
    report: list[str] = typer.Option(None, "--report", "-r", metavar="PATH", help="Also write a report here; format from the suffix: .html .pdf .json .xml .md (repeatable)."),
    fail_on: str = typer.Option(None, "--fail-on", help="Exit 1 if a check at or above this severity fails: info, low, medium, high, critical, never. Default: high."),
    fail_on_inconclusive: bool = typer.Option(False, "--fail-on-inconclusive", help="Also exit 1 if a check at or above --fail-on is inconclusive (not shown to pass). Default: only failures gate."),
    as_json: JsonOption = False,
    label: str = typer.Option(None, "--label", help="CSV/Parquet: the label column."),
    attribute: list[str] = typer.Option(None, "--attribute", metavar="NAME", help="Protected attribute column or array (repeatable)."),
    features: str = typer.Option(None, "--features", metavar="A,B,C", help="CSV/Parquet: comma-separated model input columns, in order."),
    text: str = typer.Option(None, "--text", help="Text models: the column of strings (CSV, Parquet, JSONL; JSONL default: text)."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Text models: the tokenizer.json (default: MODEL.tokenizer.json or tokenizer.json beside the model)."),
    sample: int = typer.Option(None, "--sample", help="Audit a seeded random subset of N rows."),
    template_dir: str = typer.Option(None, "--template-dir", help="Folder of templates overriding the report's."),
    trust_model_code: bool = typer.Option(False, "--trust-model-code", help="Allow loading a pickled PyTorch module (runs code from the file)."),
    min_rows: int = typer.Option(None, "--min-rows", help="Refuse data sets with fewer rows than this (0: no floor). Default: 29, the fewest with which a perfect score shows 90% accuracy at 95% confidence."),
    executor: str = typer.Option(None, "--executor", help="Where analyses run: local (this process) or ray (Ray tasks; pip install 'classifier-audit[ray]'). Default: local."),
    ray_address: str = typer.Option(None, "--ray", help="Ray cluster address for --executor ray (e.g. ray://head:10001). Default: a local Ray."),
    manifest: str = typer.Option(None, "--manifest", metavar="FILE", help="TOML file of [[run]] tables (model, data, options): one run each; exit code the worst."),
    budget: str = typer.Option(None, "--budget", metavar="TIME", help="Fit the analyses into about this time (90s, 5m, 1h) by sampling less; the plan lists what was reduced."),
    quick: bool = typer.Option(False, "--quick", help="A first look: --budget quick (30s of analyses)."),
):
    """Audit MODEL on --data: run the analyses, store every finding, write the report, exit 0/1/3."""
    from audit.config import RunSpec, apply_config, apply_environment, apply_flags, apply_set, find_config

    from audit.cli import current_argv

    spec = RunSpec(argv=current_argv())
    config_path, table = find_config(config)
    if config_path is not None:
        apply_config(spec, table, config_path.parent, source=str(config_path), explicit=config is not None)
        spec.config_file = str(config_path)
    if model and len(model) == 1:
        spec.model = model[0]
    if data is not None:
        spec.data = data
    if analysis:
        spec.analyses = list(analysis)
    apply_flags(spec, {"device": device, "seed": seed, "batch_size": batch_size, "threads": threads, "db": db,
                       "fail_on": fail_on, "template_dir": template_dir, "min_rows": min_rows,
                       "executor": executor, "ray_address": ray_address, "budget": "quick" if quick and budget is None else budget})
    if report:
        spec.reports = list(report)
    if trust_model_code:
        spec.trust_model_code = True
    if fail_on_inconclusive:
        spec.fail_on_inconclusive = True
    if label is not None:
        spec.data_options.label = label
    if attribute:
        spec.data_options.attributes = list(attribute)
    if features is not None:
        spec.data_options.features = [f.strip() for f in features.split(",") if f.strip()]
    if sample is not None:
        spec.data_options.sample = sample
    if text is not None:
        spec.data_options.text = text
    if tokenizer is not None:
        spec.model_tokenizer = tokenizer
    apply_set(spec, list(set_ or []))
    apply_environment(spec)
    if manifest is not None or len(model or []) > 1:
        from audit.cli.fanout import run_many

        raise typer.Exit(run_many(spec, list(model or []), manifest, as_json))
    code = execute_spec(spec, as_json=as_json)
    raise typer.Exit(code)


def execute_spec(spec, as_json: bool = False, default_report: bool = True, extra_formats: tuple[str, ...] = ()) -> int:
    """Run ``spec``, write its reports, print a summary (or the JSON document); return the exit code."""
    exit_code, view, written = audit_and_report(spec, progress=not as_json, default_report=default_report, extra_formats=extra_formats,
                                                stdout_is_json=as_json)
    if as_json:
        from audit.report import run_document

        print(json.dumps(run_document(view, written), indent=2, default=str))
    else:
        print_summary(view, written, spec.config_file)
    return exit_code


def audit_and_report(spec, progress: bool = True, default_report: bool = True, extra_formats: tuple[str, ...] = (),
                     stdout_is_json: bool = False):
    """Run ``spec`` and write its reports; return (exit code, the run's view from the store, report paths written).

    With ``stdout_is_json``, whatever a plugin or library prints goes to stderr: stdout carries only the JSON document.
    """
    with contextlib.redirect_stdout(sys.stderr) if stdout_is_json else contextlib.nullcontext():
        return _audit_and_report(spec, progress, default_report, extra_formats)


def _audit_and_report(spec, progress, default_report, extra_formats):
    from audit.cli.progress import console_progress
    from audit.plugins import get_plugin_manager
    from audit.report import load_view, write_report
    from audit.report.formats import check_report_path
    from audit.runner import EXIT_ANALYSIS_ERROR, run_audit

    if default_report:  # the default report folder is an output too: checked before any work
        check_report_path(str(Path(".audit") / "reports" / "run.html"))
    with console_progress(enabled=progress) as (factory, on_analysis):
        outcome = run_audit(spec, progress_factory=factory, on_analysis=on_analysis,
                            on_plan=(lambda lines: print("\n".join(lines), file=sys.stderr)) if progress else None)
    store = outcome.store
    targets = list(spec.reports)
    if default_report:
        base = Path(".audit") / "reports" / outcome.run_id
        targets.insert(0, str(base.with_suffix(".html")))
        targets += [str(base.with_suffix("." + fmt)) for fmt in extra_formats]
    written, unwritten = [], []
    for target in targets:
        try:
            written.append(str(write_report(store, outcome.run_id, target, template_dir=spec.template_dir, plugin_manager=get_plugin_manager())))
        except Exception as error:  # noqa: BLE001 - the findings are stored; say what failed and go on
            unwritten.append(target)
            print(f"Error: report {target} was not written: {type(error).__name__ + ': ' if not isinstance(error, AuditError) else ''}{error}"
                  f" (the findings are stored: `audit report {outcome.run_id} --out PATH` writes it again)", file=sys.stderr)
    exit_code = outcome.exit_code
    if unwritten and exit_code in (0, 1):
        exit_code = EXIT_ANALYSIS_ERROR  # a report CI or a reviewer expects is missing: not a pass
    return exit_code, load_view(store, outcome.run_id), written


MAX_GATING_LINES = 10  # a terminal summary names the first few gating failures; the report has them all


def print_summary(view, written: list[str], config_file: str | None = None) -> None:
    run = view["run"]
    print(f"Run {run['id']}: {run['model_path']} on {run['data_path']} ({run['data_rows']:,} rows, {run['provider']})")
    print(f"Config: {config_file or 'none (no --config, audit.toml or [tool.audit] in pyproject.toml)'}")
    for result in view["results"]:
        findings = [f for f in view["findings"] if f["analysis"] == result["analysis"]]
        counts = {verdict: sum(1 for f in findings if f["verdict"] == verdict) for verdict in ("passed", "failed", "inconclusive")}
        detail = (f"{counts['passed']} passed, {counts['failed']} failed, {counts['inconclusive']} inconclusive"
                  if result["status"] == "ok" else (result["reason"] or ""))
        print(f"  {result['analysis']:<32} {result['status']:<8} {detail}")
    gating = [f for f in view["findings"] if f.get("gating")]
    if gating:
        print(f"Failed at or above {run['fail_on']}:")
        from audit.report.summary import relabel

        for f in gating[:MAX_GATING_LINES]:
            subject = f" [{f['subject']}]" if f["subject"] else ""
            message = relabel(f["message"], f["subject"], view.get("value_labels"))
            print(f"  {f['severity']:<8} {f['analysis']}.{f['check']}{subject}: {message}")
        if len(gating) > MAX_GATING_LINES:
            print(f"  ... and {len(gating) - MAX_GATING_LINES} more (the report lists them all)")
    for path in written:
        print(f"Report: {path}")
    verdict = view["verdict"]
    if run["status"] == "skipped":
        print("Nothing was assessed: every analysis was skipped (see the reasons above), so the run does not pass.")
    gate = "not gating (--fail-on never)" if run["fail_on"] == "never" else f"{verdict['gating_failures']} at or above {run['fail_on']}"
    print(f"{verdict['passed']} checks passed, {verdict['failed']} failed, {verdict['inconclusive']} inconclusive ({gate}); "
          f"status {run['status']}, exit code {run['exit_code']}")


def demo_assets() -> Path:
    """The bundled demo models: inside the wheel, or examples/demo in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "demo_assets", here.parent / "examples" / "demo"):
        if (candidate / "credit.onnx").exists():
            return candidate
    raise AuditError("the demo models are missing from this installation; reinstall classifier-audit")


DEMO_RUNS = [
    ("credit.onnx", "credit.npz", "tabular credit-approval MLP (ONNX) with a protected attribute it leans on"),
    ("digits.pt", "digits.npz", "8x8 digits CNN (TorchScript)"),
    ("digits.onnx", "digits.npz", "8x8 digits CNN (ONNX)"),
    ("text.onnx", "text.csv", "reference-letter text classifier (ONNX + tokenizer.json) that learned a gender bias"),
    ("text.pt", "text.csv", "the same text classifier (TorchScript: token occlusion and Integrated Gradients)"),
]
# Data options of the demo runs that are not plain .npz archives.
DEMO_DATA_OPTIONS = {"text.csv": {"text": "text", "label": "label", "attributes": ["gender"]}}


def demo(
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: ThreadsOption = None,
    db: DbOption = None,
    analysis: list[str] = typer.Option(None, "--analysis", "-a", metavar="NAME", help="Analysis name or category (repeatable). Default: all."),
    as_json: JsonOption = False,
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also write a PDF report for each run."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0, help="Runs at once, each in its own process (0: one per CPU core; 1: one after another, with live progress)."),
):
    """Audit the bundled example models (no network, no training): writes HTML and PDF reports.

    With --json, prints one JSON list holding each run's document.
    """
    from audit.cli import current_argv
    from audit.cli.parallel import cpu_cores, default_jobs
    from audit.config import RunSpec, apply_flags, database_location
    from audit.gate import EXIT_INTERRUPTED, EXIT_TERMINATED
    from audit.report import run_document
    from audit.signals import interrupt_reason

    db = database_location(db)
    apply_flags(RunSpec(), {"device": device, "threads": threads})  # refused here, before any worker starts
    assets = demo_assets()
    specs, descriptions = [], {}
    for model_file, data_file, description in DEMO_RUNS:
        spec = RunSpec(
            model=str(assets / model_file), data=str(assets / data_file), device=device, db=db, threads=threads,
            analyses=list(analysis or []), argv=current_argv(),
        )
        for key, value in DEMO_DATA_OPTIONS.get(data_file, {}).items():
            setattr(spec.data_options, key, value)
        specs.append(spec)
        descriptions[id(spec)] = f"{description}: {model_file}"
    extra_formats = ("pdf",) if pdf else ()
    jobs = min(jobs, len(specs)) if jobs else default_jobs(len(specs))
    codes = []
    documents = []

    def show(spec, code, view, written) -> None:
        codes.append(code)
        if as_json:
            documents.append(run_document(view, written))
            return
        print_summary(view, written)
        if view["run"]["status"] == "failed":
            print(f"   This model fails the default gate (--fail-on {view['run']['fail_on']}) by design: it was built with "
                  "flaws for the audit to find. `audit demo` itself still succeeds.")
        print()

    if jobs == 1:
        for spec in specs:
            if not as_json:
                print(f"== {descriptions[id(spec)]}")
            show(spec, *audit_and_report(spec, progress=not as_json, extra_formats=extra_formats, stdout_is_json=as_json))
            if codes[-1] in (EXIT_INTERRUPTED, EXIT_TERMINATED):  # stopped: the other models do not start
                raise typer.Exit(codes[-1])
    else:
        from audit.cli.parallel import replay, runs_side_by_side

        if threads is None:  # the cores shared out, so the runs side by side do not fight over them
            cores_each = max(1, cpu_cores() // jobs)
            for spec in specs:
                spec.threads = cores_each
        if not as_json:
            print(f"Auditing {len(specs)} models, {jobs} at a time; each model's results print when it is done.\n")
        try:
            for spec, result in runs_side_by_side(specs, jobs, extra_formats, as_json):
                if not as_json:
                    print(f"== {descriptions[id(spec)]}", flush=True)
                replay(result)
                show(spec, *result[:3])
        except KeyboardInterrupt as stop:  # the workers stored their runs interrupted; click would make this an abort
            print(f"Error: {interrupt_reason(stop)}: the runs in flight are stored as interrupted, the others did not start",
                  file=sys.stderr)
            raise typer.Exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED) from None
    if as_json:
        print(json.dumps(documents, indent=2, default=str))
    # The demo models are judged by the default gate and some fail it on purpose (their reports say "failed");
    # the demo command is the README's first step, so only a broken analysis makes it fail.
    raise typer.Exit(max(codes) if any(c == 3 for c in codes) else 0)
