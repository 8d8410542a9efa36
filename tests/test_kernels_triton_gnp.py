"""The Triton GNP kernels against float64 formulas and the native backend.

On a machine without a GPU they run under Triton's interpreter on CPU tensors (conftest sets
TRITON_INTERPRET=1), so shapes stay small. The functional GNP tests
(tests/test_functional_gnp*.py) also run on the Triton backend.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import log_space_gnp, naive_gnp, random_sets, rounded, to_ptr
from torch_geometric.nn import aggr as pyg

from gnpool import GNPAggregation
from gnpool.functional import gnp, gnp_unit
from gnpool.kernels import native, resolve_backend, triton_backend
from gnpool.kernels.gnp_composite import exponent, gnp_backward, gnp_forward
from gnpool.kernels.segments import Segments, sort_csr

pytest.importorskip("triton", reason="triton is not installed: pip install 'gnpool[triton]' "
                                     "(make test installs it)")
if not torch.cuda.is_available() and not triton_backend.interpreting():
    pytest.skip("no CUDA device and TRITON_INTERPRET is not set", allow_module_level=True)

from gnpool.kernels import triton_gnp  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
INF = math.inf
# p_unit per channel, every region of the exponent: exactly min (-1), p < 0, small |p| on
# both sides (the cumulant expansion), exactly 0 (the geometric mean), 0 < p < 1, p = 1,
# large p, exactly max (+1).
UNITS = [-1.0, -0.7, -3e-6, 0.0, 2e-6, 0.3, 0.5, 0.95, 1.0]
# Sizes with empty sets, one-element sets and sets longer than a row block.
SIZES = [3, 0, 1, 7, 2, 0, 12, 1]


def to(device, *tensors):
    return [None if t is None else t.to(device) for t in tensors]


def sets(sizes: list[int], columns: int, seed: int, shuffle: bool = True):
    """Mixed signs with exact zeros and ties (equal magnitudes, also across signs)."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    if shuffle:
        index = index[torch.randperm(len(index), generator=gen)]
    x = torch.randn(len(index), columns, generator=gen, dtype=torch.float64)
    x[::5] = 0.0
    for i in range(1, len(index) - 1, 6):
        x[i] = x[i + 1].abs()
    for i in range(3, len(index) - 1, 7):
        x[i] = -x[i + 1]
    return x, index


def unit_params(columns: int, shared: bool):
    """(p_unit, beta, p_neg_unit, beta_neg) as [1, K] (cycling through UNITS) or [1, 1];
    beta is 0 where p is 0 or infinite, so that ``naive_gnp``'s (p, q) form applies."""
    if shared:
        return [torch.tensor([[v]], dtype=torch.float64) for v in (0.3, 0.2, -0.6, 0.7)]
    a = torch.tensor([UNITS[k % len(UNITS)] for k in range(columns)], dtype=torch.float64)
    a_neg = a.flip(0)
    gen = torch.Generator().manual_seed(columns)

    def beta(a):
        b = torch.rand(columns, generator=gen, dtype=torch.float64) * 1.5 - 0.5
        return torch.where((a == 0) | (a.abs() == 1), 0.0, b)

    return [t.view(1, -1) for t in (a, beta(a), a_neg, beta(a_neg))]


def p_q(a: torch.Tensor, beta: torch.Tensor):
    p = exponent(a.view(-1))[0]
    q = torch.where(beta.view(-1) == 0, 1.0, 1 - beta.view(-1) * p)
    return p, q


@pytest.mark.parametrize("columns, block_k, block_e, layout, shared", [
    (1, None, None, "unsorted", False), (9, None, None, "ptr", True),
    (37, 16, 4, "unsorted", False), (20, 8, 4, "ptr", False), (20, 8, 4, "unsorted", True)])
