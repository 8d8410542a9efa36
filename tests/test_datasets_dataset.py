"""TaskDataset: collated layout, statistics and use with PyG's DataLoader."""

import pytest
import torch
from torch_geometric.loader import DataLoader

from gnpool.datasets import load_task
from gnpool.datasets.cache import CacheError
from gnpool.datasets.dataset import check_storage

SMALL = dict(num_train=16, num_val=4, num_test=4, progress=False)


def test_dataloader_batches(tmp_path):
    ds = load_task("shortest_path", "train", root=tmp_path, **SMALL)
    batch = next(iter(DataLoader(ds, batch_size=5, shuffle=False)))
    assert batch.num_graphs == 5 and batch.y.shape == (5,)
    assert batch.edge_attr.shape == (batch.num_edges, 1)
    assert batch.edge_index.max() < batch.num_nodes
    assert torch.equal(batch.x[: ds[0].num_nodes], ds[0].x)
    sets = load_task("set_rms", "train", root=tmp_path, dim=2, **SMALL)
    batch = next(iter(DataLoader(sets, batch_size=4)))
    assert batch.y.shape == (4, 2) and batch.batch.max() == 3
    nodes = load_task("node_shortest_path", "train", root=tmp_path, **SMALL)
    batch = next(iter(DataLoader(nodes, batch_size=3)))
    assert batch.y.shape == batch.mask.shape == (batch.num_nodes,)


def test_subset_and_transform(tmp_path):
    ds = load_task("max_degree", "val", root=tmp_path, **SMALL,
                   transform=lambda d: d.update({"y": d.y * 2}) or d)
    plain = load_task("max_degree", "val", root=tmp_path, **SMALL)
    assert ds[1].y == 2 * plain[1].y
    sub = plain[1:3]
    assert len(sub) == 2 and torch.equal(sub[0].x, plain[1].x)
    assert sub.family(0) == plain.family(1) == "cycle"
    with pytest.raises(ValueError, match="whole split"):
        sub.stats()


def test_stats(tmp_path):
    ds = load_task("node_shortest_path", "train", root=tmp_path, **SMALL)
    st = ds.stats()
    n = [d.num_nodes for d in ds]
    assert st["samples"] == 16 and st["nodes"] == (min(n), sum(n) / 16, max(n))
    assert st["edges"][0] == min(d.num_edges / 2 for d in ds)
    scored = torch.cat([d.y[d.mask] for d in ds])
    assert st["labels"][0] == pytest.approx(scored.min().item()) and st["labels"][0] > 0
    assert -5 <= st["features"][0] < st["features"][1] < 5, "indicator column excluded"
    assert 1 <= st["weights"][0] and st["weights"][1] <= 5
    assert sum(st["families"].values()) == 16 and len(st["families"]) == 8
    assert "edges" not in load_task("set_sum", "val", root=tmp_path, **SMALL).stats()


def test_check_storage_rejects_inconsistent_storage(tmp_path):
    ds = load_task("node_degree", "val", root=tmp_path, **SMALL)
    good = {"tensors": dict(ds._data.to_dict()), "slices": dict(ds.slices),
            "family": ds.family_ids}
    check_storage(good)
    for bad in ({**good, "family": good["family"][:-1]},
                {**good, "slices": {**good["slices"], "mask": good["slices"]["mask"] + 1}},
                {k: v for k, v in good.items() if k != "slices"},
                ["not", "a", "dict"]):
        with pytest.raises(CacheError, match="inconsistent"):
            check_storage(bad)


def test_generation_shows_progress(tmp_path, capsys):
    load_task("set_mean", "val", root=tmp_path, num_val=3)
    assert "set_mean/val" in capsys.readouterr().err
    load_task("set_mean", "val", root=tmp_path, num_val=3, force_reload=True, progress=False)
    assert capsys.readouterr().err == ""
