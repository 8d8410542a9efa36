"""The Markdown report, from rows alone."""

from __future__ import annotations

import pytest

from gnpool.bench.report import collect, fmt, known_good, render_markdown, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def fake_rows() -> list[dict]:
    rows = []

    def add(task, config, fixed, extrap, seed=0, status="finished", gnp=None):
        bins = {"interp": [{"lo": 20, "hi": 25, "count": 3, "mean_size": 22.0, "mape": 1.0},
                           {"lo": 25, "hi": 30, "count": 3, "mean_size": 27.0, "mape": 2.0}],
                "extrap": [{"lo": 50, "hi": 75, "count": 3, "mean_size": 60.0, "mape": extrap},
                           {"lo": 75, "hi": 100, "count": 3, "mean_size": 90.0,
                            "mape": 2 * extrap}]}
        rows.append({"task": task, "config": config, "seed": seed, "status": status,
                     "config_def": {"fixed": fixed}, "mape_interp": 1.0,
                     "mape_extrap": extrap if status == "finished" else None,
                     "bins": bins if status == "finished" else None, "gnp": gnp or []})

    gnp_params = [{"name": "convs.0.aggr_module", "p": [1.0, -2.0], "q": [0.0, 0.1],
                   "p_init": [1.0, -1.0], "q_init": [0.0, 0.0]},
                  {"name": "readout", "p": [50.0, 1.0], "q": [1.0, 1.0],
                   "p_init": [40.0, 1.0], "q_init": [1.0, 1.0]}]
    for seed, scale in ((0, 1.0), (1, 1.2)):
        add("max_degree", "sum-max", True, 4.0 * scale, seed)
        add("max_degree", "sum-sum", True, 40.0 * scale, seed)
        add("max_degree", "gnp", False, 5.0 * scale, seed, gnp=gnp_params)
        add("max_degree", "softmax", False, 30.0, seed)
        add("max_degree", "laf", False, 8.0 + seed, seed)
        add("max_degree", "variancepreserving", False, 3.0, seed)
        add("set_l2", "sum", True, 20.0, seed)
        add("set_l2", "max", True, 10.0, seed)
        add("set_l2", "gnp", False, 30.0, seed, gnp=[{"name": "pooling", "p": [2.0],
                                                      "q": [0.0], "p_init": [1.0],
                                                      "q_init": [0.0]}])
    add("set_l2", "attsets", False, 0.0, status="failed")
    return rows


def test_fmt():
    assert fmt([]) == "-"
    assert fmt([2.0]) == "2"
    assert fmt([1.0, 3.0]) == "2 ± 1.4"


def test_known_good():
    assert known_good("max_degree") == "sum-max"
    assert known_good("shortest_path") == "min-min"
    assert known_good("node_neighbour_max") == "max"
    assert known_good("set_min") == "min"
    assert known_good("set_l2") is None and known_good("set_range") is None


def test_best_fixed_is_marked_and_gnp_ratio_given():
    cells = collect(fake_rows())
    text = render_markdown(cells, "T")
    summary = text.split("## Summary")[1].split("\n## ")[0]
    # PowerMean, GenAgg, DeepSets and the Set Transformer ran on no task: no column;
    # AttSets ran (and failed) on one.
    assert ("| task | known-good | best fixed (extrap) | GNP | AttSets | Softmax | LAF | VPA "
            "| GNP / best fixed |") in summary
    assert ("| `max_degree` | sum-max | sum-max: 4.4 ± 0.57 | 5.5 ± 0.71 | - | 30 ± 0 "
            "| 8.5 ± 0.71 | 3 ± 0 | 1.25x |") in summary
    assert ("| `set_l2` | none exact | max: 10 ± 0 | 30 ± 0 | - | - | - | - "
            "| 3.00x (over 1.5x) |") in summary
    assert "| **`sum-max`** (best fixed) (known-good) | 1 ± 0 | 4.4 ± 0.57 | 2 |" in text
    assert "| **`max`** (best fixed) | 1 ± 0 | 10 ± 0 | 2 |" in text
    assert "| `attsets` | - | - | 0, 1 failed |" in text
    # Fixed configurations first, then GNP, AttSets, PowerMean, Softmax, the baselines;
    # a parameter-free set aggregation (VPA) is not a fixed configuration.
    section = text.split("## `max_degree`")[1]
    assert (section.index("`sum-sum`") < section.index("`gnp`") < section.index("`softmax`")
            < section.index("`laf`") < section.index("`variancepreserving`"))
    assert "**`sum-max`** (best fixed)" in section


