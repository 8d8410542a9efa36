"""FASet: what each stage trains and freezes, that both stages learn, checkpoint/resume."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gnpool import GNPAggregation
from gnpool.nn import AttSets
from gnpool.training import FASet, aggregator_parameter_names, single_view_batch, subset_batch

SAMPLES, VIEWS, LATENT, HIDDEN = 96, 5, 3, 16


pytestmark = pytest.mark.usefixtures("one_thread")


def multiview_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Views are noisy copies of a latent z (noise 0.1 or 2.0, the level appended as a
    feature, so attention can learn whom to trust); the target is linear in z."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(SAMPLES, LATENT, generator=gen)
    sigma = torch.where(torch.rand(SAMPLES, VIEWS, 1, generator=gen) < 0.5, 0.1, 2.0)
    noise = torch.randn(SAMPLES, VIEWS, LATENT, generator=gen)
    views = torch.cat([z.unsqueeze(1) + sigma * noise, sigma], dim=-1)
    return views, z @ torch.randn(LATENT, 2, generator=gen)


class DenseGNP(nn.Module):
    """GNPAggregation over the view axis of [B, V, C] (masked views dropped)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.aggr = GNPAggregation(channels, p=1.0, q=0.0)  # sum: wrong scale for k > 1 views

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        index = torch.arange(h.size(0)).repeat_interleave(h.size(1))
        flat = h.flatten(0, 1)
        if mask is not None:
            keep = mask.flatten()
            flat, index = flat[keep], index[keep]
        return self.aggr(flat, index, dim_size=h.size(0))


class MultiView(nn.Module):
    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(LATENT + 1, HIDDEN), nn.BatchNorm1d(HIDDEN),
                                     nn.ReLU(), nn.Dropout(0.1), nn.Linear(HIDDEN, HIDDEN))
        self.pool = pool
        self.decoder = nn.Linear(HIDDEN, 2)

    def forward(self, views: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(views.flatten(0, 1)).view(views.shape[:2] + (HIDDEN,))
        return self.decoder(self.pool(h, mask=mask))


def make_model(pool: str = "attsets", seed: int = 1) -> MultiView:
    torch.manual_seed(seed)
    model = MultiView(nn.Identity())  # the same base network whatever the pool
    model.pool = AttSets(HIDDEN) if pool == "attsets" else DenseGNP(HIDDEN)
    return model


def loader(batch_size: int = 16) -> DataLoader:
    # Shuffled from torch's global generator: resuming must restore it.
    return DataLoader(TensorDataset(*multiview_data()), batch_size=batch_size, shuffle=True)


def adam(lr: float, weight_decay: float = 0.0, record: list | None = None):
    def factory(params):
        if record is not None:
            record.append(list(params))
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return factory


def names_of(model: nn.Module, params: list) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def faset(model: nn.Module, epochs: tuple[int, int] = (2, 2), **kwargs) -> FASet:
    kwargs = {"stage1_optimizer": adam(1e-2), "stage2_optimizer": adam(5e-2), "seed": 0,
              "progress": False, "set_sizes": (2, VIEWS), "per_sample_sizes": True, **kwargs}
    return FASet(model, nn.functional.mse_loss, stage1_epochs=epochs[0],
                 stage2_epochs=epochs[1], **kwargs)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_default_selection_finds_attsets_and_gnp():
    assert aggregator_parameter_names(make_model()) == ["pool.score.weight", "pool.score.bias"]
    names = aggregator_parameter_names(make_model("gnp"))
    assert names == ["pool.aggr.p_unit", "pool.aggr.beta", "pool.aggr.p_neg_unit",
                     "pool.aggr.beta_neg"]


def test_every_selection_form_selects_the_same_parameters():
    model = make_model()
    expected = ["pool.score.weight", "pool.score.bias"]
    assert aggregator_parameter_names(model, model.pool) == expected
    assert aggregator_parameter_names(model, list(reversed(expected))) == expected
    assert aggregator_parameter_names(model, lambda name, p: name.startswith("pool.")) == expected


def test_selection_errors():
    plain = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match="selects no parameter.*instances of AttSets"):
        FASet(plain, nn.functional.mse_loss)
    with pytest.raises(ValueError, match="selects no parameter"):
        FASet(plain, nn.functional.mse_loss, aggregator=lambda name, p: False)
    with pytest.raises(ValueError, match="selects every parameter of the model"):
        FASet(nn.Sequential(AttSets(4)), nn.functional.mse_loss)
    with pytest.raises(ValueError, match=r"names \['pool.nope'\] are not parameters"):
        FASet(make_model(), nn.functional.mse_loss, aggregator=["pool.nope"])
    with pytest.raises(TypeError, match="got the string 'pool.score.weight'"):
        FASet(make_model(), nn.functional.mse_loss, aggregator="pool.score.weight")
    with pytest.raises(ValueError, match="stage2_epochs must be a non-negative int, got -1"):
        FASet(make_model(), nn.functional.mse_loss, stage2_epochs=-1)
    with pytest.raises(ValueError, match="low <= high"):
        FASet(make_model(), nn.functional.mse_loss, set_sizes=(5, 2))
    with pytest.raises(ValueError, match=r"set_sizes must be an int or a \(low, high\) pair"):
        FASet(make_model(), nn.functional.mse_loss, set_sizes=(1, 2, 3))
    model = make_model()
    model.pool.requires_grad_(False)
    with pytest.raises(ValueError, match="stage 2 has nothing to train"):
        FASet(model, nn.functional.mse_loss)
    with pytest.raises(ValueError, match="need a checkpoint path"):
        faset(make_model()).fit(loader(), resume=True)


