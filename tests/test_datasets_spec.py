"""Per-sample generators and split configurations of gnpool.datasets.spec."""

import numpy as np

from gnpool.datasets import resolve_params
from gnpool.datasets.spec import SPLITS, item_rng, split_config


def test_item_rng_is_stable_and_independent():
    a = item_rng("max_degree", "train", 0, 5).random(4)
    np.testing.assert_array_equal(a, item_rng("max_degree", "train", 0, 5).random(4))
    others = [item_rng("max_degree", "train", 0, 6), item_rng("max_degree", "val", 0, 5),
              item_rng("min_degree", "train", 0, 5), item_rng("max_degree", "train", 1, 5)]
    for rng in others:
        assert not np.array_equal(a, rng.random(4))


def test_item_rng_known_value():
    # Pins the derivation (SeedSequence of seed, sha256 words of task and split, index):
    # a change here silently changes every dataset and must bump the cache format.
    assert item_rng("max_degree", "train", 0, 0).integers(1 << 30) == 424853124


def test_split_config_uses_train_or_extrap_parameters():
    p = resolve_params("shortest_path")
    cfg = {s: split_config(p, s) for s in SPLITS}
    assert [cfg[s].count for s in SPLITS] == [10000, 1000, 2500, 2500]
    for s in ("train", "val", "test_interp"):
        assert cfg[s].sizes == (20, 40) and cfg[s].weights == (1.0, 5.0)
        assert cfg[s].families == p["train_families"]
    assert cfg["test_extrap"].sizes == (50, 70) and cfg["test_extrap"].weights == (1.0, 10.0)
    assert cfg["test_extrap"].families == ("general", "barabasi_albert", "grid")
    q = resolve_params("set_sum")
    assert split_config(q, "test_extrap").sizes == (100, 200)
    assert split_config(q, "train").families == () and split_config(q, "val").weights is None
