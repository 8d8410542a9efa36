"""Registry: task listing, metadata, errors, determinism and the shifts of every task."""

import hashlib

import pytest
import torch

from gnpool.datasets import (
    SPLITS,
    TaskInfo,
    list_tasks,
    load_splits,
    load_task,
    resolve_params,
    task_info,
)

TINY = dict(num_train=6, num_val=3, num_test=6, progress=False)
POOLING = {
    "max_degree": ("sum", "max"), "min_degree": ("sum", "min"),
    "avg_degree": ("sum", "mean"), "num_edges": ("sum", "sum"),
    "shortest_path": ("min", "min"), "node_degree": ("sum", None),
    "node_shortest_path": ("min", None), "node_neighbour_max": ("max", None),
    "node_neighbour_mean": ("mean", None),
}


def _equal(a, b):
    """Whether two datasets hold bit-identical tensors."""
    da, db = a._data, b._data
    return (sorted(da.keys()) == sorted(db.keys()) and len(a) == len(b)
            and all(torch.equal(da[k], db[k]) for k in da.keys())
            and all(torch.equal(a.slices[k], b.slices[k]) for k in a.slices))


def test_task_list_and_pooling_pairs():
    tasks = list_tasks()
    assert len(tasks) == 17 and len(set(tasks)) == 17
    assert set(list_tasks("graph")) | set(list_tasks("node")) | set(list_tasks("set")) \
        == set(tasks)
    for name, (aggr, readout) in POOLING.items():
        info = task_info(name)
        assert (info.aggr, info.readout) == (aggr, readout)
    with pytest.raises(ValueError, match="level='edge'.*graph, node, set"):
        list_tasks("edge")


def test_task_info_fields():
    info = task_info("shortest_path", feature_dim=4)
    assert isinstance(info, TaskInfo)
    assert (info.level, info.num_node_features, info.edge_dim, info.target_dim) == \
        ("graph", 6, 1, 1)
    assert info.splits == SPLITS == ("train", "val", "test_interp", "test_extrap")
    assert info.params["feature_dim"] == 4 and info.defaults["feature_dim"] == 1
    assert info.defaults["num_train"] == 10000 and info.defaults["train_nodes"] == (20, 40)
    assert info.card == "datasets/graph_tasks.md"
    assert task_info("max_degree").defaults["num_train"] == 5000
    assert task_info("max_degree").defaults["extrap_range"] == (-10.0, 10.0)
    assert task_info("set_count", dim=3).target_dim == 1
    assert task_info("set_l2", dim=3).target_dim == 3


def test_unknown_task_lists_tasks():
    with pytest.raises(ValueError, match="name='maxdeg' is unknown.*max_degree, min_degree"):
        load_task("maxdeg", "train")
    with pytest.raises(ValueError, match="set_range"):
        task_info("nope")


def test_invalid_parameter_lists_parameters(tmp_path):
    with pytest.raises(ValueError, match="no parameter num_graphs.*num_train, num_val"):
        load_task("max_degree", "train", root=tmp_path, num_graphs=5)
    with pytest.raises(ValueError, match=r"num_train=-3.*at least 1"):
        load_task("max_degree", "train", root=tmp_path, num_train=-3)
    with pytest.raises(ValueError, match="split='test'.*train, val, test_interp, test_extrap"):
        load_task("max_degree", "test", root=tmp_path)
    for seed in (-1, 1.5, "0", True):
        with pytest.raises(ValueError, match=f"seed={seed!r}.*non-negative integer"):
            load_task("max_degree", "train", root=tmp_path, seed=seed)


def test_string_parameters_equal_python_values():
    assert resolve_params("max_degree", {"train_nodes": "10,20", "train_range": "-1,1"}) == \
        resolve_params("max_degree", {"train_nodes": (10, 20), "train_range": (-1, 1)})


@pytest.mark.parametrize("task", list_tasks())
def test_same_seed_identical_other_seed_differs(task, tmp_path):
    a = load_task(task, "val", root=tmp_path / "a", **TINY)
    b = load_task(task, "val", root=tmp_path / "b", **TINY)
    c = load_task(task, "val", root=tmp_path / "c", seed=1, **TINY)
    assert a.generated and b.generated and _equal(a, b)
    assert not _equal(a, c) and not torch.equal(a[0].x, c[0].x)


def test_generation_order_and_count_do_not_matter(tmp_path):
    first = load_splits("shortest_path", ["test_extrap", "train"], root=tmp_path / "a", **TINY)
    second = load_splits("shortest_path", ["train", "test_extrap"], root=tmp_path / "b", **TINY)
    assert all(_equal(first[s], second[s]) for s in first)
    # A larger split starts with the same samples (each sample has its own generator).
    big = load_task("shortest_path", "train", root=tmp_path / "c",
                    **{**TINY, "num_train": 9})
    for i in range(6):
        assert torch.equal(big[i].x, first["train"][i].x)


def test_splits_share_no_samples(tmp_path):
    ds = load_splits("node_degree", root=tmp_path, **TINY)
    seen = set()
    for split in SPLITS:
        for data in ds[split]:
            key = data.x.numpy().tobytes()
            assert key not in seen
            seen.add(key)


@pytest.mark.parametrize("task", list_tasks())
def test_extrapolation_split_is_larger_and_wider(task, tmp_path):
    train = load_task(task, "train", root=tmp_path, **TINY).stats()
    extrap = load_task(task, "test_extrap", root=tmp_path, **TINY).stats()
    interp = load_task(task, "test_interp", root=tmp_path, **TINY).stats()
    assert extrap["nodes"][0] > train["nodes"][2], "size shift: smallest test > largest train"
    info = task_info(task)
    lo, hi = info.defaults.get("train_nodes", info.defaults.get("train_sizes"))
    assert lo <= interp["nodes"][0] and interp["nodes"][2] < hi, "test_interp is in range"
    lo, hi = info.defaults["train_range"]
    assert lo <= train["features"][0] and train["features"][1] <= hi
    if info.defaults["extrap_range"] != info.defaults["train_range"]:
        assert extrap["features"][1] > hi, "feature shift"
    if info.edge_dim:
        assert extrap["weights"][1] > train["weights"][1] and train["weights"][1] <= 5
    if info.level != "set":
        assert "barabasi_albert" in extrap["families"] and "grid" in extrap["families"]
        assert not {"barabasi_albert", "grid"} & set(train["families"]), "structure shift"


@pytest.mark.parametrize("task, digest", [
    ("max_degree", "2565edbb6a390ce2"), ("shortest_path", "f1ab6b50af6d15fe"),
    ("node_shortest_path", "e867d37a3ba2e8b2"), ("set_l2", "83d5ce33d343314a"),
])
def test_content_is_pinned_across_runs(task, digest, tmp_path):
    # The same seed must give the same tensors in every run; if a generator changes on
    # purpose, bump gnpool.datasets.cache.FORMAT_VERSION and update these digests.
    ds = load_task(task, "val", root=tmp_path, num_val=5, progress=False)
    h = hashlib.sha256()
    for key in sorted(ds._data.keys()):
        h.update(ds._data[key].numpy().tobytes())
    assert h.hexdigest()[:16] == digest
