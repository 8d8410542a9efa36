r"""Time spent loading and batching a profile's data, per training epoch, against nothing else.

One process, one torch thread (as each worker of a grid runs): one pass over the training
split in shuffled batches of the profile's batch size and one over the validation split in
evaluation batches, what every training epoch of :func:`gnpool.bench.train.fit` loads,
without any model; the best of ``--repeats`` passes after an untimed one.

    python experiments/bench_data_loading.py --profile standard --tasks shortest_path
"""

from __future__ import annotations

import argparse
import time

import torch
from torch_geometric.loader import DataLoader

from gnpool.bench import runner
from gnpool.bench.profiles import get_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--tasks", default=None, help="comma-separated (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    torch.set_num_threads(1)
    tasks = None if args.tasks is None else args.tasks.split(",")
    seen = set()
    for spec in runner.plan(get_profile(args.profile), tasks=tasks, seeds=[0]):
        if spec.task in seen:
            continue
        seen.add(spec.task)
        splits = runner._splits(spec)
        hp = spec.hparams
        best = float("inf")
        for k in range(args.repeats + 1):
            start = time.perf_counter()
            for _ in DataLoader(splits["train"], batch_size=hp.batch_size, shuffle=True):
                pass
            for _ in DataLoader(splits["val"], batch_size=hp.eval_batch_size):
                pass
            if k:
                best = min(best, time.perf_counter() - start)
        print(f"{spec.task}: {best:.3f} s per epoch (train {len(splits['train'])} in "
              f"batches of {hp.batch_size}, val {len(splits['val'])} in batches of "
              f"{hp.eval_batch_size})")


if __name__ == "__main__":
    main()
