"""Independent runs side by side in worker processes, their output shown in the runs' order (the demo's runs on a machine's cores).

Much of a run is single-threaded Python (plotting, report layout, statistics),
so two runs at once on two cores finish well before one run after the other
with two threads each. Each worker is a spawned process (no fork after torch
or onnxruntime started threads) in its own process group: a Ctrl-C or SIGTERM
reaches this process only, and it passes exactly one stop of the same kind to
the workers, whose runs store themselves interrupted as a single run does.
Runs not yet started when the stop comes never start.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from collections.abc import Iterator

# Set in each worker by _start_worker: the event this process sets when a stop came.
_stopped = None


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(runs: int) -> int:
    """One run per CPU core this process may use, at most ``runs``."""
    return max(1, min(runs, cpu_cores()))


def _start_worker(stopped) -> None:
    global _stopped
    _stopped = stopped
    os.setpgrp()  # a terminal's Ctrl-C goes to the parent alone, which forwards one stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an idle worker outlives a forwarded Ctrl-C quietly


def _one_run(spec, extra_formats: tuple[str, ...], as_json: bool):
    """(exit code, view, reports written, captured stdout, captured stderr), or None when a stop came before it began."""
    from audit.cli.running import audit_and_report

    if _stopped is not None and _stopped.is_set():
        return None
    out, err = io.StringIO(), io.StringIO()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code, view, written = audit_and_report(spec, progress=not as_json, extra_formats=extra_formats, stdout_is_json=as_json)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code, view, written, out.getvalue(), err.getvalue()


def runs_side_by_side(specs: list, jobs: int, extra_formats: tuple[str, ...] = (), as_json: bool = False) -> Iterator[tuple]:
    """Yield (spec, result) in the order of ``specs`` as each run is done; ``result`` as ``_one_run`` returns it.

    A run's exception (a refused model, a stop before its run was stored) is
    raised here in its turn, after the runs in flight have finished. On a stop
    the workers get it, the rest never start, and the stop is raised once the
    runs in flight have stored themselves.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import wait as wait_for

    from audit.errors import Terminated
    from audit.signals import sigterm_as_interrupt

    context = multiprocessing.get_context("spawn")
    stopped = context.Event()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker, initargs=(stopped,))
    futures = [pool.submit(_one_run, spec, extra_formats, as_json) for spec in specs]
    try:
        with sigterm_as_interrupt():
            for spec, future in zip(specs, futures):
                while not wait_for([future], timeout=0.5).done:  # a timed wait, so Ctrl-C and SIGTERM land at once
                    pass
                yield spec, future.result()
    except KeyboardInterrupt as stop:
        stopped.set()
        for future in futures:
            future.cancel()
        kind = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        for worker in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, kind)
        raise
    except BaseException:
        stopped.set()
        for future in futures:
            future.cancel()
        raise
    finally:
        # Runs in flight finish (or store themselves interrupted) before this returns: none is left "running".
        with contextlib.suppress(Exception):
            pool.shutdown(wait=True, cancel_futures=True)


def replay(result) -> None:
    """A worker's captured output, printed here as if the run had been in this process."""
    _, _, _, out, err = result
    if err:
        sys.stderr.write(err)
    if out:
        sys.stdout.write(out)
