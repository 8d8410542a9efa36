"""Label computations of gnpool.datasets.labels against networkx and plain loops."""

import math

import networkx as nx
import numpy as np
import pytest

from gnpool.datasets.graphs import sample_graph
from gnpool.datasets.labels import (
    adjacency,
    degrees,
    dijkstra,
    hop_ball,
    neighbour_max,
    neighbour_mean,
)


def _weighted(n, edges, w):
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for (a, b), wt in zip(edges.tolist(), w.tolist(), strict=True):
        g.add_edge(a, b, weight=wt)
    return g


@pytest.mark.parametrize("family", ["tree", "general", "grid", "complete"])
def test_dijkstra_matches_networkx(family):
    rng = np.random.default_rng(0)
    for _ in range(4):
        n = 25
        edges = sample_graph(family, n, rng, p=0.3)
        w = rng.uniform(1, 5, len(edges)).astype(np.float32)
        g = _weighted(n, edges, w)
        s = int(rng.integers(n))
        dist, count, hops = dijkstra(adjacency(n, edges, w), s)
        ref = nx.single_source_dijkstra_path_length(g, s)
        for v in range(n):
            assert dist[v] == pytest.approx(ref[v], rel=1e-12)
            paths = list(nx.all_shortest_paths(g, s, v, weight="weight"))
            assert count[v] == len(paths)
            assert hops[v] == min(len(p) - 1 for p in paths)


def test_dijkstra_counts_ties():
    # A 4-cycle with unit weights: two shortest paths to the opposite node.
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    dist, count, hops = dijkstra(adjacency(4, edges, np.ones(4)), 0)
    assert dist == [0, 1, 2, 1] and count == [1, 1, 2, 1] and hops == [0, 1, 2, 1]
    dist, _, _ = dijkstra(adjacency(3, np.array([[0, 1]]), np.ones(1)), 0)
    assert math.isinf(dist[2])


def test_hop_ball_matches_networkx():
    rng = np.random.default_rng(1)
    edges = sample_graph("tree", 30, rng)
    adj = adjacency(30, edges, np.ones(len(edges)))
    g = _weighted(30, edges, np.ones(len(edges)))
    for r in (0, 1, 3):
        assert hop_ball(adj, 4, r) == sorted(nx.single_source_shortest_path_length(g, 4, r))


def test_degrees_and_neighbour_statistics():
    rng = np.random.default_rng(2)
    n = 20
    edges = sample_graph("general", n, rng, p=0.3)
    g = _weighted(n, edges, np.ones(len(edges)))
    x = rng.uniform(1, 5, (n, 3))
    np.testing.assert_array_equal(degrees(n, edges), [g.degree(v) for v in range(n)])
    mx, mean = neighbour_max(n, edges, x), neighbour_mean(n, edges, x)
    for v in range(n):
        nb = list(g.neighbors(v))
        np.testing.assert_array_equal(mx[v], x[nb].max(0))
        np.testing.assert_allclose(mean[v], x[nb].mean(0), rtol=1e-12)
