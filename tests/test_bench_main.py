"""The command line: run the smoke profile, report it, list profiles."""

from __future__ import annotations

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


def test_errors_and_list(tmp_path, capsys):
    assert main(["report", "--profile", "smoke", "--db", str(tmp_path / "none.sqlite")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--profile", "smoke", "--configs", "nope", "--db",
                 str(tmp_path / "r.sqlite")]) == 2
    assert "configs=['nope'] match no task" in capsys.readouterr().err
    assert main(["run", "--profile", "huge"]) == 2
    assert main(["list", "--profile", "smoke"]) == 0
    assert "smoke: " in capsys.readouterr().out
