"""The validation R^2 of every GNP search a profile's committed runs recorded.

``HParams.search_refit_r2`` (tuning stage 33) trains a search again, ReLU-ended, when its
validation R^2 (``gnpool.bench.train.r_squared``) is below 0.5. This reads the committed
database of a profile (``experiments/results/<profile>/runs.sqlite``) and prints, for each
GNP run, the R^2 of each search it recorded (the model with one pooling per GNP,
``shared/search``, and the per-channel one, ``per_channel/search``), from their recorded
validation MSE and the validation split's targets: which searches that rule would have
trained again, without training anything.

    python experiments/search_r2.py --profile standard
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from gnpool.bench.profiles import PROFILES
from gnpool.bench.runner import plan
from gnpool.bench.train import r_squared
from gnpool.datasets import load_splits, task_info

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="standard", choices=sorted(PROFILES))
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    db = RESULTS / args.profile / "runs.sqlite"
    if not db.exists():
        raise SystemExit(f"--profile {args.profile}: no committed database at {db}")
    specs = {(s.task, s.seed): s for s in plan(PROFILES[args.profile], configs=["gnp"])}
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT task, seed, candidates, json_extract(versions, "
                            "'$.gnpool_commit') FROM runs WHERE config = 'gnp' AND "
                            "status = 'finished' ORDER BY task, seed").fetchall()
    conn.close()
    print(f"| task | seed | gnpool commit | search | validation MSE | R^2 | below "
          f"{args.threshold:g} |\n|---|---|---|---|---|---|---|")
    below = total = 0
    for task, seed, candidates, commit in rows:
        spec = specs.get((task, seed))
        if spec is None:
            continue
        val = load_splits(task, root=spec.data_root, seed=spec.data_seed, progress=False,
                          **spec.data)["val"]
        batch_size = spec.hparams.eval_batch_size
        for name, scores in json.loads(candidates)["models"].items():
            if not name.endswith("search"):
                continue
            r2 = r_squared(scores["val_mse"], val, task_info(task).level, batch_size)
            total += 1
            below += not r2 >= args.threshold
            print(f"| `{task}` | {seed} | {commit} | `{name}` | {scores['val_mse']:.4g} | "
                  f"{r2:.3f} | {'yes' if not r2 >= args.threshold else ''} |")
    print(f"\n{below} of {total} searches below R^2 {args.threshold:g}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
