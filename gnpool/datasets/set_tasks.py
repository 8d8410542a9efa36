"""Set tasks: a set of scalars or d-dimensional vectors and a per-channel statistic of it.

No label is 0: sum, mean, max and min need a value range that excludes 0 (enforced on the
parameters), count is the set size (>= 1), the range needs at least two elements
(enforced), and the L2 norm and RMS vanish only if every element is exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .params import Param
from .registry import register
from .spec import Item, SplitConfig, TaskSpec

CARD = "datasets/set_tasks.md"

#: target -> (pooling that extrapolates, statistic over axis 0 of the [n, d] set, description)
TARGETS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray], str]] = {
    "sum": ("sum", lambda v: v.sum(0), "sum of the elements"),
    "mean": ("mean", lambda v: v.mean(0), "mean of the elements"),
    "max": ("max", lambda v: v.max(0), "largest element"),
    "min": ("min", lambda v: v.min(0), "smallest element"),
    "count": ("sum", lambda v: np.array([len(v)], dtype=np.float64), "number of elements"),
    "l2": ("l2", lambda v: np.sqrt((v * v).sum(0)), "L2 norm (sum x^2)^(1/2)"),
    "rms": ("rms", lambda v: np.sqrt((v * v).mean(0)), "root mean square (mean x^2)^(1/2)"),
    "range": ("max-min", lambda v: v.max(0) - v.min(0), "range max - min"),
}
#: Targets that can be 0 unless the values keep one sign.
SIGNED = ("sum", "mean", "max", "min")


def _set_task(target: str) -> TaskSpec:
    pooling, stat, description = TARGETS[target]
    least = 2 if target == "range" else 1
    params = (
        Param("num_train", 5000, "int", "sets in train"),
        Param("num_val", 1000, "int", "sets in val"),
        Param("num_test", 2500, "int", "sets in each of test_interp and test_extrap"),
        Param("train_sizes", (10, 20), "int_range",
              "set size [lo, hi) in train, val and test_interp", least),
        Param("extrap_sizes", (100, 200), "int_range",
              "set size [lo, hi) in test_extrap (size shift)", least),
        Param("dim", 1, "int", "channels d of each element"),
        Param("train_range", (1.0, 5.0), "float_range",
              "uniform range of the values in train, val and test_interp"),
        Param("extrap_range", (0.5, 10.0), "float_range",
              "uniform range of the values in test_extrap (value shift)"),
    )

    def make_item(rng: np.random.Generator, index: int, config: SplitConfig,
                  p: Mapping[str, Any]) -> Item:
        n = int(rng.integers(*config.sizes))
        x = rng.uniform(*config.features, size=(n, p["dim"])).astype(np.float32)
        y = stat(x.astype(np.float64)).astype(np.float32)[None, :]
        return Item(x=x, y=y)

    def check(p: Mapping[str, Any]) -> None:
        for key in ("train_range", "extrap_range"):
            lo, hi = p[key]
            if target in SIGNED and not (lo > 0 or hi < 0):
                raise ValueError(f"parameter {key}={p[key]} is invalid for set_{target}: "
                                 "expected a range that excludes 0 (lo > 0 or hi < 0), so "
                                 "no label is 0")

    return TaskSpec(
        name=f"set_{target}", level="set", description=description, aggr=None,
        readout=pooling, params=params, make_item=make_item,
        num_node_features=lambda p: p["dim"],
        target_dim=(lambda p: 1) if target == "count" else (lambda p: p["dim"]),
        check=check, card=CARD)


for _target in TARGETS:
    register(_set_task(_target))
