"""Many `audit run` processes writing one database at once, while others read it: nothing lost."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

WRITERS = 16

READER = textwrap.dedent("""
    import contextlib, io, os, sys, time
    from audit.cli import main

    # Before the first writer has created the database these two answers are correct.
    expected = ("no audit database at", "no runs in the database yet")
    stop, errors, reads = sys.argv[1], [], 0
    while not os.path.exists(stop):
        for args in (["runs", "--limit", "5"], ["show", "latest"]):
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                try:
                    main(args)
                    code = 0
                except SystemExit as exit:
                    code = exit.code
            reads += 1
            if code != 0 and not any(text in err.getvalue() for text in expected):
                errors.append(f"{args[0]} exit {code}: {err.getvalue().strip()[-300:]}")
        time.sleep(0.05)  # leave the two cores to the writers
    print(reads, len(errors))
    print("\\n".join(errors[:5]))
""")


def run_many(assets, tmp_path, db: str):
    env = {**os.environ, "AUDIT_DB": db, "PYTHONUNBUFFERED": "1"}
    stop = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(stop)], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    writers = [
        subprocess.Popen([sys.executable, "-m", "audit", "run", str(assets.mlp_onnx), "--data", str(assets.data_npz),
                          "-a", "performance", "--seed", str(seed), "--fail-on", "never", "--json"],
                         env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for seed in range(WRITERS)
    ]
    outputs = [writer.communicate(timeout=900) for writer in writers]
    stop.touch()
    reads = [reader.communicate(timeout=120) for reader in readers]
    failures = [f"writer {i} exit {w.returncode}: {err.strip()[-400:]}" for i, (w, (_, err)) in enumerate(zip(writers, outputs)) if w.returncode != 0]
    assert not failures, "\n".join(failures)
    for reader, (out, err) in zip(readers, reads):
        assert reader.returncode == 0, err
        count, errors = out.split("\n", 1)[0].split()
        assert int(errors) == 0, out
        assert int(count) > 0
    return [json.loads(out)["run_id"] for out, _ in outputs]


def check_nothing_lost(store, run_ids):
    assert len(set(run_ids)) == WRITERS
    assert {run.id for run in store.runs()} == set(run_ids)
    counts = set()
    for run_id in run_ids:
        run = store.resolve_run(run_id)
        assert run.status == "ok" and run.exit_code == 0 and run.finished_at is not None
        results = store.results(run_id)
        assert results and all(r.status == "ok" for r in results)
        counts.add((len(results), len(store.findings(run_id)), len(store.metrics(run_id))))
    assert len(counts) == 1 and min(counts)[1] > 0, counts  # every run stored all it found


def test_sixteen_runs_into_a_new_sqlite_database_with_two_readers(assets, tmp_path):
    from audit.store import Store

    db = tmp_path / "shared" / "new.db"
    run_ids = run_many(assets, tmp_path, str(db))
    check_nothing_lost(Store(str(db), create=False), run_ids)


def test_sixteen_runs_into_one_postgresql_database(assets, tmp_path, postgres_server):
    from audit.store import Store

    url = postgres_server.new_database()
    run_ids = run_many(assets, tmp_path, url)
    check_nothing_lost(Store(url, create=False), run_ids)
