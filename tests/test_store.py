"""The store: migrations from blank and from the previous schema, WAL mode, run lookup."""

import sqlite3

import pytest
from sqlmodel import create_engine

from audit.errors import AuditError
from audit.store import Store
from audit.store.migrations import MIGRATIONS, migrate


def test_blank_database_gets_every_migration(tmp_path):
    store = Store(str(tmp_path / "new.db"))
    connection = sqlite3.connect(tmp_path / "new.db")
    names = [row[0] for row in connection.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [name for name, _ in MIGRATIONS]
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"run", "analysis_result", "finding", "metric", "artifact", "waiver"} <= tables
    store.close()


def test_upgrade_from_the_previous_schema_keeps_data(tmp_path):
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate(engine, upto="m001_initial")
    connection = sqlite3.connect(path)
    connection.execute(
        "INSERT INTO run (id, started_at, status, model_path, model_sha256, model_format, provider, device, data_path, data_sha256, data_rows, seed, fail_on) "
        "VALUES ('oldrun000001', '2026-01-01 00:00:00.000000', 'ok', 'm.onnx', 'abc', 'onnx', 'CPUExecutionProvider', 'cpu', 'd.npz', 'def', 10, 0, 'high')"
    )
    connection.commit()
    columns = {row[1] for row in connection.execute("PRAGMA table_info(run)")}
    assert "clean_forward_rows" not in columns
    connection.close()
    store = Store(str(path))
    run = store.resolve_run("oldrun")
    assert run.model_path == "m.onnx" and run.clean_forward_rows == 0 and run.template_dir is None
    assert store.waivers() == []


def test_foreign_sqlite_database_refused(tmp_path):
    connection = sqlite3.connect(tmp_path / "other.db")
    connection.execute("CREATE TABLE customers (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(AuditError, match="database of another program"):
        Store(str(tmp_path / "other.db"))


def test_resolve_run_by_prefix_and_latest(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    a = store.create_run(id="aaaa11112222", model_path="m", model_sha256="1")
    store.create_run(id="aaab11112222", model_path="m", model_sha256="1")
    assert store.resolve_run("aaaa").id == a.id
    assert store.resolve_run("latest").id == "aaab11112222"
    with pytest.raises(AuditError, match="ambiguous"):
        store.resolve_run("aaa")
    with pytest.raises(AuditError, match="no run 'zzz'"):
        store.resolve_run("zzz")


def test_migrations_build_the_schema_the_models_declare(tmp_path):
    """Schema drift: after every migration, each SQLModel table has exactly the columns its class declares."""
    from sqlmodel import SQLModel

    import audit.store.models  # noqa: F401 - registers the tables on SQLModel.metadata

    Store(str(tmp_path / "drift.db")).close()
    connection = sqlite3.connect(tmp_path / "drift.db")
    declared = SQLModel.metadata.tables
    assert {"run", "analysis_result", "finding", "metric", "artifact", "waiver"} <= set(declared)
    for name, table in declared.items():
        info = {row[1]: row for row in connection.execute(f"PRAGMA table_info({name})")}
        assert set(info) == {column.name for column in table.columns}, name
        for column in table.columns:
            # PRAGMA row: (cid, name, type, notnull, default, pk)
            assert bool(info[column.name][5]) == column.primary_key, (name, column.name)
            if not column.primary_key:
                assert bool(info[column.name][3]) == (not column.nullable), (name, column.name, "NOT NULL differs")
    connection.close()
# -- both engines: every test below runs on SQLite and on a real PostgreSQL server --


def test_store_round_trip_on_each_engine(store_url):
    from datetime import datetime, timezone

    store = Store(store_url)
    started = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    store.create_run(id="run000000001", model_path="models/a.onnx", model_sha256="aa", started_at=started,
                     config={"seed": 3, "nested": {"k": [1, 2]}}, argv=["audit", "run"])
    store.create_run(id="run000000002", model_path="models/b.onnx", model_sha256="bb")
    result_id = store.save_result(
        "run000000001",
        {"position": 0, "analysis": "x.y", "status": "ok", "options": {"rows": 5}, "seconds": 0.25, "notes": ["n"]},
        findings=[{"check": "gap", "subject": "group=a", "severity": "high", "passed": False, "value": 0.125,
                   "threshold": 0.1, "message": "m", "tags": ["t"], "details": {"d": 1.5}},
                  {"check": "gap", "subject": None, "severity": "low", "passed": True, "value": None}],
        metrics=[{"name": "acc", "group": "a", "value": 0.5, "lower": 0.25, "upper": 0.75, "count": 10}],
        artifacts=[{"name": "fig", "mime": "image/png", "content": b"\x89PNG\x00\xff"}],
    )
    store.update_run("run000000001", status="failed", exit_code=1, finished_at=started)
    store.add_waiver(check="gap", reason="accepted", model_path="models/a.onnx")

    again = Store(store_url, create=False)  # a second connection, as `audit show` opens
    run = again.resolve_run("run000000001")
    assert run.status == "failed" and run.exit_code == 1
    assert run.config == {"seed": 3, "nested": {"k": [1, 2]}} and run.argv == ["audit", "run"]
    assert run.started_at.replace(tzinfo=None) == started.replace(tzinfo=None)
    assert [r.id for r in again.runs(model="b.onnx")] == ["run000000002"]
    assert again.resolve_run("latest").id == "run000000002"
    [result] = again.results("run000000001")
    assert result.id == result_id and result.options == {"rows": 5} and result.notes == ["n"]
    findings = again.findings("run000000001")
    assert [(f.subject, f.passed, f.value, f.details) for f in findings] == [("group=a", False, 0.125, {"d": 1.5}), (None, True, None, {})]
    [metric] = again.metrics("run000000001")
    assert (metric.group, metric.lower, metric.upper, metric.count) == ("a", 0.25, 0.75, 10)
    assert again.artifacts("run000000001")[0].content == b"\x89PNG\x00\xff"
    [waiver] = again.waivers()
    assert waiver.active is True and waiver.check == "gap"
    with pytest.raises(AuditError, match="ambiguous"):
        again.resolve_run("run")
    store.close()
    again.close()


def test_migrations_recorded_once_and_in_order_on_each_engine(store_url):
    from sqlalchemy import text

    Store(store_url).close()
    store = Store(store_url)  # a second open applies nothing
    with store.engine.connect() as connection:
        names = [row[0] for row in connection.execute(text("SELECT name FROM _migrations ORDER BY name"))]
    assert names == [name for name, _ in MIGRATIONS]
    assert migrate(store.engine) == []
    store.close()


def test_failed_migration_is_rolled_back_whole_and_the_database_stays_usable(store_url, monkeypatch):
    from sqlalchemy import inspect, text

    from audit.store import migrations

    Store(store_url).close()
    attempts = []

    def m999_halfway(connection):
        connection.execute(text("CREATE TABLE extra (id INTEGER PRIMARY KEY, at DATETIME)"))
        connection.execute(text("ALTER TABLE run ADD COLUMN extra_note VARCHAR"))
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("disk full")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, ("m999_halfway", m999_halfway)])
    with pytest.raises(AuditError, match=r"migration m999_halfway failed \(disk full\); it was rolled back"):
        Store(store_url)
    from sqlmodel import create_engine

    postgres = store_url.startswith("postgresql://")
    engine = create_engine("postgresql+psycopg://" + store_url.split("://", 1)[1] if postgres else f"sqlite:///{store_url}")
    with engine.connect() as connection:
        assert not inspect(connection).has_table("extra")
        assert "extra_note" not in {c["name"] for c in inspect(connection).get_columns("run")}
        assert "m999_halfway" not in {row[0] for row in connection.execute(text("SELECT name FROM _migrations"))}
    engine.dispose()
    store = Store(store_url)  # the cause gone, the same migration now applies
    with store.engine.connect() as connection:
        assert inspect(connection).has_table("extra")
    store.create_run(id="after0000001", model_path="m", model_sha256="1")
    assert store.resolve_run("after").id == "after0000001"
    store.close()


