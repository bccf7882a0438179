"""A model-card style Markdown summary: the evaluation results a model card carries."""

from __future__ import annotations


def _cell(value) -> str:
    from audit.report import format_number

    text = format_number(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\n", " ")


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
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'


def render_markdown(view) -> str:
    run = view["run"]
    verdict = view["verdict"]
    lines = [
        *model_index(view),
        "",
        f"## Evaluation results (audit run `{run['id']}`)",
        "",
        f"- Model: `{run['model_path']}` (sha256 `{run['model_sha256'][:16]}…`, {run['model_format']}, {run['provider']})",
        f"- Data: `{run['data_path']}` ({run['data_rows']:,} rows, sha256 `{(run['data_sha256'] or '')[:16]}…`)",
        f"- Verdict: {verdict['passed']} checks passed, {verdict['failed']} failed; status **{run['status']}** (fail-on {run['fail_on']})",
        "",
        "| Analysis | Check | Subject | Value | Threshold | Severity | Result |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in view["findings"]:
        result = "pass" if f["passed"] else ("waived" if f.get("waiver") else "FAIL")
        lines.append(
            f"| {_cell(f['analysis'])} | {_cell(f['check'])} | {_cell(f['subject'] or '')} | {_cell(f['value'])} | "
            f"{_cell(f['threshold'])} | {f['severity']} | {result} |"
        )
    skipped = [r for r in view["results"] if r["status"] != "ok"]
    if skipped:
        lines += ["", "Not run:", ""]
        lines += [f"- {r['analysis']}: {r['status']} ({_cell(r['reason'] or '')})" for r in skipped]
    return "\n".join(lines) + "\n"
