"""GenAgg against its definition and Table 1 of Kortvelesy, Morad and Prorok (2023)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_sets, to_ptr
from hypothesis import given, settings
from hypothesis import strategies as st

from gnpool.baselines import GenAggAggregation
from gnpool.baselines.bijections import (
    Exp,
    Identity,
    Log,
    Power,
    monotone,
    monotone_derivative,
    monotone_inverse,
)
from gnpool.models import DeepSets, MessageMLPGNN, resolve_pooling


def sets(seed=0, positive=False):
    """Sets of 1 to 9 elements and one empty set, 3 channels, float64."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 2, 3, 5, 9, 0, 4]
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    x = torch.randn(int(sum(sizes)), 3, generator=gen, dtype=torch.float64)
    if positive:
        x = 0.1 + x.abs()
    return x, index, len(sizes)


def per_set(x, index, num_sets, fn):
    return torch.stack([fn(x[index == k]) if (index == k).any()
                        else torch.zeros(x.size(1), dtype=x.dtype) for k in range(num_sets)])


def genagg(f, alpha=0.0, beta=0.0):
    return GenAggAggregation(f=f, alpha=alpha, beta=beta).double()


# Table 1 of the paper: (alpha, beta, f) and the aggregator, on positive inputs where f
# needs them (log, 1/x).
TABLE_1 = {
    "mean": (0, 0, Identity(), False, lambda v: v.mean(0)),
    "sum": (1, 0, Identity(), False, lambda v: v.sum(0)),
    "product": (1, 0, Log(), True, lambda v: v.prod(0)),
    "harmonic mean": (0, 0, Power(-1), True, lambda v: v.size(0) / (1 / v).sum(0)),
    "geometric mean": (0, 0, Log(), True, lambda v: v.prod(0) ** (1 / v.size(0))),
    "root mean square": (0, 0, Power(2), False, lambda v: (v * v).mean(0).sqrt()),
    "euclidean norm": (1, 0, Power(2), False, lambda v: (v * v).sum(0).sqrt()),
    "standard deviation": (0, 1, Power(2), False,
                           lambda v: ((v - v.mean(0)) ** 2).mean(0).sqrt()),
    "log-sum-exp": (1, 0, Exp(1.0), False, lambda v: v.exp().sum(0).log()),
}


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_table_1_special_cases(name):
    alpha, beta, f, positive, fn = TABLE_1[name]
    x, index, num = sets(1, positive)
    torch.testing.assert_close(genagg(f, alpha, beta)(x, index, dim_size=num),
                               per_set(x, index, num, fn), rtol=1e-12, atol=1e-12)


P = 200.0


@pytest.mark.parametrize("name, f, positive, fn, bound", [
    # (1/p) log mean exp(p x) lies in [max - log(n) / p, max]
    ("max", Exp(P), False, lambda v: v.max(0).values, lambda n, v: -math.log(n) / P),
    ("min", Exp(-P), False, lambda v: v.min(0).values, lambda n, v: math.log(n) / P),
    # (mean x^p)^(1/p) lies in [max n^(-1/p), max] for x > 0
    ("max magnitude", Power(P), True, lambda v: v.max(0).values,
     lambda n, v: v * (n ** (-1 / P) - 1)),
    ("min magnitude", Power(-P), True, lambda v: v.min(0).values,
     lambda n, v: v * (n ** (1 / P) - 1)),
])
def test_table_1_limits(name, f, positive, fn, bound):
    x, index, num = sets(2, positive)
    got = genagg(f)(x, index, dim_size=num).detach()
    for k in range(num):
        v = x[index == k]
        if not len(v):
            assert bool((got[k] == 0).all())
            continue
        target = fn(v)
        edge = bound(len(v), target)
        lo, hi = torch.minimum(target, target + edge), torch.maximum(target, target + edge)
        assert bool(((got[k] >= lo - 1e-12) & (got[k] <= hi + 1e-12)).all()), name
    assert float(max(abs(math.log(9) / P), 9 ** (1 / P) - 1)) < 0.012


