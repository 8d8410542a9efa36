"""Snapping learned GNP poolings to the classic pooling they are close to."""

from __future__ import annotations

import math

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


def test_classic_prior_is_zero_at_every_classic_pooling_and_pulls_to_the_nearest():
    from gnpool.training import classic_prior

    model = torch.nn.ModuleList([GNPAggregation.from_pooling(name, channels=2)
                                 for name in ("sum", "mean", "max", "min")])
    assert float(classic_prior(model)) == 0.0
    # Each part is judged on its own: max in the positive part with a mean in the negative
    # part is at a classic point of each part.
    mixed = GNPAggregation(p=float("inf"), q=1.0, p_neg=1.0, q_neg=1.0)
    assert float(classic_prior(mixed)) == 0.0
    # (p_unit, beta) = (0.9, 0.4): nearest point of its part is max (1, 0), squared
    # distance 0.01 + 0.16; the negative part is at the mean.
    aggr = GNPAggregation(channels=2)
    with torch.no_grad():
        aggr.p_unit.copy_(torch.tensor([0.9, 0.3]))
        aggr.beta.copy_(torch.tensor([0.4, 0.7]))
    value = classic_prior(aggr)
    # Second channel: (0.3, 0.7) is nearest the sum (0.5, 1): 0.04 + 0.09.
    assert float(value) == pytest.approx((0.17 + 0.13) / 2)
    value.backward()
    torch.testing.assert_close(aggr.p_unit.grad, torch.tensor([-0.1, -0.2]))
    torch.testing.assert_close(aggr.beta.grad, torch.tensor([0.4, -0.3]))
    # Fixed (non-learnable) GNPs and models without GNP add nothing.
    assert float(classic_prior(GNPAggregation(p=3.0, learn=False))) == 0.0
    assert float(classic_prior(torch.nn.Linear(2, 2))) == 0.0


def test_snap_parts_fixes_each_part_that_is_close_and_leaves_the_rest():
    from gnpool.training import snap_parts_

    aggr = GNPAggregation(channels=3)
    with torch.no_grad():
        aggr.p_unit.copy_(torch.tensor([0.97, 0.5, 0.2]))
        aggr.beta.copy_(torch.tensor([0.02, 0.95, 0.5]))
        aggr.p_neg_unit.copy_(torch.tensor([-0.96, 0.55, 0.5]))
        aggr.beta_neg.copy_(torch.tensor([0.0, 0.0, 0.5]))
    snapped = snap_parts_(torch.nn.ModuleDict({"a": aggr}), tolerance=0.1)
    # Names are those of each part on its own input: max of relu(x) and min of relu(-x)
    # make the max of x.
    assert snapped == {"a": [["max", "min"], ["sum", "mean"], ["none", "none"]]}
    x, index = torch.randn(30, 3), torch.arange(30) // 5
    torch.testing.assert_close(aggr(x, index)[:, 0], pyg.MaxAggregation()(x, index)[:, 0])
    assert aggr.p_unit[2].item() == pytest.approx(0.2)
    assert aggr.beta[1].item() == 1.0 and aggr.beta_neg[1].item() == 0.0
    with pytest.raises(ValueError, match="tolerance must be"):
        snap_parts_(aggr, tolerance=float("nan"))
    # p_unit past the end (as an optimiser step leaves it) is judged as the forward uses it.
    beyond = GNPAggregation()
    with torch.no_grad():
        beyond.p_unit.fill_(1.2)
        beyond.beta.fill_(0.0)
        beyond.p_neg_unit.fill_(-1.15)
        beyond.beta_neg.fill_(0.0)
    assert float(classic_prior_of(beyond)) == 0.0
    assert snap_parts_(beyond) == {"": [["max", "min"]]}
    assert float(beyond.p_unit) == 1.0 and float(beyond.p_neg_unit) == -1.0
    broken = GNPAggregation()
    with torch.no_grad():
        broken.beta.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite parameters"):
        snap_parts_(broken)


def classic_prior_of(module):
    from gnpool.training import classic_prior

    return classic_prior(module)


def test_snap_to_classic_leaves_fixed_and_dead_gnps_alone():
    model = torch.nn.ModuleDict({
        "fixed": GNPAggregation(p=1.05, q=1.0, learn=False),
        "frozen": GNPAggregation(p=1.05, q=1.0).requires_grad_(False),
        "learnable": GNPAggregation(p=1.05, q=1.0),
        "dead": GNPAggregation(p=3.0, q=1.0),
    })
    x, index = torch.rand(12, 2), torch.arange(12) // 4

    def run():
        for name, module in model.items():
            module(torch.zeros_like(x) if name == "dead" else x, index)

    # Even with no tolerance: only the learnable GNP that sees a non-zero input snaps.
    assert snap_to_classic(model, tolerance=math.inf, run=run) == {"learnable": ["mean"]}
    assert float(model["fixed"].p) == pytest.approx(1.05)
    assert float(model["frozen"].p) == pytest.approx(1.05)
    assert float(model["dead"].p) == pytest.approx(3.0)


