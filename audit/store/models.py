"""SQLModel tables: runs, per-analysis results, findings, metrics, artifacts, waivers."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Run(SQLModel, table=True):
    __tablename__ = "run"

    id: str = Field(primary_key=True)
    started_at: datetime = Field(default_factory=utcnow, index=True)
    finished_at: datetime | None = None
    status: str = Field(default="running", index=True)  # running | ok | failed | error | interrupted | nothing assessed
    exit_code: int | None = None
    model_path: str = Field(index=True)
    model_sha256: str
    model_format: str = ""
    provider: str = ""
    device: str = ""
    model_info: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    data_path: str = ""
    data_sha256: str = ""
    data_rows: int = 0
    data_info: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    seed: int = 0
    argv: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    versions: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    fail_on: str = "high"
    fail_on_inconclusive: bool = False  # inconclusive checks at or above fail_on gate too
    template_dir: str | None = None
    clean_forward_rows: int = 0
    clean_seconds: float = 0.0
    # The compliance frameworks the run was judged against, texts included:
    # [{"id", "title", "plugin", "requirements": {id: text}}]; None for runs before m004.
    frameworks: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    pid: int | None = None  # the process writing the run, on `host`: gone while `running` means abandoned
    host: str | None = None
    heartbeat_at: datetime | None = None
    planned: list[str] | None = Field(default=None, sa_column=Column(JSON))  # the analyses the run meant to run
    # The cost plan (m007): the model's calibrated speed, the budget, the estimated total; None for runs before it.
    cost_plan: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class AnalysisResult(SQLModel, table=True):
    __tablename__ = "analysis_result"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    position: int = 0
    analysis: str
    title: str = ""
    category: str = ""
    plugin: str = ""
    plugin_version: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str  # ok | skipped | error | interrupted
    reason: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    forward_rows: int = 0
    backward_rows: int = 0
    notes: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    # The analysis's planned passes and estimated seconds, and the options a budget reduced (m007).
    plan: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class FindingRecord(SQLModel, table=True):
    __tablename__ = "finding"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    result_id: int = Field(foreign_key="analysis_result.id")
    position: int = 0
    analysis: str
    check: str = Field(index=True)
    subject: str | None = None
    title: str = ""
    severity: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    verdict: str = "failed"  # passed | failed | inconclusive; `passed` is verdict == "passed"
    lower: float | None = None
    upper: float | None = None
    level: float | None = None
    method: str | None = None
    rows: int | None = None


class MetricRecord(SQLModel, table=True):
    __tablename__ = "metric"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    result_id: int = Field(foreign_key="analysis_result.id")
    position: int = 0
    analysis: str
    name: str
    subject: str | None = None
    group: str | None = None
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    count: int | None = None
    unit: str | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Artifact(SQLModel, table=True):
    __tablename__ = "artifact"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    result_id: int = Field(foreign_key="analysis_result.id")
    position: int = 0
    analysis: str
    name: str
    title: str = ""
    caption: str = ""
    subject: str | None = None
    mime: str
    content: bytes = Field(sa_column=Column(LargeBinary))


class Waiver(SQLModel, table=True):
    __tablename__ = "waiver"

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    model_path: str = ""  # "" with an empty model_sha256: every model (--all-models)
    model_sha256: str = ""  # the model file's digest: the waiver follows the file, wherever it lies
    analysis: str | None = None
    check: str
    subject: str | None = None
    reason: str
    author: str = ""
    source_run_id: str | None = None
    active: bool = True


class SignOff(SQLModel, table=True):
    """A reviewer's decision on a run, bound to the digest of its records and chained to the decision before."""

    __tablename__ = "signoff"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    name: str
    role: str = ""
    decision: str  # approve | reject | conditional
    note: str = ""
    records_digest: str
    model_sha256: str = ""
    data_sha256: str = ""
    previous_link: str
    link: str


class ReportFile(SQLModel, table=True):
    """A report file written from a run: its bytes' hash and the records digest it showed."""

    __tablename__ = "report_file"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    path: str
    format: str
    sha256: str = Field(index=True)
    records_digest: str
