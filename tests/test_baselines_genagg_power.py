"""GenAgg's power-mean form against float64 formulas: the classic means, exact max and
min at p' = +-2, the expansion near p = 0, zeros and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_sets, to_ptr
from hypothesis import given, settings
from hypothesis import strategies as st

from gnpool.baselines import GenAggPowerAggregation
from gnpool.baselines.genagg_power import fold
from gnpool.models import DeepSets, resolve_pooling


def sets(seed=0):
    """Positive sets of 1 to 9 elements and one empty set, 3 channels, float64."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 2, 3, 5, 9, 0, 4]
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    x = 0.1 + torch.randn(int(sum(sizes)), 3, generator=gen, dtype=torch.float64).abs()
    return x, index, len(sizes)


def per_set(x, index, num_sets, fn):
    return torch.stack([fn(x[index == k]) if (index == k).any()
                        else torch.zeros(x.size(1), dtype=x.dtype) for k in range(num_sets)])


def power(p, alpha=0.0, channels=1):
    """A float64 module whose p' and alpha were computed in float64."""
    module = GenAggPowerAggregation(channels, p=p, alpha=alpha).double()
    module.reset_parameters()
    return module


def power_mean(p):
    return lambda v: (v ** p).mean(0) ** (1 / p)


CASES = {   # (p, alpha, aggregator): the special cases of the power-mean form
    "mean": (1.0, 0.0, lambda v: v.mean(0)),
    "sum": (1.0, 1.0, lambda v: v.sum(0)),
    "max": (math.inf, 0.0, lambda v: v.max(0).values),
    "min": (-math.inf, 0.0, lambda v: v.min(0).values),
    "geometric mean": (0.0, 0.0, lambda v: v.log().mean(0).exp()),
    "root mean square": (2.0, 0.0, lambda v: (v * v).mean(0).sqrt()),
    "euclidean norm": (2.0, 0.5, lambda v: (v * v).sum(0).sqrt()),
    "harmonic mean": (-1.0, 0.0, lambda v: v.size(0) / (1 / v).sum(0)),
    "cubic mean times n": (3.0, 1.0, lambda v: v.size(0) * power_mean(3.0)(v)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_special_cases(name):
    p, alpha, fn = CASES[name]
    x, index, num = sets(1)
    module = power(p, alpha)
    torch.testing.assert_close(module(x, index, dim_size=num), per_set(x, index, num, fn),
                               rtol=1e-12, atol=1e-12)


def test_p_prime_maps_through_tan_and_folds():
    module = power([1.0, math.inf, -math.inf, 0.0, 2.0], channels=5)
    torch.testing.assert_close(module.p_prime.detach(),
                               torch.tensor([1.0, 2.0, -2.0, 0.0, 4 / math.pi * math.atan(2.0)],
                                            dtype=torch.float64))
    p = module.p
    assert p[1] == math.inf and p[2] == -math.inf and p[3] == 0.0
    torch.testing.assert_close(p[[0, 4]], torch.tensor([1.0, 2.0], dtype=torch.float64))
    values = torch.tensor([-2.0, -1.0, 0.5, 2.0, 2.5, 6.0, -6.5, 10.0])
    torch.testing.assert_close(fold(values), torch.tensor([-2.0, -1.0, 0.5, 2.0, 1.5, -2.0,
                                                           1.5, 2.0]))
    # Beyond +-2 the exponent comes back: p' = 2.5 is p' = 1.5.
    x, index, num = sets(2)
    folded = power(1.0)
    with torch.no_grad():
        folded.p_prime.fill_(2.5)
    inside = power(math.tan(math.pi / 4 * 1.5))
    torch.testing.assert_close(folded(x, index, dim_size=num), inside(x, index, dim_size=num))


@pytest.mark.parametrize("p", [5e-4, -5e-4, 2e-3, -2e-3, 0.3, 40.0, -40.0])
def test_any_exponent_matches_the_float64_formula(p):
    # 5e-4 uses the cumulant expansion, 2e-3 the direct form: both against (mean x^p)^(1/p).
    x, index, num = sets(3)
    torch.testing.assert_close(power(p)(x, index, dim_size=num),
                               per_set(x, index, num, power_mean(p)), rtol=1e-9, atol=1e-12)


def test_large_exponents_approach_max_and_min():
    x, index, num = sets(4)
    top = per_set(x, index, num, lambda v: v.max(0).values)
    n = torch.bincount(index, minlength=num).double().clamp_min(1).view(-1, 1)
    near = power(1000.0)(x, index, dim_size=num).detach()
    assert bool(((near <= top + 1e-12) & (near >= top * n ** (-1 / 1000) - 1e-12)).all())


def test_zeros():
    x = torch.tensor([[0.0, 2.0], [3.0, 0.0], [4.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    index = torch.tensor([0, 0, 1, 2])
    # p > 0: a zero contributes 0 to the mean; an all-zero set pools to 0.
    torch.testing.assert_close(power(2.0)(x, index, dim_size=4),
                               torch.tensor([[math.sqrt(4.5), math.sqrt(2.0)],
                                             [4.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
                                            dtype=torch.float64))
    # p < 0 and p -> 0: any zero makes the output 0 (the limit).
    for p in (-1.0, -math.inf, 0.0):
        out = power(p)(x, index, dim_size=4)
        assert bool((out[0] == 0).all()) and bool((out[2:] == 0).all()) and out[1, 0] == 4.0
    torch.testing.assert_close(power(math.inf)(x, index, dim_size=4)[0],
                               torch.tensor([3.0, 2.0], dtype=torch.float64))


@pytest.mark.parametrize("p", [2.0, -1.0, 0.0, 1e-4, math.inf, -math.inf])
def test_gradients_are_finite_with_zeros_and_empty_sets(p):
    x = torch.tensor([[0.0, 2.0], [3.0, 0.0], [4.0, 1.0], [0.0, 0.0], [5.0, 5.0]],
                     dtype=torch.float64, requires_grad=True)
    module = power(p, 0.5)
    module(x, torch.tensor([0, 0, 1, 2, 1]), dim_size=4).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(module.p_prime.grad).all() and torch.isfinite(module.alpha.grad).all()


@pytest.mark.parametrize("p_prime", [0.6, 1.5, -1.3, -0.4, 5e-4, 3.0])
def test_gradcheck_float64(p_prime):
    x, index = random_sets(10, 3, 2, seed=5)
    x = 0.2 + x.abs()
    module = power(1.0, channels=2)

    def fn(x, p_prime, alpha):
        return torch.func.functional_call(module, {"p_prime": p_prime, "alpha": alpha},
                                          (x, index), {"dim_size": 4})

    args = [x.requires_grad_(True),
            torch.tensor([p_prime, p_prime / 2], dtype=torch.float64, requires_grad=True),
            torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("p, extreme", [(math.inf, "amax"), (-math.inf, "amin")])
def test_exact_max_and_min_still_pass_a_gradient_to_p_prime(p, extreme):
    # At p' = +-2, d out / d p' = extreme * log(n / k) * pi / 4 (k ties): the one-sided
    # derivative from inside [-2, 2], so a parameter started at exact max can move.
    x = torch.tensor([[1.0], [3.0], [2.0], [0.5]], dtype=torch.float64)
    module = power(p)
    module(x).sum().backward()
    value = float(getattr(torch, extreme)(x))
    assert float(module.p_prime.grad) == pytest.approx(value * math.log(4) * math.pi / 4,
                                                       rel=1e-9)


def test_index_ptr_dim():
    module = power([0.7, 3.0, -2.0], alpha=[0.0, 0.5, 1.0], channels=3)
    x, index = random_sets(30, 5, 3, seed=7, sort=True)
    x = x.abs()
    by_index = module(x, index, dim_size=5)
    torch.testing.assert_close(module(x, ptr=to_ptr(index, 5)), by_index)
    out = module(torch.stack([x, 2 * x]), index, dim_size=5, dim=1)
    torch.testing.assert_close(out[1], module(2 * x, index, dim_size=5))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 20), st.integers(0, 2**31 - 1), st.floats(-2.0, 2.0))
def test_permutation_invariance(num_elements, seed, p_prime):
    module = power(1.0)
    with torch.no_grad():
        module.p_prime.fill_(p_prime)
    x, index = random_sets(num_elements, 3, 2, seed=seed)
    x = x.abs()
    perm = torch.randperm(num_elements, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(module(x[perm], index[perm], dim_size=3),
                               module(x, index, dim_size=3))


def test_float32_matches_float64():
    x, index, num = sets(8)
    for p in (1.0, 7.0, -3.0, math.inf, 0.0):
        ref = power(p, 0.5)(x, index, dim_size=num)
        out = GenAggPowerAggregation(p=p, alpha=0.5)(x.float(), index, dim_size=num)
        torch.testing.assert_close(out.double(), ref, rtol=2e-5, atol=1e-6)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="channels must be a positive int, got 0"):
        GenAggPowerAggregation(0)
    with pytest.raises(ValueError, match="p must be not NaN"):
        GenAggPowerAggregation(p=math.nan)
    with pytest.raises(ValueError, match="alpha must be finite"):
        GenAggPowerAggregation(alpha=math.inf)
    with pytest.raises(ValueError, match="p must have 1 or channels=2 values, got 3"):
        GenAggPowerAggregation(2, p=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"x must be non-negative \(a power mean\), got a "
                                         r"minimum of -1.0"):
        GenAggPowerAggregation()(torch.tensor([[1.0], [-1.0]]))
    with pytest.raises(ValueError, match=r"channels=2 features in its last dimension"):
        GenAggPowerAggregation(2)(torch.rand(4, 3))


def test_resolves_by_name():
    module = resolve_pooling("genaggpower", 8)
    assert type(module) is GenAggPowerAggregation and module.p_prime.shape == (8,)
    model = DeepSets(1, 1, 8, pooling="genagg_power", pooling_kwargs={"p": math.inf})
    assert model(torch.rand(6, 1), torch.tensor([0, 0, 0, 1, 1, 1]), dim_size=2).shape == (2, 1)
    assert set(GenAggPowerAggregation.pooling_parameter_names) == {
        n for n, _ in GenAggPowerAggregation().named_parameters()}