@pytest.mark.parametrize("pool", ["attsets", "gnp"])
def test_stage1_leaves_the_aggregator_untouched(pool):
    model = make_model(pool)
    frozen = nn.Linear(1, 1)  # frozen by the user: stays frozen and unchanged
    model.extra = frozen.requires_grad_(False)
    before = snapshot(model)
    model.eval()
    given = []
    faset(model, (2, 0), stage1_optimizer=adam(1e-2, 0.5, given)).fit(loader())
    after = model.state_dict()
    assert names_of(model, given[0]) == {n for n in dict(model.named_parameters())
                                         if n.startswith(("encoder", "decoder"))}
    for name in aggregator_parameter_names(model) + ["extra.weight", "extra.bias"]:
        assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["encoder.0.weight"], before["encoder.0.weight"])
    assert not torch.equal(after["encoder.1.running_mean"], before["encoder.1.running_mean"])
    # Flags and modes come back as they were.
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("extra"))
    assert not frozen.weight.requires_grad
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("pool", ["attsets", "gnp"])
def test_stage2_leaves_every_base_parameter_and_buffer_untouched(pool):
    model = make_model(pool)
    modes = []
    model.encoder.register_forward_pre_hook(
        lambda m, args: modes.append((m.training, m[3].training, model.pool.training)))
    before = snapshot(model)
    given = []
    faset(model, (0, 2), stage2_optimizer=adam(5e-2, 0.5, given)).fit(loader())
    after = model.state_dict()
    selected = set(aggregator_parameter_names(model))
    assert names_of(model, given[0]) == selected
    assert {"encoder.1.running_mean", "encoder.1.running_var",
            "encoder.1.num_batches_tracked"} <= set(after)
    for name in after:
        if name not in selected:
            assert torch.equal(after[name], before[name]), name
    assert all(not torch.equal(after[n], before[n]) for n in selected)
    # The base (batch norm, dropout) ran in eval mode, the aggregator in train mode.
    assert modes and set(modes) == {(False, False, True)}
    assert all(m.training for m in model.modules())


