"""Command line of the extrapolation benchmark.

    python -m gnpool.bench run                       # the quick profile
    python -m gnpool.bench run --profile smoke --workers 1
    python -m gnpool.bench run --tasks max_degree --configs sum-max,gnp --set epochs=50
    python -m gnpool.bench run --profile paper --executor ray --address HEAD:6379
    python -m gnpool.bench report --profile quick    # table + plots from the database
    python -m gnpool.bench list                      # profiles, tasks, configurations
    python -m gnpool.bench run --profile multiview_quick --report   # the multi-view family

Runs train in this process or local worker processes (--executor local, the default), or
as Ray tasks (--executor ray, pip install 'gnpool[distributed]') on a cluster (--address) or
a local Ray instance; this process alone writes the database either way.

Databases go to <dir>/runs/<profile>.sqlite and reports to <dir>/results/<profile>/, with
<dir> = $GNPOOL_BENCH_DIR, else experiments/ of a source checkout, else the per-user data
directory (~/.local/share/gnpool/bench on Linux). Datasets are cached in $GNPOOL_DATA_DIR
(else datasets/cache of a checkout, else ~/.cache/gnpool). Exit status: 0 when every run
finished, 1 when a run failed (or a report found nothing), 2 for bad arguments, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from . import multiview
from .db import RunDB, RunDBError, _existing, _not_writable, _why_not_writable
from .executors import Executor, LocalExecutor
from .hparams import ADDED_AFTER_0_2, parse_assignments
from .multiview_report import profile_report
from .profiles import PROFILES, get_profile
from .report import settings_section, write_report
from .runner import MAX_SEED, default_db, grid_configs, plan, results_dir, run_grid


def _csv(text: str | None, flag: str, expected: str) -> list[str] | None:
    """The comma-separated items of option ``flag``: none empty, none twice (as the grid
    would hold the same run twice); ``expected`` says what the items should be."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ValueError(f"{flag} {text!r} is empty; expected {expected}")
    if "" in items:
        raise ValueError(f"{flag} {text!r} has an empty item (a stray comma); expected "
                         f"{expected}")
    twice = [item for item, n in Counter(items).items() if n > 1]
    if twice:
        raise ValueError(f"{flag} {text!r} names {', '.join(twice)} more than once; expected "
                         f"{expected}, each once")
    return items


def _tasks(text: str | None) -> list[str] | None:
    return _csv(text, "--tasks", "comma-separated tasks of the profile, e.g. --tasks "
                "max_degree,set_max (python -m gnpool.bench list names them)")


def _configs(text: str | None) -> list[str] | None:
    return _csv(text, "--configs", "comma-separated configuration names, e.g. --configs "
                "sum-max,gnp (python -m gnpool.bench list names them)")


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="quick", help=f"one of {', '.join(PROFILES)} "
                   "(default: quick)")
    p.add_argument("--tasks", help="comma-separated subset of the profile's tasks")
    p.add_argument("--configs", help="comma-separated configuration names, e.g. sum-max,gnp")
    p.add_argument("--seeds", help="comma-separated seeds, integers from 0 to 2**63-1 "
                   "(default: the profile's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="assign",
                   help="override a hyperparameter of every run (JSON value), repeatable; "
                   "checked against gnpool.bench.HParams before anything runs")
    p.add_argument("--db", type=Path, help="SQLite file (default: runs/<profile>.sqlite "
                   "under $GNPOOL_BENCH_DIR: experiments/ in a source checkout, else the "
                   "per-user data directory; `python -m gnpool.bench --help` says more)")
    p.add_argument("--data-root", type=Path, help="dataset cache directory (default: "
                   "$GNPOOL_DATA_DIR: datasets/cache/ in a source checkout, else the "
                   "per-user cache directory)")


