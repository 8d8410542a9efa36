"""The DeepSets model with pluggable pooling."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import aggr

from gnpool import AttSetsAggregation, GNPAggregation
from gnpool.models import DeepSets


def test_is_decoder_of_pooled_encoder():
    torch.manual_seed(0)
    model = DeepSets(2, 3, hidden_channels=8, pooling="max")
    x = torch.randn(9, 2)
    index = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    out = model(x, index, dim_size=3)
    assert out.shape == (3, 3)
    for s in range(3):
        pooled = model.encoder(x[index == s]).max(0).values
        torch.testing.assert_close(out[s], model.decoder(pooled))


def test_ptr_and_a_single_set():
    model = DeepSets(1, 1, hidden_channels=4, pooling="sum")
    x = torch.rand(5, 1)
    by_ptr = model(x, ptr=torch.tensor([0, 2, 5]))
    by_index = model(x, torch.tensor([0, 0, 1, 1, 1]), dim_size=2)
    torch.testing.assert_close(by_ptr, by_index)
    assert model(x).shape == (1, 1)


@pytest.mark.parametrize("pooling, kwargs, cls", [
    ("gnp", {"q": 1.0}, GNPAggregation), ("attsets", {}, AttSetsAggregation),
    ("softmax", {"learn": True}, aggr.SoftmaxAggregation),
])
def test_pooling_argument_is_honoured(pooling, kwargs, cls):
    model = DeepSets(1, 1, hidden_channels=6, pooling=pooling, pooling_kwargs=kwargs)
    assert type(model.pooling) is cls
    assert model(torch.rand(4, 1), torch.tensor([0, 0, 1, 1]), dim_size=2).shape == (2, 1)


def test_encoder_ends_in_relu_unless_asked():
    assert DeepSets(1, 1, pooling="sum").encoder.last_activation is True
    assert DeepSets(1, 1, pooling="sum", last_activation=False).encoder.last_activation is False
    assert DeepSets(1, 1, pooling="sum").decoder.last_activation is False


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="out_channels must be a positive int"):
        DeepSets(1, 0)
    with pytest.raises(ValueError, match="pooling='nope'"):
        DeepSets(1, 1, pooling="nope")


@pytest.mark.parametrize("last_activation", [True, False, "softplus"])
def test_scripted_deepsets_matches_eager(last_activation):
    torch.manual_seed(0)
    model = DeepSets(2, 1, 8, "gnp", last_activation=last_activation).train()
    scripted = torch.jit.script(model)
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(1))
    index = torch.arange(20) // 5
    out = scripted(x, index, dim_size=4)
    torch.testing.assert_close(out, model(x, index, dim_size=4))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