def test_stage1_is_the_same_for_attsets_and_gnp():
    """On one-view sets both aggregators are the identity, so stage 1 trains the same base."""
    models = [make_model(pool) for pool in ("attsets", "gnp")]
    views = multiview_data()[0][:, :1]
    before = [model.eval()(views) for model in models]
    torch.testing.assert_close(before[0], before[1], rtol=1e-6, atol=1e-6)
    for model in models:
        torch.manual_seed(5)
        # SGD, not Adam: Adam's normalised steps would amplify rounding differences.
        sgd = lambda params: torch.optim.SGD(params, lr=0.05)  # noqa: E731
        faset(model, (2, 0), stage1_optimizer=sgd).fit(loader())
    a, b = (m.state_dict() for m in models)
    for name in a:
        if not name.startswith("pool"):
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    assert not torch.equal(a["encoder.0.weight"], snapshot(make_model())["encoder.0.weight"])


@pytest.mark.parametrize("pool,gain", [("attsets", 0.85), ("gnp", 0.5)])
def test_loss_falls_in_each_stage(pool, gain):
    views, target = multiview_data()
    single = single_view_batch((views, target))

    def validate(model):
        mse = nn.functional.mse_loss
        return {"sets": mse(model(views), target).item(),
                "single": mse(model(single["views"]), single["target"]).item()}

    model = make_model(pool)
    model.eval()
    start = validate(model)
    history = faset(model, (6, 6)).fit(loader(), validate=validate)
    stage1, stage2 = history[1], history[2]
    assert [logs["epoch"] for logs in stage1] == list(range(6)) and len(stage2) == 6
    assert stage1[-1]["val"]["single"] < 0.7 * start["single"]
    assert stage1[-1]["loss"] < stage1[0]["loss"]
    assert stage2[-1]["val"]["sets"] < gain * stage1[-1]["val"]["sets"]
    # Stage 2 cannot change single-view predictions: the base is frozen.
    assert {logs["val"]["single"] for logs in stage2} == {stage1[-1]["val"]["single"]}


@pytest.mark.parametrize("per_sample", [False, True])
def test_stage2_set_sizes_are_drawn_from_the_range(per_sample):
    drawn, kept = [], []

    def record(batch, sizes, generator):
        k = sizes(len(batch[0]))
        drawn.append(k)
        out = subset_batch(batch, k, generator)
        mask = out["mask"]
        kept.append(torch.full((len(k),), out["views"].size(1)) if mask is None else mask.sum(1))
        return out

    faset(make_model(), (0, 4), set_sizes=(2, 4), per_sample_sizes=per_sample,
          subset_batch=record).fit(loader(8))
    drawn, kept = torch.stack(drawn), torch.stack(kept)
    assert drawn.min() == 2 and drawn.max() == 4
    assert torch.equal(kept, drawn)  # every sample has 5 views, so each keeps its size
    assert bool((drawn != drawn[:, :1]).any()) == per_sample


def test_set_sizes_larger_than_the_views_fail_before_training():
    model = make_model()
    before = snapshot(model)
    views, target = multiview_data()
    data = DataLoader(TensorDataset(views[:, :3], target), batch_size=16)   # 3 views
    trainer = faset(model, set_sizes=(1, 5))
    with pytest.raises(ValueError, match=r"set_sizes reach 5 views, but the batches have V=3"):
        trainer.fit(data)
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)   # nothing was trained


