"""Node-level tasks: a label per node, and a boolean ``mask`` of the nodes that are scored.

No scored label is ever 0: graphs are connected (degree >= 1), the source is never scored
in the shortest-path task (its distance is 0 and every other distance is at least the
positive lower weight bound), and neighbour features are drawn from a range that
excludes 0 (enforced on the parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .graph_tasks import check_graph_params, draw_graph, edge_weights, features, graph_params
from .labels import adjacency, degrees, dijkstra, neighbour_max, neighbour_mean
from .params import Param
from .registry import register
from .spec import Item, SplitConfig, TaskSpec

CARD = "datasets/node_tasks.md"


def check_nonzero_range(params: Mapping[str, Any]) -> None:
    """Feature ranges must exclude 0, so that no label is 0 or arbitrarily close to it."""
    for key in ("train_range", "extrap_range"):
        lo, hi = params[key]
        if not (lo > 0 or hi < 0):
            raise ValueError(f"parameter {key}={params[key]} is invalid: expected a range "
                             "that excludes 0 (lo > 0 or hi < 0), so no label is 0")


def _degree_item(rng: np.random.Generator, index: int, config: SplitConfig,
                 params: Mapping[str, Any]) -> Item:
    n, edges, fam = draw_graph(rng, index, config, params)
    x = features(rng, n, config, params["feature_dim"])
    y = degrees(n, edges).astype(np.float32)
    return Item(x=x, y=y, edges=edges, mask=np.ones(n, dtype=bool), family=fam)


register(TaskSpec(
    name="node_degree", level="node", description="degree of every node",
    aggr="sum", readout=None,
    params=graph_params(num_train=5000, train_nodes=(20, 30), extrap_nodes=(50, 100),
                        feature_dim=3, train_range=(-5.0, 5.0), extrap_range=(-10.0, 10.0),
                        expander_p=0.8),
    make_item=_degree_item, num_node_features=lambda p: p["feature_dim"],
    check=check_graph_params, card=CARD))


def _shortest_path_item(rng: np.random.Generator, index: int, config: SplitConfig,
                        params: Mapping[str, Any]) -> Item:
    n, edges, fam = draw_graph(rng, index, config, params)
    w = edge_weights(rng, len(edges), config)
    s = int(rng.integers(n))
    dist, _count, hops = dijkstra(adjacency(n, edges, w), s)
    x = np.zeros((n, params["feature_dim"] + 1), dtype=np.float32)
    x[:, :-1] = features(rng, n, config, params["feature_dim"])
    x[s, -1] = 1.0
    # Scored: every node but the source that a shortest path reaches within max_hops edges
    # (the source's nearest neighbour always qualifies, so the mask is never empty).
    mask = np.array(hops) <= params["max_hops"]
    mask[s] = False
    return Item(x=x, y=np.array(dist, dtype=np.float32), edges=edges, weights=w, mask=mask,
                family=fam)


register(TaskSpec(
    name="node_shortest_path", level="node",
    description="weighted shortest-path distance of every node from the marked source; "
                "scored on nodes other than the source reached within max_hops edges",
    aggr="min", readout=None,
    params=graph_params(num_train=10000, train_nodes=(20, 40), extrap_nodes=(50, 70),
                        feature_dim=1, train_range=(-5.0, 5.0), extrap_range=(-5.0, 5.0),
                        expander_p=0.6, weights=((1.0, 5.0), (1.0, 10.0)),
                        extra=(Param("max_hops", 3, "int",
                                     "scored nodes have a shortest path of at most this "
                                     "many edges"),)),
    make_item=_shortest_path_item, num_node_features=lambda p: p["feature_dim"] + 1,
    edge_dim=1, indicator_dims=1, check=check_graph_params, card=CARD))


def _neighbour_task(name: str, aggr: str, description: str, label: Any) -> TaskSpec:
    def make_item(rng: np.random.Generator, index: int, config: SplitConfig,
                  params: Mapping[str, Any]) -> Item:
        n, edges, fam = draw_graph(rng, index, config, params)
        x = features(rng, n, config, params["feature_dim"])
        y = label(n, edges, x.astype(np.float64)).astype(np.float32)
        if y.shape[1] == 1:
            y = y[:, 0]
        return Item(x=x, y=y, edges=edges, mask=np.ones(n, dtype=bool), family=fam)

    def check(params: Mapping[str, Any]) -> None:
        check_graph_params(params)
        check_nonzero_range(params)

    return TaskSpec(
        name=name, level="node", description=description, aggr=aggr, readout=None,
        params=graph_params(num_train=5000, train_nodes=(20, 30), extrap_nodes=(50, 100),
                            feature_dim=1, train_range=(1.0, 5.0), extrap_range=(0.5, 10.0),
                            expander_p=0.8),
        make_item=make_item, num_node_features=lambda p: p["feature_dim"],
        target_dim=lambda p: p["feature_dim"], check=check, card=CARD)


register(_neighbour_task("node_neighbour_max", "max",
                         "per channel, the max of the neighbours' features", neighbour_max))
register(_neighbour_task("node_neighbour_mean", "mean",
                         "per channel, the mean of the neighbours' features", neighbour_mean))
