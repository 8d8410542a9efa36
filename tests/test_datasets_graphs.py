"""Graph families of gnpool.datasets.graphs, checked with networkx."""

import networkx as nx
import numpy as np
import pytest

from gnpool.datasets import graphs
from gnpool.datasets.graphs import FAMILIES, is_connected, min_nodes, sample_graph


def _nx(n, edges):
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges.tolist())
    return g


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n", [None, 7, 23, 40])
def test_family_is_connected_simple_with_n_nodes(family, n):
    n = n or min_nodes(family)
    rng = np.random.default_rng(n)
    for _ in range(3):
        edges = sample_graph(family, n, rng, p=0.3)
        assert edges.dtype == np.int64 and edges.ndim == 2 and edges.shape[1] == 2
        assert edges.min() >= 0 and edges.max() < n
        assert (edges[:, 0] != edges[:, 1]).all(), "self-loop"
        g = _nx(n, edges)
        assert g.number_of_edges() == len(edges), "duplicate edge"
        assert g.number_of_nodes() == n and nx.is_connected(g)


@pytest.mark.parametrize("n", [5, 6, 21, 30])
def test_family_structure(n):
    rng = np.random.default_rng(0)
    deg = {f: sorted(d for _, d in _nx(n, sample_graph(f, n, rng)).degree())
           for f in FAMILIES}
    assert deg["path"] == [1, 1] + [2] * (n - 2)
    assert deg["cycle"] == [2] * n
    assert deg["complete"] == [n - 1] * n
    assert deg["4regular"] == [4] * n
    assert sum(deg["tree"]) == 2 * (n - 1)
    # Ladder: two rails of n // 2 nodes; an odd node caps one end as a triangle.
    if n % 2:
        assert deg["ladder"] == [2] * 3 + [3] * (n - 3)
    else:
        assert deg["ladder"] == [2] * 4 + [3] * (n - 4)
    assert sum(deg["barabasi_albert"]) == 2 * (2 + 2 * (n - 3))
    assert max(deg["grid"]) <= 4


def test_path_and_cycle_are_isomorphic_to_networkx():
    rng = np.random.default_rng(1)
    assert nx.is_isomorphic(_nx(9, sample_graph("path", 9, rng)), nx.path_graph(9))
    assert nx.is_isomorphic(_nx(9, sample_graph("cycle", 9, rng)), nx.cycle_graph(9))
    assert nx.is_isomorphic(_nx(12, sample_graph("ladder", 12, rng)), nx.ladder_graph(6))



def test_full_grid_is_isomorphic_to_networkx():
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(10):
        edges = graphs.grid(12, rng)
        cols = int((edges[:, 1] - edges[:, 0]).max())  # vertical edges span a row
        if 12 % cols == 0:
            assert nx.is_isomorphic(_nx(12, edges), nx.grid_2d_graph(12 // cols, cols))
            checked += 1
    assert checked > 0


def test_erdos_renyi_density_follows_p():
    rng = np.random.default_rng(2)
    n = 40
    for p in (0.3, 0.8):
        m = np.mean([len(graphs.erdos_renyi(n, p, rng)) for _ in range(30)])
        assert abs(m / (n * (n - 1) / 2) - p) < 0.03


def test_random_tree_is_uniform_on_four_nodes():
    # Cayley: 16 labelled trees on 4 nodes, 4 of them stars (one node of degree 3).
    rng = np.random.default_rng(3)
    stars = sum(np.bincount(graphs.random_tree(4, rng).ravel()).max() == 3
                for _ in range(4000))
    assert abs(stars / 4000 - 0.25) < 0.03


def test_same_generator_state_same_graph_and_relabelled_nodes():
    a = sample_graph("general", 30, np.random.default_rng(5), p=0.2)
    b = sample_graph("general", 30, np.random.default_rng(5), p=0.2)
    np.testing.assert_array_equal(a, b)
    c = sample_graph("path", 30, np.random.default_rng(6))
    assert not np.array_equal(np.sort(c, axis=1), graphs.path(30, None)), "labels permuted"


def test_is_connected():
    assert is_connected(3, np.array([[0, 1], [1, 2]]))
    assert not is_connected(4, np.array([[0, 1], [2, 3], [1, 0]]))
    assert not is_connected(3, np.array([[0, 1], [1, 0]]))
    assert is_connected(1, np.zeros((0, 2), dtype=np.int64))


def test_errors_name_the_argument():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"family='star'.*path, cycle"):
        sample_graph("star", 10, rng)
    with pytest.raises(ValueError, match=r"n=4 .*4regular.*n >= 5"):
        sample_graph("4regular", 4, rng)
    with pytest.raises(ValueError, match=r"n=3 .*barabasi_albert.*n >= 4"):
        sample_graph("barabasi_albert", 3, rng, ba_m=3)