def learned(channels=3, seed=0, hidden=5):
    """A GenAgg with a learned f and random (non-trivial) parameters, float64."""
    torch.manual_seed(seed)
    module = GenAggAggregation(channels, alpha=0.3, beta=0.7, hidden=hidden).double()
    with torch.no_grad():
        for name in ("f_slope", "f_weight", "f_scale", "f_shift", "alpha", "beta"):
            param = getattr(module, name)
            param.add_(torch.randn_like(param))
    return module


def test_learned_f_is_increasing_and_its_inverse_exact():
    module = learned()
    c, w, a, b = module.f_parameters()
    x = torch.linspace(-1e3, 1e3, 2001, dtype=torch.float64).view(-1, 1).expand(-1, 3)
    y = monotone(x, c, w, a, b)
    assert bool((y.diff(dim=0) > 0).all())
    assert bool((monotone_derivative(x, c, w, a, b) >= c - 1e-15).all())
    torch.testing.assert_close(monotone_inverse(y, c, w, a, b), x, rtol=1e-12, atol=1e-10)
    y32 = monotone(x.float(), *(t.float() for t in (c, w, a, b)))
    back = monotone_inverse(y32, *(t.float() for t in (c, w, a, b)))
    torch.testing.assert_close(back.double(), x, rtol=1e-5, atol=2e-4)
    # Far beyond the tanh terms f is linear, and so is its inverse.
    huge = torch.tensor([[1e12, -1e12, 3e11]], dtype=torch.float64)
    torch.testing.assert_close(monotone_inverse(monotone(huge, c, w, a, b), c, w, a, b), huge)


def test_output_satisfies_the_defining_equation():
    # f(GenAgg(X)) = n^(alpha - 1) sum_i f(x_i - beta * mean(X)), per channel.
    module = learned(seed=1)
    x, index, num = sets(3)
    got = module(x, index, dim_size=num).detach()
    c, w, a, b = (t.detach() for t in module.f_parameters())
    alpha, beta = module.alpha.detach(), module.beta.detach()
    for k in range(num):
        v = x[index == k]
        if not len(v):
            assert bool((got[k] == 0).all())
            continue
        rhs = len(v) ** (alpha - 1) * monotone(v - beta * v.mean(0), c, w, a, b).sum(0)
        torch.testing.assert_close(monotone(got[k], c, w, a, b), rhs, rtol=1e-12, atol=1e-12)


