"""The multi-view task family: the smoke profile end to end, evaluation and report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnpool.bench import get_profile, plan, run_grid
from gnpool.bench.__main__ import main
from gnpool.bench.db import RunDB
from gnpool.bench.multiview import MultiViewHParams, evaluate, iou, multiview_configs
from gnpool.bench.multiview_report import collect, paired_noise, render_markdown, targets
from gnpool.datasets.multiview import load_multiview
from gnpool.models import MultiViewReconstructor

SMOKE = get_profile("multiview_smoke")
CONFIGS = {"attsets-faset", "gnp-faset", "attsets-joint", "gru", "max", "mean", "sum"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_smoke_profile_end_to_end(tmp_path, data_root):
    db_path = tmp_path / "runs.sqlite"
    specs = plan(SMOKE, data_root=data_root)
    assert {s.config.name for s in specs} == CONFIGS and len(specs) == 7
    summary = run_grid(specs, db_path, progress=False)
    assert (summary.executed, summary.finished, summary.failed) == (7, 7, 0)
    with RunDB(db_path) as db:
        rows = {r["config"]: r for r in db.rows()}
    for name, row in rows.items():
        assert row["status"] == "finished" and row["level"] == "multiview"
        bins = row["bins"]
        assert bins["test"]["views"] == [1, 2, 3, 6] and bins["orders"] == 3
        for split, count in (("test", 6), ("test_ood", 3)):
            curve = bins[split]
            assert all(0 <= v <= 1 for v in curve["iou"])
            assert np.array(curve["iou_orders"]).shape == (4, 3)
            assert np.array(curve["per_shape"]).shape == (4, count)
            assert np.allclose(np.array(curve["per_shape"]).mean(1), curve["iou"], atol=1e-4)
        stages = {h["stage"] for h in row["history"]}
        assert stages == ({1, 2} if name.endswith("faset") else {0})
        assert bool(row["gnp"]) == (name == "gnp-faset")
    # FASet's stage 1 never calls the aggregator on more than one view: the two FASet
    # runs share their base network, hence their one-view IoU.
    assert rows["attsets-faset"]["bins"]["test"]["iou"][0] == pytest.approx(
        rows["gnp-faset"]["bins"]["test"]["iou"][0], abs=1e-3)
    again = run_grid(specs, db_path, progress=False)
    assert (again.executed, again.skipped) == (0, 7)

    out = tmp_path / "report"
    assert main(["report", "--profile", "multiview_smoke", "--db", str(db_path),
                 "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Multi-view benchmark: `multiview_smoke` profile" in text
    assert "| AttSets + FASet |" in text and "## Targets" in text
    assert (out / "iou_views.png").stat().st_size > 0


def test_set_aggregators_give_the_same_iou_for_every_view_order(data_root):
    data = load_multiview("test", root=data_root, progress=False, **SMOKE.tasks[0].data)
    scores = {}
    for name in ("attsets", "gnp", "max", "mean", "sum", "gru"):
        torch.manual_seed(1)
        # A GNP between mean and max: p from 1 to 8 over the channels.
        kwargs = {"p": torch.linspace(1, 8, 16).tolist()} if name == "gnp" else None
        # Untrained, float64, no occupancy prior: about half the voxels predicted.
        model = MultiViewReconstructor(name, image_size=8, grid=8, channels=16, width=4,
                                       occupancy=None, aggregator_kwargs=kwargs).double()
        scores[name] = evaluate(model, data, [1, 2, 3, 6], orders=5, threshold=0.5)
    for name, s in scores.items():
        assert s.shape == (4, 5, 6) and (s > 0).any()
        if name != "gru":
            assert torch.equal(s, s[:, :1].expand_as(s)), name
    gru = scores["gru"]
    assert not torch.equal(gru[1:], gru[1:, :1].expand_as(gru[1:])), "GRU depends on order"


def test_iou_matches_its_definition():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 4, 4, generator=gen)
    target = (torch.rand(3, 4, 4, 4, generator=gen) > 0.6).float()
    got = iou(logits, target, threshold=0.3)
    for b in range(3):
        pred = {tuple(i) for i in torch.nonzero(torch.sigmoid(logits[b]) > 0.3).tolist()}
        true = {tuple(i) for i in torch.nonzero(target[b]).tolist()}
        assert got[b].item() == pytest.approx(len(pred & true) / len(pred | true))
    assert iou(torch.full((1, 2, 2, 2), -5.0), torch.zeros(1, 2, 2, 2)).item() == 1.0


def fake_row(config, curve, per_shape, orders=None):
    views = [1, 2, 4, 8]
    orders = orders or [[v] * 2 for v in curve]
    return {"config": config, "status": "finished", "wall_seconds": 60.0,
            "bins": {"threshold": 0.5, "seconds": {"cpu": 30.0},
                     "test": {"views": views, "iou": curve, "iou_orders": orders,
                              "per_shape": per_shape}}}


def test_targets_are_judged_from_the_figures_with_paired_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, 200)
    rising = [base + d for d in (0.0, 0.02, 0.03, 0.04)]
    dip = [base + d + rng.normal(0, 0.02, 200) for d in (0.0, 0.02, 0.0195, 0.03)]
    rows = [fake_row("attsets-faset", [float(s.mean()) for s in rising], rising),
            fake_row("max", [float(s.mean()) for s in dip], dip),
            fake_row("mean", [float(s.mean()) - 0.1 for s in rising],
                     [s - 0.1 for s in rising]),
            fake_row("gru", [0.5] * 4, [base] * 4,
                     orders=[[0.5, 0.5], [0.5, 0.51], [0.5, 0.52], [0.49, 0.5]])]
    lines = targets(collect(rows, "test"))
    assert lines[0].startswith("- **Met**: AttSets + FASet's IoU never decreases")
    assert lines[1].startswith("- **Met**: AttSets + FASet is at least as good as max")
    assert lines[2].startswith("- **Met**") and "mean pooling" in lines[2]
    assert lines[3].startswith("- **Met**: the GRU's mean IoU differs")
    assert lines[4].startswith("- **Met**: AttSets + FASet gives the same mean IoU")
    # max's small dip (within noise) and a large drop of AttSets (beyond it):
    rows[0] = fake_row("attsets-faset", [float(s.mean()) for s in dip], dip)
    rows[1] = fake_row("max", [float(s.mean()) + 0.05 for s in rising],
                       [s + 0.05 for s in rising])
    lines = targets(collect(rows, "test"))
    assert lines[0].startswith("- **Met**") and "1 pair(s)" in lines[0]
    assert "0 of them exceed the noise" in lines[0]
    assert lines[1].startswith("- **Not met**: AttSets + FASet is below max pooling at 2 of 2")
    drop = [base + d for d in (0.0, 0.05, 0.0, 0.06)]
    rows[0] = fake_row("attsets-faset", [float(s.mean()) for s in drop], drop)
    assert targets(collect(rows, "test"))[0].startswith("- **Not met**")
    assert paired_noise(base, base - 0.01) == 0.0
    assert "## Targets" in render_markdown(rows, "title")


def test_hyperparameters_and_configs():
    hp = MultiViewHParams().updated({"set_sizes": [2, 5], "training": "faset"})
    assert hp.set_sizes == (2, 5) and hp.training == "faset"
    with pytest.raises(ValueError, match="multiview hyperparameters \\['hidden'\\] are unknown"):
        MultiViewHParams().updated({"hidden": 3})
    with pytest.raises(ValueError, match="training must be 'joint' or 'faset'"):
        MultiViewHParams(training="both")
    assert [c.name for c in multiview_configs() if c.fixed] == ["max", "mean", "sum"]
    specs = plan(SMOKE, configs=["gru"], seeds=[4], hparams={"epochs": 3})
    assert [(s.config.name, s.seed, s.hparams.epochs) for s in specs] == [("gru", 4, 3)]
    with pytest.raises(ValueError, match="configs=\\['gnp'\\] match no task"):
        plan(SMOKE, configs=["gnp"])
