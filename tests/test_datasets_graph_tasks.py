"""Graph-level tasks: every label of a small sample of every split checked with networkx."""

import networkx as nx
import pytest
import torch

from gnpool.datasets import SPLITS, list_tasks, load_task, task_info

SMALL = dict(num_train=16, num_val=8, num_test=9, progress=False)


def _nx(data):
    """The undirected weighted networkx graph of a Data object, checking edge conventions."""
    n, ei = data.num_nodes, data.edge_index
    g = nx.Graph()
    g.add_nodes_from(range(n))
    w = data.edge_attr[:, 0].tolist() if data.edge_attr is not None else [1.0] * ei.size(1)
    for (a, b), wt in zip(ei.t().tolist(), w, strict=True):
        assert a != b
        g.add_edge(a, b, weight=wt)
    assert 2 * g.number_of_edges() == ei.size(1), "each undirected edge in both directions"
    for a, b, wt in g.edges(data="weight"):
        both = ((ei[0] == a) & (ei[1] == b)) | ((ei[0] == b) & (ei[1] == a))
        assert both.sum() == 2 and (data.edge_attr is None
                                    or (data.edge_attr[both, 0] == wt).all())
    assert (ei[0] * n + ei[1]).diff().gt(0).all(), "edges sorted by (source, target)"
    return g


def _label(task, g, data):
    deg = [d for _, d in g.degree()]
    if task == "max_degree":
        return max(deg)
    if task == "min_degree":
        return min(deg)
    if task == "avg_degree":
        return 2 * g.number_of_edges() / g.number_of_nodes()
    if task == "num_edges":
        return g.number_of_edges()
    s = int(data.x[:, -2].nonzero())
    t = int(data.x[:, -1].nonzero())
    paths = list(nx.all_shortest_paths(g, s, t, weight="weight"))
    assert len(paths) == 1 and 2 <= len(paths[0]) <= 4, "unique path of 1 to 3 hops"
    return nx.dijkstra_path_length(g, s, t)


def test_all_graph_tasks_registered():
    assert list_tasks("graph") == ["max_degree", "min_degree", "avg_degree", "num_edges",
                                   "shortest_path"]


@pytest.mark.parametrize("task", ["max_degree", "min_degree", "avg_degree", "num_edges",
                                  "shortest_path"])
@pytest.mark.parametrize("split", SPLITS)
def test_labels_match_networkx(task, split, tmp_path):
    ds = load_task(task, split, root=tmp_path, **SMALL)
    info = task_info(task)
    assert len(ds) == {"train": 16, "val": 8}.get(split, 9)
    for i in range(len(ds)):
        data = ds[i]
        assert data.x.dtype == data.y.dtype == torch.float32
        assert data.x.shape == (data.num_nodes, info.num_node_features)
        assert data.y.shape == (1,)
        assert ("edge_attr" in data) == (info.edge_dim == 1)
        g = _nx(data)
        assert nx.is_connected(g)
        assert data.y.item() == pytest.approx(_label(task, g, data), rel=1e-6)
        assert data.y.item() > 0, "labels are never 0 (MAPE)"


def test_shortest_path_indicators_and_weights(tmp_path):
    ds = load_task("shortest_path", "test_extrap", root=tmp_path, **SMALL)
    for data in ds:
        assert data.x[:, -2].sum() == 1 and data.x[:, -1].sum() == 1
        assert set(data.x[:, -2:].unique().tolist()) == {0.0, 1.0}
        assert not (data.x[:, -2] * data.x[:, -1]).any(), "source differs from target"
        assert data.edge_attr.min() >= 1 and data.edge_attr.max() <= 10


def test_families_come_in_equal_shares(tmp_path):
    ds = load_task("max_degree", "train", root=tmp_path, **SMALL)
    fams = [ds.family(i) for i in range(len(ds))]
    assert sorted(set(fams)) == sorted(task_info("max_degree").params["train_families"])
    assert all(fams.count(f) == 2 for f in set(fams))
    ext = load_task("max_degree", "test_extrap", root=tmp_path, **SMALL)
    assert {ext.family(i) for i in range(len(ext))} == {"general", "barabasi_albert", "grid"}


def test_family_specific_labels(tmp_path):
    ds = load_task("max_degree", "train", root=tmp_path, train_families="cycle,4regular",
                   **SMALL)
    for i, data in enumerate(ds):
        assert data.y.item() == {"cycle": 2, "4regular": 4}[ds.family(i)]
    ds = load_task("num_edges", "train", root=tmp_path, train_families="complete", **SMALL)
    for data in ds:
        assert data.y.item() == data.num_nodes * (data.num_nodes - 1) / 2


def test_max_hops_parameter(tmp_path):
    ds = load_task("shortest_path", "train", root=tmp_path, max_hops=1, **SMALL)
    for data in ds:
        s, t = int(data.x[:, -2].nonzero()), int(data.x[:, -1].nonzero())
        edge = (data.edge_index[0] == s) & (data.edge_index[1] == t)
        assert edge.sum() == 1 and data.edge_attr[edge, 0].item() == data.y.item()


def test_invalid_combinations_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"train_nodes=\(4, 10\).*4regular.*at least 5"):
        load_task("max_degree", "train", root=tmp_path, train_nodes=(4, 10), **SMALL)
    with pytest.raises(ValueError, match=r"extrap_weights=\(-1\.0, 5\.0\).*lo > 0"):
        load_task("shortest_path", "train", root=tmp_path, extrap_weights=(-1, 5), **SMALL)
    with pytest.raises(ValueError, match=r"extrap_families=.*star"):
        load_task("max_degree", "train", root=tmp_path, extrap_families="star", **SMALL)
