"""gnpool.training.search_then_retrain: the benchmark's GNP recipe for any model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gnpool
from gnpool import GNPAggregation
from gnpool.models import DeepSets
from gnpool.training import choose_model, search_then_retrain


def _sets(size, gen, n=10):
    x = torch.randn(n * size, 1, generator=gen)
    return x, torch.arange(n * size) // size, x.view(n, size, 1).amax(dim=1)


def _build(ending):
    torch.manual_seed(0)
    return DeepSets(1, 1, 8, "gnp", pooling_kwargs={"channels": 1}, last_activation=ending)


def test_finds_max_and_extrapolates_tenfold():
    gen = torch.Generator().manual_seed(1)
    batches = [_sets(12, gen) for _ in range(120)]
    val = _sets(12, torch.Generator().manual_seed(3), 50)

    def train(model):
        optimizer = torch.optim.Adam(gnpool.param_groups(model, lr=1e-2, pool_lr=0.05))
        for x, index, y in batches:
            loss = torch.nn.functional.mse_loss(model(x, index), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return torch.nn.functional.mse_loss(model(*val[:2]), val[2]).item()

    model, record = search_then_retrain(_build, train, run=lambda m: m(*batches[0][:2]))
    # The softplus search ends nearest max, its idle negative part mirrors to min, and the
    # retrains (linear, ReLU, and ReLU at the conjugate, min) compete.
    assert record["snapped"] == {"pooling": [["max", "mean"]]}
    assert record["mirrored"] == {"pooling": [["none", "min"]]}
    assert record["conjugates"] == [["pooling"]]
    assert list(record["losses"]) == ["search", "linear", "relu", "relu-conjugate-1"]
    assert record["kept"] == choose_model(
        {k: {"val_mse": v} for k, v in record["losses"].items()}, "val", 5.0)
    assert record["kept"] != "search" and model.pooling.closest_pooling() == "max"
    assert not model.pooling.p_unit.requires_grad              # frozen at the classic point
    x, index, y = _sets(120, torch.Generator().manual_seed(2))
    with torch.no_grad():
        error = (model(x, index) - y).abs().mean().item()
    assert error < 0.05                                         # sets 10x the training size


class _Scripted:
    """A `train` that trains nothing: it returns the scripted loss of each call in turn and
    moves a learnable GNP's positive part to `p_unit` (what a search would do)."""

    def __init__(self, losses, p_unit=0.7):
        self.losses, self.p_unit, self.models = list(losses), p_unit, []

    def __call__(self, model):
        self.models.append(model)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, GNPAggregation) and module.p_unit.requires_grad:
                    module.p_unit.fill_(self.p_unit)
        return self.losses.pop(0)


def test_keeps_the_relu_retrain_within_its_margin_and_the_search_past_the_slack():
    # search, linear, relu, relu-conjugate-1 (the search ends at p_unit 0.7: max)
    model, record = search_then_retrain(_build, _Scripted([1.0, 0.3, 0.9, 2.0]))
    assert record["kept"] == "relu"                    # 0.3 is not below 0.9 / 5
    model, record = search_then_retrain(_build, _Scripted([1.0, 0.1, 0.9, 2.0]))
    assert record["kept"] == "linear"                  # 0.1 < 0.18
    train = _Scripted([1.0, 0.3, 0.9, 2.0])
    model, record = search_then_retrain(_build, train, relu_margin=1)
    assert record["kept"] == "linear" and model is train.models[1]
    # Every retrain more than 5% above the search: the search is kept, as it was
    # trained (p_unit 0.7), not as it was snapped for the retrains (1: max).
    # (the ReLU-ended retrain's 6.0 / 5 too).
    train = _Scripted([1.0, 1.2, 6.0, math.nan])
    x, index = torch.randn(12, 1), torch.arange(12) // 4
    model, record = search_then_retrain(_build, train, run=lambda m: m(x, index))
    assert record["kept"] == "search" and model is train.models[0]
    assert model.pooling.p_unit.item() == pytest.approx(0.7)
    assert model.pooling.p_unit.requires_grad
    assert train.models[2].pooling.closest_pooling() == "max"        # the retrains' pooling
    assert train.models[3].pooling.closest_pooling() == "min"        # and its conjugate


