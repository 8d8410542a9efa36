"""The grid on Ray: same results as the local executor, failures, Ctrl-C, the command line,
and Ray as an optional dependency that the default path never imports.

Ray's start-up takes seconds: the tests that need Ray share one local instance with 2 CPUs
(module-scoped fixture), which every RayExecutor here reuses.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from gnpool.bench import RayExecutor, runner
from gnpool.bench.__main__ import main
from gnpool.bench.configs import PoolingConfig
from gnpool.bench.db import RunDB
from gnpool.bench.profiles import get_profile
from gnpool.bench.runner import plan, run_grid

SMOKE = get_profile("smoke")
METRICS = ("mape_val", "mape_interp", "mape_extrap", "mape_tune", "val_mse", "best_epoch",
           "history", "bins", "gnp")


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def _rows(path) -> dict:
    with RunDB(path) as db:
        return {(r["task"], r["config"], r["seed"]): r for r in db.rows()}


def test_smoke_profile_gives_the_local_executors_results(ray_local, tmp_path, data_root,
                                                         monkeypatch):
    specs = plan(SMOKE, data_root=data_root)
    # A run's results depend on its torch threads (GNP's kernels split sums across them):
    # one thread per run in both.
    local = run_grid(specs, tmp_path / "local.sqlite", threads=1, progress=False)
    assert (local.finished, local.failed) == (6, 0)

    loads = []
    real_load = runner._load
    monkeypatch.setattr(runner, "_load", lambda spec, progress=False: (
        loads.append(spec.task), real_load(spec, progress))[1])
    on_ray = run_grid(specs, tmp_path / "ray.sqlite", executor=RayExecutor(threads=1),
                      progress=False)
    assert (on_ray.finished, on_ray.failed, on_ray.interrupted) == (6, 0, False)
    # Each task's datasets loaded once, by the driver, for all of its runs.
    assert sorted(loads) == ["max_degree", "set_max"]

    expected, got = _rows(tmp_path / "local.sqlite"), _rows(tmp_path / "ray.sqlite")
    assert got.keys() == expected.keys() and len(got) == 6
    for key, row in got.items():
        assert row["status"] == "finished" and row["hp_hash"] == expected[key]["hp_hash"]
        assert all(math.isfinite(row[m]) for m in ("mape_interp", "mape_extrap", "mape_tune"))
        for metric in METRICS:
            assert row[metric] == expected[key][metric], (key, metric)
        assert row["versions"]["torch"] and row["wall_seconds"] > 0

    again = run_grid(specs, tmp_path / "ray.sqlite", executor=RayExecutor(), progress=False)
    assert (again.skipped, again.executed) == (6, 0)


def test_a_failing_run_is_recorded_and_the_grid_goes_on(ray_local, tmp_path, data_root):
    broken = {"set_max": [PoolingConfig("broken", None, "no-such-pooling")]}
    specs = plan(SMOKE, data_root=data_root, tasks=["set_max"], configs=["max", "broken"],
                 extra_configs=broken)
    summary = run_grid(specs, tmp_path / "runs.sqlite", executor=RayExecutor(),
                       progress=False)
    assert (summary.executed, summary.finished, summary.failed) == (2, 1, 1)
    assert "set_max/broken/s0" in summary.failures[0]
    rows = _rows(tmp_path / "runs.sqlite")
    assert rows["set_max", "max", 0]["status"] == "finished"
    failed = rows["set_max", "broken", 0]
    assert failed["status"] == "failed" and "no-such-pooling" in failed["error"]


def test_interrupt_keeps_finished_runs_and_cancels_the_rest(ray_local, tmp_path, data_root,
                                                            monkeypatch):
    # 12 runs of 1 to 2 s each on 2 CPUs: about 9 s of work left when the first two
    # have finished, if nothing were cancelled.
    specs = plan(SMOKE, data_root=data_root, tasks=["set_max"], seeds=range(4),
                 hparams={"epochs": 600})
    real_wait = ray_local.wait
    calls = []

    def interrupted_wait(refs, *, num_returns=1, timeout=None, **kwargs):
        calls.append(num_returns)
        if timeout is None and len(calls) == 1:
            # Ctrl-C arrives while the driver waits, after two runs have finished.
            real_wait(refs, num_returns=2)
            raise KeyboardInterrupt
        return real_wait(refs, num_returns=num_returns, timeout=timeout, **kwargs)

    monkeypatch.setattr(ray_local, "wait", interrupted_wait)
    summary = run_grid(specs, tmp_path / "runs.sqlite", executor=RayExecutor(),
                       progress=False)
    monkeypatch.setattr(ray_local, "wait", real_wait)
    returned = time.perf_counter()
    assert summary.interrupted
    rows = _rows(tmp_path / "runs.sqlite")
    # The runs that had finished when Ctrl-C came are kept (at least the two awaited).
    assert len(rows) == summary.finished >= 2
    assert all(r["status"] == "finished" for r in rows.values())
    # The cancelled runs stop at once: both CPUs are free again long before the 10 or so
    # runs left would have finished.
    while ray_local.available_resources().get("CPU", 0) < 2:
        assert time.perf_counter() - returned < 5.0, "cancelled runs still hold the CPUs"
        time.sleep(0.1)
    assert len(_rows(tmp_path / "runs.sqlite")) == len(rows)


def test_command_line_runs_the_grid_on_ray(ray_local, tmp_path, data_root, capsys):
    argv = ["run", "--profile", "smoke", "--tasks", "set_max", "--configs", "max,sum",
            "--db", str(tmp_path / "runs.sqlite"), "--data-root", str(data_root),
            "--no-progress", "--executor", "ray", "--threads", "1"]
    assert main(argv) == 0
    rows = _rows(tmp_path / "runs.sqlite")
    assert {(k[1], r["status"]) for k, r in rows.items()} == {("max", "finished"),
                                                             ("sum", "finished")}
    assert "2 runs planned, 0 already done, 2 run now" in capsys.readouterr().err
    assert main(argv) == 0
    assert "2 already done, 0 run now" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--executor", "ray", "--address", "127.0.0.1:1", "--workers", "2"],
     "--workers 2 sizes a local Ray instance"),
    (["--executor", "ray", "--cpus-per-run", "0"], "cpus_per_run must be a positive number"),
    (["--executor", "ray", "--gpus-per-run", "-1"], "gpus_per_run must be a number >= 0"),
    (["--address", "127.0.0.1:1"], "--address: only for --executor ray"),
    (["--cpus-per-run", "2", "--gpus-per-run", "1"],
     "--cpus-per-run, --gpus-per-run: only for --executor ray"),
])
def test_command_line_rejects_options_of_the_other_executor(tmp_path, capsys, extra, message):
    pytest.importorskip("ray")
    db = tmp_path / "runs.sqlite"
    assert main(["run", "--profile", "smoke", "--db", str(db), "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()                     # checked before anything ran


def test_without_ray_the_ray_executor_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)      # import ray raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'gnpool\[distributed\]'"):
        RayExecutor()
    db = tmp_path / "runs.sqlite"
    assert main(["run", "--profile", "smoke", "--db", str(db), "--executor", "ray",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the Ray executor needs Ray" in err and "gnpool[distributed]" in err
    assert not db.exists()


def test_default_path_never_imports_ray(tmp_path):
    code = ("import sys\n"
            "from gnpool.bench.__main__ import main\n"
            f"rc = main(['run', '--profile', 'smoke', '--tasks', 'set_max', '--configs', "
            f"'max', '--db', {str(tmp_path / 'runs.sqlite')!r}, '--data-root', "
            f"{str(tmp_path / 'data')!r}, '--no-progress'])\n"
            "print(rc, 'ray' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["0", "False"], out.stderr
