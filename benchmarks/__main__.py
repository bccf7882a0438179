"""Run every benchmark workload (ours and the peers, each in a fresh process) and write BENCHMARKS.md and benchmarks/results.json.

    python -m benchmarks                      # everything, CPU (and CUDA when torch sees a GPU), about 10 minutes here
    python -m benchmarks --quick              # smaller sizes, one timed repeat: a ~2 minute smoke run
    python -m benchmarks --only ig occlusion  # workloads whose name starts with any of these ("full" = the full audit run)
    python -m benchmarks --merge results-gpu.json   # add rows measured elsewhere (e.g. on a GPU machine) to the table

Peers are benchmark-only dependencies (benchmarks/requirements.txt), never imported by the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

LIMIT_MODELS = {("digits", "torch"), ("digits", "onnx"), ("credit", "torch"), ("credit", "onnx")}


def run_worker(job: dict, threads: int, timeout: float = 900) -> dict:
    """Run one job in a fresh interpreter with the thread pools pinned; the RESULT line, or {"error": ...}."""
    from ._setup import worker_env

    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks._worker", json.dumps(job)], capture_output=True, text=True,
                              cwd=ROOT, env=worker_env(threads), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (done.stderr or done.stdout).strip().splitlines()
    return {"error": tail[-1] if tail else f"exit {done.returncode}"}


def machine(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def limit_seconds(required, limits, model, backend) -> float | None:
    """Passes the definition needs x the best per-row times of this model and backend."""
    forward, backward = required
    if forward == 0 and backward == 0:
        return None
    lim = limits.get(f"{model}/{backend}")
    if not lim or "error" in lim:
        return None
    if backward and lim.get("backward") is None:
        return None
    return forward * lim["forward"] + backward * (lim.get("backward") or 0.0)


def compare(workload, ours: dict, peer: dict, ours_array: Path, peer_array: Path):
    """(difference, verdict) of a peer's output against ours, as the workload defines agreement."""
    if workload.agree == "array" and ours_array.exists() and peer_array.exists():
        a, b = np.load(ours_array), np.load(peer_array)
        if a.shape != b.shape:
            return None, f"shapes {a.shape} vs {b.shape}"
        difference = float(np.abs(a - b).max())
        scale = max(1.0, float(np.abs(b).max()))
        return difference, "agree" if difference <= workload.tolerance * scale else "DISAGREE"
    if workload.agree == "values":
        differences = [abs(ours["values"][k] - peer["values"][k]) for k in workload.agree_keys
                       if k in ours.get("values", {}) and k in peer.get("values", {})]
        if not differences:
            return None, ""
        difference = max(differences)
        if workload.tolerance is None:
            return difference, "stochastic"
        return difference, "agree" if difference <= workload.tolerance else "DISAGREE"
    return None, ""


def run_rounds(workload, backend: str, rows: int, device: str, args, tmp: Path) -> dict:
    """Each implementation in ``args.rounds`` fresh processes, interleaved, the order rotated every round.

    The same code runs at different speeds from one fresh process to the next
    (up to 25% here, before malloc's thresholds were fixed, and the machine's
    speed drifts over a minute); with one process per implementation run back
    to back, that luck went straight into the ratio. Interleaved rounds
    spread it over all implementations, and the median is taken over every
    timed run of every round.
    """
    impls = list(workload.impls)
    rounds = 1 if workload.max_repeats else args.rounds  # a workload too slow to repeat runs once
    runs: dict[str, list[dict]] = {impl: [] for impl in impls}
    for round_index in range(rounds):
        shift = round_index % len(impls)
        for impl in impls[shift:] + impls[:shift]:
            job = {"kind": "workload", "name": workload.name, "impl": impl, "backend": backend, "rows": rows, "device": device,
                   "threads": args.threads, "repeats": args.repeats, "array_path": str(tmp / f"{workload.name}-{backend}-{impl}.npy")}
            started = time.perf_counter()
            result = run_worker(job, args.threads)
            runs[impl].append(result)
            status = result.get("error") or f"{result['median']:.3f} s"
            print(f"  {device:6s} {workload.name:18s} {backend:5s} {impl:15s} {status}  ({time.perf_counter() - started:.0f} s with start-up)",
                  flush=True)
    results = {}
    for impl, done in runs.items():
        failed = [r for r in done if "error" in r]
        if failed:
            results[impl] = failed[0]
            continue
        merged = dict(done[-1])
        merged["seconds"] = [t for r in done for t in r["seconds"]]
        merged["median"] = statistics.median(merged["seconds"])
        merged["process_medians"] = [r["median"] for r in done]
        results[impl] = merged
    return results


