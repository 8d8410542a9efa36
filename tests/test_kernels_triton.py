"""The Triton AttSets kernels against float64 formulas and the native backend.

On a machine without a GPU they run under Triton's interpreter on CPU tensors (conftest sets
TRITON_INTERPRET=1), so shapes stay small.
"""

from __future__ import annotations

import pytest
import torch
from conftest import random_sets, rounded, to_ptr

from gnpool import AttSetsAggregation
from gnpool.functional import attsets, attsets_linear
from gnpool.kernels import resolve_backend, triton_backend
from gnpool.kernels.segments import sort_csr

pytest.importorskip("triton", reason="triton is not installed: pip install 'gnpool[triton]' "
                                     "(make test installs it)")
if not torch.cuda.is_available() and not triton_backend.interpreting():
    pytest.skip("no CUDA device and TRITON_INTERPRET is not set", allow_module_level=True)

from gnpool.kernels import triton_attsets  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def naive(x: torch.Tensor, scores: torch.Tensor, index: torch.Tensor, num_sets: int
          ) -> torch.Tensor:
    """Softmax per channel over each set by hand, in float64; -inf scores get weight 0 and
    a set (channel) without finite scores pools to 0."""
    out = torch.zeros(num_sets, x.size(1), dtype=torch.float64)
    for s in range(num_sets):
        member = index.cpu() == s
        if member.any():
            z = scores.cpu()[member].double().expand(-1, x.size(1))
            w = (z - z.max(0).values).exp()
            pooled = (w / w.sum(0) * x.cpu()[member].double()).sum(0)
            out[s] = torch.where(torch.isinf(z).all(0), 0.0, pooled)
    return out


def grads(fn, *inputs, upstream):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    got = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), inputs)
    return out.detach(), got


def sets(sizes: list[int], columns: int, seed: int, shuffle: bool = True):
    gen = torch.Generator().manual_seed(seed)
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    if shuffle:
        index = index[torch.randperm(len(index), generator=gen)]
    x = torch.randn(len(index), columns, generator=gen, dtype=torch.float64)
    scores = 3 * torch.randn(len(index), columns, generator=gen, dtype=torch.float64)
    return x, scores, index


def test_auto_picks_triton_for_cuda_only():
    x = torch.randn(4, 3)
    assert resolve_backend(None, x, op="attsets").name != "triton"
    assert resolve_backend("triton", x, op="attsets").name == "triton"
    if torch.cuda.is_available():
        assert resolve_backend(None, x.cuda(), op="attsets").name == "triton"
    with pytest.raises(ValueError, match="implements only"):
        resolve_backend("triton", x)  # an operator without Triton kernels


# Sizes with empty sets, one-element sets and sets longer than a row block.
SIZES = [3, 0, 1, 7, 2, 0, 12, 1]


@pytest.mark.parametrize("columns, block_k, block_e", [(1, None, None), (5, None, None),
                                                       (37, 16, 4), (20, 8, 2)])
@pytest.mark.parametrize("layout", ["unsorted", "sorted", "ptr"])
def test_forward_and_gradients_match_float64_reference(columns, block_k, block_e, layout):
    # Kernel launches with forced small blocks: several channel blocks with a partial last
    # one (37 = 16 + 16 + 5), and several row steps per set (the online rescaling).
    x, scores, index = sets(SIZES, columns, seed=columns, shuffle=layout == "unsorted")
    num = len(SIZES)
    if layout == "unsorted":
        ptr, perm = sort_csr(index, num)
    else:
        ptr, perm = to_ptr(index, num), None
    x, scores = x.to(DEVICE), scores.to(DEVICE)
    out, m, l = triton_attsets.attsets_forward(x, scores, ptr.to(DEVICE),
                                               None if perm is None else perm.to(DEVICE), num,
                                               block_k=block_k, block_e=block_e)
    torch.testing.assert_close(out.cpu(), naive(x, scores, index, num))
    # Gradients against autograd through the float64 formula.
    upstream = torch.randn(num, columns, dtype=torch.float64)
    xr, zr = x.cpu().clone().requires_grad_(), scores.cpu().clone().requires_grad_()
    ref = torch.autograd.grad((naive(xr, zr, index, num) * upstream).sum(), (xr, zr))
    gx, gz = triton_attsets.attsets_backward(
        upstream.to(DEVICE), x, scores, ptr.to(DEVICE), None if perm is None else perm.to(DEVICE),
        out, m, l, True, True, block_k=block_k, block_e=block_e)
    torch.testing.assert_close(gx.cpu(), ref[0])
    torch.testing.assert_close(gz.cpu(), ref[1])