def test_kernels_match_float64_formula_and_composite(columns, block_k, block_e, layout, shared):
    # Launches with forced small blocks: several channel blocks with a partial last one
    # (37 = 16 + 16 + 5), and several row steps per set in every pass.
    x, index = sets(SIZES, columns, seed=columns, shuffle=layout == "unsorted")
    num = len(SIZES)
    if layout == "unsorted":
        ptr, perm = sort_csr(index, num)
    else:
        ptr, perm = to_ptr(index, num), None
    params = unit_params(columns, shared)
    args = to(DEVICE, x, *params)
    out, state = triton_gnp.gnp_forward(*args, *to(DEVICE, ptr, perm), num, block_k=block_k,
                                        block_e=block_e)
    # The output against the definition, set by set.
    p, q = p_q(*params[:2])
    p_neg, q_neg = p_q(*params[2:])
    torch.testing.assert_close(out.cpu(), naive_gnp(x, index, num, p, q, p_neg, q_neg),
                               rtol=1e-9, atol=1e-12)
    # The saved values and the gradients against the float64 reference composite.
    seg = Segments(x.size(0), num, index=index)
    ref, pos, neg = gnp_forward(native, x, seg, *params)
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-12, atol=1e-14)
    for got, expected in ((state[0], pos.r), (state[2], pos.out), (state[3], neg.r),
                          (state[5], neg.out)):
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-12, atol=1e-14)
    upstream = torch.randn(num, columns, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)
    grad_x, grad_params = triton_gnp.gnp_backward(
        upstream.to(DEVICE), *args, *to(DEVICE, ptr, perm), state, True, True,
        block_k=block_k, block_e=block_e)
    expected = gnp_backward(native, upstream, x, seg, *params, pos, neg, (True,) * 5)
    torch.testing.assert_close(grad_x.cpu(), expected[0], rtol=1e-10, atol=1e-12)
    for got, want in zip(grad_params.cpu(), expected[1:], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    if not shared:
        return
    # Without the parameters' gradients the same x gradient; without x's the same others.
    blocks = {"block_k": block_k, "block_e": block_e}
    only_x, none = triton_gnp.gnp_backward(upstream.to(DEVICE), *args, *to(DEVICE, ptr, perm),
                                           state, True, False, **blocks)
    assert none is None and torch.equal(only_x, grad_x)
    none, only_params = triton_gnp.gnp_backward(upstream.to(DEVICE), *args,
                                                *to(DEVICE, ptr, perm), state, False, True,
                                                **blocks)
    assert none is None and torch.equal(only_params, grad_params)


def grads(fn, *inputs, upstream):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    got = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), inputs)
    return out.detach(), got


@pytest.mark.parametrize("layout", ["index", "ptr", "unsorted", "single"])
@pytest.mark.parametrize("shared", [False, True])
def test_functional_matches_native_backend(layout, shared):
    x, index = sets([4, 1, 0, 9, 3, 6, 2, 5], 9, seed=3, shuffle=layout == "unsorted")
    if layout != "unsorted":
        index = index.sort().values
    kwargs = {"index": index, "dim_size": 8}
    if layout == "ptr":
        kwargs = {"ptr": to_ptr(index, 8)}
    elif layout == "single":
        kwargs = {}
    params = [t.view(-1) for t in unit_params(9, shared)]
    upstream = torch.randn(1 if layout == "single" else 8, 9, dtype=torch.float64)
    results = []
    for name in ("triton", "native"):
        device = DEVICE if name == "triton" else "cpu"
        moved = {k: v.to(device) if torch.is_tensor(v) else v for k, v in kwargs.items()}
        results.append(grads(lambda x, a, b, an, bn, name=name, moved=moved: gnp_unit(
            x, p_unit=a, beta=b, p_neg_unit=an, beta_neg=bn, backend=name, **moved),
            *to(device, x, *params), upstream=upstream.to(device)))
    (out_t, grads_t), (out_n, grads_n) = results
    torch.testing.assert_close(out_t.cpu(), out_n, rtol=1e-12, atol=1e-14)
    for a, b in zip(grads_t, grads_n, strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)


