"""Pooling configurations of the grid."""

from __future__ import annotations

import pytest

from gnpool.bench.configs import (
    LAF_UNITS,
    LEARNED,
    PoolingConfig,
    default_configs,
    with_overrides,
)
from gnpool.bench.hparams import HParams
from gnpool.bench.train import build_model
from gnpool.datasets import task_info


def test_graph_grid_has_16_fixed_pairs_and_the_learnable_ones():
    configs = default_configs("graph", "min")
    names = [c.name for c in configs]
    assert len(names) == len(set(names)) == 16 + 9
    fixed = [c for c in configs if c.fixed]
    assert len(fixed) == 16
    assert {(c.aggr, c.readout) for c in fixed} == {
        (a, r) for a in ("sum", "mean", "max", "min") for r in ("sum", "mean", "max", "min")}
    by = {c.name: c for c in configs}
    for name in ("gnp", "laf", "genagg", "powermean", "softmax"):
        assert (by[name].aggr, by[name].readout) == (name, name)
    # Readout-only configurations pool over the task's known-good aggregation.
    for name in ("attsets", "deepsets", "settransformer", "variancepreserving"):
        assert (by[name].aggr, by[name].readout) == ("min", name)
        assert by[name].aggr_kwargs == {}
    assert by["powermean"].aggr_kwargs == by["powermean"].readout_kwargs == {"learn": True}
    assert by["softmax"].readout_kwargs == {"learn": True}
    assert by["laf"].aggr_kwargs == by["laf"].readout_kwargs == {"units": LAF_UNITS}
    assert default_configs("graph", None)[17].aggr == "sum"


def test_node_grid_leaves_out_the_readout_only_set_aggregations():
    configs = default_configs("node")
    assert [c.name for c in configs] == ["sum", "mean", "max", "min", "gnp", "attsets",
                                         "powermean", "softmax", "laf", "genagg"]
    assert sum(c.fixed for c in configs) == 4
    assert all(c.readout is None and c.aggr == c.name for c in configs)


def test_set_grid_has_every_configuration_as_the_set_pooling():
    configs = default_configs("set")
    assert [c.name for c in configs] == ["sum", "mean", "max", "min", *LEARNED]
    assert sum(c.fixed for c in configs) == 4
    assert all(c.aggr is None and c.readout == c.name for c in configs)


@pytest.mark.parametrize("level", ["graph", "node", "set"])
def test_every_configuration_builds_a_model(level):
    task = {"graph": "max_degree", "node": "node_neighbour_max", "set": "set_max"}[level]
    info = task_info(task)
    for config in default_configs(level, info.aggr):
        model = build_model(info, config, HParams(hidden=8, layers=1))
        assert sum(p.numel() for p in model.parameters()) > 0, config.name


def test_overrides_and_description():
    config = with_overrides(PoolingConfig("x", "sum", "max", overrides={"a": 1}), b=2, a=3)
    assert config.overrides == {"a": 3, "b": 2}
    assert config.describe()["overrides"] == {"a": 3, "b": 2}


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="level='edge' is unknown"):
        default_configs("edge")
