"""Graph-level tasks (one label per graph) and the graph sampling they share with the
node-level tasks.

Every graph is connected, so degrees are at least 1 and edge weights are at least the
(positive) lower weight bound: no label is ever 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .graphs import FAMILIES, GENERAL_P, HELDOUT_FAMILIES, TRAIN_FAMILIES, min_nodes, sample_graph
from .labels import adjacency, degrees, dijkstra, hop_ball
from .params import Param
from .registry import register
from .spec import Item, SplitConfig, TaskSpec

CARD = "datasets/graph_tasks.md"
#: Families of the extrapolation split by default: a general graph for the size and
#: feature shift, plus the two held-out families for the structure shift.
EXTRAP_FAMILIES = ("general",) + HELDOUT_FAMILIES

# Gives up on a source/target pair after this many draws and redraws the graph.
_MAX_PAIR_TRIES = 1000


def graph_params(*, num_train: int, train_nodes: tuple[int, int],
                 extrap_nodes: tuple[int, int], feature_dim: int,
                 train_range: tuple[float, float], extrap_range: tuple[float, float],
                 expander_p: float, weights: tuple[tuple[float, float], ...] = (),
                 extra: tuple[Param, ...] = ()) -> tuple[Param, ...]:
    """The parameters every graph task has, with the given defaults."""
    out = [
        Param("num_train", num_train, "int", "graphs in train"),
        Param("num_val", 1000, "int", "graphs in val"),
        Param("num_test", 2500, "int", "graphs in each of test_interp and test_extrap"),
        Param("train_nodes", train_nodes, "int_range",
              "node count [lo, hi) of train, val and test_interp graphs", 2),
        Param("extrap_nodes", extrap_nodes, "int_range",
              "node count [lo, hi) of test_extrap graphs (size shift)", 2),
        Param("train_families", TRAIN_FAMILIES, "families",
              "families of train, val and test_interp graphs, in equal shares"),
        Param("extrap_families", EXTRAP_FAMILIES, "families",
              "families of test_extrap graphs, in equal shares (structure shift)"),
        Param("feature_dim", feature_dim, "int", "random features per node"),
        Param("train_range", train_range, "float_range",
              "uniform range of node features in train, val and test_interp"),
        Param("extrap_range", extrap_range, "float_range",
              "uniform range of node features in test_extrap (feature shift)"),
    ]
    if weights:
        out += [
            Param("train_weights", weights[0], "float_range",
                  "uniform range of edge weights in train, val and test_interp"),
            Param("extrap_weights", weights[1], "float_range",
                  "uniform range of edge weights in test_extrap (weight shift)"),
        ]
    out += [
        Param("expander_p", expander_p, "prob", "edge probability of 'expander' graphs"),
        Param("general_p", GENERAL_P, "probs",
              "edge probabilities of 'general' graphs, in equal shares"),
        Param("ba_m", 2, "int", "edges per new node of 'barabasi_albert' graphs"),
    ]
    return tuple(out) + extra


def check_graph_params(params: Mapping[str, Any]) -> None:
    """Node counts must suit every family drawn; edge weights must be positive."""
    for pre in ("train", "extrap"):
        lo = params[f"{pre}_nodes"][0]
        need = max(min_nodes(f, params["ba_m"]) for f in params[f"{pre}_families"])
        if lo < need:
            raise ValueError(f"parameter {pre}_nodes={params[f'{pre}_nodes']} is invalid: "
                             f"{pre}_families={params[f'{pre}_families']} need at least "
                             f"{need} nodes")
        if f"{pre}_weights" in params and params[f"{pre}_weights"][0] <= 0:
            raise ValueError(f"parameter {pre}_weights={params[f'{pre}_weights']} is "
                             "invalid: expected positive weights (lo > 0)")


def draw_graph(rng: np.random.Generator, index: int, config: SplitConfig,
               params: Mapping[str, Any]) -> tuple[int, np.ndarray, int]:
    """Sample ``index`` of a split: families take turns, and within ``general`` the edge
    probabilities take turns, so both come in equal shares.

    Returns:
        ``(n, edges, family_id)``.
    """
    fams = config.families
    family = fams[index % len(fams)]
    n = int(rng.integers(*config.sizes))
    if family == "expander":
        p = params["expander_p"]
    else:
        ps = params["general_p"]
        p = ps[(index // len(fams)) % len(ps)]
    edges = sample_graph(family, n, rng, p=p, ba_m=params["ba_m"])
    return n, edges, FAMILIES.index(family)


def features(rng: np.random.Generator, n: int, config: SplitConfig, dim: int) -> np.ndarray:
    """``float32`` [n, dim] node features, uniform in the split's feature range."""
    return rng.uniform(*config.features, size=(n, dim)).astype(np.float32)