def test_write_report_renders_markdown_and_pngs(tmp_path):
    text, files = write_report(fake_rows(), tmp_path, "Report", "intro text")
    assert [f.name for f in files] == ["report.md", "extrapolation.png", "gnp_parameters.png"]
    assert (tmp_path / "report.md").read_text() == text
    assert "intro text" in text and "![extrapolation](extrapolation.png)" in text
    for png in files[1:]:
        data = png.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000


def test_no_plots_and_no_gnp(tmp_path):
    rows = [r for r in fake_rows() if r["config"] != "gnp"]
    _, files = write_report(rows, tmp_path, "Report")
    assert [f.name for f in files] == ["report.md", "extrapolation.png"]
    _, files = write_report(rows, tmp_path / "t", "Report", plots=False)
    assert [f.name for f in files] == ["report.md"]


@pytest.mark.parametrize("missing", ["bins", "gnp"])
def test_rows_without_details_still_render(tmp_path, missing):
    rows = fake_rows()
    for row in rows:
        row[missing] = None
    text, _ = write_report(rows, tmp_path, "Report")
    assert "max_degree" in text


def _gnp_module(name, a, beta, a_neg=None):
    a_neg = [-v for v in a] if a_neg is None else a_neg
    return {"name": name, "p_unit": a, "beta": beta, "p_neg_unit": a_neg,
            "beta_neg": beta}


def test_targets_say_which_hold_with_the_figures():
    from gnpool.bench.report import readout_pooling, targets

    rows = []

    def add(task, config, fixed, extrap, seed, gnp=None):
        rows.append({"task": task, "config": config, "seed": seed, "status": "finished",
                     "config_def": {"fixed": fixed}, "mape_interp": 1.0,
                     "mape_extrap": extrap, "gnp": gnp or []})

    for seed in (0, 1):
        add("set_max", "max", True, 1.0, seed)
        add("set_max", "gnp", False, 1.1, seed,
            [_gnp_module("pooling", [1.0], [0.0] if seed == 0 else [0.6])])
        add("set_max", "powermean", False, 5.0, seed)
        add("set_l2", "max", True, 10.0, seed)
        add("set_l2", "gnp", False, 16.0, seed, [_gnp_module("pooling", [0.7], [0.5], [0.7])])
        add("set_l2", "softmax", False, 12.0, seed)
    lines = targets(collect(rows))
    assert "every task: **missed** (`set_l2` 1.60x)" in lines[0]
    assert "at least half of the tasks (1 of 2): **met** (1: `set_max`)" in lines[1]
    assert "**missed** (`set_l2` (Softmax 12 ± 0 vs GNP 16 ± 0))" in lines[2]
    # set_max's readout is exactly max in seed 0 and n^0.6 * max in seed 1.
    assert "`set_max`: expected max, got max, none" in lines[3] and "**missed**" in lines[3]
    assert readout_pooling(rows[1]) == "max" and readout_pooling(rows[3]) is None


