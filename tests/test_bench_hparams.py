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


@pytest.mark.parametrize("item, message", [
    ("epochs=two", r"--set 'epochs=two': hyperparameter epochs must be an int, got 'two'"),
    ("epochs=-1", r"--set 'epochs=-1': hyperparameter epochs must be >= 1, got -1"),
    ("epochs=2.5", r"epochs must be an int, got 2.5"),
    ("lr=0", r"lr must be > 0, got 0"),
    ("lr=NaN", r"lr must be a finite number, got nan"),
    ("pool_lr=fast", r"pool_lr must be a finite number or null, got 'fast'"),
    ("last_activation=1", r"last_activation must be true or false or \"softplus\", got 1"),
    ("last_activation=tanh", r"last_activation must be true or false or \"softplus\", got .tanh."),
    ("gnp_negative_share=1.5", r"gnp_negative_share must be in \[0, 1\], got 1.5"),
    ("gnp_kwargs=[1]", r"gnp_kwargs must be a JSON object with string keys, got \[1\]"),
    ("epoch=3", r"--set 'epoch=3': 'epoch' is not a hyperparameter; expected one of hidden"),
])
def test_checked_assignments_name_the_item_type_and_range(item, message):
    with pytest.raises(ValueError, match=message):
        parse_assignments([item], check=True)


def test_checked_assignments_accept_every_field_type():
    values = parse_assignments(["epochs=3", "lr=1", "pool_lr=null", "pool_lr=0.5",
                                "last_activation=false", 'gnp_kwargs={"q": 1}',
                                "gnp_p_spread=null"], check=True)
    assert values == {"epochs": 3, "lr": 1, "pool_lr": 0.5, "last_activation": False,
                      "gnp_kwargs": {"q": 1}, "gnp_p_spread": None}
    assert HParams().updated(values).lr == 1


@pytest.mark.parametrize("field, value", [("epochs", 0), ("epochs", True), ("hidden", "8"),
                                          ("weight_decay", -1e-5), ("size_bins", 0)])
def test_hparams_reject_bad_values_when_made(field, value):
    with pytest.raises(ValueError, match=f"hyperparameter {field} must be"):
        HParams(**{field: value})


def test_settings_added_after_0_2_leave_run_keys_unchanged_at_their_defaults():
    from gnpool.bench.hparams import ADDED_AFTER_0_2, HParams

    hp = HParams()
    key = hp.key()
    assert not set(ADDED_AFTER_0_2) & set(key)
    assert set(hp.to_dict()) - set(key) == set(ADDED_AFTER_0_2)
    assert hp.updated({"pool_prior": 2.0}).key()["pool_prior"] == 2.0
    assert hp.updated({"snap": 0.2, "snap_search": 1}).key()["snap_search"] == 1
    with pytest.raises(ValueError, match="pool_prior must be >= 0"):
        HParams(pool_prior=-1.0)
    with pytest.raises(ValueError, match="snap_search must be >= 0"):
        HParams(snap_search=-1)


def test_snap_search_needs_snap_and_excludes_the_prior():
    from gnpool.bench.hparams import HParams

    with pytest.raises(ValueError, match="snap_search=2 needs snap > 0"):
        HParams(snap_search=2)
    with pytest.raises(ValueError, match="exclude each other"):
        HParams(snap=0.2, snap_search=2, pool_prior=1.0)
    with pytest.raises(ValueError, match="exclude each other"):
        HParams(snap=0.2, snap_search=2, snap_parts=True)
    assert HParams(snap=0.2, snap_search=2).snap_search == 2


def test_an_int_for_a_float_setting_identifies_the_same_runs():
    as_int = HParams(lr=1, retrain=1, retrain_tolerance=0, epochs=5)
    as_float = HParams(lr=1.0, retrain=1.0, retrain_tolerance=0.0, epochs=5)
    assert as_int.key() == as_float.key()
    assert type(as_int.lr) is float and type(as_int.retrain_tolerance) is float
    assert type(as_int.epochs) is int                      # int settings stay ints
    assert digest(as_int.key()) == digest(as_float.key())
