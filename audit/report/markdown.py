"""A model-card style Markdown summary: the evaluation results a model card carries."""

from __future__ import annotations


def _cell(value) -> str:
    from audit.report import format_number

    text = format_number(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(view) -> str:
    run = view["run"]
    verdict = view["verdict"]
    lines = [
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