def test_a_missed_readout_says_why_from_the_figures():
    from gnpool.bench.report import targets

    rows = []

    def add(task, config, fixed, extrap, seed, gnp=None, candidates=None):
        rows.append({"task": task, "config": config, "seed": seed, "status": "finished",
                     "config_def": {"fixed": fixed}, "mape_interp": 1.0,
                     "mape_extrap": extrap, "gnp": gnp or [], "candidates": candidates})

    for seed in (0, 1):
        add("shortest_path", "min-max", True, 10.0, seed)
        add("shortest_path", "min-min", True, 15.0, seed)
        # The aggregation at min, the readout at max (p_unit +1: the max).
        add("shortest_path", "gnp", False, 10.0, seed,
            [_gnp_module("convs.0.aggr_module", [-1.0], [0.0]),
             _gnp_module("readout", [1.0], [0.0])])
        readout = [1.0] if seed == 0 else [0.0]       # seed 1's readout: the mean
        add("set_max", "max", True, 1.0, seed)
        module = {**_gnp_module("pooling", readout, [0.0]),
                  "selection": {"kept": "per_channel" if seed else "shared"},
                  "retrain": {"kept": True,
                              "last_activation": {"kept": "linear" if seed else "relu"}}}
        add("set_max", "gnp", False, 1.0, seed, [module],
            {"kept": "per_channel/linear" if seed else "shared/relu",
             "models": {"per_channel/linear": {"val_mse": 1e-6},
                        "shared/relu": {"val_mse": 3e-5},
                        "shared/relu-conjugate-1": {"val_mse": 2e-5}}})
    lines = targets(collect(rows))
    readout = next(i for i, line in enumerate(lines) if "`closest_pooling()`" in line)
    assert "**missed**" in lines[readout]
    reasons = lines[readout + 1:]
    assert reasons == [
        "  - `shortest_path`: the best fixed configuration, min-max, reads max; the "
        "known-good min-min extrapolates at 1.50x its MAPE (15 against 10); seed 0 kept: "
        "ReLU-ended; seed 1 kept: ReLU-ended",
        "  - `set_max`: seed 1 kept: one per channel, retrained linear-ended "
        "(validation MSE 1e-06 against the ReLU-ended retrain's 2e-05)"]


def test_seed_spread_lists_every_seed_and_both_ratios():
    from gnpool.bench.report import seed_spread

    rows = []
    for seed, (fixed, gnp) in enumerate([(1.0, 1.5), (2.0, 2.0), (4.0, 20.0)]):
        for config, value in (("max", fixed), ("gnp", gnp)):
            rows.append({"task": "set_max", "config": config, "seed": seed,
                         "status": "finished", "config_def": {"fixed": config == "max"},
                         "mape_interp": 1.0, "mape_extrap": value, "gnp": []})
    text = seed_spread(collect(rows))
    # Means 7.83 / 2.33 = 3.36x; medians 2 / 2 = 1x; fixed max's seeds 4 / 1 = 4x apart.
    assert "| `set_max` | max: 1, 2, 4 | 1.5, 2, 20 | 3.36x | 1.00x | 4.0x |" in text
    assert "## Seed spread" in render_markdown(collect(rows), "T")
    assert seed_spread(collect([r for r in rows if r["config"] != "gnp"])) == ""


