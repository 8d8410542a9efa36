"""gnpool.functional.gnp_unit: the bounded coordinates, their ends (exact max and min), the
geometric mean at p = 0, small exponents and infinite inputs."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import cpu_backends, log_space_gnp, random_sets, to_ptr

from gnpool.functional import gnp, gnp_unit

# Every backend with GNP kernels, Triton included where it is installed (see
# tests/test_functional_gnp.py); LARGE_BACKENDS for the test over thousands of elements.
BACKENDS = cpu_backends("gnp")
LARGE_BACKENDS = [name for name in BACKENDS if name != "triton"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def _unit(p: float) -> float:
    return math.copysign(1.0, p) if math.isinf(p) else math.atan(p) / (math.pi / 2)


def test_unit_coordinates_equal_the_p_q_form(backend):
    x, index = random_sets(150, 9, 4, seed=1)
    for p, q in ((1.0, 0.0), (2.0, 0.5), (-1.5, 1.0), (math.inf, 1.0), (7.0, -0.3)):
        beta = 0.0 if math.isinf(p) else (1 - q) / p
        a = gnp_unit(x, index, p_unit=_unit(p), beta=beta, backend=backend)
        b = gnp(x, index, p=p, q=q, backend=backend)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["index", "ptr"])
def test_gradcheck_near_the_ends_and_near_zero(backend, layout):
    # Per channel: close to max, close to min, close to the geometric mean from both
    # sides, and a mean-like channel; with ties and zeros.
    x = torch.tensor([[1.0, 0.0, 2.0, 0.5, 1.5], [1.0, 2.0, 0.3, 1.5, -1.0],
                      [0.5, -1.0, 0.7, 0.2, 3.0], [-2.0, 3.0, 1.1, 0.9, 0.4],
                      [-2.0, 3.0, 4.0, 1.3, 0.8], [0.3, -0.7, 0.2, 0.6, -0.5],
                      [4.0, -4.0, 1.0, 2.0, 1.0]], dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    a = torch.tensor([1 - 1e-6, -(1 - 1e-6), 1e-6, -1e-6, 0.6], dtype=torch.float64,
                     requires_grad=True)
    beta = torch.tensor([0.1, -0.2, 0.0, 0.3, 1.0], dtype=torch.float64, requires_grad=True)
    a_neg = torch.tensor([-0.999999, 0.999999, 0.4, -0.3, 2e-6], dtype=torch.float64,
                         requires_grad=True)
    kwargs = {"index": index} if layout == "index" else {"ptr": to_ptr(index, 3)}

    def fn(x, a, beta, a_neg):
        return gnp_unit(x, dim_size=3, p_unit=a, beta=beta, p_neg_unit=a_neg, beta_neg=0.5,
                        backend=backend, **kwargs)

    assert torch.autograd.gradcheck(fn, (x, a, beta, a_neg), eps=1e-8, atol=1e-5,
                                    fast_mode=backend == "triton")


@pytest.mark.parametrize("end", [1.0, -1.0])
def test_one_sided_gradients_at_exact_max_and_min(backend, end):
    # At p_unit = +-1 the function is exactly max / min; its gradients for x, p_unit and
    # beta are finite and equal one-sided finite differences (p_unit can only move
    # inwards) and the limit of the gradients from inside.
    x, index = random_sets(60, 5, 3, seed=2)
    x = x.abs() + 0.1
    beta = torch.tensor(0.2, dtype=torch.float64)
    upstream = torch.randn(5, 3, generator=torch.Generator().manual_seed(3),
                           dtype=torch.float64)

    def value(a: float) -> torch.Tensor:
        return (gnp_unit(x, index, p_unit=a, beta=beta, backend=backend) * upstream).sum()

    a = torch.tensor(end, dtype=torch.float64, requires_grad=True)
    b = beta.clone().requires_grad_()
    xg = x.clone().requires_grad_()
    out = (gnp_unit(xg, index, p_unit=a, beta=b, backend=backend) * upstream).sum()
    out.backward()
    assert all(bool(torch.isfinite(g).all()) for g in (a.grad, b.grad, xg.grad))
    assert a.grad.abs() > 1e-3
    h = 1e-7
    one_sided = (value(end) - value(end - math.copysign(h, end))) / h * math.copysign(1, end)
    torch.testing.assert_close(a.grad, one_sided, rtol=1e-4, atol=1e-8)
    # Continuity: the gradient just inside tends to the one at the end.
    inner = torch.tensor(end - math.copysign(1e-9, end), dtype=torch.float64,
                         requires_grad=True)
    (gnp_unit(x, index, p_unit=inner, beta=beta, backend=backend) * upstream).sum().backward()
    torch.testing.assert_close(inner.grad, a.grad, rtol=1e-5, atol=1e-8)
    # The value is n^beta * max (or min) exactly; beta's gradient is G log n.
    n = torch.bincount(index, minlength=5).double().view(-1, 1)
    how = "amax" if end > 0 else "amin"
    ext = torch.zeros(5, 3, dtype=torch.float64).scatter_reduce(
        0, index.view(-1, 1).expand_as(x), x, how, include_self=False)
    torch.testing.assert_close(b.grad, (upstream * ext * n ** 0.2 * n.log()).sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_geometric_mean_at_p_zero(backend, dtype):
    x, index = random_sets(300, 12, 4, seed=4, dtype=dtype)
    x = x.abs() + 0.05
    out = gnp(x, index, p=0.0, q=1.0, backend=backend)
    ref = torch.zeros(12, 4, dtype=torch.float64).index_add_(0, index, x.double().log())
    ref = (ref / torch.bincount(index).double().view(-1, 1)).exp()
    torch.testing.assert_close(out.double(), ref, rtol=1e-6 if dtype == torch.float32 else 1e-12,
                               atol=0)
    # A zero element makes p = 0 pool to 0.
    x[0] = 0.0
    assert bool((gnp(x, index, p=0.0, q=1.0, backend=backend)[index[0]] == 0).all())


@pytest.mark.parametrize("p", [3e-5, 1e-3, 6e-3, 2e-2, -4e-3])
def test_small_exponents_in_float32_match_float64(backend, p):
    # Around p = 0, log(mean y^p) / p loses its digits to cancellation; the cumulant
    # expansion keeps float32 values and gradients close to a float64 computation.
    x, index = random_sets(400, 10, 3, seed=5, dtype=torch.float64)
    x = x.abs() * 3 + 0.01
    upstream = torch.randn(10, 3, generator=torch.Generator().manual_seed(6),
                           dtype=torch.float64)

    def run(dtype):
        xs = x.to(dtype).requires_grad_()
        a = torch.tensor(_unit(p), dtype=dtype, requires_grad=True)
        out = gnp_unit(xs, index, p_unit=a, beta=0.3, backend=backend if dtype ==
                       torch.float32 else "native")
        grads = torch.autograd.grad((out * upstream.to(dtype)).sum(), (xs, a))
        return out.double(), *(g.double() for g in grads)

    got, ref = run(torch.float32), run(torch.float64)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-4, atol=0)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got[2], ref[2], rtol=2e-2, atol=1e-3)


def test_value_is_continuous_across_p_zero(backend):
    x, index = random_sets(200, 6, 2, seed=7)
    x = x.abs() + 0.1
    values = [gnp_unit(x, index, p_unit=a, beta=0.0, backend=backend)
              for a in (-1e-9, 0.0, 1e-9)]
    torch.testing.assert_close(values[0], values[1], rtol=1e-7, atol=0)
    torch.testing.assert_close(values[2], values[1], rtol=1e-7, atol=0)


INF = math.inf


@pytest.mark.parametrize("values, p, expected", [
    ([[INF], [1.0], [2.0], [3.0]], 1.0, [INF, 5.0]),    # sets {inf, 1}, {2, 3}
    ([[-INF], [1.0], [2.0], [3.0]], 1.0, [-INF, 5.0]),
    ([[INF], [1.0], [2.0], [3.0]], INF, [INF, 3.0]),
    ([[INF], [1.0], [2.0], [3.0]], -1.0, [1.0, 1.2]),   # p < 0 ignores an infinite y
    ([[INF], [-INF], [2.0], [3.0]], 1.0, [math.nan, 5.0]),  # inf - inf has no limit
    ([[INF], [INF], [2.0], [3.0]], -1.0, [INF, 1.2]),   # ... unless all are infinite
])
def test_infinite_inputs_give_the_limit(backend, values, p, expected):
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 1, 1])
    out = gnp(x, index, p=p, q=0.0, p_neg=p, backend=backend)
    torch.testing.assert_close(out.detach().view(-1), torch.tensor(expected).double(),
                               equal_nan=True)
    out.masked_fill(~torch.isfinite(out), 0.0).sum().backward()
    # Gradients are finite; the finite set's equal float64 formula.
    assert bool(torch.isfinite(x.grad).all())
    assert float(x.grad[2:].sum()) != 0.0


def test_geometric_mean_of_zero_and_infinity_is_nan(backend):
    x = torch.tensor([[0.0], [INF], [1.0], [4.0]], dtype=torch.float64)
    out = gnp(x, torch.tensor([0, 0, 1, 1]), p=0.0, q=1.0, backend=backend)
    assert bool(out[0].isnan()) and out[1].item() == pytest.approx(2.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_agree_across_the_whole_range(dtype):
    # Every exponent region at once, per channel: min, p < 0, near 0 (both sides), 0,
    # between 0 and 1, sum-like, large, max; for both parts, with zeros and ties.
    if len(LARGE_BACKENDS) < 2:
        pytest.skip(f"only one backend available: {LARGE_BACKENDS}")
    x, index = random_sets(2000, 80, 9, seed=8, dtype=dtype)
    x[::13] = 0.0
    x[1::17] = x[2::17]
    a = torch.tensor([-1.0, -0.7, -1e-4, 0.0, 3e-4, 0.3, 0.5, 0.95, 1.0], dtype=dtype)
    beta = torch.linspace(-0.5, 1.0, 9, dtype=dtype)
    outs, grads = [], []
    for name in LARGE_BACKENDS:
        leaves = [t.clone().requires_grad_() for t in (x, a, beta)]
        out = gnp_unit(leaves[0], index, p_unit=leaves[1], beta=leaves[2],
                       p_neg_unit=leaves[1].flip(0), beta_neg=0.25, backend=name)
        outs.append(out.detach())
        grads.append(torch.autograd.grad(out.square().sum(), leaves))
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)
    for out, grad in zip(outs[1:], grads[1:], strict=True):
        torch.testing.assert_close(out, outs[0], **tol)
        for g, g0 in zip(grad, grads[0], strict=True):
            scale = g0.abs().max().clamp_min(1.0)
            torch.testing.assert_close(g / scale, g0 / scale, **tol)


@pytest.mark.parametrize("kwargs, message", [
    ({"p_unit": 1.5}, r"p_unit must lie in \[-1, 1\]"),
    ({"p_neg_unit": torch.tensor([0.0, -1.01])}, r"p_neg_unit must lie in \[-1, 1\]"),
    ({"p_unit": float("nan")}, r"p_unit must lie in"),
    ({"beta": float("inf")}, "beta must be finite"),
])
def test_bad_unit_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gnp_unit(torch.randn(4, 2), **kwargs)


def test_log_space_reference_at_the_ends():
    # The float64 reference used above agrees with exact max/min at p = +-inf.
    assert log_space_gnp([1.0, 3.0, -2.0], INF, 0.0, -INF, 0.0) == 3.0
    assert log_space_gnp([1.0, 3.0, 2.0], -INF, 0.0, INF, 0.0) == 1.0
