"""Store write throughput: N writer processes saving runs at once into one SQLite file and one PostgreSQL database.

    python benchmarks/bench_store.py [--writers 1 4 16] [--runs 4] [--analyses 8] [--findings 40]

Each writer does what `audit run` does to the store, without the model work: create a
run, save each analysis's result with its findings in one transaction, finish the run.
Every configuration starts from a NEW database (the writers also race to migrate it),
and the script checks that nothing was lost. PostgreSQL is measured when the server
binaries and psycopg are installed (a throwaway server, as the tests start it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path


def writer(location: str, runs: int, analyses: int, findings: int, start, results) -> None:
    from audit.store import Store

    start.wait()
    began = time.perf_counter()
    store = Store(location)
    for _ in range(runs):
        run = store.create_run(model_path="bench.onnx", model_sha256="0" * 64)
        for position in range(analyses):
            rows = [{"check": f"check{i}", "subject": f"group={i % 7}", "severity": "high", "passed": i % 3 != 0,
                     "value": i / findings, "threshold": 0.5, "message": "m" * 80, "tags": ["a", "b"], "details": {"i": i}}
                    for i in range(findings)]
            store.save_result(run.id, {"position": position, "analysis": f"bench.a{position}", "status": "ok"}, rows)
        store.update_run(run.id, status="ok", exit_code=0)
    store.close()
    results.put(time.perf_counter() - began)


def measure(location: str, writers: int, runs: int, analyses: int, findings: int) -> dict:
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=writer, args=(location, runs, analyses, findings, start, results)) for _ in range(writers)]
    for process in processes:
        process.start()
    time.sleep(1.0)  # every interpreter up and importing before the clock starts
    began = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
    wall = time.perf_counter() - began
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    from audit.store import Store

    store = Store(location, create=False)
    stored_runs = store.runs()
    stored_findings = sum(len(store.findings(run.id)) for run in stored_runs)
    store.close()
    expected_runs = writers * runs
    assert len(stored_runs) == expected_runs and stored_findings == expected_runs * analyses * findings, (len(stored_runs), stored_findings)
    transactions = expected_runs * (analyses + 2)
    return {"writers": writers, "wall_s": round(wall, 3), "transactions_per_s": round(transactions / wall, 1),
            "findings_per_s": round(expected_runs * analyses * findings / wall, 1), "runs": expected_runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--runs", type=int, default=4, help="runs per writer")
    parser.add_argument("--analyses", type=int, default=8, help="analysis results per run (one transaction each)")
    parser.add_argument("--findings", type=int, default=40, help="findings per analysis result")
    args = parser.parse_args()
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="audit-bench-store-"))
    for count in args.writers:
        result = measure(str(folder / f"new-{count}.db"), count, args.runs, args.analyses, args.findings)
        rows.append({"engine": "sqlite", **result})
        print(json.dumps(rows[-1]), flush=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import importlib.util

    from _postgres import PostgresServer, find_binaries

    binaries = find_binaries()
    if binaries is None or importlib.util.find_spec("psycopg") is None:
        print("PostgreSQL: skipped (no server binaries or no psycopg)")
    else:
        server = PostgresServer(binaries).start()
        try:
            for count in args.writers:
                rows.append({"engine": "postgresql", **measure(server.new_database(), count, args.runs, args.analyses, args.findings)})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            server.stop()
    print(f"\n| engine | writers | runs | wall s | transactions/s | findings/s |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['engine']} | {row['writers']} | {row['runs']} | {row['wall_s']} | {row['transactions_per_s']} | {row['findings_per_s']} |")


if __name__ == "__main__":
    main()