def test_gnp_runs_name_the_kept_model_and_its_poolings():
    from gnpool.bench.report import gnp_runs, kept_model

    search = {"kept": False, "to": [["sum", "mean"]], "last_activation": {"kept": "linear"}}
    retrained = {"kept": True, "to": [["max", "min"]], "last_activation": {"kept": "relu"}}
    per_channel = {"kept": True, "to": [["min", "max"]] * 3 + [["mean", "mean"]],
                   "last_activation": None}
    hp = {"last_activation": "softplus", "retrain_last_activation": False}

    def row(seed, retrain, kept, modules):
        for module in modules:
            module["retrain"] = retrain
            module["selection"] = {"kept": kept}
        return {"task": "set_max", "config": "gnp", "seed": seed, "status": "finished",
                "config_def": {"fixed": False}, "mape_interp": 1.0, "mape_extrap": 0.5 + seed,
                "hparams": hp, "gnp": modules}

    rows = [row(2, search, "shared", [_gnp_module("pooling", [1.0], [0.0])]),
            row(0, retrained, "shared", [_gnp_module("pooling", [1.0], [0.0])]),
            row(1, per_channel, "per_channel",
                [_gnp_module("pooling", [-1.0] * 4, [0.0] * 4, [1.0] * 4)])]
    assert kept_model(rows[0]) == "one pooling per GNP, search (softplus-ended)"
    # A search trained again ReLU-ended, and kept so (search_refit_r2): ReLU-ended; one
    # whose first, softplus-ended search was kept stays softplus-ended.
    for kept, ending in (("relu", "ReLU"), ("first", "softplus")):
        refit = {**search, "search_refit": {"r2": 0.3, "kept": kept}}
        assert kept_model(row(4, refit, "shared", [_gnp_module("pooling", [1.0], [0.0])])) == (
            f"one pooling per GNP, search ({ending}-ended)")
    assert kept_model(rows[1]) == "one pooling per GNP, retrained ReLU-ended"
    # No record of the ending: the run's retrain_last_activation (False: linear).
    assert kept_model(rows[2]) == "one per channel, retrained linear-ended"
    # retrain_first_ending=False: the model with one pooling per GNP retrains ReLU-ended
    # alone (no record of the ending either); the per-channel model stays linear-ended.
    one_ending = {**hp, "retrain_select_activation": True, "retrain_first_ending": False}
    alone = {**retrained, "last_activation": None}
    assert kept_model({**row(3, alone, "shared", [_gnp_module("pooling", [1.0], [0.0])]),
                       "hparams": one_ending}) == "one pooling per GNP, retrained ReLU-ended"
    assert kept_model({**rows[2], "hparams": one_ending}) == (
        "one per channel, retrained linear-ended")
    # ... and linear-ended alone after ReLU-ended searches.
    relu_first = {**one_ending, "last_activation": True, "retrain_last_activation": None}
    assert kept_model({**row(3, alone, "shared", [_gnp_module("pooling", [1.0], [0.0])]),
                       "hparams": relu_first}) == "one pooling per GNP, retrained linear-ended"
    # Without selection or retrain: the run's own ending.
    plain = {"hparams": {"last_activation": True}, "gnp": [_gnp_module("pooling", [1.0], [0.0])]}
    assert kept_model(plain) == "ReLU-ended"
    assert kept_model({"gnp": []}) == "-"
    text = gnp_runs(collect(rows))
    lines = text.splitlines()
    # In seed order; a retrained model's parts as set, a search's closest_pooling().
    assert lines[2] == ("| `set_max` | 0 | 0.5 | one pooling per GNP, retrained ReLU-ended | "
                        "pooling: [max, min] |")
    assert lines[3] == ("| `set_max` | 1 | 1.5 | one per channel, retrained linear-ended | "
                        "pooling: [min, max] (75% of channels, positive part min in 75%) |")
    assert lines[4] == ("| `set_max` | 2 | 2.5 | one pooling per GNP, search "
                        "(softplus-ended) | pooling: max |")
    assert "## GNP's runs" in render_markdown(collect(rows), "T")
    assert gnp_runs(collect([{**r, "gnp": []} for r in rows])) == ""


