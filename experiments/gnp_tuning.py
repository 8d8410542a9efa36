"""Choose how GNP is initialised and trained, on the tuning split only.

Every variant puts GNP in every aggregation and readout and trains on the quick profile's
data and hyperparameters with training seeds (100, 101), which no reported run uses. A
variant is scored on the *tuning split*: extrapolation-distributed samples drawn with data
seed 1000, independent of the reported extrapolation test split (data seed 0), which this
script never reads. The score of a variant is the geometric mean over tasks of its tuning
MAPE divided by the best fixed configuration's tuning MAPE (same seeds); the lowest score
wins. Fixed configurations run alongside as the reference.

    python experiments/gnp_tuning.py                      # stage 1: initialisation, sharing,
                                                          #   rectification
    python experiments/gnp_tuning.py --stage 2            # pool_lr around the stage-1 winner

Writes experiments/results/gnp_tuning/{runs.sqlite, stage<k>.md}. Resumable: finished
runs are skipped.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from gnpool.bench.configs import PoolingConfig, default_configs
from gnpool.bench.db import RunDB
from gnpool.bench.profiles import _QUICK_GRAPH, _QUICK_HP, _QUICK_SETS, Profile, TaskPlan
from gnpool.bench.runner import plan, run_grid
from gnpool.datasets import task_info

OUT = Path(__file__).resolve().parent / "results" / "gnp_tuning"
SEEDS = (100, 101)
TUNE_SEED = 1000

# The quick profile's tasks, data and hyperparameters, without any GNP-specific setting.
TASKS = (
    TaskPlan("shortest_path", _QUICK_GRAPH, {**_QUICK_HP, "layers": 3, "lr": 0.005,
                                             "batch_size": 32}),
    TaskPlan("max_degree", _QUICK_GRAPH, {**_QUICK_HP, "layers": 2, "epochs": 60}),
    TaskPlan("node_neighbour_max", _QUICK_GRAPH, {**_QUICK_HP, "layers": 1}),
    TaskPlan("set_max", _QUICK_SETS, _QUICK_HP),
    TaskPlan("set_l2", _QUICK_SETS, _QUICK_HP),
)
PROFILE = Profile("gnp_tuning", "GNP recipe selection on the tuning split", TASKS,
                  seeds=SEEDS, workers=2, tune_seed=TUNE_SEED)

# A variant: keyword arguments of every GNP (aggregations; readouts and set poolings get
# `readout` merged over them) and hyperparameter overrides.
MEAN = {"q": 1.0}
SHARED = {"channels": 1}
STAGES: dict[int, dict[str, dict[str, Any]]] = {
    1: {
        "gnp-sum": {"gnp": {}, "readout": {}, "hp": {}},
        "gnp-sum-shared": {"gnp": SHARED, "readout": {}, "hp": {}},
        "gnp-meanread": {"gnp": {}, "readout": MEAN, "hp": {}},
        "gnp-meanread-shared": {"gnp": SHARED, "readout": MEAN, "hp": {}},
        "gnp-meanread-linear": {"gnp": {}, "readout": MEAN,
                                "hp": {"last_activation": False}},
        "gnp-meanread-shared-linear": {"gnp": SHARED, "readout": MEAN,
                                       "hp": {"last_activation": False}},
        "gnp-bank": {"gnp": {}, "readout": MEAN,
                     "hp": {"gnp_negative_share": 0.25, "gnp_p_spread": 50.0}},
    },
}
#: pool_lr of stage 1 (the library default being tested); stage 2 varies it.
POOL_LR = 0.05
STAGE2_LRS = (0.01, 0.2)


def variant_configs(level: str, variants: dict[str, dict[str, Any]]) -> list[PoolingConfig]:
    out = []
    for name, v in variants.items():
        hp = {"pool_lr": POOL_LR, **v["hp"]}
        readout = {**v["gnp"], **v["readout"]}
        if level == "graph":
            out.append(PoolingConfig(name, "gnp", "gnp", dict(v["gnp"]), readout, overrides=hp))
        elif level == "node":
            out.append(PoolingConfig(name, "gnp", None, dict(v["gnp"]), overrides=hp))
        else:
            out.append(PoolingConfig(name, None, "gnp", readout_kwargs=readout, overrides=hp))
    return out


def stage_variants(stage: int) -> dict[str, dict[str, Any]]:
    if stage in STAGES:
        return STAGES[stage]
    winner = read_winner(1)
    base = STAGES[1][winner]
    return {f"{winner}-lr{lr:g}": {**base, "hp": {**base["hp"], "pool_lr": lr}}
            for lr in STAGE2_LRS}


def read_winner(stage: int) -> str:
    text = (OUT / f"stage{stage}.md").read_text()
    for line in text.splitlines():
        if line.startswith("Chosen: `"):
            return line.split("`")[1]
    raise SystemExit(f"no choice recorded in {OUT / f'stage{stage}.md'}; run stage {stage}")


def specs_for(stage: int):
    variants = stage_variants(stage)
    extra = {}
    for tp in TASKS:
        level = task_info(tp.task, **tp.data).level
        extra[tp.task] = variant_configs(level, variants)
    fixed = {tp.task: [c.name for c in default_configs(task_info(tp.task).level,
                                                       task_info(tp.task).aggr) if c.fixed]
             for tp in TASKS}
    names = sorted({n for f in fixed.values() for n in f} | set(variants))
    profile = replace(PROFILE, tasks=tuple(replace(tp, configs=tuple(fixed[tp.task]))
                                           for tp in TASKS))
    return plan(profile, configs=names, extra_configs=extra), variants


def summarise(stage: int, variants: dict[str, dict[str, Any]]) -> str:
    with RunDB(OUT / "runs.sqlite", readonly=True) as db:
        rows = [r for r in db.rows() if r["status"] == "finished"
                and (r.get("hparams") or {}) is not None]
    tune: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    dead: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    fixed_names: set[str] = set()
    for r in rows:
        if r.get("mape_tune") is None or r["seed"] not in SEEDS:
            continue
        if (r.get("config_def") or {}).get("fixed"):
            fixed_names.add(r["config"])
        elif r["config"] not in variants:
            continue
        tune[r["task"]][r["config"]].append(r["mape_tune"])
        for module in (r.get("dead_channels") or {}).values():
            dead[r["config"]]["before"].append(module["before"])
            dead[r["config"]]["after"].append(module["after"])
    tasks = [tp.task for tp in TASKS if tp.task in tune]
    best = {t: min((statistics.fmean(v), c) for c, v in tune[t].items() if c in fixed_names)
            for t in tasks}
    lines = [f"# GNP tuning, stage {stage}", "",
             "Tuning-split MAPE (%) (extrapolation distribution, data seed "
             f"{TUNE_SEED}; training seeds {', '.join(map(str, SEEDS))}; mean over seeds) "
             "and its ratio to the best fixed configuration on the same split. Score: "
             "geometric mean of the ratios over tasks (lower is better). Dead: mean share "
             "of pooling input channels that are 0 on every training element, at "
             "initialisation -> after training.", "",
             "| variant | " + " | ".join(f"`{t}`" for t in tasks) + " | score | dead |",
             "|---|" + "---|" * (len(tasks) + 2)]
    lines.append("| best fixed | " + " | ".join(f"{best[t][1]}: {best[t][0]:.3g}"
                                                  for t in tasks) + " | 1 | |")
    scores = {}
    for name in variants:
        cells, ratios = [], []
        for t in tasks:
            values = tune[t].get(name)
            if not values or any(not math.isfinite(v) for v in values):
                cells.append("-" if not values else "diverged")
                ratios.append(math.inf if values else math.nan)
                continue
            ratio = statistics.fmean(values) / best[t][0]
            ratios.append(ratio)
            cells.append(f"{statistics.fmean(values):.3g} ({ratio:.2f}x)")
        complete = all(not math.isnan(r) for r in ratios)
        score = (math.exp(statistics.fmean(math.log(r) for r in ratios))
                 if complete and all(math.isfinite(r) for r in ratios) else
                 (math.inf if complete else math.nan))
        scores[name] = score
        d = dead.get(name)
        dead_text = (f"{statistics.fmean(d['before']):.2f} -> {statistics.fmean(d['after']):.2f}"
                     if d else "-")
        lines.append(f"| `{name}` | " + " | ".join(cells) + f" | {score:.3g} | {dead_text} |")
    done = {n: s for n, s in scores.items() if not math.isnan(s)}
    if len(done) == len(variants):
        winner = min(done, key=done.get)
        lines += ["", f"Chosen: `{winner}` (lowest score, {done[winner]:.3g})."]
    fixed_dead = [x for c in fixed_names for x in dead[c]["after"]]
    if fixed_dead:
        lines += ["", f"Fixed configurations' dead share after training: "
                      f"{statistics.fmean(fixed_dead):.2f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=int, default=1, choices=(1, 2))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    specs, variants = specs_for(args.stage)
    if not args.report_only:
        summary = run_grid(specs, OUT / "runs.sqlite", workers=args.workers)
        print(f"{summary.executed} runs ({summary.failed} failed) in "
              f"{summary.wall_seconds / 60:.1f} min", file=sys.stderr)
    text = summarise(args.stage, variants)
    (OUT / f"stage{args.stage}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
