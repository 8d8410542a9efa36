"""The results database: one SQLite row per run, written in one transaction."""

from __future__ import annotations

import errno
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


class RunDBAccessError(RunDBError):
    """A results database that cannot be opened (or created, or written) because the file
    or its directory is not accessible: no permission, a read-only file system. The file
    itself may be fine."""


#: SQLite's errors that say a file cannot be opened or written, not that it is damaged.
_ACCESS_ERRORS = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")
_ACCESS_MESSAGES = ("unable to open database file", "attempt to write a readonly database",
                    "readonly database", "access permission denied")


def _is_access_error(err: BaseException) -> bool:
    # Permission and read-only file system errors, not a parent that is a file (say).
    if isinstance(err, OSError):
        return isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM,
                                                                   errno.EROFS)
    name = getattr(err, "sqlite_errorname", None) or ""
    return (isinstance(err, sqlite3.OperationalError)
            and (name.startswith(_ACCESS_ERRORS) or any(m in str(err).lower()
                                                        for m in _ACCESS_MESSAGES)))


def _existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def _not_writable(path: Path) -> str:
    """How ``path``, which this user cannot write, is not writable."""
    try:
        readonly_fs = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        readonly_fs = False
    return ("is on a read-only file system" if readonly_fs else
            "is not writable (no write permission)")


def _why_not_writable(path: Path) -> str | None:
    """Why ``path`` (a file, existing or not) cannot be written or created, or ``None``
    when nothing says it cannot: the file, or the directory it is (to be) created in,
    on a read-only file system or without write permission for this user."""
    path = Path(os.path.abspath(path))
    where = path if path.exists() else _existing(path.parent)
    what = "the file" if where == path else f"its directory {where}"
    if not os.access(where, os.W_OK):
        return f"{what} {_not_writable(where)}"
    if where == path and not os.access(path.parent, os.W_OK | os.X_OK):
        # SQLite creates its journal files (-wal, -shm, -journal) next to the database.
        return (f"its directory {path.parent} is not writable, and SQLite needs to create "
                f"the database's journal files ({path.name}-wal, {path.name}-shm) there")
    return None


def _why_not_readable(path: Path) -> str | None:
    """Why ``path`` (an existing database) cannot be read, or ``None``."""
    path = Path(os.path.abspath(path))
    if not path.exists():
        return None
    if not os.access(path, os.R_OK):
        return "the file is not readable (no read permission)"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        wal = path.with_name(path.name + "-wal")
        held = (f" with a write-ahead log ({wal.name}: it is being written, or was "
                f"not closed cleanly)" if wal.exists() else " in WAL mode")
        return (f"its directory {path.parent} is not writable, and SQLite needs to create "
                f"{path.name}-shm there to read a database{held}")
    return None


class RunDB:
    """The ``runs`` table of an SQLite file, safe for several processes.

    WAL mode lets readers (a report) work while a grid writes, and the busy timeout
    makes concurrent writers wait instead of failing. ``readonly`` opens an existing file
    without changing a byte of it (no journal mode, no schema), e.g. committed results.

    Raises:
        RunDBError: (a ``ValueError``) the file is damaged or not a results database,
            when opened or read; the message names the file and what to do.
        RunDBAccessError: (a ``RunDBError``) the file cannot be created, opened or
            written: it or its directory is not writable (no permission, a read-only file
            system), or not readable; the message says which and does not suggest deleting
            it.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0,
                 readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.conn: sqlite3.Connection | None = None
        try:
            if readonly:
                self.conn = self._connect_readonly(timeout)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=timeout)
        except (OSError, sqlite3.Error) as err:
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise  # a busy file, not a damaged one
            self._fail(err)
        if not readonly and not os.access(self.path, os.W_OK):
            # SQLite opens a file it cannot write read-only, and only the first write
            # (after a run trained) would fail.
            self._fail(None)
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

    def _connect_readonly(self, timeout: float) -> sqlite3.Connection:
        """A read-only connection (``mode=ro``). A database in WAL mode (as the runner
        writes them) needs its ``-shm`` file, which SQLite creates next to it even to read:
        in a directory that is not writable (a read-only mount, committed results of
        another user) and with no write-ahead log file (which any connection writing it
        keeps while open), it is opened ``immutable`` instead."""
        uri = self.path.resolve().as_uri()
        conn = None
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.Error as err:
            if conn is not None:
                conn.close()
            if not (_is_access_error(err) and self.path.is_file()
                    and not os.access(self.path.parent, os.W_OK)
                    and not self.path.with_name(self.path.name + "-wal").exists()):
                raise
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=timeout)

    def _fail(self, err: BaseException | None) -> None:
        """Raise the :class:`RunDBError` that says why ``err`` makes the file unusable
        (``None``: the file exists but this user cannot write it)."""
        if self.conn is not None:
            self.conn.close()
        if err is None or _is_access_error(err):
            exists = self.path.exists()
            if self.readonly:
                why = _why_not_readable(self.path) or (
                    "it does not exist" if not exists else "no access")
                todo = ("copy it, with its -wal file, to a writable directory and report it "
                        "there" if "directory" in why else "make it readable")
                doing = "read"
            else:
                why = _why_not_writable(self.path) or "no access"
                todo = "use a database file in a writable directory" + (
                    " (a copy of this one keeps its runs), or read this one with `report`"
                    if exists else "")
                doing = "opened for writing" if exists else "created"
            cause = "" if err is None else f" ({type(err).__name__}: {err})"
            raise RunDBAccessError(
                f"results database {self.path} cannot be {doing}: {why}{cause}. Its "
                f"contents are not at fault (do not delete it for this); {todo}") from err
        raise RunDBError(
            f"results database {self.path} cannot be used ({type(err).__name__}: {err}). "
            f"If the file is damaged or not a gnpool results database, move it aside or "
            f"delete it and run the grid again (its runs are then run anew), or use "
            f"another database file") from err

    @contextmanager
    def _usable(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.IntegrityError) or (
                    isinstance(err, sqlite3.OperationalError) and "locked" in str(err)):
                raise  # a bad row or a busy file, not a damaged one
            self._fail(err)

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
