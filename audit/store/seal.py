"""Tamper evidence: a hash chain over a run's stored records, and the sign-off chain built on it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

CHAIN_VERSION = "audit-records-v1"

# The run row's identity and outcome; bookkeeping a live process may update (such as
# a liveness heartbeat) is left out so a finished run's digest never moves on its own.
RUN_FIELDS = (
    "id", "started_at", "finished_at", "status", "exit_code", "model_path", "model_sha256", "model_format",
    "provider", "device", "model_info", "data_path", "data_sha256", "data_rows", "data_info", "seed", "argv",
    "config", "versions", "fail_on", "template_dir", "clean_forward_rows", "clean_seconds",
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite hands datetimes back without a zone; both spellings of one instant must hash alike.
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def canonical(record: dict[str, Any]) -> bytes:
    """One byte string per record: sorted keys, no whitespace, floats as Python writes them."""
    return json.dumps(_plain(record), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True).encode()


def _row(obj, fields=None) -> dict[str, Any]:
    data = obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)
    if fields is not None:
        data = {k: data.get(k) for k in fields}
    return data


def record_chain(store, run) -> list[tuple[str, str]]:
    """(what, link) for every record of a run, each link the hash of the previous link and the record.

    Records go in a fixed order (the run, then each table by its own order), so the last
    link is a digest of everything the run stored: editing, adding or removing any
    finding, metric, figure or analysis result changes it.
    """
    link = hashlib.sha256(CHAIN_VERSION.encode()).hexdigest()
    chain = []

    def extend(what: str, record: dict[str, Any]) -> None:
        nonlocal link
        link = hashlib.sha256(link.encode() + b"\n" + canonical(record)).hexdigest()
        chain.append((what, link))

    run_record = _row(run, RUN_FIELDS)
    if getattr(run, "fail_on_inconclusive", False):  # added by m005; absent (False) in runs signed before
        run_record["fail_on_inconclusive"] = True
    extend(f"run {run.id}", run_record)
    for table, rows in (
        ("analysis_result", store.results(run.id)),
        ("finding", store.findings(run.id)),
        ("metric", store.metrics(run.id)),
        ("artifact", store.artifacts(run.id)),
    ):
        for row in rows:
            record = _row(row)
            if table == "finding":
                record = _without_implied_verdict_fields(record)
            extend(f"{table} {row.id}", record)
    return chain


# Columns added to findings by m005: a run signed before it must keep its digest.
FINDING_FIELDS_SINCE_M005 = ("verdict", "lower", "upper", "level", "method", "rows")


def _without_implied_verdict_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Leave out the m005 fields where they say nothing the older fields do not (no interval, the verdict
    that ``passed`` implies), so a digest taken before m005 still verifies; any other value is covered."""
    implied = {"verdict": "passed" if record.get("passed") else "failed"}
    if all(record.get(name) == implied.get(name) for name in FINDING_FIELDS_SINCE_M005):
        return {k: v for k, v in record.items() if k not in FINDING_FIELDS_SINCE_M005}
    return record


def records_digest(store, run) -> str:
    """The last link of the run's record chain."""
    return record_chain(store, run)[-1][1]


def signoff_link(previous: str, signoff: dict[str, Any]) -> str:
    """Each sign-off is chained to the one before it (or to the records digest for the first),
    so removing or editing an earlier decision breaks every later link."""
    fields = {k: signoff[k] for k in ("run_id", "created_at", "name", "role", "decision", "note", "records_digest", "model_sha256", "data_sha256")}
    return hashlib.sha256(previous.encode() + b"\n" + canonical(fields)).hexdigest()


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_signoffs(signoffs) -> list[str]:
    """Problems in a run's sign-off chain: a link that does not follow from its fields and the one before."""
    problems = []
    previous = None
    for signoff in signoffs:
        expected_previous = previous.link if previous is not None else signoff.records_digest
        fields = signoff.model_dump() if hasattr(signoff, "model_dump") else dict(signoff)
        if signoff.previous_link != expected_previous:
            problems.append(f"sign-off {signoff.id} does not follow the one before it (a decision was removed or edited)")
        elif signoff.link != signoff_link(signoff.previous_link, fields):
            problems.append(f"sign-off {signoff.id} was edited after it was recorded")
        previous = signoff
    return problems


def verify_file(store, path) -> dict[str, Any]:
    """Whether a report file was written from a run in this store, and what changed since.

    A file is identified by the hash of its bytes, so any edit to the file itself makes it
    unknown; the run's records are re-hashed and compared with the digest the file showed
    and with the digest each reviewer signed.
    """
    sha = file_sha256(path)
    rendered = store.report_files(sha)
    result: dict[str, Any] = {"file": str(path), "sha256": sha, "known": bool(rendered), "problems": []}
    if not rendered:
        result["problems"].append("this file matches no report written from this database: it was edited after it "
                                  "was written, or written from another database")
        return result
    row = rendered[-1]
    run = store.resolve_run(row.run_id)
    current = records_digest(store, run)
    signoffs = store.signoffs(run.id)
    result.update({
        "run_id": run.id, "format": row.format, "rendered_at": row.created_at, "rendered_digest": row.records_digest,
        "current_digest": current, "signoffs": signoffs,
    })
    if current != row.records_digest:
        result["problems"].append("the run's records changed after this report was written")
    result["problems"].extend(check_signoffs(signoffs))
    if signoffs and signoffs[-1].records_digest != current:
        result["problems"].append(f"the run's records changed after the last sign-off ({signoffs[-1].name}, {signoffs[-1].created_at})")
    return result
