"""gnpool.nn.AttSets against a float64 loop, PyG's AttentionalAggregation and its contract."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.nn.aggr import AttentionalAggregation

from gnpool.nn import AttSets

# spatial_dims -> the spatial shape used in the tests.
SPATIAL = {0: (), 2: (3, 4), 3: (2, 3, 2)}


def naive_score(view: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                spatial_dims: int) -> torch.Tensor:
    """g(x) for one view: a matrix product, or a 'same' convolution as a sum over offsets."""
    if spatial_dims == 0:
        out = weight @ view
    else:
        k = weight.size(-1)
        pad = k // 2
        padded = F.pad(view, (pad, pad) * spatial_dims)
        out = torch.zeros(weight.size(0), *view.shape[1:], dtype=view.dtype)
        for offset in itertools.product(range(k), repeat=spatial_dims):
            window = padded[(slice(None),) + tuple(
                slice(o, o + n) for o, n in zip(offset, view.shape[1:], strict=True))]
            out += torch.einsum("oc,c...->o...", weight[(...,) + offset], window)
    if bias is not None:
        out = out + bias.view((-1,) + (1,) * spatial_dims)
    return out


def naive_attsets(module: AttSets, x: torch.Tensor, mask: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """AttSets set by set in float64, softmax written out (no max subtraction)."""
    weight = module.score.weight.double()
    bias = None if module.score.bias is None else module.score.bias.double()
    rows = []
    for b in range(x.size(0)):
        views = [x[b, v].double() for v in range(x.size(1)) if mask is None or mask[b, v]]
        if not views:
            rows.append(torch.zeros(x.shape[2:], dtype=torch.float64))
            continue
        scores = [naive_score(v, weight, bias, module.spatial_dims) for v in views]
        if module.activation == "tanh":
            scores = [torch.tanh(s) for s in scores]
        exps = [torch.exp(s) for s in scores]
        total = sum(exps)
        rows.append(sum(e / total * v for e, v in zip(exps, views, strict=True)))
    return torch.stack(rows)


def make(spatial_dims: int, channels: int = 3, seed: int = 0, **kwargs) -> AttSets:
    torch.manual_seed(seed)
    module = AttSets(channels, spatial_dims, **kwargs)
    with torch.no_grad():  # a non-zero bias, so the tests see it
        if module.score.bias is not None:
            module.score.bias.uniform_(-0.5, 0.5)
    return module


def sets(batch: int, views: int, spatial_dims: int, channels: int = 3, seed: int = 1,
         dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, views, channels) + SPATIAL[spatial_dims]
    return torch.randn(shape, generator=gen, dtype=dtype)


@pytest.mark.parametrize("spatial_dims", [0, 2, 3])
@pytest.mark.parametrize("activation", [None, "tanh"])
def test_matches_float64_loop(spatial_dims, activation):
    module = make(spatial_dims, activation=activation).double()
    x = sets(4, 5, spatial_dims)
    torch.testing.assert_close(module(x), naive_attsets(module, x), rtol=1e-12, atol=1e-12)


def test_kernel_size_and_no_bias_match_float64_loop():
    module = make(2, channels=2, kernel_size=5, bias=False).double()
    x = sets(2, 3, 2, channels=2)
    torch.testing.assert_close(module(x), naive_attsets(module, x), rtol=1e-12, atol=1e-12)
    assert module.score.bias is None and module.score.weight.shape == (2, 2, 5, 5)


def test_float32_module_matches_loop():
    module = make(0, channels=8)
    x = sets(6, 7, 0, channels=8, dtype=torch.float32)
    torch.testing.assert_close(module(x).double(), naive_attsets(module, x), rtol=1e-5,
                               atol=1e-6)


def test_equals_pyg_attentional_aggregation_on_flattened_sets():
    module = make(0, channels=6, seed=3)
    x = sets(5, 7, 0, channels=6, seed=4, dtype=torch.float32)
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(5)) < 0.6
    mask[0] = True
    mask[1] = False
    mask[2, 0] = True
    gate = torch.nn.Linear(6, 6)
    gate.load_state_dict(module.score.state_dict())
    pyg = AttentionalAggregation(gate_nn=gate)
    index = torch.arange(5).repeat_interleave(7)[mask.flatten()]
    ref = pyg(x.flatten(0, 1)[mask.flatten()], index, dim_size=5)
    torch.testing.assert_close(module(x, mask), ref, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(spatial_dims=st.sampled_from([0, 2]), views=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_permutation_invariant(spatial_dims, views, seed):
    module = make(spatial_dims).double()
    x = sets(3, views, spatial_dims, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(3, views, generator=gen) < 0.7
    perm = torch.randperm(views, generator=gen)
    out = module(x, mask)
    torch.testing.assert_close(module(x[:, perm], mask[:, perm]), out, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spatial_dims", [0, 2, 3])
def test_one_view_is_exactly_the_identity(spatial_dims):
    module = make(spatial_dims, activation=None)
    x = sets(4, 1, spatial_dims, dtype=torch.float32) * 1e3
    assert torch.equal(module(x), x[:, 0])
    assert torch.equal(module(x, torch.ones(4, 1, dtype=torch.bool)), x[:, 0])


@pytest.mark.parametrize("spatial_dims", [0, 2])
def test_masking_equals_dropping_the_views(spatial_dims):
    module = make(spatial_dims).double()
    sizes = [3, 1, 5, 2]
    x = sets(4, 5, spatial_dims, seed=7)
    mask = torch.arange(5).unsqueeze(0) < torch.tensor(sizes).unsqueeze(1)
    padded = x.masked_fill(~mask.view(4, 5, *[1] * (x.dim() - 2)), math.nan)  # garbage padding
    out = module(padded, mask)
    for b, n in enumerate(sizes):
        torch.testing.assert_close(out[b], module(x[b:b + 1, :n])[0], rtol=1e-12, atol=1e-12)
    weights = module.attention_weights(padded, mask)
    assert (weights[~mask] == 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones_like(out))


@pytest.mark.parametrize("spatial_dims", [0, 2])
def test_all_masked_set_pools_to_zero_with_finite_gradients(spatial_dims):
    module = make(spatial_dims)
    x = sets(3, 4, spatial_dims, dtype=torch.float32).requires_grad_()
    mask = torch.tensor([[True, False, True, True], [False] * 4, [True, False, False, False]])
    out = module(x, mask)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    torch.testing.assert_close(out[2], x[2, 0])
    (out * torch.randn_like(out)).sum().backward()
    for grad in (x.grad, module.score.weight.grad, module.score.bias.grad):
        assert torch.isfinite(grad).all()
    assert (x.grad[~mask] == 0).all() and (x.grad[0, 0] != 0).any()
    assert torch.equal(module.attention_weights(x, mask)[1], torch.zeros_like(x[1]))


@pytest.mark.parametrize("spatial_dims", [0, 2])
def test_minus_inf_scores_pool_to_zero_with_finite_gradients(spatial_dims):
    # A scoring layer with bias -inf in channel 1: every score of that channel is -inf.
    module = make(spatial_dims)
    x = sets(3, 4, spatial_dims, dtype=torch.float32).requires_grad_()
    mask = torch.tensor([[True, False, True, True], [True] * 4, [True, False, False, False]])
    reference = module(x.detach(), mask)
    with torch.no_grad():
        module.score.bias[1] = -math.inf
    out = module(x, mask)
    assert torch.equal(out[:, 1], torch.zeros_like(out[:, 1]))
    torch.testing.assert_close(out[:, [0, 2]], reference[:, [0, 2]])
    (out * torch.randn_like(out)).sum().backward()
    for grad in (x.grad, module.score.weight.grad, module.score.bias.grad):
        assert torch.isfinite(grad).all()
    assert float(module.score.bias.grad[1]) == 0.0


def test_empty_sets_pool_to_zero():
    module = make(0)
    assert torch.equal(module(torch.randn(2, 0, 3)), torch.zeros(2, 3))
    module2 = make(2)
    assert torch.equal(module2(torch.randn(2, 0, 3, 4, 4)), torch.zeros(2, 3, 4, 4))


def test_huge_score_gaps_are_stable():
    module = AttSets(2)
    with torch.no_grad():
        module.score.weight.copy_(torch.eye(2))
    # Scores 1e4 apart: all weight on the largest, no overflow.
    x = torch.tensor([[[1e4, -3.0], [0.0, 2.0], [-1e4, 5e4]]])
    out = module(x)
    assert torch.isfinite(out).all()
    assert torch.equal(out, torch.tensor([[1e4, 5e4]]))
    # Equal huge scores: uniform weights.
    same = torch.full((1, 4, 2), 3e4)
    torch.testing.assert_close(module(same), torch.full((1, 2), 3e4))


@pytest.mark.parametrize("spatial_dims", [0, 2])
def test_gradcheck(spatial_dims):
    module = make(spatial_dims, channels=2, activation="tanh" if spatial_dims else None).double()
    x = sets(2, 3, spatial_dims, channels=2).requires_grad_()
    mask = torch.tensor([[True, False, True], [True, True, True]])
    params = (module.score.weight, module.score.bias)

    def fn(x, weight, bias):
        return torch.func.functional_call(module, {"score.weight": weight, "score.bias": bias},
                                          (x, mask))

    inputs = (x,) + tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("spatial_dims", [0, 2])
def test_low_precision_is_computed_in_float32(dtype, spatial_dims):
    module = make(spatial_dims)
    x = sets(3, 4, spatial_dims, dtype=torch.float32).to(dtype)
    mask = torch.tensor([[True, True, False, True]] * 3)
    out = module(x, mask)
    assert out.dtype == dtype
    assert torch.equal(out, module(x.float(), mask).to(dtype))
    assert module.attention_weights(x).dtype == dtype


def test_float64_input_with_float32_module():
    module = make(0)
    x = sets(2, 3, 0)
    out = module(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, naive_attsets(module, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spatial_dims,kernel_size", [(0, None), (2, 3), (3, 5)])
def test_xavier_uniform_weights_and_zero_bias(spatial_dims, kernel_size):
    module = AttSets(16, spatial_dims, kernel_size=kernel_size)
    fan = 16 * (kernel_size or 1) ** spatial_dims
    bound = math.sqrt(6.0 / (2 * fan))
    weight = module.score.weight
    assert torch.equal(module.score.bias, torch.zeros(16))
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
    assert abs(weight.std().item() - bound / math.sqrt(3)) < 0.1 * bound
    with torch.no_grad():
        module.score.bias.fill_(1.0)
        weight.fill_(10.0)
    module.reset_parameters()
    assert torch.equal(module.score.bias, torch.zeros(16)) and weight.abs().max() <= bound


def test_repr():
    assert repr(AttSets(8)) == "AttSets(8)"
    assert (repr(AttSets(4, 3, kernel_size=5, activation="tanh", bias=False))
            == "AttSets(4, spatial_dims=3, kernel_size=5, activation='tanh', bias=False)")


@pytest.mark.parametrize("kwargs,match", [
    ({"channels": 0}, "channels must be a positive int, got 0"),
    ({"channels": 4, "spatial_dims": 1}, "spatial_dims must be 0"),
    ({"channels": 4, "kernel_size": 3}, "kernel_size applies to feature maps"),
    ({"channels": 4, "spatial_dims": 2, "kernel_size": 4}, "positive odd int.*got 4"),
    ({"channels": 4, "activation": "relu"}, "activation must be one of.*'relu'"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttSets(**kwargs)


def test_input_errors():
    fc, conv = AttSets(4), AttSets(4, 2)
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"\[B, V, C\] \(3 dimensions\).*\(2, 3, 4, 5\)"):
        fc(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"\[B, V, C, H, W\].*\(2, 3, 4\)"):
        conv(x)
    with pytest.raises(ValueError, match=r"channels=4 at dim 2.*\(2, 3, 5\)"):
        fc(torch.randn(2, 3, 5))
    with pytest.raises(TypeError, match="floating-point.*torch.int64"):
        fc(torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="must be a torch.Tensor, got list"):
        fc([[1.0]])
    with pytest.raises(TypeError, match="boolean.*got dtype torch.int64"):
        fc(x, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"mask must have shape \[B, V\] = \(2, 3\).*\(2, 4\)"):
        fc(x, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must have shape"):
        fc(x, torch.ones(2, 3, 1, dtype=torch.bool))


def test_attsets_is_importable_from_the_top_level():
    import gnpool

    assert gnpool.AttSets is AttSets and "AttSets" in gnpool.__all__
