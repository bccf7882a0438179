"""The report formats: one registry from file suffix to renderer, and the one check of a report path."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.errors import AuditError


@dataclass(frozen=True)
class ReportFormat:
    """A report format: its name (``--format``), the suffixes that select it, and its writer."""

    name: str
    suffixes: tuple[str, ...]
    write: Callable[..., None]  # write(view, path, template_dir=None, plugin_manager=None)
    description: str = ""


def _write_html(view, path: Path, template_dir=None, plugin_manager=None) -> None:
    from audit.report import render_html

    path.write_text(render_html(view, template_dir, plugin_manager), encoding="utf-8")


def _write_pdf(view, path: Path, template_dir=None, plugin_manager=None) -> None:
    from audit.report import render_html, render_pdf

    render_pdf(render_html(view, template_dir, plugin_manager, for_print=True), path)


def _write_json(view, path: Path, template_dir=None, plugin_manager=None) -> None:
    from audit.report import run_document

    document = run_document(view)
    document["metrics"] = [{k: m[k] for k in ("analysis", "name", "subject", "group", "value", "lower", "upper", "count", "unit")} for m in view["metrics"]]
    document["compliance"] = [{"id": fw["id"], "requirements": [{k: r[k] for k in ("id", "status", "passed", "failed", "inconclusive")} for r in fw["requirements"]]} for fw in view["compliance"]]
    path.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")


def _write_junit(view, path: Path, template_dir=None, plugin_manager=None) -> None:
    from audit.report.junit import render_junit

    path.write_text(render_junit(view), encoding="utf-8")


def _write_markdown(view, path: Path, template_dir=None, plugin_manager=None) -> None:
    from audit.report.markdown import render_markdown

    path.write_text(render_markdown(view), encoding="utf-8")


FORMATS: dict[str, ReportFormat] = {
    fmt.name: fmt
    for fmt in (
        ReportFormat("html", (".html", ".htm"), _write_html, "self-contained HTML"),
        ReportFormat("pdf", (".pdf",), _write_pdf, "PDF (WeasyPrint)"),
        ReportFormat("json", (".json",), _write_json, "JSON"),
        ReportFormat("junit", (".xml",), _write_junit, "JUnit XML"),
        ReportFormat("markdown", (".md",), _write_markdown, "Markdown"),
    )
}

# Suffix -> format name, derived from FORMATS (kept as a name for callers that list suffixes).
REPORT_FORMATS: dict[str, str] = {suffix: fmt.name for fmt in FORMATS.values() for suffix in fmt.suffixes}


def _suffix_list() -> str:
    suffixes = [fmt.suffixes[0] + (" (JUnit)" if fmt.name == "junit" else "") for fmt in FORMATS.values()]
    return ", ".join(suffixes[:-1]) + " or " + suffixes[-1]


def format_named(name: str) -> ReportFormat:
    """The format called ``name``; an unknown one is an AuditError listing the known ones."""
    if name not in FORMATS:
        names = list(FORMATS)
        raise AuditError(f"unknown report format {name!r}; use {', '.join(names[:-1])} or {names[-1]}")
    return FORMATS[name]


def check_report_path(report: str) -> str:
    """The format a report path selects by its suffix, after checking the path can be written; else AuditError."""
    path = Path(report)
    fmt = REPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AuditError(f"--report {report}: unknown format {path.suffix or '(no suffix)'}; use {_suffix_list()}")
    if path.is_dir():
        raise AuditError(f"--report {report} is a folder; give a file name such as {path / 'audit.html'}")
    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AuditError(f"--report {report}: cannot write there ({probe} is not writable); choose another path")
    return fmt


def write_view(view: dict[str, Any], path: Path, fmt: str, template_dir: str | None = None, plugin_manager=None) -> Path:
    """Write an already loaded view in format ``fmt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    format_named(fmt).write(view, path, template_dir=template_dir, plugin_manager=plugin_manager)
    return path