@pytest.mark.parametrize("layout", ["index", "ptr", "unsorted", "single"])
@pytest.mark.parametrize("shared", [False, True])
def test_functional_matches_native_backend(layout, shared):
    x, index = random_sets(60, 7, 5, seed=3, sort=layout != "unsorted")
    scores = torch.randn(60, 1 if shared else 5, dtype=torch.float64) * 2
    kwargs = {"index": index, "dim_size": 8}
    if layout == "ptr":
        kwargs = {"ptr": to_ptr(index, 8)}
    elif layout == "single":
        kwargs = {}
    upstream = torch.randn(1 if layout == "single" else 8, 5, dtype=torch.float64)
    results = [grads(lambda a, b, name=name: attsets(a, b, backend=name, **kwargs),
                     x.to(DEVICE) if name == "triton" else x,
                     scores.to(DEVICE) if name == "triton" else scores, upstream=upstream)
               for name in ("triton", "native")]
    (out_t, grads_t), (out_n, grads_n) = results
    torch.testing.assert_close(out_t.cpu(), out_n)
    for a, b in zip(grads_t, grads_n, strict=True):
        torch.testing.assert_close(a.cpu(), b)


def test_gradcheck_through_the_operators():
    # Every input element costs two interpreted forward launches: keep it tiny.
    x, index = random_sets(9, 3, 2, seed=4)
    scores = torch.randn(9, 2, dtype=torch.float64)
    x, scores = x.to(DEVICE).requires_grad_(), scores.to(DEVICE).requires_grad_()
    index = index.to(DEVICE)
    assert torch.autograd.gradcheck(
        lambda a, b: attsets(a, b, index, dim_size=4, backend="triton"), (x, scores),
        fast_mode=True)
    weight = torch.randn(2, 2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, device=DEVICE, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, w, b: attsets_linear(a, w, b, "tanh", index, dim_size=4, backend="triton"),
        (x, weight, bias), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_read_directly_and_pooled_in_float32(dtype):
    x, index = random_sets(50, 6, 9, seed=5, dtype=torch.float32)
    x, scores = x.to(dtype).to(DEVICE), (4 * torch.randn(50, 9)).to(dtype).to(DEVICE)
    index = index.to(DEVICE)
    upstream = torch.randn(6, 9).to(dtype).float()  # the same upstream gradient in both runs
    out, (gx, gz) = grads(lambda a, b: attsets(a, b, index, dim_size=6, backend="triton"),
                          x, scores, upstream=upstream)
    assert out.dtype == dtype and gx.dtype == dtype and gz.dtype == dtype
    # The same float32 arithmetic as on inputs converted beforehand, rounded once at the end.
    ref, (rx, rz) = grads(lambda a, b: attsets(a, b, index, dim_size=6, backend="triton"),
                          x.float(), scores.float(), upstream=upstream)
    assert torch.equal(out, ref.to(dtype))
    assert torch.equal(gx, rounded(rx, dtype)) and torch.equal(gz, rounded(rz, dtype))
    torch.testing.assert_close(ref.cpu(), naive(x.float(), scores.float(), index, 6).float())


def test_sets_whose_scores_are_all_minus_inf_pool_to_zero_with_finite_gradients():
    x, scores, index = sets([4, 3, 1, 5], 6, seed=6, shuffle=False)
    inf = float("-inf")
    member = index == 1
    scores[member] = inf                       # set 1: fully masked
    scores[index == 3, 2] = inf                # set 3, channel 2: masked
    scores[(index == 0).nonzero()[:2, 0], 4] = inf  # set 0, channel 4: two of four masked
    x, scores, index = x.to(DEVICE), scores.to(DEVICE), index.to(DEVICE)
    upstream = torch.randn(4, 6, dtype=torch.float64)
    out, (gx, gz) = grads(lambda a, b: attsets(a, b, index, dim_size=4, backend="triton"),
                          x, scores, upstream=upstream)
    expected = naive(x, scores, index, 4)
    assert torch.equal(out[1].cpu(), torch.zeros(6, dtype=torch.float64))
    assert out[3, 2].item() == 0.0
    torch.testing.assert_close(out.cpu(), expected)
    assert bool(torch.isfinite(gx).all() and torch.isfinite(gz).all())
    assert torch.equal(gx[member].cpu(), torch.zeros(3, 6, dtype=torch.float64))
    # Where a set has finite scores, the masked elements get no weight and no gradient, and
    # the others the gradient of the set without them.
    keep = torch.isfinite(scores)
    assert torch.equal(gx[~keep].cpu(), torch.zeros(int((~keep).sum()), dtype=torch.float64))
    assert torch.equal(gz[~keep].cpu(), torch.zeros(int((~keep).sum()), dtype=torch.float64))
    xr, zr = x.cpu().clone().requires_grad_(), scores.cpu().clone().requires_grad_()
    ref = torch.autograd.grad((naive(xr, zr, index, 4) * upstream).sum(), (xr, zr))
    finite = keep.cpu() & ~member.cpu()[:, None]
    torch.testing.assert_close(gx.cpu()[finite], ref[0][finite])
    torch.testing.assert_close(gz.cpu()[finite], ref[1][finite])


@pytest.mark.parametrize("activation", [None, "tanh"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("layout", ["unsorted", "ptr"])
def test_attsets_linear_matches_float64_reference(activation, shared, layout):
    x, _, index = sets(SIZES, 37, seed=7, shuffle=layout == "unsorted")
    rows = 1 if shared else 37
    weight = torch.randn(rows, 37, dtype=torch.float64) / 6
    bias = torch.randn(rows, dtype=torch.float64)
    kwargs = {"ptr": to_ptr(index, 8)} if layout == "ptr" else {"index": index, "dim_size": 8}
    upstream = torch.randn(8, 37, dtype=torch.float64)
    out, got = grads(lambda a, w, b: attsets_linear(a, w, b, activation, backend="triton",
                                                    **{k: v.to(DEVICE) if torch.is_tensor(v)
                                                       else v for k, v in kwargs.items()}),
                     x.to(DEVICE), weight.to(DEVICE), bias.to(DEVICE), upstream=upstream)

    def reference(a, w, b):
        z = torch.nn.functional.linear(a, w, b)
        return naive(a, torch.tanh(z) if activation else z, index, 8)

    ref, expected = grads(reference, x, weight, bias, upstream=upstream)
    torch.testing.assert_close(out.cpu(), ref)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a.cpu(), b)


def test_shared_score_gradient_sums_over_channel_blocks():
    # [E, 1] scores with three channel blocks: the per-block partial sums add up.
    x, scores, index = sets([5, 1, 0, 9], 37, seed=8, shuffle=True)
    scores = scores[:, :1].contiguous()
    ptr, perm = sort_csr(index, 4)
    args = [t.to(DEVICE) for t in (x, scores, ptr, perm)]
    out, m, l = triton_attsets.attsets_forward(*args, 4, block_k=16, block_e=4)
    upstream = torch.randn(4, 37, dtype=torch.float64)
    gx, gz = triton_attsets.attsets_backward(upstream.to(DEVICE), *args, out, m, l, True, True,
                                             block_k=16, block_e=4)
    xr, zr = x.clone().requires_grad_(), scores.clone().requires_grad_()
    ref = naive(xr, zr, index, 4)
    expected = torch.autograd.grad((ref * upstream).sum(), (xr, zr))
    torch.testing.assert_close(out.cpu(), ref.detach())
    assert gz.shape == (x.size(0), 1)
    torch.testing.assert_close(gx.cpu(), expected[0])
    torch.testing.assert_close(gz.cpu(), expected[1])


def test_results_repeat_bit_for_bit_and_save_only_set_statistics():
    x, index = random_sets(300, 9, 16, seed=9, dtype=torch.float32)
    x, index = x.to(DEVICE), index.to(DEVICE)
    aggr = AttSetsAggregation(16, backend="triton").to(DEVICE)
    runs = []
    for _ in range(2):
        xr = x.clone().requires_grad_()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t) or t,
                                                      lambda t: t):
            out = aggr(xr, index, dim_size=9)
        out.square().sum().backward()
        runs.append((out.detach(), xr.grad, aggr.score.weight.grad.clone()))
        aggr.score.weight.grad = None
        big = [t for t in saved if t.data_ptr() != xr.data_ptr() and t.numel() >= x.size(0)]
        assert all(t.dim() == 1 and not t.is_floating_point() for t in big)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    ref = AttSetsAggregation(16, backend="native")
    ref.load_state_dict(aggr.state_dict())
    torch.testing.assert_close(runs[0][0].cpu(), ref(x.cpu(), index.cpu(), dim_size=9),
                               rtol=1e-5, atol=1e-6)
