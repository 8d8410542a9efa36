"""Pooling configurations: which aggregation and readout a benchmark run uses."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

#: The fixed poolings every grid crosses.
FIXED = ("sum", "mean", "max", "min")
#: The learnable configurations, each used for every pooling of the model; "attsets"
#: keeps the task's known-good aggregation and puts AttSets in the readout (graph tasks).
LEARNED = ("gnp", "attsets", "powermean", "softmax")
_LEARN_KWARGS = {"powermean": {"learn": True}, "softmax": {"learn": True}}


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

    Graph-level: the 16 fixed (aggregation, readout) pairs, then GNP, AttSets readout
    over ``known_aggr`` (the task's known-good aggregation, ``"sum"`` if ``None``),
    PowerMean and Softmax. Node-level: the 4 fixed aggregations and the 4 learnable ones
    as the aggregation. Set-level: the same as the set pooling.
    """
    if level == "graph":
        out = [PoolingConfig(f"{a}-{r}", a, r, fixed=True)
               for a, r in itertools.product(FIXED, FIXED)]
        for name in LEARNED:
            aggr = (known_aggr or "sum") if name == "attsets" else name
            kw = _LEARN_KWARGS.get(name, {})
            out.append(PoolingConfig(name, aggr, name, dict(kw) if aggr == name else {},
                                     dict(kw)))
        return out
    if level == "node":
        return ([PoolingConfig(a, a, None, fixed=True) for a in FIXED]
                + [PoolingConfig(n, n, None, dict(_LEARN_KWARGS.get(n, {}))) for n in LEARNED])
    if level == "set":
        return ([PoolingConfig(a, None, a, fixed=True) for a in FIXED]
                + [PoolingConfig(n, None, n, readout_kwargs=dict(_LEARN_KWARGS.get(n, {})))
                   for n in LEARNED])
    raise ValueError(f"level={level!r} is unknown; expected one of graph, node, set")


def with_overrides(config: PoolingConfig, **overrides: Any) -> PoolingConfig:
    """``config`` with extra hyperparameter overrides (later keys win)."""
    return replace(config, overrides={**config.overrides, **overrides})

