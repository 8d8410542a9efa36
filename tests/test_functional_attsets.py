"""gnpool.functional.attsets against independent references."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_sets, to_ptr
from hypothesis import given, settings
from hypothesis import strategies as st

from gnpool.functional import attsets, attsets_linear
from gnpool.kernels import available_backends

# Every backend with AttSets kernels, Triton included where it is installed (under its
# interpreter on a machine without a GPU; tests/test_kernels_triton.py reports its absence).
BACKENDS = available_backends("attsets")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def naive_attsets(x: torch.Tensor, scores: torch.Tensor, index: torch.Tensor, num_sets: int
                  ) -> torch.Tensor:
    """Softmax per channel over each set by hand, in float64."""
    out = torch.zeros(num_sets, x.size(1), dtype=torch.float64)
    for s in range(num_sets):
        member = index == s
        if member.any():
            z = scores[member].double()
            w = (z - z.max(0).values).exp()
            out[s] = (w / w.sum(0) * x[member].double()).sum(0)
    return out


def test_forward_matches_float64_reference(backend):
    x, index = random_sets(300, 20, 6, seed=0)
    scores = torch.randn(300, 6, dtype=torch.float64) * 4
    out = attsets(x, scores, index, dim_size=22, backend=backend)
    torch.testing.assert_close(out, naive_attsets(x, scores, index, 22))


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("layout", ["index", "ptr", "unsorted"])
def test_gradcheck(backend, shared, layout):
    x, index = random_sets(40, 6, 3, seed=1, sort=layout != "unsorted")
    x.requires_grad_()
    scores = torch.randn(40, 1 if shared else 3, dtype=torch.float64, requires_grad=True)
    scores.data[5] = scores.data[6]  # ties
    kwargs = {"ptr": to_ptr(index, 7)} if layout == "ptr" else {"index": index, "dim_size": 7}

    def fn(x, scores):
        return attsets(x, scores, backend=backend, **kwargs)

    # Interpreted Triton launches are slow: its gradcheck projects on random directions.
    assert torch.autograd.gradcheck(fn, (x, scores), fast_mode=backend == "triton")


def test_one_element_sets_pass_through_and_empty_sets_are_zero(backend):
    x = torch.randn(3, 4)
    scores = torch.randn(3, 4) * 100
    out = attsets(x, scores, torch.tensor([0, 2, 3]), dim_size=5, backend=backend)
    assert torch.equal(out[[0, 2, 3]], x)
    assert torch.equal(out[[1, 4]], torch.zeros(2, 4))


def test_any_score_magnitude_is_safe(backend):
    x, index = random_sets(200, 10, 4, seed=2, dtype=torch.float32)
    scores = torch.randn(200, 4) * 1e30
    out = attsets(x, scores, index, backend=backend)
    # Huge scores make the softmax a hard argmax per channel.
    ref = naive_attsets(x, scores.double(), index, 10).float()
    torch.testing.assert_close(out, ref)
    xr, sr = x.clone().requires_grad_(), scores.clone().requires_grad_()
    attsets(xr, sr, index, backend=backend).sum().backward()
    assert bool(torch.isfinite(xr.grad).all() and torch.isfinite(sr.grad).all())


def test_backends_agree_in_float32():
    x, index = random_sets(5000, 200, 32, seed=3, dtype=torch.float32)
    scores = torch.randn(5000, 32) * 3
    results = []
    for name in BACKENDS:
        xr, sr = x.clone().requires_grad_(), scores.clone().requires_grad_()
        out = attsets(xr, sr, index, backend=name)
        out.square().sum().backward()
        results.append((out.detach(), xr.grad, sr.grad))
    for other in results[1:]:
        for a, b in zip(other, results[0], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_nan_stays_in_its_set(backend):
    x, index = random_sets(60, 4, 2, seed=4)
    scores = torch.randn(60, 2, dtype=torch.float64)
    scores[(index == 1).nonzero()[0], 0] = float("nan")
    out = attsets(x, scores, index, backend=backend)
    assert bool(out[1, 0].isnan())
    keep = torch.ones_like(out, dtype=torch.bool)
    keep[1, 0] = False
    torch.testing.assert_close(out[keep], naive_attsets(x, scores, index, 4)[keep])


def test_one_dimensional_x_pools_along_dim_0(backend):
    x, scores = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, math.log(2.0)])
    out = attsets(x, scores, torch.tensor([0, 0, 1]), dim=0, backend=backend)
    torch.testing.assert_close(out, torch.tensor([1.5, 3.0]))


def test_fully_masked_set_pools_to_zero_with_zero_gradients(backend):
    # Additive masking: set 0 has only -inf scores, set 1 one finite score.
    inf = math.inf
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]], requires_grad=True)
    scores = torch.tensor([[-inf], [-inf], [0.0], [-inf]], requires_grad=True)
    out = attsets(x, scores, torch.tensor([0, 0, 1, 1]), backend=backend)
    assert out.tolist() == [[0.0], [3.0]]
    out.sum().backward()
    assert x.grad.tolist() == [[0.0], [0.0], [1.0], [0.0]]
    assert scores.grad.tolist() == [[0.0], [0.0], [0.0], [0.0]]


def masked_reference(x: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor,
                     index: torch.Tensor, num_sets: int) -> torch.Tensor:
    """Per set and channel, the softmax-weighted sum over the unmasked elements only
    (0 where none is left), differentiable."""
    rows = []
    for s in range(num_sets):
        row = []
        for c in range(x.size(1)):
            keep = (index == s) & ~mask[:, c]
            if keep.any():
                w = torch.softmax(scores[keep, c], 0)
                row.append((w * x[keep, c]).sum())
            else:
                row.append(x.new_zeros(()))
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize("layout", ["index", "unsorted", "ptr"])
def test_minus_inf_scores_drop_their_elements(backend, layout):
    x, index = random_sets(60, 4, 3, seed=11, sort=layout != "unsorted")
    scores = torch.randn(60, 3, dtype=torch.float64) * 3
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(60, 3, generator=gen) < 0.4
    mask[index == 0] = True              # set 0: every element masked
    mask[(index == 2), 1] = True         # set 2: masked in channel 1 only
    kwargs = {"ptr": to_ptr(index, 5)} if layout == "ptr" else {"index": index, "dim_size": 5}
    xr = x.clone().requires_grad_()
    sr = scores.masked_fill(mask, -math.inf).requires_grad_()
    out = attsets(xr, sr, backend=backend, **kwargs)
    xa, sa = x.clone().requires_grad_(), scores.clone().requires_grad_()
    ref = masked_reference(xa, sa, mask, index, 5)
    torch.testing.assert_close(out, ref)
    assert torch.equal(out[0], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(out[4], torch.zeros(3, dtype=torch.float64))   # empty set
    upstream = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(xr.grad, xa.grad)
    torch.testing.assert_close(sr.grad, sa.grad.masked_fill(mask, 0.0))


def test_minus_inf_from_the_fused_scoring_layer(backend):
    # A scoring layer whose bias is -inf in channel 0 masks that channel in every set.
    x, index = random_sets(200, 12, 5, seed=12, dtype=torch.float32)
    weight = torch.randn(5, 5) * 0.3
    bias = torch.randn(5)
    masked_bias = bias.clone()
    masked_bias[0] = -math.inf
    xr, wr, br = x.clone().requires_grad_(), weight.clone().requires_grad_(), \
        masked_bias.clone().requires_grad_()
    out = attsets_linear(xr, wr, br, index=index, dim_size=12, backend=backend)
    assert torch.equal(out[:, 0], torch.zeros(12))
    ref = attsets_linear(x, weight, bias, index=index, dim_size=12, backend=backend)
    torch.testing.assert_close(out[:, 1:], ref[:, 1:])
    (out * torch.randn_like(out)).sum().backward()
    for grad in (xr.grad, wr.grad, br.grad):
        assert bool(torch.isfinite(grad).all())
    assert float(br.grad[0]) == 0.0 and bool((wr.grad[0] == 0).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(backend, dtype):
    x, index = random_sets(100, 8, 4, seed=5, dtype=torch.float32)
    x, scores = x.to(dtype), torch.randn(100, 4).to(dtype)
    out = attsets(x, scores, index, backend=backend)
    assert out.dtype == dtype
    torch.testing.assert_close(out, attsets(x.float(), scores.float(), index,
                                            backend=backend).to(dtype), rtol=0, atol=0)


def test_saves_only_set_statistics_for_backward(backend):
    e, s, k = 3000, 40, 8
    x, index = random_sets(e, s, k, seed=6, dtype=torch.float32)
    x.requires_grad_()
    scores = torch.randn(e, k, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = attsets(x, scores, index, dim_size=s, backend=backend)
    inputs = {x.data_ptr(), scores.data_ptr()}
    big = [t for t in saved if t.data_ptr() not in inputs and t.numel() >= e]
    assert all(t.dim() == 1 and not t.is_floating_point() for t in big), \
        [tuple(t.shape) for t in big]
    out.sum().backward()


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_permutation_invariance_and_index_ptr_equivalence(sizes, seed):
    count = torch.tensor(sizes)
    index = torch.repeat_interleave(torch.arange(len(sizes)), count)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(index.numel(), 3, generator=gen, dtype=torch.float64)
    scores = torch.randn(index.numel(), 3, generator=gen, dtype=torch.float64)
    perm = torch.randperm(index.numel(), generator=gen)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), count.cumsum(0)])
    for name in BACKENDS:
        a = attsets(x, scores, index, dim_size=len(sizes), backend=name)
        b = attsets(x[perm], scores[perm], index[perm], dim_size=len(sizes), backend=name)
        c = attsets(x, scores, ptr=ptr, backend=name)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, c, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"x": torch.ones(4, 3, dtype=torch.long)}, "x must be a floating-point"),
    ({"scores": torch.ones(4, 3, dtype=torch.int32)}, "scores must be a floating-point"),
    ({"scores": torch.ones(4, 2)}, "scores must have the shape of x"),
    ({"scores": torch.ones(3, 3)}, "scores must have the shape of x"),
    ({"index": torch.tensor([0, 1])}, "index has 2 entries"),
    ({"index": torch.zeros(5, dtype=torch.long)},
     r"index has 5 entries but x has 4 elements along dim 0"),
    ({"x": torch.randn(2, 4, 3), "scores": torch.randn(2, 4, 3), "dim": 1,
      "index": torch.zeros(5, dtype=torch.long)}, "x has 4 elements along dim 1"),
    ({"x": torch.randn(4), "scores": torch.randn(4)},
     r"dim must be in \[-1, 0\] for x of shape \(4,\), got dim=-2 \(a 1-D x"),
])
def test_bad_input_is_rejected(kwargs, message):
    args = {"x": torch.randn(4, 3), "scores": torch.randn(4, 3)}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        attsets(**args)


@pytest.mark.parametrize("activation", [None, "tanh"])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("layout", ["sorted", "unsorted", "ptr"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_attsets_linear_matches_linear_then_attsets(activation, shared, layout, with_bias):
    x, index = random_sets(300, 25, 5, seed=7)
    index[:120] = 4  # one set larger than the kernels' cached block of 64 rows
    if layout != "unsorted":
        index = index.sort().values
    x.requires_grad_()
    weight = torch.randn(1 if shared else 5, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(1 if shared else 5, dtype=torch.float64, requires_grad=True)
    kwargs = {"ptr": to_ptr(index, 25)} if layout == "ptr" else {"index": index, "dim_size": 25}
    if not with_bias:
        bias = None
    upstream = torch.randn(25, 5, dtype=torch.float64)
    outs, grads = [], []
    for name in BACKENDS:
        out = attsets_linear(x, weight, bias, activation, backend=name, **kwargs)
        inputs = (x, weight) if bias is None else (x, weight, bias)
        grads.append(torch.autograd.grad((out * upstream).sum(), inputs))
        outs.append(out)
    scores = torch.nn.functional.linear(x, weight, bias)
    scores = torch.tanh(scores) if activation else scores
    ref = naive_attsets(x.detach(), scores.detach().expand_as(x), index, 25)
    for out in outs:
        torch.testing.assert_close(out.detach(), ref)
    for other in grads[1:]:
        for a, b in zip(other, grads[0], strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [37, 70])
@pytest.mark.parametrize("activation", [None, "tanh"])
def test_attsets_linear_wide_matches_float64_reference(dtype, channels, activation):
    # Enough channels for the kernels' vector blocks plus a remainder, and set sizes (1 to 3,
    # 5, 63, 64, 65 and 130 rows) around their row blocks and the cached block of 64 rows.
    torch.manual_seed(11)
    sizes = torch.tensor([1, 2, 3, 5, 63, 64, 65, 130, 0, 7])
    index = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    index = index[torch.randperm(len(index))]
    x64 = torch.randn(len(index), channels, dtype=torch.float64)
    w64 = torch.randn(channels, channels, dtype=torch.float64) / channels ** 0.5
    b64 = torch.randn(channels, dtype=torch.float64)
    upstream = torch.randn(len(sizes), channels, dtype=torch.float64)

    def run(x, w, b, backend):
        x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
        out = attsets_linear(x, w, b, activation, index=index, dim_size=len(sizes),
                             backend=backend)
        grads = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), (x, w, b))
        return [out.detach().double(), *(g.double() for g in grads)]

    reference = run(x64, w64, b64, "native")
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    for name in BACKENDS:
        got = run(x64.to(dtype), w64.to(dtype), b64.to(dtype), name)
        for a, b in zip(got, reference, strict=True):
            torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("activation", [None, "tanh"])
def test_attsets_linear_gradcheck(backend, shared, activation):
    x, index = random_sets(40, 6, 3, seed=8)
    x.requires_grad_()
    rows = 1 if shared else 3
    weight = torch.randn(rows, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(rows, dtype=torch.float64, requires_grad=True)

    def fn(x, weight, bias):
        return attsets_linear(x, weight, bias, activation, index, dim_size=6, backend=backend)

    assert torch.autograd.gradcheck(fn, (x, weight, bias), fast_mode=backend == "triton")


def test_attsets_linear_rejects_bad_weights():
    with pytest.raises(ValueError, match=r"weight must have shape \[4, 4\] or \[1, 4\]"):
        attsets_linear(torch.randn(5, 4), torch.randn(3, 4))
    with pytest.raises(ValueError, match="activation must be None or 'tanh'"):
        attsets_linear(torch.randn(5, 4), torch.randn(4, 4), activation="relu")


@pytest.mark.parametrize("backend", ["native", "scatter"])
def test_attsets_torch_backends_refuse_a_second_derivative(backend):
    x = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    scores = torch.rand(6, 2, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    out = attsets(x, scores, index, backend=backend)
    weight = torch.ones_like(out, requires_grad=True)
    (grad,) = torch.autograd.grad(out, x, grad_outputs=weight, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


@pytest.mark.parametrize("backend", [b for b in available_backends("attsets")
                                     if b != "triton"])
def test_attsets_forward_mode_ad_raises_instead_of_a_zero_tangent(backend):
    x = torch.rand(6, 2, dtype=torch.float64)
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    weight = torch.rand(2, 2, dtype=torch.float64)
    match = r"AttSets has a reverse-mode derivative only"
    with pytest.raises(NotImplementedError, match=match):
        torch.func.jvp(lambda x: attsets(x, x, index, backend=backend), (x,), (x,))
    with pytest.raises(NotImplementedError, match=match):
        torch.func.jvp(lambda w: attsets_linear(x, w, index=index, backend=backend),
                       (weight,), (weight,))
