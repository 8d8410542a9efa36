"""Why GNP does or does not match the best fixed pooling: GNP variants side by side.

Every variant is GNP everywhere with one setting changed (initialisation of p and q, the
sign of the exponents, their learning rate, their bounds, the depth, a linear last layer
of the MLPs feeding the poolings), trained on the quick profile's data and
hyperparameters next to the task's fixed configurations.

    python experiments/gnp_investigation.py                 # all tasks and variants
    python experiments/gnp_investigation.py --tasks max_degree --variants base,readout-mean

Runs go to experiments/runs/gnp_investigation.sqlite; the tables (report.md, or <name>.md)
and a copy of the database (runs.sqlite) to experiments/results/gnp_investigation/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from gnpool.bench import PoolingConfig, RunDB, get_profile, plan, run_grid
from gnpool.bench.hparams import parse_assignments
from gnpool.bench.report import best_fixed, collect, fmt, known_good
from gnpool.datasets import task_info

OUT = Path(__file__).resolve().parent / "results" / "gnp_investigation"
DB = Path(__file__).resolve().parent / "runs" / "gnp_investigation.sqlite"
# GNPAggregation's own defaults: p = 1, q = 0 (sum) in every layer, positive exponents.
PLAIN = {"gnp_kwargs": {}, "gnp_readout_kwargs": {}, "gnp_negative_share": 0.0,
         "gnp_p_spread": None}
VARIANTS: dict[str, dict] = {
    "base": PLAIN,
    "readout-mean": {**PLAIN, "gnp_readout_kwargs": {"q": 1.0}},
    "neg-25": {**PLAIN, "gnp_negative_share": 0.25},
    "readout-mean+neg-25": {**PLAIN, "gnp_readout_kwargs": {"q": 1.0},
                            "gnp_negative_share": 0.25},
    "readout-mean+neg-25+lr-x5": {**PLAIN, "gnp_readout_kwargs": {"q": 1.0},
                                  "gnp_negative_share": 0.25, "pool_lr": "x5"},
    "readout-mean+neg-25+pmax-20": {**PLAIN, "gnp_kwargs": {"p_max": 20.0},
                                    "gnp_readout_kwargs": {"q": 1.0},
                                    "gnp_negative_share": 0.25},
    "readout-mean+neg-25+linear-last": {**PLAIN, "gnp_readout_kwargs": {"q": 1.0},
                                        "gnp_negative_share": 0.25, "last_activation": False},
    "readout-mean+neg-25+spread-50": {**PLAIN, "gnp_readout_kwargs": {"q": 1.0},
                                      "gnp_negative_share": 0.25, "gnp_p_spread": 50.0},
    "readout-mean+neg-25+spread-50+lr-x5": {**PLAIN, "gnp_readout_kwargs": {"q": 1.0},
                                            "gnp_negative_share": 0.25, "gnp_p_spread": 50.0,
                                            "pool_lr": "x5"},
    "readout-mean+neg-25+1-layer-less": {**PLAIN, "gnp_readout_kwargs": {"q": 1.0},
                                         "gnp_negative_share": 0.25, "layers": "-1"},
}
TASKS = ("max_degree", "shortest_path", "node_neighbour_max", "set_max", "set_l2")


def variant_config(task_hp: dict, name: str, level: str) -> PoolingConfig | None:
    """GNP everywhere with the variant's overrides (``None`` if it does not apply)."""
    overrides = dict(VARIANTS[name])
    if overrides.get("pool_lr") == "x5":
        overrides["pool_lr"] = 5 * task_hp.get("lr", 0.01)
    if overrides.get("layers") == "-1":
        if level == "set" or task_hp.get("layers", 2) == 1:
            return None
        overrides["layers"] = task_hp.get("layers", 2) - 1
    aggr = None if level == "set" else "gnp"
    readout = None if level == "node" else "gnp"
    return PoolingConfig(f"gnp:{name}", aggr, readout, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="assign",
                        help="hyperparameter override for every run, e.g. epochs=120")
    parser.add_argument("--name", default="report", help="writes <name>.md")
    parser.add_argument("--db", type=Path, default=DB)
    args = parser.parse_args(argv)
    hparams = parse_assignments(args.assign)
    profile = get_profile("quick")
    plans = {tp.task: tp for tp in profile.tasks}
    tasks = args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    extra, reference = {}, []
    for task in tasks:
        specs = plan(profile, tasks=[task])
        level = task_info(task, **plans[task].data).level
        configs = [variant_config(plans[task].hparams, v, level)
                   for v in args.variants.split(",")]
        extra[task] = [c for c in configs if c is not None]
        good = known_good(task)
        fixed = [c for c in {s.config.name for s in specs if s.config.fixed}
                 if good is None or c == good]
        reference += plan(profile, tasks=[task], configs=fixed, seeds=seeds, hparams=hparams)
    variants = [s for task in tasks for s in plan(profile, tasks=[task], seeds=seeds,
                                                    extra_configs=extra, hparams=hparams,
                                                    configs=[c.name for c in extra[task]])]
    specs = reference + variants
    summary = run_grid(specs, args.db, workers=args.workers)
    print(f"{summary.executed} runs ({summary.failed} failed) in "
          f"{summary.wall_seconds / 60:.1f} min", file=sys.stderr)
    with RunDB(args.db) as db:
        rows = db.rows([s.key for s in specs])
        db.snapshot(OUT / "runs.sqlite")
    text = render(rows, hparams)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.md").write_text(text)
    print(text)
    return 0


def _readout_summary(rows: list[dict]) -> str:
    parts = []
    for row in rows:
        modules = row.get("gnp") or []
        if not modules:
            continue
        last = modules[-1]
        pos = [p for p in last["p"] if p > 0]
        big = sum(p >= 20 for p in pos)
        first = modules[0]
        parts.append(f"last: p>=20 in {big}/{len(pos)} positive channels, median q "
                     f"{statistics.median(last['q']):.2f}; first: median p "
                     f"{statistics.median(p for p in first['p'] if p > 0):.2f}, q "
                     f"{statistics.median(first['q']):.2f}")
    return "; ".join(parts)


def render(rows: list[dict], hparams: dict) -> str:
    cells = collect(rows)
    changed = ", ".join(f"{k}={v}" for k, v in hparams.items()) or "none"
    lines = ["# GNP investigation", "",
             "Quick-profile data and hyperparameters (changed for every run: "
             f"{changed}); MAPE (%) of GNP variants against the task's fixed "
             "configuration(s) trained alongside. `learned`: the last GNP (readout or set "
             "pooling) and the first layer's GNP at the selected epoch.", "",
             "| task | configuration | seeds | interp MAPE | extrap MAPE | / best fixed | "
             "learned (per seed) |",
             "|---|---|---|---|---|---|---|"]
    for task, by_config in cells.items():
        best = best_fixed(by_config)
        for cell in sorted(by_config.values(), key=lambda c: (not c.fixed, c.config)):
            ratio = (f"{cell.extrap_mean / best.extrap_mean:.2f}x"
                     if best is not None and cell.extrap else "-")
            lines.append(f"| `{task}` | `{cell.config}` | {len(cell.rows)} | {fmt(cell.interp)} | "
                         f"{fmt(cell.extrap)} | {ratio} | {_readout_summary(cell.rows)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
