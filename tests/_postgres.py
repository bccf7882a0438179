"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder, Unix socket only."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path


def find_binaries() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: on PATH, or Debian's versioned folder."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    return None


def _as_user(account: pwd.struct_passwd | None):
    """PostgreSQL refuses to run as root: drop to another account in the child."""
    if account is None:
        return None

    def demote():
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)

    return demote


class PostgresServer:
    """One server per test session; each test gets its own database."""

    def __init__(self, binaries: Path):
        self.binaries = binaries
        # In /tmp: a Unix socket's path must fit in 107 bytes, and the server's account
        # must reach the folder (a $TMPDIR under /root would not do).
        self.folder = Path(tempfile.mkdtemp(prefix="audit-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.account = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        if self.account is not None:
            os.chown(self.folder, self.account.pw_uid, self.account.pw_gid)
        self.data = self.folder / "data"
        self.user = "audit"

    def _run(self, *args: str) -> None:
        result = subprocess.run([str(self.binaries / args[0]), *args[1:]], capture_output=True, text=True,
                                preexec_fn=_as_user(self.account), cwd=self.folder, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> "PostgresServer":
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-k {self.folder} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.folder}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.folder), user=self.user, dbname="postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
