"""Command line: ``python -m gnpool.datasets {list,info,generate,stats} ...``.

    python -m gnpool.datasets list
    python -m gnpool.datasets info max_degree
    python -m gnpool.datasets generate shortest_path --split train --param num_train=2000
    python -m gnpool.datasets stats max_degree --param train_nodes=10,20
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import list_tasks, load_task, task_info
from .registry import get_spec
from .spec import SPLITS


def _params(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --param {pair!r} is invalid; expected NAME=VALUE")
        out[key.strip()] = value
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _cmd_list(args: argparse.Namespace) -> None:
    print("| task | level | aggr | readout | label |")
    print("|---|---|---|---|---|")
    for name in list_tasks(args.level):
        info = task_info(name)
        print(f"| {name} | {info.level} | {info.aggr or '-'} | {info.readout or '-'} "
              f"| {info.description} |")


def _cmd_info(args: argparse.Namespace) -> None:
    info = task_info(args.name, **_params(args.param))
    print(f"{info.name} ({info.level}-level): {info.description}")
    print(f"aggr={info.aggr} readout={info.readout} num_node_features="
          f"{info.num_node_features} edge_dim={info.edge_dim} target_dim={info.target_dim}\n")
    print("| parameter | value | description |")
    print("|---|---|---|")
    for p in get_spec(args.name).params:
        print(f"| `{p.name}` | {_fmt(info.params[p.name])} | {p.doc} |")


def _load(args: argparse.Namespace, split: str) -> tuple[Any, float]:
    start = time.perf_counter()
    ds = load_task(args.name, split, root=args.root, seed=args.seed,
                   progress=not args.no_progress, force_reload=getattr(args, "force", False),
                   **_params(args.param))
    return ds, time.perf_counter() - start


def _cmd_generate(args: argparse.Namespace) -> None:
    for split in args.split or SPLITS:
        ds, secs = _load(args, split)
        how = "generated" if ds.generated else "loaded from cache"
        print(f"{args.name}/{split}: {len(ds)} samples, {how} in {secs:.2f} s "
              f"-> {ds.cache_path}", flush=True)


def _triple(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.4g} / {t[1]:.4g} / {t[2]:.4g}"


def _cmd_stats(args: argparse.Namespace) -> None:
    rows, fams = [], []
    info = task_info(args.name, **_params(args.param))
    graph = info.level != "set"
    for split in SPLITS:
        st = _load(args, split)[0].stats()
        row = [split, str(st["samples"]), _triple(st["nodes"])]
        if graph:
            row.append(_triple(st["edges"]))
        row.append(f"[{st['features'][0]:.3g}, {st['features'][1]:.3g}]")
        if info.edge_dim:
            row.append(f"[{st['weights'][0]:.3g}, {st['weights'][1]:.3g}]")
        row.append(_triple(st["labels"]))
        rows.append(row)
        if "families" in st:
            fams.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in
                                                   st["families"].items()))
    head = ["split", "samples", ("nodes" if graph else "set size") + " min / mean / max"]
    if graph:
        head.append("edges min / mean / max")
    head.append("feature range" if graph else "value range")
    if info.edge_dim:
        head.append("weight range")
    head.append(("scored labels" if info.level == "node" else "labels") + " min / mean / max")
    print(f"`{info.name}`, seed {args.seed}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if fams:
        print("\nGraphs per family:\n")
        print("\n".join(fams))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m gnpool.datasets``."""
    parser = argparse.ArgumentParser(prog="python -m gnpool.datasets",
                                     description="gnpool's synthetic extrapolation tasks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list the tasks")
    p.add_argument("--level", choices=("graph", "node", "set"))
    p.set_defaults(func=_cmd_list)
    for name, func, text in (("info", _cmd_info, "show a task's parameters"),
                             ("generate", _cmd_generate, "generate (or load) splits"),
                             ("stats", _cmd_stats, "print per-split statistics (Markdown)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("name", help="task name (see `list`)")
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="override a parameter, e.g. train_nodes=20,30 (repeatable)")
        p.set_defaults(func=func)
        if name == "info":
            continue
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--root", help="cache directory (default: $GNPOOL_DATA_DIR, "
                                      "<repo>/datasets/cache or ~/.cache/gnpool)")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if name == "generate":
            p.add_argument("--split", action="append", choices=SPLITS,
                           help="split to generate (repeatable; default: all)")
            p.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if args.command == "stats":
        argv_text = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
        print(f"\nProduced by `python -m gnpool.datasets {argv_text}`.")


if __name__ == "__main__":
    main()
