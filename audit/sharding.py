"""Per-row work over row shards: in this process one shard after another, or on a pool of Ray actors that hold the model.

An analysis calls ``ctx.map_rows(fn, *arrays, purpose=..., shard_rows=...)``.
The rows are cut into shards of ``shard_rows`` (the last one shorter) and
``fn(model, rng, *shard_arrays)`` runs once per shard, its ``rng`` seeded from
the analysis seed (or the ``seed`` given), ``purpose`` and the shard's index. The shards, not the
number of workers, fix every random draw, so the same seed gives the same
results bit for bit whether the shards ran here one after another or on any
number of Ray workers. With as many rows as ``shard_rows`` or fewer there is
one shard and ``fn`` gets the arrays as they are: the in-process path costs
one function call more than calling ``fn`` directly.

``fn`` must be picklable without the Context (a module-level function, or a
``functools.partial`` of one): under ``--executor ray`` it travels to the
workers. It returns one array, or a tuple of arrays, with one entry per row
(axis 0); the shards' results are concatenated in row order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from audit.analysis import derive_seed

__all__ = ["SHARD_ROWS", "LocalRows", "map_rows", "rows_on", "shard_bounds", "shard_seeds"]

# Large enough that every built-in analysis at its default max_rows is one shard:
# in one process nothing changes; over Ray an audit of 10^6 rows is 16 shards.
SHARD_ROWS = 65_536


def shard_bounds(n: int, shard_rows: int) -> list[tuple[int, int]]:
    """(start, stop) of each shard of ``n`` rows; one (0, n) shard when n <= shard_rows (n = 0 included)."""
    if int(shard_rows) < 1:
        raise ValueError(f"shard_rows must be at least 1, not {shard_rows}")
    if n <= shard_rows:
        return [(0, n)]
    return [(start, min(start + shard_rows, n)) for start in range(0, n, shard_rows)]


def shard_seeds(seed: int, purpose: str, count: int) -> list[int]:
    """One seed per shard, from the analysis seed, the purpose and the shard's index: never from a worker."""
    return [derive_seed(seed, f"{purpose}/shard{index}") for index in range(count)]


def _combine(results: list):
    """The shards' results in row order: each array (or each position of a tuple) concatenated along axis 0."""
    import numpy as np

    if len(results) == 1:
        return results[0]
    if isinstance(results[0], tuple):
        return tuple(np.concatenate(parts, axis=0) for parts in zip(*results))
    return np.concatenate(results, axis=0)


def run_shard(model, fn: Callable, seed: int, arrays: Sequence):
    import numpy as np

    return fn(model, np.random.default_rng(seed), *arrays)


class LocalRows:
    """The shards in this process, one after another, on the run's model."""

    def map(self, model, fn: Callable, arrays: Sequence, bounds: list[tuple[int, int]], seeds: list[int]) -> list:
        if len(bounds) == 1:  # no slicing, no copies: the same call as without sharding
            return [run_shard(model, fn, seeds[0], arrays)]
        return [run_shard(model, fn, seed, [a[start:stop] for a in arrays]) for (start, stop), seed in zip(bounds, seeds)]


LOCAL = LocalRows()
# Set by the Ray executor (audit.executor.RayRows) in a worker for the analysis it runs; None: this process.
_current: Any = None


@contextlib.contextmanager
def rows_on(executor):
    """Run the shards of ``ctx.map_rows`` calls made inside this block on ``executor`` (a Ray worker runs one task at a time)."""
    global _current
    previous, _current = _current, executor
    try:
        yield
    finally:
        _current = previous


def map_rows(ctx, fn: Callable, arrays: Sequence, purpose: str, shard_rows: int = SHARD_ROWS, seed: int | None = None):
    """``fn(model, rng, *shard)`` over the row shards of ``arrays`` (all of one length), results concatenated in row order.

    The shard seeds derive from ``seed``, by default the analysis's own (``ctx.seed``).
    """
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"map_rows: the arrays have different numbers of rows {sorted(lengths)}")
    bounds = shard_bounds(lengths.pop(), shard_rows)
    seeds = shard_seeds(ctx.seed if seed is None else seed, purpose, len(bounds))
    executor = _current if _current is not None and len(bounds) > 1 else LOCAL
    return _combine(executor.map(ctx.model, fn, arrays, bounds, seeds))