def test_gradcheck_through_the_operators():
    # Fast mode: every input element would cost two interpreted forward launches. Finite
    # differences need distinct, non-zero elements (no ties, no kinks); the exponents
    # cover p < 0, small p, 0 < p < 1 and p > 1, close to (not at) max and min.
    gen = torch.Generator().manual_seed(4)
    x = (torch.rand(8, 3, generator=gen, dtype=torch.float64) + 0.2)
    x = x * torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0],
                         dtype=torch.float64).view(-1, 1)
    index = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2])
    a = torch.tensor([-0.6, 1e-3, 0.999], dtype=torch.float64)
    beta = torch.tensor([0.3, 0.0, -0.2], dtype=torch.float64)
    inputs = [t.to(DEVICE).requires_grad_() for t in (x, a, beta)]
    index = index.to(DEVICE)

    def fn(x, a, beta):
        return gnp_unit(x, index, dim_size=3, p_unit=a, beta=beta, p_neg_unit=a.flip(0),
                        beta_neg=0.5, backend="triton")

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-6, fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda x, p, q: gnp(x, index, dim_size=3, p=p, q=q, p_neg=-2.0, backend="triton"),
        (inputs[0], torch.tensor([2.0, -1.5, 0.5], dtype=torch.float64, device=DEVICE,
                                 requires_grad=True),
         torch.tensor([0.2, 1.0, 0.7], dtype=torch.float64, device=DEVICE,
                      requires_grad=True)), eps=1e-7, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_read_directly_and_pooled_in_float32(dtype):
    x, index = sets([5, 1, 0, 8, 3, 9], 9, seed=5)
    x, index = x.to(dtype).to(DEVICE), index.to(DEVICE)
    a, beta, a_neg, beta_neg = [t.view(-1).float() for t in unit_params(9, shared=False)]
    upstream = torch.randn(6, 9).to(dtype).float()  # the same upstream gradient in both runs

    def fn(x):
        return gnp_unit(x, index, dim_size=6, p_unit=a, beta=beta, p_neg_unit=a_neg,
                        beta_neg=beta_neg, backend="triton")

    out, (gx,) = grads(fn, x, upstream=upstream)
    assert out.dtype == dtype and gx.dtype == dtype
    # The same float32 arithmetic as on inputs converted beforehand, rounded once at the end.
    ref, (rx,) = grads(fn, x.float(), upstream=upstream)
    assert torch.equal(out, ref.to(dtype))
    assert torch.equal(gx, rounded(rx, dtype))
    p, q = p_q(a.double(), beta.double())
    p_neg, q_neg = p_q(a_neg.double(), beta_neg.double())
    expected = naive_gnp(x.cpu().double(), index.cpu(), 6, p, q, p_neg, q_neg)
    torch.testing.assert_close(ref.cpu().double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_agrees_with_native_across_the_whole_range(dtype):
    # tests/test_functional_gnp_unit.py's check over every exponent region, on fewer sets.
    x, index = random_sets(300, 20, 9, seed=8, dtype=dtype)
    x[::13] = 0.0
    x[1::17] = x[2::17]
    a = torch.tensor(UNITS, dtype=dtype)
    beta = torch.linspace(-0.5, 1.0, 9, dtype=dtype)
    outs, results = [], []
    for name in ("triton", "native"):
        device = DEVICE if name == "triton" else "cpu"
        leaves = [t.clone().to(device).requires_grad_() for t in (x, a, beta)]
        out = gnp_unit(leaves[0], index.to(device), p_unit=leaves[1], beta=leaves[2],
                       p_neg_unit=leaves[1].flip(0), beta_neg=0.25, backend=name)
        outs.append(out.detach().cpu())
        results.append([g.cpu() for g in torch.autograd.grad(out.square().sum(), leaves)])
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(outs[0], outs[1], **tol)
    for g, g0 in zip(*results, strict=True):
        scale = g0.abs().max().clamp_min(1.0)
        torch.testing.assert_close(g / scale, g0 / scale, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_and_min_are_exact(dtype):
    # p = +-inf is exactly max / min, whatever q, for sets spanning several row blocks.
    sizes = torch.tensor([1, 2, 7, 100, 300])
    index = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    x = torch.randn(len(index), 3, generator=torch.Generator().manual_seed(6), dtype=dtype)
    x[index == 2] = -x[index == 2].abs()  # a set with no positive element
    x[index == 3] = x[index == 3].abs()
    order = torch.randperm(len(index), generator=torch.Generator().manual_seed(7))
    x, index = x[order], index[order]
    for sign, reference in ((1.0, pyg.MaxAggregation()), (-1.0, pyg.MinAggregation())):
        out = gnp(x.to(DEVICE), index.to(DEVICE), p=sign * INF, q=0.3, p_neg=-sign * INF,
                  q_neg=1.7, backend="triton")
        assert torch.equal(out.cpu(), reference(x, index, dim_size=len(sizes)))


def _extreme_examples(count: int, seed: int, p_range: tuple[float, float], q_range,
                      signed_p: bool):
    # The examples of the hypothesis properties in tests/test_functional_gnp.py, drawn
    # from a seeded generator: 1 to 6 values of magnitude 1e-30..1e30 (or 0) and either
    # sign, |p| in p_range or inf per part.
    gen = torch.Generator().manual_seed(seed)

    def uniform(lo, hi):
        return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))

    def exponent_value():
        p = INF if float(torch.rand((), generator=gen)) < 0.2 else uniform(*p_range)
        return -p if signed_p and float(torch.rand((), generator=gen)) < 0.5 else p

    examples = []
    for _ in range(count):
        n = int(torch.randint(1, 7, (), generator=gen))
        values = [10.0 ** uniform(-30, 30) * float(torch.randint(-1, 2, (), generator=gen))
                  for _ in range(n)]
        examples.append((values, exponent_value(), uniform(*q_range), exponent_value(),
                         uniform(*q_range)))
    return examples


