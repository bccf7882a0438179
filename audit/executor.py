"""Where the analyses of one run execute: in this process, or as Ray tasks (their row shards on Ray actors) with this process the only writer."""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any

from audit.errors import AuditError, Terminated

EXECUTORS = ("local", "ray")

# A stop (Ctrl-C, SIGTERM) reaches only the main thread, and a fan-out's runs wait on Ray in
# worker threads, where `ray.get` would block on past Ray's shutdown: the main thread
# records the stop here, and each run's thread ends its own run with it (stored interrupted).
_stop_requested: list[BaseException] = []


def request_stop(stop: BaseException) -> None:
    """Ask every run waiting on Ray in this process to end as interrupted by `stop` (a KeyboardInterrupt or Terminated)."""
    if not _stop_requested:
        _stop_requested.append(stop)


def stop_requested() -> BaseException | None:
    """The stop a fan-out's main thread received, or None."""
    return _stop_requested[0] if _stop_requested else None


def clear_stop() -> None:
    _stop_requested.clear()


def check_executor(executor: str, ray_address: str | None) -> str:
    """Refuse an unknown executor, or Ray when it is not installed, before anything runs."""
    executor = (executor or "local").strip().lower()
    if executor not in EXECUTORS:
        raise AuditError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise AuditError("--ray ADDRESS is for --executor ray; add --executor ray or drop --ray")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise AuditError("--executor ray needs Ray, which is not installed; run: pip install 'classifier-audit[ray]'")
    return executor


def init_ray(address: str | None = None) -> None:
    """Join the cluster at `address`, or start a local Ray; a Ray already started by the caller is reused."""
    import logging

    import ray

    _ray_messages_to_stderr()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as error:  # noqa: BLE001 - Ray raises plain Exception when its node does not come up
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AuditError(f"cannot start or join Ray{f' at {address}' if address else ''}: {first}") from None


def _ray_messages_to_stderr() -> None:
    """Ray prints a dead worker's error to the driver's stdout, which would corrupt `--json`: send it to stderr.

    Ray offers no setting for it, so its printing function is wrapped; should a Ray
    release rename it, nothing breaks here (the executor test checks stdout stays JSON).
    """
    try:
        from ray._private import worker
    except ImportError:
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "audit_to_stderr", False):
        return

    def to_stderr(data, *args, **kwargs):
        return original({**data, "is_err": True}, *args, **kwargs)

    to_stderr.audit_to_stderr = True
    worker.print_to_stdstream = to_stderr


# One model per worker process: the tasks of a run that land on the same worker share it.
_worker_models: dict[tuple, Any] = {}


def _worker_model(model_path: str, load_options):
    import os

    from audit import models

    stat = os.stat(model_path)
    key = (model_path, stat.st_size, stat.st_mtime_ns, repr(load_options))
    if key not in _worker_models:
        _worker_models.clear()  # a worker serves one model at a time; keep its memory bounded
        _worker_models[key] = models.load(model_path, load_options)
    return _worker_models[key]


def _analyse(model_path: str, load_options, dataset, predictions, logits, analysis, seed: int, rows=None):
    """One analysis in a Ray worker: the same `execute` and seed as in one process, findings returned, none stored.

    Its ``ctx.map_rows`` shards go to ``rows``, the run's pool of row workers.
    """
    from audit.runner import RunInterrupted, execute
    from audit.sharding import rows_on

    from audit.data import bind_model

    model = _worker_model(model_path, load_options)
    bind_model(dataset, model)  # string inputs read their categories from the data, in every process
    try:
        with rows_on(rows):
            return execute(analysis, model, dataset, seed=seed, predictions=predictions, logits=logits)
    except RunInterrupted as stop:
        return stop.outcome


def cluster_workers(on_gpu: bool) -> int:
    """How many row workers the run's pool gets: one per GPU on a GPU run, else one per CPU of the cluster."""
    import ray

    resources = ray.cluster_resources()
    return max(1, int(resources.get("GPU" if on_gpu else "CPU", 1)))


class _RowWorker:
    """A Ray actor holding the run's model, loaded once; it runs shards and reports the passes they cost."""

    def __init__(self, model_path: str, load_options, categories=None):
        from audit.data import bind_model

        self.model = _worker_model(model_path, load_options)
        if categories is not None:  # a model with string inputs reads the data's categories here too, as in every process
            bind_model(categories, self.model)

    def run(self, fn: Callable, seed: int, *arrays):
        start = self.model.counters.snapshot()
        from audit.sharding import run_shard

        result = run_shard(self.model, fn, seed, arrays)
        used = self.model.counters.since(start)
        return result, (used.forward_rows, used.backward_rows, used.forward_seconds, used.backward_seconds)


# A worker process whose actor is killed (out of memory, a lost node) is restarted,
# loading the model again, and the shards it held are run again: their seeds do not
# depend on where they run, so a retried shard returns what the first try would have.
ACTOR_RESTARTS = 2


