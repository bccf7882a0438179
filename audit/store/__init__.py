"""The findings store: SQLite through SQLModel, WAL mode, one transaction per analysis."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from audit.errors import AuditError

DEFAULT_DB = Path(".audit") / "audit.db"
SQLITE_MAGIC = b"SQLite format 3\x00"


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
        return location
    if path.is_dir():
        raise AuditError(f"database path {path} is a folder; give a file path such as {path / 'audit.db'}")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            header = handle.read(16)
        if header != SQLITE_MAGIC:
            raise AuditError(f"{path} is not a SQLite database; point --db (or AUDIT_DB) at an audit database or a new file")
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
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
        else:
            url = location
        self.location = str(path) if path is not None else location
        self.engine = create_engine(url)
        if url.startswith("sqlite"):
            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_connection, _record):
                cursor = dbapi_connection.cursor()
                # WAL lets a report be read while a run is writing; each analysis
                # commits on its own, so a crash loses at most the one in flight.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()
        from audit.store.migrations import migrate

        migrate(self.engine)

    def session(self):
        from sqlmodel import Session

        return Session(self.engine, expire_on_commit=False)

    # -- writing --------------------------------------------------------------
    def create_run(self, **fields: Any):
        from audit.store.models import Run

        run = Run(id=fields.pop("id", None) or new_run_id(), **fields)
        with self.session() as session:
            session.add(run)
            session.commit()
        return run

    def update_run(self, run_id: str, **fields: Any):
        from audit.store.models import Run

        with self.session() as session:
            run = session.get(Run, run_id)
            for key, value in fields.items():
                setattr(run, key, value)
            session.add(run)
            session.commit()
            return run

    def save_result(self, run_id: str, result: dict[str, Any], findings=(), metrics=(), artifacts=()) -> int:
        """Persist one analysis and everything it yielded, in one transaction."""
        from audit.store.models import AnalysisResult, Artifact, FindingRecord, MetricRecord

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

    def add_waiver(self, **fields: Any):
        from audit.store.models import Waiver

        waiver = Waiver(**fields)
        with self.session() as session:
            session.add(waiver)
            session.commit()
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


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
