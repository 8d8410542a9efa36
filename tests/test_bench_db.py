"""The SQLite results database."""

from __future__ import annotations

import math
import sqlite3

import pytest

from gnpool.bench.db import RunDB


def _row(config="gnp", status="finished", **extra):
    row = {"task": "set_max", "config": config, "seed": 0, "hp_hash": "abc", "status": status,
           "mape_extrap": 1.5, "gnp": [{"name": "pooling", "p": [2.0], "q": [math.nan]}],
           "bins": {"extrap": [{"lo": 1, "hi": 2, "mape": math.inf}]}}
    row.update(extra)
    return row


def test_round_trip_decodes_json_and_stores_non_finite_as_null(tmp_path):
    with RunDB(tmp_path / "r.sqlite") as db:
        db.write(_row(mape_interp=math.nan))
        (row,) = db.rows()
    assert row["status"] == "finished" and row["mape_extrap"] == 1.5
    assert row["mape_interp"] is None
    assert row["gnp"] == [{"name": "pooling", "p": [2.0], "q": [None]}]
    assert row["bins"]["extrap"][0]["mape"] is None


def test_same_key_is_replaced_and_statuses_are_listed(tmp_path):
    with RunDB(tmp_path / "r.sqlite") as db:
        db.write(_row(status="failed", error="boom"))
        db.write(_row())
        db.write(_row(config="max"))
        assert db.statuses() == {("set_max", "gnp", 0, "abc"): "finished",
                                 ("set_max", "max", 0, "abc"): "finished"}
        assert [r["config"] for r in db.rows([("set_max", "max", 0, "abc")])] == ["max"]
        assert db.rows(status="failed") == []


def test_bad_rows_are_refused(tmp_path):
    with RunDB(tmp_path / "r.sqlite") as db:
        with pytest.raises(ValueError, match="unknown columns \\['colour'\\]"):
            db.write(_row(colour="red"))
        with pytest.raises(sqlite3.IntegrityError):
            db.write(_row(status="running"))
        assert db.rows() == []


def test_two_connections_see_each_others_rows(tmp_path):
    path = tmp_path / "r.sqlite"
    with RunDB(path) as a, RunDB(path) as b:
        a.write(_row(config="a"))
        b.write(_row(config="b"))
        assert len(a.rows()) == len(b.rows()) == 2
        mode = a.conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_snapshot_is_a_self_contained_copy(tmp_path):
    with RunDB(tmp_path / "r.sqlite") as db:
        db.write(_row())
        copy = db.snapshot(tmp_path / "out" / "copy.sqlite")
        db.write(_row(config="later"))
    assert not (tmp_path / "out" / "copy.sqlite-wal").exists()
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("SELECT config FROM runs").fetchall() == [("gnp",)]
    conn.close()


def test_readonly_reads_and_snapshots_without_changing_the_file(tmp_path):
    path = tmp_path / "r.sqlite"
    with RunDB(path) as db:
        db.write(_row())
        db.snapshot(tmp_path / "committed.sqlite")     # a DELETE-journal file, as committed
    committed = tmp_path / "committed.sqlite"
    before = committed.read_bytes()
    with RunDB(committed, readonly=True) as db:
        assert [r["config"] for r in db.rows()] == ["gnp"]
        db.snapshot(tmp_path / "copy.sqlite")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.write(_row(config="sum"))
    assert committed.read_bytes() == before
    with RunDB(tmp_path / "copy.sqlite", readonly=True) as db:
        assert len(db.rows()) == 1


@pytest.mark.parametrize("readonly", [False, True])
def test_damaged_or_foreign_file_names_the_file_and_what_to_do(tmp_path, readonly):
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"these bytes are no SQLite database " * 64)
    with pytest.raises(ValueError, match=r"results database .*damaged\.sqlite cannot be used "
                                         r"\(DatabaseError: file is not a database\)\. .*move "
                                         r"it aside or delete it"):
        RunDB(damaged, readonly=readonly)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE other (a)")
    conn.close()
    with RunDB(foreign, readonly=True) as db, \
            pytest.raises(ValueError, match=r"foreign\.sqlite cannot be used .*no such table"):
        db.rows()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_file_from_before_the_added_columns_reads_every_column(tmp_path, readonly):
    from gnpool.bench.db import _ADDED, COLUMNS, SCHEMA

    # The schema without the columns added after the first release, as old files have it.
    old_schema = "\n".join(line for line in SCHEMA.splitlines()
                           if line.strip().split(" ")[0] not in _ADDED)
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(old_schema)
        conn.execute("INSERT INTO runs (task, config, seed, hp_hash, status, mape_extrap) "
                     "VALUES ('set_max', 'max', 0, 'h', 'finished', 1.5)")
    conn.close()
    with RunDB(path, readonly=readonly) as db:
        (row,) = db.rows()
    assert set(row) == set(COLUMNS) and row["mape_extrap"] == 1.5
    assert all(row[col] is None for col in _ADDED)
    with sqlite3.connect(path) as conn:
        have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    conn.close()
    # Opened for writing, the file gains the columns; read-only, it is left as it was.
    assert set(_ADDED) <= have if not readonly else not set(_ADDED) & have
