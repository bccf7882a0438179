"""SIGTERM handled as Ctrl-C during a run, and stops held while an analysis is being written."""

from __future__ import annotations

import contextlib

from audit.errors import Terminated


def interrupt_reason(stop: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted by the user (Ctrl-C)"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into Terminated (a KeyboardInterrupt) for the run, so it ends as Ctrl-C does."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM while an analysis is written, so a stop lands between transactions, not inside one."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
