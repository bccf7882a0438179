"""Progress on stderr: a live line per analysis on a terminal (which one, N of M, elapsed, inner bars), plain lines otherwise."""

from __future__ import annotations

import contextlib
import sys
import time

from audit.analysis import Progress


class _RichTask(Progress):
    def __init__(self, bar, total=None, description=""):
        super().__init__(total, description)
        self._bar = bar
        self._task = bar.add_task(f"  {description or 'working'}", total=total)

    def advance(self, amount: int = 1) -> None:
        super().advance(amount)
        self._bar.update(self._task, advance=amount)

    def __exit__(self, *exc):
        self._bar.remove_task(self._task)
        return False


class AnalysisLines:
    """The runner's per-analysis callback: ``starting`` before each analysis, a call with its outcome after.

    ``bar`` (a rich Progress) shows the running analysis live with N of M and
    its elapsed time; without one, each finished analysis is one plain line.
    """

    def __init__(self, bar=None, enabled: bool = True):
        self._bar, self._enabled = bar, enabled
        self._task = None
        self._position, self._total, self._started = 0, 0, time.monotonic()

    def starting(self, name: str, position: int, total: int) -> None:
        self._position, self._total, self._started = position + 1, total, time.monotonic()
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(f"[{self._position}/{total}] {name}", total=None)

    def __call__(self, outcome) -> None:
        if not self._enabled:
            return
        counter = f"[{self._position}/{self._total}] " if self._total else ""
        extra = f" ({outcome.reason})" if outcome.reason and outcome.status != "ok" else ""
        line = f"  {counter}{outcome.name}: {outcome.status} in {outcome.seconds:.1f} s{extra}"
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
                self._task = None
            self._bar.console.print(line, highlight=False, markup=False)
        else:
            print(line, file=sys.stderr)


@contextlib.contextmanager
def console_progress(enabled: bool = True):
    """Yield (progress factory, per-analysis callback) for the runner."""
    if not (enabled and sys.stderr.isatty()):
        yield Progress, AnalysisLines(enabled=enabled)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=Console(stderr=True), transient=True)
    with bar:
        yield (lambda total=None, description="": _RichTask(bar, total, description)), AnalysisLines(bar)