def _seeds(text: str | None) -> list[int] | None:
    """``--seeds``: distinct integers from 0 to :data:`MAX_SEED`."""
    if text is None:
        return None
    expected = (f"comma-separated non-negative integers up to 2**63-1 ({MAX_SEED}), each "
                f"once, e.g. --seeds 0,1,2")
    items = [t.strip() for t in text.split(",")]
    if not any(items) or "" in items:
        what = "is empty" if not any(items) else "has an empty item (a stray comma)"
        raise ValueError(f"--seeds {text!r} is invalid; expected {expected}: it {what}")
    bad = [item for item in items if not (item.isascii() and item.isdigit())]
    if bad:
        raise ValueError(f"--seeds {text!r} is invalid; expected {expected}: "
                         f"{', '.join(map(repr, bad))} is not one")
    seeds = [int(item) for item in items]
    big = [item for item in items if int(item) > MAX_SEED]
    if big:
        raise ValueError(f"--seeds {text!r} is invalid; expected {expected}: "
                         f"{', '.join(big)} is too large")
    twice = [str(seed) for seed, n in Counter(seeds).items() if n > 1]
    if twice:
        raise ValueError(f"--seeds {text!r} is invalid; expected {expected}: "
                         f"{', '.join(twice)} is given more than once")
    return seeds


def _specs(args: argparse.Namespace):
    profile = get_profile(args.profile)
    tasks, configs, seeds = _tasks(args.tasks), _configs(args.configs), _seeds(args.seeds)
    hparams = parse_assignments(args.assign, check=True)
    return profile, plan(profile, tasks=tasks, configs=configs, seeds=seeds,
                         hparams=hparams, data_root=args.data_root)


