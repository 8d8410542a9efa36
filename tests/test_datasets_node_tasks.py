"""Node-level tasks: every label of a small sample of every split checked with networkx."""

import networkx as nx
import numpy as np
import pytest
import torch

from gnpool.datasets import SPLITS, list_tasks, load_task, task_info

SMALL = dict(num_train=16, num_val=8, num_test=9, progress=False)


def _nx(data):
    g = nx.Graph()
    g.add_nodes_from(range(data.num_nodes))
    w = data.edge_attr[:, 0].tolist() if "edge_attr" in data else [1.0] * data.num_edges
    for (a, b), wt in zip(data.edge_index.t().tolist(), w, strict=True):
        g.add_edge(a, b, weight=wt)
    assert 2 * g.number_of_edges() == data.num_edges
    return g


def test_all_node_tasks_registered():
    assert list_tasks("node") == ["node_degree", "node_shortest_path", "node_neighbour_max",
                                  "node_neighbour_mean"]


@pytest.mark.parametrize("split", SPLITS)
def test_node_degree(split, tmp_path):
    for data in load_task("node_degree", split, root=tmp_path, **SMALL):
        g = _nx(data)
        assert data.y.shape == data.mask.shape == (data.num_nodes,) and data.mask.all()
        assert data.y.tolist() == [g.degree(v) for v in range(data.num_nodes)]


@pytest.mark.parametrize("split", SPLITS)
def test_node_shortest_path(split, tmp_path):
    ds = load_task("node_shortest_path", split, root=tmp_path, **SMALL)
    assert task_info("node_shortest_path").num_node_features == 2
    for data in ds:
        g = _nx(data)
        assert data.mask.dtype == torch.bool and data.x[:, -1].sum() == 1
        s = int(data.x[:, -1].nonzero())
        dist = nx.single_source_dijkstra_path_length(g, s)
        assert not data.mask[s] and data.y[s] == 0, "the source is never scored"
        for v in range(data.num_nodes):
            assert data.y[v].item() == pytest.approx(dist[v], rel=1e-6)
            if v != s:
                fewest = min(len(p) - 1 for p in nx.all_shortest_paths(g, s, v, "weight"))
                assert bool(data.mask[v]) == (fewest <= 3)
        assert data.mask.any() and (data.y[data.mask] >= 1).all()


@pytest.mark.parametrize("task", ["node_neighbour_max", "node_neighbour_mean"])
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("dim", [1, 3])
def test_neighbour_features(task, split, dim, tmp_path):
    ds = load_task(task, split, root=tmp_path, feature_dim=dim, **SMALL)
    assert task_info(task, feature_dim=dim).target_dim == dim
    for data in ds:
        g = _nx(data)
        assert data.y.shape == ((data.num_nodes,) if dim == 1 else (data.num_nodes, dim))
        assert data.mask.all() and (data.y > 0).all()
        x = data.x.double().numpy()
        pool = np.max if task.endswith("max") else np.mean
        ref = np.stack([pool(x[list(g.neighbors(v))], axis=0) for v in range(len(x))])
        np.testing.assert_allclose(data.y.reshape(len(x), dim).numpy(), ref, rtol=1e-6)


def test_neighbour_ranges_must_exclude_zero(tmp_path):
    with pytest.raises(ValueError, match=r"train_range=\(-1\.0, 1\.0\).*excludes 0"):
        load_task("node_neighbour_max", "train", root=tmp_path, train_range=(-1, 1), **SMALL)
    ds = load_task("node_neighbour_mean", "train", root=tmp_path, train_range=(-5, -1),
                   **SMALL)
    assert (ds[0].y < 0).all()
