"""The results database: one SQLite row per run, written in one transaction."""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Columns of the ``runs`` table; JSON columns hold text.
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    task TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    hp_hash TEXT NOT NULL,
    profile TEXT,
    level TEXT,
    status TEXT NOT NULL CHECK (status IN ('finished', 'failed')),
    mape_val REAL,
    mape_interp REAL,
    mape_extrap REAL,
    mape_tune REAL,
    val_mse REAL,
    best_epoch INTEGER,
    epochs INTEGER,
    num_params INTEGER,
    config_def TEXT,
    hparams TEXT,
    data_params TEXT,
    gnp TEXT,
    bins TEXT,
    history TEXT,
    dead_channels TEXT,
    candidates TEXT,
    wall_seconds REAL,
    started_at TEXT,
    finished_at TEXT,
    versions TEXT,
    error TEXT,
    PRIMARY KEY (task, config, seed, hp_hash)
)
"""
COLUMNS = ("task", "config", "seed", "hp_hash", "profile", "level", "status", "mape_val",
           "mape_interp", "mape_extrap", "mape_tune", "val_mse", "best_epoch", "epochs",
           "num_params", "config_def", "hparams", "data_params", "gnp", "bins", "history",
           "dead_channels", "candidates", "wall_seconds", "started_at", "finished_at",
           "versions", "error")
JSON_COLUMNS = ("config_def", "hparams", "data_params", "gnp", "bins", "history",
                "dead_channels", "candidates", "versions")
#: Columns added after the first release, with their types (added to older files).
_ADDED = {"mape_tune": "REAL", "dead_channels": "TEXT", "candidates": "TEXT"}
Key = tuple[str, str, int, str]


def _clean(value: Any) -> Any:
    # JSON has no NaN or infinity: store them as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunDBError(ValueError):
    """A results database that cannot be used: damaged, or not a gnpool database."""


class RunDB:
    """The ``runs`` table of an SQLite file, safe for several processes.

    WAL mode lets readers (a report) work while a grid writes, and the busy timeout
    makes concurrent writers wait instead of failing. ``readonly`` opens an existing file
    without changing a byte of it (no journal mode, no schema), e.g. committed results.

    Raises:
        RunDBError: (a ``ValueError``) the file is damaged or not a results database,
            when opened or read; the message names the file and what to do.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0,
                 readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                        timeout=timeout)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=timeout)
        self.conn.row_factory = sqlite3.Row
        with self._usable():
            self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            # Reads the file's header: a damaged or foreign file fails here, not later.
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if not readonly:
                self.conn.execute("PRAGMA journal_mode = WAL")
                with self.conn:
                    self.conn.execute(SCHEMA)
                    have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
                    for col, kind in _ADDED.items():
                        if col not in have:
                            self.conn.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")

    @contextmanager
    def _usable(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.IntegrityError) or (
                    isinstance(err, sqlite3.OperationalError) and "locked" in str(err)):
                raise  # a bad row or a busy file, not a damaged one
            self.conn.close()
            raise RunDBError(
                f"results database {self.path} cannot be used ({type(err).__name__}: {err}). "
                f"If the file is damaged or not a gnpool results database, move it aside or "
                f"delete it and run the grid again (its runs are then run anew), or use "
                f"another database file") from err

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RunDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self, path: str | os.PathLike) -> Path:
        """Copy the whole database, consistently even while others write, to ``path``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        with sqlite3.connect(target) as dest:
            self.conn.backup(dest)
            dest.execute("PRAGMA journal_mode = DELETE")
        dest.close()
        return target

    def write(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one run, in its own transaction."""
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"row has unknown columns {unknown}; expected some of {COLUMNS}")
        values = []
        for col in COLUMNS:
            value = _clean(row.get(col))
            if col in JSON_COLUMNS and value is not None:
                value = json.dumps(value, sort_keys=True)
            values.append(value)
        marks = ", ".join("?" * len(COLUMNS))
        with self.conn:
            self.conn.execute(f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) "
                              f"VALUES ({marks})", values)

    def statuses(self) -> dict[Key, str]:
        """``{(task, config, seed, hp_hash): status}`` of every stored run."""
        with self._usable():
            cur = self.conn.execute("SELECT task, config, seed, hp_hash, status FROM runs")
            return {(r[0], r[1], r[2], r[3]): r[4] for r in cur}

    def rows(self, keys: Iterable[Key] | None = None, status: str | None = None
             ) -> list[dict[str, Any]]:
        """Stored runs as dicts with JSON columns decoded, optionally only ``keys``
        and only those with ``status``. Every row has every column of :data:`COLUMNS`:
        a file written before a column existed, opened read-only (and so not upgraded),
        gives ``None`` for it."""
        with self._usable():
            stored = self.conn.execute("SELECT * FROM runs ORDER BY task, config, seed"
                                       ).fetchall()
        wanted = None if keys is None else set(keys)
        out = []
        for r in stored:
            row = {**dict.fromkeys(COLUMNS), **dict(r)}
            if wanted is not None and (row["task"], row["config"], row["seed"],
                                       row["hp_hash"]) not in wanted:
                continue
            if status is not None and row["status"] != status:
                continue
            for col in JSON_COLUMNS:
                if row.get(col) is not None:
                    row[col] = json.loads(row[col])
            out.append(row)
        return out