def test_a_search_above_refit_above_trains_again_relu_ended():
    # search 5.0 > 1.0: a ReLU-ended search (0.5) trains and is the one snapped; no
    # conjugates, one retrain.
    train = _Scripted([5.0, 0.5, 0.4])
    model, record = search_then_retrain(_build, train, retrain_endings=(False,),
                                        conjugates=False, refit_above=1.0)
    assert record["refit"] and record["losses"] == {"search": 5.0, "search-relu": 0.5,
                                                    "linear": 0.4}
    assert [m.encoder.ending for m in train.models] == ["softplus", "relu", "linear"]
    assert record["kept"] == "linear"
    # Below the bound: no refit.
    _, record = search_then_retrain(_build, _Scripted([0.9, 0.4]), retrain_endings=(False,),
                                    conjugates=False, refit_above=1.0)
    assert not record["refit"] and "search-relu" not in record["losses"]


def test_bad_arguments_are_named():
    ok = _Scripted([1.0] * 10)
    with pytest.raises(ValueError, match="learnable GNP"):
        search_then_retrain(lambda e: torch.nn.Linear(1, 1), ok)

    def unseeded(ending):
        return DeepSets(1, 1, 8, "gnp", last_activation=ending)

    never = _Scripted([])                    # a train call would fail: none may happen
    with pytest.raises(ValueError, match="build must return the same initial weights"):
        search_then_retrain(unseeded, never)
    same = _build(True)
    with pytest.raises(ValueError, match="build must return a new model on every call"):
        search_then_retrain(lambda ending: same, never)
    for bad in ("low", None, -0.5, -math.inf, [1.0]):
        with pytest.raises(ValueError, match="train must return the validation loss as a "
                                             "non-negative number"):
            search_then_retrain(_build, lambda m, bad=bad: bad)
    for endings in ((), (False, "linear"), ("tanh",), "softplus", (True, 1)):
        with pytest.raises(ValueError, match="retrain_endings must"):
            search_then_retrain(_build, ok, retrain_endings=endings)
    with pytest.raises(ValueError, match="search_ending must be an MLP ending .*got None"):
        search_then_retrain(_build, ok, search_ending=None)
    with pytest.raises(TypeError, match="conjugates must be True or False, got 'no'"):
        search_then_retrain(_build, ok, conjugates="no")
    with pytest.raises(ValueError, match="heading must be a positive number"):
        search_then_retrain(_build, ok, heading=0)
    for bad in ("1", math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match="refit_above must be a finite non-negative"):
            search_then_retrain(_build, ok, refit_above=bad)
    with pytest.raises(ValueError, match="relu_margin must be a number >= 1"):
        search_then_retrain(_build, ok, relu_margin=0.5)

    def four(ending):
        torch.manual_seed(0)
        return torch.nn.ModuleList(GNPAggregation() for _ in range(4))

    with pytest.raises(ValueError, match="conjugates need at most 3 learnable GNP modules"):
        search_then_retrain(four, ok)


@pytest.mark.parametrize(("task", "classic"), [("set_max", False), ("set_l2", False),
                                               ("set_l2", True)])
