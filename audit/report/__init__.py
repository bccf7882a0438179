"""Reports rendered from the store alone: HTML, PDF, JSON, JUnit XML and Markdown."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from audit.errors import AuditError

SEVERITIES = ["critical", "high", "medium", "low", "info"]


def templates_root() -> Path:
    """The default templates: inside the wheel (audit/templates) or the checkout's templates/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "report.html").exists():
            return candidate
    raise AuditError("the report templates are missing from this installation; reinstall audit")


def _row(obj) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def load_view(store, run_ref: str, plugin_manager=None) -> dict[str, Any]:
    """Everything a report shows, read from the database (never from live objects)."""
    from audit.runner import counted_failures

    run = store.resolve_run(run_ref)
    results = [_row(r) for r in store.results(run.id)]
    findings = [_row(f) for f in store.findings(run.id)]
    metrics = [_row(m) for m in store.metrics(run.id)]
    artifacts = store.artifacts(run.id)
    waivers = [w for w in store.waivers() if w.model_path in ("", run.model_path)]

    for finding in findings:
        finding["waiver"] = next(
            (
                {"reason": w.reason, "author": w.author, "created_at": str(w.created_at)[:19]}
                for w in waivers
                if w.check == finding["check"] and (w.subject is None or w.subject == finding["subject"])
                and (w.analysis is None or w.analysis == finding["analysis"])
            ),
            None,
        )

    by_result: dict[int, dict[str, list]] = defaultdict(lambda: {"findings": [], "metrics": [], "figures": []})
    for finding in findings:
        by_result[finding["result_id"]]["findings"].append(finding)
    for metric in metrics:
        by_result[metric["result_id"]]["metrics"].append(metric)
    for artifact in artifacts:
        by_result[artifact.result_id]["figures"].append({
            "name": artifact.name, "title": artifact.title, "caption": artifact.caption, "subject": artifact.subject,
            "mime": artifact.mime,
            "data_uri": f"data:{artifact.mime};base64,{base64.b64encode(artifact.content).decode()}",
        })
    sections = []
    for result in results:
        parts = by_result[result["id"]]
        sections.append({**result, **parts, "metric_tables": _metric_tables(parts["metrics"])})

    failures = counted_failures([_Obj(f) for f in findings], run.fail_on, waivers)
    failed_ids = {id(f.source) for f in failures}
    verdict_counts = {
        severity: {
            "passed": sum(1 for f in findings if f["severity"] == severity and f["passed"]),
            "failed": sum(1 for f in findings if f["severity"] == severity and not f["passed"]),
        }
        for severity in SEVERITIES
    }
    from audit.report.summary import SEVERITY_RANK

    for finding in findings:
        finding["gating"] = id(finding) in failed_ids
        finding["severity_rank"] = SEVERITY_RANK.get(finding["severity"], 0)
    status_counts = Counter(r["status"] for r in results)
    from audit.report.summary import executive_summary

    from audit.store.seal import records_digest

    return {
        "summary": executive_summary(findings),
        "records_digest": records_digest(store, run),
        "signoffs": [_row(s) for s in store.signoffs(run.id)],
        "run": _row(run),
        "results": results,
        "sections": sections,
        "findings": findings,
        "metrics": metrics,
        "verdict": {
            "counts": verdict_counts,
            "passed": sum(1 for f in findings if f["passed"]),
            "failed": sum(1 for f in findings if not f["passed"]),
            "gating_failures": len(failures),
            "status_counts": dict(status_counts),
        },
        "compliance": compliance_matrix(findings, plugin_manager, {r["analysis"]: r["category"] for r in results}),
        "cost": {
            "clean_forward_rows": run.clean_forward_rows,
            "clean_seconds": run.clean_seconds,
            "forward_rows": run.clean_forward_rows + sum(r["forward_rows"] for r in results),
            "backward_rows": sum(r["backward_rows"] for r in results),
            "seconds": run.clean_seconds + sum(r["seconds"] for r in results),
        },
    }


class _Obj:
    """Attribute access over a finding dict, for counted_failures."""

    def __init__(self, source):
        self.source = source
        self.__dict__.update(source)


