"""BENCHMARKS.md from the results JSON: one table per machine, limits first."""

from __future__ import annotations

import re

PEER_NAMES = {"captum": "Captum", "captum-batched": "Captum batched", "quantus": "Quantus", "art": "ART", "torchattacks": "torchattacks",
              "fairlearn": "Fairlearn", "peers": "peers back to back"}


def _s(seconds) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.3g}" if seconds >= 0.01 else f"{seconds:.2e}"


def _rows(n) -> str:
    return f"{n:,}"


def _passes(forward, backward) -> str:
    return f"{_rows(forward)} / {_rows(backward)}"


def _peer(name, info) -> str:
    result = info.get("result", {})
    if "error" in result:
        return f"{PEER_NAMES.get(name, name)}: failed ({result['error'][:80]})"
    text = f"{PEER_NAMES.get(name, name)} {_s(result['median'])} s (**{info['ratio']:.1f}x**)"
    verdict = info.get("agreement")
    if verdict:
        diff = info.get("difference")
        text += f", {verdict}" + (f" (max diff {diff:.1e})" if diff is not None and verdict != "stochastic" else "")
    values = result.get("values") or {}
    if values:
        text += ", " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
    passes = f"{_rows(result['forward_rows'])} / {_rows(result['backward_rows'])}"
    return text + f", passes {passes}"


def markdown(results: dict) -> str:
    out = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks` (see benchmarks/README.md for what each workload does and how to rerun it). "
        f"Each implementation ran in {results.get('rounds', 1)} fresh process(es), interleaved with the other implementations' "
        f"(order rotated each round), {results['threads']} thread(s) each, one warm-up then {results['repeats']} timed run(s) "
        f"per process (a run of a workload under 0.1 s is a loop of calls, per-call time reported); the median of all "
        "timed runs is reported (workloads too slow to repeat: one run)"
        f"{' (quick run: small sizes)' if results.get('quick') else ''}. Every process runs with glibc's malloc thresholds "
        "fixed, as `audit run` fixes them for itself (benchmarks/README.md says why).",
        "",
        "Columns: **wall** is ours (median seconds); **passes** are rows sent forward / forward+backward (from `model.counters`), "
        "used against required by the workload's definition; **limit** = required passes x the best per-row time of the model "
        "on that backend (tight loop over batch sizes, below); **x limit** = wall / limit; for each peer its median time, "
        "**ratio = peer time / our time** (above 1: we are faster), agreement of the outputs, its values and its passes.",
        "",
    ]
    for run in results["runs"]:
        out += [f"## {run['device']}: {run['machine']}", ""]
        if run.get("created") or run.get("commit"):
            out += [f"Measured {run.get('created', 'at an unrecorded time')}" + (f" on commit {run['commit']}" if run.get("commit") else "") + ".", ""]
        for note in run.get("notes", []):
            out += [f"> {note}", ""]
        out += ["| model / backend | best forward (us/row) | best forward+backward (us/row) |", "|---|---|---|"]
        for key, lim in sorted(run["limits"].items()):
            if "error" in lim:
                out.append(f"| {key} | failed: {lim['error']} | |")
                continue
            best_f = min(lim["sweep"], key=lambda b: lim["sweep"][b]["forward"])
            back = "—"
            if lim.get("backward"):
                best_b = min(lim["sweep"], key=lambda b: lim["sweep"][b]["backward"])
                back = f"{lim['backward'] * 1e6:.2f} (batch {best_b})"
            out.append(f"| {key} | {lim['forward'] * 1e6:.3f} (batch {best_f}) | {back} |")
        out += ["", "| workload | backend | rows | wall (s) | passes used | passes required | limit (s) | x limit | peers |",
                "|---|---|---|---|---|---|---|---|---|"]
        for entry in run["workloads"]:
            ours = entry["ours"]
            if "error" in ours:
                out.append(f"| {entry['workload']} | {entry['backend']} | {_rows(entry['rows'])} | failed: {ours['error'][:100]} | | | | | |")
                continue
            required = entry.get("required") or [0, 0]
            used = (ours["forward_rows"], ours["backward_rows"])
            mark = "" if tuple(used) == tuple(required) else " ≠"
            ratio = entry.get("wall_over_limit")
            peers = "<br>".join(_peer(name, info) for name, info in entry["peers"].items())
            out.append(
                f"| {entry['workload']}: {entry['title']} | {entry['backend']} | {_rows(entry['rows'])} | {_s(ours['median'])} | "
                f"{_passes(*used)}{mark} | {_passes(*required)} | {_s(entry.get('limit'))} | "
                f"{f'{ratio:.2f}' if ratio else '—'} | {peers} |"
            )
        full = run.get("full")
        if full:
            out += ["", "### Full audit run", "", full.get("note", ""), "",
                    "| model | analyses run | ours wall (s) | passes used | limit of those passes (s) | x limit | peers back to back (s) | ratio |",
                    "|---|---|---|---|---|---|---|---|"]
            for item in full["rows"]:
                if "error" in item:
                    out.append(f"| {item['model']} | failed: {item['error'][:120]} | | | | | | |")
                    continue
                peer = item.get("peers", {})
                peer_s = peer.get("seconds")
                x_limit = f"{item['x_limit']:.2f}" if item.get("x_limit") else "—"
                peer_text = _s(peer_s) if peer_s else "failed: " + str(peer.get("error", ""))[:80]
                ratio = f"**{peer_s / item['seconds']:.1f}x**" if peer_s else "—"
                out.append(
                    f"| {item['model']} | {item['analyses']} | {_s(item['seconds'])} | {_passes(item['forward_rows'], item['backward_rows'])} | "
                    f"{_s(item.get('limit'))} | {x_limit} | {peer_text} | {ratio} |"
                )
            for item in full["rows"]:
                parts = item.get("peers", {}).get("parts")
                if parts:
                    grouped: dict[str, float] = {}
                    for label, seconds in parts.items():
                        key = " ".join(label.split()[:2])
                        grouped[key] = grouped.get(key, 0.0) + seconds
                    out += ["", f"Peers' parts for {item['model']} (s): " + ", ".join(f"{k} {v:.2f}" for k, v in grouped.items())]
                if item.get("per_analysis"):
                    out += ["", f"Our analyses for {item['model']} (s): " + ", ".join(
                        f"{k} {v:.2f}" for k, v in sorted(item["per_analysis"].items(), key=lambda kv: -kv[1]) if v >= 0.01)]
        out.append("")
    out += [f"Total benchmark time {results['seconds']:.0f} s, Python {results['python']}, written {results['created']}.", ""]
    return "\n".join(out)


GENERATED_HEADING = re.compile(r"^## (cpu|cuda)\b[^\n]*:", re.M)


def with_written_sections(generated: str, previous: str) -> str:
    """``generated`` followed by the sections of ``previous`` that the script does not write.

    BENCHMARKS.md also holds sections written by hand from other benchmark scripts
    (bench_verdicts, bench_scale, bench_cost, ...); a rerun of the table must not drop
    them. A section is a "## " heading and what follows it; the device tables
    ("## cpu: ...", "## cuda: ...") and the preamble before the first heading are
    the script's own and are replaced.
    """
    kept = []
    for section in re.split(r"(?m)^(?=## )", previous):
        if section.startswith("## ") and not GENERATED_HEADING.match(section):
            kept.append(section.rstrip("\n") + "\n")
    if not kept:
        return generated
    return generated.rstrip("\n") + "\n\n" + "\n".join(kept)
