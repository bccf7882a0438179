"""Helpers every analysis needs, public so plugins stop writing their own: row subsets, figures, out-of-memory.

Documented in docs/plugins.md. The context-bound ones are methods of
`audit.Context` (``sample_rows``, ``seed_for``, ``rng_for``, ``class_names``);
statistics are in `audit.stats`. Nothing here imports torch or pyplot.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["is_out_of_memory", "new_figure", "one_torch_thread", "subsample"]


def subsample(n: int, max_rows: int | None, rng) -> Any:
    """Sorted indices of ``max_rows`` of ``n`` rows drawn without replacement from ``rng``; None when n <= max_rows."""
    import numpy as np

    if max_rows is None or n <= max_rows:
        return None
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def new_figure(figsize: tuple[float, float] = (6.4, 4.8), **kwargs):
    """A matplotlib Figure that pyplot does not track: yield it in ``audit.Figure`` and it is saved and freed.

    Figures made with ``pyplot.subplots`` stay open in pyplot's registry until
    closed (and warn past 20); these are plain objects, collected like any
    other. Add axes with ``fig.subplots(...)`` or ``fig.add_subplot(...)``.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, **kwargs)


def is_out_of_memory(error: BaseException) -> bool:
    """True for an out-of-memory error of torch (CUDA, MPS, CPU) or ONNX Runtime: halve the batch and retry."""
    text = str(error).lower()
    return "out of memory" in text or "failed to allocate" in text or "outofmemory" in type(error).__name__.lower()


@contextlib.contextmanager
def one_torch_thread():
    """Run the block's torch CPU ops on one thread, then restore the run's thread count.

    An optimiser loop over small tensors (a probe's thousand evaluations of a few
    thousand numbers) spends its time waking threads: on 2 cores one thread ran
    the demo's leakage probes 10x faster, and far more so when another process
    holds a core. Model passes over full batches keep every thread.
    """
    import torch

    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