def _positive(args: argparse.Namespace) -> None:
    """``--workers`` and ``--threads``, when given, are positive."""
    for flag in ("workers", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be a positive int, got {value}")


def _executor(args: argparse.Namespace, workers: int) -> Executor:
    """The executor ``run``'s arguments ask for; ``workers``: --workers, else the
    profile's (local executor only).

    Raises:
        ValueError: an option of the other executor, or a bad value.
        ImportError: --executor ray without Ray installed (names the extra).
    """
    ray_only = [flag for flag, value in (("--address", args.address),
                                         ("--cpus-per-run", args.cpus_per_run),
                                         ("--gpus-per-run", args.gpus_per_run))
                if value is not None]
    if args.executor == "local":
        if ray_only:
            raise ValueError(f"{', '.join(ray_only)}: only for --executor ray (the local "
                             f"executor runs on this machine; see --workers, --threads)")
        return LocalExecutor(workers, args.threads)
    from .ray_executor import RayExecutor

    cpus = 1.0 if args.cpus_per_run is None else args.cpus_per_run
    num_cpus = None
    if args.workers is not None:
        if args.address is not None:
            raise ValueError(f"--workers {args.workers} sizes a local Ray instance; with "
                             f"--address {args.address} the cluster's nodes decide how many "
                             f"runs go at once (their CPUs / --cpus-per-run)")
        if args.workers < 1:
            raise ValueError(f"--workers must be a positive int, got {args.workers}")
        num_cpus = max(1, math.ceil(args.workers * cpus))
    return RayExecutor(args.address, cpus_per_run=cpus,
                       gpus_per_run=0.0 if args.gpus_per_run is None else args.gpus_per_run,
                       threads=args.threads, num_cpus=num_cpus)


def _command(args: argparse.Namespace) -> str:
    """The ``run`` command line that plans the grid of ``args``."""
    parts = ["python", "-m", "gnpool.bench", "run", "--profile", args.profile]
    for flag in ("tasks", "configs", "seeds"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", getattr(args, flag)]
    for item in args.assign or []:
        parts += ["--set", item]
    return shlex.join(parts)


def _why_none(specs, stored: list[dict]) -> str:
    """Why none of the stored runs belongs to the planned grid."""
    if not stored:
        return "it holds no runs"
    planned = {(s.task, s.config.name, s.seed): s for s in specs}
    near = [(planned[k], r) for r in stored
            if (k := (r["task"], r["config"], r["seed"])) in planned]
    if not near:
        profiles = sorted({str(r.get("profile")) for r in stored})
        tasks = sorted({r["task"] for r in stored})
        return (f"it holds {len(stored)} runs (profiles {', '.join(profiles)}; tasks "
                f"{', '.join(tasks)}), none of the planned tasks, configurations and seeds")
    differ: Counter = Counter()
    for spec, row in near:
        # Compared as stored: JSON has lists where the plan has tuples.
        planned_hp, data = json.loads(json.dumps(spec.hparams.to_dict())), \
            json.loads(json.dumps(spec.data))
        stored_hp = row.get("hparams") or {}
        for key in [*stored_hp, *(k for k in planned_hp if k not in stored_hp)]:
            if key in stored_hp:
                value, note = stored_hp[key], ""
            else:       # a run made before the setting existed: it ran at the default
                value = ADDED_AFTER_0_2.get(key)
                note = ", a run made before the setting existed"
            if planned_hp.get(key) != value:
                differ[f"{key}={json.dumps(value)} (planned: "
                       f"{json.dumps(planned_hp.get(key))}{note})"] += 1
        for key in sorted(set(data) | set(row.get("data_params") or {})):
            value = (row.get("data_params") or {}).get(key)
            if data.get(key) != value:
                differ[f"data {key}={json.dumps(value)} (planned: "
                       f"{json.dumps(data.get(key))})"] += 1
    if not differ:
        return (f"{len(near)} of its runs have the planned tasks, configurations, seeds and "
                f"settings but other configuration definitions or data seed (made with "
                f"another version of gnpool's profiles)")
    settings = "; ".join(text for text, _ in differ.most_common(8))
    return (f"{len(near)} of its runs have the planned tasks, configurations and seeds but "
            f"were made with other settings: {settings}. Pass the same --set (and --tasks, "
            f"--configs, --seeds) as the run, or --all for every run in the database")


def _report_out(args: argparse.Namespace) -> Path:
    """The report directory: --out, else results/<profile>/ for the default database,
    else the database's directory."""
    return Path(args.out or (results_dir(args.profile) if args.db is None
                             else Path(args.db).parent))


def _check_out(args: argparse.Namespace) -> None:
    """The report directory is a directory (or can be created as one) this user can write."""
    out = _report_out(args)
    name = (f"--out {out}" if args.out else
            f"the report directory {out} (the default of --out: "
            + ("results/<profile>/ under $GNPOOL_BENCH_DIR)" if args.db is None else
               "the database's directory)"))
    where = _existing(out)
    if not where.is_dir():
        raise ValueError(f"{name} cannot be created: {where} is a file, not a directory; "
                         f"pass --out a writable directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"{name} cannot be written: {where} {_not_writable(where)}; pass "
                         f"--out a writable directory")


def _report(args: argparse.Namespace, specs) -> int:
    db_path = args.db or default_db(args.profile)
    _check_db_path(Path(db_path))
    committed = results_dir(args.profile) / "runs.sqlite"
    if args.db is None and not Path(db_path).exists() and committed.exists():
        db_path = committed          # a fresh checkout: report the committed results
    if not Path(db_path).exists():
        print(f"error: database {db_path} does not exist; run the grid first", file=sys.stderr)
        return 1
    _check_out(args)
    every = getattr(args, "all", False)
    out = _report_out(args)
    try:
        return _write_report(args, specs, db_path, out, every)
    except _OutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


class _OutError(Exception):
    """The report could not be written to its directory."""


@contextmanager
def _writing(out: Path) -> Iterator[None]:
    # --out is checked before the report starts, so this is rare: the disk filled up,
    # permissions changed meanwhile.
    try:
        yield
    except (OSError, sqlite3.OperationalError) as err:
        raise _OutError(f"cannot write the report to --out {out}: {type(err).__name__}: "
                        f"{err}") from err


def _write_report(args: argparse.Namespace, specs, db_path: Path, out: Path,
                  every: bool) -> int:
    with RunDB(db_path, readonly=True) as db:
        rows = db.rows(None if every else [s.key for s in specs])
        copy = Path(out) / "runs.sqlite"
        snapshot = copy.resolve() != Path(db_path).resolve()
        if rows and snapshot:
            with _writing(out):
                copied = db.snapshot(copy)
        if not rows:
            print(f"error: {db_path} has no runs of this grid: {_why_none(specs, db.rows())}",
                  file=sys.stderr)
            return 1
    profile = get_profile(args.profile)
    stored = {(r["task"], r["config"], r["seed"], r["hp_hash"]) for r in rows}
    missing = 0 if every else len({s.key for s in specs} - stored)
    if missing:
        # A report of a grid still under way replaces the one in `out` (in a source checkout:
        # the committed results) with fewer runs: say so, and say it in the report too.
        print(f"warning: {missing} of the grid's {len(specs)} runs are not in {db_path} yet; "
              f"this report of the other {len(specs) - missing} replaces the one in {out}",
              file=sys.stderr)
    narrowed = [f"--{flag}" for flag in ("tasks", "configs", "seeds")
                if getattr(args, flag, None) is not None]
    if narrowed and not every and args.out is None and args.db is None:
        # Only part of the profile's grid, written where the whole profile's report lives
        # (in a source checkout: the committed results).
        full = len(plan(profile, hparams=parse_assignments(args.assign, check=True),
                        data_root=args.data_root))
        print(f"warning: this report covers the {len(specs)} runs {' and '.join(narrowed)} "
              f"select, of the profile's {full}, and replaces the one in {out}; pass --out "
              f"DIR to write it elsewhere", file=sys.stderr)
    if any(r.get("level") == multiview.LEVEL for r in rows):
        with _writing(out):
            text, files = profile_report(rows, out, profile, plots=not args.no_plots)
        print(text)
        print("wrote " + ", ".join(str(f) for f in files + ([copied] if snapshot else [])),
              file=sys.stderr)
        return 0
    finished = [r for r in rows if r["status"] == "finished"]
    seconds = sum(r["wall_seconds"] or 0.0 for r in rows)
    span = _sessions(rows)
    versions = next((r["versions"] for r in rows if r.get("versions")), {}) or {}
    how = ("Every run in the database, whatever its settings" if every else
           f"Produced by `{_command(args)}`"
           + (" (`make bench`)" if _command(args).endswith("--profile quick") else ""))
    overrides = "" if every or not args.assign else \
        f"; these runs override it with --set {' --set '.join(args.assign)}"
    intro = (f"Profile `{profile.name}` as gnpool.bench defines it now: {profile.description}"
             f"{overrides}. {len(finished)} runs finished, "
             f"{len(rows) - len(finished)} failed"
             + (f", {missing} of the grid's {len(specs)} not run yet" if missing else "")
             + f"; {seconds / 60:.1f} minutes of training in "
             f"all{span}. {how}, with torch {_versions(rows, 'torch')}, "
             f"torch_geometric {_versions(rows, 'torch_geometric')}, gnpool "
             f"{_versions(rows, 'gnpool')}"
             + (f" (commit {versions['gnpool_commit']})"
                if "gnpool_commit" in versions and "sessions" not in span else "")
             + ". The settings the runs were made with are listed at the end.")
    with _writing(out):
        text, files = write_report(rows, out,
                                   f"Extrapolation benchmark: `{profile.name}` profile",
                                   intro, plots=not args.no_plots,
                                   appendix=settings_section(rows))
    if snapshot:
        files.append(copied)
    print(text)
    print("wrote " + ", ".join(str(f) for f in files), file=sys.stderr)
    return 0


def _versions(rows: list[dict], package: str) -> str:
    """The versions of ``package`` the runs were made with, oldest first (runs added to a
    database later may have been made with another)."""
    seen: dict[str, None] = {}
    for r in sorted(rows, key=lambda r: r.get("started_at") or ""):
        version = (r.get("versions") or {}).get(package)
        if version:
            seen[str(version)] = None
    return " and ".join(seen) if seen else "?"


def _check_db_path(path: Path, write: bool = False) -> None:
    """A database path must name a file (existing or not) whose parent is a directory;
    with ``write`` (``run``), one this user can create or write, in a directory where
    SQLite can create its journal files."""
    if path.is_dir():
        raise ValueError(f"--db {path} is a directory; expected an SQLite file (existing or "
                         f"to be created), e.g. {path / 'runs.sqlite'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--db {path} cannot be created: {parent} is a file, not a "
                                 f"directory")
            break
    why = _why_not_writable(path) if write else None
    if why:
        if path.exists():
            raise ValueError(f"--db {path} cannot be written: {why}. Its runs are not "
                             f"affected (`report` reads them where they are); pass --db a "
                             f"file in a writable directory (a copy of this one keeps its "
                             f"runs)")
        raise ValueError(f"--db {path} cannot be created: {why}; pass --db a file in a "
                         f"writable directory")


def _start_from_results(profile: str, db_path: Path, specs) -> None:
    """``run --from-results``: add the profile's reported runs (finished ones) that
    ``db_path`` lacks to it, creating it if needed; nothing stored there is replaced."""
    reported = results_dir(profile) / "runs.sqlite"
    if not reported.is_file():
        raise ValueError(f"--from-results needs the reported runs {reported}, which do not "
                         f"exist; run without --from-results to train every run")
    try:
        with RunDB(reported, readonly=True) as source:
            rows = source.rows(status="finished")
    except RunDBError as err:
        raise ValueError(f"--from-results cannot read the reported runs: {err}; run without "
                         f"--from-results to train every run") from err
    with RunDB(db_path) as db:
        have = set(db.statuses())
        added = [r for r in rows if (r["task"], r["config"], r["seed"], r["hp_hash"])
                 not in have]
        for row in added:
            db.write(row)
    planned = {s.key for s in specs}
    useful = sum((r["task"], r["config"], r["seed"], r["hp_hash"]) in planned for r in added)
    print(f"--from-results: added {len(added)} of the {len(rows)} finished runs in {reported} "
          f"to {db_path} ({len(rows) - len(added)} were there already); {useful} of the "
          f"added runs belong to this grid and are not trained again", file=sys.stderr)


def _sessions(rows: list[dict]) -> str:
    """Wall time from the first run's start to the last run's end, per gnpool commit the
    runs were made at when there are several (runs added to a database later)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("started_at") and r.get("finished_at"):
            commit = (r.get("versions") or {}).get("gnpool_commit") or "?"
            groups.setdefault(commit, []).append(r)
    if not groups:
        return ""

    def wall(group: list[dict]) -> float:
        end = max(datetime.fromisoformat(r["finished_at"]) for r in group)
        start = min(datetime.fromisoformat(r["started_at"]) for r in group)
        return (end - start).total_seconds() / 60

    if len(groups) == 1:
        (group,) = groups.values()
        return (f" ({wall(group):.1f} minutes of wall time from the first run's start to the "
                "last run's end)")
    ordered = sorted(groups.items(), key=lambda kv: min(r["started_at"] for r in kv[1]))
    return (" (made in sessions, each with its wall time from its first run's start to its "
            "last run's end: " + "; ".join(f"{len(g)} runs at commit {c}, {wall(g):.1f} minutes"
                                           for c, g in ordered) + ")")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gnpool.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a grid, skipping runs already finished")
    _grid_args(run)
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: this process or --workers processes on this machine "
                     "(default); ray: every run a Ray task, on the cluster at --address or "
                     "on a local Ray instance (needs pip install 'gnpool[distributed]')")
    run.add_argument("--workers", type=int, help="parallel processes (default: the "
                     "profile's); with --executor ray and no --address: runs at once on the "
                     "local Ray instance, which gets workers x --cpus-per-run CPUs (default: "
                     "all of the machine's)")
    run.add_argument("--threads", type=int, help="torch threads per run, >= 1 (default: 1 with "
                     "several local workers, torch's default with one; with --executor ray: "
                     "--cpus-per-run)")
    run.add_argument("--address", help="--executor ray: address of a running Ray cluster "
                     "(HOST:6379 as printed by `ray start --head`, ray://HOST:10001, or auto); "
                     "default: $RAY_ADDRESS, else a local Ray instance for this grid")
    run.add_argument("--cpus-per-run", type=float, help="--executor ray: CPUs each run "
                     "reserves on its node (default: 1)")
    run.add_argument("--gpus-per-run", type=float, help="--executor ray: GPUs each run "
                     "reserves (default: 0; the benchmark's models train on the CPU)")
    run.add_argument("--from-results", action="store_true",
                     help="first add to the database (creating it if needed) the finished "
                     "runs of the profile's report (results/<profile>/runs.sqlite, the "
                     "committed ones in a source checkout) that it lacks, so that only the "
                     "runs missing from both train; nothing in the database is replaced")
    run.add_argument("--no-retry-failed", action="store_true",
                     help="skip runs that failed before instead of running them again")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--report", action="store_true", help="print the report afterwards "
                     "(also when runs failed; the exit status still says so)")
    run.add_argument("--out", type=Path, help="report directory (see report --out)")
    run.add_argument("--no-plots", action="store_true", help="report without PNG plots")
    rep = sub.add_parser("report", help="print and write the Markdown table and PNG plots")
    _grid_args(rep)
    rep.add_argument("--all", action="store_true",
                     help="every run in the database, not only the profile's grid")
    rep.add_argument("--out", type=Path, help="output directory, which also gets a copy of the "
                     "database (default: results/<profile>/ under $GNPOOL_BENCH_DIR for the "
                     "default database, else the database's directory)")
    rep.add_argument("--no-plots", action="store_true", help="only the Markdown table")
    lst = sub.add_parser("list", help="profiles, their tasks, configurations and run counts")
    lst.add_argument("--profile", help="only this profile")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            return _list(args.profile)
        profile, specs = _specs(args)
        if args.command == "report":
            return _report(args, specs)
        _positive(args)
        try:
            executor = _executor(args, profile.workers if args.workers is None
                                 else args.workers)
        except ImportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        db_path = args.db or default_db(profile.name)
        _check_db_path(Path(db_path), write=True)
        if args.report:
            _check_out(args)
        if args.from_results:
            _start_from_results(profile.name, Path(db_path), specs)
        summary = run_grid(specs, db_path, progress=not args.no_progress,
                           retry_failed=not args.no_retry_failed, executor=executor)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{summary.planned} runs planned, {summary.skipped} already done, "
          f"{summary.executed} run now ({summary.finished} finished, {summary.failed} failed) "
          f"in {summary.wall_seconds / 60:.1f} min; database {db_path}", file=sys.stderr)
    for line in summary.failures:
        print(f"  failed: {line}", file=sys.stderr)
    if summary.interrupted:
        print("interrupted: every finished run is in the database; run again to resume",
              file=sys.stderr)
        return 130
    try:
        status = _report(args, specs) if args.report else 0
    except ValueError as err:       # the runs are stored; only the report failed
        print(f"error: {err}", file=sys.stderr)
        status = 1
    if summary.failed:
        print(f"error: {summary.failed} of {summary.executed} runs failed (stored as failed; "
              f"they run again on the next call)", file=sys.stderr)
        return 1
    return status


def _list(name: str | None) -> int:
    profiles = [get_profile(name)] if name else list(PROFILES.values())
    for profile in profiles:
        specs = plan(profile)
        print(f"{profile.name}: {profile.description}")
        print(f"  seeds {list(profile.seeds)}, workers {profile.workers}, {len(specs)} runs")
        for tp in profile.tasks:
            configs = grid_configs(profile, [tp.task])
            print(f"  {tp.task}: {len(configs)} configurations: {', '.join(configs)}")
            print(f"    data {tp.data or 'defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
