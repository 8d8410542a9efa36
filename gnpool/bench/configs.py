"""Pooling configurations: which aggregation and readout a benchmark run uses."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

#: The fixed poolings every grid crosses.
FIXED = ("sum", "mean", "max", "min")
#: The learnable configurations, each used for every pooling of the model: gnpool's
#: GNP and AttSets, PyG's PowerMean and Softmax, the baselines LAF and GenAgg
#: (:mod:`gnpool.baselines`) and PyG's set aggregations DeepSets, Set Transformer and
#: variance-preserving aggregation (VPA, which has no parameters of its own).
LEARNED = ("gnp", "attsets", "powermean", "softmax", "laf", "genagg", "deepsets",
           "settransformer", "variancepreserving")
#: Configurations that are readouts only: on graph tasks they pool the graph over the
#: task's known-good aggregation, on set tasks they are the set pooling, and node tasks
#: (no readout) leave them out, except AttSets, which node tasks use as the aggregation.
READOUT_ONLY = ("attsets", "deepsets", "settransformer", "variancepreserving")
#: LAF units per channel, their outputs mapped back to the hidden width by a Linear layer
#: (the paper's models follow the LAF layer with a dense layer). The paper's models use 9
#: or 10 units on 10 to 30 features; its supplement (Fig. B.1) finds the error variance of
#: learned targets "drastically dropping when six units are used". Each unit costs four
#: powers per element and channel, so 6 keeps LAF's cost on the benchmark's hidden widths
#: within reach.
LAF_UNITS = 6
_LEARN_KWARGS = {"powermean": {"learn": True}, "softmax": {"learn": True},
                 "laf": {"units": LAF_UNITS}}


@dataclass(frozen=True)
class PoolingConfig:
    """One column of the grid.

    Attributes:
        name: unique within a task, e.g. ``"sum-max"`` (aggregation-readout), ``"max"``
            (node and set tasks) or ``"gnp"``.
        aggr: neighbourhood aggregation, or ``None`` for set models.
        readout: graph readout or set pooling, or ``None`` for node-level models.
        aggr_kwargs, readout_kwargs: keyword arguments for the names.
        fixed: a classic pooling with nothing to learn (the baseline the report
            compares the learnable configurations with).
        overrides: hyperparameters that differ for this configuration (merged over the
            profile's; they enter the run's key).
    """

    name: str
    aggr: str | None
    readout: str | None
    aggr_kwargs: dict[str, Any] = field(default_factory=dict)
    readout_kwargs: dict[str, Any] = field(default_factory=dict)
    fixed: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-ready definition (what the run's key hashes)."""
        return {"name": self.name, "aggr": self.aggr, "readout": self.readout,
                "aggr_kwargs": self.aggr_kwargs, "readout_kwargs": self.readout_kwargs,
                "fixed": self.fixed, "overrides": self.overrides}


def default_configs(level: str, known_aggr: str | None = None) -> list[PoolingConfig]:
    """The grid's configurations for a task of ``level``.

    Graph-level: the 16 fixed (aggregation, readout) pairs, then the learnable ones
    (:data:`LEARNED`), the readout-only ones (:data:`READOUT_ONLY`) over ``known_aggr``
    (the task's known-good aggregation, ``"sum"`` if ``None``). Node-level: the 4 fixed
    aggregations and the learnable ones as the aggregation, without DeepSets, Set
    Transformer and VPA. Set-level: the 4 fixed and all learnable ones as the set pooling.
    """
    if level == "graph":
        out = [PoolingConfig(f"{a}-{r}", a, r, fixed=True)
               for a, r in itertools.product(FIXED, FIXED)]
        for name in LEARNED:
            aggr = (known_aggr or "sum") if name in READOUT_ONLY else name
            kw = _LEARN_KWARGS.get(name, {})
            out.append(PoolingConfig(name, aggr, name, dict(kw) if aggr == name else {},
                                     dict(kw)))
        return out
    if level == "node":
        names = [n for n in LEARNED if n not in READOUT_ONLY or n == "attsets"]
        return ([PoolingConfig(a, a, None, fixed=True) for a in FIXED]
                + [PoolingConfig(n, n, None, dict(_LEARN_KWARGS.get(n, {}))) for n in names])
    if level == "set":
        return ([PoolingConfig(a, None, a, fixed=True) for a in FIXED]
                + [PoolingConfig(n, None, n, readout_kwargs=dict(_LEARN_KWARGS.get(n, {})))
                   for n in LEARNED])
    raise ValueError(f"level={level!r} is unknown; expected one of graph, node, set")


def with_overrides(config: PoolingConfig, **overrides: Any) -> PoolingConfig:
    """``config`` with extra hyperparameter overrides (later keys win)."""
    return replace(config, overrides={**config.overrides, **overrides})

