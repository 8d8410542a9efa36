"""Aggregators over views: masks, order (in)dependence and references."""

from __future__ import annotations

import pytest
import torch

from gnpool import GNPAggregation
from gnpool.models import ViewGNP, ViewGRU, ViewPooling, view_aggregator
from gnpool.nn import AttSets

B, V, C = 4, 5, 6


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(B, V, C, generator=gen, dtype=torch.float64) * 2
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]],
                        dtype=torch.bool)
    return x, mask


def loop_reference(x, mask, reduce):
    """Sample by sample over the present views, 0 for a sample without views."""
    rows = []
    for b in range(x.size(0)):
        present = x[b, mask[b]]
        rows.append(reduce(present) if len(present) else torch.zeros(x.size(2), dtype=x.dtype))
    return torch.stack(rows)


@pytest.mark.parametrize("pooling,reduce", [
    ("max", lambda s: s.max(0).values), ("mean", lambda s: s.sum(0) / len(s)),
    ("sum", lambda s: s.sum(0))])
def test_fixed_poolings_over_present_views(data, pooling, reduce):
    x, mask = data
    pool = ViewPooling(C, pooling)
    assert torch.allclose(pool(x, mask), loop_reference(x, mask, reduce))
    assert torch.allclose(pool(x), loop_reference(x, torch.ones_like(mask), reduce))


def test_view_gnp_is_gnp_over_each_sample_s_present_views(data):
    x, mask = data
    p = torch.linspace(0.5, 8.0, C).tolist()
    view = ViewGNP(C, p=p, q=0.5).double()
    reference = GNPAggregation(C, p=p, q=0.5).double()

    def reduce(s):
        return reference(s, torch.zeros(len(s), dtype=torch.long), dim_size=1)[0]

    assert torch.allclose(view(x, mask), loop_reference(x, mask, reduce))
    # p = q = 1 (the default) is the mean; one view passes through unchanged.
    mean = ViewGNP(C).double()
    assert torch.allclose(mean(x), x.mean(1))
    assert torch.allclose(mean(x[:, :1]), x[:, 0], rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["attsets", "gnp", "max", "mean", "sum"])
def test_set_aggregators_ignore_order_and_masked_views(data, name):
    torch.manual_seed(0)
    x, mask = data
    agg = view_aggregator(name, C).double()
    out = agg(x, mask)
    perm = torch.randperm(V)
    assert torch.allclose(agg(x[:, perm], mask[:, perm]), out, atol=1e-12)
    garbage = x.masked_fill(~mask.unsqueeze(-1), 1e6)
    assert torch.allclose(agg(garbage, mask), out, atol=1e-12)
    assert torch.equal(out[3], torch.zeros(C, dtype=x.dtype)), "no views: 0"
    assert torch.allclose(agg(x[:1, [0, 1, 3]]), out[:1], atol=1e-12), "mask = absent"


def test_gru_reads_the_present_views_in_order(data):
    torch.manual_seed(0)
    x, mask = data
    gru = ViewGRU(C).double()
    out = gru(x, mask)
    for b in range(3):
        h = torch.zeros(1, 1, C, dtype=x.dtype)
        for view in x[b, mask[b]]:
            h = gru.gru(view.view(1, 1, C), h)[1]
        assert torch.allclose(out[b], h[0, 0], atol=1e-12)
    assert torch.equal(out[3], torch.zeros(C, dtype=x.dtype))
    assert not torch.allclose(gru(x.flip(1)), gru(x)), "the order matters"
    assert torch.allclose(gru(x[:, :2]), gru(x, torch.arange(V).expand(B, V) < 2))


def test_view_aggregator_builds_each_kind_and_rejects_unknown_names():
    assert isinstance(view_aggregator("attsets", C), AttSets)
    assert isinstance(view_aggregator("gnp", C, q=0.0).gnp, GNPAggregation)
    assert view_aggregator("max", C).pooling == "max"
    with pytest.raises(ValueError, match="aggregator name must be one of"):
        view_aggregator("median", C)
    with pytest.raises(ValueError, match="takes no keyword arguments"):
        view_aggregator("max", C, p=2.0)
    with pytest.raises(ValueError, match="x must be a tensor \\[B, V, C\\] with C=6"):
        ViewPooling(C, "max")(torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="mask must have shape"):
        ViewPooling(C, "sum")(torch.zeros(2, 3, C), torch.ones(2, 4, dtype=torch.bool))