def test_mirror_idle_parts_makes_each_channel_the_classic_pooling_of_x():
    from torch_geometric.utils import scatter

    from gnpool.training import mirror_idle_parts_
    from gnpool.training.snap import PART_CLASSICS

    # Positive parts at max, min, sum, mean and (channel 4) off the classic points; the
    # negative parts all at their initial mean.
    aggr = GNPAggregation(channels=6, p=1.0, q=1.0)
    with torch.no_grad():
        aggr.p_unit.copy_(torch.tensor([1.0, -1.0, 0.5, 0.5, 0.7, 1.0]))
        aggr.beta.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.2, 0.0]))
    model = torch.nn.ModuleDict({"aggr": aggr})
    index = torch.arange(40) % 5
    seen = torch.rand(40, 6) + 0.1         # non-negative: every negative part is idle...
    seen[:, 5] = 0.0                        # ...and channel 5 had no input at all
    mirrored = mirror_idle_parts_(model, lambda: model["aggr"](seen, index))
    assert mirrored == {"aggr": [["none", "min"], ["none", "max"], ["none", "sum"],
                                 ["none", "mean"], ["none", "none"], ["none", "none"]]}
    assert (float(aggr.p_neg_unit[0]), float(aggr.beta_neg[0])) == PART_CLASSICS["min"]
    assert (float(aggr.p_neg_unit[4]), float(aggr.beta_neg[4])) == PART_CLASSICS["mean"]
    assert model.training       # the mode is given back
    # On signed inputs, each mirrored channel is exactly that pooling of x.
    x = torch.randn(40, 6, dtype=torch.float64)
    out = aggr.double()(x, index)
    for k, reduce in enumerate(("max", "min", "sum", "mean")):
        torch.testing.assert_close(out[:, k], scatter(x[:, k], index, reduce=reduce))
    assert aggr.closest_pooling(1e-6)[:4] == ["max", "min", "sum", "mean"]


def test_mirror_idle_parts_sets_a_positive_part_fed_only_negative_values():
    from gnpool.training import mirror_idle_parts_

    aggr = GNPAggregation(channels=1, p=1.0, q=1.0, p_neg=float("inf"), q_neg=1.0)
    model = torch.nn.Sequential(aggr)
    index = torch.zeros(8, dtype=torch.long)
    assert mirror_idle_parts_(model, lambda: aggr(-torch.rand(8, 3) - 0.1, index)) == \
        {"0": [["min", "none"]]}
    assert aggr.closest_pooling(1e-6) == "min"
    # A part that saw a value of its sign, in any column or any call, is live.
    live = GNPAggregation(channels=1, p=float("inf"), q=1.0, p_neg=1.0, q_neg=1.0)
    x = torch.rand(8, 3)
    x[0, 2] = -1.0
    assert mirror_idle_parts_(torch.nn.Sequential(live), lambda: live(x, index)) == {}
    assert (float(live.p_neg_unit), float(live.beta_neg)) == (0.5, 0.0)


def test_mirror_idle_parts_leaves_fixed_gnps_and_rejects_bad_arguments():
    from gnpool.training import mirror_idle_parts_

    fixed = GNPAggregation(channels=1, p=float("inf"), q=1.0, learn=False)
    calls = []
    model = torch.nn.Sequential(fixed)
    # Checked before run() runs: nothing to mirror.
    with pytest.raises(ValueError, match="model has no learnable GNPAggregation"):
        mirror_idle_parts_(model, lambda: calls.append(1))
    assert calls == []
    with pytest.raises(ValueError, match="run must be a callable"):
        mirror_idle_parts_(model, None)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module, got function"):
        mirror_idle_parts_(lambda: None, model)
    learnable = torch.nn.Sequential(GNPAggregation(channels=1, p=float("inf"), q=1.0))
    with pytest.raises(ValueError, match="run\\(\\) called none of the model's learnable "
                                         "GNPAggregation modules \\('0'\\)"):
        mirror_idle_parts_(learnable, lambda: None)


def test_mirror_idle_parts_restores_every_submodule_mode_and_takes_odd_shapes():
    from gnpool.training import mirror_idle_parts_

    pool = GNPAggregation(channels=1, p=float("inf"), q=1.0, p_neg=1.0, q_neg=1.0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5), pool)
    model.train()
    model[1].eval()                         # a submodule the user froze in eval mode
    index = torch.arange(8) // 4

    def fails():
        pool(torch.rand(8, 3), index)
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        mirror_idle_parts_(model, fails)
    assert [m.training for m in model] == [True, False, True]
    assert not pool._forward_pre_hooks          # the hooks are gone
    # No feature columns: nothing seen, nothing mirrored.
    assert mirror_idle_parts_(model, lambda: pool(torch.zeros(8, 0), index)) == {}
    assert [m.training for m in model] == [True, False, True]
    # Three dimensions, pooled along dim 1.
    x = torch.rand(2, 8, 3)
    assert mirror_idle_parts_(model, lambda: pool(x, index, dim=1)) == {"2": [["none", "min"]]}
