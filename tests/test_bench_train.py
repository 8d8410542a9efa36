"""Training and evaluation of one run."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from gnpool import GNPAggregation
from gnpool.bench.configs import PoolingConfig, default_configs
from gnpool.bench.hparams import HParams
from gnpool.bench.train import (
    build_model,
    make_optimizer,
    mape,
    outputs,
    pooling_kwargs,
    run,
    size_bins,
)
from gnpool.datasets import load_splits, task_info


def test_mape_is_xu_et_al_s_formula():
    assert mape(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx(100 * (0.5 + 0.25)
                                                                               / 2)
    assert math.isnan(mape(np.array([math.nan]), np.array([1.0])))


def test_size_bins_cover_every_target_once():
    size = np.array([10, 11, 12, 19, 19, 15])
    pred, target = np.ones(6), np.full(6, 2.0)
    bins = size_bins(pred, target, size, 3)
    assert sum(b["count"] for b in bins) == 6
    assert bins[0]["lo"] == 10 and bins[-1]["hi"] == 20
    assert all(b["mape"] == pytest.approx(50.0) for b in bins)
    assert len(size_bins(pred, target, np.full(6, 7), 5)) == 1


def test_gnp_kwargs_and_negative_share():
    hp = HParams(hidden=8, gnp_kwargs={"q_neg": 0.5}, gnp_readout_kwargs={"q": 1.0},
                 gnp_negative_share=0.25)
    aggr = pooling_kwargs("gnp", {}, hp, readout=False)
    readout = pooling_kwargs("gnp", {}, hp, readout=True)
    assert aggr["p"] == [1.0] * 6 + [-1.0] * 2 == aggr["p_neg"]
    assert aggr["q_neg"] == 0.5 and "q" not in aggr and readout["q"] == 1.0
    module = GNPAggregation(**readout)
    assert (module.p < 0).sum() == 2
    assert pooling_kwargs("max", {"x": 1}, hp, readout=True) == {"x": 1}
    with pytest.raises(ValueError, match="gnp_negative_share must be in"):
        pooling_kwargs("gnp", {}, HParams(gnp_negative_share=2.0), readout=False)


def test_gnp_p_spread_makes_a_bank_of_poolings():
    hp = HParams(hidden=8, gnp_negative_share=0.25, gnp_p_spread=50.0)
    kwargs = pooling_kwargs("gnp", {}, hp, readout=False)
    assert kwargs["p"] == pytest.approx([1.0, 2.187, 4.782, 10.46, 22.87, 50.0, -1.0, -50.0],
                                        rel=1e-3)
    assert kwargs["p_neg"] == kwargs["p"]
    module = GNPAggregation(**kwargs)
    torch.testing.assert_close(module.p, torch.tensor(kwargs["p"]), rtol=1e-4, atol=0)
    assert pooling_kwargs("gnp", {}, HParams(hidden=2, gnp_p_spread=4.0), False)["p"] == \
        pytest.approx([1, 4])
    with pytest.raises(ValueError, match="hyperparameter gnp_p_spread must be > 0, got 0.0"):
        HParams(hidden=4, gnp_p_spread=0.0)


def test_pooling_exponents_get_their_own_group():
    info = task_info("max_degree")
    config = {c.name: c for c in default_configs("graph", "sum")}["gnp"]
    model = build_model(info, config, HParams(hidden=8, layers=2))
    opt = make_optimizer(model, HParams(lr=0.01, pool_lr=0.1))
    rest, pool = opt.param_groups
    assert pool["lr"] == 0.1 and pool["weight_decay"] == 0.0 and rest["lr"] == 0.01
    assert len(pool["params"]) == 3 * 4                 # 2 layers + readout, 4 each
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == total


@pytest.mark.parametrize("name, per_module", [("laf", 2), ("genagg", 6)])
def test_baseline_pooling_parameters_get_the_pool_group(name, per_module):
    info = task_info("max_degree")
    config = {c.name: c for c in default_configs("graph", "sum")}[name]
    model = build_model(info, config, HParams(hidden=8, layers=2))
    rest, pool = make_optimizer(model, HParams(lr=0.01, pool_lr=0.1)).param_groups
    assert pool["lr"] == 0.1 and pool["weight_decay"] == 0.0
    modules = [m for m in model.modules() if type(m).__name__.lower().startswith(name)]
    assert len(modules) == 3                             # 2 layers + readout
    expected = {id(getattr(m, n)) for m in modules for n in m.pooling_parameter_names
                if getattr(m, n) is not None}
    assert {id(p) for p in pool["params"]} == expected and len(expected) == 3 * per_module
    # LAF's projection back to the hidden width is an ordinary layer.
    assert all(id(p) not in expected for p in rest["params"])


def test_node_outputs_are_masked_and_sized():
    torch.manual_seed(0)
    g = Data(x=torch.rand(4, 1), edge_index=torch.tensor([[0, 1, 1, 2, 2, 3],
                                                          [1, 0, 2, 1, 3, 2]]),
             y=torch.arange(1.0, 5.0), mask=torch.tensor([True, False, True, True]))
    batch = Batch.from_data_list([g, g])
    info = task_info("node_neighbour_max")
    model = build_model(info, PoolingConfig("max", "max", None, fixed=True), HParams(hidden=4))
    pred, target, size = outputs(model, batch, "node")
    assert pred.shape == target.shape == size.shape == (6,)
    assert target.tolist() == [1.0, 3.0, 4.0] * 2 and size.tolist() == [4] * 6


def test_run_trains_selects_and_reports(tmp_path):
    splits = load_splits("set_sum", root=tmp_path, progress=False, num_train=32, num_val=16,
                         num_test=16, train_sizes=(2, 5), extrap_sizes=(8, 12))
    info = splits["train"].info
    hp = HParams(hidden=8, epochs=3, batch_size=8, size_bins=2)
    config = PoolingConfig("gnp", None, "gnp")
    result = run(info, splits, config, hp, seed=0, progress=False)
    m = result["metrics"]
    assert 0 <= m["best_epoch"] <= 3 and len(result["history"]) == 3
    assert m["val_mse"] == pytest.approx(min([m["val_mse"], *result["history"]]))
    for key in ("mape_val", "mape_interp", "mape_extrap"):
        assert math.isfinite(m[key]) and m[key] >= 0
    assert [b["lo"] for b in result["bins"]["extrap"]][0] >= 8
    (gnp,) = result["gnp"]
    assert gnp["name"] == "pooling" and len(gnp["p_unit"]) == len(gnp["p_unit_init"]) == 8
    assert gnp["p_unit_init"] == [0.5] * 8 and gnp["beta_init"] == [0.0] * 8    # mean
    again = run(info, splits, config, hp, seed=0, progress=False)
    assert again["metrics"] == m                         # seeded: reproducible


def test_epoch_bar_counts_every_epoch_next_to_its_losses(tmp_path, capsys):
    splits = load_splits("set_sum", root=tmp_path, progress=False, num_train=16, num_val=8,
                         num_test=8, train_sizes=(2, 5), extrap_sizes=(8, 12))
    hp = HParams(hidden=4, epochs=4, batch_size=8, size_bins=2)
    result = run(splits["train"].info, splits, PoolingConfig("sum", None, "sum"), hp, seed=0,
                 desc="bar", progress=True)
    err = capsys.readouterr().err
    # Every redraw that shows a validation loss counts the epochs that produced it.
    drawn = [m.groups() for line in re.split(r"[\r\n]", err)
             if (m := re.search(r"^bar:.*\| (\d+)/4 \[.*val=([0-9.e+-]+)\]", line))]
    history = [f"{v:.3g}" for v in result["history"]]
    assert [(int(n), v) for n, v in drawn] == [(e + 1, history[e]) for e in range(4)]


def test_size_shift_trains_pooling_on_the_largest_samples_only(tmp_path):
    from gnpool.bench.train import _split_by_size, fit
    from gnpool.models import DeepSets

    splits = load_splits("set_max", root=tmp_path, progress=False, num_train=40, num_val=8,
                         num_test=8, train_sizes=(2, 12), extrap_sizes=(20, 30))
    small, large = _split_by_size(splits["train"], 0.25)
    assert len(large) == 10 and len(small) == 30
    assert min(d.num_nodes for d in large) >= max(d.num_nodes for d in small)
    seen: list[int] = []

    class Watched(DeepSets):
        def forward(self, x, index=None, ptr=None, dim_size=None):
            if self.training:
                seen.append(int(x.size(0)))
            return super().forward(x, index, ptr, dim_size)

    torch.manual_seed(0)
    model = Watched(1, 1, 8, "gnp")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # Weights at lr 0: only the pooling parameters move, and only from the large batches.
    hp = HParams(hidden=8, epochs=1, batch_size=10, lr=1e-12, pool_lr=0.1, pool_split=0.25)
    fit(model, splits["train"], splits["val"], "set", hp, seed=0, progress=False)
    assert len(seen) == 6        # 3 batches of small samples, each followed by a large one
    large_total = sum(d.num_nodes for d in large)
    assert seen[1::2] == [large_total] * 3 and sum(seen[0::2]) == sum(d.num_nodes for d in small)
    assert not torch.equal(model.pooling.p_unit.detach(), before["pooling.p_unit"])
    assert torch.allclose(model.encoder.linears[0].weight, before["encoder.linears.0.weight"])


def test_snap_fixes_near_classic_poolings_and_checks_validation(tmp_path):
    from gnpool.bench.train import fit
    from gnpool.models import DeepSets

    splits = load_splits("set_max", root=tmp_path, progress=False, num_train=64, num_val=32,
                         num_test=8, train_sizes=(2, 12), extrap_sizes=(20, 30))
    torch.manual_seed(0)
    # Started next to max (p = 400, q = 1): the last half of the epochs run with exactly max.
    model = DeepSets(1, 1, 8, "gnp", pooling_kwargs={"p": 400.0, "q": 1.0, "p_neg": -400.0})
    hp = HParams(hidden=8, epochs=4, batch_size=16, pool_lr=1e-4, snap=0.5)
    record = fit(model, splits["train"], splits["val"], "set", hp, seed=0, progress=False)
    snap = record["snap"]
    # Channels that are 0 on every validation input (dead) are left as they are.
    names = snap["modules"]["pooling"]
    assert snap["epoch"] == 2 and set(names) <= {"max", "none"} and "max" in names
    assert snap["kept"] == (snap["val_mse_after"] <= 1.05 * snap["val_mse_before"])
    if snap["kept"]:
        live = torch.tensor([n == "max" for n in names])
        assert bool((model.pooling.p_unit[live] == 1).all())
        assert bool((model.pooling.beta[live] == 0).all())
        assert record["val_mse"] == snap["val_mse_after"]
    # Nothing near a classic pooling: nothing snaps, training runs as without snap.
    model = DeepSets(1, 1, 8, "gnp", pooling_kwargs={"p": 1.0, "q": 0.4})
    assert fit(model, splits["train"], splits["val"], "set", hp, seed=0,
               progress=False)["snap"] is None


def _small_set_max_with_gnp(tmp_path):
    # A few small sets of set_max and a DeepSets with one shared GNP started at the mean,
    # fed signed inputs (as the benchmark's recipe).
    from gnpool.models import DeepSets

    splits = load_splits("set_max", root=tmp_path, progress=False, num_train=64, num_val=32,
                         num_test=8, train_sizes=(2, 12), extrap_sizes=(20, 30))
    torch.manual_seed(0)
    return splits, DeepSets(1, 1, 8, "gnp", pooling_kwargs={"channels": 1, "p": 1.0, "q": 1.0},
                            last_activation=False)


def test_pool_prior_ends_every_gnp_part_at_a_classic_point(tmp_path):
    from gnpool.bench.train import fit
    from gnpool.training.snap import PART_CLASSICS

    splits, model = _small_set_max_with_gnp(tmp_path)
    # A strong prior and a fast pooling learning rate: by the snap epoch every part is
    # within reach of a classic point and is fixed exactly at it.
    hp = HParams(hidden=8, epochs=6, batch_size=16, pool_lr=0.1, snap=0.34, pool_prior=100.0,
                 last_activation=False)
    record = fit(model, splits["train"], splits["val"], "set", hp, seed=0, progress=False)
    snap = record["snap"]
    assert snap is not None and snap["epoch"] == 4
    (pair,) = snap["modules"]["pooling"]
    assert "none" not in pair
    if snap["kept"]:
        points = {tuple(round(v, 6) for v in c) for c in PART_CLASSICS.values()}
        pos = (float(model.pooling.p_unit), float(model.pooling.beta))
        neg = (float(model.pooling.p_neg_unit), float(model.pooling.beta_neg))
        assert pos in points and neg in points


def test_snap_search_chooses_by_validation_and_records_every_candidate(tmp_path):
    from gnpool.aggr.gnp import COMPARED
    from gnpool.bench.train import fit

    splits, model = _small_set_max_with_gnp(tmp_path)
    hp = HParams(hidden=8, epochs=4, batch_size=16, snap=0.5, snap_search=1,
                 last_activation=False)
    record = fit(model, splits["train"], splits["val"], "set", hp, seed=0, progress=False)
    search = record["snap"]["search"]["pooling"]
    assert set(search) == {"none", *COMPARED}
    assert all(v is not None and v > 0 for v in search.values())
    best_classic = min(COMPARED, key=search.get)
    expected = best_classic if search[best_classic] <= 1.05 * search["none"] else None
    assert record["snap"]["modules"].get("pooling") == ([expected] if expected else None)
    if expected is not None and record["snap"]["kept"]:
        assert model.pooling.closest_pooling(1e-6) == expected
    assert len(record["history"]) == hp.epochs


def test_snap_parts_fixes_a_residual_size_exponent_next_to_max(tmp_path):
    from gnpool.bench.train import fit
    from gnpool.models import DeepSets

    splits = load_splits("set_max", root=tmp_path, progress=False, num_train=64, num_val=32,
                         num_test=8, train_sizes=(2, 12), extrap_sizes=(20, 30))
    torch.manual_seed(0)
    # Max with n^0.04 (p_unit 1, beta 0.04): 0.1 from max in (p_unit, beta), but more than
    # 0.1 relative output error at 12 elements, so only the part-wise snap fixes it.
    model = DeepSets(1, 1, 8, "gnp", pooling_kwargs={"channels": 1, "p": float("inf"),
                                                      "q": 1.0, "p_neg": -float("inf")},
                     last_activation=False)
    with torch.no_grad():
        model.pooling.beta.fill_(0.04)
    hp = HParams(hidden=8, epochs=2, batch_size=16, pool_lr=1e-6, snap=0.5, snap_parts=True,
                 last_activation=False)
    record = fit(model, splits["train"], splits["val"], "set", hp, seed=0, progress=False)
    assert record["snap"]["modules"]["pooling"] == [["max", "min"]]
    if record["snap"]["kept"]:
        assert model.pooling.closest_pooling(1e-9) == "max"


def _retrain(tmp_path, **settings):
    from gnpool.bench.train import search_and_retrain

    splits, _ = _small_set_max_with_gnp(tmp_path)
    info = task_info("set_max", train_sizes=(2, 12), extrap_sizes=(20, 30))
    config = PoolingConfig("gnp", None, "gnp",
                           readout_kwargs={"channels": 1, "p": 1.0, "q": 1.0})
    hp = HParams(hidden=8, epochs=4, batch_size=16, last_activation=False, **settings)
    torch.manual_seed(0)
    model = build_model(info, config, hp)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    kept, record = search_and_retrain(info, config, hp, model, splits, seed=0, progress=False)
    return hp, model, initial, kept, record


def test_retrain_freezes_the_searched_pooling_at_classic_points_and_trains_the_weights_again(
        tmp_path):
    from gnpool.training.snap import PART_CLASSICS

    hp, searched, initial, kept, record = _retrain(tmp_path, retrain=0.5)
    info = record["retrain"]
    assert info["search_epochs"] == 2
    assert record["epochs"] == 2 + hp.epochs and len(record["history"]) == 2 + hp.epochs
    (pair,) = info["snapped"]["pooling"]
    assert "none" not in pair      # no tolerance: every part is set to its nearest point
    # With this seed the retrain does better on validation and is kept.
    assert info["kept"] and info["val_mse_retrain"] <= 1.05 * info["val_mse_search"]
    assert kept is not searched and record["val_mse"] == info["val_mse_retrain"]
    gnp = kept.pooling
    assert (float(gnp.p_unit), float(gnp.beta)) == PART_CLASSICS[pair[0]]
    assert (float(gnp.p_neg_unit), float(gnp.beta_neg)) == PART_CLASSICS[pair[1]]
    assert not any(p.requires_grad for p in gnp.parameters())
    # The other weights trained again from the run's initialisation, not on from the
    # searched ones; the searched model is left as it trained, not as snapped.
    name = "encoder.linears.0.weight"
    assert not torch.equal(kept.state_dict()[name], initial[name])
    assert not torch.equal(kept.state_dict()[name], searched.state_dict()[name])
    assert float(searched.pooling.p_unit) not in (v[0] for v in PART_CLASSICS.values())


def test_retrain_worse_on_validation_keeps_the_searched_model(tmp_path, monkeypatch):
    from gnpool.bench import train

    fit, calls = train.fit, []

    def worse_retrain(*args, **kwargs):
        record = fit(*args, **kwargs)
        calls.append(record)
        if len(calls) == 2:     # the retrain
            record = {**record, "val_mse": math.inf}
        return record

    monkeypatch.setattr(train, "fit", worse_retrain)
    hp, searched, _, kept, record = _retrain(tmp_path, retrain=0.5)
    assert len(calls) == 2 and not record["retrain"]["kept"]
    assert kept is searched and record["val_mse"] == calls[0]["val_mse"]
    assert record["best_epoch"] == calls[0]["best_epoch"]
    assert all(p.requires_grad for p in searched.pooling.parameters())


def test_retrain_tolerance_leaves_far_parts_as_searched_and_the_activation_can_change(
        tmp_path):
    _, searched, _, kept, record = _retrain(tmp_path, retrain=0.5, retrain_tolerance=0.0,
                                            retrain_last_activation=True)
    info = record["retrain"]
    # No part of this search ends exactly at a classic point, so tolerance 0 snaps nothing
    # and the retrained model gets the searched parameters as they are, frozen.
    assert info["snapped"] == {} and info["kept"]
    for name in ("p_unit", "beta", "p_neg_unit", "beta_neg"):
        assert torch.equal(getattr(kept.pooling, name), getattr(searched.pooling, name))
        assert not getattr(kept.pooling, name).requires_grad
    assert kept.encoder.last_activation is True
    assert searched.encoder.last_activation is False


def test_retrain_skips_models_without_a_learnable_pooling(tmp_path):
    splits, _ = _small_set_max_with_gnp(tmp_path)
    info = task_info("set_max", train_sizes=(2, 12), extrap_sizes=(20, 30))
    config = PoolingConfig("max", None, "max")
    hp = HParams(hidden=8, epochs=2, batch_size=16, retrain=1.0)
    result = run(info, splits, config, hp, seed=0, progress=False)
    # Nothing to search: the fixed model trains once, for its own epochs.
    assert result["metrics"]["epochs"] == 2 and len(result["history"]) == 2


def test_retrain_settings_need_retrain():
    with pytest.raises(ValueError, match=r"retrain_tolerance=0.2 apply only with retrain > 0"):
        HParams(retrain_tolerance=0.2)
    with pytest.raises(ValueError, match=r"s retrain_last_activation=True apply only"):
        HParams(retrain_last_activation=True)
    with pytest.raises(ValueError, match=r"retrain must be in \[0, 4\]"):
        HParams(retrain=4.5)
    assert HParams(retrain=2).retrain == 2.0      # a search twice the retrain's epochs
    assert "retrain" not in HParams().key() and HParams(retrain=0.5).key()["retrain"] == 0.5


def test_head_parts_sets_parts_where_they_were_heading():
    import copy

    from gnpool.bench.train import head_parts_

    model = torch.nn.ModuleDict({"readout": GNPAggregation(channels=4)})      # at the mean
    start = copy.deepcopy(model.state_dict())
    gnp = model["readout"]
    with torch.no_grad():
        # towards max; towards sum; towards min; not within 45 degrees of any classic point
        gnp.p_unit.copy_(torch.tensor([0.61, 0.55, 0.3, 0.5]))
        gnp.beta.copy_(torch.tensor([0.02, 0.3, 0.0, -0.15]))
        # moved less than the travel; past the midpoint (nearest is max already); as started
        gnp.p_neg_unit.copy_(torch.tensor([0.54, 0.8, 0.5, 0.5]))
        gnp.beta_neg.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0]))
    headed = head_parts_(model, start, travel=0.1)
    assert headed == {"readout": [["max", "none"], ["sum", "none"], ["min", "none"],
                                  ["none", "none"]]}
    assert gnp.p_unit.tolist() == [1.0, 0.5, -1.0, 0.5]
    assert gnp.beta.tolist() == [0.0, 1.0, 0.0, pytest.approx(-0.15)]
    assert gnp.p_neg_unit.tolist() == [pytest.approx(0.54), pytest.approx(0.8), 0.5, 0.5]
    # Heading only for max and min: the part heading for sum goes back to the mean.
    with torch.no_grad():
        gnp.p_unit.copy_(torch.tensor([0.61, 0.55, 0.3, 0.5]))
        gnp.beta.copy_(torch.tensor([0.02, 0.3, 0.0, -0.15]))
    assert head_parts_(model, start, travel=0.1, targets=("max", "min")) == {
        "readout": [["max", "none"], ["none", "none"], ["min", "none"], ["none", "none"]]}
    assert gnp.p_unit.tolist()[:3] == [1.0, pytest.approx(0.55), -1.0]
    # A larger travel leaves every part as it is.
    with torch.no_grad():
        gnp.p_unit.copy_(torch.tensor([0.61, 0.55, 0.3, 0.5]))
        gnp.beta.copy_(torch.tensor([0.02, 0.3, 0.0, -0.15]))
    assert head_parts_(model, start, travel=0.35) == {}


def test_retrain_heading_is_recorded_and_needs_retrain(tmp_path):
    from gnpool.training.snap import PART_CLASSICS

    _, searched, _, kept, record = _retrain(tmp_path, retrain=0.5, retrain_heading=0.0)
    info = record["retrain"]
    # This seed's 2-epoch search moves both parts a little from the mean (0.5, 0): the
    # positive one to (0.58, 0.013), towards max, the negative one to (0.47, 0.051),
    # towards sum. Both are still nearest the mean, and are set where they headed.
    assert float(searched.pooling.p_unit.detach()) == pytest.approx(0.58, abs=0.01)
    assert float(searched.pooling.beta_neg.detach()) == pytest.approx(0.051, abs=0.01)
    assert info["headed"] == {"pooling": [["max", "sum"]]}
    assert info["snapped"] == {"pooling": [["max", "sum"]]} and info["kept"]
    assert (float(kept.pooling.p_unit), float(kept.pooling.beta)) == PART_CLASSICS["max"]
    assert ((float(kept.pooling.p_neg_unit), float(kept.pooling.beta_neg))
            == PART_CLASSICS["sum"])
    with pytest.raises(ValueError, match=r"retrain_heading_exponent=True applies only with "
                                         r"retrain_heading"):
        HParams(retrain=1.0, retrain_heading_exponent=True)
    with pytest.raises(ValueError, match=r"retrain_heading=0.1 apply only with retrain > 0"):
        HParams(retrain_heading=0.1)
    with pytest.raises(ValueError, match=r"retrain_heading must be >= 0"):
        HParams(retrain=1.0, retrain_heading=-0.1)
    assert "retrain_heading" not in HParams(retrain=1.0).key()
    assert "retrain_heading_exponent" not in HParams(retrain=1.0).key()


def test_retrain_heading_for_max_or_min_only(tmp_path):
    _, _, _, kept, record = _retrain(tmp_path, retrain=0.5, retrain_heading=0.0,
                                     retrain_heading_exponent=True)
    info = record["retrain"]
    # The same search as above: the positive part heads for max; the negative one, which
    # headed for sum, goes back to its nearest classic point, the mean.
    assert info["headed"] == {"pooling": [["max", "none"]]}
    assert info["snapped"] == {"pooling": [["max", "mean"]]}


def test_retrain_whole_sets_the_classic_pooling_of_x_nearest_on_validation(tmp_path):
    from torch_geometric.nn import aggr

    from gnpool.bench.train import predict
    from gnpool.training.snap import PART_CLASSICS

    hp, searched, _, kept, record = _retrain(tmp_path, retrain=0.5, retrain_whole=True)
    splits, _ = _small_set_max_with_gnp(tmp_path)
    info = record["retrain"]
    (choice,) = info["whole"]["pooling"]
    # The parts of the chosen pooling of x: (max, min) for max, (min, max) for min.
    parts = {"sum": ["sum", "sum"], "mean": ["mean", "mean"], "max": ["max", "min"],
             "min": ["min", "max"]}[choice]
    assert info["snapped"] == {"pooling": [parts]}
    gnp = kept.pooling
    assert (float(gnp.p_unit), float(gnp.beta)) == PART_CLASSICS[parts[0]]
    assert (float(gnp.p_neg_unit), float(gnp.beta_neg)) == PART_CLASSICS[parts[1]]
    # The choice is the PyG aggregation whose output is nearest the searched GNP's on the
    # validation inputs it receives (relative mean absolute difference).
    seen = []
    handle = searched.pooling.register_forward_hook(
        lambda _m, args, kwargs, out: seen.append((args[0], kwargs["index"], out.detach())),
        with_kwargs=True)
    try:
        predict(searched, splits["val"], "set", hp.eval_batch_size)
    finally:
        handle.remove()
    reference = {"sum": aggr.SumAggregation(), "mean": aggr.MeanAggregation(),
                 "max": aggr.MaxAggregation(), "min": aggr.MinAggregation()}
    distance = {}
    for name, pool in reference.items():
        err = size = 0.0
        for x, index, out in seen:
            expected = pool(x.double(), index, dim_size=out.size(0))
            err += float((out.double() - expected).abs().sum())
            size += float(expected.abs().sum())
        distance[name] = err / size
    assert choice == min(distance, key=distance.get)
    with pytest.raises(ValueError, match=r"retrain_whole=True applies only with retrain > 0"):
        HParams(retrain_whole=True)
    assert "retrain_whole" not in HParams(retrain=1.0).key()


def _set_max_with_one_gnp(tmp_path):
    # The small set_max splits, their task, and a GNP readout with one pooling at the mean.
    splits, _ = _small_set_max_with_gnp(tmp_path)
    info = task_info("set_max", train_sizes=(2, 12), extrap_sizes=(20, 30))
    return splits, info, PoolingConfig("gnp", None, "gnp",
                                       readout_kwargs={"channels": 1, "q": 1.0})


def test_select_channels_keeps_the_model_with_the_lower_validation_loss(tmp_path):
    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation=False)
    shared = run(info, splits, config, HParams(**base), seed=0, progress=False)
    per_channel = run(info, splits, config, HParams(**base, gnp_per_channel=True), seed=0,
                      progress=False)
    assert len(shared["gnp"][0]["p_unit"]) == 1 and len(per_channel["gnp"][0]["p_unit"]) == 8
    chosen = run(info, splits, config, HParams(**base, select_channels=True), seed=0,
                 progress=False)
    (module,) = chosen["gnp"]
    selection = module["selection"]
    # Both candidates are the runs above, trained again from the same seed.
    assert selection["val_mse_shared"] == shared["metrics"]["val_mse"]
    assert selection["val_mse_per_channel"] == per_channel["metrics"]["val_mse"]
    expected = (per_channel if selection["val_mse_per_channel"] < selection["val_mse_shared"]
                else shared)
    assert selection["kept"] == ("shared" if expected is shared else "per_channel")
    assert chosen["metrics"]["val_mse"] == expected["metrics"]["val_mse"]
    assert chosen["metrics"]["mape_extrap"] == expected["metrics"]["mape_extrap"]
    # Its validation MAPE, read off the kept model's candidate scores, is the one measured
    # on the model trained alone.
    assert chosen["candidates"]["models"][chosen["candidates"]["kept"]]["mape_val"] == (
        chosen["metrics"]["mape_val"])
    assert chosen["metrics"]["mape_val"] == expected["metrics"]["mape_val"]
    assert module["p_unit"] == expected["gnp"][0]["p_unit"]
    assert chosen["metrics"]["epochs"] == 6          # both candidates' epochs
    # A model without a learnable pooling trains once.
    fixed = run(info, splits, PoolingConfig("max", None, "max"),
                HParams(**base, select_channels=True), seed=0, progress=False)
    assert fixed["metrics"]["epochs"] == 3 and fixed["gnp"] == []
    with pytest.raises(ValueError, match="select_channels=True and gnp_per_channel=True"):
        HParams(select_channels=True, gnp_per_channel=True)
    assert "select_channels" not in HParams().key()
    assert "gnp_per_channel" not in HParams().key()


def test_retrain_select_activation_keeps_the_retrain_with_the_lower_validation_loss(tmp_path):
    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation=False, retrain=0.5)
    linear = run(info, splits, config, HParams(**base), seed=0, progress=False)
    relu = run(info, splits, config, HParams(**base, retrain_last_activation=True), seed=0,
               progress=False)
    both = run(info, splits, config, HParams(**base, retrain_select_activation=True), seed=0,
               progress=False)
    lin, rel, (module,) = linear["gnp"][0]["retrain"], relu["gnp"][0]["retrain"], both["gnp"]
    choice = module["retrain"]["last_activation"]
    # Both retrains are the separate runs' retrains: same search, same initialisation.
    assert choice["val_mse_linear"] == lin["val_mse_retrain"]
    assert choice["val_mse_relu"] == rel["val_mse_retrain"]
    assert module["retrain"]["val_mse_search"] == lin["val_mse_search"] == rel["val_mse_search"]
    assert lin["val_mse_retrain"] != rel["val_mse_retrain"]
    lower = "relu" if rel["val_mse_retrain"] < lin["val_mse_retrain"] else "linear"
    assert choice["kept"] == lower
    assert module["retrain"]["val_mse_retrain"] == min(lin["val_mse_retrain"],
                                                      rel["val_mse_retrain"])
    expected = relu if lower == "relu" else linear
    assert both["metrics"]["val_mse"] == expected["metrics"]["val_mse"]
    assert both["metrics"]["mape_extrap"] == expected["metrics"]["mape_extrap"]
    assert both["metrics"]["epochs"] == 2 + 2 * 3    # the search, then two retrains
    assert linear["gnp"][0]["retrain"]["last_activation"] is None
    # With select_channels the model with a pooling per channel retrains once.
    per_channel = run(info, splits, config,
                      HParams(**base, retrain_select_activation=True, select_channels=True),
                      seed=0, progress=False)
    assert per_channel["metrics"]["epochs"] == 8 + 2 + 3
    with pytest.raises(ValueError,
                       match=r"retrain_select_activation=True applies only with retrain > 0"):
        HParams(retrain_select_activation=True)
    assert "retrain_select_activation" not in HParams(retrain=1.0).key()


def test_softplus_search_feeds_gnp_positive_inputs_and_retrains_with_relu_second(tmp_path):
    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation="softplus", retrain=0.5)
    hp = HParams(**base)
    assert hp.key()["last_activation"] == "softplus"
    model = build_model(info, config, hp)
    assert model.encoder.ending == "softplus"
    x = torch.randn(50, info.num_node_features)
    assert bool((model.encoder(x) > 0).all())
    softplus = run(info, splits, config, hp, seed=0, progress=False)
    relu = run(info, splits, config, HParams(**base, retrain_last_activation=True), seed=0,
               progress=False)
    both = run(info, splits, config, HParams(**base, retrain_select_activation=True), seed=0,
               progress=False)
    choice = both["gnp"][0]["retrain"]["last_activation"]
    assert set(choice) == {"val_mse_softplus", "val_mse_relu", "kept"}
    assert choice["val_mse_softplus"] == softplus["gnp"][0]["retrain"]["val_mse_retrain"]
    assert choice["val_mse_relu"] == relu["gnp"][0]["retrain"]["val_mse_retrain"]
    lower = min(("softplus", "relu"), key=lambda end: choice[f"val_mse_{end}"])
    assert choice["kept"] == lower
    assert both["metrics"]["epochs"] == 2 + 2 * 3
    with pytest.raises(ValueError, match=r'last_activation must be true or false or '
                                         r'"softplus", got .tanh.'):
        HParams(**{**base, "last_activation": "tanh"})


def test_retrain_mirror_sets_the_parts_the_softplus_search_never_fed(tmp_path, monkeypatch):
    from gnpool.bench import train
    from gnpool.training import recipe
    from gnpool.training.snap import MIRROR, PART_CLASSICS

    monkeypatch.setattr(recipe, "SNAP_SLACK", math.inf)     # keep the retrained model
    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation="softplus", retrain=1.0,
                retrain_last_activation=False)
    models, records = {}, {}
    for mirror in (False, True):
        hp = HParams(**base, retrain_mirror=mirror)
        torch.manual_seed(0)
        model = build_model(info, config, hp)
        start = (float(model.pooling.p_neg_unit), float(model.pooling.beta_neg))
        models[mirror], records[mirror] = train.search_and_retrain(
            info, config, hp, model, splits, seed=0, progress=False)
    assert start == PART_CLASSICS["mean"]
    positive, negative = records[True]["retrain"]["snapped"]["pooling"][0]
    # Softplus outputs are positive: the search never fed the negative part, which stays
    # at its initial mean without the mirror and is set to its sibling's mirror with it.
    assert records[False]["retrain"]["snapped"] == records[True]["retrain"]["snapped"]
    assert negative == "mean" and records[False]["retrain"]["mirrored"] == {}
    plain = models[False].pooling
    assert (float(plain.p_neg_unit), float(plain.beta_neg)) == PART_CLASSICS["mean"]
    assert records[True]["retrain"]["mirrored"] == {"pooling": [["none", MIRROR[positive]]]}
    gnp = models[True].pooling
    assert records[True]["retrain"]["kept"] and not gnp.p_unit.requires_grad
    assert (float(gnp.p_neg_unit), float(gnp.beta_neg)) == PART_CLASSICS[MIRROR[positive]]
    assert gnp.closest_pooling(1e-6) == positive
    with pytest.raises(ValueError, match=r"retrain_mirror=True applies only with retrain > 0"):
        HParams(retrain_mirror=True)
    assert "retrain_mirror" not in HParams(retrain=1.0).key()


def test_retrain_mirror_passes_over_learnable_poolings_that_are_not_gnps(tmp_path):
    # PowerMean has a learnable exponent and no parts: the retrain runs without a mirror.
    splits, info, _ = _set_max_with_one_gnp(tmp_path)
    hp = HParams(hidden=8, epochs=2, batch_size=16, retrain=0.5, retrain_mirror=True)
    config = PoolingConfig("powermean", None, "powermean", readout_kwargs={"learn": True})
    result = run(info, splits, config, hp, seed=0,
                 progress=False)
    assert result["metrics"]["epochs"] == 1 + 2 and result["gnp"] == []


def _scores(val, large, tune=None):
    return {"val_mse": val, "val_mse_large": large, "mape_val": 1.0, "mape_val_large": 1.0,
            **({} if tune is None else {"mape_tune": tune})}


def test_choose_model_applies_the_retrain_slack_then_the_channels_rule():
    from gnpool.bench.train import SNAP_SLACK, choose_model

    one = {"search": _scores(1.0, 1.0), "linear": _scores(0.9, 3.0), "relu": _scores(0.8, 2.0)}
    assert choose_model(one, "val") == "relu"           # lowest validation loss
    assert choose_model(one, "val_large") == "search"   # both retrains > search * 1.05
    # The retrain is kept within SNAP_SLACK above the search, not beyond.
    near = {"search": _scores(1.0, 1.0), "linear": _scores(1 + SNAP_SLACK, 1.0)}
    far = {"search": _scores(1.0, 1.0), "linear": _scores(1 + 2 * SNAP_SLACK, 1.0)}
    assert choose_model(near) == "linear" and choose_model(far) == "search"
    # NaN never wins; a tie keeps the first retrain; a NaN retrain loses to the search.
    tie = {"search": _scores(5.0, 5.0), "linear": _scores(1.0, 1.0),
           "relu": _scores(1.0, math.nan)}
    assert choose_model(tie, "val") == "linear"
    broken = {"search": _scores(1.0, 1.0), "linear": _scores(math.nan, None)}
    assert choose_model(broken, "val") == "search" == choose_model(broken, "val_large")
    # ... and a finite loss beats a NaN one, an infinite search loss any finite retrain.
    nan_search = {"search": _scores(math.nan, math.nan), "linear": _scores(1.0, 1.0)}
    assert choose_model(nan_search) == "linear"
    inf_search = {"search": _scores(math.inf, math.inf), "linear": _scores(1e300, 1e300)}
    assert choose_model(inf_search) == "linear"
    assert choose_model({"shared/model": _scores(math.nan, 1.0),
                         "per_channel/model": _scores(2.0, 1.0)}) == "per_channel/model"
    both = {"shared/search": _scores(1.0, 1.0), "shared/linear": _scores(0.5, 4.0),
            "per_channel/search": _scores(0.6, 0.6), "per_channel/linear": _scores(0.4, 0.9)}
    assert choose_model(both, "val") == "per_channel/linear"     # 0.4 < 0.5
    # On the largest samples each model keeps its search (4.0 > 1.05 * 1.0 and
    # 0.9 > 1.05 * 0.6), and the per-channel one's 0.6 beats the shared one's 1.0.
    assert choose_model(both, "val_large") == "per_channel/search"
    assert choose_model({"shared/model": _scores(1.0, 2.0),
                         "per_channel/model": _scores(2.0, 1.0)}, "val") == "shared/model"
    with pytest.raises(ValueError, match=r"on='mse'; expected 'val' or 'val_large'"):
        choose_model(one, "mse")
    with pytest.raises(ValueError, match=r"need a 'search' entry"):
        choose_model({"linear": _scores(1, 1), "relu": _scores(1, 1)})
    with pytest.raises(ValueError, match=r"no model named 'per_channel/'"):
        choose_model({"shared/search": _scores(1, 1)})
    with pytest.raises(ValueError, match=r"no model named 'shared/'"):
        choose_model({"per_channel/search": _scores(1, 1), "per_channel/linear": None})
    with pytest.raises(ValueError, match=r"candidates must be a non-empty dict"):
        choose_model({})
    with pytest.raises(ValueError, match=r"candidates must be a non-empty dict"):
        choose_model(None)
    with pytest.raises(ValueError, match=r"candidates\['search'\] must be a dict of scores"):
        choose_model({"search": 1.0})
    with pytest.raises(ValueError, match=r"candidates\['search'\]\['val_mse'\] must be a "
                                         r"non-negative number \(a mean squared error\), NaN "
                                         r"or None, got '1.0'"):
        choose_model({"search": {"val_mse": "1.0"}})
    # A negative loss would turn the margins' divisions around.
    with pytest.raises(ValueError, match=r"candidates\['relu'\]\['val_mse_large'\] must be "
                                         r"a non-negative number .*, got -0.5"):
        choose_model({"search": _scores(1, 1), "relu": {"val_mse": 1.0,
                                                        "val_mse_large": -0.5}})
    assert choose_model({"search": _scores(1, 1), "relu": {"val_mse": math.nan}}) == "search"
    with pytest.raises(ValueError, match=r"a model named 'searchx'; expected names from"):
        choose_model({"search": _scores(1, 1), "searchx": _scores(1, 1)})
    with pytest.raises(ValueError, match=r"model named 3"):
        choose_model({3: _scores(1, 1)})
    with pytest.raises(ValueError, match=r"mix names with and without the prefixes"):
        choose_model({"search": _scores(1, 1), "shared/search": _scores(1, 1),
                      "per_channel/search": _scores(1, 1)})
    with pytest.raises(ValueError, match=r"'model' stands alone"):
        choose_model({"search": _scores(1, 1), "model": _scores(1, 1)})


def test_candidate_scores_measure_the_largest_third_and_leave_the_random_state(tmp_path):
    from gnpool.bench.train import LARGE_SHARE, candidate_scores, predict

    splits, info, config = _set_max_with_one_gnp(tmp_path)
    hp = HParams(hidden=8, epochs=1, batch_size=16)
    torch.manual_seed(0)
    model = build_model(info, config, hp)
    state = torch.random.get_rng_state()
    scores = candidate_scores(model, splits, info.level, 64, val_mse=0.5)
    assert torch.equal(state, torch.random.get_rng_state())
    pred, target, size = predict(model, splits["val"], info.level, 64)
    # An independent count: the ceil(n/3) targets of the largest sets, ties in split order.
    count = math.ceil(LARGE_SHARE * len(size))
    ranked = sorted(range(len(size)), key=lambda i: (-size[i], i))[:count]
    assert min(size[ranked]) >= max(np.delete(size, ranked))
    assert scores["val_mse"] == 0.5
    assert scores["val_mse_large"] == pytest.approx(np.mean((pred[ranked] - target[ranked]) ** 2))
    assert scores["mape_val"] == pytest.approx(mape(pred, target))
    assert scores["mape_val_large"] == pytest.approx(mape(pred[ranked], target[ranked]))
    # The ceil(n/3) targets largest in magnitude, ties in split order.
    high = sorted(range(len(target)), key=lambda i: (-abs(target[i]), i))[:count]
    assert min(abs(target[high])) >= max(abs(np.delete(target, high)))
    assert scores["val_mse_high"] == pytest.approx(np.mean((pred[high] - target[high]) ** 2))
    assert scores["mape_val_high"] == pytest.approx(mape(pred[high], target[high]))
    assert "mape_tune" not in scores
    with pytest.raises(ValueError, match=r"splits must have a 'val' split; got \['train'\]"):
        candidate_scores(model, {"train": splits["train"]}, info.level, 64, val_mse=0.5)
    with pytest.raises(ValueError, match=r"val_mse must be a number .*, got None"):
        candidate_scores(model, splits, info.level, 64, val_mse=None)
    tuned = candidate_scores(model, {**splits, "tune": splits["test_extrap"]}, info.level, 64,
                             val_mse=0.5)
    extrap = predict(model, splits["test_extrap"], info.level, 64)
    assert tuned["mape_tune"] == pytest.approx(mape(extrap[0], extrap[1]))


def test_select_on_val_large_keeps_the_model_best_on_the_largest_samples(tmp_path):
    from gnpool.bench.train import choose_model

    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation=False, retrain=0.5,
                retrain_select_activation=True, select_channels=True)
    runs = {on: run(info, splits, config, HParams(**base, select_on=on), seed=0,
                    progress=False) for on in ("val", "val_large")}
    models = runs["val"]["candidates"]["models"]
    assert set(models) == {"shared/search", "shared/linear", "shared/relu",
                           "per_channel/search", "per_channel/linear"}
    # Both runs train the same five models; each keeps what choose_model picks.
    assert runs["val_large"]["candidates"]["models"] == models
    for on, result in runs.items():
        kept = result["candidates"]["kept"]
        assert result["candidates"]["on"] == on and kept == choose_model(models, on)
        assert result["metrics"]["val_mse"] == models[kept]["val_mse"]
        assert result["gnp"][0]["selection"]["kept"] == kept.split("/")[0]
    # A fixed configuration trains one model and records none.
    fixed = run(info, splits, PoolingConfig("max", None, "max"), HParams(**base), seed=0,
                progress=False)
    assert fixed["candidates"] is None
    with pytest.raises(ValueError, match=r"select_on='val_large' applies only with retrain"):
        HParams(select_on="val_large")
    with pytest.raises(ValueError, match=r"select_on"):
        HParams(retrain=1.0, select_on="largest")
    assert "select_on" not in HParams(retrain=1.0).key()


def test_select_channels_retrain_false_leaves_out_the_per_channel_retrain(tmp_path,
                                                                         monkeypatch):
    from gnpool.bench import train
    from gnpool.bench.report import kept_model
    from gnpool.bench.train import choose_model

    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation=False, retrain=0.5,
                retrain_select_activation=True, select_channels=True)
    full, short = (run(info, splits, config, HParams(**base, select_channels_retrain=keep),
                       seed=0, progress=False) for keep in (True, False))
    models = full["candidates"]["models"]
    # Every other model trains as it did, to the bit; the run trains one retrain fewer.
    assert "per_channel/linear" in models
    assert short["candidates"]["models"] == {k: v for k, v in models.items()
                                             if k != "per_channel/linear"}
    assert short["candidates"]["kept"] == choose_model(short["candidates"]["models"], "val")
    assert full["metrics"]["epochs"] - short["metrics"]["epochs"] == base["epochs"]
    # Kept, the per-channel search is the model evaluated, recorded as a search.
    original = train.choose_model

    def keep_per_channel_search(candidates, *args):
        return ("per_channel/search" if "per_channel/search" in candidates
                else original(candidates, *args))

    monkeypatch.setattr(train, "choose_model", keep_per_channel_search)
    kept = run(info, splits, config, HParams(**base, select_channels_retrain=False), seed=0,
               progress=False)
    assert kept["metrics"]["val_mse"] == models["per_channel/search"]["val_mse"]
    assert kept["metrics"]["mape_val"] == models["per_channel/search"]["mape_val"]
    (module,) = kept["gnp"]
    assert len(module["p_unit"]) == base["hidden"] and module["retrain"]["kept"] is False
    assert module["retrain"]["val_mse_retrain"] is None
    row = {"gnp": kept["gnp"], "hparams": HParams(**base).to_dict()}
    assert kept_model(row) == "one per channel, search (linear-ended)"
    # A search that trains again (search_refit_r2) counts both searches' epochs.
    monkeypatch.setattr(train, "choose_model", original)
    refit = run(info, splits, config, HParams(**base, select_channels_retrain=False,
                                              search_refit_r2=1.0), seed=0, progress=False)
    (module,) = refit["gnp"]
    search_epochs = module["retrain"]["search_epochs"]
    assert "val_mse_relu" in module["retrain"]["search_refit"]
    assert refit["metrics"]["epochs"] == short["metrics"]["epochs"] + 2 * search_epochs
    with pytest.raises(ValueError, match=r"select_channels_retrain=False applies only with "
                                         r"select_channels=True and retrain > 0"):
        HParams(retrain=1.0, select_channels_retrain=False)
    with pytest.raises(ValueError, match=r"select_channels_retrain=False"):
        HParams(select_channels=True, select_channels_retrain=False)
    assert "select_channels_retrain" not in HParams(retrain=1.0).key()


def test_choose_model_relu_margin_keeps_the_relu_retrain_unless_another_is_that_much_lower():
    from gnpool.bench.train import choose_model

    def scores(v):
        return {"val_mse": v, "val_mse_large": v}

    models = {"shared/search": scores(5.0), "shared/linear": scores(0.03),
              "shared/relu": scores(0.10), "per_channel/search": scores(5.0),
              "per_channel/linear": scores(0.07)}
    assert choose_model(models, "val") == "shared/linear"
    # ReLU read as 0.10 / 2 = 0.05: the linear retrain (0.03) and so the shared model
    # still win, and the per-channel model (0.07) does not beat the shared one.
    assert choose_model(models, "val", relu_margin=2) == "shared/linear"
    # 0.10 / 5 = 0.02: the ReLU-ended retrain is kept over the linear one and the
    # per-channel model, whose 0.07 is not below a fifth of its 0.10.
    assert choose_model(models, "val", relu_margin=5) == "shared/relu"
    assert choose_model(models, "val_large", relu_margin=5.0) == "shared/relu"
    # A per-channel model below a fifth of the ReLU retrain's loss still wins.
    lower = {**models, "per_channel/linear": scores(0.019)}
    assert choose_model(lower, "val", relu_margin=5) == "per_channel/linear"
    # Against its search the ReLU retrain's loss is read the same way.
    unprefixed = {"search": scores(0.3), "linear": scores(0.2), "relu": scores(0.9)}
    assert choose_model(unprefixed, "val", relu_margin=1) == "linear"
    assert choose_model(unprefixed, "val", relu_margin=10) == "relu"
    assert choose_model(unprefixed, "val", relu_margin=2) == "linear"
    # The caller's dict is left as it was.
    assert models["shared/relu"] == scores(0.10)
    for bad in (0.5, 0, -1, True, "5", math.nan):
        with pytest.raises(ValueError, match=r"relu_margin must be a number >= 1, got"):
            choose_model(models, "val", relu_margin=bad)


def test_select_relu_margin_is_checked_and_keeps_what_choose_model_picks(tmp_path):
    from gnpool.bench.train import choose_model

    with pytest.raises(ValueError, match=r"select_relu_margin=5.0 applies only with "
                                         r"retrain_select_activation=True"):
        HParams(retrain=1.0, select_relu_margin=5.0)
    with pytest.raises(ValueError, match=r"select_relu_margin"):
        HParams(retrain=1.0, retrain_select_activation=True, select_relu_margin=0.5)
    assert "select_relu_margin" not in HParams(retrain=1.0).key()
    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation=False, retrain=0.5,
                retrain_select_activation=True, select_channels=True)
    for margin in (1.0, 1000.0):
        result = run(info, splits, config, HParams(**base, select_relu_margin=margin),
                     seed=0, progress=False)
        models, kept = result["candidates"]["models"], result["candidates"]["kept"]
        assert kept == choose_model(models, "val", margin)
        assert result["metrics"]["val_mse"] == models[kept]["val_mse"]
        if margin == 1000.0:
            assert kept == "shared/relu"


def test_candidate_scores_high_targets_are_the_largest_in_magnitude(monkeypatch):
    # Signed targets: the third largest in magnitude includes the most negative ones.
    import gnpool.bench.train as train

    target = np.array([-9.0, 1.0, 2.0, -0.5, 8.0, 0.1])
    pred = target + np.array([1.0, 0.0, 0.0, 0.0, 3.0, 0.0])
    size = np.array([1.0, 6.0, 5.0, 4.0, 2.0, 3.0])
    monkeypatch.setattr(train, "predict", lambda *args: (pred, target, size))
    scores = train.candidate_scores(torch.nn.Linear(1, 1), {"val": None}, "set", 8, 0.5)
    # Magnitudes 9 and 8 (rows 0 and 4): errors 1 and 3.
    assert scores["val_mse_high"] == pytest.approx((1.0 + 9.0) / 2)
    assert scores["mape_val_high"] == pytest.approx(100 * (1 / 9 + 3 / 8) / 2)
    # The largest samples (sizes 6 and 5: rows 1 and 2) are exact.
    assert scores["val_mse_large"] == 0.0


def test_conjugate_sets_are_every_combination_of_the_modules_conjugation_changes():
    from gnpool.bench.train import MAX_CONJUGATED_MODULES, conjugate_sets

    model = torch.nn.ModuleDict({"a": GNPAggregation.from_pooling("max"),
                                 "b": GNPAggregation.from_pooling("mean"),
                                 "c": GNPAggregation.from_pooling("min", channels=2),
                                 "d": GNPAggregation.from_pooling("max", learn=False)})
    # b is its own conjugate, d is not learnable.
    assert conjugate_sets(model) == [("a",), ("c",), ("a", "c")]
    # A channel that differs is enough; p_unit is read clamped into [-1, 1].
    with torch.no_grad():
        model["b"].p_unit[0] = 0.25
    assert len(conjugate_sets(model)) == 7
    with torch.no_grad():
        model["b"].p_unit[0] = 0.5
        model["a"].p_unit[0], model["a"].p_neg_unit[0] = 3.0, 1.0
        model["a"].beta[0] = model["a"].beta_neg[0] = 0.0
    assert conjugate_sets(model) == [("c",)]
    many = torch.nn.ModuleList(GNPAggregation.from_pooling("max")
                               for _ in range(MAX_CONJUGATED_MODULES + 1))
    with pytest.raises(ValueError, match=r"conjugates need at most 3 learnable "
                                         r"GNP modules, this model has 4 \(0, 1, 2, 3\)"):
        conjugate_sets(many)
    assert conjugate_sets(torch.nn.Linear(2, 2)) == []
    # search_and_retrain says so before the search trains, whatever the poolings.
    from gnpool.bench import train

    means = torch.nn.ModuleList(GNPAggregation() for _ in range(MAX_CONJUGATED_MODULES + 1))
    with pytest.raises(ValueError, match=r"retrain_conjugates=True needs at most 3 learnable "
                                         r"GNP modules, this model has 4 \(0, 1, 2, 3\): "
                                         r"set gnp_share_aggr=True"):
        train.search_and_retrain(None, None, HParams(retrain=1.0, retrain_select_activation=True,
                                                     retrain_conjugates=True),
                                 means, {}, seed=0, progress=False)


def test_choose_model_reads_conjugate_retrains_as_relu_ended():
    from gnpool.bench.train import choose_model

    def scores(v):
        return {"val_mse": v, "val_mse_large": v}

    models = {"search": scores(1.0), "linear": scores(0.05), "relu": scores(0.4),
              "relu-conjugate-1": scores(0.2), "relu-conjugate-2": scores(0.3)}
    assert choose_model(models, "val") == "linear"
    # 0.2 / 5 = 0.04 < 0.05: the best ReLU-ended retrain, a conjugate, is kept.
    assert choose_model(models, "val", relu_margin=5) == "relu-conjugate-1"
    prefixed = {f"shared/{k}": v for k, v in models.items()}
    prefixed["per_channel/search"] = scores(0.06)
    assert choose_model(prefixed, "val", relu_margin=5) == "shared/relu-conjugate-1"
    for bad in ("relu-conjugate-0", "relu-conjugate-", "relu-conjugate-x", "linear-conjugate-1"):
        with pytest.raises(ValueError, match=rf"candidates has a model named '{bad}'"):
            choose_model({**models, bad: scores(0.1)}, "val")


def test_retrain_conjugates_retrains_the_sign_conjugate_relu_ended(tmp_path, monkeypatch):
    from gnpool.bench import train

    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=3, batch_size=16, last_activation="softplus", retrain=0.5,
                retrain_last_activation=False, retrain_select_activation=True)

    parts = {"min": ["min", "max"], "max": ["max", "min"]}

    def set_to(name):
        def snap(model, tolerance):      # the search's pooling set to the min (or max) of x
            model.pooling.snap_(name)
            return {"pooling": [parts[name]]}
        return snap

    results = {}
    for name, conjugates in (("min", False), ("min", True), ("max", False)):
        monkeypatch.setattr(train, "snap_parts_", set_to(name))
        results[name, conjugates] = run(info, splits, config,
                                        HParams(**base, retrain_conjugates=conjugates),
                                        seed=0, progress=False)
    both = results["min", True]
    models = both["candidates"]["models"]
    assert list(models) == ["search", "linear", "relu", "relu-conjugate-1"]
    plain = results["min", False]["candidates"]["models"]
    assert all(models[n] == plain[n] for n in plain)
    # The conjugate retrain is the ReLU-ended retrain of a search that ended at max.
    assert models["relu-conjugate-1"] == results["max", False]["candidates"]["models"]["relu"]
    kept = both["candidates"]["kept"]
    assert kept == train.choose_model(models, "val")
    assert both["metrics"]["epochs"] == 2 + 3 * 3
    assert both["gnp"][0]["retrain"]["conjugates"] == [["pooling"]]
    assert results["min", False]["gnp"][0]["retrain"]["conjugated"] is False
    assert results["min", False]["gnp"][0]["retrain"]["conjugates"] == []
    # The conjugate retrain kept (its validation loss scored as 0): the run's figures and
    # pooling are that retrain's, the pooling max where the search set min.
    scores = train.candidate_scores

    def conjugate_best(model, *args):
        out = scores(model, *args)
        gnp_ = model.pooling
        if not gnp_.p_unit.requires_grad and float(gnp_.p_unit) == 1.0:
            out = {**out, "val_mse": 0.0}
        return out

    monkeypatch.setattr(train, "candidate_scores", conjugate_best)
    monkeypatch.setattr(train, "snap_parts_", set_to("min"))
    forced = run(info, splits, config, HParams(**base, retrain_conjugates=True), seed=0,
                 progress=False)
    assert forced["candidates"]["kept"] == "relu-conjugate-1"
    assert forced["metrics"]["val_mse"] == models["relu-conjugate-1"]["val_mse"]
    assert forced["metrics"]["mape_val"] == models["relu-conjugate-1"]["mape_val"]
    record = forced["gnp"][0]
    assert record["retrain"]["conjugated"] is True
    assert record["p_unit"] == [1.0] and record["p_neg_unit"] == [-1.0]      # [max, min]
    from gnpool.bench.report import kept_model
    row = {"hparams": HParams(**base, retrain_conjugates=True).to_dict(), "gnp": [record]}
    assert kept_model(row) == "retrained ReLU-ended, sign conjugate of 1 of 1 GNPs"
    with pytest.raises(ValueError, match=r"retrain_conjugates=True applies only with "
                                         r"retrain_select_activation=True"):
        HParams(retrain=1.0, retrain_conjugates=True)
    assert "retrain_conjugates" not in HParams(retrain=1.0).key()


def test_flush_denormal_flushes_inside_and_restores_after(tmp_path, monkeypatch):
    from gnpool.bench.train import denormals_flushed, flush_denormal

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert not denormals_flushed() and float(tiny * 1.0) > 0
    with flush_denormal(True):
        assert denormals_flushed() and float(tiny * 1.0) == 0.0
        with flush_denormal(True):       # nested: the outer one restores
            pass
        assert denormals_flushed()
    assert not denormals_flushed()
    with pytest.raises(RuntimeError, match="inside"), flush_denormal(True):
        raise RuntimeError("inside")
    assert not denormals_flushed()
    with flush_denormal(False):
        assert not denormals_flushed()
    # A run with flush_denormal trains flushed, and leaves the state as it found it.
    from gnpool.bench import train

    splits, info, config = _set_max_with_one_gnp(tmp_path)
    seen = []
    fit = train.fit

    def watched(*args, **kwargs):
        seen.append(denormals_flushed())
        return fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", watched)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for flush in (True, False):
            hp = HParams(hidden=8, epochs=2, batch_size=16, flush_denormal=flush)
            result = run(info, splits, config, hp, seed=0, progress=False)
            assert math.isfinite(result["metrics"]["mape_extrap"]) and not denormals_flushed()
        torch.set_num_threads(2)
        with pytest.warns(UserWarning, match=r"calling thread only; torch runs 2 threads"), \
                flush_denormal(True):
            pass
    finally:
        torch.set_num_threads(threads)
    assert seen == [True, False]
    assert "flush_denormal" not in HParams().key()
    assert HParams(flush_denormal=True).key()["flush_denormal"] is True


def test_r_squared_is_one_minus_mse_over_the_targets_variance(tmp_path):
    from torch_geometric.loader import DataLoader

    from gnpool.bench.train import r_squared, scored_targets

    splits, info, _ = _set_max_with_one_gnp(tmp_path)
    y = np.concatenate([b.y.numpy().reshape(b.num_graphs, -1)
                        for b in DataLoader(splits["val"], batch_size=7)]).astype(np.float64)
    variance = float(np.mean(y.var(axis=0)))
    assert variance > 0
    assert r_squared(0.0, splits["val"], "set", 5) == 1.0
    assert r_squared(variance, splits["val"], "set", 5) == pytest.approx(0.0, abs=1e-12)
    assert r_squared(0.25 * variance, splits["val"], "set", 64) == pytest.approx(0.75)
    # A node task scores its masked nodes only, one variance per output channel.
    x = torch.tensor([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0], [9.0, 9.0]])
    graph = Data(x=x, y=x.clone(), mask=torch.tensor([True, True, True, False]),
                 edge_index=torch.empty(2, 0, dtype=torch.long))
    batch = Batch.from_data_list([graph])
    assert torch.equal(scored_targets(batch, "node"), x[:3])
    expected = 1 - 1.0 / float(np.mean(x[:3].double().numpy().var(axis=0)))
    assert r_squared(1.0, [graph], "node", 2) == pytest.approx(expected)


def test_search_refit_r2_searches_again_relu_ended_where_the_search_fitted_too_little(
        tmp_path):
    splits, info, config = _set_max_with_one_gnp(tmp_path)
    base = dict(hidden=8, epochs=4, batch_size=16, last_activation="softplus", retrain=0.5,
                retrain_last_activation=False)
    plain = run(info, splits, config, HParams(**base), seed=0, progress=False)
    relu = run(info, splits, config, HParams(**{**base, "last_activation": True}), seed=0,
               progress=False)
    # A threshold no search reaches: the search trains again ReLU-ended, from the same
    # initialisation, exactly as a ReLU-ended run's search.
    again = run(info, splits, config, HParams(**base, search_refit_r2=1.0), seed=0,
                progress=False)
    refit = again["gnp"][0]["retrain"]["search_refit"]
    first = plain["gnp"][0]["retrain"]["val_mse_search"]
    assert refit["val_mse_first"] == first
    assert refit["val_mse_relu"] == relu["gnp"][0]["retrain"]["val_mse_search"]
    assert refit["r2"] < 1.0
    assert refit["kept"] == ("relu" if refit["val_mse_relu"] < first else "first")
    kept_search = relu if refit["kept"] == "relu" else plain
    assert (again["gnp"][0]["retrain"]["val_mse_search"]
            == kept_search["gnp"][0]["retrain"]["val_mse_search"])
    assert again["metrics"]["epochs"] == plain["metrics"]["epochs"] + 2
    # A threshold every search passes: nothing trains again, the run is the plain one.
    never = run(info, splits, config, HParams(**base, search_refit_r2=-1e9), seed=0,
                progress=False)
    assert never["gnp"][0]["retrain"]["search_refit"] == {
        "r2": refit["r2"], "val_mse_first": first, "kept": "first"}
    assert never["metrics"]["mape_extrap"] == plain["metrics"]["mape_extrap"]
    assert plain["gnp"][0]["retrain"]["search_refit"] is None
    with pytest.raises(ValueError, match=r"search_refit_r2=0.5 applies only with retrain > 0"):
        HParams(search_refit_r2=0.5)
    with pytest.raises(ValueError, match=r"search_refit_r2 must be <= 1"):
        HParams(retrain=1.0, search_refit_r2=1.5)
    assert "search_refit_r2" not in HParams(retrain=1.0).key()


def _profiles_retrain(splits, info, config, **extra):
    # search_and_retrain with the profiles' retrain settings (small), from seed 0.
    from gnpool.bench import train

    hp = HParams(hidden=8, epochs=3, batch_size=16, last_activation="softplus", retrain=1.0,
                 retrain_last_activation=False, retrain_select_activation=True,
                 retrain_conjugates=True, select_relu_margin=5.0, retrain_mirror=True,
                 **extra)
    torch.manual_seed(0)
    return train.search_and_retrain(info, config, hp, build_model(info, config, hp), splits,
                                    seed=0, progress=False)


def test_retrain_first_ending_false_leaves_out_the_first_retrain(tmp_path):
    # The profiles' retrains but the linear-ended one of the model with one pooling per
    # GNP: the others train as they did, to the bit.
    data = _set_max_with_one_gnp(tmp_path)
    full, short = (_profiles_retrain(*data, retrain_first_ending=first)[1]["candidates"]
                   ["models"] for first in (True, False))
    assert "linear" in full and "linear" not in short
    assert short == {k: v for k, v in full.items() if k != "linear"}
    with pytest.raises(ValueError, match="retrain_first_ending=False applies only with "
                                         "retrain_select_activation=True"):
        HParams(retrain=1.0, retrain_first_ending=False)
    assert "retrain_first_ending" not in HParams(retrain=1.0).key()


def test_conjugate_margin_keeps_a_conjugate_out_unless_well_below_the_plain_relu(
        tmp_path, monkeypatch):
    from gnpool.bench import train
    from gnpool.training import choose_model

    # The search set to the min (its conjugate: max); the conjugate retrain scored at 0.6x
    # the plain ReLU-ended retrain's validation MSE, the linear-ended one at 10x.
    def to_min(model, tolerance):
        model.pooling.snap_("min")
        return {"pooling": [["min", "max"]]}

    scores, relu = train.candidate_scores, {}

    def scored(model, *args):
        out = scores(model, *args)
        gnp_ = model.pooling
        if gnp_.p_unit.requires_grad:
            return out
        if float(gnp_.p_unit) == 1.0:                      # the conjugate, at max
            return {**out, "val_mse": 0.6 * relu["val_mse"]}
        if model.encoder.ending == "relu":
            relu["val_mse"] = out["val_mse"]
            return out
        return {**out, "val_mse": 10 * out["val_mse"]}

    monkeypatch.setattr(train, "snap_parts_", to_min)
    monkeypatch.setattr(train, "candidate_scores", scored)
    data = _set_max_with_one_gnp(tmp_path)
    kept = {}
    for margin in (1.0, 2.0):
        _, record = _profiles_retrain(*data, conjugate_margin=margin)
        assert record["retrain"]["conjugates"] == [["pooling"]]
        models = record["candidates"]["models"]
        kept[margin] = record["candidates"]["kept"]
        assert kept[margin] == choose_model(models, "val", 5.0, margin)
        assert bool(record["retrain"]["conjugated"]) == (kept[margin] == "relu-conjugate-1")
    # 0.6x competes without a margin and wins; not below half the plain one's, it does not.
    assert kept == {1.0: "relu-conjugate-1", 2.0: "relu"}
    with pytest.raises(ValueError, match="conjugate_margin=2.0 applies only with "
                                         "retrain_conjugates=True"):
        HParams(retrain=1.0, conjugate_margin=2.0)
    assert "conjugate_margin" not in HParams(retrain=1.0).key()


def test_retrain_classic_r2_retrains_a_gnp_left_off_max_and_min_at_both(tmp_path, monkeypatch):
    from gnpool.bench import train
    from gnpool.training import choose_model

    def to(name):
        def snap(model, tolerance):      # the search's pooling set to `name` of x
            model.pooling.snap_(name)
            return {"pooling": [[name, name]]}
        return snap

    data = _set_max_with_one_gnp(tmp_path)
    monkeypatch.setattr(train, "snap_parts_", to("mean"))
    records = {r2: _profiles_retrain(*data, retrain_classic_r2=r2)[1]
               for r2 in (None, -1e9, 1.0)}
    plain, never, always = (records[r2]["candidates"]["models"] for r2 in (None, -1e9, 1.0))
    # Below the bound (R^2 < 1 always): a retrain at max and one at min, after the others,
    # which train as without the setting, to the bit; never below it: no more retrains.
    assert list(always) == list(plain) + ["relu-classic-1", "relu-classic-2"]
    assert never == plain and {k: always[k] for k in plain} == plain
    retrain = records[1.0]["retrain"]
    assert retrain["classic_ends"] == [[["pooling", "max"]], [["pooling", "min"]]]
    r2 = train.r_squared(min(plain[n]["val_mse"] for n in plain if n != "search"),
                         data[0]["val"], data[1].level, 256)
    assert retrain["classic_r2"] == r2 == records[-1e9]["retrain"]["classic_r2"]
    assert records[None]["retrain"]["classic_r2"] is None
    assert records[1.0]["candidates"]["kept"] == choose_model(always, "val", 5.0)
    assert records[1.0]["epochs"] == records[None]["epochs"] + 2 * 3
    # The classic-end retrain at max is the ReLU-ended retrain of a search set to max.
    monkeypatch.setattr(train, "snap_parts_", to("max"))
    at_max = _profiles_retrain(*data)[1]["candidates"]["models"]
    assert always["relu-classic-1"] == at_max["relu"]
    # The retrain at min kept (its validation loss scored as 0): the run's record and
    # report name it, and its pooling is the min of x.
    scores = train.candidate_scores

    def min_best(model, *args):
        out = scores(model, *args)
        if not model.pooling.p_unit.requires_grad and float(model.pooling.p_unit) == -1.0:
            out = {**out, "val_mse": 0.0}
        return out

    monkeypatch.setattr(train, "candidate_scores", min_best)
    monkeypatch.setattr(train, "snap_parts_", to("mean"))
    hp = HParams(hidden=8, epochs=3, batch_size=16, last_activation="softplus", retrain=1.0,
                 retrain_last_activation=False, retrain_select_activation=True,
                 retrain_conjugates=True, select_relu_margin=5.0, retrain_mirror=True,
                 retrain_classic_r2=1.0)
    forced = run(data[1], data[0], data[2], hp, seed=0, progress=False)
    assert forced["candidates"]["kept"] == "relu-classic-2"
    (module,) = forced["gnp"]
    assert module["retrain"]["classic_end"] == "min"
    assert module["retrain"]["classic_ends"] == retrain["classic_ends"]
    assert module["p_unit"] == [-1.0] and module["p_neg_unit"] == [1.0]      # [min, max]
    from gnpool.bench.report import _trained_pooling, kept_model
    row = {"hparams": hp.to_dict(), "gnp": [module]}
    assert kept_model(row) == ("retrained ReLU-ended, 1 of 1 GNPs set to max or min "
                               "(classic ends)")
    assert _trained_pooling(module) == "[min, max]"
    with pytest.raises(ValueError, match="retrain_classic_r2=0.9 applies only with "
                                         "retrain_conjugates=True"):
        HParams(retrain=1.0, retrain_select_activation=True, retrain_classic_r2=0.9)
    with pytest.raises(ValueError, match=r"retrain_classic_r2.*<= 1"):
        HParams(retrain=1.0, retrain_select_activation=True, retrain_conjugates=True,
                retrain_classic_r2=1.5)
    assert "retrain_classic_r2" not in HParams(retrain=1.0).key()