def _metric_tables(metrics: list[dict]) -> list[dict]:
    """Arrange metrics as readable tables.

    Metrics without a subject or group are one list; metrics with a subject but
    no group become a pivot (rows = subjects, columns = metric names); metrics
    with groups become one pivot per subject (rows = groups).
    """
    plain = [m for m in metrics if m["group"] is None and m["subject"] is None]
    by_subject: dict[str, dict[str, dict]] = {}
    subject_columns: list[str] = []
    grouped: dict[str | None, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    columns: dict[str | None, list[str]] = defaultdict(list)
    for metric in metrics:
        if metric["group"] is None:
            if metric["subject"] is None:
                continue
            by_subject.setdefault(metric["subject"], {})[metric["name"]] = metric
            if metric["name"] not in subject_columns:
                subject_columns.append(metric["name"])
            continue
        grouped[metric["subject"]][metric["group"]][metric["name"]] = metric
        if metric["name"] not in columns[metric["subject"]]:
            columns[metric["subject"]].append(metric["name"])
    tables = []
    if plain:
        tables.append({"subject": None, "kind": "plain", "rows": plain})
    if by_subject:
        tables.append({"subject": None, "kind": "subjects", "columns": subject_columns,
                       "rows": [{"group": subject, "cells": cells} for subject, cells in by_subject.items()]})
    for subject, rows in grouped.items():
        tables.append({"subject": subject, "kind": "grouped", "columns": columns[subject],
                       "rows": [{"group": group, "cells": cells} for group, cells in rows.items()]})
    return tables


def compliance_matrix(findings: list[dict], plugin_manager=None, categories: dict[str, str] | None = None) -> list[dict]:
    """Per framework and requirement: the findings that bear on it, and a status.

    A finding bears on a requirement through a tag ``framework:requirement``,
    or through its analysis's category where the requirement lists categories.
    A requirement no finding bears on is "not assessed", never "passed".
    """
    if plugin_manager is None:
        from audit.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    categories = categories or {}
    frameworks = plugin_manager.frameworks()
    matrix = []
    for framework in frameworks.values():
        rows = []
        for requirement, spec in framework.requirements.items():
            text = spec if isinstance(spec, str) else spec.get("text", requirement)
            by_category = set() if isinstance(spec, str) else set(spec.get("categories") or [])
            tag = f"{framework.id}:{requirement}"
            evidence = [f for f in findings if tag in (f.get("tags") or []) or categories.get(f["analysis"]) in by_category]
            if not evidence:
                status = "not assessed"
            elif any(not f["passed"] and not f.get("waiver") for f in evidence):
                status = "failed"
            elif any(not f["passed"] for f in evidence):
                status = "passed with waivers"
            else:
                status = "passed"
            rows.append({"id": requirement, "tag": tag, "text": text, "status": status,
                         "passed": sum(1 for f in evidence if f["passed"]),
                         "failed": sum(1 for f in evidence if not f["passed"]), "findings": evidence})
        matrix.append({"id": framework.id, "title": framework.title, "plugin": framework.plugin, "requirements": rows})
    return matrix


def run_document(view: dict[str, Any], reports: list[str] | None = None) -> dict[str, Any]:
    """The `--json` contract that CI integrations rely on."""
    run = view["run"]
    return {
        "run_id": run["id"],
        "status": run["status"],
        "exit_code": run["exit_code"],
        "model": {"path": run["model_path"], "sha256": run["model_sha256"], "format": run["model_format"], "provider": run["provider"]},
        "data": {"path": run["data_path"], "sha256": run["data_sha256"], "rows": run["data_rows"]},
        "analyses": [
            {k: r[k] for k in ("name", "status", "reason", "seconds", "forward_rows", "backward_rows")}
            for r in ({**r, "name": r["analysis"]} for r in view["results"])
        ],
        "findings": [
            {"analysis": f["analysis"], "check": f["check"], "subject": f["subject"], "title": f["title"],
             "severity": f["severity"], "passed": f["passed"], "value": f["value"], "threshold": f["threshold"],
             "message": f["message"], "waived": bool(f.get("waiver"))}
            for f in view["findings"]
        ],
        "reports": list(reports or []),
        "records_digest": view["records_digest"],
        "signoffs": [{k: s[k] for k in ("decision", "name", "role", "note", "created_at", "records_digest")} for s in view["signoffs"]],
    }


def environment(template_dir: str | None = None, plugin_manager=None):
    """Jinja2 with autoescape on; a --template-dir overrides, `default:` reaches the shipped ones."""
    import jinja2

    root = templates_root()
    loaders: list[jinja2.BaseLoader] = []
    if template_dir:
        if not Path(template_dir).is_dir():
            raise AuditError(f"--template-dir {template_dir} is not a folder")
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.FileSystemLoader(str(root)))
    # Plugins add templates for their own analyses only, reachable as
    # "<plugin name>:analysis/<analysis name>.html": they can never shadow the
    # report's templates, nor another plugin's sections.
    if plugin_manager is None:
        from audit.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    prefixes: dict[str, jinja2.BaseLoader] = {"default": jinja2.FileSystemLoader(str(root))}
    for name, plugin in plugin_manager.list_name_plugin():
        folder = Path(getattr(plugin, "__file__", None) or "/nonexistent").parent / "templates"
        if name and name != "default" and folder.is_dir():
            prefixes[name] = jinja2.FileSystemLoader(str(folder))
    prefix = jinja2.PrefixLoader(prefixes, delimiter=":")
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([prefix, *loaders]),
        autoescape=jinja2.select_autoescape(["html", "xml", "htm"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    env.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)
    env.globals["section_template"] = lambda name, plugin=None: _section_template(env, name, plugin)
    return env


def _section_template(env, analysis_name: str, plugin: str | None = None) -> str:
    import jinja2

    candidates = [f"analysis/{analysis_name}.html"]
    if plugin:
        candidates.append(f"{plugin}:analysis/{analysis_name}.html")
    for candidate in candidates:
        try:
            env.get_template(candidate)
            return candidate
        except jinja2.TemplateNotFound:
            continue
    return "analysis/_default.html"


def format_number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 10 ** -digits or magnitude >= 1e6):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if magnitude < 1000 else f"{value:,.1f}"


