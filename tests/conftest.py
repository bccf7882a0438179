"""Shared fixtures: every test runs in a temporary folder with its own database."""

import os

import pytest


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep tests off the user's files and other installed plugins."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDIT_DB", str(tmp_path / "audit.db"))
    monkeypatch.setenv("AUDIT_LOAD_PLUGINS", os.environ.get("AUDIT_TEST_PLUGINS", "audit"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from audit.plugins import reset_plugin_manager

    reset_plugin_manager()
    yield tmp_path
    reset_plugin_manager()
