"""How the runs of a grid are carried out: one small interface, :class:`Executor`, and
the default implementation, :class:`LocalExecutor` (this process, or worker processes on
this machine). :class:`gnpool.bench.ray_executor.RayExecutor` runs them on a Ray cluster.

:func:`gnpool.bench.run_grid` owns everything else: which runs are still to do, the
database (written by the driver alone, one transaction per finished run), progress and
interruption. An executor only trains the runs it is given and hands each row back.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import RunSpec

#: Called by an executor, in the driver's process, with the database row of each run as
#: soon as it ends (finished or failed), in any order.
Record = Callable[[dict[str, Any]], None]


class Executor(ABC):
    """Carries out the runs of a grid for :func:`gnpool.bench.run_grid`."""

    #: The name ``python -m gnpool.bench run --executor`` knows it by.
    name: str = ""

    @abstractmethod
    def run(self, todo: list[RunSpec], record: Record, progress: bool) -> None:
        """Train every run of ``todo`` and call ``record(row)`` for each as it ends.

        A run that fails, or whose worker dies, is recorded as a failed row (see
        :func:`gnpool.bench.runner.execute`); the others go on. Each dataset is generated
        once (its cache on disk, or the object store) rather than per run. On
        ``KeyboardInterrupt``, or an exception raised by ``record``, the runs in progress
        are stopped, the rest are dropped and the exception propagates.

        Args:
            todo: the runs, in the order they should start.
            record: see :data:`Record`; ``run_grid``'s writes the row to the database.
            progress: show per-epoch progress bars where the executor can.
        """


def _run_spec(spec: RunSpec, position: int, progress: bool) -> dict[str, Any]:
    # Looked up at call time, so that gnpool.bench.runner.execute can be patched.
    from . import runner
    return runner.execute(spec, position, progress)


class LocalExecutor(Executor):
    """Runs in this process (``workers=1``) or in ``workers`` worker processes on this
    machine (started with ``spawn``, at most ``workers`` runs in flight).

    Args:
        workers: how many runs train at once.
        threads: torch threads per run; ``None``: torch's default with one worker, 1 per
            worker process with several (so that the workers do not oversubscribe the
            cores).

    Raises:
        ValueError: ``workers`` is not a positive int.
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.workers, self.threads = workers, threads

    def run(self, todo: list[RunSpec], record: Record, progress: bool) -> None:
        from .runner import prepare_data

        # Generated (or checked) once here; worker processes then read the disk cache,
        # a single process keeps the loaded splits for its runs.
        prepare_data(todo, progress, keep=self.workers == 1)
        if self.workers == 1:
            if self.threads:
                import torch
                torch.set_num_threads(self.threads)
            for spec in todo:
                record(_run_spec(spec, 1, progress))
        else:
            _run_parallel(todo, record, self.workers,
                          1 if self.threads is None else self.threads, progress)

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self.workers}, threads={self.threads})"


_POSITION = 1


def _worker_init(slots: Any, threads: int) -> None:
    import torch
    if threads:
        torch.set_num_threads(threads)
    global _POSITION
    _POSITION = slots.get()


def _worker_execute(spec: RunSpec, progress: bool) -> dict[str, Any]:
    return _run_spec(spec, _POSITION, progress)


def _run_parallel(todo: list[RunSpec], record: Record, workers: int, threads: int,
                  progress: bool) -> None:
    from .runner import _failed_row

    # At most `workers` runs are in flight, so a dead worker costs only those runs.
    ctx = mp.get_context("spawn")
    queue = list(reversed(todo))
    while queue:
        slots = ctx.Queue()
        for i in range(workers):
            slots.put(i + 1)
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(slots, threads))
        running: dict[Future, RunSpec] = {}
        try:
            while queue or running:
                while queue and len(running) < workers:
                    spec = queue.pop()
                    running[pool.submit(_worker_execute, spec, progress)] = spec
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    spec = running.pop(future)
                    try:
                        record(future.result())
                    except BrokenProcessPool:
                        running[future] = spec
                        raise
                    except Exception:
                        record(_failed_row(spec, traceback.format_exc(limit=20)))
        except BrokenProcessPool as err:
            for spec in running.values():
                record(_failed_row(spec, f"worker process died: {err!r}"))
            pool.shutdown(wait=False, cancel_futures=True)
            continue
        except BaseException:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
