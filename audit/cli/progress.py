"""Progress on stderr: a live bar on a terminal, one line per analysis otherwise."""

from __future__ import annotations

import contextlib
import sys

from audit.analysis import Progress


class _RichTask(Progress):
    def __init__(self, bar, total=None, description=""):
        super().__init__(total, description)
        self._bar = bar
        self._task = bar.add_task(description or "working", total=total)

    def advance(self, amount: int = 1) -> None:
        super().advance(amount)
        self._bar.update(self._task, advance=amount)

    def __exit__(self, *exc):
        self._bar.remove_task(self._task)
        return False


@contextlib.contextmanager
def console_progress(enabled: bool = True):
    """Yield (progress factory, per-analysis callback) for the runner."""

    def line(outcome):
        if enabled:
            extra = f" ({outcome.reason})" if outcome.reason and outcome.status != "ok" else ""
            print(f"  {outcome.name}: {outcome.status} in {outcome.seconds:.1f} s{extra}", file=sys.stderr)

    if not (enabled and sys.stderr.isatty()):
        yield Progress, line
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

    bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=Console(stderr=True), transient=True)
    with bar:
        yield (lambda total=None, description="": _RichTask(bar, total, description)), (lambda outcome: bar.console.print(
            f"  {outcome.name}: {outcome.status} in {outcome.seconds:.1f} s" + (f" ({outcome.reason})" if outcome.reason and outcome.status != "ok" else "")))
