"""The training helpers and models name the argument at fault."""

from __future__ import annotations

import math

import pytest
import torch

from gnpool import GNPAggregation
from gnpool.models import MessageMLPConv, MessageMLPGNN
from gnpool.training import param_groups, pooling_parameters, snap_to_classic, transfer_pooling_


def test_param_groups_wants_the_model_and_finite_rates():
    pool = GNPAggregation()
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got generator "
                                        r"\(pass the model itself, not model.parameters\(\)\)"):
        param_groups(pool.parameters(), lr=0.1)
    for bad in (math.inf, math.nan, -1.0):
        with pytest.raises(ValueError, match="lr must be a finite non-negative number"):
            param_groups(pool, lr=bad)
    with pytest.raises(ValueError, match="pool_lr must be a finite non-negative number"):
        param_groups(pool, lr=0.1, pool_lr=math.inf)
    assert [g["name"] for g in param_groups(pool, lr=0.1)] == ["pooling"]


def test_transfer_and_pooling_parameters_want_modules():
    with pytest.raises(TypeError, match="source must be a torch.nn.Module, got NoneType"):
        transfer_pooling_(None, GNPAggregation())
    with pytest.raises(TypeError, match="target must be a torch.nn.Module, got list"):
        transfer_pooling_(GNPAggregation(), [])
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got NoneType"):
        pooling_parameters(None)


def test_snap_to_classic_wants_a_run_that_calls_the_model():
    pool = GNPAggregation()
    with pytest.raises(ValueError, match="run must be a callable that runs the model, got 5"):
        snap_to_classic(pool, run=5)
    with pytest.raises(ValueError, match="run\\(\\) called none of the model's learnable"):
        snap_to_classic(pool, run=lambda: None)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        snap_to_classic("pool")
    x, index = torch.randn(6, 2), torch.tensor([0, 0, 0, 1, 1, 1])
    assert snap_to_classic(pool, run=lambda: pool(x, index)) == {"": ["mean"]}


@pytest.mark.parametrize("edge_dim", [-1, 1.5, True])
def test_a_negative_or_non_int_edge_dim_is_refused_at_construction(edge_dim):
    with pytest.raises(ValueError, match="edge_dim must be a non-negative int"):
        MessageMLPConv(3, 3, edge_dim=edge_dim)
    with pytest.raises(ValueError, match="edge_dim must be a non-negative int"):
        MessageMLPGNN(3, 1, edge_dim=edge_dim)


def test_functional_dim_must_be_an_int():
    from gnpool.functional import gnp

    x, index = torch.randn(4, 2), torch.tensor([0, 0, 1, 1])
    for dim in ("0", 0.0, None):
        with pytest.raises(TypeError, match="dim must be an int"):
            gnp(x, index, dim=dim)
    import numpy as np

    assert torch.equal(gnp(x, index, dim=np.int64(0)), gnp(x, index, dim=0))


def test_a_checkpoint_in_a_missing_directory_names_it(tmp_path):
    from gnpool.training.checkpoint import atomic_save

    with pytest.raises(FileNotFoundError, match="its directory .*missing does not exist"):
        atomic_save({}, tmp_path / "missing" / "c.pt")
    assert list(tmp_path.iterdir()) == []
