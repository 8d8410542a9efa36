"""Checkpoint helpers: atomic writes, random-state round trips, weights_only-safe values."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from gnpool.training.checkpoint import atomic_save, get_rng_state, plain, set_rng_state


def test_atomic_save_replaces_the_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"a": torch.ones(2)}, path)
    atomic_save({"a": torch.zeros(3)}, str(path))
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(3))
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_failed_save_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_save({"step": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        atomic_save({"step": 2, "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    atomic_save(get_rng_state(gen), tmp_path / "rng.pt")

    def draw():
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(),
                torch.rand(3, generator=gen).tolist())

    first = draw()
    draw()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True), gen)
    assert draw() == first


def test_plain_values():
    value = {"a": torch.tensor(2.5), "b": np.float32(1.5), "c": [torch.arange(3), (1, "x")],
             "d": np.arange(2), 3: None}
    assert plain(value, "v") == {"a": 2.5, "b": 1.5, "c": [[0, 1, 2], [1, "x"]], "d": [0, 1],
                                 "3": None}
    with pytest.raises(TypeError, match="validate's result must be made of numbers.*object"):
        plain({"x": object()}, "validate's result")
