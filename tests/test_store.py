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