class RayRows:
    """The shards spread over a pool of Ray actors, each holding the model; a plain list of actor handles, so it pickles."""

    def __init__(self, actors: list):
        self.actors = list(actors)

    @classmethod
    def start(cls, model_path: str, load_options, workers: int, gpus_each: float = 0.0, dataset=None) -> "RayRows":
        """Start ``workers`` actors, each loading the model once (and binding it to ``dataset``'s categories, if given).

        On CPU the actors reserve no CPU: the analysis task waiting on their shards
        holds one and sits idle, so reserving another would only let the pool starve
        the analyses of CPUs. On a GPU each takes ``gpus_each`` of one.
        """
        import ray

        worker = ray.remote(num_cpus=0, num_gpus=gpus_each, max_restarts=ACTOR_RESTARTS,
                            max_task_retries=ACTOR_RESTARTS, scheduling_strategy="SPREAD")(_RowWorker)
        categories = None
        if dataset is not None:  # what `bind_model` reads, without the rows
            from types import SimpleNamespace

            categories = SimpleNamespace(path=dataset.path, modality=dataset.modality, feature_names=dataset.feature_names,
                                         categories=dataset.categories)
        return cls([worker.remote(model_path, load_options, categories) for _ in range(max(1, int(workers)))])

    def map(self, model, fn: Callable, arrays: Sequence, bounds: list[tuple[int, int]], seeds: list[int]) -> list:
        """Submit every shard at once, round robin over the actors; results in shard order, their passes counted on ``model``."""
        import ray

        pending = [
            self.actors[index % len(self.actors)].run.remote(fn, seed, *[a[start:stop] for a in arrays])
            for index, ((start, stop), seed) in enumerate(zip(bounds, seeds))
        ]
        try:
            done = ray.get(pending)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            raise
        counters = model.counters
        results = []
        for result, (forward_rows, backward_rows, forward_seconds, backward_seconds) in done:
            counters.forward_rows += forward_rows
            counters.backward_rows += backward_rows
            counters.forward_seconds += forward_seconds
            counters.backward_seconds += backward_seconds
            results.append(result)
        return results

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


@contextlib.contextmanager
def _sigterm_noted():
    """Note a SIGTERM that arrives inside ``ray.get``.

    Ray turns whatever a signal handler raises during ``ray.get`` into a plain
    KeyboardInterrupt, so the run's Terminated would read as Ctrl-C (exit 130,
    not 143); the note lets the executor raise Terminated again.
    """
    import signal
    import threading

    noted: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield noted
        return

    def note(signum, frame):
        noted.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGTERM, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGTERM, previous)


class RayAnalyses:
    """The analyses of one run submitted as Ray tasks at once; their outcomes collected in the run's order.

    The driver keeps the clean predictions it computed and ships them with the data
    through Ray's object store, so every task sees the exact inputs a single-process
    run would; each analysis seeds itself from the run seed and its name, so where
    it runs does not change what it finds.
    """

    def __init__(self, spec, dataset, predictions, logits, analyses: dict[str, Any], load_options):
        import ray

        from audit.sharding import SHARD_ROWS

        init_ray(getattr(spec, "ray_address", None))
        on_gpu = str(spec.device or "").startswith("cuda")
        # On a GPU an analysis and a row worker share each device: both hold half of
        # it, so a pool that held whole GPUs could never leave one to the analyses.
        gpus = 0.5 if on_gpu else 0
        # Retries cover a worker process that dies (Ray's system failures); an
        # analysis that raises is caught inside `execute` and comes back as its error.
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=2)(_analyse)
        data_ref, predictions_ref, logits_ref = ray.put(dataset), ray.put(predictions), ray.put(logits)
        # An absolute path: a worker's working folder is not the driver's. On a
        # cluster the model must lie at the same path on every node (a shared file system).
        from pathlib import Path

        model_path = str(Path(spec.model).resolve())
        # The row workers start only when some analysis can cut the data into more than one shard:
        # with fewer rows, map_rows runs in the analysis's own task and a pool would be idle cost.
        declared = [getattr(a.options, "shard_rows", None) for a in analyses.values()]
        smallest_shard = min([SHARD_ROWS] + [rows for rows in declared if isinstance(rows, int) and rows >= 1])
        self.rows = (RayRows.start(model_path, load_options, cluster_workers(on_gpu), gpus_each=gpus, dataset=dataset)
                     if len(dataset) > smallest_shard else None)
        self.refs = {
            name: task.remote(model_path, load_options, data_ref, predictions_ref, logits_ref, analysis, int(spec.seed), self.rows)
            for name, analysis in analyses.items()
        }

    def outcome(self, name: str):
        """The outcome of analysis `name`, waiting for it; Ctrl-C cancels the tasks still running."""
        import ray

        from audit.runner import AnalysisOutcome, RunInterrupted

        ref = self.refs.pop(name)
        try:
            with _sigterm_noted() as noted:
                # Short waits, not one blocking get: a stop noted by another thread ends this run too.
                while not ray.wait([ref], timeout=0.5)[0]:
                    if stop_requested() is not None:
                        raise type(stop_requested())(*stop_requested().args)
                outcome = ray.get(ref)
        except KeyboardInterrupt as stop:
            self.cancel()
            if noted and not isinstance(stop, Terminated):
                raise Terminated() from None
            raise
        except ray.exceptions.RayError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            outcome = AnalysisOutcome(name, "error", f"the Ray task failed after its retries: {type(error).__name__}: {first}")
        if not self.refs and self.rows is not None:
            self.rows.close()  # the last analysis is back: the row workers and their models go
        if outcome.status == "interrupted":
            self.cancel()
            raise RunInterrupted(outcome, KeyboardInterrupt(outcome.reason))
        return outcome

    def cancel(self) -> None:
        import ray

        for ref in self.refs.values():
            ray.cancel(ref, force=True)
        self.refs.clear()
        if self.rows is not None:
            self.rows.close()