def test_gnp_runs_survive_odd_records_and_name_them():
    from gnpool.bench.report import _most_common, gnp_runs, kept_model, module_pooling

    good = _gnp_module("pooling", [1.0], [0.0])
    nan = {**_gnp_module("pooling", [1.0], [float("nan")])}
    missing = {"name": "pooling", "p_unit": [1.0]}
    # Ties go to the first name alphabetically, whatever the hash seed.
    assert _most_common(["min", "max", "max", "min"]) == "max (50% of channels)"
    assert module_pooling(nan) == "unreadable parameters (ValueError)"
    assert module_pooling(missing) == "unreadable parameters (KeyError)"
    # A retrain record whose `to` does not match the channels falls back to the parameters.
    wrong = {**good, "retrain": {"kept": True, "to": [["min", "min"], ["max", "max"]]}}
    rows = [{"task": "set_max", "config": "gnp", "seed": seed, "status": "finished",
             "config_def": {"fixed": False}, "mape_interp": 1.0, "mape_extrap": mape,
             "gnp": gnp} for seed, mape, gnp in ((0, None, [wrong]), (1, 2.0, [nan]),
                                                  (2, 3.0, [{"name": "pooling", "p": [1.0]}]))]
    lines = gnp_runs(collect(rows)).splitlines()
    assert lines[2] == "| `set_max` | 0 | - | retrained ReLU-ended | pooling: max |"
    assert lines[3].endswith("pooling: unreadable parameters (ValueError) |")
    assert lines[4] == "| `set_max` | 2 | 3 | - | (no pooling parameters recorded) |"
    # No hparams: the HParams default (ReLU-ended); an unknown selection is named.
    odd = {"gnp": [{**good, "selection": {"kept": "both"}}]}
    assert kept_model(odd) == "model 'both', ReLU-ended"
    render_markdown(collect(rows), "T")                       # the whole report renders


def test_per_channel_pairs_also_name_the_positive_parts_point():
    from gnpool.bench.report import gnp_runs

    pairs = [["min", "max"]] * 2 + [["min", "mean"]] * 1 + [["max", "max"]] * 1
    module = {**_gnp_module("conv", [-1.0] * 4, [0.0] * 4, [1.0] * 4),
              "retrain": {"kept": True, "to": pairs}}
    row = {"task": "set_max", "config": "gnp", "seed": 0, "status": "finished",
           "config_def": {"fixed": False}, "mape_interp": 1.0, "mape_extrap": 1.0,
           "hparams": {"last_activation": False}, "gnp": [module]}
    text = gnp_runs(collect([row]))
    assert "conv: [min, max] (50% of channels, positive part min in 75%)" in text


def test_gnp_runs_name_a_shared_aggregation_every_layer():
    from gnpool.bench.report import gnp_runs

    conv = {**_gnp_module("convs.0.aggr_module", [-1.0], [0.0]),
            "retrain": {"kept": True, "to": [["min", "max"]]}}
    readout = {**_gnp_module("readout", [1.0], [0.0]),
               "retrain": {"kept": True, "to": [["max", "min"]]}}

    def row(shared):
        return {"task": "shortest_path", "config": "gnp", "seed": 0, "status": "finished",
                "config_def": {"fixed": False}, "mape_interp": 1.0, "mape_extrap": 1.0,
                "hparams": {"last_activation": False, "gnp_share_aggr": shared},
                "gnp": [conv, readout]}

    assert "| every layer: [min, max]; readout: [max, min] |" in gnp_runs(collect([row(True)]))
    assert "| convs.0: [min, max]; readout: [max, min] |" in gnp_runs(collect([row(False)]))


def test_gnp_runs_show_the_parts_set_to_their_mirror():
    from gnpool.bench.report import gnp_runs

    # Snapped to [min, mean] and [max, mean]; the idle negative parts then mirrored
    # (retrain_mirror), except channel 2 of the readout, whose negative part was live.
    conv = {**_gnp_module("convs.0.aggr_module", [-1.0], [0.0]),
            "retrain": {"kept": True, "to": [["min", "mean"]],
                        "mirrored": [["none", "max"]]}}
    readout = {**_gnp_module("readout", [1.0] * 3, [0.0] * 3),
               "retrain": {"kept": True, "to": [["max", "mean"]] * 3,
                           "mirrored": [["none", "min"]] * 2 + [["none", "none"]]}}
    row = {"task": "shortest_path", "config": "gnp", "seed": 0, "status": "finished",
           "config_def": {"fixed": False}, "mape_interp": 1.0, "mape_extrap": 1.0,
           "hparams": {"last_activation": False, "gnp_share_aggr": True},
           "gnp": [conv, readout]}
    text = gnp_runs(collect([row]))
    assert "| every layer: [min, max]; readout: [max, min] (67% of channels, positive " \
           "part max in 100%) |" in text
    # An odd mirror record leaves the snapped points as they are.
    conv["retrain"]["mirrored"] = [["max"]]
    assert "every layer: [min, mean];" in gnp_runs(collect([row]))


