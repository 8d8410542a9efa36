"""Hyperparameters, command-line assignments and run hashes."""

from __future__ import annotations

import pytest

from gnpool.bench.hparams import HParams, digest, parse_assignments, parse_value


def test_updated_replaces_known_fields_and_rejects_others():
    hp = HParams().updated({"epochs": 5, "gnp_kwargs": {"p_max": 20.0}})
    assert hp.epochs == 5 and hp.gnp_kwargs == {"p_max": 20.0}
    with pytest.raises(ValueError, match=r"hyperparameters \['epoch'\] are unknown"):
        HParams().updated({"epoch": 5})


def test_parse_assignments():
    assert parse_assignments(["epochs=5", "last_activation=false", 'gnp_kwargs={"q": 1}',
                              "pool_lr=null", "name=abc"]) == {
        "epochs": 5, "last_activation": False, "gnp_kwargs": {"q": 1}, "pool_lr": None,
        "name": "abc"}
    assert parse_value("0.5") == 0.5
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_assignments(["epochs"])


def test_digest_is_stable_and_order_independent():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert len(digest(HParams().to_dict())) == 16
