"""Set tasks: every label of a small sample of every split checked with numpy."""

import numpy as np
import pytest
import torch

from gnpool.datasets import SPLITS, list_tasks, load_task, task_info

SMALL = dict(num_train=12, num_val=6, num_test=6, progress=False)
REF = {
    "sum": lambda v: v.sum(0),
    "mean": lambda v: v.mean(0),
    "max": lambda v: v.max(0),
    "min": lambda v: v.min(0),
    "count": lambda v: np.array([len(v)]),
    "l2": lambda v: np.linalg.norm(v, axis=0),
    "rms": lambda v: np.sqrt(np.mean(v ** 2, axis=0)),
    "range": lambda v: np.ptp(v, axis=0),
}


def test_all_set_tasks_registered():
    assert list_tasks("set") == [f"set_{t}" for t in REF]
    assert [task_info(f"set_{t}").readout for t in REF] == [
        "sum", "mean", "max", "min", "sum", "l2", "rms", "max-min"]


@pytest.mark.parametrize("target", list(REF))
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("dim", [1, 3])
def test_labels_match_numpy(target, split, dim, tmp_path):
    task = f"set_{target}"
    ds = load_task(task, split, root=tmp_path, dim=dim, **SMALL)
    info = task_info(task, dim=dim)
    assert info.level == "set" and info.num_node_features == dim
    for data in ds:
        assert "edge_index" not in data and data.x.dtype == torch.float32
        assert data.x.shape[1] == dim and data.y.shape == (1, info.target_dim)
        ref = REF[target](data.x.double().numpy())
        np.testing.assert_allclose(data.y[0].double().numpy(), ref, rtol=1e-6)
        assert (data.y != 0).all()


def test_value_range_must_exclude_zero_for_signed_targets(tmp_path):
    with pytest.raises(ValueError, match=r"extrap_range=\(-1\.0, 10\.0\).*set_sum.*excludes 0"):
        load_task("set_sum", "train", root=tmp_path, extrap_range=(-1, 10), **SMALL)
    ds = load_task("set_rms", "train", root=tmp_path, train_range=(-3, 3), **SMALL)
    assert ds[0].x.min() < 0 < ds[0].x.max()


def test_range_needs_two_elements(tmp_path):
    with pytest.raises(ValueError, match=r"train_sizes=\(1, 5\).*at least 2"):
        load_task("set_range", "train", root=tmp_path, train_sizes=(1, 5), **SMALL)
    ds = load_task("set_max", "train", root=tmp_path, train_sizes=(1, 2), **SMALL)
    assert all(d.num_nodes == 1 for d in ds)
