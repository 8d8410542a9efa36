"""gnpool.functional.gnp against independent references."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import cpu_backends, gradcheck_backend, log_space_gnp, naive_gnp, random_sets, to_ptr
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.nn import aggr as pyg

from gnpool.functional import gnp, gnp_unit

# Every backend with GNP kernels, Triton included where it is installed (under its
# interpreter on a machine without a GPU; tests/test_kernels_triton_gnp.py reports its
# absence). The hypothesis properties (up to 150 examples) and the tests over thousands of
# elements run on the others (LARGE_BACKENDS): interpreted, a Triton launch costs
# milliseconds per set. tests/test_kernels_triton_gnp.py checks the Triton kernels for the
# same properties on smaller inputs (the hypothesis examples as one batch of sets).
BACKENDS = cpu_backends("gnp")
LARGE_BACKENDS = [name for name in BACKENDS if name != "triton"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param

INF = math.inf

# (p, q, p_neg, q_neg): sum, mean, RMS-like, mixed signs, concave, min-like, exact max and
# min, the geometric mean.
PARAMS = [
    (1.0, 0.0, 1.0, 0.0),
    (1.0, 1.0, 1.0, 1.0),
    (2.0, 0.5, 3.0, 1.0),
    (2.5, 0.3, -1.5, 0.7),
    (0.3, 0.2, 0.5, 1.0),
    (-3.0, 1.0, 2.0, 0.5),
    (40.0, 1.0, -40.0, 0.0),
    (INF, 1.0, -INF, 1.0),
    (-INF, 0.3, INF, 0.0),
    (0.0, 1.0, 0.0, 1.0),
]


@pytest.mark.parametrize("params", PARAMS)
def test_forward_matches_float64_formula(backend, params):
    x, index = random_sets(200, 13, 5, seed=1)
    out = gnp(x, index, dim_size=15, p=params[0], q=params[1], p_neg=params[2],
              q_neg=params[3], backend=backend)
    ref = naive_gnp(x, index, 15, *params)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_per_channel_parameters_match_formula(backend):
    x, index = random_sets(150, 9, 4, seed=2)
    p = torch.tensor([1.0, 2.0, -2.0, 7.0], dtype=torch.float64)
    q = torch.tensor([0.0, 1.0, 0.5, -0.5], dtype=torch.float64)
    p_neg = torch.tensor([1.5, -1.0, 3.0, 0.5], dtype=torch.float64)
    out = gnp(x, index, p=p, q=q, p_neg=p_neg, q_neg=0.25, backend=backend)
    torch.testing.assert_close(out, naive_gnp(x, index, 9, p, q, p_neg, 0.25))


@pytest.mark.parametrize("params", [p for p in PARAMS if 0.0 not in p[::2]])
def test_gradients_match_float64_formula(backend, params):
    x, index = random_sets(120, 7, 3, seed=3)
    # Keep every element away from 0, where the formula's own autograd is undefined.
    x = torch.where(x.abs() < 0.05, torch.full_like(x, 0.3), x)
    tensors = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in params]
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    weight = torch.randn(7, 3, dtype=torch.float64)
    (gnp(x1, index, p=tensors[0], q=tensors[1], p_neg=tensors[2], q_neg=tensors[3],
         backend=backend) * weight).sum().backward()
    ours = [x1.grad] + [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    (naive_gnp(x2, index, 7, *tensors) * weight).sum().backward()
    # The formula does not depend on p or q at p = +-inf (exactly max and min).
    ref = [x2.grad] + [torch.zeros(()).double() if t.grad is None else t.grad for t in tensors]
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def _gradcheck_inputs():
    # Ties, exact zeros, an all-zero set, a set without positives, a single element.
    # (At a zero, |p| in (1, 2) makes central differences converge only like eps^(p-1),
    # so the parameters below keep |p| = 1 or |p| >= 2 or p < 0.)
    x = torch.tensor([[1.0, 0.0], [1.0, 2.0], [0.0, -1.0],
                      [0.0, 0.0], [0.0, 0.0],
                      [-2.0, 3.0], [-2.0, 3.0], [0.5, -0.7],
                      [0.0, -1.0], [-1.0, -2.0],
                      [4.0, -4.0]], dtype=torch.float64)
    index = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4])
    return x, index


@pytest.mark.parametrize("params", [(1.0, 0.0, 1.0, 0.0), (1.0, 1.0, 1.0, 1.0),
                                    (2.0, 0.5, 2.0, 0.5), (3.0, 0.3, 2.0, 1.0),
                                    (-2.0, 1.0, -3.0, 0.5), (2.5, -0.5, -2.0, 2.0)])
@pytest.mark.parametrize("layout", ["index", "ptr"])
def test_gradcheck_with_ties_and_zeros(backend, params, layout):
    x, index = _gradcheck_inputs()
    x.requires_grad_()
    p, q = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in params[:2])
    p_neg, q_neg = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in params[2:])
    kwargs = {"index": index} if layout == "index" else {"ptr": to_ptr(index, 6)}

    def fn(x, p, q, p_neg, q_neg, backend):
        return gnp(x, dim_size=6, p=p, q=q, p_neg=p_neg, q_neg=q_neg, backend=backend, **kwargs)

    gradcheck_backend(fn, (x, p, q, p_neg, q_neg), backend, eps=1e-7, atol=1e-5)


def test_gradcheck_per_channel_unsorted(backend):
    x, index = random_sets(40, 6, 3, seed=4)
    x[::7, 1] = 0.0
    x[3] = x[5]
    x.requires_grad_()
    p = torch.tensor([1.0, 2.0, -1.5], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64, requires_grad=True)

    def fn(x, p, q, backend):
        return gnp(x, index, dim_size=7, p=p, q=q, p_neg=2.0, q_neg=q, backend=backend)

    gradcheck_backend(fn, (x, p, q), backend, eps=1e-7, atol=1e-5)


def test_sum_and_mean_equal_pyg(backend):
    x, index = random_sets(500, 40, 8, seed=5, dtype=torch.float32)
    sum_ = gnp(x, index, dim_size=42, p=1.0, q=0.0, backend=backend)
    mean = gnp(x, index, dim_size=42, p=1.0, q=1.0, backend=backend)
    torch.testing.assert_close(sum_, pyg.SumAggregation()(x, index, dim_size=42),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, pyg.MeanAggregation()(x, index, dim_size=42),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", LARGE_BACKENDS)
@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_and_min_are_exact_for_any_set_size(backend, name, dtype):
    # p = +-inf is exactly max / min, whatever q, from sets of 1 to 5000 elements.
    sizes = torch.tensor([1, 2, 7, 100, 1000, 5000])
    index = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    x = torch.randn(len(index), 5, generator=torch.Generator().manual_seed(6), dtype=dtype)
    x[index == 2] = -x[index == 2].abs()  # a set with no positive element
    x[index == 3] = x[index == 3].abs()
    sign = 1.0 if name == "max" else -1.0
    out = gnp(x, index, p=sign * INF, q=0.3, p_neg=-sign * INF, q_neg=1.7, backend=backend)
    ref = (pyg.MaxAggregation() if name == "max" else pyg.MinAggregation())(x, index)
    assert torch.equal(out, ref)
    # The gradient goes to the extreme element (split evenly among ties).
    xg = x.clone().requires_grad_()
    gnp(xg, index, p=sign * INF, p_neg=-sign * INF, backend=backend).sum().backward()
    xr = x.clone().requires_grad_()
    scatter = torch.zeros(len(sizes), 5, dtype=dtype).scatter_reduce(
        0, index.view(-1, 1).expand_as(xr), xr, "amax" if name == "max" else "amin",
        include_self=False)
    scatter.sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)


def test_index_ptr_and_unsorted_agree(backend):
    x, index = random_sets(300, 20, 4, seed=7, sort=True)
    ptr = to_ptr(index, 20)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    kw = dict(p=2.0, q=0.7, p_neg=-1.5, q_neg=0.2, backend=backend)
    a = gnp(x, index, dim_size=20, **kw)
    b = gnp(x, ptr=ptr, **kw)
    c = gnp(x[perm], index[perm], dim_size=20, **kw)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_agree(dtype):
    x, index = random_sets(3000, 150, 16, seed=8, dtype=dtype)
    x[::11] = 0.0
    p = torch.linspace(-4, 4, 16, dtype=dtype)
    p = torch.where(p.abs() < 0.5, torch.ones_like(p), p).requires_grad_()
    grads, outs = [], []
    for name in LARGE_BACKENDS:
        xi = x.clone().requires_grad_()
        out = gnp(xi, index, p=p, q=0.5, p_neg=2.0, q_neg=1.0, backend=name)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append((xi.grad, p.grad.clone()))
        p.grad = None
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)
    for out, (gx, gp) in zip(outs[1:], grads[1:], strict=True):
        torch.testing.assert_close(out, outs[0], **tol)
        torch.testing.assert_close(gx, grads[0][0], **tol)
        torch.testing.assert_close(gp, grads[0][1], **tol)


@pytest.mark.parametrize("layout", ["sorted", "unsorted"])
def test_float32_wide_matches_float64_reference(backend, layout):
    # 37 channels: the CPU kernels' blocks of 16 plus a remainder; zeros, subnormals, ties,
    # both signs, and per-channel exponents on both sides of 1 (and exactly 1), of both signs.
    gen = torch.Generator().manual_seed(21)
    sizes = torch.tensor([1, 2, 3, 17, 40, 0, 5])
    index = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    x = torch.randn(len(index), 37, generator=gen, dtype=torch.float64)
    x[::7] = 0.0
    x[1::9, :5] = 1e-40                  # float32 subnormals
    x[2::5, 5:9] = x[3::5, 5:9].abs().max()  # ties at the maximum
    if layout == "unsorted":
        order = torch.randperm(len(index), generator=gen)
        x, index = x[order], index[order]
    mags = torch.tensor([0.3, 1.0, 2.5, 7.0, 50.0], dtype=torch.float64)
    p = mags.repeat(8)[:37] * torch.where(torch.arange(37) % 3 == 0, -1.0, 1.0).double()
    p_neg = mags.flip(0).repeat(8)[:37]
    q = torch.linspace(-0.5, 1.5, 37, dtype=torch.float64)
    q_neg = q.flip(0)
    upstream = torch.randn(len(sizes), 37, generator=gen, dtype=torch.float64)

    def run(dtype, name):
        leaves = [t.to(dtype).requires_grad_() for t in (x, p, q, p_neg, q_neg)]
        out = gnp(leaves[0], index, dim_size=len(sizes), p=leaves[1], q=leaves[2],
                  p_neg=leaves[3], q_neg=leaves[4], backend=name)
        grads = torch.autograd.grad((out * upstream.to(dtype)).sum(), leaves)
        return [out.detach().double(), *(g.double() for g in grads)]

    reference = run(torch.float64, "native")
    got = run(torch.float32, backend)
    for name, a, b in zip(["out", "x", "p", "q", "p_neg", "q_neg"], got, reference,
                          strict=True):
        assert bool(torch.isfinite(a).all()), name
        scale = b.abs().max().clamp_min(1.0)
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=2e-4, msg=name)


def test_empty_sets_pool_to_zero(backend):
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 2, 2, 2, 5])
    for kw in ({"index": index, "dim_size": 8}, {"ptr": torch.tensor([0, 2, 2, 5, 5, 5, 6, 6, 6])}):
        out = gnp(x, p=-2.0, q=0.5, p_neg=3.0, backend=backend, **kw)
        assert out.shape == (8, 3)
        assert torch.equal(out[[1, 3, 4, 6, 7]], torch.zeros(5, 3, dtype=torch.float64))
        out.sum().backward()
        assert bool(torch.isfinite(x.grad).all())
        x.grad = None


def test_nan_stays_in_its_set(backend):
    x, index = random_sets(100, 5, 3, seed=9)
    x[index == 2] = x[index == 2].abs()  # NaN among zeros-free positives ...
    first2, first4 = (index == 2).nonzero()[0], (index == 4).nonzero()[0]
    x[first2, 0] = float("nan")
    x[index == 4] = -x[index == 4].abs()  # ... and in a set whose positive part is all zero
    x[first4, 1] = float("nan")
    x.requires_grad_()
    out = gnp(x, index, p=2.0, q=0.5, p_neg=2.0, backend=backend)
    assert bool(out[2, 0].isnan()) and bool(out[4, 1].isnan())
    clean = torch.ones_like(out, dtype=torch.bool)
    clean[2, 0] = clean[4, 1] = False
    assert bool(torch.isfinite(out[clean]).all())
    ref = naive_gnp(x.detach().nan_to_num(0.0), index, 5, 2.0, 0.5, 2.0, 0.5)
    torch.testing.assert_close(out[[0, 1, 3]], ref[[0, 1, 3]])
    out.masked_fill(~clean, 0.0).sum().backward()
    # Elements of the other sets get finite gradients.
    others = (index != 2) & (index != 4)
    assert bool(torch.isfinite(x.grad[others]).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(backend, dtype):
    x, index = random_sets(200, 10, 4, seed=10, dtype=torch.float32)
    x = x.to(dtype)
    out = gnp(x, index, p=3.0, q=1.0, backend=backend)
    assert out.dtype == dtype
    ref = gnp(x.float(), index, p=3.0, q=1.0, backend=backend).to(dtype)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_pooled_dimension_and_batch_dimensions(backend):
    x = torch.randn(3, 50, 4, dtype=torch.float64)
    index = torch.randint(0, 6, (50,), generator=torch.Generator().manual_seed(11))
    p = torch.tensor([1.0, 2.0, 3.0, -2.0], dtype=torch.float64)
    out = gnp(x, index, dim_size=6, dim=1, p=p, q=0.5, backend=backend)
    assert out.shape == (3, 6, 4)
    for b in range(3):
        torch.testing.assert_close(out[b], naive_gnp(x[b], index, 6, p, 0.5, p, 0.5))
    # Pooling the last dimension (scalar parameters only) and a 1-D input.
    y = torch.randn(4, 30, dtype=torch.float64)
    last = gnp(y, torch.arange(30) % 3, dim=-1, p=2.0, backend=backend)
    torch.testing.assert_close(last, naive_gnp(y.t(), torch.arange(30) % 3, 3, 2.0, 0.0, 2.0,
                                               0.0).t())
    v = torch.randn(30, dtype=torch.float64)
    torch.testing.assert_close(gnp(v, dim=0, p=2.0, q=1.0, backend=backend),
                               naive_gnp(v.view(-1, 1), torch.zeros(30, dtype=torch.long), 1,
                                         2.0, 1.0, 2.0, 1.0).view(1))


@pytest.mark.parametrize("backend", LARGE_BACKENDS)
def test_saves_only_set_statistics_for_backward(backend):
    # Besides the input itself, nothing saved for backward may scale with the elements.
    e, s, k = 4000, 50, 8
    x, index = random_sets(e, s, k, seed=12, dtype=torch.float32)
    x.requires_grad_()
    p = torch.full((k,), 2.0, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = gnp(x, index, dim_size=s, p=p, q=0.5, backend=backend)
    big = [t for t in saved if t.numel() >= e and t.data_ptr() != x.data_ptr()]
    # Integer index vectors (one entry per element, not per element x channel) are allowed.
    assert all(t.dim() == 1 and not t.is_floating_point() for t in big), \
        [tuple(t.shape) for t in big]
    others = [t for t in saved if t.data_ptr() != x.data_ptr()]
    assert all(t.numel() <= 6 * s * k or t.dim() == 1 for t in others)
    out.sum().backward()
    assert x.grad is not None and p.grad is not None


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_permutation_invariance(data):
    n = data.draw(st.integers(1, 40))
    sets = data.draw(st.integers(1, 5))
    seed = data.draw(st.integers(0, 2**16))
    x, index = random_sets(n, sets, 3, seed=seed)
    p = data.draw(st.sampled_from([1.0, 2.0, -2.0, 0.5, 30.0]))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    for name in LARGE_BACKENDS:
        a = gnp(x, index, dim_size=sets, p=p, q=0.5, p_neg=-p, backend=name)
        b = gnp(x[perm], index[perm], dim_size=sets, p=p, q=0.5, p_neg=-p, backend=name)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=8), seed=st.integers(0, 2**16))
def test_index_and_ptr_equivalence(sizes, seed):
    count = torch.tensor(sizes)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), count.cumsum(0)])
    index = torch.repeat_interleave(torch.arange(len(sizes)), count)
    x = torch.randn(int(count.sum()), 2, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    for name in LARGE_BACKENDS:
        a = gnp(x, index, dim_size=len(sizes), p=3.0, q=0.3, p_neg=-2.0, backend=name)
        b = gnp(x, ptr=ptr, p=3.0, q=0.3, p_neg=-2.0, backend=name)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


magnitudes = st.floats(-30, 30).map(lambda e: 10.0 ** e)
signed = st.tuples(magnitudes, st.sampled_from([-1.0, 0.0, 1.0])).map(lambda t: t[0] * t[1])


@settings(max_examples=150, deadline=None)
@given(values=st.lists(signed, min_size=1, max_size=6),
       p=st.floats(0.1, 100) | st.just(INF), sign=st.sampled_from([-1.0, 1.0]),
       p_neg=st.floats(0.1, 100) | st.just(INF), sign_neg=st.sampled_from([-1.0, 1.0]),
       q=st.floats(-1, 1), q_neg=st.floats(-1, 1))
def test_extreme_values_stay_finite_and_accurate(values, p, sign, p_neg, sign_neg, q, q_neg):
    # Magnitudes 1e-30..1e30, zeros, ties, mixed signs, any |p| in [0.1, 100] or inf: float64
    # outputs and gradients are finite and agree with a log-space fsum reference.
    p, p_neg = sign * p, sign_neg * p_neg
    ref = log_space_gnp(values, p, q, p_neg, q_neg)
    if not math.isfinite(ref) or abs(ref) > 1e300:
        return
    # The parts may cancel (e.g. 1 - 1): the error is relative to the parts, not to their
    # difference.
    parts = (abs(log_space_gnp([max(v, 0.0) for v in values], p, q, 1.0, 0.0))
             + abs(log_space_gnp([max(-v, 0.0) for v in values], p_neg, q_neg, 1.0, 0.0)))
    for name in LARGE_BACKENDS:
        x = torch.tensor(values, dtype=torch.float64).view(-1, 1).requires_grad_()
        pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        qt = torch.tensor(q, dtype=torch.float64, requires_grad=True)
        out = gnp(x, dim=0, p=pt, q=qt, p_neg=p_neg, q_neg=q_neg, backend=name)
        assert math.isclose(out.item(), ref, rel_tol=1e-9, abs_tol=1e-12 * parts + 1e-300), \
            (name, out.item())
        out.sum().backward()
        for g in (x.grad, pt.grad, qt.grad):
            assert bool(torch.isfinite(g).all()), (name, g)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(signed, min_size=1, max_size=6), p=st.floats(1.0, 100) | st.just(INF),
       sign=st.sampled_from([-1.0, 1.0]), q=st.floats(0, 1))
def test_float32_extremes_stay_finite(values, p, sign, q):
    # In float32 the true value of these parameters stays below 6 * 1e30, so it is finite.
    for name in LARGE_BACKENDS:
        x = torch.tensor(values, dtype=torch.float32).view(-1, 1).requires_grad_()
        out = gnp(x, dim=0, p=sign * p, q=q, p_neg=-sign * p, backend=name)
        ref = log_space_gnp(values, sign * p, q, -sign * p, q)
        assert math.isclose(out.item(), ref, rel_tol=1e-4, abs_tol=1e-35), (name, out.item(), ref)
        out.sum().backward()
        assert bool(torch.isfinite(x.grad).all())


# Float32 sets whose magnitudes span more than float32's range of ratios: y / r overflows
# (1e30 / 1e-30) or underflows (3e-44 / 1e-3), where l = log(y / r) must still be exact.
WIDE_SETS = [[1e-30, 1e30, 1.0], [3.08e-44, 1e-3, 2e-4, 5e-7], [0.0, 1e-30, 1e30, 2.0],
             [-1e-30, 1e30, -2.0, 1e-30], [1e-38, 1e-3, 1.0], [1e-30, 1e30]]


@pytest.mark.parametrize("p", [-1.0, -0.3, -0.02, 0.02, 0.3, 1.0])
def test_float32_sets_wider_than_the_float_range_stay_accurate(backend, p):
    compared = 0
    for values in WIDE_SETS:
        x = torch.tensor(values, dtype=torch.float32).view(-1, 1).requires_grad_()
        pt = torch.tensor(p, requires_grad=True)
        out = gnp(x, dim=0, p=pt, q=0.6, p_neg=p, q_neg=0.6, backend=backend)
        stored = x.detach().flatten().tolist()      # as float32 holds them (3.08e-44 is not)
        ref = log_space_gnp(stored, p, 0.6, p, 0.6)
        parts = (abs(log_space_gnp([max(v, 0.0) for v in stored], p, 0.6, 1.0, 0.0))
                 + abs(log_space_gnp([max(-v, 0.0) for v in stored], p, 0.6, 1.0, 0.0)))
        # Subnormal outputs (below 1.2e-38) keep fewer digits: an absolute tolerance there.
        assert math.isclose(out.item(), ref, rel_tol=1e-4, abs_tol=1e-5 * parts + 1e-42), \
            (values, out.item(), ref)
        out.sum().backward()
        assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(pt.grad)), values
        # The gradients (in the CPU kernels, a separate exact loop for such sets) against
        # float64 on the same inputs, where its ratios stay in range. Compared where the
        # float64 gradient lies well inside float32's range (beyond it float32 gives 0: an
        # overflowing one-sided derivative counts as 0), to 1%: with a subnormal reference
        # (3e-44) r * A itself keeps only a few bits.
        x64 = x.detach().double().requires_grad_()
        p64 = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        gnp(x64, dim=0, p=p64, q=0.6, p_neg=p, q_neg=0.6, backend=backend).sum().backward()
        grads = torch.cat([x.grad.double().flatten(), pt.grad.double().view(1)])
        grads64 = torch.cat([x64.grad.flatten(), p64.grad.view(1)])
        inside = (grads64.abs() > 1e-30) & (grads64.abs() < 1e30)
        torch.testing.assert_close(grads[inside], grads64[inside], rtol=1e-2, atol=0.0)
        compared += int(inside.sum())
    assert compared >= 5, compared     # (a part with a zero and p < 0 has no gradient)


def test_float32_small_exponents_on_wide_sets_stay_finite(backend):
    # A softplus-ended message MLP fed this set (one subnormal element) to a GNP with
    # p_unit -0.0029 in training: y / r overflowed, the output was inf and the parameters
    # turned NaN at the next step. In the cumulant expansion's range (|p| < 0.01) such sets
    # are finite and within 30% of the float64 value (the expansion drops terms of order
    # p^2 times the third cumulant of log y, large on sets spanning 40 orders of magnitude).
    values = [2.8831e-4, 4.1444e-10, 1.7242e-09, 4.0438e-07, 3.08e-44, 1.1675e-06, 8.467e-08,
              2.8909e-06, 5.9573e-07, 1.4856e-08, 1.0881e-3, 6.2749e-08, 1.1911e-05,
              4.9543e-11, 4.9427e-4, 2.0097e-05, 2.0966e-07, 6.6972e-05, 3.6118e-4,
              1.3351e-08]
    for a in (-0.0029, 0.0, 0.0029):
        results = []
        for dtype in (torch.float32, torch.float64):
            x = torch.tensor(values, dtype=dtype).view(-1, 1).requires_grad_()
            at = torch.tensor(a, dtype=dtype, requires_grad=True)
            out = gnp_unit(x, dim=0, p_unit=at, beta=-0.41, backend=backend)
            out.sum().backward()
            assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(x.grad).all())
            assert bool(torch.isfinite(at.grad)), (a, dtype)
            results.append(out.item())
            values = x.detach().flatten().tolist()     # float64 gets float32's values
        assert math.isclose(results[0], results[1], rel_tol=0.3), (a, results)


@pytest.mark.parametrize("kwargs, message", [
    ({"x": torch.ones(4, 2, dtype=torch.long)}, "floating-point"),
    ({"x": torch.ones(4, 2, dtype=torch.bool)}, "floating-point"),
    ({"index": torch.tensor([0, 1, 1])}, "index has 3 entries"),
    ({"index": torch.tensor([0, 1, 2, 5]), "dim_size": 3}, r"\[0, dim_size=3\)"),
    ({"index": torch.tensor([0, -1, 1, 1])}, "must lie in"),
    ({"index": torch.tensor([0.0, 1.0, 1.0, 1.0])}, "int32/int64"),
    ({"ptr": torch.tensor([0, 3, 2, 4])}, "non-decreasing"),
    ({"ptr": torch.tensor([0, 2, 3])}, "end at the number of elements"),
    ({"ptr": torch.tensor([1, 2, 4])}, "start at 0"),
    ({"ptr": torch.tensor([0, 2, 4]), "dim_size": 3}, "len\\(ptr\\) - 1 = 2"),
    ({"p": float("nan")}, "p must be a number or"),
    ({"p_neg": torch.tensor([1.0, float("nan")])}, "p_neg must be a number or"),
    ({"p": 0.0}, "p = 0 is defined only with q = 1"),
    ({"p_neg": -0.0, "q_neg": 0.5}, "p_neg = 0 is defined only with q_neg = 1"),
    ({"q": float("inf")}, "q must be finite"),
    ({"p": torch.ones(3)}, "1 or 2"),
    ({"dim": 2}, "dim must be in"),
    ({"dim_size": 2}, "dim_size must be 1"),
    ({"backend": "gpu"}, "backend must be one of"),
])
def test_bad_input_is_rejected_with_a_clear_error(kwargs, message):
    args = {"x": torch.randn(4, 2)}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        gnp(**args)


def test_negative_zero_counts_as_zero(backend):
    # -0.0 must behave like 0.0: with an odd negative p, (-0.0)^p would be -inf.
    for values in ([0.0, -1e-21], [-0.0, 2.0], [-0.0, -0.0]):
        x = torch.tensor(values, dtype=torch.float64).view(-1, 1)
        for p, p_neg in ((-1.0, -15.0), (-3.0, 1.0), (1.0, -1.0)):
            out = gnp(x, dim=0, p=p, p_neg=p_neg, backend=backend)
            assert math.isclose(out.item(), log_space_gnp(values, p, 0.0, p_neg, 0.0),
                                rel_tol=1e-12, abs_tol=0.0)


@pytest.mark.parametrize("backend", ["native", "scatter"])
def test_torch_backends_refuse_a_second_derivative(backend):
    # Their closed-form backward is not differentiable: a second derivative raises
    # instead of coming out wrong.
    x = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    out = gnp(x, index, p=2.0, q=0.0, backend=backend)
    weight = torch.ones_like(out, requires_grad=True)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=weight, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


@pytest.mark.parametrize("backend", cpu_backends("gnp"))
def test_forward_mode_ad_and_func_transforms_raise_instead_of_a_zero_tangent(backend):
    # The kernels have a reverse-mode derivative only; the cpu operator used to return a
    # zero tangent under torch.func.jvp without any error.
    from torch.autograd import forward_ad

    x = torch.rand(6, 2, dtype=torch.float64)
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    a = torch.full((2,), 0.7, dtype=torch.float64)

    def pool(x, a=a):
        return gnp_unit(x, index, p_unit=a, beta=0.0, backend=backend)

    match = r"GNP has a reverse-mode derivative only.*torch.autograd.grad"
    with pytest.raises(NotImplementedError, match=match):
        torch.func.jvp(pool, (x,), (torch.ones_like(x),))
    with pytest.raises(NotImplementedError, match=match):      # a tangent on p_unit alone
        torch.func.jvp(lambda a: pool(x, a), (a,), (torch.ones_like(a),))
    with pytest.raises(NotImplementedError, match=match), forward_ad.dual_level():
        pool(forward_ad.make_dual(x, torch.ones_like(x)))
    with pytest.raises(NotImplementedError, match=match):
        torch.func.grad(lambda x: pool(x).sum())(x)
    with pytest.raises(NotImplementedError, match=match):
        torch.func.vmap(pool)(x.unsqueeze(0))
    # Reverse mode is unaffected.
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(pool(x).sum(), x)
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all())