def _block_diagonal(examples, dtype):
    # Example s is set s in column s (its own parameters); the other columns hold 1.0 in
    # set s, so one launch pools every example and out[s, s] is example s's value.
    count = len(examples)
    sizes = torch.tensor([len(e[0]) for e in examples])
    index = torch.repeat_interleave(torch.arange(count), sizes)
    x = torch.ones(len(index), count, dtype=dtype)
    for s, example in enumerate(examples):
        x[index == s, s] = torch.tensor(example[0], dtype=dtype)
    params = [torch.tensor([e[i] for e in examples], dtype=dtype) for i in range(1, 5)]
    return x, index, params


def test_extreme_values_stay_finite_and_accurate_in_float64():
    # Magnitudes 1e-30..1e30, zeros, mixed signs, |p| in [0.1, 100] or inf of either sign:
    # outputs and gradients finite and equal to a log-space fsum reference.
    examples = _extreme_examples(48, seed=10, p_range=(0.1, 100.0), q_range=(-1.0, 1.0),
                                 signed_p=True)
    x, index, params = _block_diagonal(examples, torch.float64)
    refs = torch.tensor([log_space_gnp(*e) for e in examples], dtype=torch.float64)
    checked = torch.isfinite(refs) & (refs.abs() <= 1e300)
    leaves = [t.to(DEVICE).requires_grad_() for t in (x, params[0], params[1])]
    out = gnp(leaves[0], index.to(DEVICE), p=leaves[1], q=leaves[2], p_neg=params[2],
              q_neg=params[3], backend="triton")
    got = out.diagonal().cpu()
    assert int(checked.sum()) >= 40
    torch.testing.assert_close(got[checked], refs[checked], rtol=1e-9, atol=1e-300)
    diagonal = out.diagonal()
    (diagonal * checked.to(DEVICE)).sum().backward()
    for leaf in leaves:
        assert bool(torch.isfinite(leaf.grad).all())


def test_extreme_values_stay_finite_in_float32():
    # In float32 the true value of these parameters stays below 6e30, so it is finite.
    examples = _extreme_examples(48, seed=11, p_range=(1.0, 100.0), q_range=(0.0, 1.0),
                                 signed_p=False)
    examples = [(v, sign * p, q, -sign * p, q) for (v, p, q, _, _), sign in
                zip(examples, [1.0, -1.0] * 24, strict=True)]
    x, index, params = _block_diagonal(examples, torch.float32)
    xg = x.to(DEVICE).requires_grad_()
    out = gnp(xg, index.to(DEVICE), p=params[0], q=params[1], p_neg=params[2], q_neg=params[3],
              backend="triton")
    refs = torch.tensor([log_space_gnp(*e) for e in examples], dtype=torch.float64)
    torch.testing.assert_close(out.diagonal().cpu().double(), refs, rtol=1e-4, atol=1e-35)
    out.diagonal().sum().backward()
    assert bool(torch.isfinite(xg.grad).all())


def test_auto_picks_triton_for_cuda_only():
    x = torch.randn(4, 3)
    assert resolve_backend(None, x, op="gnp").name != "triton"
    assert resolve_backend("triton", x, op="gnp").name == "triton"
    if torch.cuda.is_available():
        assert resolve_backend(None, x.cuda(), op="gnp").name == "triton"


def test_results_repeat_bit_for_bit_and_save_only_set_statistics():
    x, index = random_sets(300, 9, 16, seed=9, dtype=torch.float32)
    x, index = x.to(DEVICE), index.to(DEVICE)
    aggr = GNPAggregation(16, p=[1.0, 2.0, -3.0, 40.0] * 4, q=0.5, backend="triton").to(DEVICE)
    runs = []
    for _ in range(2):
        xr = x.clone().requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t) or t,
                                                      lambda t: t):
            out = aggr(xr, index, dim_size=9)
        out.square().sum().backward()
        runs.append((out.detach(), xr.grad, aggr.p_unit.grad.clone(), aggr.beta.grad.clone()))
        aggr.zero_grad()
        # Besides x, only index vectors and O(sets x channels) statistics are kept.
        others = [t for t in saved if t.data_ptr() != xr.data_ptr()]
        assert all(t.numel() <= 6 * 9 * 16 for t in others if t.is_floating_point())
        assert all(t.dim() == 1 for t in others if not t.is_floating_point())
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    ref = GNPAggregation(16, backend="native")
    ref.load_state_dict(aggr.state_dict())
    torch.testing.assert_close(runs[0][0].cpu(), ref(x.cpu(), index.cpu(), dim_size=9),
                               rtol=1e-5, atol=1e-5)
