"""The smoke profile end to end: rows, skipping, failures, interruption, workers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from gnpool.bench import runner
from gnpool.bench.configs import LAF_UNITS, PoolingConfig
from gnpool.bench.db import RunDB
from gnpool.bench.profiles import Profile, get_profile
from gnpool.bench.runner import plan, run_grid

SMOKE = get_profile("smoke")
BROKEN = {"max_degree": [PoolingConfig("broken", "no-such-aggr", "max")]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def test_grid_writes_rows_skips_finished_and_records_failures(tmp_path, data_root):
    db_path = tmp_path / "runs.sqlite"
    specs = plan(SMOKE, data_root=data_root)
    first = run_grid(specs, db_path, progress=False)
    assert (first.planned, first.executed, first.finished, first.failed) == (6, 6, 6, 0)
    with RunDB(db_path) as db:
        rows = db.rows()
    assert {(r["task"], r["config"]) for r in rows} == {
        ("max_degree", "sum-max"), ("max_degree", "sum-sum"), ("max_degree", "gnp"),
        ("set_max", "max"), ("set_max", "sum"), ("set_max", "gnp")}
    for row in rows:
        assert row["status"] == "finished" and row["error"] is None
        assert all(math.isfinite(row[k]) for k in ("mape_val", "mape_interp", "mape_extrap"))
        assert row["hparams"]["epochs"] == 2 and row["versions"]["torch"]
        assert row["bins"]["extrap"] and row["wall_seconds"] > 0
        assert row["profile"] == "smoke" and row["level"] in ("graph", "set")
        assert bool(row["gnp"]) == (row["config"] == "gnp")
    gnp = next(r for r in rows if r["task"] == "max_degree" and r["config"] == "gnp")
    assert [m["name"] for m in gnp["gnp"]] == ["convs.0.aggr_module", "convs.1.aggr_module",
                                               "readout"]

    again = run_grid(specs, db_path, progress=False)
    assert (again.executed, again.skipped) == (0, 6)

    with_broken = plan(SMOKE, data_root=data_root, extra_configs=BROKEN)
    third = run_grid(with_broken, db_path, progress=False)
    assert (third.executed, third.failed, third.skipped) == (1, 1, 6)
    assert "max_degree/broken/s0" in third.failures[0]
    with RunDB(db_path) as db:
        (failed,) = db.rows(status="failed")
        assert len(db.rows(status="finished")) == 6
    assert failed["config"] == "broken" and "no-such-aggr" in failed["error"]
    assert failed["mape_extrap"] is None

    assert run_grid(with_broken, db_path, progress=False).executed == 1     # retried
    assert run_grid(with_broken, db_path, progress=False, retry_failed=False).executed == 0


def test_interruption_keeps_every_finished_run(tmp_path, data_root, monkeypatch):
    specs = plan(SMOKE, data_root=data_root, tasks=["max_degree"])
    real = runner.execute
    calls = []

    def interrupted_on_second(spec, *args, **kwargs):
        calls.append(spec)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(runner, "execute", interrupted_on_second)
    summary = run_grid(specs, tmp_path / "runs.sqlite", progress=False)
    assert summary.interrupted and summary.finished == 1
    with RunDB(tmp_path / "runs.sqlite") as db:
        assert [r["config"] for r in db.rows()] == [specs[0].config.name]
    monkeypatch.setattr(runner, "execute", real)
    resumed = run_grid(specs, tmp_path / "runs.sqlite", progress=False)
    assert (resumed.skipped, resumed.executed) == (1, 2)


def test_workers_run_in_parallel_processes(tmp_path, data_root):
    specs = plan(SMOKE, data_root=data_root, tasks=["set_max"], configs=["max", "gnp"])
    specs += plan(SMOKE, data_root=data_root, tasks=["max_degree"], configs=["broken"],
                  extra_configs=BROKEN)
    summary = run_grid(specs, tmp_path / "runs.sqlite", workers=2, progress=False)
    assert (summary.executed, summary.finished, summary.failed) == (3, 2, 1)
    with RunDB(tmp_path / "runs.sqlite") as db:
        statuses = {r["config"]: r["status"] for r in db.rows()}
    assert statuses == {"max": "finished", "gnp": "finished", "broken": "failed"}


def test_plan_filters_and_keys(data_root):
    specs = plan(SMOKE, tasks=["set_max"], configs=["gnp"], seeds=[3, 4])
    assert [(s.task, s.config.name, s.seed) for s in specs] == [("set_max", "gnp", 3),
                                                                ("set_max", "gnp", 4)]
    longer = plan(SMOKE, tasks=["set_max"], configs=["gnp"], seeds=[3], hparams={"epochs": 9})
    assert longer[0].hparams.epochs == 9 and longer[0].hp_hash != specs[0].hp_hash
    assert plan(SMOKE, data_root=data_root)[0].hp_hash == plan(SMOKE)[0].hp_hash
    with pytest.raises(ValueError, match="tasks=\\['set_sum'\\] are not in profile 'smoke'"):
        plan(SMOKE, tasks=["set_sum"])
    with pytest.raises(ValueError, match="configs=\\['nope'\\] match no task"):
        plan(SMOKE, configs=["nope"])
    with pytest.raises(ValueError, match="workers must be a positive int"):
        run_grid(specs, "unused.sqlite", workers=0)


def test_baseline_configurations_run_through_the_grid(tmp_path, data_root):
    # The smoke profile's tasks and sizes with the baselines' configurations instead.
    baselines = ("laf", "genagg", "deepsets", "settransformer", "variancepreserving")
    tiny = Profile("tiny", "the baselines on the smoke profile's data",
                   tasks=tuple(replace(tp, configs=baselines) for tp in SMOKE.tasks))
    specs = plan(tiny, data_root=data_root)
    assert len(specs) == 10
    summary = run_grid(specs, tmp_path / "runs.sqlite", progress=False)
    assert (summary.finished, summary.failed) == (10, 0), summary.failures
    with RunDB(tmp_path / "runs.sqlite") as db:
        rows = db.rows()
    assert {(r["task"], r["config"]) for r in rows} == {
        (t, c) for t in ("max_degree", "set_max") for c in baselines}
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("mape_val", "mape_interp", "mape_extrap"))
    laf = next(r for r in rows if r["task"] == "max_degree" and r["config"] == "laf")
    assert laf["config_def"]["aggr"] == "laf" and laf["config_def"]["aggr_kwargs"] == {
        "units": LAF_UNITS}
    ds = next(r for r in rows if r["task"] == "max_degree" and r["config"] == "deepsets")
    assert (ds["config_def"]["aggr"], ds["config_def"]["readout"]) == ("sum", "deepsets")


def test_commit_marker_ignores_committed_results_but_not_code(tmp_path, monkeypatch):
    import subprocess

    from gnpool.bench import runner

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "experiments" / "results").mkdir(parents=True)
    (tmp_path / "experiments" / "results" / "report.md").write_text("a")
    (tmp_path / "code.py").write_text("x = 1")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.setattr(runner, "_CHECKOUT", tmp_path)
    clean = runner._git_commit()
    assert clean is not None and not clean.endswith("+dirty")
    # A report rewritten by a grid run is an output: the commit stays clean ...
    (tmp_path / "experiments" / "results" / "report.md").write_text("b")
    assert runner._git_commit() == clean
    # ... a changed source file is not.
    (tmp_path / "code.py").write_text("x = 2")
    assert runner._git_commit() == clean + "+dirty"


def test_set_overrides_a_configurations_own_settings_and_errors_name_it():
    from gnpool.bench.profiles import GNP_OVERRIDES

    quick = get_profile("quick")
    assert GNP_OVERRIDES["retrain_select_activation"] is True     # stage 29: two retrains
    (spec,) = plan(quick, tasks=["set_max"], configs=["gnp"], seeds=[0],
                   hparams={"retrain_select_activation": False, "select_relu_margin": 1.0,
                            "retrain_conjugates": False, "last_activation": True,
                            "retrain_first_ending": True, "conjugate_margin": 1.0,
                            "retrain_classic_r2": None})
    assert spec.hparams.retrain_select_activation is False
    assert spec.hparams.last_activation is True
    assert spec.hparams.retrain == GNP_OVERRIDES["retrain"]       # the rest of the recipe
    assert spec.hparams.flush_denormal is True
    # The margin and the conjugates (stage 30) need the ReLU-ended retrain they compete
    # with, and stages 35's and 36's settings the retrains they act on: dropping what one
    # needs is refused, naming it, one setting at a time.
    no_relu = {"retrain_select_activation": False}
    refused = [(no_relu, "retrain_conjugates=True applies only with "
                         "retrain_select_activation=True"),
               ({**no_relu, "retrain_conjugates": False, "retrain_first_ending": True,
                 "conjugate_margin": 1.0, "retrain_classic_r2": None},
                "select_relu_margin=5.0 applies only with retrain_select_activation=True"),
               ({"retrain_conjugates": False},
                "conjugate_margin=2.0 applies only with retrain_conjugates=True"),
               ({"retrain_conjugates": False, "conjugate_margin": 1.0},
                "retrain_classic_r2=0.9 applies only with retrain_conjugates=True"),
               ({**no_relu, "retrain_conjugates": False, "conjugate_margin": 1.0,
                 "retrain_classic_r2": None},
                "retrain_first_ending=False applies only with "
                "retrain_select_activation=True"),
               ({"select_channels": False},
                "select_channels_retrain=False applies only with select_channels=True")]
    for hparams, message in refused:
        with pytest.raises(ValueError, match=message):
            plan(quick, tasks=["set_max"], configs=["gnp"], seeds=[0], hparams=hparams)
    (default,) = plan(quick, tasks=["set_max"], configs=["gnp"], seeds=[0])
    assert default.hparams.retrain_select_activation is True
    assert default.hparams.select_relu_margin == 5.0
    assert default.hparams.retrain_conjugates is True
    assert default.hparams.flush_denormal is True
    assert default.hparams.last_activation == "softplus"
    assert default.hparams.retrain_last_activation is False
    assert default.hparams.retrain_first_ending is False           # stage 35
    assert default.hparams.conjugate_margin == 2.0                 # stage 36
    assert default.hparams.retrain_classic_r2 == 0.9               # stage 38
    assert default.hparams.select_channels_retrain is False        # stage 40
    # Valid for GNP, whose recipe retrains; invalid for a fixed configuration, named.
    plan(quick, tasks=["set_max"], configs=["gnp"], seeds=[0],
         hparams={"retrain_select_activation": True})
    with pytest.raises(ValueError, match=r"configuration 'max' of task 'set_max': "
                                         r"hyperparameter retrain_select_activation=True"):
        plan(quick, tasks=["set_max"], configs=["max"], seeds=[0],
             hparams={"retrain_select_activation": True})