def test_custom_hooks_train_a_flat_set_model():
    """Sets given as rows plus a set index, as in a graph readout."""
    gen = torch.Generator().manual_seed(0)
    x, target = torch.randn(40, 3, generator=gen), torch.randn(8, 1, generator=gen)
    index = torch.arange(8).repeat_interleave(5)
    x = x + target[index]  # each row is a noisy copy of its set's target
    batches = [(x, index, target)]

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.pool = nn.Linear(3, 4), GNPAggregation(4)
            self.decoder = nn.Linear(4, 1)

        def forward(self, x, index, num_sets):
            return self.decoder(self.pool(self.encoder(x), index, dim_size=num_sets))

    stages = []

    def single(batch):
        x, index, target = batch
        stages.append(1)
        return x, torch.arange(len(x)), target[index]

    def subset(batch, sizes, generator):
        x, index, target = batch
        stages.append(2)
        keep = torch.rand(len(x), generator=generator) < 0.5
        keep[::5] = True
        return x[keep], index[keep], target

    def predict(model, batch):
        x, index, target = batch
        return model(x, index, len(target)), target

    model = Flat()
    before = snapshot(model)
    history = FASet(model, nn.functional.mse_loss, stage1_epochs=3, stage2_epochs=2,
                    single_view_batch=single, subset_batch=subset, predict=predict,
                    stage1_optimizer=adam(1e-2), progress=False).fit(batches)
    assert stages == [1, 1, 1, 2, 2]
    assert history[1][-1]["loss"] < history[1][0]["loss"]
    assert not torch.equal(model.pool.beta, before["pool.beta"])


def reference_run(tmp_path, checkpoint_every=None):
    model = make_model(seed=1)
    torch.manual_seed(123)
    history = faset(model, (3, 2)).fit(loader(), checkpoint=str(tmp_path / "ref.pt"),
                                       checkpoint_every=checkpoint_every)
    return model.state_dict(), history


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop", [(1, 0), (1, 2), (2, 0)])
def test_resume_after_an_epoch_matches_an_uninterrupted_run(tmp_path, stop):
    expected, expected_history = reference_run(tmp_path)

    def interrupt(stage, epoch, logs):
        if (stage, epoch) == stop:
            raise Interrupt

    path = str(tmp_path / "run.pt")
    trainer = faset(make_model(seed=1), (3, 2))
    torch.manual_seed(123)
    with pytest.raises(Interrupt):
        trainer.fit(loader(), checkpoint=path, callbacks=[interrupt])
    torch.manual_seed(999)  # resuming must not depend on the state it starts from
    model = make_model(seed=7)
    history = faset(model, (3, 2), seed=42).fit(loader(), checkpoint=path, resume=True)
    for name, value in expected.items():
        assert torch.equal(model.state_dict()[name], value), name
    assert history == expected_history


@pytest.mark.parametrize("stage,batch", [(1, 9), (2, 3)])
def test_resume_mid_epoch_matches_an_uninterrupted_run(tmp_path, stage, batch):
    expected, expected_history = reference_run(tmp_path)
    calls = {"n": 0}
    # 6 batches an epoch: stop inside stage 1 epoch 1, or stage 2 epoch 0.
    stop_at = batch if stage == 1 else 3 * 6 + batch

    def loss_fn(output, target):
        calls["n"] += 1
        if calls["n"] > stop_at:
            raise KeyboardInterrupt
        return nn.functional.mse_loss(output, target)

    path = str(tmp_path / "run.pt")
    trainer = faset(make_model(seed=1), (3, 2))
    trainer.loss_fn = loss_fn
    torch.manual_seed(123)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(loader(), checkpoint=path, checkpoint_every=2)
    state = torch.load(path, weights_only=True)
    # The last checkpoint: 2 batches into the interrupted epoch.
    assert (state["stage"], state["epoch"], state["batch"]) == (stage, 2 - stage, 2)
    model = make_model(seed=7)
    history = faset(model, (3, 2)).fit(loader(), checkpoint=path, resume=True)
    for name, value in expected.items():
        assert torch.equal(model.state_dict()[name], value), name
    assert history == expected_history