def edge_weights(rng: np.random.Generator, m: int, config: SplitConfig) -> np.ndarray:
    """``float32`` [m] edge weights, uniform in the split's weight range."""
    return rng.uniform(*config.weights, size=m).astype(np.float32)


def _degree_task(name: str, description: str, readout: str, label: Any) -> TaskSpec:
    def make_item(rng: np.random.Generator, index: int, config: SplitConfig,
                  params: Mapping[str, Any]) -> Item:
        n, edges, fam = draw_graph(rng, index, config, params)
        x = features(rng, n, config, params["feature_dim"])
        y = np.array([label(n, edges)], dtype=np.float32)
        return Item(x=x, y=y, edges=edges, family=fam)

    return TaskSpec(
        name=name, level="graph", description=description, aggr="sum", readout=readout,
        params=graph_params(num_train=5000, train_nodes=(20, 30), extrap_nodes=(50, 100),
                            feature_dim=3, train_range=(-5.0, 5.0),
                            extrap_range=(-10.0, 10.0), expander_p=0.8),
        make_item=make_item, num_node_features=lambda p: p["feature_dim"],
        check=check_graph_params, card=CARD)


register(_degree_task("max_degree", "largest node degree", "max",
                      lambda n, e: degrees(n, e).max()))
register(_degree_task("min_degree", "smallest node degree", "min",
                      lambda n, e: degrees(n, e).min()))
register(_degree_task("avg_degree", "average node degree 2m/n", "mean",
                      lambda n, e: 2 * len(e) / n))
register(_degree_task("num_edges", "number of undirected edges m", "sum",
                      lambda n, e: len(e)))


def _shortest_path_item(rng: np.random.Generator, index: int, config: SplitConfig,
                        params: Mapping[str, Any]) -> Item:
    max_hops = params["max_hops"]
    while True:
        n, edges, fam = draw_graph(rng, index, config, params)
        w = edge_weights(rng, len(edges), config)
        adj = adjacency(n, edges, w)
        seen: dict[int, tuple[tuple[list[float], list[int], list[int]], list[int]]] = {}
        # As in Xu et al.: draw a source, then a target within max_hops unweighted hops,
        # until the weighted shortest path is unique and has at most max_hops edges.
        for _ in range(_MAX_PAIR_TRIES):
            s = int(rng.integers(n))
            if s not in seen:
                seen[s] = (dijkstra(adj, s), hop_ball(adj, s, max_hops))
            (dist, count, hops), ball = seen[s]
            t = ball[int(rng.integers(len(ball)))]
            if t != s and count[t] == 1 and hops[t] <= max_hops:
                x = np.zeros((n, params["feature_dim"] + 2), dtype=np.float32)
                x[:, :-2] = features(rng, n, config, params["feature_dim"])
                x[s, -2] = x[t, -1] = 1.0
                y = np.array([dist[t]], dtype=np.float32)
                return Item(x=x, y=y, edges=edges, weights=w, family=fam)


register(TaskSpec(
    name="shortest_path", level="graph",
    description="weighted length of the unique shortest path (at most max_hops edges) "
                "between the marked source and target",
    aggr="min", readout="min",
    params=graph_params(num_train=10000, train_nodes=(20, 40), extrap_nodes=(50, 70),
                        feature_dim=1, train_range=(-5.0, 5.0), extrap_range=(-5.0, 5.0),
                        expander_p=0.6, weights=((1.0, 5.0), (1.0, 10.0)),
                        extra=(Param("max_hops", 3, "int",
                                     "most edges on the source-target shortest path"),)),
    make_item=_shortest_path_item, num_node_features=lambda p: p["feature_dim"] + 2,
    edge_dim=1, indicator_dims=2, check=check_graph_params, card=CARD))
