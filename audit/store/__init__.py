"""The findings store: SQLite (WAL mode) or PostgreSQL through SQLModel, one transaction per analysis."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from audit.errors import AuditError

DEFAULT_DB = Path(".audit") / "audit.db"
SQLITE_MAGIC = b"SQLite format 3\x00"
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
# How long a writer waits for another's lock, in SQLite's busy handler and then in
# our retry loop around each transaction: long enough for a farm of CI jobs.
BUSY_TIMEOUT_S = 30.0
WRITE_RETRY_S = 120.0


def _scheme(location: str) -> str:
    return location.split("://", 1)[0].lower()


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown up to its scheme
        return _scheme(url) + "://..."


_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)


def hide_passwords(value):
    """The password of every database URL in a string (or in the strings of a JSON value) as ***, for what is stored."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", value)
    if isinstance(value, dict):
        return {key: hide_passwords(item) for key, item in value.items()}
    if isinstance(value, list):
        return [hide_passwords(item) for item in value]
    return value


def default_location() -> str:
    return os.environ.get("AUDIT_DB") or str(DEFAULT_DB)


def _sqlite_path(location: str) -> Path | None:
    if "://" not in location:
        return Path(location)
    if location.startswith("sqlite:///"):
        return Path(location[len("sqlite:///"):])
    return None


def check_location(location: str | None) -> str:
    """Refuse a path that is not an audit database, before anything is written to it."""
    location = location or default_location()
    path = _sqlite_path(location)
    if path is None:
        scheme = _scheme(location)
        if scheme not in POSTGRES_SCHEMES:
            raise AuditError(f"--db {_redacted(location)}: unsupported database URL; give a file path, sqlite:///PATH or postgresql://USER@HOST/DB")
        import importlib.util

        if importlib.util.find_spec("psycopg") is None:
            raise AuditError("a postgresql:// database needs psycopg, which is not installed; run: pip install 'classifier-audit[postgres]'")
        return location
    if path.is_dir():
        raise AuditError(f"database path {path} is a folder; give a file path such as {path / 'audit.db'}")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            header = handle.read(16)
        if header != SQLITE_MAGIC:
            raise AuditError(f"{path} is not a SQLite database; point --db (or AUDIT_DB) at an audit database or a new file")
        try:
            # Another process may hold the lock while it creates the tables: wait for it.
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
            try:
                tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                applied = set()
                if "_migrations" in tables:
                    applied = {row[0] for row in connection.execute("SELECT name FROM _migrations")}
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            raise AuditError(f"{path} is not a readable SQLite database ({error}); use another --db path") from None
        if tables and "_migrations" not in tables:
            raise AuditError(f"{path} is a SQLite database of another program (tables: {', '.join(sorted(tables)[:5])}); use another --db path")
        from audit.store.migrations import MIGRATIONS

        unknown = applied - {name for name, _ in MIGRATIONS}
        if unknown:
            raise AuditError(f"{path} was written by a newer version of audit (migration {sorted(unknown)[-1]}); upgrade audit")
    else:
        parent = path.parent if str(path.parent) else Path(".")
        probe = parent
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise AuditError(f"cannot create the database {path}: {probe} is not writable; use --db with a writable path")
    return location


