"""A model-card style Markdown summary: the evaluation results a model card carries."""

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


def model_index(view) -> list[str]:
    """YAML front matter in the model-index form a Hugging Face model card reads."""
    run = view["run"]
    name = run["model_path"].replace("\\", "/").rsplit("/", 1)[-1]
    dataset = run["data_path"].replace("\\", "/").rsplit("/", 1)[-1]
    lines = ["---", "model-index:", f"- name: {_yaml(name)}", "  results:", "  - task:", "      type: classification",
             "    dataset:", f"      name: {_yaml(dataset)}", f"      type: {_yaml(dataset)}", "    metrics:"]
    for f in view["findings"]:
        if f["value"] is None:
            continue
        label = f["check"] + (f" ({f['subject']})" if f["subject"] else "")
        lines += [f"    - type: {_yaml(f['analysis'] + '.' + f['check'])}", f"      value: {f['value']:.6g}", f"      name: {_yaml(label)}",
                  "      verified: false"]
    lines.append("---")
    return lines


def _yaml(text: str) -> str:
    """A double-quoted YAML scalar: safe for any string a model or data set names."""
    escaped = _CONTROL.sub(" ", str(text)).replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
    return f'"{escaped}"'


def render_markdown(view) -> str:
    run = view["run"]
    verdict = view["verdict"]
    lines = [
        *model_index(view),
        "",
        f"## Evaluation results (audit run {_code(run['id'])})",
        "",
        f"- Model: {_code(run['model_path'])} (sha256 {_code(run['model_sha256'][:16] + '…')}, {_text(run['model_format'])}, {_text(run['provider'])})",
        f"- Data: {_code(run['data_path'])} ({run['data_rows']:,} rows, sha256 {_code((run['data_sha256'] or '')[:16] + '…')})",
        f"- Verdict: {verdict['passed']} checks passed, {verdict['failed']} failed, {verdict['inconclusive']} inconclusive; status **{_text(run['status'])}** (fail-on {_text(run['fail_on'])})",
        "",
        "| Analysis | Check | Subject | Value | Threshold | Severity | Result |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in view["findings"]:
        result = {"passed": "pass", "inconclusive": "inconclusive"}.get(f["verdict"]) or ("waived" if f.get("waiver") else "FAIL")
        lines.append(
            f"| {_cell(f['analysis'])} | {_cell(f['check'])} | {_cell(f['subject'] or '')} | {_cell(f['value'])} | "
            f"{_cell(f['threshold'])} | {_cell(f['severity'])} | {result} |"
        )
    skipped = [r for r in view["results"] if r["status"] != "ok"]
    if skipped:
        lines += ["", "Not run:", ""]
        lines += [f"- {_text(r['analysis'])}: {_text(r['status'])} ({_cell(r['reason'] or '')})" for r in skipped]
    return "\n".join(lines) + "\n"
