"""Whether a run stored as `running` is still alive, or was abandoned by a process that died (kill -9, a lost machine)."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone

# A run on another host cannot be checked by its process id; the runner writes a
# heartbeat when it starts and after each analysis, so one silent this long is
# taken as lost. No analysis in this package comes near a day.
SILENT_FOR = timedelta(hours=24)


def this_host() -> str:
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def effective_status(run, now: datetime | None = None) -> str:
    """The stored status, except `abandoned` for a `running` run whose process is gone or silent."""
    if run.status != "running":
        return run.status
    if run.pid and run.host == this_host() and run.pid != os.getpid():
        return "running" if process_alive(int(run.pid)) else "abandoned"
    if run.heartbeat_at is not None:
        now = now or datetime.now(timezone.utc)
        beat = run.heartbeat_at if run.heartbeat_at.tzinfo else run.heartbeat_at.replace(tzinfo=timezone.utc)
        if now - beat > SILENT_FOR:
            return "abandoned"
    return "running"


def never_ran(run, results) -> list[str]:
    """Analyses the run planned that have no stored result: cut off by an interrupt or a dead process."""
    done = {r.analysis if hasattr(r, "analysis") else r["analysis"] for r in results}
    return [name for name in (run.planned or []) if name not in done]
