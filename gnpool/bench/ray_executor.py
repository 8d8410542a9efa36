"""The grid on a Ray cluster: every run one Ray task.

Ray is an optional dependency (``pip install gnpool[distributed]``); this module imports
it only when a :class:`RayExecutor` is made, so that nothing else in gnpool needs it.
"""

from __future__ import annotations

import functools
import math
import traceback
from typing import TYPE_CHECKING, Any

from .executors import Executor, Record

if TYPE_CHECKING:
    from .runner import RunSpec

#: The pip extra that brings Ray.
EXTRA = "distributed"
#: How long an interrupted grid waits for its cancelled runs to stop before returning.
CANCEL_WAIT_SECONDS = 10.0


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ImportError: Ray is not installed; the message names the extra that installs it.
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            f"the Ray executor needs Ray, which is not installed ({err}); install gnpool's "
            f"optional extra: pip install 'gnpool[{EXTRA}]' (or pip install ray)") from err
    return ray


class RayExecutor(Executor):
    """Runs each run of the grid as a Ray task, on a cluster or a local Ray instance.

    The driver (this process) loads every dataset the runs need once and puts it in
    Ray's object store, so that no node generates data and none needs the driver's
    cache directory; each task trains one run on its node with ``threads`` torch threads
    and returns the run's row, which the driver writes to the database. Per-epoch
    progress bars stay off in the tasks (the driver's bar counts finished runs). A run
    depends on the seed, the hyperparameters and the number of torch threads (GNP's
    kernels split sums across threads), not on the executor.

    If Ray is already initialised in this process (``ray.init`` was called), that
    instance is used and left running; otherwise :meth:`run` connects to ``address``,
    or starts a local instance with ``num_cpus`` CPUs when ``address`` is ``None``
    (Ray then also honours ``$RAY_ADDRESS``), and shuts it down at the end.

    Args:
        address: a running cluster's address (``"auto"``, ``"HOST:6379"`` or
            ``"ray://HOST:10001"``), or ``None`` for a local instance.
        cpus_per_run: Ray's ``num_cpus`` of each task: how many of a node's CPUs a run
            reserves (so a node runs ``its CPUs / cpus_per_run`` runs at once).
        gpus_per_run: Ray's ``num_gpus`` of each task (the benchmark's models train on
            the CPU; this only keeps runs to nodes with free GPUs).
        threads: torch threads per run (default: ``cpus_per_run``, at least 1).
        num_cpus: CPUs of a local instance (default: all of the machine's); only
            without ``address``.
        max_retries: how often Ray runs a task again whose worker or node died (a run
            that raises is not retried: it is recorded as failed).
        init_kwargs: further keyword arguments of ``ray.init``.

    Raises:
        ImportError: Ray is not installed (the message names the ``distributed`` extra).
        ValueError: a resource is not a positive number (``gpus_per_run``: not
            negative), ``threads`` or ``num_cpus`` is not a positive int, or
            ``num_cpus`` is given with an ``address``.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, threads: int | None = None,
                 num_cpus: int | None = None, max_retries: int = 3,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        self._ray = import_ray()
        if not _number(cpus_per_run) or not cpus_per_run > 0:
            raise ValueError(f"cpus_per_run must be a positive number, got {cpus_per_run!r}")
        if not _number(gpus_per_run) or not gpus_per_run >= 0:
            raise ValueError(f"gpus_per_run must be a number >= 0, got {gpus_per_run!r}")
        for name, value in (("threads", threads), ("num_cpus", num_cpus)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if num_cpus is not None and address is not None:
            raise ValueError(f"num_cpus={num_cpus!r} sizes a local Ray instance; with "
                             f"address={address!r} the cluster's nodes decide")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.address, self.num_cpus = address, num_cpus
        self.cpus_per_run, self.gpus_per_run = float(cpus_per_run), float(gpus_per_run)
        self.threads = threads if threads is not None else max(1, math.floor(cpus_per_run))
        self.max_retries = max_retries
        self.init_kwargs = dict(init_kwargs or {})

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, cpus_per_run={self.cpus_per_run}, "
                f"gpus_per_run={self.gpus_per_run}, threads={self.threads})")

    def run(self, todo: list[RunSpec], record: Record, progress: bool) -> None:
        ray = self._ray
        started = not ray.is_initialized()
        try:
            if started:
                kwargs: dict[str, Any] = {}
                if self.address is None:
                    # A local instance: no web dashboard (it needs more than Ray's packages).
                    kwargs = {"include_dashboard": False, "num_cpus": self.num_cpus}
                ray.init(address=self.address, **{**kwargs, **self.init_kwargs})
            self._run(ray, todo, record, progress)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray: Any, todo: list[RunSpec], record: Record, progress: bool) -> None:
        from .runner import _data_key, _failed_row, _load

        # Each dataset once, from the driver's cache, into the object store.
        data: dict[tuple, Any] = {}
        for spec in todo:
            key = _data_key(spec)
            if key not in data:
                data[key] = ray.put(_load(spec, progress))
        task = ray.remote(_execute_task).options(
            num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
            max_retries=self.max_retries, retry_exceptions=False)
        pending: dict[Any, RunSpec] = {}

        def collect(ready: list) -> None:
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as err:  # the task's worker or node died, or Ray failed
                    row = _failed_row(spec, f"Ray task failed: {type(err).__name__}: {err}\n"
                                      + traceback.format_exc(limit=5))
                record(row)

        waiting = False
        try:
            for spec in todo:
                pending[task.remote(spec, data[_data_key(spec)], self.threads)] = spec
            while pending:
                waiting = True
                ray.wait(list(pending), num_returns=1)
                # Every run done by now, not only the first.
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                waiting = False
                collect(ready)
        except BaseException:
            if waiting and pending:
                # Interrupted while waiting: keep the runs that had finished meanwhile.
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                collect(ready)
            self._cancel(ray, list(pending))
            raise

    def _cancel(self, ray: Any, refs: list) -> None:
        """Cancel the runs still queued or running and wait (briefly) until they stop."""
        for ref in refs:
            try:
                # Not forced: a running task gets KeyboardInterrupt and its worker stays.
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 (already finished or gone: nothing to stop)
                pass
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_SECONDS)


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


@functools.lru_cache(maxsize=1)
def _node_versions() -> dict[str, str]:
    from .runner import versions
    return versions()


def _execute_task(spec: RunSpec, splits: dict, threads: int) -> dict[str, Any]:
    """The body of one Ray task: train ``spec`` on ``splits`` with ``threads`` torch
    threads; the row carries the versions of the node it ran on."""
    import torch

    from .runner import execute

    # A Ray worker process runs many tasks, possibly with other settings before.
    torch.set_num_threads(threads)
    row = execute(spec, 1, False, splits=splits)
    row["versions"] = _node_versions()
    return row
