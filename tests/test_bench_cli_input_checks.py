"""The command line's input checks: list options (--tasks, --configs, --seeds), --seeds'
range, --threads and --workers, and databases and report directories this user cannot
write (a read-only mount, another user's directory), all refused before anything trains."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from gnpool.bench import runner
from gnpool.bench.__main__ import _seeds, main
from gnpool.bench.db import RunDB, RunDBAccessError
from gnpool.bench.profiles import get_profile


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a run starts training."""
    def execute(*args, **kwargs):
        raise AssertionError("a run trained although the arguments were bad")

    monkeypatch.setattr(runner, "execute", execute)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "99999999999999999999999"],
     "--seeds '99999999999999999999999' is invalid; expected comma-separated non-negative "
     "integers up to 2**63-1 (9223372036854775807)"),
    (["--seeds", str(2 ** 63)], f"{2 ** 63} is too large"),
    (["--seeds", "-1"], "--seeds '-1' is invalid; expected comma-separated non-negative"),
    (["--seeds", "0,,1"], "--seeds '0,,1' is invalid; expected comma-separated non-negative"),
    (["--seeds", "0,,1"], "has an empty item"),
    (["--seeds", "0,1,"], "has an empty item"),
    (["--seeds", ""], "is empty"),
    (["--seeds", "0,0"], "0 is given more than once"),
    (["--seeds", "1,01"], "1 is given more than once"),
    (["--tasks", ""], "--tasks '' is empty; expected comma-separated tasks of the profile"),
    (["--tasks", " , "], "--tasks ' , ' is empty"),
    (["--tasks", "set_max,,max_degree"], "--tasks 'set_max,,max_degree' has an empty item"),
    (["--tasks", "set_max,set_max"], "--tasks 'set_max,set_max' names set_max more than once"),
    (["--configs", ""], "--configs '' is empty; expected comma-separated configuration names"),
    (["--configs", "gnp,"], "--configs 'gnp,' has an empty item"),
    (["--configs", "gnp,max,gnp"], "--configs 'gnp,max,gnp' names gnp more than once"),
    (["--threads", "-3"], "--threads must be a positive int, got -3"),
    (["--threads", "0"], "--threads must be a positive int, got 0"),
    (["--workers", "0"], "--workers must be a positive int, got 0"),
])
def test_bad_values_fail_before_anything_trains(tmp_path, capsys, no_training, argv, message):
    db = tmp_path / "r.sqlite"
    assert main(["run", "--profile", "smoke", "--db", str(db), "--data-root",
                 str(tmp_path / "data"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert not db.exists()                                # nothing ran, nothing stored


@pytest.mark.parametrize("argv", [["--tasks", ""], ["--configs", ""], ["--seeds", "0,,1"],
                                  ["--seeds", "0,0"], ["--configs", "gnp,gnp"]])
def test_report_checks_the_lists_as_run_does(tmp_path, capsys, argv):
    db = tmp_path / "r.sqlite"
    sqlite3.connect(db).close()                           # exists: the lists are the error
    assert main(["report", "--profile", "smoke", "--db", str(db), "--no-plots", *argv]) == 2
    assert capsys.readouterr().err.startswith(f"error: {argv[0]} ")


def test_seeds_span_what_the_database_stores(tmp_path, capsys):
    assert _seeds(f"0,{2 ** 63 - 1}") == [0, 2 ** 63 - 1]
    # The API refuses what the database cannot store too, before anything trains.
    with pytest.raises(ValueError, match=r"seeds=\[9223372036854775808\] are out of range"):
        runner.plan(get_profile("smoke"), seeds=[2 ** 63])
    with pytest.raises(ValueError, match=r"seeds=\[-1\] are out of range"):
        runner.plan(get_profile("smoke"), seeds=[-1])
    # The largest seed trains and is stored.
    db = tmp_path / "r.sqlite"
    assert main(["run", "--profile", "smoke", "--tasks", "set_max", "--configs", "max",
                 "--seeds", str(2 ** 63 - 1), "--db", str(db), "--data-root",
                 str(tmp_path / "data"), "--no-progress"]) == 0
    with RunDB(db, readonly=True) as stored:
        assert [r["seed"] for r in stored.rows()] == [2 ** 63 - 1]


# Directories this user cannot write. As another user, a directory with mode 555 is one; root
# writes there anyway, so for root the test stands one in: os.access says the directory is
# not writable, and SQLite opens no file there but immutable ones (as in a directory of mode
# 555 or on a read-only mount, where SQLite can neither create a database nor the -shm file
# it needs to read or write one in WAL mode).
@pytest.fixture
def lock(monkeypatch):
    locked: list[Path] = []

    def under_lock(path) -> bool:
        path = Path(os.path.abspath(path))
        return any(path == d or d in path.parents for d in locked)

    if os.geteuid() != 0:
        def lock_dir(directory: Path) -> None:
            directory.chmod(0o555)
            locked.append(directory)
        yield lock_dir
        for directory in locked:
            directory.chmod(0o755)
        return

    real_access, real_connect = os.access, sqlite3.connect

    def access(path, mode, *args, **kwargs):
        # As a directory of mode 555: its files stay writable, it is not.
        if mode & os.W_OK and Path(os.path.abspath(path)) in locked:
            return False
        return real_access(path, mode, *args, **kwargs)

    def connect(database, *args, **kwargs):
        name, query = str(database), ""
        if kwargs.get("uri") and name.startswith("file:"):
            parsed = urlparse(name)
            name, query = unquote(parsed.path), parsed.query
        if under_lock(Path(name).parent) and "immutable=1" not in query:
            raise sqlite3.OperationalError("unable to open database file")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(sqlite3, "connect", connect)
    yield lambda directory: locked.append(Path(os.path.abspath(directory)))


@pytest.fixture
def finished_db(tmp_path):
    """A database with one finished smoke run, in its own directory."""
    db = tmp_path / "ro" / "done.sqlite"
    assert main(["run", "--profile", "smoke", "--tasks", "set_max", "--configs", "max",
                 "--seeds", "0", "--db", str(db), "--data-root", str(tmp_path / "data"),
                 "--no-progress"]) == 0
    return db


def _grid(db: Path) -> list[str]:
    return ["--profile", "smoke", "--tasks", "set_max", "--configs", "max", "--seeds", "0",
            "--db", str(db)]


def test_a_database_that_cannot_be_created_names_db_and_its_directory(
        tmp_path, capsys, lock, no_training):
    locked = tmp_path / "ro"
    locked.mkdir()
    lock(locked)
    for db in (locked / "new.sqlite", locked / "sub" / "new.sqlite"):
        assert main(["run", *_grid(db), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"error: --db {db} cannot be created: its directory {locked} is not " \
            "writable" in err, err
        assert "pass --db a file in a writable directory" in err
        assert not db.exists()
    # The database class says so too, as a RunDBError (a ValueError), not a raw sqlite3 error.
    with pytest.raises(RunDBAccessError, match=rf"results database {locked / 'x.sqlite'} "
                                                rf"cannot be created: its directory .*not "
                                                rf"writable"):
        RunDB(locked / "x.sqlite")


def test_a_finished_database_in_a_locked_directory_is_not_called_damaged(
        tmp_path, capsys, lock, finished_db):
    lock(finished_db.parent)
    before = finished_db.read_bytes()
    capsys.readouterr()
    assert main(["run", *_grid(finished_db), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: --db {finished_db} cannot be written: its directory" in err, err
    assert "not writable" in err and "`report` reads them where they are" in err
    assert "damaged" not in err and "delete" not in err
    with pytest.raises(RunDBAccessError, match="cannot be opened for writing") as info:
        RunDB(finished_db)
    assert "damaged" not in str(info.value) and "do not delete it" in str(info.value)
    # report reads it where it is, without writing there, into a writable --out.
    out = tmp_path / "out"
    assert main(["report", *_grid(finished_db), "--no-plots", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "| `set_max` | max |" in captured.out and f"wrote {out / 'report.md'}" in captured.err
    with RunDB(out / "runs.sqlite", readonly=True) as copy:
        assert len(copy.rows()) == 1
    assert finished_db.read_bytes() == before
    assert sorted(p.name for p in finished_db.parent.iterdir()) == ["done.sqlite"]


def test_a_report_directory_that_cannot_be_written_is_named(
        tmp_path, capsys, lock, finished_db, no_training):
    lock(finished_db.parent)
    capsys.readouterr()
    # --out in the locked directory, or by default the database's (locked) directory.
    out = finished_db.parent / "out"
    assert main(["report", *_grid(finished_db), "--no-plots", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out} cannot be written: {finished_db.parent} is "
                          "not writable"), err
    assert "pass --out a writable directory" in err
    assert main(["report", *_grid(finished_db), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert (f"error: the report directory {finished_db.parent} (the default of --out: the "
            "database's directory) cannot be written") in err, err
    # --out naming a file.
    (tmp_path / "afile").write_text("")
    assert main(["report", *_grid(finished_db), "--out", str(tmp_path / "afile" / "o")]) == 2
    assert "afile is a file, not a directory" in capsys.readouterr().err
    # run --report checks its report directory before anything trains.
    db = tmp_path / "w.sqlite"
    assert main(["run", *_grid(db), "--no-progress", "--report", "--out", str(out)]) == 2
    assert f"error: --out {out} cannot be written" in capsys.readouterr().err
    assert not db.exists()


def test_a_report_that_fails_while_writing_names_out(tmp_path, capsys, monkeypatch,
                                                     finished_db):
    from gnpool.bench import __main__ as cli

    def write_report(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(cli, "write_report", write_report)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["report", *_grid(finished_db), "--no-plots", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot write the report to --out {out}: OSError: [Errno 30] Read-only " \
        "file system" in err
