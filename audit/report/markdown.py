"""A Hugging Face model card section: front matter with a short model-index, and prose on risks, limitations and evaluation."""

from __future__ import annotations

import re

# Every character that can start Markdown or HTML markup; a data string gets
# each one backslash-escaped, so it renders as the text it is.
_MARKUP = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _text(value) -> str:
    """A data string as inert Markdown text: markup characters escaped, line breaks and control characters flattened."""
    text = _CONTROL.sub(" ", str(value)).replace("\r", " ").replace("\n", " ")
    return _MARKUP.sub(r"\\\1", text)


def _code(value) -> str:
    """A data string as a code span: fenced with more backticks than it holds, so it cannot close the span early."""
    text = _CONTROL.sub(" ", str(value)).replace("\r", " ").replace("\n", " ")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(value) -> str:
    from audit.report import format_number

    return _text(value) if isinstance(value, str) else format_number(value)


# Hugging Face task ids (pipeline_tag) for the data modalities audit reads; "tensor" data has none.
TASKS = {
    "tabular": ("tabular-classification", "Tabular Classification"),
    "image": ("image-classification", "Image Classification"),
    "text": ("text-classification", "Text Classification"),
}
MAX_INDEX_METRICS = 8
MAX_CARD_ROWS = 20


def task_of(view) -> tuple[str, str] | None:
    return TASKS.get((view["run"].get("data_info") or {}).get("modality"))


def model_index(view) -> list[str]:
    """YAML front matter as a Hugging Face model card reads it: pipeline_tag and a model-index of the headline metrics.

    The metrics are the performance checks (accuracy and the like), a handful;
    every check is in the report itself. Without a task id (tensor data) there
    is no model-index, which requires one.
    """
    run = view["run"]
    name = run["model_path"].replace("\\", "/").rsplit("/", 1)[-1]
    dataset = run["data_path"].replace("\\", "/").rsplit("/", 1)[-1]
    task = task_of(view)
    lines = ["---", "tags:", "- audit", "- model-audit"]
    if task is None:
        return [*lines, "---"]
    categories = {r["analysis"]: r.get("category") for r in view["results"]}
    headline = [f for f in view["findings"] if categories.get(f["analysis"]) == "performance" and f["value"] is not None]
    lines += [f"pipeline_tag: {task[0]}"]
    if not headline:
        return [*lines, "---"]
    lines += ["model-index:", f"- name: {_yaml(name)}", "  results:", "  - task:", f"      type: {task[0]}", f"      name: {_yaml(task[1])}",
              "    dataset:", f"      name: {_yaml(dataset)}", f"      type: {_yaml(dataset)}", "    metrics:"]
    for f in headline[:MAX_INDEX_METRICS]:
        label = f["check"] + (f" ({f['subject']})" if f["subject"] else "")
        lines += [f"    - type: {_yaml(f['check'])}", f"      value: {f['value']:.6g}", f"      name: {_yaml(label)}",
                  "      verified: false"]
    lines.append("---")
    return lines


def _yaml(text: str) -> str:
    """A double-quoted YAML scalar: safe for any string a model or data set names."""
    escaped = _CONTROL.sub(" ", str(text)).replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
    return f'"{escaped}"'


def _interval(f) -> str:
    from audit.report import format_number

    if f.get("lower") is None or f.get("upper") is None:
        return ""
    from audit.report.summary import level_percent

    return f" [{level_percent(f.get('level'))} CI {format_number(f['lower'])}, {format_number(f['upper'])}]"


