"""The extrapolation benchmark: a grid of tasks x pooling configurations x seeds, trained
and stored run by run in SQLite, and a report (Markdown table, PNG plots).

Usage::

    from gnpool.bench import get_profile, plan, run_grid
    specs = plan(get_profile("quick"), tasks=["max_degree"])
    summary = run_grid(specs, "runs.sqlite", workers=2)
    summary = run_grid(specs, "runs.sqlite", executor=RayExecutor("HEAD:6379"))  # on Ray

or ``python -m gnpool.bench run --profile quick`` and ``python -m gnpool.bench report``.
"""

from .configs import FIXED, LEARNED, PoolingConfig, default_configs, with_overrides
from .db import RunDB
from .executors import Executor, LocalExecutor
from .hparams import HParams
from .profiles import PROFILES, Profile, TaskPlan, get_profile
from .ray_executor import RayExecutor
from .report import write_report
from .runner import (
    GridSummary,
    RunSpec,
    bench_dir,
    default_db,
    execute,
    plan,
    results_dir,
    run_grid,
)

__all__ = [
    "FIXED", "LEARNED", "PROFILES", "Executor", "GridSummary", "HParams", "LocalExecutor",
    "PoolingConfig", "Profile", "RayExecutor", "RunDB", "RunSpec", "TaskPlan", "bench_dir",
    "default_configs", "default_db", "execute", "get_profile", "plan", "results_dir",
    "run_grid", "with_overrides", "write_report",
]
