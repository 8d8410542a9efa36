"""The grid runner: plans runs, skips finished ones, has an executor train the rest (this
process, local worker processes or a Ray cluster: :mod:`gnpool.bench.executors`) and
stores every run's row as soon as it ends."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from tqdm.auto import tqdm

from ..datasets import load_splits, load_task, task_info
from . import multiview
from .configs import PoolingConfig, default_configs, with_overrides
from .db import Key, RunDB
from .hparams import HParams, digest
from .profiles import Profile

if TYPE_CHECKING:
    from .executors import Executor

#: Environment variable: the directory of the benchmark's databases and reports.
BENCH_DIR_ENV = "GNPOOL_BENCH_DIR"
_CHECKOUT = Path(__file__).resolve().parents[2]
#: The largest seed a run may have: the database stores seeds as signed 64-bit INTEGERs.
MAX_SEED = 2 ** 63 - 1


def bench_dir() -> Path:
    """Where the benchmark keeps ``runs/<profile>.sqlite`` (working databases) and
    ``results/<profile>/`` (reports with a snapshot of their database).

    ``$GNPOOL_BENCH_DIR`` if set; else, when gnpool runs from its source checkout,
    the checkout's ``experiments/`` (where the project's committed results live;
    ``runs/`` is ignored by git); else, for an installed gnpool, the per-user data
    directory (``~/.local/share/gnpool/bench`` on Linux, from ``platformdirs``).
    """
    env = os.environ.get(BENCH_DIR_ENV)
    if env:
        return Path(env).expanduser()
    # In site-packages the package's parent holds no pyproject.toml or experiments/.
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "experiments").is_dir():
        return _CHECKOUT / "experiments"
    return platformdirs.user_data_path("gnpool") / "bench"


def default_db(profile: str) -> Path:
    """``runs/<profile>.sqlite`` under :func:`bench_dir`."""
    return bench_dir() / "runs" / f"{profile}.sqlite"


def results_dir(profile: str) -> Path:
    """``results/<profile>/`` under :func:`bench_dir`."""
    return bench_dir() / "results" / profile


@dataclass(frozen=True)
class RunSpec:
    """Everything one run depends on; its key is (task, config, seed, hp_hash)."""

    profile: str
    task: str
    config: PoolingConfig
    seed: int
    hparams: HParams
    data: dict[str, Any] = field(default_factory=dict)
    data_seed: int = 0
    data_root: str | None = None
    tune_seed: int | None = None

    @property
    def hp_hash(self) -> str:
        key = {"hparams": self.hparams.key(), "data": self.data,
               "data_seed": self.data_seed, "config": self.config.describe()}
        if self.tune_seed is not None:
            key["tune_seed"] = self.tune_seed
        return digest(key)

    @property
    def key(self) -> Key:
        return (self.task, self.config.name, self.seed, self.hp_hash)

    @property
    def label(self) -> str:
        return f"{self.task}/{self.config.name}/s{self.seed}"


def plan(profile: Profile, *, tasks: Iterable[str] | None = None,
         configs: Iterable[str] | None = None, seeds: Iterable[int] | None = None,
         extra_configs: Mapping[str, list[PoolingConfig]] | None = None,
         hparams: Mapping[str, Any] | None = None,
         data_root: str | os.PathLike | None = None) -> list[RunSpec]:
    """The runs of ``profile``, optionally only some ``tasks``, ``configs`` (names) and
    ``seeds``; ``extra_configs`` adds configurations per task; ``hparams`` overrides
    the hyperparameters of every run, those a profile sets for one configuration (e.g.
    GNP's recipe) included. ``ValueError`` names the configuration whose settings are
    invalid, and ``seeds`` outside 0 to 2**63-1 (what the database stores)."""
    if seeds is not None:
        seeds = list(seeds)
        bad = [s for s in seeds if not 0 <= int(s) <= MAX_SEED]
        if bad:
            raise ValueError(f"seeds={bad!r} are out of range; expected integers from 0 to "
                             f"2**63-1 ({MAX_SEED}), which the database's INTEGER holds")
    plans = {p.task: p for p in profile.tasks}
    if tasks is not None:
        tasks = list(tasks)
        unknown = [t for t in tasks if t not in plans]
        if unknown:
            raise ValueError(f"tasks={unknown!r} are not in profile {profile.name!r}; "
                             f"expected some of {', '.join(plans)}")
        plans = {t: plans[t] for t in tasks}
    names = None if configs is None else list(configs)
    seen: set[str] = set()
    specs = []
    for task, tp in plans.items():
        if multiview.is_multiview(task):
            found = multiview.plan_task(profile, tp, configs=names, seeds=seeds, hparams=hparams,
                              data_root=None if data_root is None else str(data_root),
                              extra_configs=(extra_configs or {}).get(task, []))
            seen.update(s.config.name for s in found)
            specs += found
            continue
        info = task_info(task, **tp.data)
        grid = default_configs(info.level, info.aggr)
        if tp.configs is not None:
            grid = [c for c in grid if c.name in tp.configs]
        grid += list((extra_configs or {}).get(task, []))
        if names is not None:
            grid = [c for c in grid if c.name in names]
        seen.update(c.name for c in grid)
        for config in grid:
            config = with_overrides(config, **tp.overrides.get(config.name, {}))
            # `hparams` (--set) last: it overrides every run's settings, a configuration's
            # own overrides included; checked once, on the merged settings.
            try:
                hp = HParams().updated({**tp.hparams, **config.overrides, **(hparams or {})})
            except ValueError as err:
                raise ValueError(f"configuration {config.name!r} of task {task!r}: {err}") \
                    from None
            for seed in (seeds if seeds is not None else tp.seeds or profile.seeds):
                specs.append(RunSpec(profile.name, task, config, int(seed), hp, dict(tp.data),
                                     profile.data_seed,
                                     None if data_root is None else str(data_root),
                                     profile.tune_seed))
    if names is not None and set(names) - seen:
        raise ValueError(f"configs={sorted(set(names) - seen)!r} match no task of the grid; "
                         f"its configurations are {', '.join(grid_configs(profile, plans))}")
    return specs


def grid_configs(profile: Profile, tasks: Iterable[str] | None = None) -> list[str]:
    """Names of the configurations of ``profile``'s grid (of ``tasks`` only, if given),
    in grid order."""
    wanted = None if tasks is None else set(tasks)
    names: dict[str, None] = {}
    for tp in profile.tasks:
        if wanted is None or tp.task in wanted:
            if multiview.is_multiview(tp.task):
                grid = multiview.multiview_configs()
            else:
                info = task_info(tp.task, **tp.data)
                grid = default_configs(info.level, info.aggr)
            for config in grid:
                if tp.configs is None or config.name in tp.configs:
                    names[config.name] = None
    return list(names)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import torch
    import torch_geometric

    import gnpool
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_geometric": torch_geometric.__version__, "numpy": numpy.__version__,
           "gnpool": gnpool.__version__, "platform": platform.platform()}
    commit = _git_commit()
    if commit:
        out["gnpool_commit"] = commit
    return out


def _git_commit() -> str | None:
    """The source checkout's commit, with ``+dirty`` for uncommitted changes to anything but
    ``experiments/results/`` (the committed benchmark results, which a grid run with
    ``--report`` rewrites before the next grid starts: outputs, not what a run computes)."""
    root = _CHECKOUT
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)experiments/results"],
                               cwd=root, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty.strip() else "")


_SPLITS: dict[tuple, dict] = {}


def _data_key(spec: RunSpec) -> tuple:
    return (spec.task, digest(spec.data), spec.data_seed, spec.data_root, spec.tune_seed)


def _load(spec: RunSpec, progress: bool = False) -> dict:
    if multiview.is_multiview(spec.task):
        return multiview.load_data(spec, progress)
    splits = load_splits(spec.task, root=spec.data_root, seed=spec.data_seed,
                         progress=progress, **spec.data)
    if spec.tune_seed is not None:
        # The tuning split: the extrapolation distribution from another data seed.
        splits["tune"] = load_task(spec.task, "test_extrap", root=spec.data_root,
                                   seed=spec.tune_seed, progress=progress, **spec.data)
    return splits


def _splits(spec: RunSpec) -> dict:
    # A process keeps the splits it loaded: runs of one task share them.
    key = _data_key(spec)
    if key not in _SPLITS:
        _SPLITS[key] = _load(spec)
    return _SPLITS[key]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def execute(spec: RunSpec, position: int = 1, progress: bool = True,
            splits: dict | None = None) -> dict[str, Any]:
    """Train and evaluate one run; returns its database row. Never raises for a failing
    run (the row has status ``failed`` and the traceback); Ctrl-C still interrupts.
    ``splits`` (``{split: dataset}`` of the run's task, e.g. from another process) saves
    loading the datasets here."""
    from .train import run as train_run

    if multiview.is_multiview(spec.task):
        return multiview.execute(spec, position, progress)
    start = time.perf_counter()
    row = _base_row(spec, started_at=_now())
    try:
        if splits is None:
            splits = _splits(spec)
        info = splits["train"].info
        row["level"] = info.level
        result = train_run(info, splits, spec.config, spec.hparams, spec.seed,
                           desc=spec.label, position=position, progress=progress)
        row.update(result["metrics"])
        row.update(status="finished", gnp=result["gnp"], bins=result["bins"],
                   history=result["history"], num_params=result["num_params"],
                   dead_channels=result["dead_channels"],
                   candidates=result.get("candidates"))
    except Exception:  # a crashed run is a result too; the grid goes on
        row.update(status="failed", error=traceback.format_exc(limit=20))
    row.update(wall_seconds=time.perf_counter() - start, finished_at=_now())
    return row


@dataclass
class GridSummary:
    """What a call of :func:`run_grid` did."""

    planned: int = 0
    skipped: int = 0
    executed: int = 0
    finished: int = 0
    failed: int = 0
    interrupted: bool = False
    wall_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


def prepare_data(specs: list[RunSpec], progress: bool = True, keep: bool = False) -> None:
    """Generate (or check the cache of) every split the runs need, once, in this process;
    with ``keep`` the loaded splits stay for the runs of this process."""
    seen = set()
    for spec in specs:
        key = _data_key(spec)
        if key not in seen and key not in _SPLITS:
            seen.add(key)
            splits = _load(spec, progress)
            if keep:
                _SPLITS[key] = splits


def run_grid(specs: list[RunSpec], db_path: str | os.PathLike, *, workers: int = 1,
             threads: int | None = None, progress: bool = True,
             retry_failed: bool = True, executor: Executor | None = None) -> GridSummary:
    """Run every spec not yet finished in the database at ``db_path``.

    Each run's row is written in its own transaction by this process as soon as the
    run ends, so an interruption (Ctrl-C) loses only the runs in progress. Failed runs
    are run again unless ``retry_failed`` is false. ``executor`` carries out the runs
    (see :mod:`gnpool.bench.executors`); by default a
    :class:`~gnpool.bench.executors.LocalExecutor`: ``workers > 1`` trains in that many
    processes (one torch thread each unless ``threads`` says otherwise).
    """
    if executor is None:
        from .executors import LocalExecutor
        executor = LocalExecutor(workers, threads)
    start = time.perf_counter()
    summary = GridSummary(planned=len(specs))
    with RunDB(db_path) as db:
        done = db.statuses()
        skip = {"finished"} if retry_failed else {"finished", "failed"}
        todo = [s for s in specs if done.get(s.key) not in skip]
        summary.skipped = len(specs) - len(todo)
        meta = versions()
        bar = tqdm(total=len(todo), desc="runs", unit="run", position=0, disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)

        def record(row: dict[str, Any]) -> None:
            # An executor on other machines reports their versions; else this process's.
            row.setdefault("versions", meta)
            db.write(row)
            summary.executed += 1
            if row["status"] == "finished":
                summary.finished += 1
            else:
                summary.failed += 1
                last = (row.get("error") or "").strip().splitlines()[-1:]
                summary.failures.append(f"{row['task']}/{row['config']}/s{row['seed']}: "
                                        f"{last[0] if last else 'unknown error'}")
            bar.update(1)
            if row.get("level") == multiview.LEVEL:
                bar.set_postfix(last=f"{row['task']}/{row['config']}",
                                **multiview.postfix(row), failed=summary.failed)
                return
            extrap = row.get("mape_extrap")
            bar.set_postfix(last=f"{row['task']}/{row['config']}",
                            extrap="failed" if row["status"] == "failed" else
                            (f"{extrap:.3g}%" if extrap is not None else "nan"),
                            failed=summary.failed)

        try:
            if todo:
                executor.run(todo, record, progress)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
    summary.wall_seconds = time.perf_counter() - start
    return summary


def _base_row(spec: RunSpec, **fields: Any) -> dict[str, Any]:
    """The columns of a run's row that come from its spec."""
    return {"task": spec.task, "config": spec.config.name, "seed": spec.seed,
            "hp_hash": spec.hp_hash, "profile": spec.profile,
            "config_def": spec.config.describe(), "hparams": spec.hparams.to_dict(),
            "data_params": spec.data, **fields}


def _failed_row(spec: RunSpec, error: str) -> dict[str, Any]:
    return _base_row(spec, status="failed", error=error, started_at=None, finished_at=_now())