def test_interrupt_mid_epoch_keeps_the_last_epoch_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    saved = {}
    calls = {"n": 0}

    def remember(stage, epoch, logs):
        saved[(stage, epoch)] = snapshot(trainer.model)

    def loss_fn(output, target):
        calls["n"] += 1
        if calls["n"] == 6 + 4:  # inside stage 1, epoch 1
            raise KeyboardInterrupt
        return nn.functional.mse_loss(output, target)

    trainer = faset(make_model(), (3, 2))
    trainer.loss_fn = loss_fn
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(loader(), checkpoint=str(path), callbacks=[remember])
    state = torch.load(path, weights_only=True)
    assert (state["stage"], state["epoch"], state["batch"]) == (1, 1, 0)
    assert set(saved) == {(1, 0)}
    for name, value in saved[(1, 0)].items():
        assert torch.equal(state["model"][name], value), name
    assert os.listdir(tmp_path) == ["run.pt"]  # no temporary file left behind


def test_resume_rejects_a_checkpoint_for_other_aggregator_parameters(tmp_path):
    path = str(tmp_path / "run.pt")
    faset(make_model(), (1, 0)).fit(loader(), checkpoint=path)
    with pytest.raises(ValueError, match="written for the aggregator parameters"):
        faset(make_model(), (1, 0), aggregator=["pool.score.weight"]).fit(
            loader(), checkpoint=path, resume=True)


def test_masked_views_never_reach_the_model():
    views, target = multiview_data()
    gen = torch.Generator().manual_seed(2)
    mask = torch.rand(SAMPLES, VIEWS, generator=gen) < 0.6
    mask[:, 0] = True
    views = views.masked_fill(~mask.unsqueeze(-1), float("nan"))  # poison the absent views
    data = [{"views": views[i:i + 16], "target": target[i:i + 16], "mask": mask[i:i + 16]}
            for i in range(0, SAMPLES, 16)]
    seen = []
    model = make_model()
    model.pool.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs["mask"]),
                                         with_kwargs=True)
    finite = []
    model.encoder.register_forward_pre_hook(lambda m, args: finite.append(
        bool(torch.isfinite(args[0]).all())))
    history = faset(model, (2, 2)).fit(data)
    losses = [logs["loss"] for stage in (1, 2) for logs in history[stage]]
    assert all(finite) and len(finite) == 4 * len(data)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    stage1, stage2 = seen[:2 * len(data)], seen[2 * len(data):]
    assert all(m is None for m in stage1)  # one-view sets, masked views dropped
    assert any(m is not None for m in stage2)


def test_progress_bars_and_callbacks(capsys):
    calls = []
    history = faset(make_model(), (2, 1), progress=True).fit(
        loader(), callbacks=[lambda stage, epoch, logs: calls.append((stage, epoch, logs))])
    assert [(s, e) for s, e, _ in calls] == [(1, 0), (1, 1), (2, 0)]
    assert [logs for _, _, logs in calls] == history[1] + history[2]
    assert all(logs["val"] is None and logs["loss"] > 0 for _, _, logs in calls)
    err = capsys.readouterr().err
    assert "FASet stage 1" in err and "FASet stage 2" in err


def test_default_selection_includes_attsets_aggregation_when_present(monkeypatch):
    import gnpool.aggr

    class AttSetsAggregation(nn.Module):  # stands in for gnpool.aggr.AttSetsAggregation
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(HIDDEN, HIDDEN)

    monkeypatch.setattr(gnpool.aggr, "AttSetsAggregation", AttSetsAggregation, raising=False)
    model = nn.Sequential(nn.Linear(2, HIDDEN), AttSetsAggregation())
    assert aggregator_parameter_names(model) == ["1.gate.weight", "1.gate.bias"]


def test_resuming_from_a_file_that_is_no_checkpoint_says_so(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot be read as a FASet checkpoint .*resume=False"):
        faset(make_model()).fit(loader(), checkpoint=path, resume=True)
    torch.save([1, 2], path)                      # readable, but not FASet's
    with pytest.raises(ValueError, match="is not a FASet checkpoint \\(format None"):
        faset(make_model()).fit(loader(), checkpoint=path, resume=True)
