"""The command line: run, report and list; argument checks, exit status, default paths."""

from __future__ import annotations

import sqlite3

import platformdirs
import pytest

from gnpool.bench import runner
from gnpool.bench.__main__ import main


def test_run_then_report(tmp_path, capsys):
    args = ["--profile", "smoke", "--db", str(tmp_path / "r.sqlite"), "--data-root",
            str(tmp_path / "data")]
    assert main(["run", *args, "--no-progress", "--report", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "6 runs planned, 0 already done, 6 run now (6 finished, 0 failed)" in err
    for name in ("max_degree", "set_max", "sum-max", "sum-sum", "gnp"):
        assert name in out
    assert (tmp_path / "report.md").exists() and (tmp_path / "extrapolation.png").exists()
    assert (tmp_path / "runs.sqlite").exists()           # a copy of the database

    assert main(["run", *args, "--no-progress"]) == 0
    assert "6 already done, 0 run now" in capsys.readouterr().err

    assert main(["report", *args, "--no-plots", "--configs", "gnp", "--out",
                 str(tmp_path / "sub")]) == 0
    out = capsys.readouterr().out
    assert "| `gnp` |" in out and "| `sum-max` |" not in out


def test_report_of_a_grid_under_way_says_what_is_missing(tmp_path, capsys):
    args = ["--profile", "smoke", "--db", str(tmp_path / "r.sqlite"), "--data-root",
            str(tmp_path / "data")]
    assert main(["run", *args, "--no-progress", "--configs", "gnp"]) == 0
    capsys.readouterr()
    assert main(["report", *args, "--no-plots", "--out", str(tmp_path / "rep")]) == 0
    out, err = capsys.readouterr()
    # Two of the six planned runs (gnp on both tasks) have run.
    assert "warning: 4 of the grid's 6 runs are not in" in err
    assert "replaces the one in" in err
    assert "2 runs finished, 0 failed, 4 of the grid's 6 not run yet" in out
    # A complete grid's report says nothing of the kind.
    assert main(["report", *args, "--no-plots", "--configs", "gnp", "--out",
                 str(tmp_path / "rep2")]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err and "not run yet" not in out


def test_a_subset_written_over_the_profiles_report_says_so(tmp_path, capsys, monkeypatch):
    # The default database and report directory (results/<profile>/, in a source checkout
    # the committed results): a report of --tasks, --configs or --seeds replaces the whole
    # profile's one there, and says so; with --out it goes elsewhere, silently.
    monkeypatch.setenv(runner.BENCH_DIR_ENV, str(tmp_path / "bench"))
    data = ["--data-root", str(tmp_path / "data"), "--no-progress"]
    assert main(["run", "--profile", "smoke", "--tasks", "set_max", "--report", *data]) == 0
    err = capsys.readouterr().err
    assert ("warning: this report covers the 3 runs --tasks select, of the profile's 6, and "
            "replaces the one in") in err
    assert (tmp_path / "bench" / "results" / "smoke" / "report.md").exists()
    assert main(["report", "--profile", "smoke", "--tasks", "set_max", "--seeds", "0",
                 "--no-plots", "--out", str(tmp_path / "elsewhere")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_errors_and_list(tmp_path, capsys):
    assert main(["report", "--profile", "smoke", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--profile", "smoke", "--configs", "nope", "--db",
                 str(tmp_path / "r.sqlite")]) == 2
    assert ("configs=['nope'] match no task of the grid; its configurations are sum-sum, "
            "sum-max, gnp, sum, max" in capsys.readouterr().err)
    assert main(["run", "--profile", "huge"]) == 2
    assert main(["list", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "smoke: " in out
    assert "max_degree: 3 configurations: sum-sum, sum-max, gnp" in out
    assert "set_max: 3 configurations: sum, max, gnp" in out


@pytest.mark.parametrize("argv, message", [
    (["--set", "epochs=two"], "--set 'epochs=two': hyperparameter epochs must be an int"),
    (["--set", "epochs=-1"], "--set 'epochs=-1': hyperparameter epochs must be >= 1, got -1"),
    (["--set", "hiden=8"], "--set 'hiden=8': 'hiden' is not a hyperparameter"),
    (["--seeds", "a"], "--seeds 'a' is invalid; expected comma-separated non-negative"),
    (["--seeds", "0,-1"], "--seeds '0,-1' is invalid"),
])
def test_bad_arguments_fail_before_anything_runs(tmp_path, capsys, argv, message):
    db = tmp_path / "r.sqlite"
    assert main(["run", "--profile", "smoke", "--db", str(db), "--no-progress", *argv]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()                                # nothing ran, nothing stored


def test_failed_runs_give_a_non_zero_exit(tmp_path, capsys, monkeypatch):
    from gnpool.bench import train

    def broken(*args, **kwargs):
        raise RuntimeError("training exploded")

    monkeypatch.setattr(train, "run", broken)
    args = ["run", "--profile", "smoke", "--tasks", "set_max", "--configs", "gnp", "--db",
            str(tmp_path / "r.sqlite"), "--data-root", str(tmp_path / "data"), "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "(0 finished, 1 failed)" in err and "training exploded" in err
    assert "error: 1 of 1 runs failed" in err


def test_damaged_database_is_named(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    db.write_bytes(b"garbage " * 200)
    for command in ("run", "report"):
        assert main([command, "--profile", "smoke", "--db", str(db), "--no-plots"]) == 2
        assert f"results database {db} cannot be used" in capsys.readouterr().err


def test_report_explains_a_mismatch_and_records_the_settings_used(tmp_path, capsys):
    args = ["--profile", "smoke", "--tasks", "set_max", "--configs", "gnp", "--db",
            str(tmp_path / "r.sqlite"), "--data-root", str(tmp_path / "data")]
    assert main(["run", *args, "--set", "epochs=3", "--set", "lr=0.02", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", *args, "--no-plots", "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "has no runs of this grid: 1 of its runs have the planned tasks" in err
    assert "epochs=3 (planned: 2)" in err and "lr=0.02 (planned: 0.01)" in err
    assert "Pass the same --set" in err
    assert main(["report", *args, "--set", "epochs=3", "--set", "lr=0.02", "--no-plots",
                 "--out", str(tmp_path / "b")]) == 0
    text = (tmp_path / "b" / "report.md").read_text()
    assert ("`python -m gnpool.bench run --profile smoke --tasks set_max --configs gnp --set "
            "epochs=3 --set lr=0.02`") in text
    assert "these runs override it with --set epochs=3 --set lr=0.02" in text
    settings = text[text.index("## Settings of these runs"):]
    assert "epochs=3" in settings and "lr=0.02" in settings and "hidden=8" in settings
    assert main(["report", *args, "--all", "--no-plots", "--out", str(tmp_path / "c")]) == 0
    assert "Every run in the database" in (tmp_path / "c" / "report.md").read_text()


def test_report_names_a_setting_newer_than_the_stored_runs(tmp_path, capsys):
    args = ["--profile", "smoke", "--tasks", "set_max", "--configs", "max", "--db",
            str(tmp_path / "r.sqlite"), "--data-root", str(tmp_path / "data")]
    assert main(["run", *args, "--no-progress"]) == 0
    # As a run stored before `snap_tolerance` existed: its settings lack the key.
    with sqlite3.connect(tmp_path / "r.sqlite") as con:
        con.execute("UPDATE runs SET hparams = json_remove(hparams, '$.snap_tolerance')")
    capsys.readouterr()
    assert main(["report", *args, "--set", "snap_tolerance=0.3", "--no-plots",
                 "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert ("snap_tolerance=0.1 (planned: 0.3, a run made before the setting existed)"
            in err), err
    assert "other configuration definitions" not in err


def test_default_locations(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GNPOOL_BENCH_DIR", str(tmp_path / "bench"))
    assert runner.default_db("quick") == tmp_path / "bench" / "runs" / "quick.sqlite"
    assert runner.results_dir("quick") == tmp_path / "bench" / "results" / "quick"
    args = ["--profile", "smoke", "--tasks", "set_max", "--configs", "max", "--data-root",
            str(tmp_path / "data")]
    assert main(["run", *args, "--no-progress", "--report", "--no-plots"]) == 0
    capsys.readouterr()
    assert (tmp_path / "bench" / "runs" / "smoke.sqlite").is_file()
    assert (tmp_path / "bench" / "results" / "smoke" / "report.md").is_file()
    # Installed (no source checkout around the package): the per-user data directory.
    monkeypatch.delenv("GNPOOL_BENCH_DIR")
    monkeypatch.setattr(runner, "_CHECKOUT", tmp_path / "site-packages")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert runner.bench_dir() == platformdirs.user_data_path("gnpool") / "bench"
    assert runner.default_db("quick") == tmp_path / "xdg" / "gnpool" / "bench" / "runs" / \
        "quick.sqlite"


def test_report_gives_each_session_its_wall_time():
    from gnpool.bench.__main__ import _sessions

    def row(commit, start, end):
        return {"started_at": f"2026-01-01T{start}", "finished_at": f"2026-01-01T{end}",
                "versions": {"gnpool_commit": commit}}

    one = [row("aaa", "10:00:00", "10:05:00"), row("aaa", "10:01:00", "10:12:00")]
    assert _sessions(one) == (" (12.0 minutes of wall time from the first run's start to "
                              "the last run's end)")
    two = one + [row("bbb", "15:00:00", "15:03:30")]
    text = _sessions(two)
    assert "2 runs at commit aaa, 12.0 minutes; 1 runs at commit bbb, 3.5 minutes" in text
    assert _sessions([]) == ""


def test_run_from_results_trains_only_the_runs_missing_there(tmp_path, monkeypatch, capsys):
    from gnpool.bench.db import RunDB

    monkeypatch.setenv("GNPOOL_BENCH_DIR", str(tmp_path / "bench"))
    data = ["--data-root", str(tmp_path / "data")]
    grid = ["--profile", "smoke", "--tasks", "set_max", *data]
    # Without reported runs there is nothing to start from.
    assert main(["run", *grid, "--configs", "max", "--from-results", "--no-progress"]) == 2
    assert "--from-results needs the reported runs" in capsys.readouterr().err
    # Report two runs (results/smoke/runs.sqlite), then lose the working database, as a
    # fresh checkout has none.
    assert main(["run", *grid, "--configs", "max,gnp", "--no-progress", "--report",
                 "--no-plots"]) == 0
    working = tmp_path / "bench" / "runs" / "smoke.sqlite"
    working.unlink()
    # A working database that holds only one of them (gnp, made again) gets the other.
    assert main(["run", *grid, "--configs", "gnp", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", *grid, "--from-results", "--no-progress", "--report",
                 "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "added 1 of the 2 finished runs in" in err and "(1 were there already)" in err
    # The reported max run is not trained again; the smoke grid's third set_max run is.
    assert "3 runs planned, 2 already done, 1 run now" in err
    # The report written afterwards keeps every run.
    with RunDB(tmp_path / "bench" / "results" / "smoke" / "runs.sqlite", readonly=True) as db:
        assert len(db.rows()) == 3
    # Again: nothing to add, nothing trains.
    assert main(["run", *grid, "--from-results", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "added 0 of the 3 finished runs" in err and "3 already done, 0 run now" in err


def test_database_paths_that_cannot_be_files_are_named(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    for db, message in ((tmp_path, "is a directory; expected an SQLite file"),
                        (tmp_path / "afile" / "x.sqlite", "afile is a file, not a directory")):
        for command in ("run", "report"):
            assert main([command, "--profile", "smoke", "--db", str(db)]) == 2
            assert message in capsys.readouterr().err


def test_report_names_every_version_the_runs_were_made_with():
    from gnpool.bench.__main__ import _versions

    rows = [{"started_at": "2026-01-02", "versions": {"gnpool": "0.2.0"}},
            {"started_at": "2026-01-01", "versions": {"gnpool": "0.1.0"}},
            {"started_at": "2026-01-03", "versions": {"gnpool": "0.2.0"}},
            {"started_at": "2026-01-04", "versions": None}]
    assert _versions(rows, "gnpool") == "0.1.0 and 0.2.0"
    assert _versions(rows, "torch") == "?"
