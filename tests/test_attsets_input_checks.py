"""attsets_linear, AttSetsAggregation (eager, lazy, scripted) and the dense AttSets reject
bad input by name instead of computing something else, and pool fp16/bf16/float64."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from conftest import BACKENDS, random_sets

from gnpool import AttSets, AttSetsAggregation
from gnpool.functional import attsets, attsets_linear

pytestmark = pytest.mark.usefixtures("one_thread")

INDEX = torch.tensor([0, 0, 1, 1, 2, 2])


def _inputs(features: int = 3, seed: int = 0):
    x, index = random_sets(60, 6, features, seed=seed, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    weight = torch.randn(features, features, generator=gen) * 0.5
    return x, index, weight


# ---------------------------------------------------------------------------------------
# attsets_linear: weight and bias


@pytest.mark.parametrize("bias_shape", [(0,), (10,), (2, 3), (5,), (3, 1)])
def test_a_bias_of_another_length_is_rejected_before_any_kernel(bias_shape):
    x, index, weight = _inputs()
    message = (r"bias must have shape \[3\] or \[1\] for weight of shape \(3, 3\), got "
               + re.escape(str(tuple(bias_shape))))
    with pytest.raises(ValueError, match=message):
        attsets_linear(x, weight, torch.zeros(bias_shape), None, index)


def test_a_per_channel_bias_with_one_score_per_element_is_rejected():
    x, index, weight = _inputs()
    with pytest.raises(ValueError, match=r"bias must have shape \[1\] for weight of shape "
                                         r"\(1, 3\), got \(3,\)"):
        attsets_linear(x, weight[:1], torch.zeros(3), None, index)


@pytest.mark.parametrize("features", [3, 64])
def test_a_one_value_bias_is_added_to_every_score_as_linear_does(features):
    # A constant shift of all scores leaves the softmax, and so the output, unchanged.
    x, index, weight = _inputs(features, seed=3)
    ref = attsets_linear(x, weight, None, None, index)
    for backend in (None, "native"):
        bias = torch.full((1,), 2.5, requires_grad=True)
        out = attsets_linear(x, weight, bias, None, index, backend=backend)
        torch.testing.assert_close(out, ref)
        assert torch.isfinite(out).all()
        (out * torch.randn_like(out)).sum().backward()
        assert bias.grad.shape == (1,)
        torch.testing.assert_close(bias.grad, torch.zeros(1), atol=1e-4, rtol=0)
    # and as F.linear broadcasts it, with tanh (where the shift matters)
    bias = torch.tensor([0.7])
    scores = torch.tanh(torch.nn.functional.linear(x, weight, bias))
    torch.testing.assert_close(attsets_linear(x, weight, bias, "tanh", index),
                               attsets(x, scores, index))


@pytest.mark.parametrize("weight, bias, error, message", [
    ([[1.0] * 3] * 3, None, TypeError, r"weight must be a torch.Tensor .* got list"),
    (torch.ones(3, 3, dtype=torch.long), None, TypeError,
     r"weight must be a floating-point tensor, got dtype torch.int64"),
    (torch.ones(3, 3, device="meta"), None, ValueError,
     r"weight must be on x's device \(cpu\), got a weight on meta"),
    (torch.ones(3, 3), [0.0, 0.0, 0.0], TypeError,
     r"bias must be None or a torch.Tensor of shape \[3\] or \[1\], got list"),
    (torch.ones(3, 3), 0.5, TypeError, r"bias must be None or a torch.Tensor .* got float"),
    (torch.ones(3, 3), torch.zeros(3, dtype=torch.long), TypeError,
     r"bias must be a floating-point tensor, got dtype torch.int64"),
    (torch.ones(3, 3), torch.zeros(3, device="meta"), ValueError,
     r"bias must be on x's device \(cpu\), got a bias on meta"),
])
def test_bad_weights_and_biases_are_named(weight, bias, error, message):
    x, index, _ = _inputs()
    for backend in (None, "native"):
        with pytest.raises(error, match=message):
            attsets_linear(x, weight, bias, None, index, backend=backend)
        with pytest.raises(error, match=message):   # also on the unfused path
            attsets_linear(x.unsqueeze(0), weight, bias, None, index, dim=1, backend=backend)


@pytest.mark.parametrize("layout", ["rows", "batched"])
def test_float64_parameters_with_float32_x_are_computed_in_float64(layout):
    x, index, weight = _inputs(seed=5)
    bias = torch.randn(3, dtype=torch.float64)
    w64 = weight.double().requires_grad_()
    xs, dim = (x, -2) if layout == "rows" else (x.unsqueeze(0), 1)
    out = attsets_linear(xs, w64, bias, "tanh", index, dim=dim)
    ref = attsets_linear(xs.double(), w64.detach(), bias, "tanh", index, dim=dim)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref.float(), rtol=0, atol=0)
    out.sum().backward()
    assert w64.grad.dtype == torch.float64
    # a float64 bias with float32 x and weight: converted to float32, on both paths
    torch.testing.assert_close(attsets_linear(xs, weight, bias, None, index, dim=dim),
                               attsets_linear(xs, weight, bias.float(), None, index, dim=dim))


def test_the_operator_itself_rejects_a_bias_it_would_read_out_of_bounds():
    x, index, weight = _inputs()
    ptr = torch.tensor([0, 30, 60])
    with pytest.raises(ValueError, match=r"bias must have shape \[3\] \(weight.size\(0\)\), "
                                         r"got \(1,\)"):
        torch.ops.gnpool.attsets_linear_forward(x, weight, torch.zeros(1), None, ptr, None, 2,
                                                "auto")
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        torch.ops.gnpool.attsets_linear_forward(x.long(), weight, None, None, ptr, None, 2,
                                                "auto")


# ---------------------------------------------------------------------------------------
# AttSetsAggregation


def test_a_replaced_bias_of_one_value_or_of_another_length():
    x, index, _ = _inputs(8, seed=7)
    pool = AttSetsAggregation(8)
    with torch.no_grad():
        pool.score.weight.mul_(3)
    ref = attsets_linear(x, pool.score.weight, None, None, index)
    pool.score.bias = torch.nn.Parameter(torch.randn(1))
    torch.testing.assert_close(pool(x, index), ref)
    torch.testing.assert_close(torch.jit.script(pool)(x, index), ref)
    pool.score.bias = torch.nn.Parameter(torch.randn(2))
    with pytest.raises(ValueError, match=r"bias must have shape \[8\] or \[1\]"):
        pool(x, index)
    with pytest.raises(torch.jit.Error, match=r"bias must have shape"):
        torch.jit.script(pool)(x, index)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("layout", ["rows", "batched"])
def test_low_precision_in_float32_and_double_in_float64(dtype, lazy, layout):
    x, index = random_sets(80, 7, 5, seed=9, dtype=torch.float32)
    x = x.to(dtype)
    xs, dim = (x, -2) if layout == "rows" else (torch.stack([x, -x]), 1)
    torch.manual_seed(0)
    pool = AttSetsAggregation(-1 if lazy else 5, activation="tanh")
    xs = xs.clone().requires_grad_()
    out = pool(xs, index, dim_size=7, dim=dim)
    assert out.dtype == dtype and out.shape[dim] == 7
    if dtype == torch.float64:
        # computed in float64 with the same (converted) weights
        ref = copy.deepcopy(pool).double()(xs.detach(), index, dim_size=7, dim=dim)
        torch.testing.assert_close(out.detach(), ref, rtol=0, atol=0)
    else:
        # computed in float32, as the same module computes float32 input
        ref = pool(xs.detach().float(), index, dim_size=7, dim=dim)
        torch.testing.assert_close(out.detach(), ref.to(dtype), rtol=0, atol=0)
    out.float().square().sum().backward()
    assert xs.grad.dtype == dtype and torch.isfinite(xs.grad).all()
    assert pool.score.weight.grad.dtype == torch.float32
    assert torch.isfinite(pool.score.weight.grad).all()


def test_the_scripted_module_rejects_an_integer_x():
    scripted = torch.jit.script(AttSetsAggregation(4))
    for x in (torch.ones(6, 4, dtype=torch.long), torch.ones(2, 6, 4, dtype=torch.int32)):
        with pytest.raises(torch.jit.Error, match="x must be a floating-point tensor"):
            scripted(x, INDEX, dim=-2)
    out = scripted(torch.ones(6, 4), INDEX)
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(3, 4))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_the_scripted_module_pools_other_dtypes_on_both_paths(dtype):
    pool = AttSetsAggregation(4)
    scripted = torch.jit.script(pool)
    x = torch.randn(2, 6, 4).to(dtype)
    for xs, dim in ((x[0], -2), (x, 1)):
        out = scripted(xs, INDEX, dim=dim)
        assert out.dtype == dtype
        torch.testing.assert_close(out, pool(xs, INDEX, dim=dim))


def test_a_lazy_module_checks_x_before_materialising():
    pool = AttSetsAggregation()
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got dtype "
                                        "torch.int64"):
        pool(torch.ones(6, 4, dtype=torch.long), INDEX)
    assert pool.in_channels == -1   # still lazy
    with pytest.raises(ValueError, match=r"x must have at least one feature .* lazy "
                                         r"AttSetsAggregation .* got shape \(6, 0\)"):
        pool(torch.ones(6, 0), INDEX)
    assert pool.in_channels == -1
    assert pool(torch.ones(6, 4), INDEX).shape == (3, 4) and pool.in_channels == 4


@pytest.mark.parametrize("x", [[[1.0, 2.0]] * 6, np.ones((6, 2), dtype=np.float32), None])
@pytest.mark.parametrize("in_channels", [-1, 2])
def test_x_that_is_not_a_tensor_is_named(x, in_channels):
    with pytest.raises(TypeError, match=rf"x must be a torch.Tensor, got {type(x).__name__}"):
        AttSetsAggregation(in_channels)(x, INDEX)


@pytest.mark.parametrize("kwargs, name", [
    ({"per_channel": "no"}, "per_channel"), ({"per_channel": 0}, "per_channel"),
    ({"bias": 1}, "bias"), ({"bias": None}, "bias"),
])
def test_bool_flags_must_be_bools(kwargs, name):
    with pytest.raises(TypeError, match=rf"{name} must be a bool, got"):
        AttSetsAggregation(3, **kwargs)
    with pytest.raises(TypeError, match=rf"{name} must be a bool, got"):
        AttSetsAggregation(**kwargs)


# ---------------------------------------------------------------------------------------
# The dense AttSets


@pytest.mark.parametrize("spatial_dims", [2.0, 0.0, "2", True])
def test_dense_spatial_dims_must_be_an_int(spatial_dims):
    with pytest.raises(ValueError, match=r"spatial_dims must be 0 \(vectors\), 2 or 3"):
        AttSets(3, spatial_dims=spatial_dims)


def test_dense_bias_must_be_a_bool():
    with pytest.raises(TypeError, match="bias must be a bool, got 'no'"):
        AttSets(3, bias="no")


@pytest.mark.parametrize("shape", [(2, 4, 3, 0, 5), (2, 4, 3, 5, 0), (0, 4, 3, 0, 5),
                                   (2, 4, 3, 0, 4, 4), (2, 4, 3, 4, 4, 0)])
def test_dense_maps_without_positions_pool_to_the_empty_result(shape):
    pool = AttSets(3, spatial_dims=len(shape) - 3)
    x = torch.randn(shape, requires_grad=True)
    mask = torch.ones(shape[:2], dtype=torch.bool)
    out = pool(x, mask)
    assert out.shape == shape[:1] + shape[2:] and out.dtype == x.dtype
    assert pool.attention_weights(x).shape == shape
    out.sum().backward()
    assert x.grad.shape == shape


def test_dense_maps_with_positions_are_unchanged_by_the_empty_case():
    torch.manual_seed(0)
    pool = AttSets(3, spatial_dims=2)
    x = torch.randn(2, 4, 3, 5, 6)
    flat = x.flatten(0, 1)
    scores = torch.nn.functional.conv2d(flat, pool.score.weight, pool.score.bias,
                                        padding=1).view(x.shape)
    ref = (torch.softmax(scores, 1) * x).sum(1)
    torch.testing.assert_close(pool(x), ref, rtol=0, atol=0)


def test_backends_agree_on_the_one_value_bias():
    x, index, weight = _inputs(6, seed=11)
    bias = torch.tensor([0.3])
    outs = [attsets_linear(x, weight, bias, "tanh", index, backend=name) for name in BACKENDS]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0])
