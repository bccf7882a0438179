"""Numbered schema migrations; each runs once, in order, recorded in `_migrations`.

All pending migrations run in ONE transaction that holds the database's write lock
(SQLite `BEGIN EXCLUSIVE`, a PostgreSQL advisory lock), so concurrent first runs on a new
database wait for each other instead of racing to create the same tables, and a
migration that fails leaves nothing behind: neither its tables nor its `_migrations` row.

Migrations are written in the SQL both engines share. The few SQLite spellings that
PostgreSQL lacks (DATETIME, BLOB, AUTOINCREMENT, a BOOLEAN default of 0 or 1) are
translated on PostgreSQL by `postgres_ddl`, so a migration written against SQLite
runs on both; the store tests run every migration on both engines.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import event, text

from audit.errors import AuditError

MIGRATIONS: list[tuple[str, Callable]] = []

# Any constant works, as long as every audit process uses the same one.
POSTGRES_MIGRATION_LOCK = 0x61756469


def migration(function: Callable) -> Callable:
    MIGRATIONS.append((function.__name__, function))
    return function


# Long on purpose: the frozen SQL of the first schema; databases record it as run, so it stays exactly as released.
@migration
def m001_initial(connection):
    connection.execute(text("""
        CREATE TABLE run (
            id VARCHAR PRIMARY KEY,
            started_at DATETIME NOT NULL,
            finished_at DATETIME,
            status VARCHAR NOT NULL,
            exit_code INTEGER,
            model_path VARCHAR NOT NULL,
            model_sha256 VARCHAR NOT NULL,
            model_format VARCHAR NOT NULL DEFAULT '',
            provider VARCHAR NOT NULL DEFAULT '',
            device VARCHAR NOT NULL DEFAULT '',
            model_info JSON,
            data_path VARCHAR NOT NULL DEFAULT '',
            data_sha256 VARCHAR NOT NULL DEFAULT '',
            data_rows INTEGER NOT NULL DEFAULT 0,
            data_info JSON,
            seed INTEGER NOT NULL DEFAULT 0,
            argv JSON,
            config JSON,
            versions JSON,
            fail_on VARCHAR NOT NULL DEFAULT 'high'
        )"""))
    connection.execute(text("CREATE INDEX ix_run_started_at ON run (started_at)"))
    connection.execute(text("CREATE INDEX ix_run_status ON run (status)"))
    connection.execute(text("CREATE INDEX ix_run_model_path ON run (model_path)"))
    connection.execute(text("""
        CREATE TABLE analysis_result (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id VARCHAR NOT NULL REFERENCES run (id),
            position INTEGER NOT NULL DEFAULT 0,
            analysis VARCHAR NOT NULL,
            title VARCHAR NOT NULL DEFAULT '',
            category VARCHAR NOT NULL DEFAULT '',
            plugin VARCHAR NOT NULL DEFAULT '',
            plugin_version VARCHAR,
            options JSON,
            status VARCHAR NOT NULL,
            reason VARCHAR,
            traceback VARCHAR,
            seconds FLOAT NOT NULL DEFAULT 0,
            forward_rows INTEGER NOT NULL DEFAULT 0,
            backward_rows INTEGER NOT NULL DEFAULT 0,
            notes JSON,
            tags JSON
        )"""))
    connection.execute(text("CREATE INDEX ix_analysis_result_run_id ON analysis_result (run_id)"))
    connection.execute(text("""
        CREATE TABLE finding (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id VARCHAR NOT NULL REFERENCES run (id),
            result_id INTEGER NOT NULL REFERENCES analysis_result (id),
            position INTEGER NOT NULL DEFAULT 0,
            analysis VARCHAR NOT NULL,
            "check" VARCHAR NOT NULL,
            subject VARCHAR,
            title VARCHAR NOT NULL DEFAULT '',
            severity VARCHAR NOT NULL,
            passed BOOLEAN NOT NULL,
            value FLOAT,
            threshold FLOAT,
            message VARCHAR NOT NULL DEFAULT '',
            tags JSON,
            details JSON
        )"""))
    connection.execute(text("CREATE INDEX ix_finding_run_id ON finding (run_id)"))
    connection.execute(text('CREATE INDEX ix_finding_check ON finding ("check")'))
    connection.execute(text("""
        CREATE TABLE metric (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id VARCHAR NOT NULL REFERENCES run (id),
            result_id INTEGER NOT NULL REFERENCES analysis_result (id),
            position INTEGER NOT NULL DEFAULT 0,
            analysis VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            subject VARCHAR,
            "group" VARCHAR,
            value FLOAT,
            lower FLOAT,
            upper FLOAT,
            count INTEGER,
            unit VARCHAR,
            details JSON
        )"""))
    connection.execute(text("CREATE INDEX ix_metric_run_id ON metric (run_id)"))
    connection.execute(text("""
        CREATE TABLE artifact (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id VARCHAR NOT NULL REFERENCES run (id),
            result_id INTEGER NOT NULL REFERENCES analysis_result (id),
            position INTEGER NOT NULL DEFAULT 0,
            analysis VARCHAR NOT NULL,
            name VARCHAR NOT NULL,
            title VARCHAR NOT NULL DEFAULT '',
            caption VARCHAR NOT NULL DEFAULT '',
            subject VARCHAR,
            mime VARCHAR NOT NULL,
            content BLOB
        )"""))
    connection.execute(text("CREATE INDEX ix_artifact_run_id ON artifact (run_id)"))


@migration
def m002_clean_pass_cost_templates_and_waivers(connection):
    """Record the shared clean pass and the template folder; add accepted-risk waivers."""
    connection.execute(text("ALTER TABLE run ADD COLUMN template_dir VARCHAR"))
    connection.execute(text("ALTER TABLE run ADD COLUMN clean_forward_rows INTEGER NOT NULL DEFAULT 0"))
    connection.execute(text("ALTER TABLE run ADD COLUMN clean_seconds FLOAT NOT NULL DEFAULT 0"))
    connection.execute(text("""
        CREATE TABLE waiver (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at DATETIME NOT NULL,
            model_path VARCHAR NOT NULL DEFAULT '',
            analysis VARCHAR,
            "check" VARCHAR NOT NULL,
            subject VARCHAR,
            reason VARCHAR NOT NULL,
            author VARCHAR NOT NULL DEFAULT '',
            source_run_id VARCHAR,
            active BOOLEAN NOT NULL DEFAULT 1
        )"""))


_POSTGRES_SPELLINGS = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bDATETIME\b", re.I), "TIMESTAMP"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\b(BOOLEAN(?:\s+NOT\s+NULL)?\s+DEFAULT\s+)1\b", re.I), r"\1TRUE"),
    (re.compile(r"\b(BOOLEAN(?:\s+NOT\s+NULL)?\s+DEFAULT\s+)0\b", re.I), r"\1FALSE"),
]


def postgres_ddl(statement: str) -> str:
    """The SQLite spellings of a migration's DDL in PostgreSQL's."""
    for pattern, replacement in _POSTGRES_SPELLINGS:
        statement = pattern.sub(replacement, statement)
    return statement


@migration
def m003_run_liveness(connection):
    """Who runs a run (process id, host, last sign of life) and which analyses it meant to run.

    A run left `running` by a process that died is shown as abandoned; the
    planned analyses let a report of an unfinished run list those that never ran.
    """
    connection.execute(text("ALTER TABLE run ADD COLUMN pid INTEGER"))
    connection.execute(text("ALTER TABLE run ADD COLUMN host VARCHAR"))
    connection.execute(text("ALTER TABLE run ADD COLUMN heartbeat_at DATETIME"))
    connection.execute(text("ALTER TABLE run ADD COLUMN planned JSON"))


@migration
def m004_run_frameworks_and_waiver_digest(connection):
    """Store the framework texts each run was judged against; key waivers by the model file's digest.

    Waivers recorded before take the digest of the run they were recorded
    from; one whose run is gone keeps matching by its model path.
    """
    connection.execute(text("ALTER TABLE run ADD COLUMN frameworks JSON"))
    connection.execute(text("ALTER TABLE waiver ADD COLUMN model_sha256 VARCHAR NOT NULL DEFAULT ''"))
    connection.execute(text("""
        UPDATE waiver SET model_sha256 = COALESCE((SELECT run.model_sha256 FROM run WHERE run.id = waiver.source_run_id), '')
        WHERE model_path != '' AND source_run_id IS NOT NULL"""))

@migration
def m005_finding_verdicts_and_intervals(connection):
    """Three verdicts (passed, failed, inconclusive) and each finding's interval, level, method and rows;
    whether a run's gate also counts inconclusive checks.

    Findings stored before keep the verdict their pass/fail flag said; they have
    no interval.
    """
    connection.execute(text("ALTER TABLE finding ADD COLUMN verdict VARCHAR NOT NULL DEFAULT 'failed'"))
    connection.execute(text("UPDATE finding SET verdict = 'passed' WHERE passed"))
    connection.execute(text("ALTER TABLE run ADD COLUMN fail_on_inconclusive BOOLEAN NOT NULL DEFAULT 0"))
    for column, kind in (("lower", "FLOAT"), ("upper", "FLOAT"), ("level", "FLOAT"), ("method", "VARCHAR"), ("rows", "INTEGER")):
        connection.execute(text(f"ALTER TABLE finding ADD COLUMN {column} {kind}"))


@migration
def m007_cost_plans(connection):
    """Each run's cost plan (calibrated speed, budget) and each result's planned passes, estimated seconds and budget reductions."""
    connection.execute(text("ALTER TABLE run ADD COLUMN cost_plan JSON"))
    connection.execute(text("ALTER TABLE analysis_result ADD COLUMN plan JSON"))


@migration
def m009_signoffs_and_report_files(connection):
    """Reviewers' decisions bound to a digest of the run's records; the report files written from each run.

    The tables are frozen here as SQLAlchemy Core definitions (not the live models), so
    the same migration creates them on SQLite and PostgreSQL alike.
    """
    from sqlalchemy import Column, DateTime, ForeignKey, Integer, MetaData, String, Table

    metadata = MetaData()
    Table("run", metadata, Column("id", String, primary_key=True))
    signoff = Table(
        "signoff", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String, ForeignKey("run.id"), nullable=False, index=True),
        Column("created_at", DateTime, nullable=False),
        Column("name", String, nullable=False),
        Column("role", String, nullable=False, default=""),
        Column("decision", String, nullable=False),
        Column("note", String, nullable=False, default=""),
        Column("records_digest", String, nullable=False),
        Column("model_sha256", String, nullable=False, default=""),
        Column("data_sha256", String, nullable=False, default=""),
        Column("previous_link", String, nullable=False),
        Column("link", String, nullable=False),
    )
    report_file = Table(
        "report_file", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String, ForeignKey("run.id"), nullable=False, index=True),
        Column("created_at", DateTime, nullable=False),
        Column("path", String, nullable=False),
        Column("format", String, nullable=False),
        Column("sha256", String, nullable=False, index=True),
        Column("records_digest", String, nullable=False),
    )
    signoff.create(connection)
    report_file.create(connection)

def applied(connection) -> list[str]:
    connection.execute(text("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at DATETIME DEFAULT CURRENT_TIMESTAMP)"))
    # Names sort in the order they were written (m001_, m002_, ...); rowid is SQLite's alone.
    return [row[0] for row in connection.execute(text("SELECT name FROM _migrations ORDER BY name"))]


def pending(engine) -> bool:
    """Whether any migration is still to run, read without taking the write lock."""
    from sqlalchemy import inspect

    with engine.connect() as connection:
        if not inspect(connection).has_table("_migrations"):
            return True
        done = {row[0] for row in connection.execute(text("SELECT name FROM _migrations"))}
    return any(name not in done for name, _ in MIGRATIONS)


def migrate(engine, upto: str | None = None) -> list[str]:
    """Apply pending migrations (optionally stopping after `upto`) in one locked transaction; return the names applied."""
    if upto is None and not pending(engine):
        return []  # readers of an up-to-date database never take the write lock
    if engine.dialect.name == "sqlite":
        return _migrate_sqlite(engine, upto)
    return _migrate_locked(engine, upto)


def _apply(connection, upto: str | None) -> list[str]:
    done = []
    already = set(applied(connection))
    for name, function in MIGRATIONS:
        if name not in already:
            try:
                function(connection)
            except Exception as error:
                raise MigrationFailed(name, error) from error
            connection.execute(text("INSERT INTO _migrations (name) VALUES (:name)"), {"name": name})
            done.append(name)
        if name == upto:
            break
    return done


def _migrate_sqlite(engine, upto: str | None) -> list[str]:
    # pysqlite's own transaction handling commits DDL as it goes; with the driver in
    # autocommit mode the BEGIN EXCLUSIVE ... COMMIT below is the only transaction.
    with engine.connect() as outer:
        connection = outer.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("BEGIN EXCLUSIVE")
        try:
            done = _apply(connection, upto)
        except BaseException:
            connection.exec_driver_sql("ROLLBACK")
            raise
        connection.exec_driver_sql("COMMIT")
    return done


def _migrate_locked(engine, upto: str | None) -> list[str]:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            def translate(conn, cursor, statement, parameters, context, executemany):
                return postgres_ddl(statement), parameters

            event.listen(connection, "before_cursor_execute", translate, retval=True)
            # Held to the end of the transaction: the second process sees the first's tables.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK})
        return _apply(connection, upto)


class MigrationFailed(AuditError):
    def __init__(self, name: str, error: Exception):
        first = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        super().__init__(f"database migration {name} failed ({first}); it was rolled back whole and the database is as it was")
        self.name = name