def run_workloads(args, device: str, limits: dict, tmp: Path) -> list[dict]:
    from ._workloads import WORKLOADS

    rows_out = []
    for workload in WORKLOADS:
        if not selected(workload.name, args):
            continue
        for backend in workload.backends:
            if backend == "onnx" and device.startswith("cuda") and not onnx_has_cuda():
                continue
            if backend == "none" and device.startswith("cuda"):
                continue
            rows = workload.quick_rows if args.quick else workload.rows
            entry = {"workload": workload.name, "title": workload.title, "backend": backend, "device": device, "rows": rows,
                     "single_round": workload.single_round, "peers": {}}
            results = run_rounds(workload, backend, rows, device, args, tmp)
            ours = results.get("ours", {})
            entry["ours"] = ours
            if "error" not in ours:
                required = ours.get("required") or workload.required({"rows": rows, "params": workload.params})
                entry["required"] = list(required)
                entry["limit"] = limit_seconds(required, limits, workload.model, backend)
                entry["wall_over_limit"] = ours["median"] / entry["limit"] if entry["limit"] else None
            for impl in workload.impls[1:]:
                peer = results[impl]
                info = {"result": peer}
                if "error" not in peer and "error" not in ours:
                    info["ratio"] = peer["median"] / ours["median"]
                    info["difference"], info["agreement"] = compare(
                        workload, ours, peer, tmp / f"{workload.name}-{backend}-ours.npy", tmp / f"{workload.name}-{backend}-{impl}.npy")
                entry["peers"][impl] = info
            rows_out.append(entry)
    return rows_out


def commit() -> str:
    """The commit measured, marked "+changes" when the tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=ROOT,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" +changes" if dirty else "")


def onnx_has_cuda() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        return False


def selected(name: str, args) -> bool:
    if args.only and not any(name.startswith(prefix) for prefix in args.only):
        return False
    return not (args.skip and any(name.startswith(prefix) for prefix in args.skip))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and one timed repeat (smoke run)")
    parser.add_argument("--only", nargs="+", help="workload name prefixes to run (ig, occlusion, deletion, faithcorr, fgsm, pgd, square, fairness, full)")
    parser.add_argument("--skip", nargs="+", help="workload name prefixes to leave out")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (CPU, then CUDA when present)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every implementation (default 1: on a shared machine, more threads than free cores "
                             "makes OpenMP wait on itself and the timings meaningless)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per process after one warm-up (default 2, quick 1)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="fresh processes per implementation, interleaved with the peers' (default 3, quick 1)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write the results")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md", help="where to write the table")
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="results JSON files from other machines to add to the table")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.rounds = args.rounds or (1 if args.quick else 3)

    import torch

    devices = ["cpu"] if args.device in ("auto", "cpu") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append("cuda")
    started = time.perf_counter()
    results = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick, "threads": args.threads, "repeats": args.repeats,
               "rounds": args.rounds, "python": platform.python_version(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            print(f"{device}: {machine(device)}; {args.threads} thread(s) per implementation", flush=True)
            limits = {}
            for model, backend in sorted(LIMIT_MODELS):
                if backend == "onnx" and device.startswith("cuda") and not onnx_has_cuda():
                    continue
                limits[f"{model}/{backend}"] = run_worker({"kind": "limit", "model": model, "backend": backend, "device": device,
                                                           "threads": args.threads}, args.threads)
                lim = limits[f"{model}/{backend}"]
                if "error" in lim:
                    print(f"  limit {model}/{backend}: {lim['error']}")
                else:
                    back = f", forward+backward {lim['backward'] * 1e6:.2f} us/row" if lim.get("backward") else ""
                    print(f"  limit {model}/{backend}: forward {lim['forward'] * 1e6:.2f} us/row{back}", flush=True)
            run = {"device": device, "machine": machine(device), "created": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit(),
                   "limits": limits, "workloads": run_workloads(args, device, limits, Path(tmp))}
            if selected("full", args):
                from ._full import full_run

                run["full"] = full_run(args, device, limits, Path(tmp))
            results["runs"].append(run)
    results["seconds"] = time.perf_counter() - started
    for path in args.merge:
        merged = json.loads(Path(path).read_text())
        for run in merged["runs"]:
            # Rows from another machine keep when, where and on what code they were measured.
            run.setdefault("created", merged.get("created"))
            run.setdefault("notes", merged.get("notes", []))
            results["runs"].append(run)
    args.json.write_text(json.dumps(results, indent=1, default=float))
    from ._report import markdown, with_written_sections

    previous = args.markdown.read_text() if args.markdown.exists() else ""
    args.markdown.write_text(with_written_sections(markdown(results), previous))
    print(f"wrote {args.markdown} and {args.json} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