def test_fmt_of_a_diverged_run_gives_the_mean_without_a_spread():
    # A finished run without a MAPE (predictions not finite) counts as inf.
    assert fmt([float("inf"), 2.0, 3.0]) == "inf"
    assert fmt([float("nan"), 2.0]) == "nan"


def test_settings_read_a_setting_missing_from_an_older_row_as_its_default():
    # A row made before a setting existed lacks it; a later row of the same configuration
    # records its default. The table must not report the two as different settings.
    from gnpool.bench.report import settings_section

    old = {"task": "set_max", "config": "max", "hparams": {"epochs": 30},
           "data_params": {}}
    new = {"task": "set_max", "config": "max",
           "hparams": {"epochs": 30, "retrain": 0.0, "select_on": "val"}, "data_params": {}}
    gnp = {"task": "set_max", "config": "gnp",
           "hparams": {"epochs": 30, "retrain": 1.0, "select_on": "val"}, "data_params": {}}
    text = settings_section([old, new, gnp])
    assert "| retrain | 0.0 (gnp: 1.0) |" in text
    assert "select_on=\"val\"" in text and "epochs=30" in text


# The search set every layer to max and the readout to max, and the kept retrain
# conjugated the aggregation only: min-max; or the search left the readout at the mean,
# and the kept classic-end retrain conjugated the aggregation and set the readout to min:
# min-min. (Per GNP: searched parts, conjugated, classic end; the report's text and line.)
_CONJUGATE_CASES = {
    "conjugate": ((([["max", "min"]], True, None), ([["max", "min"]], False, None)),
                  "sign conjugate of 1 of 2 GNPs", "readout: [max, min]"),
    "classic end": ((([["max", "min"]], True, "conjugate"), ([["mean", "mean"]], False, "min")),
                    "sign conjugate of 1 of 2 GNPs, 1 of 2 GNPs set to max or min "
                    "(classic ends)", "readout: [min, max]")}


@pytest.mark.parametrize("case", list(_CONJUGATE_CASES))
def test_gnp_runs_show_a_conjugate_retrain_with_its_parts_swapped(case):
    from gnpool.bench.report import gnp_runs, kept_model

    plan, text, readout = _CONJUGATE_CASES[case]
    hp = {"last_activation": "softplus", "retrain_last_activation": False}
    modules = [_gnp_module("convs.0.aggr_module", [-1.0], [0.0], [1.0]),
               _gnp_module("readout", [1.0 if readout.endswith("[max, min]") else -1.0],
                           [0.0], [-1.0 if readout.endswith("[max, min]") else 1.0])]
    for module, (to, conjugated, end) in zip(modules, plan, strict=True):
        module["retrain"] = {"kept": True, "to": to, "conjugated": conjugated,
                             "last_activation": {"kept": "relu"},
                             **({"classic_end": end} if end else {})}
        module["selection"] = {"kept": "shared"}
    row = {"task": "shortest_path", "config": "gnp", "seed": 0, "status": "finished",
           "config_def": {"fixed": False}, "mape_interp": 1.0, "mape_extrap": 2.0,
           "hparams": {**hp, "gnp_share_aggr": True}, "gnp": modules}
    assert kept_model(row) == f"one pooling per GNP, retrained ReLU-ended, {text}"
    line = gnp_runs(collect([row])).splitlines()[2]
    assert line.endswith(f"| every layer: [min, max]; {readout} |")
