"""Benchmark profiles."""

from __future__ import annotations

import pytest

from gnpool.bench.profiles import PROFILES, get_profile
from gnpool.bench.runner import plan
from gnpool.datasets import list_tasks, task_info


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_plans(name):
    profile = get_profile(name)
    specs = plan(profile)
    # plan() checked every task's data parameters and hyperparameters.
    assert specs and len({s.key for s in specs}) == len(specs)
    assert {s.task for s in specs} == {tp.task for tp in profile.tasks}


def test_paper_uses_xu_et_al_settings():
    plans = {tp.task: tp for tp in get_profile("paper").tasks}
    assert set(plans) == set(list_tasks())
    assert all(tp.data == {} for tp in plans.values())       # the datasets' defaults
    deg = plans["max_degree"].hparams
    assert (deg["hidden"], deg["layers"], deg["mlp_layers"], deg["lr"], deg["batch_size"],
            deg["epochs"]) == (256, 2, 2, 0.01, 64, 300)
    path = plans["shortest_path"].hparams
    assert (path["layers"], path["lr"], path["batch_size"]) == (3, 0.005, 32)
    spec = plan(get_profile("paper"), tasks=["max_degree"], configs=["sum-max"])[0]
    assert spec.hparams.weight_decay == 1e-5 and spec.hparams.lr_step == 50


def test_gnp_settings_reach_only_what_they_concern():
    from gnpool.bench import profiles
    from gnpool.training import DEFAULT_POOL_LR

    for name in ("quick", "standard"):
        specs = plan(get_profile(name), tasks=["max_degree"])
        by = {s.config.name: s.hparams for s in specs}
        # Every learnable configuration's pooling parameters train at the same rate (the
        # standard profile leaves LAF and GenAgg out of graph tasks for their cost).
        learnable = {"gnp", "powermean", "softmax"} | ({"laf", "genagg"} if name == "quick"
                                                      else set())
        assert learnable <= set(by)
        assert {by[c].pool_lr for c in learnable} == {DEFAULT_POOL_LR}
        # GNP's recipe (chosen on the tuning split) reaches GNP only.
        assert by["gnp"].gnp_kwargs == profiles.GNP_KWARGS
        for key, value in profiles.GNP_OVERRIDES.items():
            assert getattr(by["gnp"], key) == value
            assert all(getattr(hp, key) != value for c, hp in by.items() if c != "gnp")


def test_standard_runs_the_known_good_and_two_other_fixed_configurations():
    for tp in get_profile("standard").tasks:
        specs = plan(get_profile("standard"), tasks=[tp.task])
        fixed = {s.config.name for s in specs if s.config.fixed}
        assert len(fixed) == 3
        learned = {s.config.name for s in specs if not s.config.fixed}
        assert {"gnp", "powermean", "softmax", "attsets"} <= learned
        assert {s.seed for s in specs} == {0, 1, 2}


def test_quick_and_smoke():
    quick = get_profile("quick")
    assert quick.workers == 2
    levels = {task_info(tp.task).level for tp in quick.tasks}
    assert levels == {"graph", "node", "set"}
    smoke = plan(get_profile("smoke"))
    assert all(s.hparams.epochs <= 2 for s in smoke) and len(smoke) <= 8


def test_unknown_profile():
    with pytest.raises(ValueError, match="profile='huge' is unknown"):
        get_profile("huge")


def test_only_the_standard_profiles_message_passing_tasks_factorize_messages():
    # The quick and sets profiles keep the per-edge message MLP their stored runs used.
    from gnpool.bench.configs import PoolingConfig
    from gnpool.bench.train import build_model

    for spec in plan(get_profile("standard")):
        level = task_info(spec.task).level
        assert spec.hparams.factorized_messages is (level != "set"), spec.task
    for name in ("quick", "sets", "paper"):
        assert not any(s.hparams.factorized_messages for s in plan(get_profile(name)))
    spec = next(s for s in plan(get_profile("standard")) if s.task == "max_degree")
    info = task_info("max_degree")
    for factorized in (True, False):
        hp = spec.hparams.updated({"factorized_messages": factorized})
        model = build_model(info, PoolingConfig("sum-max", "sum", "max"), hp)
        assert [conv.factorized for conv in model.convs] == [factorized] * hp.layers
