"""Snapping learned GNP poolings to the classic pooling they are close to."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import aggr as pyg

from gnpool import GNPAggregation
from gnpool.training import snap_to_classic


def test_snap_sets_exact_classic_parameters_per_channel():
    aggr = GNPAggregation(channels=3, p=[2.0, 5.0, 1.0], q=[0.0, 1.0, 0.5])
    aggr.snap_(["max", "none", "sum"])
    x = torch.rand(40, 3)
    index = torch.arange(40) % 4
    out = aggr(x, index)
    torch.testing.assert_close(out[:, 0], pyg.MaxAggregation()(x, index)[:, 0])
    torch.testing.assert_close(out[:, 2], pyg.SumAggregation()(x, index)[:, 2])
    assert float(aggr.p[1]) == pytest.approx(5.0) and float(aggr.q[1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="channels=3 names"):
        aggr.snap_(["max"])
    with pytest.raises(ValueError, match="'none' or one of"):
        aggr.snap_("median")


def test_snap_to_classic_only_moves_what_is_close():
    model = torch.nn.ModuleDict({
        "near_max": GNPAggregation(p=500.0, q=1.0, p_neg=-500.0),
        "near_sum": GNPAggregation(p=1.0, q=0.01),
        "far": GNPAggregation(p=1.0, q=0.4),
    })
    snapped = snap_to_classic(model, tolerance=0.1)
    assert snapped == {"near_max": ["max"], "near_sum": ["sum"]}
    assert float(model["near_max"].p_unit) == 1.0 and float(model["near_sum"].beta) == 1.0
    assert float(model["far"].q) == pytest.approx(0.4)
    assert snap_to_classic(model, tolerance=1e-9) == {"near_max": ["max"], "near_sum": ["sum"]}
    with pytest.raises(ValueError, match="tolerance must be"):
        snap_to_classic(model, tolerance=-1)


def test_distances_measured_on_the_inputs_the_model_sees():
    # On non-negative inputs the negative part never acts: a GNP near max in its positive
    # part snaps to max although its negative part is a mean (which the fixed bank of
    # mixed-sign sets would count against it).
    from gnpool.models import DeepSets

    torch.manual_seed(0)
    model = DeepSets(1, 1, 4, "gnp", pooling_kwargs={"channels": 1, "p": 400.0, "q": 1.0,
                                                      "p_neg": 1.0})
    x, index = torch.rand(60, 1), torch.arange(60) // 6
    assert snap_to_classic(model, tolerance=0.1) == {}
    snapped = snap_to_classic(model, tolerance=0.1, run=lambda: model(x, index, dim_size=10))
    assert snapped == {"pooling": ["max"]}
    assert float(model.pooling.p_unit) == 1.0 and model.training
