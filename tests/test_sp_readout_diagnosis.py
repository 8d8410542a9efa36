"""experiments/sp_readout_diagnosis.py: its per-graph parts against a loop over graphs and
channels on a small model."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import load_experiment
from torch_geometric.data import Data

from gnpool.models import MessageMLPGNN

diag = load_experiment("sp_readout_diagnosis")


def _graphs(count: int, seed: int = 0) -> list[Data]:
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(count):
        n = int(torch.randint(3, 8, (1,), generator=gen))
        src = torch.arange(n).repeat_interleave(n)
        dst = torch.arange(n).repeat(n)
        keep = src != dst
        edge_index = torch.stack([src[keep], dst[keep]])
        x = torch.zeros(n, 3)
        x[:, 0] = torch.rand(n, generator=gen) * 10 - 5
        s, t = torch.randperm(n, generator=gen)[:2].tolist()
        x[s, 1] = x[t, 2] = 1.0
        graphs.append(Data(x=x, edge_index=edge_index,
                           edge_attr=torch.rand(edge_index.size(1), 1, generator=gen) * 4 + 1,
                           y=torch.rand(1, generator=gen) * 10 + 1))
    return graphs


@pytest.mark.parametrize("node_mlp_layers", [0, 2])
@pytest.mark.parametrize("readout", ["min", "max"])
def test_split_parts_against_a_loop(readout, node_mlp_layers):
    torch.manual_seed(0)
    model = MessageMLPGNN(3, 1, 6, 2, "min", readout, edge_dim=1,
                          node_mlp_layers=node_mlp_layers).eval()
    graphs = _graphs(9)
    parts = diag.split_parts(model, graphs, batch_size=4)
    # The readout's input per graph, taken from the model's own forward on that graph
    # alone (not from split_parts' layer loop).
    seen = []
    model.readout.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    ties = alone_differs = zeros = others = flat = some_zero = inner = 0
    for i, g in enumerate(graphs):
        with torch.no_grad():
            full = model(g.x, g.edge_index, g.edge_attr, torch.zeros(g.num_nodes, dtype=torch.long))
        h = seen.pop()
        pick = h.min(dim=0).values if readout == "min" else h.max(dim=0).values
        t, s = int(g.x[:, 2].argmax()), int(g.x[:, 1].argmax())
        varying = [c for c in range(h.size(1)) if h[:, c].max() != h[:, c].min()]
        others_nodes = [v for v in range(g.num_nodes) if v not in (s, t)]
        hits = {c: int((h[:, c] == pick[c]).sum()) for c in varying}
        assert parts["y"][i] == pytest.approx(float(g.y))
        assert parts["readout"][i] == pytest.approx(float(full), rel=1e-5, abs=1e-6)
        with torch.no_grad():
            assert parts["target"][i] == pytest.approx(float(model.head(h[t])), rel=1e-5,
                                                       abs=1e-6)
        assert parts["varying"][i] == len(varying)
        assert parts["picks"][i] == sum(bool(h[t, c] == pick[c]) for c in varying)
        assert parts["alone"][i] == sum(bool(h[t, c] == pick[c]) and hits[c] == 1
                                        for c in varying)
        assert parts["source"][i] == sum(bool(h[s, c] == pick[c]) for c in varying)
        assert parts["other"][i] == sum(any(bool(h[v, c] == pick[c]) for v in others_nodes)
                                        for c in varying)
        assert parts["zero"][i] == sum(bool(pick[c] == 0) for c in varying)
        single = [c for c in varying if hits[c] == 1]
        assert parts["single"][i] == len(single)
        rest_zero = [sum(bool(h[v, c] == 0) for v in range(g.num_nodes)
                         if h[v, c] != pick[c]) / (g.num_nodes - 1) for c in single]
        assert parts["others_zero"][i] == pytest.approx(sum(rest_zero))
        some_zero += any(0 < z < 1 for z in rest_zero)
        # The s-t shortest path by Floyd-Warshall on the graph's own edge weights.
        d = torch.full((g.num_nodes, g.num_nodes), float("inf"), dtype=torch.double)
        d.fill_diagonal_(0)
        d[g.edge_index[0], g.edge_index[1]] = g.edge_attr.view(-1).double()
        for k in range(g.num_nodes):
            d = torch.minimum(d, d[:, k:k + 1] + d[k:k + 1, :])
        on = [v for v in range(g.num_nodes)
              if math.isclose(d[s, v] + d[v, t], d[s, t], rel_tol=1e-9)]
        off = [v for v in range(g.num_nodes) if v not in on]
        assert s in on and t in on
        inner += len(on) > 2
        assert parts["path"][i] == sum(any(bool(h[v, c] == pick[c]) for v in on)
                                       for c in varying)
        assert parts["off_path"][i] == sum(any(bool(h[v, c] == pick[c]) for v in off)
                                           for c in varying)
        assert parts["path_nodes"][i] == pytest.approx(len(on) / g.num_nodes)
        ties += sum(n > 1 for n in hits.values())
        alone_differs += parts["picks"][i] != parts["alone"][i]
        zeros += parts["zero"][i] > 0
        others += parts["other"][i] > 0
        flat += len(varying) < h.size(1)
    assert int(parts["width"]) == 6
    # The cases the counts must tell apart occur in these graphs.
    assert others > 0 and parts["varying"].sum() > 0 and parts["single"].sum() > 0
    assert inner > 0            # paths through a node besides the source and the target
    assert 0 < parts["path"].sum() and 0 < parts["off_path"].sum()
    if readout == "min":
        assert ties > 0 and zeros > 0 and flat > 0 and alone_differs > 0
    else:       # some but not all of the other nodes at the floor
        assert some_zero > 0


def test_split_parts_needs_one_source_and_one_target():
    model = MessageMLPGNN(3, 1, 4, 1, "min", "min", edge_dim=1).eval()
    graph = _graphs(1)[0]
    graph.x[:, 1] = 0.0
    with pytest.raises(ValueError, match="one source and one target"):
        diag.split_parts(model, [graph], batch_size=2)


def test_error_parts_of_no_graphs_are_nan():
    empty = np.array([])
    assert np.isnan(diag.part_mape(empty, empty))
    assert np.isnan(diag.signed(empty, empty))
    assert diag.signed(np.array([8.0, 12.0]), np.array([10.0, 10.0])) == pytest.approx(0.0)
    assert diag.signed(np.array([8.0]), np.array([10.0])) == pytest.approx(-20.0)


@pytest.mark.parametrize(("args", "message"), [
    (["--configs", "gnp"], "['gnp'] are not fixed configurations"),
    (["--configs", "nosuch"], "expected some of sum-sum"),
    (["--configs", "min-min,min-min"], "expected distinct comma-separated configuration"),
    (["--configs", "min-min,"], "expected distinct comma-separated configuration"),
    (["--seeds", "x"], "--seeds 'x' is invalid; expected comma-separated non-negative"),
    (["--seeds", "-1"], "'-1' is not one"),
    (["--seeds", "0,0"], "0 is given more than once"),
    (["--seeds", "0,,1"], "has an empty item"),
    (["--profile", "sets"], "invalid choice: 'sets'"),
])
def test_bad_configs_seeds_and_profiles_are_refused_before_training(args, message, capsys):
    with pytest.raises(SystemExit):
        diag.main(["--profile", "quick", "--configs", "min-min", *args])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "epoch=3"], "'epoch' is not a hyperparameter"),
    (["--data", "num_trin=3"], "no parameter num_trin"),
    (["--data", "num_train=-3"], "num_train=-3 is invalid"),
])
def test_bad_overrides_are_refused_by_name(args, message):
    with pytest.raises(SystemExit, match=message):
        diag.main(["--profile", "quick", "--configs", "min-min", "--seeds", "0", *args])


def test_data_overrides_reach_the_task_only():
    from gnpool.bench.profiles import PROFILES

    changed = diag.with_data(PROFILES["standard"], {"num_train": 10})
    for before, after in zip(PROFILES["standard"].tasks, changed.tasks, strict=True):
        if after.task == "shortest_path":
            assert after.data == {**before.data, "num_train": 10}
        else:
            assert after == before


def test_figures_from_parts():
    parts = {"y": np.array([10.0, 20.0, 5.0]), "readout": np.array([9.0, 16.0, 5.0]),
             "target": np.array([10.0, 18.0, 4.0]), "varying": np.array([2.0, 1.0, 1.0]),
             "picks": np.array([2.0, 0.0, 1.0]), "alone": np.array([1.0, 0.0, 1.0]),
             "source": np.array([0.0, 1.0, 0.0]), "other": np.array([1.0, 0.0, 0.0]),
             "zero": np.array([1.0, 0.0, 0.0]), "single": np.array([1.0, 1.0, 1.0]),
             "others_zero": np.array([0.5, 1.0, 0.0]), "path": np.array([2.0, 1.0, 0.0]),
             "off_path": np.array([1.0, 0.0, 1.0]), "path_nodes": np.array([0.5, 0.2, 0.3]),
             "width": np.array(4)}
    got = diag.figures(parts, train_max=15.0)
    assert got["mape_readout"] == pytest.approx(100 * (0.1 + 0.2 + 0.0) / 3)
    assert got["mape_target"] == pytest.approx(100 * (0.0 + 0.1 + 0.2) / 3)
    assert got["varying"] == pytest.approx(4 / 12)
    assert got["picks_target"] == pytest.approx(3 / 4)
    assert got["picks_target_alone"] == pytest.approx(2 / 4)
    assert got["picks_source"] == pytest.approx(1 / 4)
    assert got["picks_other"] == pytest.approx(1 / 4)
    assert got["readout_zero"] == pytest.approx(1 / 4)
    assert got["single_node"] == pytest.approx(3 / 4)
    assert got["single_others_zero"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert got["picks_path"] == pytest.approx(3 / 4)
    assert got["picks_off_path"] == pytest.approx(2 / 4)
    assert got["path_nodes"] == pytest.approx(1.0 / 3)
    # Distance 20 lies beyond the training maximum, 10 and 5 within it.
    assert got["far_share"] == pytest.approx(1 / 3)
    assert got["near_mape_readout"] == pytest.approx(100 * (0.1 + 0.0) / 2)
    assert got["near_mape_target"] == pytest.approx(100 * (0.0 + 0.2) / 2)
    assert got["far_mape_readout"] == pytest.approx(20.0)
    assert got["far_signed_readout"] == pytest.approx(-20.0)
    assert got["far_signed_target"] == pytest.approx(-10.0)


def test_figures_with_nothing_varying_or_beyond():
    parts = {"y": np.array([4.0]), "readout": np.array([4.0]), "target": np.array([4.0]),
             "varying": np.array([0.0]), "picks": np.array([0.0]),
             "alone": np.array([0.0]), "source": np.array([0.0]), "other": np.array([0.0]),
             "zero": np.array([0.0]), "single": np.array([0.0]),
             "others_zero": np.array([0.0]), "path": np.array([0.0]),
             "off_path": np.array([0.0]), "path_nodes": np.array([0.5]),
             "width": np.array(3)}
    got = diag.figures(parts, train_max=15.0)
    assert got["varying"] == 0.0
    assert np.isnan(got["picks_target"]) and np.isnan(got["single_others_zero"])
    assert got["far_share"] == 0.0
    assert np.isnan(got["far_mape_readout"])
    assert got["near_mape_readout"] == 0.0


def test_shift_splits_change_one_thing_each(tmp_path):
    from types import SimpleNamespace

    spec = SimpleNamespace(data={"num_train": 4, "num_val": 2, "num_test": 12},
                           data_root=str(tmp_path))
    splits = diag.shift_splits(spec, tune_seed=7)
    assert set(splits) == {"shift_size", "shift_weights", "shift_families"}

    def nodes(name):
        return [g.num_nodes for g in splits[name]]

    def weights(name):
        return torch.cat([g.edge_attr.view(-1) for g in splits[name]])

    assert all(50 <= n < 70 for n in nodes("shift_size"))
    assert all(20 <= n < 40 for n in nodes("shift_weights") + nodes("shift_families"))
    for name in ("shift_size", "shift_families"):
        assert float(weights(name).max()) <= 5.0
    assert float(weights("shift_weights").max()) > 5.0
    assert float(weights("shift_weights").max()) <= 10.0
    trained = set(diag.task_info("shortest_path").params["train_families"])

    def families(name):
        return {splits[name].family(i) for i in range(len(splits[name]))}

    assert families("shift_size") <= trained
    assert families("shift_weights") <= trained
    assert not families("shift_families") <= trained


def test_summary_tables_seed_by_seed(tmp_path):
    rows = [{"config": c, "seed": seed, "split": split, "mape_readout": m,
             "picks_target_alone": a, "picks_source": 1 - a, "hp_hash": h}
            for c, seed, split, m, a, h in [("min-min", 1, "test_extrap", 9.88, 0.11, "x"),
                                            ("min-min", 0, "test_extrap", 9.66, 0.15, "x"),
                                            ("min-max", 0, "test_extrap", 8.8, 0.94, "y"),
                                            ("min-max", 0, "shift_weights", 9.26, 0.941,
                                             "y")]]
    text = diag.summary(rows)
    assert "| split | min-max (seeds 0) | min-min (seeds 0, 1) |" in text
    assert "| test_extrap | 8.8 | 9.66, 9.88 |" in text
    assert "| shift_weights | 9.26 | -, - |" in text
    assert "| test_extrap | 0.94 | 0.15, 0.11 |" in text
    assert "| test_extrap | 0.06 | 0.85, 0.89 |" in text
    assert "test_interp" not in text
    # Files written before the others-at-0 figure existed get no such table; where some
    # rows have it, the others show "-".
    assert "other nodes at 0" not in text
    floors = diag.summary([{**r, "single_others_zero": 0.97} if r["config"] == "min-max"
                           else r for r in rows])
    assert "other nodes at 0" in floors
    assert "| test_extrap | 0.97 | -, - |" in floors
    # A seed missing from one split stays in its place.
    gap = diag.summary(rows + [{**rows[0], "seed": 2, "split": "tune"}])
    assert "| tune | - | -, -, 9.88 |" in gap
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    assert diag.main(["--summary", str(path)]) == 0
    with pytest.raises(SystemExit, match="cannot read"):
        diag.main(["--summary", str(tmp_path / "missing.json")])
    with pytest.raises(ValueError, match="different settings"):
        diag.summary(rows + [{**rows[0], "seed": 5, "hp_hash": "z"}])
    with pytest.raises(ValueError, match="two rows of config 'min-min', seed 1"):
        diag.summary(rows + [dict(rows[0])])
    path.write_text(json.dumps(rows + [dict(rows[0])]))
    with pytest.raises(SystemExit, match=r"--summary .*rows\.json: two rows of config "
                                         r"'min-min', seed 1, split 'test_extrap'"):
        diag.main(["--summary", str(path)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps([rows[0]]))
    again = tmp_path / "again.json"
    again.write_text(json.dumps([rows[0]]))
    with pytest.raises(SystemExit, match=r"--summary .*other\.json .*again\.json: two rows "
                                         r"of config 'min-min', seed 1, split 'test_extrap'"):
        diag.main(["--summary", str(other), str(again)])
    for bad, message in (("{}", "holds no rows"), ("[]", "holds no rows"),
                         ("[1, 2]", "holds no rows"), ('[{"config": "a"}]', "holds no rows"),
                         ("zz", "is not JSON")):
        path.write_text(bad)
        with pytest.raises(SystemExit, match=message):
            diag.main(["--summary", str(path)])


def test_shift_splits_keep_training_node_features(tmp_path):
    from types import SimpleNamespace

    spec = SimpleNamespace(data={"num_train": 4, "num_val": 2, "num_test": 8,
                                 "extrap_range": (-10.0, 10.0)}, data_root=str(tmp_path))
    for name, split in diag.shift_splits(spec, tune_seed=3).items():
        features = torch.cat([g.x[:, 0] for g in split])
        assert float(features.abs().max()) <= 5.0, name
    reported = diag.load_task("shortest_path", "test_extrap", root=str(tmp_path), seed=3,
                              progress=False, **spec.data)
    assert float(torch.cat([g.x[:, 0] for g in reported]).abs().max()) > 5.0


def test_json_keeps_the_runs_that_finished_before_an_interruption(tmp_path, monkeypatch):
    from gnpool.bench.train import build_model

    calls = []

    def fake_train(info, splits, config, hp, seed, *_args):
        # An untrained model of the run's configuration; the second run is interrupted.
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        torch.manual_seed(seed)
        return build_model(info, config, hp), {}, {}, {}

    monkeypatch.setattr(diag, "_train", fake_train)
    out = tmp_path / "rows.json"
    with pytest.raises(KeyboardInterrupt):
        diag.main(["--profile", "quick", "--configs", "min-min", "--seeds", "0,1",
                   "--data", "num_train=6", "--data", "num_val=4", "--data", "num_test=4",
                   "--data-root", str(tmp_path / "data"), "--json", str(out)])
    rows = json.loads(out.read_text())
    assert calls == [0, 1]
    assert {r["seed"] for r in rows} == {0}
    assert [r["split"] for r in rows] == ["val", "test_interp", "test_extrap", "tune",
                                          "shift_size", "shift_weights", "shift_families"]
    assert all(r["mape_committed"] is None for r in rows)   # other data: no committed run