def render_markdown(view) -> str:
    """The card: front matter, then Uses, "Bias, Risks, and Limitations" and "Evaluation" in prose, then the audit record."""
    run = view["run"]
    verdict = view["verdict"]
    statement = view.get("statement") or {}
    name = run["model_path"].replace("\\", "/").rsplit("/", 1)[-1]
    gate = f"status **{_text(run['status'])}** " + ("(not gated: fail-on never)" if run["fail_on"] == "never"
                                                  else f"(fail-on {_text(run['fail_on'])}: {verdict['gating_failures']} checks at or above it failed)")
    lines = [
        *model_index(view),
        "",
        f"# {_text(statement.get('model_name') or name)}",
        "",
        f"Audited by audit run {_code(run['id'])} on {_code(run['data_path'])} ({run['data_rows']:,} rows). "
        f"Verdict: {gate}; {verdict['passed']} checks passed, {verdict['failed']} failed, {verdict['inconclusive']} inconclusive"
        + (f", {verdict['waived']} waived" if verdict.get("waived") else "") + ".",
        "",
        "## Uses",
        "",
        "### Direct Use",
        "",
        _text(statement["intended_use"]) if statement.get("intended_use") else "Not stated (`intended_use` under `[report]` in the audit config).",
        "",
        "### Out-of-Scope Use",
        "",
        *([f"- {_text(item)}" for item in statement["out_of_scope"]] if statement.get("out_of_scope")
          else ["Not stated (`out_of_scope` under `[report]`)."]),
        "",
        "## Bias, Risks, and Limitations",
        "",
    ]
    for area in view.get("areas") or []:
        sentence = _text(area["sentence"]) if area["sentence"] else ""
        lines.append(f"- **{area['title']}**: {area['state']}." + (f" {sentence}" if sentence else ""))
    lines += ["", "Known limitations stated by the owner:", ""]
    lines += [f"- {_text(item)}" for item in statement["limitations"]] if statement.get("limitations") else \
        ["- Not stated (`limitations` under `[report]`)."]
    lines += [
        "",
        "## Evaluation",
        "",
        "### Testing Data",
        "",
        f"{_code(run['data_path'])}: {run['data_rows']:,} rows, sha256 {_code((run['data_sha256'] or '')[:16] + '…')}"
        + (f"; attributes {_text(', '.join((run.get('data_info') or {}).get('attributes') or []))}" if (run.get("data_info") or {}).get("attributes") else "") + ".",
        "",
        "### Results",
        "",
        "Checks that did not pass, those that fail the gate first (every check, with its interval and method, is in the audit report):",
        "",
        "| Analysis | Check | Subject | Value | Threshold | Severity | Result |",
        "|---|---|---|---|---|---|---|",
    ]
    not_passed = sorted((f for f in view["findings"] if f["verdict"] != "passed"),
                        key=lambda f: (not f.get("gating"), -f.get("severity_rank", 0)))
    shown = not_passed[:MAX_CARD_ROWS]
    for f in shown:
        result = "inconclusive" if f["verdict"] == "inconclusive" else ("waived" if f.get("waiver") else ("FAIL (gate)" if f.get("gating") else "fail"))
        value = _cell(f["value"]) + _text(_interval(f))
        lines.append(
            f"| {_cell(f['analysis'])} | {_cell(f['check'])} | {_cell(f['subject'] or '')} | {value} | "
            f"{_cell(f['threshold'])} | {_cell(f['severity'])} | {result} |"
        )
    if not shown:
        lines.append("| | every check passed | | | | | |")
    if len(not_passed) > len(shown):
        lines += ["", f"{len(not_passed) - len(shown)} more checks did not pass; the report lists them."]
    skipped = [r for r in view["results"] if r["status"] != "ok"]
    if skipped:
        lines += ["", "Not run:", ""]
        lines += [f"- {_text(r['analysis'])}: {_text(r['status'])} ({_cell(r['reason'] or '')})" for r in skipped]
    signoffs = view.get("signoffs") or []
    lines += ["", "## Audit record", "",
              f"- Model: {_code(run['model_path'])} (sha256 {_code(run['model_sha256'][:16] + '…')}, {_text(run['model_format'])})",
              f"- Records digest: {_code(view.get('records_digest') or '')}",
              "- Sign-off: " + ("; ".join(f"{_text(s['decision'])} by {_text(s['name'])} ({_text(s['role'])})" for s in signoffs) if signoffs else "unsigned")]
    return "\n".join(lines) + "\n"
