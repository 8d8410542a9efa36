"""What a task is: its parameters, how one sample is drawn, and the metadata models read."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .params import Param

#: The splits of every task, in the order they are listed.
SPLITS = ("train", "val", "test_interp", "test_extrap")
#: Levels a task can have.
LEVELS = ("graph", "node", "set")


@dataclass(frozen=True)
class SplitConfig:
    """The distribution one split draws from.

    Attributes:
        count: number of samples.
        sizes: half-open range of node counts (graphs) or set sizes.
        features: half-open range of the random node features or set values.
        families: graph families, used in equal shares in turn (empty for sets).
        weights: half-open range of edge weights, or ``None`` for unweighted tasks.
    """

    count: int
    sizes: tuple[int, int]
    features: tuple[float, float]
    families: tuple[str, ...] = ()
    weights: tuple[float, float] | None = None


def split_config(params: Mapping[str, Any], split: str) -> SplitConfig:
    """Train, val and test_interp share the ``train_*`` parameters; test_extrap uses
    the ``extrap_*`` ones."""
    pre = "extrap" if split == "test_extrap" else "train"
    count = params["num_" + {"train": "train", "val": "val"}.get(split, "test")]
    sizes = params.get(f"{pre}_nodes", params.get(f"{pre}_sizes"))
    return SplitConfig(count=count, sizes=sizes, features=params[f"{pre}_range"],
                       families=params.get(f"{pre}_families", ()),
                       weights=params.get(f"{pre}_weights"))


@dataclass
class Item:
    """One sample as numpy arrays, before collation.

    Attributes:
        x: ``float32`` [n, F] node features or set elements.
        y: ``float32`` label: [1] (graph), [n] or [n, d] (node), [1, d] (set).
        edges: ``int64`` [m, 2] undirected edges, each once, or ``None`` for sets.
        weights: ``float32`` [m] weight of each undirected edge, or ``None``.
        mask: ``bool`` [n] nodes that are scored (node-level tasks), or ``None``.
        family: id of the graph family in :data:`gnpool.datasets.graphs.FAMILIES`, or -1.
    """

    x: np.ndarray
    y: np.ndarray
    edges: np.ndarray | None = None
    weights: np.ndarray | None = None
    mask: np.ndarray | None = None
    family: int = -1


@dataclass(frozen=True)
class TaskSpec:
    """Everything the registry knows about a task.

    ``make_item(rng, index, config, params)`` draws sample ``index`` of a split from
    ``rng``; ``num_node_features`` and ``target_dim`` map the resolved parameters to
    those sizes; ``check`` validates combinations of parameters (raising ``ValueError``).
    ``indicator_dims`` trailing columns of ``x`` are 0/1 markers rather than random
    features.
    """

    name: str
    level: str
    description: str
    aggr: str | None
    readout: str | None
    params: tuple[Param, ...]
    make_item: Callable[[np.random.Generator, int, SplitConfig, Mapping[str, Any]], Item]
    num_node_features: Callable[[Mapping[str, Any]], int]
    target_dim: Callable[[Mapping[str, Any]], int] = lambda params: 1
    edge_dim: int = 0
    indicator_dims: int = 0
    check: Callable[[Mapping[str, Any]], None] | None = None
    card: str = ""


@dataclass(frozen=True)
class TaskInfo:
    """Metadata of a task, as a benchmark reads it.

    Attributes:
        name: registry name.
        level: ``"graph"``, ``"node"`` or ``"set"``.
        description: the label in one sentence.
        aggr: the neighbourhood aggregation known to extrapolate (``None`` for sets).
        readout: the graph readout known to extrapolate (``None`` for node-level tasks);
            for set tasks, the set pooling. Besides ``"sum"``, ``"mean"``, ``"max"`` and
            ``"min"``: ``"l2"`` = ``(sum x^2)^(1/2)`` (GNP with p=2, q=0), ``"rms"`` =
            ``(mean x^2)^(1/2)`` (p=2, q=1) and ``"max-min"`` = max pooling minus min
            pooling.
        num_node_features: columns of ``x``.
        edge_dim: columns of ``edge_attr`` (0: no ``edge_attr``).
        target_dim: channels of the label (``y`` is [1, d] for sets, [n, d] for node
            tasks with d > 1).
        splits: the split names.
        params: the resolved parameters.
        defaults: the default parameters.
        card: data card, relative to the repository root.
    """

    name: str
    level: str
    description: str
    aggr: str | None
    readout: str | None
    num_node_features: int
    edge_dim: int
    target_dim: int
    splits: tuple[str, ...] = SPLITS
    params: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    card: str = ""


def _word(text: str) -> int:
    # A stable 64-bit word: Python's hash() of a str changes between runs.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def item_rng(task: str, split: str, seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: independent of every other sample, split,
    task and seed, and of the order samples are drawn in."""
    seq = np.random.SeedSequence(seed, spawn_key=(_word(task), _word(split), index))
    return np.random.default_rng(seq)
