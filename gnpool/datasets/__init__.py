"""Synthetic extrapolation tasks: graphs, nodes and sets, each with train, val,
interpolation-test and extrapolation-test splits.

Usage::

    from gnpool.datasets import list_tasks, load_task, task_info
    train = load_task("max_degree", "train")        # generated once, then cached
    test = load_task("max_degree", "test_extrap", num_test=500)
    task_info("max_degree").readout                 # 'max'

Data cards (generators, shifts, per-split statistics) are in the repository's
``datasets/`` folder; ``python -m gnpool.datasets`` lists, generates and describes tasks.
"""

from . import graph_tasks, node_tasks, set_tasks  # noqa: F401  (they register the tasks)
from .cache import CacheError, default_root
from .dataset import TaskDataset
from .graphs import FAMILIES, HELDOUT_FAMILIES, TRAIN_FAMILIES
from .registry import cache_path, list_tasks, load_splits, load_task, resolve_params, task_info
from .spec import SPLITS, TaskInfo

__all__ = [
    "FAMILIES", "HELDOUT_FAMILIES", "SPLITS", "TRAIN_FAMILIES", "CacheError", "TaskDataset",
    "TaskInfo", "cache_path", "default_root", "list_tasks", "load_splits", "load_task",
    "resolve_params", "task_info",
]