def test_run_runs_show_report_compare_against_postgresql(postgres_server, assets, cli, monkeypatch, tmp_path):
    import json

    url = postgres_server.new_database()
    monkeypatch.setenv("AUDIT_DB", url)
    ids = []
    for seed in (1, 2):
        code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "-a", "bias.group_fairness",
                             "--seed", seed, "--fail-on", "never", "--json")
        assert code == 0, err
        ids.append(json.loads(out)["run_id"])
    code, out, err = cli("runs")
    assert code == 0 and all(run_id in out for run_id in ids), err
    code, out, err = cli("show", ids[0])
    assert code == 0 and "performance" in out, err
    code, out, err = cli("report", ids[0], "--out", tmp_path / "r.json")
    assert code == 0, err
    document = json.loads((tmp_path / "r.json").read_text())
    stored = Store(url).findings(ids[0])
    assert document["run_id"] == ids[0] and len(stored) > 0
    code, out, err = cli("compare", ids[0], ids[1])
    assert code in (0, 1), err
    assert ids[0] in out or ids[0][:8] in out


def test_postgresql_url_without_psycopg_is_one_line_error(cli, assets, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real_find_spec(name, *a))
    for args in (["run", assets.mlp_onnx, "--data", assets.data_npz], ["runs"]):
        code, out, err = cli(*args, "--db", "postgresql://audit@db.example/audit")
        assert code == 2, err
        assert err.strip() == "Error: a postgresql:// database needs psycopg, which is not installed; run: pip install 'classifier-audit[postgres]'"


def test_unreachable_postgresql_and_unknown_scheme_are_one_line_errors(cli, postgres_server, tmp_path):
    code, out, err = cli("runs", "--db", f"postgresql://audit:secret@/nodb?host={tmp_path}")
    assert code == 2 and err.startswith("Error: cannot open the database postgresql://audit:***@/nodb") and "secret" not in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = cli("runs", "--db", "mysql://x@h/db")
    assert code == 2 and "unknown database URL scheme 'mysql'" in err and len(err.strip().splitlines()) == 1


def test_database_password_is_not_stored_with_the_run(postgres_server, assets, cli):
    import json

    from audit.store import hide_passwords

    assert hide_passwords("postgresql://u:s3cret@h:5/db and sqlite:///x") == "postgresql://u:***@h:5/db and sqlite:///x"
    url = postgres_server.new_database().replace("postgresql://audit@", "postgresql://audit:s3cret@")  # trust auth ignores it
    code, out, err = cli("run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", "--db", url, "--json")
    assert code == 0, err
    run = Store(url).resolve_run(json.loads(out)["run_id"])
    assert "s3cret" not in json.dumps(run.config) + json.dumps(run.argv)
    assert run.config["db"].startswith("postgresql://audit:***@")
