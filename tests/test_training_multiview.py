"""The default FASet batch transformations: one-view sets and random subsets."""

from __future__ import annotations

import pytest
import torch

from gnpool.training import SetSizes, predict_multiview, single_view_batch, subset_batch
from gnpool.training.multiview import as_multiview


def numbered_views(batch: int, views: int) -> torch.Tensor:
    """views[b, v] = [100 b + v, -(100 b + v)]: every view says which one it is."""
    ids = (100 * torch.arange(batch).unsqueeze(1) + torch.arange(views)).float()
    return torch.stack([ids, -ids], dim=-1)


def test_single_view_batch_makes_one_view_sets_with_repeated_targets():
    views, target = numbered_views(3, 4), torch.tensor([[0.0], [1.0], [2.0]])
    out = single_view_batch((views, target))
    assert out["views"].shape == (12, 1, 2) and out["mask"] is None
    assert torch.equal(out["views"][:, 0], views.reshape(12, 2))
    assert torch.equal(out["target"], target.repeat_interleave(4, 0))


def test_single_view_batch_drops_masked_views():
    views, target = numbered_views(2, 3), torch.tensor([5.0, 7.0])
    mask = torch.tensor([[True, False, True], [False, True, False]])
    out = single_view_batch({"views": views, "target": target, "mask": mask})
    assert out["views"][:, 0, 0].tolist() == [0.0, 2.0, 101.0]
    assert out["target"].tolist() == [5.0, 5.0, 7.0]


def test_subset_batch_keeps_distinct_present_views():
    gen = torch.Generator().manual_seed(0)
    views, target = numbered_views(6, 8), torch.arange(6.0)
    mask = torch.rand(6, 8, generator=gen) < 0.7
    mask[0] = False
    mask[0, 3] = True
    sizes = torch.tensor([4, 2, 8, 1, 5, 3])
    out = subset_batch({"views": views, "target": target, "mask": mask}, sizes, gen)
    kept = out["mask"]
    assert out["views"].shape == (6, int(kept.sum(1).max()), 2)
    assert torch.equal(out["target"], target)
    for b in range(6):
        ids = out["views"][b, kept[b], 0] - 100 * b
        assert ids.numel() == min(int(sizes[b]), int(mask[b].sum()))
        assert len(set(ids.tolist())) == ids.numel()  # distinct
        assert mask[b, ids.long()].all()  # present
        assert torch.equal(out["views"][b, kept[b], 1], -out["views"][b, kept[b], 0])
        assert (out["views"][b, ~kept[b]] == 0).all()  # padding zeroed


def test_subset_batch_without_mask_and_one_size_has_no_mask():
    gen = torch.Generator().manual_seed(1)
    out = subset_batch((numbered_views(5, 6), torch.zeros(5)), 4, gen)
    assert out["mask"] is None and out["views"].shape == (5, 4, 2)
    subsets = [set(row.tolist()) for row in out["views"][:, :, 0] % 100]
    assert len({frozenset(s) for s in subsets}) > 1  # random, not the first 4 every time


def test_subset_batch_is_reproducible_from_the_generator():
    batch = (numbered_views(4, 6), torch.zeros(4))
    sizes = SetSizes(1, 6, per_sample=True)
    outs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(5)
        sizes.generator = gen
        outs.append(subset_batch(batch, sizes, gen))
    assert torch.equal(outs[0]["views"], outs[1]["views"])
    assert torch.equal(outs[0]["mask"], outs[1]["mask"])


@pytest.mark.parametrize("per_sample", [False, True])
def test_set_sizes_cover_the_range(per_sample):
    sizes = SetSizes(2, 4, per_sample, torch.Generator().manual_seed(0))
    draws = torch.stack([sizes(5) for _ in range(60)])
    assert draws.dtype == torch.long and draws.min() == 2 and draws.max() == 4
    if per_sample:
        assert (draws != draws[:, :1]).any()
    else:
        assert (draws == draws[:, :1]).all()


def test_predict_multiview_passes_the_mask_only_when_present():
    calls = []

    def model(views, **kwargs):
        calls.append(kwargs)
        return views.sum(1)

    mask = torch.ones(2, 3, dtype=torch.bool)
    out, target = predict_multiview(model, {"views": torch.ones(2, 3), "target": torch.zeros(2)})
    predict_multiview(model, {"views": torch.ones(2, 3), "target": torch.zeros(2), "mask": mask})
    assert calls[0] == {} and calls[1]["mask"] is mask
    assert torch.equal(out, torch.full((2,), 3.0)) and torch.equal(target, torch.zeros(2))


def test_batch_errors():
    views = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"\(views, target\) pair.*got tuple of length 3"):
        as_multiview((views, views, views))
    with pytest.raises(ValueError, match=r"keys 'views', 'target'.*\['extra', 'target', 'views'"):
        as_multiview({"views": views, "target": torch.zeros(2), "extra": 1})
    with pytest.raises(ValueError, match=r"target must be a tensor \[B, ...\] with B=2"):
        as_multiview((views, torch.zeros(3)))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        as_multiview({"views": views, "target": torch.zeros(2), "mask": torch.ones(2, 3)})
    with pytest.raises(ValueError, match=r"mask must have shape \[B, V\] = \(2, 3\)"):
        as_multiview({"views": views, "target": torch.zeros(2),
                      "mask": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="low <= high, got low=3, high=2"):
        SetSizes(3, 2)
    with pytest.raises(ValueError, match="low must be a positive int, got 0"):
        SetSizes(0, 2)
    with pytest.raises(ValueError, match=r"sizes must lie in \[1, 3\].*got \[1, 0\]"):
        subset_batch((views, torch.zeros(2)), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"sizes must lie in \[1, 3\].*got \[4, 4\]"):
        subset_batch((views, torch.zeros(2)), 4)


def test_set_sizes_beyond_the_views_are_rejected_even_when_the_draw_fits():
    batch = (numbered_views(4, 3), torch.zeros(4))
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"set_sizes reach 5 views, but the batches have "
                                         r"V=3 views.*set_sizes=\(1, 3\)"):
        subset_batch(batch, SetSizes(1, 5, generator=gen), gen)   # a draw of 1 would fit
    out = subset_batch(batch, SetSizes(1, 3, per_sample=True, generator=gen), gen)
    assert out["views"].size(1) <= 3
