"""The multi-view dataset: determinism, cache round trip, splits and parameters."""

from __future__ import annotations

import pytest
import torch

from gnpool.datasets.multiview import (
    DEFAULTS,
    load_multiview,
    load_multiview_splits,
    multiview_params,
)
from gnpool.datasets.render import render_depth, voxelize
from gnpool.datasets.shapes import CATEGORIES, sample_shape
from gnpool.datasets.spec import item_rng

SMALL = dict(num_train=5, num_val=2, num_test=3, num_ood=2, views=3, grid=8, image_size=8,
             progress=False)
KEYS = ("images", "voxels", "cameras", "category")


pytestmark = pytest.mark.usefixtures("one_thread")


def same(a, b) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in KEYS)


def test_generation_is_deterministic_and_seeded(tmp_path):
    a = load_multiview("train", root=tmp_path / "a", **SMALL)
    b = load_multiview("train", root=tmp_path / "b", **SMALL)
    assert a.generated and b.generated and same(a, b)
    c = load_multiview("train", root=tmp_path / "a", seed=1, **SMALL)
    assert not torch.equal(a.images, c.images)
    # More shapes keep the first ones: every shape has its own random stream.
    d = load_multiview("train", root=tmp_path / "a", **{**SMALL, "num_train": 7})
    assert torch.equal(d.images[:5], a.images) and torch.equal(d.voxels[:5], a.voxels)


def test_a_sample_is_the_rendering_of_its_own_shape(tmp_path):
    ds = load_multiview("val", root=tmp_path, **SMALL)
    rng = item_rng("multiview", "val", 0, 1)
    cats = DEFAULTS["categories"]
    shape = sample_shape(cats[1], rng)
    az = torch.from_numpy(rng.uniform(0.0, 360.0, 3))
    el = torch.from_numpy(rng.uniform(-60.0, 60.0, 3))
    depth = render_depth(shape, az, el, 8, 16)
    assert torch.equal(ds.images[1], (depth * 255).round().to(torch.uint8))
    assert torch.equal(ds.voxels[1], voxelize(shape, 8, 3))
    assert torch.allclose(ds.cameras[1], torch.stack((az, el), -1).float())
    assert ds.category_name(1) == cats[1]
    sample = ds[1]
    assert sample["views"].shape == (3, 1, 8, 8) and sample["views"].dtype == torch.float32
    assert torch.equal(sample["views"][:, 0], ds.images[1].float() / 255)
    assert torch.equal(sample["target"], ds.voxels[1].float())


def test_cache_round_trip_and_damaged_file(tmp_path):
    a = load_multiview("test", root=tmp_path, **SMALL)
    assert a.cache_path.is_file() and a.generation_seconds > 0
    b = load_multiview("test", root=tmp_path, **SMALL)
    assert not b.generated and same(a, b)
    assert b.generation_seconds == pytest.approx(a.generation_seconds)
    raw = bytearray(a.cache_path.read_bytes())
    raw[int(len(raw) * 0.8)] ^= 0xFF
    a.cache_path.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="checksum mismatch; regenerating"):
        c = load_multiview("test", root=tmp_path, **SMALL)
    assert c.generated and same(a, c)
    assert [p.name for p in a.cache_path.parent.iterdir()] == [a.cache_path.name]


def test_splits_draw_their_categories_and_the_held_out_one_only_in_test_ood(tmp_path):
    splits = load_multiview_splits(root=tmp_path, **{**SMALL, "num_test": 9, "num_ood": 4})
    names = list(CATEGORIES)
    train_cats = [names.index(c) for c in DEFAULTS["categories"]]
    assert splits["test"].category.tolist() == (train_cats + train_cats)[:9]
    assert set(splits["test_ood"].category.tolist()) == {names.index(DEFAULTS["heldout"])}
    for split in ("train", "val", "test"):
        assert names.index(DEFAULTS["heldout"]) not in splits[split].category.tolist()
    stats = splits["test"].stats()
    assert stats["shapes"] == 9 and sum(stats["categories"].values()) == 9
    assert 0 < stats["occupancy"][0] < 1 and 0 < stats["silhouette"][1]
    # Views that miss nothing: every shape is visible in every view.
    assert ((splits["test"].images > 0).flatten(2).sum(2) > 0).all()


def test_parameters_are_validated_with_their_names():
    assert multiview_params()["depth_samples"] == 2 * DEFAULTS["image_size"]
    with pytest.raises(ValueError, match="has no parameter colour"):
        multiview_params(colour=1)
    with pytest.raises(ValueError, match="grid=12 is invalid: expected a power of two"):
        multiview_params(grid=12)
    with pytest.raises(ValueError, match="heldout='table' is also among the training"):
        multiview_params(heldout="table")
    with pytest.raises(ValueError, match="elevation=.* expected -90 < lo <= hi < 90"):
        multiview_params(elevation=(-90, 10))
    with pytest.raises(ValueError, match="split='training' is unknown"):
        load_multiview("training")