def test_starts_close_to_the_mean():
    x, index, num = sets(4)
    module = GenAggAggregation(3).double()          # alpha = beta = 0, f near identity
    mean = per_set(x, index, num, lambda v: v.mean(0))
    got = module(x, index, dim_size=num).detach()
    assert float((got - mean).abs().max()) < 0.05
    c, w, a, b = module.f_parameters()
    torch.testing.assert_close(c, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(b[0], torch.linspace(-3, 3, 8, dtype=torch.float64))


def test_gradcheck_float64():
    module = learned(channels=2, seed=2, hidden=3)
    x, index = random_sets(9, 3, 2, seed=3)
    names = list(GenAggAggregation.pooling_parameter_names)

    def fn(x, *params):
        return torch.func.functional_call(module, dict(zip(names, params, strict=True)),
                                          (x, index), {"dim_size": 4})

    args = [t.detach().clone().requires_grad_(True)
            for t in (x, *(getattr(module, n) for n in names))]
    assert torch.autograd.gradcheck(fn, args)


def test_fixed_f_has_only_alpha_and_beta():
    module = GenAggAggregation(4, f=Power(2))
    assert {n for n, _ in module.named_parameters()} == {"alpha", "beta"}
    assert module.f_slope is None
    with pytest.raises(ValueError, match="f is fixed"):
        module.f_parameters()
    frozen = GenAggAggregation(4, learn=False)
    assert not list(frozen.parameters()) and frozen.f_weight.shape == (4, 8)


def test_empty_sets_pool_to_zero_with_finite_gradients():
    x, index, num = sets(5, positive=True)
    for module in (GenAggAggregation(3).double(), genagg(Power(-1)), genagg(Log(), 1.0)):
        xg = x.clone().requires_grad_(True)
        out = module(xg, index, dim_size=num)
        assert bool((out[5] == 0).all())
        out.sum().backward()
        assert torch.isfinite(xg.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_index_ptr_dim_and_channels():
    module = learned(seed=6)
    x, index = random_sets(30, 5, 3, seed=7, sort=True)
    by_index = module(x, index, dim_size=5)
    torch.testing.assert_close(module(x, ptr=to_ptr(index, 5)), by_index)
    out = module(torch.stack([x, 2 * x]), index, dim_size=5, dim=1)
    torch.testing.assert_close(out[1], module(2 * x, index, dim_size=5))
    # channels=1 shares one f across any number of channels.
    shared = GenAggAggregation().double()
    assert shared(x, index, dim_size=5).shape == (5, 3)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_permutation_invariance(num_elements, seed):
    module = learned(seed=8)
    x, index = random_sets(num_elements, 3, 3, seed=seed)
    perm = torch.randperm(num_elements, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(module(x[perm], index[perm], dim_size=3),
                               module(x, index, dim_size=3))


def test_float32_and_fp16():
    module = learned(seed=9)
    x, index = random_sets(40, 4, 3, seed=10)
    ref = module(x, index, dim_size=4)
    out = module.float()(x.float(), index, dim_size=4)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)
    half = module(x.half(), index, dim_size=4)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), module(x.half().float(), index, dim_size=4),
                               rtol=1e-3, atol=1e-3)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="channels must be a positive int, got 0"):
        GenAggAggregation(0)
    with pytest.raises(ValueError, match="hidden must be a positive int, got -1"):
        GenAggAggregation(hidden=-1)
    with pytest.raises(TypeError, match="f must be a gnpool.baselines.bijections.Bijection"):
        GenAggAggregation(f=torch.exp)
    with pytest.raises(ValueError, match="alpha must have 1 or channels=3 values, got 2"):
        GenAggAggregation(3, alpha=[0.0, 1.0])
    with pytest.raises(ValueError, match="beta must be finite"):
        GenAggAggregation(beta=math.nan)
    with pytest.raises(ValueError, match=r"channels=3 features in its last dimension"):
        GenAggAggregation(3)(torch.randn(4, 2))
    with pytest.raises(ValueError, match="dim must not be the last"):
        GenAggAggregation()(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match="p must be finite and non-zero"):
        Power(0.0)


def test_resolves_by_name_in_models():
    module = resolve_pooling("genagg", 8)
    assert type(module) is GenAggAggregation and module.channels == 8   # one f per channel
    assert resolve_pooling("genagg", 8, {"channels": 1}).channels == 1
    sets_model = DeepSets(1, 1, 8, pooling="genagg")
    assert sets_model(torch.rand(6, 1), torch.tensor([0, 0, 0, 1, 1, 1]),
                      dim_size=2).shape == (2, 1)
    gnn = MessageMLPGNN(3, 1, 8, 2, aggr="genagg", readout="genagg")
    x, edge_index = torch.randn(5, 3), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    assert gnn(x, edge_index).shape == (1, 1)
    assert set(GenAggAggregation.pooling_parameter_names) == {
        n for n, _ in GenAggAggregation(2).named_parameters()}


def test_copies_state_dicts_and_pickles_compute_the_same():
    import copy
    import pickle

    from gnpool.baselines import GenAggPowerAggregation, LAFAggregation

    x, index = random_sets(20, 3, 4, seed=11)
    x = x.abs()
    for make in (lambda: learned(channels=4, seed=12), lambda: genagg(Power(3.0), 0.5, 0.2),
                 lambda: LAFAggregation(4, units=3).double(),
                 lambda: GenAggPowerAggregation(4, p=[0.5, 2.0, -1.0, math.inf]).double()):
        module = make()
        expected = module(x, index, dim_size=3)
        for other in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
            torch.testing.assert_close(other(x, index, dim_size=3), expected)
        fresh = make()
        with torch.no_grad():
            for p in fresh.parameters():
                p.add_(0.5)
        fresh.load_state_dict(module.state_dict())
        torch.testing.assert_close(fresh(x, index, dim_size=3), expected)
