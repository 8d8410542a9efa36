"""Calibrate the standard profile's budget on the tuning split.

The standard profile exists to test GNP's claim in a budget where the task's known-good
fixed pooling extrapolates as in Xu et al. (near-zero error for sum-max on max_degree and
min-min on shortest_path). This script trains the known-good configuration of each task
under a few candidate budgets (width, training set size, epochs, learning-rate schedule)
with training seeds (100, 101) and scores it on the tuning split (extrapolation
distribution, data seed 1000); the reported test splits are never read. The cheapest
candidate whose known-good tuning MAPE is within 1.25x of the best candidate's is chosen
per task.

    python experiments/standard_calibration.py                  # train what is missing
    python experiments/standard_calibration.py --summary-only   # the table from the runs

Writes experiments/results/standard_calibration/{runs.sqlite, README.md}; resumable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from gnpool.bench.configs import default_configs
from gnpool.bench.db import RunDB
from gnpool.bench.profiles import Profile, TaskPlan
from gnpool.bench.report import known_good
from gnpool.bench.runner import plan, run_grid
from gnpool.datasets import task_info

OUT = Path(__file__).resolve().parent / "results" / "standard_calibration"
SEEDS = (100, 101)

_DATA = {"num_train": 1000, "num_val": 200, "num_test": 500}
_DATA2 = {"num_train": 2000, "num_val": 400, "num_test": 500}
_DECAY = {"lr_step": 50, "lr_gamma": 0.5}
#: Candidate budgets per task: (name, data, hyperparameters), cheapest first.
CANDIDATES = {
    "max_degree": [
        ("h32-n1000-e150", _DATA, {"hidden": 32, "layers": 2, "epochs": 150, **_DECAY}),
        ("h64-n1000-e150", _DATA, {"hidden": 64, "layers": 2, "epochs": 150, **_DECAY}),
        ("h32-n2000-e150", _DATA2, {"hidden": 32, "layers": 2, "epochs": 150, **_DECAY}),
    ],
    "shortest_path": [
        ("h32-n1000-e100", _DATA, {"hidden": 32, "layers": 3, "lr": 0.005, "batch_size": 32,
                                   "epochs": 100, "lr_step": 35, "lr_gamma": 0.5}),
        ("h64-n1000-e100", _DATA, {"hidden": 64, "layers": 3, "lr": 0.005, "batch_size": 32,
                                   "epochs": 100, "lr_step": 35, "lr_gamma": 0.5}),
        ("h32-n2000-e100", _DATA2, {"hidden": 32, "layers": 3, "lr": 0.005,
                                    "batch_size": 32, "epochs": 100, "lr_step": 35,
                                    "lr_gamma": 0.5}),
    ],
    "node_neighbour_max": [
        ("h32-n1000-e100", _DATA, {"hidden": 32, "layers": 1, "epochs": 100, "lr_step": 35}),
        ("h64-n1000-e100", _DATA, {"hidden": 64, "layers": 1, "epochs": 100, "lr_step": 35}),
    ],
    "set_max": [
        ("h32-n1000-e100", _DATA, {"hidden": 32, "epochs": 100, "lr_step": 35}),
        ("h64-n1000-e100", _DATA, {"hidden": 64, "epochs": 100, "lr_step": 35}),
    ],
    "set_l2": [
        ("h32-n1000-e100", _DATA, {"hidden": 32, "epochs": 100, "lr_step": 35}),
        ("h64-n1000-e100", _DATA, {"hidden": 64, "epochs": 100, "lr_step": 35}),
    ],
}
#: set_l2 has no exact fixed pooling: its reference is max, the best fixed one in the
#: quick profile.
REFERENCE = {"set_l2": "max"}


def reference(task: str) -> str:
    return REFERENCE.get(task) or known_good(task)


def specs():
    out = []
    for task, candidates in CANDIDATES.items():
        info = task_info(task)
        config = next(c for c in default_configs(info.level, info.aggr)
                      if c.name == reference(task))
        for name, data, hp in candidates:
            profile = Profile("standard_calibration", name, (TaskPlan(task, data, hp),),
                              seeds=SEEDS, tune_seed=1000)
            for spec in plan(profile, configs=[config.name]):
                out.append((name, spec))
    return out


def _candidate_of(row: dict) -> str | None:
    # The candidate a stored run belongs to, by its task, data sizes and the candidate's
    # own settings (not by hp_hash, which also covers every setting added to HParams
    # since the run was made); None for a run of no candidate.
    for name, data, hp in CANDIDATES.get(row["task"], []):
        stored = row.get("hparams") or {}
        if row.get("data_params") == data and all(stored.get(k) == v for k, v in hp.items()):
            return name
    return None


def latest_runs() -> dict[tuple[str, str, int], dict]:
    """The latest finished run of each (task, candidate, seed) of the reference
    configurations ({} without a database)."""
    if not (OUT / "runs.sqlite").exists():
        return {}
    with RunDB(OUT / "runs.sqlite", readonly=True) as db:
        rows = db.rows(status="finished")
    latest: dict[tuple[str, str, int], dict] = {}
    for r in sorted(rows, key=lambda r: r.get("finished_at") or ""):
        name = _candidate_of(r)
        if name is not None and r["config"] == reference(r["task"]) and r["seed"] in SEEDS:
            latest[(r["task"], name, r["seed"])] = r
    return latest


def summarise() -> str:
    latest = latest_runs()
    tune: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seconds: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (task, name, _), r in sorted(latest.items(), key=lambda kv: kv[0]):
        tune[task][name].append(r["mape_tune"] if r["mape_tune"] is not None
                                else float("inf"))
        seconds[task][name].append(r["wall_seconds"])
    lines = ["# Standard profile calibration", "",
             "Tuning-split MAPE (%) of each task's reference fixed configuration (the "
             "known-good one; max for set_l2) under candidate budgets, training seeds "
             f"{', '.join(map(str, SEEDS))}, and the training time of one run. Chosen: the "
             "cheapest candidate within 1.25x of the best one.", "",
             "| task | reference | candidate | tuning MAPE (%) | seconds per run |",
             "|---|---|---|---|---|"]
    chosen = {}
    for task, candidates in CANDIDATES.items():
        means = {n: statistics.fmean(v) for n, v in tune[task].items()
                 if len(v) == len(SEEDS)}
        if len(means) < len(candidates):
            continue
        best = min(means.values())
        chosen[task] = next(n for n, _, _ in candidates if means[n] <= 1.25 * best)
        for name, _, _ in candidates:
            mark = " **chosen**" if name == chosen[task] else ""
            lines.append(f"| `{task}` | {reference(task)} | {name}{mark} | "
                         f"{' / '.join(f'{v:.3g}' for v in tune[task][name])} | "
                         f"{statistics.fmean(seconds[task][name]):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Trains the candidates' missing runs "
        f"into {OUT / 'runs.sqlite'} (24 runs in all, 2 training seeds each; a candidate's "
        "finished run, found by its settings, is not trained again), then writes README.md "
        "there from the latest finished run of each.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes for the runs (default: 2)")
    parser.add_argument("--summary-only", action="store_true",
                        help="train nothing: write README.md from the runs already stored")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be a positive int, got {args.workers}")
    if not args.summary_only:
        done = latest_runs()
        missing = [s for name, s in specs() if (s.task, name, s.seed) not in done]
        if missing:     # (the database is left as it is when nothing is missing)
            summary = run_grid(missing, OUT / "runs.sqlite", workers=args.workers)
            print(f"{summary.executed} runs ({summary.failed} failed) in "
                  f"{summary.wall_seconds / 60:.1f} min", file=sys.stderr)
        else:
            print("every candidate's runs are stored: nothing to train", file=sys.stderr)
    text = summarise()
    (OUT / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
