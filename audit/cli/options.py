"""Options several commands share, declared once so that their flags and help read the same everywhere."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

DbOption = Annotated[
    Optional[str],
    typer.Option("--db", help="Database path or URL. Default: $AUDIT_DB or ./.audit/audit.db.", show_default=False),
]

JsonOption = Annotated[
    bool,
    typer.Option("--json", help='Print JSON on stdout; bad usage or input (exit 2) prints {"status": "rejected", "exit_code": 2, "error": ...}.'),
]

ThreadsOption = Annotated[
    Optional[int],
    typer.Option("--threads", help="CPU threads for torch and onnxruntime. Default: $AUDIT_THREADS, else the runtime's own.",
                 show_default=False),
]

# The statuses a run can be stored with (audit/store/models.py), and `abandoned` (a `running` run whose
# process is gone, audit/store/liveness.py); `runs --status` accepts only these.
RUN_STATUSES = ("running", "ok", "failed", "error", "interrupted", "skipped", "abandoned")