class Store:
    """Open (creating and migrating if needed) the database at a path or SQLAlchemy URL."""

    def __init__(self, location: str | None = None, create: bool = True):
        from sqlalchemy import event
        from sqlmodel import create_engine

        location = check_location(location)
        path = _sqlite_path(location)
        if path is not None:
            if not path.exists() and not create:
                raise AuditError(f"no audit database at {path}; run `audit run` first, or pass --db")
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{path}"
            # The busy handler makes a writer wait for another's lock instead of failing at once.
            self.engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        else:
            url = "postgresql+psycopg://" + location.split("://", 1)[1]
            # Times are stored as UTC without a zone, as SQLite stores them.
            self.engine = create_engine(url, connect_args={"options": "-c timezone=UTC"}, pool_pre_ping=True)
        self.location = str(path) if path is not None else _redacted(location)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_connection, _record):
                cursor = dbapi_connection.cursor()
                # WAL lets a report be read while a run is writing; each analysis
                # commits on its own, so a crash loses at most the one in flight.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()
        from sqlalchemy.exc import OperationalError

        from audit.store.migrations import migrate

        try:
            _retrying(lambda: migrate(self.engine))
        except OperationalError as error:
            self.engine.dispose()
            reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
            raise AuditError(f"cannot open the database {self.location}: {reason}") from None

    def session(self):
        from sqlmodel import Session

        return Session(self.engine, expire_on_commit=False)

    # -- writing --------------------------------------------------------------
    def create_run(self, **fields: Any):
        from audit.store.models import Run

        run = Run(id=fields.pop("id", None) or new_run_id(), **fields)

        def write():
            with self.session() as session:
                session.add(run)
                session.commit()

        _retrying(write)
        return run

    def update_run(self, run_id: str, **fields: Any):
        from audit.store.models import Run

        def write():
            with self.session() as session:
                run = session.get(Run, run_id)
                for key, value in fields.items():
                    setattr(run, key, value)
                session.add(run)
                session.commit()
                return run

        return _retrying(write)

    def save_result(self, run_id: str, result: dict[str, Any], findings=(), metrics=(), artifacts=()) -> int:
        """Persist one analysis and everything it yielded, in one transaction."""
        from audit.store.models import AnalysisResult, Artifact, FindingRecord, MetricRecord

        def write():
            with self.session() as session:
                row = AnalysisResult(run_id=run_id, **result)
                session.add(row)
                session.flush()
                for position, finding in enumerate(findings):
                    session.add(FindingRecord(run_id=run_id, result_id=row.id, position=position, analysis=row.analysis, **finding))
                for position, metric in enumerate(metrics):
                    session.add(MetricRecord(run_id=run_id, result_id=row.id, position=position, analysis=row.analysis, **metric))
                for position, artifact in enumerate(artifacts):
                    session.add(Artifact(run_id=run_id, result_id=row.id, position=position, analysis=row.analysis, **artifact))
                session.commit()
                return row.id

        return _retrying(write)

    def add_waiver(self, **fields: Any):
        from audit.store.models import Waiver

        waiver = Waiver(**fields)

        def write():
            with self.session() as session:
                session.add(waiver)
                session.commit()

        _retrying(write)
        return waiver

    # -- reading ----------------------------------------------------------------
    def resolve_run(self, ref: str):
        """A run by id, unique id prefix, or `latest`."""
        from sqlmodel import col, select

        from audit.store.models import Run

        with self.session() as session:
            if ref in ("latest", "last"):
                run = session.exec(select(Run).order_by(col(Run.started_at).desc())).first()
                if run is None:
                    raise AuditError("no runs in the database yet; run `audit run` or `audit demo` first")
                return run
            run = session.get(Run, ref)
            if run is not None:
                return run
            matches = session.exec(select(Run).where(col(Run.id).startswith(ref))).all()
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise AuditError(f"no run {ref!r} in {self.location}; `audit runs` lists them")
        raise AuditError(f"run id {ref!r} is ambiguous ({len(matches)} runs); give more characters")

    def runs(self, model: str | None = None, status: str | None = None, since=None, limit: int | None = None):
        from sqlmodel import col, select

        from audit.store.models import Run

        query = select(Run).order_by(col(Run.started_at).desc())
        if model:
            query = query.where(col(Run.model_path).contains(model))
        if status:
            query = query.where(Run.status == status)
        if since is not None:
            query = query.where(Run.started_at >= since)
        if limit:
            query = query.limit(limit)
        with self.session() as session:
            return list(session.exec(query).all())

    def results(self, run_id: str):
        from sqlmodel import select

        from audit.store.models import AnalysisResult

        with self.session() as session:
            return list(session.exec(select(AnalysisResult).where(AnalysisResult.run_id == run_id).order_by(AnalysisResult.position)).all())

    def findings(self, run_id: str):
        from sqlmodel import select

        from audit.store.models import FindingRecord

        with self.session() as session:
            return list(session.exec(select(FindingRecord).where(FindingRecord.run_id == run_id).order_by(FindingRecord.result_id, FindingRecord.position)).all())

    def metrics(self, run_id: str):
        from sqlmodel import select

        from audit.store.models import MetricRecord

        with self.session() as session:
            return list(session.exec(select(MetricRecord).where(MetricRecord.run_id == run_id).order_by(MetricRecord.result_id, MetricRecord.position)).all())

    def artifacts(self, run_id: str):
        from sqlmodel import select

        from audit.store.models import Artifact

        with self.session() as session:
            return list(session.exec(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.result_id, Artifact.position)).all())

    def waivers(self, active_only: bool = True):
        from sqlmodel import select

        from audit.store.models import Waiver

        query = select(Waiver)
        if active_only:
            query = query.where(Waiver.active == True)  # noqa: E712 - SQL expression
        with self.session() as session:
            return list(session.exec(query).all())

    def revoke_waiver(self, waiver_id: int, by: str):
        """Mark a waiver revoked (it stays listed, with who revoked it and when); None if there is no such waiver."""
        from audit.store.models import Waiver, utcnow

        def write():
            with self.session() as session:
                waiver = session.get(Waiver, waiver_id)
                if waiver is None:
                    return None
                waiver.active, waiver.revoked_at, waiver.revoked_by = False, utcnow().replace(microsecond=0), by
                session.add(waiver)
                session.commit()
                session.refresh(waiver)
                return waiver

        return _retrying(write)

    # -- sign-off and report files ---------------------------------------------
    def signoffs(self, run_id: str):
        from sqlmodel import select

        from audit.store.models import SignOff

        with self.session() as session:
            return list(session.exec(select(SignOff).where(SignOff.run_id == run_id).order_by(SignOff.id)).all())

    def add_signoff(self, run, **fields: Any):
        """Record a decision on a finished run, bound to the digest of its records now."""
        from audit.store.models import SignOff, utcnow
        from audit.store.seal import records_digest, signoff_link

        earlier = self.signoffs(run.id)
        digest = records_digest(self, run)
        previous = earlier[-1].link if earlier else digest
        values = {"run_id": run.id, "created_at": utcnow().replace(microsecond=0), "records_digest": digest,
                  "model_sha256": run.model_sha256, "data_sha256": run.data_sha256, **fields}
        signoff = SignOff(**values, previous_link=previous, link=signoff_link(previous, values))
        with self.session() as session:
            session.add(signoff)
            session.commit()
        return signoff

    def record_report_file(self, run_id: str, path, fmt: str):
        """Remember a written report's hash, so `audit verify FILE` can find its run."""
        from audit.store.models import ReportFile, Run
        from audit.store.seal import file_sha256, records_digest

        with self.session() as session:
            run = session.get(Run, run_id)
        row = ReportFile(run_id=run_id, path=str(path), format=fmt, sha256=file_sha256(path), records_digest=records_digest(self, run))
        with self.session() as session:
            session.add(row)
            session.commit()
        return row

    def report_files(self, sha256: str):
        from sqlmodel import select

        from audit.store.models import ReportFile

        with self.session() as session:
            return list(session.exec(select(ReportFile).where(ReportFile.sha256 == sha256).order_by(ReportFile.id)).all())

    def close(self) -> None:
        self.engine.dispose()


def _transient(error: Exception) -> bool:
    """A lock or serialization conflict that the same transaction survives when tried again."""
    original = getattr(error, "orig", error)
    if getattr(original, "sqlstate", None) in ("40001", "40P01", "55P03"):
        return True  # PostgreSQL: serialization failure, deadlock, lock not available
    message = str(original).lower()
    return isinstance(original, sqlite3.OperationalError) and ("locked" in message or "busy" in message)


def _retrying(write, budget_s: float = WRITE_RETRY_S):
    """Run one whole transaction, again after a lock conflict, with jittered back-off.

    Every write goes through here: a transaction that failed on a lock was rolled
    back, so running it again cannot store anything twice.
    """
    from sqlalchemy.exc import DBAPIError

    deadline = time.monotonic() + budget_s
    delay = 0.02
    while True:
        try:
            return write()
        except DBAPIError as error:
            if not _transient(error) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
