"""Reports rendered from the store alone: HTML, PDF, JSON, JUnit XML and Markdown."""

from __future__ import annotations

import base64
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from audit.analysis import VERDICTS, Severity
from audit.errors import AuditError
from audit.gate import counted_failures, gated_run_status, waiver_for, waivers_for_model

SEVERITIES = [severity.value for severity in Severity.descending()]


def templates_root() -> Path:
    """The default templates: inside the wheel (audit/templates) or the checkout's templates/."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "report.html").exists():
            return candidate
    raise AuditError("the report templates are missing from this installation; reinstall audit")


def _row(obj) -> dict[str, Any]:
    return obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)


def _not_run(run_id: str, position: int, name: str, run_status: str) -> dict[str, Any]:
    """A requested analysis the run never reached, shown as such rather than left out."""
    from audit.store.models import AnalysisResult

    why = {"running": "the run is still going", "interrupted": "the run was interrupted first",
           "abandoned": "the process running it died first"}[run_status]
    return _row(AnalysisResult(run_id=run_id, position=position, analysis=name, title=name, status="not run",
                               reason=f"never ran: {why}"))


def load_view(store, run_ref: str) -> dict[str, Any]:
    """Everything a report shows, read from the database (never from live objects)."""
    from audit.store.liveness import effective_status, never_ran

    run = store.resolve_run(run_ref)
    stored = store.results(run.id)
    results = [_row(r) for r in stored]
    status = effective_status(run)
    if status in ("running", "interrupted", "abandoned"):
        results += [_not_run(run.id, len(results) + i, name, status) for i, name in enumerate(never_ran(run, stored))]
    findings = [_row(f) for f in store.findings(run.id)]
    metrics = [_row(m) for m in store.metrics(run.id)]
    artifacts = store.artifacts(run.id)
    waivers = waivers_for_model(store.waivers(), run.model_sha256, run.model_path)

    for finding in findings:
        waiver = waiver_for(finding, waivers)
        finding["waiver"] = None if waiver is None else {
            "id": waiver.id, "reason": waiver.reason, "author": waiver.author, "created_at": str(waiver.created_at)[:19],
            "expires_at": None if getattr(waiver, "expires_at", None) is None else str(waiver.expires_at)[:10]}

    value_labels = (run.data_info or {}).get("value_labels") or {}
    sections = _sections(results, findings, metrics, artifacts, value_labels)

    failures = counted_failures(findings, run.fail_on, waivers, inconclusive_fails=bool(getattr(run, "fail_on_inconclusive", False)))
    failed_ids = {id(f) for f in failures}
    for finding in findings:
        finding["gating"] = id(finding) in failed_ids
        finding["severity_rank"] = Severity.rank_of(finding["severity"])
    from audit.report.glossary import glossary
    from audit.report.summary import area_lines, executive_summary

    areas = area_lines(findings, results, value_labels)
    summary = executive_summary(findings, value_labels=value_labels, shown=[a["finding"] for a in areas if a["finding"]])
    # Page 1 and the summary link to these: the PDF prints them in full in their sections.
    featured = {a["finding"]["id"] for a in areas if a["finding"]} | {f["id"] for f in summary}
    for number, section in enumerate(sections, 1):
        section["print_checks"], section["more_checks"] = _open_checks(section["findings"], featured)
        for finding in section["findings"]:
            # The PDF lists passed checks by name only, so a link to one goes to its analysis's section.
            finding["section_anchor"] = f"a-{number}"

    run_row = _row(run)
    # Waivers recorded after the run change its gate: show the status and exit
    # code the gate gives now, and keep what was recorded beside them.
    run_row["recorded_status"], run_row["recorded_exit_code"] = run.status, run.exit_code
    run_row["status"], run_row["exit_code"] = gated_run_status(status, run.exit_code, [r["status"] for r in results], failures)
    from audit.store.seal import records_digest

    statement = dict((run_row.get("config") or {}).get("report") or {})
    return {
        "summary": summary,
        "areas": areas,
        "value_labels": value_labels,
        "records_digest": records_digest(store, run),
        "signoffs": [_row(s) for s in store.signoffs(run.id)],
        "run": run_row,
        "results": results,
        "sections": sections,
        "findings": findings,
        "metrics": metrics,
        "verdict": _verdict(findings, failures, results),
        "compliance": compliance_matrix(findings, run_frameworks(run), {r["analysis"]: r["category"] for r in results},
                                        statement, status),
        "conformity_rule": CONFORMITY_RULE,
        "glossary": glossary(findings, results),
        "statement": statement,
        "frameworks_stored": run.frameworks is not None,
        "cost": {
            "clean_forward_rows": run.clean_forward_rows,
            "clean_seconds": run.clean_seconds,
            "forward_rows": run.clean_forward_rows + sum(r["forward_rows"] for r in results),
            "backward_rows": sum(r["backward_rows"] for r in results),
            "seconds": run.clean_seconds + sum(r["seconds"] for r in results),
        },
    }


def _sections(results: list[dict], findings: list[dict], metrics: list[dict], artifacts, value_labels=None) -> list[dict]:
    """One section per analysis result: its findings, metrics (also as tables) and figures as data URIs."""
    by_result: dict[int, dict[str, list]] = defaultdict(lambda: {"findings": [], "metrics": [], "figures": []})
    for finding in findings:
        by_result[finding["result_id"]]["findings"].append(finding)
    for metric in metrics:
        by_result[metric["result_id"]]["metrics"].append(metric)
    for artifact in artifacts:
        by_result[artifact.result_id]["figures"].append({
            "name": artifact.name, "title": artifact.title, "caption": artifact.caption, "subject": artifact.subject,
            "detail": " x " in (artifact.subject or ""),  # intersections: the PDF shows them in the appendix
            "mime": artifact.mime,
            "data_uri": f"data:{artifact.mime};base64,{base64.b64encode(artifact.content).decode()}",
        })
    sections = []
    for result in results:
        parts = by_result[result["id"]]
        sections.append({**result, **parts, "metric_tables": _metric_tables(parts["metrics"], value_labels)})
    return sections


# Failed and inconclusive checks a PDF section prints with their full message, most important first; the
# others of the section are one line each in the appendix. The credit demo's group fairness has 44 such
# checks of about 500 characters each: five pages, and most of the PDF's layout time, before this cap.
PRINT_CHECKS = 3


def _open_checks(findings: list[dict], featured: set | None = None) -> tuple[list[dict], list[dict]]:
    """A section's failed and inconclusive checks split for print: (shown in the section, listed in the appendix).

    Those in ``featured`` (page 1's area lines, the summary) come first and are always shown.
    """
    from audit.report.summary import exceedance

    featured = featured or set()
    open_ = [f for f in findings if f["verdict"] != "passed"]
    open_.sort(key=lambda f: (f["id"] not in featured, not f.get("gating"), f["verdict"] != "failed", bool(f.get("waiver")),
                              -f["severity_rank"], -exceedance(f)))
    shown = max(PRINT_CHECKS, sum(1 for f in open_ if f["id"] in featured))
    return open_[:shown], open_[shown:]


def _verdict(findings: list[dict], failures: list, results: list[dict]) -> dict[str, Any]:
    """Passed and failed counts, per severity (most severe first) and in all, and the gate's failures."""
    return {
        "counts": {
            severity: {
                verdict: sum(1 for f in findings if f["severity"] == severity and f["verdict"] == verdict)
                for verdict in VERDICTS
            }
            for severity in SEVERITIES
        },
        **{verdict: sum(1 for f in findings if f["verdict"] == verdict) for verdict in VERDICTS},
        "gating_failures": len(failures),
        "waived": sum(1 for f in findings if f["verdict"] == "failed" and f.get("waiver")),
        "status_counts": dict(Counter(r["status"] for r in results)),
    }


# A pivot with more metric columns than this is split into several tables, so every table fits the page
# (eight: group fairness has eight rates per group, and a part with one column repeats every group name).
MAX_TABLE_COLUMNS = 8


def _chunked(table: dict) -> list[dict]:
    columns = table["columns"]
    if len(columns) <= MAX_TABLE_COLUMNS:
        return [table]
    parts = -(-len(columns) // MAX_TABLE_COLUMNS)
    size = -(-len(columns) // parts)  # parts of even width: 9 columns as 5 + 4, not 8 + 1
    return [{**table, "columns": columns[i:i + size], "part": i // size + 1} for i in range(0, len(columns), size)]


def _metric_tables(metrics: list[dict], value_labels: dict | None = None) -> list[dict]:
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
        tables.append({"subject": None, "kind": "plain", "rows": plain, "detail": len(plain) > 12})
    if by_subject:
        tables += _chunked({"subject": None, "kind": "subjects", "columns": subject_columns, "detail": len(by_subject) > 12,
                            "rows": [{"group": subject, "cells": cells} for subject, cells in by_subject.items()]})
    from audit.report.summary import relabel

    for subject, rows in grouped.items():
        # Intersections and long tables are details: the PDF moves them to the appendix.
        detail = " x " in str(subject) or len(rows) > 12
        tables += _chunked({"subject": subject, "kind": "grouped", "columns": columns[subject], "detail": detail,
                            "rows": [{"group": _group_name(group, subject, value_labels, relabel), "cells": cells}
                                     for group, cells in rows.items()]})
    return _merged(tables)


def _merged(tables: list[dict]) -> list[dict]:
    """Consecutive per-subject group tables with the same columns as one table, a heading row per subject.

    Group fairness gives one table per attribute and explainer agreement one per explainer, all with
    the same columns: one table reads as a comparison, and saves a heading and a header row each.
    """
    out: list[dict] = []
    for table in tables:
        last = out[-1] if out else None
        if (last is not None and table["kind"] == last["kind"] == "grouped" and table["columns"] == last["columns"]
                and table["detail"] == last["detail"] and table.get("part") == last.get("part")):
            if "subjects" not in last:
                last["rows"] = [{"heading": last["subject"]}, *last["rows"]]
                last["subjects"] = [last["subject"]]
            last["subjects"].append(table["subject"])
            last["subject"] = ", ".join(last["subjects"])
            last["rows"] += [{"heading": table["subject"]}, *table["rows"]]
        else:
            out.append(dict(table))
    for table in out:
        # A merged table as long as a detail table is one: the PDF prints it in the appendix.
        if "subjects" in table and sum(1 for row in table["rows"] if row.get("heading") is None) > 12:
            table["detail"] = True
    return out


# The PDF's text width in CSS pixels (A4 less the print margins) and a monospace glyph's advance in ems.
PRINT_WIDTH_PX = (210 - 28) / 25.4 * 96
MONO_ADVANCE = 0.602  # DejaVu Sans Mono


def text_table(table: dict, max_label: int = 30) -> dict[str, Any]:
    """A metric table as aligned monospace lines, for the PDF's appendix: its lines and the font size that fits them.

    WeasyPrint lays out a table cell about as slowly as a whole line of text: the credit demo's
    intersection tables (400 cells) took a fifth of its PDF render. The same numbers as
    preformatted lines cost a tenth of that; the HTML report keeps the real tables.
    """
    label = "Subject" if table["kind"] == "subjects" else "Group"
    columns = [str(c).replace("_", " ") for c in table["columns"]]

    def cell(metric) -> tuple[str, str]:
        if not metric:
            return "", ""
        interval = f"[{format_number(metric['lower'])}, {format_number(metric['upper'])}]" if metric.get("lower") is not None else ""
        return format_number(metric["value"]), interval

    def clip(text: str) -> str:
        text = " ".join(str(text).split())
        return text if len(text) <= max_label else text[:max_label - 1] + "\u2026"

    body: list[tuple[str, list[str], list[str]] | str] = []
    for row in table["rows"]:
        if row.get("heading") is not None:
            body.append(clip(row["heading"]))
            continue
        cells = [cell(row["cells"].get(c)) for c in table["columns"]]
        body.append((clip(row["group"]), [v for v, _ in cells], [i for _, i in cells]))
    rows = [b for b in body if not isinstance(b, str)]
    first = max([len(label), *(len(b) + 1 for b in body if isinstance(b, str)), *(len(r[0]) for r in rows)])
    widths = [max([len(c), *(len(r[1][j]) for r in rows), *(len(r[2][j]) for r in rows)]) for j, c in enumerate(columns)]
    lines = [label.ljust(first) + "".join("  " + c.rjust(w) for c, w in zip(columns, widths))]
    lines.append("-" * len(lines[0]))
    for b in body:
        if isinstance(b, str):
            lines.append(b + ":")
            continue
        lines.append(b[0].ljust(first) + "".join("  " + v.rjust(w) for v, w in zip(b[1], widths)))
        if any(b[2]):
            lines.append(" " * first + "".join("  " + i.rjust(w) for i, w in zip(b[2], widths)))
    chars = max(len(line) for line in lines)
    # The largest size at which the widest line fits the page, at most the tables' 9 px.
    font_px = min(9.0, 0.97 * PRINT_WIDTH_PX / (chars * MONO_ADVANCE))
    return {"lines": lines, "font_px": round(font_px, 2)}


def _group_name(group: str, subject: str | None, value_labels: dict | None, relabel) -> str:
    """A group as its label with the code beside it ("female (0)"), or as stored when it has no label."""
    labelled = relabel(str(group), subject, value_labels)
    return labelled if labelled == str(group) else f"{labelled} ({group})"


def run_frameworks(run) -> list[dict]:
    """The frameworks a run was judged against, as stored with it.

    Runs recorded before the texts were stored (migration m004) are shown
    against the texts audit ships, never against whatever plugins are
    installed now.
    """
    if run.frameworks is not None:
        return list(run.frameworks)
    from audit.report.frameworks import BUILTIN_FRAMEWORKS

    return [dict(framework) for framework in BUILTIN_FRAMEWORKS]


CONFORMITY_RULE = (
    "A test requirement is met when its evidence (the findings of the analysis categories it names, or tagged with it) "
    "includes every category it requires and every check in it passed; not met when a check the gate counts failed; "
    "partly met when checks failed below the gate, were waived or were inconclusive, when a required category has no "
    "finding (its analyses were skipped or not run), or when a statement it needs is missing from [report]; not assessed "
    "when no finding bears on it. A documentation duty is met by this report once the run finished. A process no test "
    "can show needs a person's attestation ([report] attestations)."
)
STATUSES = ("met", "not met", "partly met", "not assessed", "needs attestation", "attested")


def _requirement_spec(spec) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"text": spec, "kind": "test", "categories": [], "requires": []}
    return {"text": spec.get("text", ""), "kind": spec.get("kind", "test"), "categories": list(spec.get("categories") or []),
            "requires": list(spec.get("requires") or []), "needs_statement": spec.get("needs_statement")}


def compliance_matrix(findings: list[dict], frameworks: list[dict], categories: dict[str, str] | None = None,
                      statement: dict[str, Any] | None = None, run_status: str = "ok") -> list[dict]:
    """Per framework and requirement: a status (met, not met, partly met, not assessed, needs attestation), why, and the evidence.

    The rule is `CONFORMITY_RULE`; ``frameworks`` are the stored ones (see
    `run_frameworks`), ``statement`` the run's [report] table.
    """
    categories = categories or {}
    statement = statement or {}
    attestations = statement.get("attestations") or {}
    finished = run_status in ("ok", "failed")
    matrix = []
    for framework in frameworks:
        rows = []
        for requirement, raw in framework["requirements"].items():
            spec = _requirement_spec(raw)
            tag = f"{framework['id']}:{requirement}"
            evidence, why = [], ""
            if spec["kind"] == "attestation":
                if tag in attestations:
                    status, why = "attested", str(attestations[tag])
                else:
                    status, why = "needs attestation", f"a person states it under [report] attestations, key \"{tag}\""
            elif spec["kind"] == "documentation":
                status = "met" if finished else "partly met"
                why = ("this report documents the tests, metrics, thresholds, intervals and results (and its records digest "
                       "binds them to the database)" if finished else f"the run did not finish ({run_status}): the record is incomplete")
            else:
                evidence = [f for f in findings if tag in (f.get("tags") or []) or categories.get(f["analysis"]) in spec["categories"]]
                assessed = {categories.get(f["analysis"]) for f in evidence}
                missing = [c for c in spec["requires"] if c not in assessed]
                gating = [f for f in evidence if f.get("gating")]
                doubtful = [f for f in evidence if f["verdict"] != "passed"]
                unstated = spec.get("needs_statement") and not statement.get(spec["needs_statement"])
                if not evidence:
                    status, why = "not assessed", "no finding bears on it" + (f" (no {', '.join(spec['requires'])} analysis ran)" if spec["requires"] else "")
                elif gating:
                    status, why = "not met", f"{len(gating)} check(s) the gate counts failed"
                elif doubtful or missing or unstated:
                    reasons = []
                    if missing:
                        reasons.append(f"not assessed for {', '.join(missing)} (skipped or not run)")
                    failed_below = sum(1 for f in doubtful if f["verdict"] == "failed")
                    if failed_below:
                        reasons.append(f"{failed_below} check(s) failed below the gate or waived")
                    undecided = sum(1 for f in doubtful if f["verdict"] == "inconclusive")
                    if undecided:
                        reasons.append(f"{undecided} inconclusive")
                    if unstated:
                        reasons.append(f"{spec['needs_statement'].replace('_', ' ')} not stated in [report]")
                    status, why = "partly met", "; ".join(reasons)
                else:
                    status, why = "met", f"all {len(evidence)} checks passed"
            ordered = sorted(evidence, key=lambda f: ({"failed": 0, "inconclusive": 1, "passed": 2}[f["verdict"]],
                                                      not f.get("gating"), -f.get("severity_rank", 0)))
            rows.append({"id": requirement, "tag": tag, "text": spec["text"], "kind": spec["kind"], "status": status, "why": why,
                         **{verdict: sum(1 for f in evidence if f["verdict"] == verdict) for verdict in VERDICTS},
                         "findings": ordered})
        matrix.append({"id": framework["id"], "title": framework["title"], "plugin": framework.get("plugin", ""), "requirements": rows})
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
        "config_file": (run.get("config") or {}).get("config_file"),
        "analyses": [
            {k: r[k] for k in ("name", "status", "reason", "seconds", "forward_rows", "backward_rows")}
            for r in ({**r, "name": r["analysis"]} for r in view["results"])
        ],
        "findings": [
            {"analysis": f["analysis"], "check": f["check"], "subject": f["subject"], "title": f["title"],
             "severity": f["severity"], "verdict": f["verdict"], "passed": f["passed"], "value": f["value"],
             "lower": f["lower"], "upper": f["upper"], "level": f["level"], "method": f["method"], "rows": f["rows"],
             "threshold": f["threshold"], "message": f["message"], "waived": bool(f.get("waiver")),
             **({"needs_rows": f["details"]["needs_rows"]} if "needs_rows" in (f.get("details") or {}) else {}),
             **({"comparisons": f["details"]["comparisons"], "correction": f["details"].get("correction")}
                if "comparisons" in (f.get("details") or {}) else {})}
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
    # The caller passes the plugin manager (the report never imports the
    # plugin machinery, which reaches the model loaders); without one, no
    # plugin templates.
    prefixes: dict[str, jinja2.BaseLoader] = {"default": jinja2.FileSystemLoader(str(root))}
    for name, plugin in (plugin_manager.list_name_plugin() if plugin_manager is not None else []):
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
    env.globals["text_table"] = text_table
    env.filters["plain"] = plain_value
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


def plain_value(value) -> str:
    """An option or config value as text a reader scans: lists joined, tables as key = value, numbers formatted."""
    if isinstance(value, dict):
        return "; ".join(f"{k} = {plain_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain_value(v) for v in value) or "none"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return "none" if value is None else str(value)


def format_number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    magnitude = abs(value)
    # Counts stored as floats (rows, queries) are whole numbers: print them as such, not "1,034.0".
    if value == value and magnitude != float("inf") and float(value).is_integer() and magnitude >= 1:
        return f"{int(value):,}"
    if magnitude != 0 and (magnitude < 10 ** -digits or magnitude >= 1e6):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if magnitude < 1000 else f"{value:,.1f}"


def render_html(view: dict[str, Any], template_dir: str | None = None, plugin_manager=None, for_print: bool = False) -> str:
    env = environment(template_dir or view["run"].get("template_dir"), plugin_manager)
    import audit

    return env.get_template("report.html").render(view=view, run=view["run"], for_print=for_print, audit_version=audit.__version__)


def allowed_resource(url: str, root: Path) -> bool:
    """Whether the PDF renderer may fetch ``url``: inline data, or a file inside the template folder.

    Reports are self-contained; anything else (the network, a file outside the
    template folders) is refused rather than fetched. The path is checked as the
    fetcher will open it, percent-decoded: ``%2e%2e/`` is ``../``.
    """
    from urllib.parse import unquote, urlsplit

    if url.startswith("data:"):
        return True
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return False
    path = unquote(parts.path)
    if "\0" in path or "%" in path:  # a doubly-encoded path: no template needs one
        return False
    return Path(path).resolve().is_relative_to(root.resolve())


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
        return allowed_resource(url, root)

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
    from audit.report.formats import check_report_path, format_named, write_view

    path = Path(path)
    fmt = format_named(fmt or check_report_path(str(path))).name
    view = load_view(store, run_ref)
    written = write_view(view, path, fmt, template_dir, plugin_manager)
    store.record_report_file(view["run"]["id"], written, fmt)
    return written
