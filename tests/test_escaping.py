"""Each output format escapes data strings for its own syntax: Markdown, JUnit XML, and the PDF fetcher's paths."""

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import audit
from audit.plugins import get_plugin_manager

HOSTILE = "<img src=x onerror=alert(1)> **bold** [link](javascript:alert(1)) `code` | cell\nnew line & \x01\x1b[31m"


class Hostile(audit.Analysis):
    name, title, category = "hostile.strings", "Hostile strings", "performance"

    def run(self, ctx):
        yield audit.Finding(check="names", title=HOSTILE, severity="low", passed=False, value=0.5, threshold=0.9,
                            message=HOSTILE, subject=HOSTILE)


class Plugin:
    @audit.hookimpl
    def register_analyses(self, register):
        register(Hostile)


@pytest.fixture
def hostile_run(cli, assets, tmp_path):
    get_plugin_manager().register(Plugin(), name="hostile")
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "hostile.strings",
                         "--report", tmp_path / "r.md", "--report", tmp_path / "r.xml")
    assert code == 0, err
    return tmp_path


def test_markdown_report_renders_data_as_text(hostile_run):
    markdown_it = pytest.importorskip("markdown_it")
    text = (hostile_run / "r.md").read_text()
    front, body = text.split("\n---\n", 1)  # the YAML front matter is read as YAML, its strings double-quoted
    assert '"names (<img src=x onerror=alert(1)>' in front
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(body)
    assert "<img" not in html and "<strong>bold" not in html and "<a " not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "**bold**" in html
    table_rows = [line for line in body.splitlines() if line.startswith("| hostile")]
    assert len(table_rows) == 1 and table_rows[0].count(" | ") == 6  # the pipe in the data did not add a column


def test_markdown_code_spans_survive_backticks(tmp_path):
    from audit.report.markdown import _code

    markdown_it = pytest.importorskip("markdown_it")
    html = markdown_it.MarkdownIt("commonmark").render("path " + _code("models/a`<b>`.onnx") + " end")
    assert "<code>models/a`&lt;b&gt;`.onnx</code>" in html


def test_junit_is_well_formed_with_control_characters(hostile_run):
    root = ET.parse(hostile_run / "r.xml").getroot()
    case = root.find(".//testcase[@classname='hostile.strings']")
    assert "\\x01" in case.get("name") and "\\x1b" in case.get("name")
    # It fails below the gate (the run exits 0): a passed test case whose output carries the message, exact when parsed.
    assert case.find("failure") is None
    assert case.find("system-out").text.startswith("<img src=x onerror=alert(1)>")


@pytest.mark.parametrize("suffix, allowed", [
    ("style.css", True),
    ("analysis/_default.html", True),
    ("%2e%2e/%2e%2e/etc/passwd", False),
    ("%2E%2E/secret", False),
    ("..%2fsecret", False),
    ("%252e%252e/secret", False),
    ("../secret", False),
])
def test_pdf_fetcher_decodes_paths_before_the_guard(suffix, allowed):
    from audit.report import allowed_resource, templates_root

    root = templates_root().resolve()
    assert allowed_resource(f"file://{root}/{suffix}", root) is allowed


def test_pdf_fetcher_refuses_other_schemes_and_hosts():
    from audit.report import allowed_resource, templates_root

    root = templates_root().resolve()
    assert allowed_resource("data:image/png;base64,AAAA", root)
    assert not allowed_resource("https://example.com/x.png", root)
    assert not allowed_resource(f"file://evil.example{root}/style.css", root)
    assert not allowed_resource(f"file:{Path('/etc/passwd')}", root)


def test_pdf_renderer_does_not_fetch_outside_the_templates(tmp_path, monkeypatch):
    """End to end: a percent-encoded ../ in a stylesheet link reaches no fetch."""
    weasyprint = pytest.importorskip("weasyprint")
    import audit.report

    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "inside.css").write_text("p { color: blue }")
    (tmp_path / "secret.css").write_text("p { color: red }")
    monkeypatch.setattr(audit.report, "templates_root", lambda: templates)
    fetched = []
    fetcher_class = getattr(weasyprint, "URLFetcher", None)
    if fetcher_class is not None:
        real_fetch = fetcher_class.fetch
        monkeypatch.setattr(fetcher_class, "fetch", lambda self, url, *a, **k: (fetched.append(url), real_fetch(self, url, *a, **k))[1])
    else:
        real_fetch = weasyprint.default_url_fetcher
        monkeypatch.setattr(weasyprint, "default_url_fetcher", lambda url, *a, **k: (fetched.append(url), real_fetch(url, *a, **k))[1])
    html = (f'<html><head><link rel="stylesheet" href="file://{templates}/inside.css">'
            f'<link rel="stylesheet" href="file://{templates}/%2e%2e/secret.css"></head><body><p>x</p></body></html>')
    audit.report.render_pdf(html, tmp_path / "out.pdf")
    assert any(url.endswith("inside.css") for url in fetched), fetched
    assert not any("secret" in url for url in fetched), fetched
