"""GNPAggregation and the scripted GNP reject bad input by name instead of computing
something else."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from gnpool import GNPAggregation
from gnpool.aggr.gnp import upgrade_v01_state

INDEX = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("name", ["p_unit", "p_neg_unit"])
def test_a_nan_exponent_raises_instead_of_pooling_its_part_to_zero(name):
    pool = GNPAggregation(channels=3)
    with torch.no_grad():
        getattr(pool, name)[1] = float("nan")
    with pytest.raises(ValueError, match=rf"{name} must be a number in \[-1, 1\], got "
                                         r"\[0.5, nan, 0.5\]"):
        pool(torch.randn(6, 3), INDEX)
    with torch.no_grad():
        getattr(pool, name)[1] = 0.5
    assert torch.isfinite(pool(torch.randn(6, 3), INDEX)).all()


def test_a_non_finite_beta_still_raises():
    pool = GNPAggregation()
    with torch.no_grad():
        pool.beta_neg.fill_(float("inf"))
    with pytest.raises(ValueError, match="beta_neg must be finite, got \\[inf\\]"):
        pool(torch.randn(6, 2), INDEX)


def test_scripted_gnp_rejects_integer_inputs():
    scripted = torch.jit.script(GNPAggregation(p=2.0, q=0.0).eval())
    with pytest.raises(torch.jit.Error, match="x must be a floating-point tensor"):
        scripted(torch.tensor([[3], [4], [1], [1]]), torch.tensor([0, 0, 1, 1]))
    out = scripted(torch.tensor([[3.0], [4.0], [1.0], [1.0]]), torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(out, torch.tensor([[5.0], [2 ** 0.5]]))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"p": "2"}, TypeError, "p must be a number, a sequence of numbers or a tensor, got '2'"),
    ({"q_neg": None, "p": 1.0, "q": None}, TypeError, "q must be a number"),
    ({"learn": "no"}, TypeError, "learn must be True or False, got 'no'"),
])
def test_constructor_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        GNPAggregation(**kwargs)
    # numpy values are numbers too
    assert GNPAggregation(p=np.array([2.0])).closest_pooling() == "none"


def test_method_arguments_are_named():
    with pytest.raises(ValueError, match=r"name must be one of .*, got \['max'\]"):
        GNPAggregation.from_pooling(["max"])
    with pytest.raises(ValueError, match="pooling must be one name or a list of channels=1 "
                                         "names, got None"):
        GNPAggregation().snap_(None)
    with pytest.raises(ValueError, match="pooling names must be"):
        GNPAggregation(channels=2).snap_(["max", 3])
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        GNPAggregation()([[1.0], [2.0]], torch.tensor([0, 0]))
    for tolerance in (-1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="tolerance must be a non-negative number"):
            GNPAggregation().closest_pooling(tolerance)
    assert GNPAggregation.from_pooling("max").closest_pooling(0) == "max"


def _v01(**drop):
    state = {"p_logit": torch.zeros(1), "p_sign": torch.ones(1), "q": torch.zeros(1),
             "p_neg_logit": torch.zeros(1), "p_neg_sign": -torch.ones(1),
             "q_neg": torch.zeros(1)}
    return {k: v for k, v in state.items() if k not in drop}


def test_an_incomplete_v01_state_names_the_missing_keys():
    with pytest.raises(ValueError, match="this one lacks p_neg_logit, p_neg_sign, q_neg"):
        upgrade_v01_state(_v01(p_neg_logit=1, p_neg_sign=1, q_neg=1))
    with pytest.raises(ValueError, match="0 < p_min < p_max"):
        upgrade_v01_state(_v01(), p_min=5.0, p_max=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="this one lacks p_sign"):
            GNPAggregation().load_state_dict(_v01(p_sign=1))
        pool = GNPAggregation()
        pool.load_state_dict(_v01())          # complete: converted (p = +-sqrt(10), q = 0)
    assert pool.p.item() == pytest.approx(10 ** 0.5)