def test_is_the_benchmarks_recipe(tmp_path, monkeypatch, task, classic):
    # The benchmark's search_and_retrain (one model, the profiles' settings but its
    # per-channel twin) and search_then_retrain given the benchmark's own model builder,
    # training loop (the search's settings for a model with learnable poolings, the
    # retrains' otherwise) and inputs: the same models, losses and choice, to the bit.
    import dataclasses

    from gnpool.bench import HParams
    from gnpool.bench.configs import PoolingConfig
    from gnpool.bench.train import build_model, fit, predict, search_and_retrain
    from gnpool.datasets import load_splits, task_info
    from gnpool.training import pooling_parameters

    splits = load_splits(task, root=tmp_path, progress=False, num_train=64, num_val=32,
                         num_test=8, train_sizes=(2, 12), extrap_sizes=(20, 30))
    info = task_info(task, train_sizes=(2, 12), extrap_sizes=(20, 30))
    config = PoolingConfig("gnp", None, "gnp", readout_kwargs={"channels": 1, "q": 1.0})
    hp = HParams(hidden=8, epochs=4, batch_size=16, last_activation="softplus", retrain=1.0,
                 snap=0.25, snap_tolerance=0.3, retrain_heading=0.15,
                 retrain_heading_exponent=True, retrain_mirror=True,
                 retrain_select_activation=True, retrain_last_activation=False,
                 retrain_conjugates=True, select_relu_margin=5.0,
                 # R^2 below 1 is a validation MSE above 0: classic ends in both.
                 retrain_classic_r2=1.0 if classic else None)
    if classic:
        # Both set the searched GNPs to the mean (off max and min), as a search may end.
        from gnpool.bench import train as bench_train
        from gnpool.training import recipe

        def to_mean(model, tolerance):
            out = {}
            for name, module in model.named_modules():
                if isinstance(module, GNPAggregation) and module.p_unit.requires_grad:
                    module.snap_("mean")
                    out[name] = [["mean", "mean"]] * module.channels
            return out

        monkeypatch.setattr(bench_train, "snap_parts_", to_mean)
        monkeypatch.setattr(recipe, "snap_parts_", to_mean)
    torch.manual_seed(0)
    bench_model, record = search_and_retrain(info, config, hp, build_model(info, config, hp),
                                             splits, seed=0, progress=False)

    search_hp = dataclasses.replace(hp, epochs=round(hp.retrain * hp.epochs))
    retrain_hp = dataclasses.replace(
        hp, snap=0.0, retrain=0.0, retrain_heading=None, retrain_heading_exponent=False,
        retrain_mirror=False, retrain_select_activation=False, retrain_last_activation=None,
        retrain_conjugates=False, select_relu_margin=1.0, retrain_classic_r2=None)

    def build(ending):
        torch.manual_seed(0)
        return build_model(info, config, dataclasses.replace(hp, last_activation=ending))

    def train(model):
        settings = search_hp if pooling_parameters(model) else retrain_hp
        return fit(model, splits["train"], splits["val"], info.level, settings, 0,
                   progress=False)["val_mse"]

    model, mine = search_then_retrain(
        build, train, run=lambda m: predict(m, splits["train"], info.level, 256),
        classic_above=0.0 if classic else None)
    theirs = {name: scores["val_mse"]
              for name, scores in record["candidates"]["models"].items()}
    assert len(theirs) >= 4 and mine["losses"] == theirs
    assert mine["kept"] == record["candidates"]["kept"]
    assert mine["snapped"] == record["retrain"]["snapped"]
    assert mine["mirrored"] == record["retrain"]["mirrored"]
    assert mine["conjugates"] == record["retrain"]["conjugates"]
    assert mine["classic_ends"] == record["retrain"]["classic_ends"]
    assert bool(mine["classic_ends"]) == classic
    for (name, a), (_, b) in zip(model.state_dict().items(),
                                 bench_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_losses_may_be_numpy_or_tensor_scalars_and_nan_never_wins():
    import numpy as np

    train = _Scripted([np.float32(1.0), torch.tensor([0.5]), math.nan, np.array(0.6)])
    _, record = search_then_retrain(_build, train)
    assert record["losses"]["linear"] == 0.5 and math.isnan(record["losses"]["relu"])
    assert record["kept"] == "relu-conjugate-1"        # 0.6 / 5 beats 0.5; NaN never wins


def test_an_error_in_train_puts_the_search_back_as_trained():
    x, index = torch.randn(12, 1), torch.arange(12) // 4
    train = _Scripted([1.0, 0.5])                    # the third call (the ReLU retrain) fails
    with pytest.raises(IndexError):
        search_then_retrain(_build, train, run=lambda m: m(x, index))
    search = train.models[0]
    assert search.pooling.p_unit.item() == pytest.approx(0.7)     # as trained, not snapped
    assert search.pooling.p_unit.requires_grad


def test_only_the_search_and_the_best_retrain_so_far_stay_in_memory():
    import gc
    import weakref

    refs, alive = [], []
    losses = [1.0, 0.9, 0.8, 2.0]                    # search, linear, relu, conjugate

    def train(model):
        gc.collect()
        alive.append([r() is not None for r in refs])
        refs.append(weakref.ref(model))
        with torch.no_grad():                        # the search ends at max (p_unit 0.7)
            if model.pooling.p_unit.requires_grad:
                model.pooling.p_unit.fill_(0.7)
        return losses.pop(0)

    model, record = search_then_retrain(_build, train)
    assert record["kept"] == "relu" and model is refs[2]()
    # While the conjugate trains: the search and the ReLU retrain (0.8 / 5 < 0.9), not the
    # linear one.
    assert alive[3] == [True, False, True]


def test_a_nan_refit_never_wins_and_a_relu_search_is_not_refit():
    # Both searches NaN: the first goes on (as the benchmark's search_and_retrain).
    train = _Scripted([math.nan, math.nan, 0.5, 0.4])
    _, record = search_then_retrain(_build, train, retrain_endings=(False,), refit_above=1.0)
    assert not record["refit"] and train.models[0].encoder.ending == "softplus"
    # A ReLU-ended search is not trained again.
    train = _Scripted([5.0, 0.5, 0.4])
    _, record = search_then_retrain(_build, train, search_ending=True,
                                    retrain_endings=(False,), refit_above=1.0)
    assert list(record["losses"]) == ["search", "linear", "relu-conjugate-1"]


def test_a_lazy_module_in_the_model_is_fine():
    def build(ending):
        torch.manual_seed(0)
        return torch.nn.ModuleDict({"pool": GNPAggregation(), "lazy": torch.nn.LazyLinear(2)})

    _, record = search_then_retrain(build, _Scripted([1.0, 0.5, 0.4, 0.3]), conjugates=False)
    assert record["kept"] == "relu"                  # 0.4 / 5 beats 0.5


def test_a_conjugate_margin_lets_a_conjugate_compete_only_well_below_the_plain_relu():
    scores = {"search": {"val_mse": 1.0}, "linear": {"val_mse": 0.9},
              "relu": {"val_mse": 0.072}, "relu-conjugate-1": {"val_mse": 0.047}}
    assert choose_model(scores, "val", 5.0) == "relu-conjugate-1"
    assert choose_model(scores, "val", 5.0, conjugate_margin=2) == "relu"    # 0.047 > 0.036
    assert choose_model(scores, "val", 5.0, conjugate_margin=1.5) == "relu-conjugate-1"
    prefixed = {f"{p}/{k}": v for p in ("shared", "per_channel") for k, v in scores.items()
                if p == "shared" or "conjugate" not in k}
    assert choose_model(prefixed, "val", 5.0, 2) == "shared/relu"
    for bad in (0.5, math.nan, True):
        with pytest.raises(ValueError, match="conjugate_margin must be a number >= 1"):
            choose_model(scores, "val", 5.0, bad)
    # search_then_retrain: the conjugate (0.3) is not below half the ReLU retrain's (0.5).
    train = _Scripted([1.0, 0.9, 0.5, 0.3])
    model, record = search_then_retrain(_build, train, conjugate_margin=2)
    assert record["kept"] == "relu" and model is train.models[2]
    _, record = search_then_retrain(_build, _Scripted([1.0, 0.9, 0.5, 0.2]),
                                    conjugate_margin=2)
    assert record["kept"] == "relu-conjugate-1"


def test_classic_ends_retrain_a_gnp_left_off_max_and_min_at_both_when_retrains_fit_badly():
    # The search leaves the GNP at the mean (p_unit 0.5): no conjugate differs; the lowest
    # retrain loss (0.5) above classic_above (0.4) retrains it at max (0.3) and min (0.2).
    train = _Scripted([1.0, 0.9, 0.5, 0.3, 0.2], p_unit=0.5)
    model, record = search_then_retrain(_build, train, classic_above=0.4)
    assert record["snapped"] == {"pooling": [["mean", "mean"]]}
    assert record["conjugates"] == []
    assert record["classic_ends"] == [[["pooling", "max"]], [["pooling", "min"]]]
    assert record["classic_triggered"] is True
    assert list(record["losses"]) == ["search", "linear", "relu", "relu-classic-1",
                                      "relu-classic-2"]
    assert [m.pooling.closest_pooling() for m in train.models[3:]] == ["max", "min"]
    assert record["kept"] == "relu-classic-2" and model is train.models[4]
    assert record["kept"] == choose_model(
        {k: {"val_mse": v} for k, v in record["losses"].items()}, "val", 5.0)
    # At the bound, or without it, none: the same retrains as before.
    for above in (0.5, None):
        _, record = search_then_retrain(_build, _Scripted([1.0, 0.9, 0.5], p_unit=0.5),
                                        classic_above=above)
        assert list(record["losses"]) == ["search", "linear", "relu"]
        assert record["classic_ends"] == [] and record["kept"] == "relu"
        assert record["classic_triggered"] is (None if above is None else False)
    # They compete as conjugates do: 0.3 is not below half the plain ReLU retrain's 0.5.
    _, record = search_then_retrain(_build, _Scripted([1.0, 0.9, 0.5, 0.3, 0.3], p_unit=0.5),
                                    classic_above=0.4, conjugate_margin=2)
    assert record["kept"] == "relu"
    # A NaN lowest loss is above any bound; a NaN classic-end loss never wins.
    train = _Scripted([1.0, math.nan, math.nan, math.nan, 0.6], p_unit=0.5)
    model, record = search_then_retrain(_build, train, classic_above=100.0)
    assert record["classic_ends"] and record["kept"] == "relu-classic-2"
    assert model is train.models[4]
    for bad in (-1.0, math.inf, math.nan, True, "0.4", torch.tensor([0.4, 0.4]),
                torch.tensor(True), np.float64(-1.0)):
        with pytest.raises(ValueError, match="classic_above must be a finite non-negative"):
            search_then_retrain(_build, _Scripted([1.0]), classic_above=bad)
    # A bound computed with NumPy or torch counts as its number.
    for above in (np.float32(0.4), torch.tensor(0.4), torch.tensor([0.4], dtype=torch.float64)):
        _, record = search_then_retrain(_build, _Scripted([1.0, 0.9, 0.5, 0.3, 0.2],
                                                          p_unit=0.5), classic_above=above)
        assert record["classic_triggered"] is True and record["kept"] == "relu-classic-2"
    with pytest.raises(ValueError, match=r"classic_above=0.4 applies only with conjugates=True"):
        search_then_retrain(_build, _Scripted([1.0]), classic_above=0.4, conjugates=False)


def test_classic_end_plans_set_the_modules_off_max_and_min_to_both():
    from gnpool.training import apply_plan_, classic_end_plans

    model = torch.nn.ModuleDict({"a": GNPAggregation.from_pooling("min"),
                                 "b": GNPAggregation.from_pooling("mean", channels=2),
                                 "c": GNPAggregation.from_pooling("max", learn=False)})
    plans = classic_end_plans(model)
    # a as searched or conjugated (slowest), b at max or min; c is not learnable.
    assert plans == [(("a", "searched"), ("b", "max")), (("a", "searched"), ("b", "min")),
                     (("a", "conjugate"), ("b", "max")), (("a", "conjugate"), ("b", "min"))]
    x, index = torch.randn(12, 2), torch.tensor([0] * 5 + [1] * 7)
    for plan, want in zip(plans, [("min", "max"), ("min", "min"), ("max", "max"),
                                  ("max", "min")], strict=True):
        applied = __import__("copy").deepcopy(model)
        apply_plan_(applied, plan)
        for name, pooling in zip("ab", want, strict=True):
            expected = getattr(torch, f"a{pooling}")
            exact = torch.stack([expected(x[index == k], dim=0) for k in range(2)])
            torch.testing.assert_close(applied[name](x, index), exact, rtol=0, atol=0)
    # Every learnable module at max or min: the conjugates cover it all.
    assert classic_end_plans(torch.nn.ModuleDict({"a": GNPAggregation.from_pooling("max")})) == []
    assert classic_end_plans(torch.nn.Linear(2, 2)) == []
    # A GNP with any channel off max and min is off: parts that differ ([sum, mean]), or
    # one channel of two at the sum.
    mixed = GNPAggregation.from_pooling("sum", channels=2)
    mixed.snap_(["max", "sum"])
    parts = GNPAggregation.from_pooling("sum")
    with torch.no_grad():
        parts.beta_neg.zero_()                                   # [sum, mean]
    for off in (mixed, parts):
        assert classic_end_plans(off) == [(("", "max"),), (("", "min"),)]
    with pytest.raises(ValueError, match="model must be a torch.nn.Module, got NoneType"):
        classic_end_plans(None)
    # Every pair is checked before anything changes.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"plan action for 'a' must be one of \('max', 'min', "
                                         r"'conjugate', 'searched'\), got 'sum'"):
        apply_plan_(model, [("b", "max"), ("a", "sum")])
    with pytest.raises(ValueError, match=r"plan names 'x', which is not a GNPAggregation"):
        apply_plan_(model, [("b", "max"), ("x", "max")])
    with pytest.raises(ValueError, match=r"plan names the GNP module 'b' twice"):
        apply_plan_(model, [("b", "max"), ("b", "min")])
    for bad in ({"b": "max"}, ("b", "max"), [("b",)], [("b", "max", "x")], None, "bmax",
                plans, [("b", 1)]):
        with pytest.raises(ValueError, match=r"plan must be a sequence of \(module name, "
                                             r"action\) pairs, e.g. classic_end_plans"):
            apply_plan_(model, bad)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module, got NoneType"):
        apply_plan_(None, [])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
