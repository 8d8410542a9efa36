"""Command line of the extrapolation benchmark.

    python -m gnpool.bench run                       # the quick profile, then its report
    python -m gnpool.bench run --profile smoke --workers 1
    python -m gnpool.bench run --tasks max_degree --configs sum-max,gnp --set epochs=50
    python -m gnpool.bench report --profile quick    # table + plots from the database
    python -m gnpool.bench list                      # profiles, their tasks and run counts
    python -m gnpool.bench run --profile multiview_quick --report   # the multi-view family
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import multiview
from .db import RunDB
from .hparams import parse_assignments
from .multiview_report import profile_report
from .profiles import PROFILES, get_profile
from .report import write_report
from .runner import default_db, plan, results_dir, run_grid


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _grid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="quick", help=f"one of {', '.join(PROFILES)} "
                   "(default: quick)")
    p.add_argument("--tasks", help="comma-separated subset of the profile's tasks")
    p.add_argument("--configs", help="comma-separated configuration names, e.g. sum-max,gnp")
    p.add_argument("--seeds", help="comma-separated seeds (default: the profile's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="assign",
                   help="override a hyperparameter of every run (JSON value), repeatable")
    p.add_argument("--db", type=Path, help="SQLite file (default: "
                   "experiments/runs/<profile>.sqlite)")
    p.add_argument("--data-root", type=Path, help="dataset cache directory")


def _specs(args: argparse.Namespace):
    profile = get_profile(args.profile)
    seeds = None if args.seeds is None else [int(s) for s in _csv(args.seeds)]
    return profile, plan(profile, tasks=_csv(args.tasks), configs=_csv(args.configs),
                         seeds=seeds, hparams=parse_assignments(args.assign),
                         data_root=args.data_root)


def _report(args: argparse.Namespace, specs) -> int:
    db_path = args.db or default_db(args.profile)
    committed = results_dir(args.profile) / "runs.sqlite"
    if args.db is None and not Path(db_path).exists() and committed.exists():
        db_path = committed          # a fresh checkout: report the committed results
    if not Path(db_path).exists():
        print(f"error: database {db_path} does not exist; run the grid first", file=sys.stderr)
        return 1
    with RunDB(db_path, readonly=True) as db:
        rows = db.rows(None if getattr(args, "all", False) else [s.key for s in specs])
        out = args.out or (results_dir(args.profile) if args.db is None else Path(db_path).parent)
        copy = Path(out) / "runs.sqlite"
        snapshot = copy.resolve() != Path(db_path).resolve()
        if rows and snapshot:
            copied = db.snapshot(copy)
    if not rows:
        print(f"error: {db_path} has no runs of this grid", file=sys.stderr)
        return 1
    profile = get_profile(args.profile)
    if any(r.get("level") == multiview.LEVEL for r in rows):
        text, files = profile_report(rows, out, profile, plots=not args.no_plots)
        print(text)
        print("wrote " + ", ".join(str(f) for f in files + ([copied] if snapshot else [])),
              file=sys.stderr)
        return 0
    finished = [r for r in rows if r["status"] == "finished"]
    seconds = sum(r["wall_seconds"] or 0.0 for r in rows)
    versions = next((r["versions"] for r in rows if r.get("versions")), {}) or {}
    intro = (f"Profile `{profile.name}`: {profile.description}. {len(finished)} runs finished, "
             f"{len(rows) - len(finished)} failed; {seconds / 60:.1f} minutes of training in "
             f"all. Produced by `python -m gnpool.bench run --profile {profile.name}` "
             f"(`make bench` for the quick profile) with torch {versions.get('torch', '?')}, "
             f"torch_geometric {versions.get('torch_geometric', '?')}, gnpool "
             f"{versions.get('gnpool', '?')}"
             + (f" (commit {versions['gnpool_commit']})" if "gnpool_commit" in versions else "")
             + ".")
    text, files = write_report(rows, out, f"Extrapolation benchmark: `{profile.name}` profile",
                               intro, plots=not args.no_plots)
    if snapshot:
        files.append(copied)
    print(text)
    print("wrote " + ", ".join(str(f) for f in files), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gnpool.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a grid, skipping runs already finished")
    _grid_args(run)
    run.add_argument("--workers", type=int, help="parallel processes (default: the profile's)")
    run.add_argument("--threads", type=int, help="torch threads per worker (default: 1 with "
                     "several workers, torch's default with one)")
    run.add_argument("--no-retry-failed", action="store_true",
                     help="skip runs that failed before instead of running them again")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--report", action="store_true", help="print the report afterwards")
    run.add_argument("--out", type=Path, help="report directory (see report --out)")
    run.add_argument("--no-plots", action="store_true", help="report without PNG plots")
    rep = sub.add_parser("report", help="print and write the Markdown table and PNG plots")
    _grid_args(rep)
    rep.add_argument("--all", action="store_true",
                     help="every run in the database, not only the profile's grid")
    rep.add_argument("--out", type=Path, help="output directory, which also gets a copy of the "
                     "database (default: experiments/results/<profile>/ for the default "
                     "database, else the database's directory)")
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
        workers = profile.workers if args.workers is None else args.workers
        db_path = args.db or default_db(profile.name)
        summary = run_grid(specs, db_path, workers=workers, threads=args.threads,
                           progress=not args.no_progress,
                           retry_failed=not args.no_retry_failed)
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
    return _report(args, specs) if args.report else 0


def _list(name: str | None) -> int:
    profiles = [get_profile(name)] if name else list(PROFILES.values())
    for profile in profiles:
        specs = plan(profile)
        print(f"{profile.name}: {profile.description}")
        print(f"  seeds {list(profile.seeds)}, workers {profile.workers}, {len(specs)} runs")
        for tp in profile.tasks:
            configs = sorted({s.config.name for s in specs if s.task == tp.task})
            print(f"  {tp.task}: {len(configs)} configurations; data {tp.data or 'defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
