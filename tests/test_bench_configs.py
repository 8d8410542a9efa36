"""Pooling configurations of the grid."""

from __future__ import annotations

import pytest

from gnpool.bench.configs import PoolingConfig, default_configs, with_overrides


def test_graph_grid_has_16_fixed_pairs_and_the_learnable_ones():
    configs = default_configs("graph", "min")
    names = [c.name for c in configs]
    assert len(names) == len(set(names)) == 20
    fixed = [c for c in configs if c.fixed]
    assert len(fixed) == 16
    assert {(c.aggr, c.readout) for c in fixed} == {
        (a, r) for a in ("sum", "mean", "max", "min") for r in ("sum", "mean", "max", "min")}
    by = {c.name: c for c in configs}
    assert (by["gnp"].aggr, by["gnp"].readout) == ("gnp", "gnp")
    # AttSets is the readout over the task's known-good aggregation.
    assert (by["attsets"].aggr, by["attsets"].readout) == ("min", "attsets")
    assert by["powermean"].aggr_kwargs == by["powermean"].readout_kwargs == {"learn": True}
    assert by["softmax"].readout_kwargs == {"learn": True}
    assert default_configs("graph", None)[17].aggr == "sum"


@pytest.mark.parametrize("level", ["node", "set"])
def test_node_and_set_grids_have_4_fixed_and_4_learnable(level):
    configs = default_configs(level)
    assert [c.name for c in configs] == ["sum", "mean", "max", "min", "gnp", "attsets",
                                         "powermean", "softmax"]
    assert sum(c.fixed for c in configs) == 4
    for c in configs:
        if level == "node":
            assert c.readout is None and c.aggr == c.name
        else:
            assert c.aggr is None and c.readout == c.name


def test_overrides_and_description():
    config = with_overrides(PoolingConfig("x", "sum", "max", overrides={"a": 1}), b=2, a=3)
    assert config.overrides == {"a": 3, "b": 2}
    assert config.describe()["overrides"] == {"a": 3, "b": 2}


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="level='edge' is unknown"):
        default_configs("edge")
