"""Every output location is checked before the audit starts; a report that fails to write is not a pass."""

import errno
import os
import sqlite3

import pytest

from tests.test_bad_input import assert_clean_error, digest, existing_db  # noqa: F401 - the fixture


def audit_args(assets, *extra):
    return ["run", assets.mlp_onnx, "--data", assets.data_npz, "-a", "performance", *extra]


def test_missing_template_dir_is_refused_before_work(cli, assets, existing_db, tmp_path):
    before = digest(existing_db)
    assert_clean_error(cli(*audit_args(assets, "--template-dir", tmp_path / "nope")), "--template-dir", "nope", "not a folder")
    assert digest(existing_db) == before


def test_read_only_database_is_refused_before_work(cli, assets, existing_db, monkeypatch):
    before = digest(existing_db)
    real_access = os.access
    # The tests may run as root, who writes through file modes: stand in for a read-only file.
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if (str(path) == str(existing_db) and mode == os.W_OK) else real_access(path, mode, **kw))
    assert_clean_error(cli(*audit_args(assets)), "audit.db cannot be written", "read-only", "--db")
    assert digest(existing_db) == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through file modes")
def test_read_only_database_file_mode(cli, assets, existing_db):
    os.chmod(existing_db, 0o444)
    try:
        assert_clean_error(cli(*audit_args(assets)), "cannot be written")
    finally:
        os.chmod(existing_db, 0o644)


def test_corrupted_database_is_refused_before_work(cli, assets, existing_db):
    connection = sqlite3.connect(existing_db)
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.close()
    assert pages > 3
    data = bytearray(existing_db.read_bytes())
    # Scribble over the header of page 2 (a table's b-tree root), leaving the file header and the schema intact.
    start = page_size
    data[start:start + 64] = b"\xff" * 64
    existing_db.write_bytes(bytes(data))
    before = digest(existing_db)
    assert_clean_error(cli(*audit_args(assets)), "audit.db is corrupted", "integrity_check", "--db")
    assert digest(existing_db) == before


def test_report_into_a_missing_folder_is_created(cli, assets, tmp_path):
    code, out, err = cli(*audit_args(assets, "--report", tmp_path / "new" / "folder" / "r.md"))
    assert code == 0, err
    assert (tmp_path / "new" / "folder" / "r.md").exists()


def test_report_that_fails_to_write_is_not_a_pass(cli, assets, tmp_path, monkeypatch):
    import audit.report

    real_write = audit.report.write_report

    def disk_full(store, run_id, target, **kwargs):
        if str(target).endswith(".md"):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_write(store, run_id, target, **kwargs)

    monkeypatch.setattr(audit.report, "write_report", disk_full)
    code, out, err = cli(*audit_args(assets, "--report", tmp_path / "r.md"))
    assert code == 3, (out, err)
    assert "r.md was not written" in err and "No space left on device" in err and "audit report" in err
    from audit.store import Store

    run = Store(str(tmp_path / "audit.db")).runs()[0]
    assert run.status == "ok" and Store(str(tmp_path / "audit.db")).findings(run.id)
