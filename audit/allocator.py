"""Fixed glibc malloc thresholds for an audit run, so tensor-sized buffers are reused rather than mapped and faulted in anew."""

from __future__ import annotations

import os
import sys

# mallopt parameter numbers from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024


def tune_malloc() -> str:
    """Pin glibc's mmap and trim thresholds for this process; says what was done.

    By default glibc serves blocks over 128 KiB with mmap and adapts that
    threshold, and the heap's top, to the pattern of frees so far. Batches of
    activations are a few MB, and whether a process settles into reusing
    them or into unmapping and faulting them in again on every call depends
    on its early frees: the same TorchScript CNN ran the same 300-step Square
    attack in 0.51 s or in 0.88 s from one fresh process to the next, with 4x
    the page faults in the slow ones. Fixed thresholds keep every process on
    the fast side. Freed memory up to 256 MiB stays with the process until it
    exits, which a command-line run can afford.

    Left alone where the user already tunes malloc through GLIBC_TUNABLES,
    and off glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return "not tuned: not Linux"
    if "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "not tuned: GLIBC_TUNABLES sets malloc options"
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return "not tuned: the C library is not glibc"
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        return "not tuned: mallopt is not available"
    return "mmap threshold 32 MiB, trim threshold 256 MiB" if done else "not tuned: mallopt refused the thresholds"