def render_html(view: dict[str, Any], template_dir: str | None = None, plugin_manager=None, for_print: bool = False) -> str:
    env = environment(template_dir or view["run"].get("template_dir"), plugin_manager)
    import audit

    return env.get_template("report.html").render(view=view, run=view["run"], for_print=for_print, audit_version=audit.__version__)


def render_pdf(html: str, path: Path) -> None:
    try:
        import weasyprint
    except (ImportError, OSError) as error:
        raise AuditError(f"PDF output needs WeasyPrint and its system libraries (Pango): {error}") from None
    import logging

    # WeasyPrint logs font-subsetting and CSS notices as warnings; a report
    # that renders is not worth a screenful of them on stderr.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    root = templates_root().resolve()

    def allowed(url: str) -> bool:
        # Reports are self-contained; anything else (the network, a file outside
        # the template folders) is refused rather than fetched.
        return url.startswith("data:") or (url.startswith("file://") and Path(url[7:]).resolve().is_relative_to(root))

    fetcher_class = getattr(weasyprint, "URLFetcher", None)
    if fetcher_class is not None:  # WeasyPrint >= 68: fetchers are classes
        class InlineOnlyFetcher(fetcher_class):
            def fetch(self, url, headers=None):
                if not allowed(url):
                    raise ValueError(f"report resources must be inline; refused {url[:80]}")
                return super().fetch(url, headers)

        fetcher = InlineOnlyFetcher()
    else:
        def fetcher(url, *args, **kwargs):
            if not allowed(url):
                raise ValueError(f"report resources must be inline; refused {url[:80]}")
            return weasyprint.default_url_fetcher(url, *args, **kwargs)

    weasyprint.HTML(string=html, base_url=str(root), url_fetcher=fetcher).write_pdf(str(path))


def write_report(store, run_ref: str, path, fmt: str | None = None, template_dir: str | None = None, plugin_manager=None) -> Path:
    """Render one run from the store to ``path`` in ``fmt`` (default: from the suffix)."""
    from audit.runner import REPORT_FORMATS, check_report_path

    path = Path(path)
    fmt = fmt or check_report_path(str(path))
    if fmt not in set(REPORT_FORMATS.values()):
        raise AuditError(f"unknown report format {fmt!r}; use html, pdf, json, junit or markdown")
    view = load_view(store, run_ref, plugin_manager)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        path.write_text(render_html(view, template_dir, plugin_manager), encoding="utf-8")
    elif fmt == "pdf":
        render_pdf(render_html(view, template_dir, plugin_manager, for_print=True), path)
    elif fmt == "json":
        document = run_document(view)
        document["metrics"] = [{k: m[k] for k in ("analysis", "name", "subject", "group", "value", "lower", "upper", "count", "unit")} for m in view["metrics"]]
        document["compliance"] = [{"id": fw["id"], "requirements": [{k: r[k] for k in ("id", "status", "passed", "failed")} for r in fw["requirements"]]} for fw in view["compliance"]]
        path.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    elif fmt == "junit":
        from audit.report.junit import render_junit

        path.write_text(render_junit(view), encoding="utf-8")
    elif fmt == "markdown":
        from audit.report.markdown import render_markdown

        path.write_text(render_markdown(view), encoding="utf-8")
    store.record_report_file(view["run"]["id"], path, fmt)
    return path
