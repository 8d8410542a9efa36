r"""Training step time of :class:`gnpool.models.MessageMLPConv` with its message MLP's first
layer computed per node (``factorized=True``) against per edge (``factorized=False``).

One process, one torch thread (as each worker of a grid runs), the profile's task data,
model and batch size, seed 0's initialisation for both forms. For each configuration:

* the largest difference between the two forms' outputs on one training batch, in
  float64, relative to the outputs' largest magnitude (the same function: rounding only);
* warm: the median time of one training step (forward, backward, Adam step) over
  ``--steps`` batches, after ``--warmup`` untimed ones, the two forms alternating batch by
  batch so that both see the same machine;
* the ratio per edge / factorized.

    python experiments/bench_message_mlp.py --profile standard
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch
from torch_geometric.loader import DataLoader

from gnpool.bench import runner
from gnpool.bench.profiles import get_profile
from gnpool.bench.train import build_model, make_optimizer, outputs
from gnpool.models import MessageMLPConv


def _model(spec, info, factorized: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(info, spec.config, spec.hparams)
    for conv in model.modules():
        if isinstance(conv, MessageMLPConv):
            conv.factorized = factorized
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--tasks", default=None, help="comma-separated (default: the "
                        "profile's graph and node tasks)")
    parser.add_argument("--configs", default=None,
                        help="comma-separated (default: the task's first configuration "
                             "and gnp)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps must be at least 1 and --warmup at least 0, got "
                     f"{args.steps} and {args.warmup}")
    torch.set_num_threads(1)
    tasks = None if args.tasks is None else args.tasks.split(",")
    by_task: dict[str, list] = {}
    for spec in runner.plan(get_profile(args.profile), tasks=tasks, seeds=[0]):
        by_task.setdefault(spec.task, []).append(spec)
    print(f"profile {args.profile}, 1 thread, median of {args.steps} training steps "
          f"after {args.warmup}")
    for task, task_specs in by_task.items():
        splits = runner._splits(task_specs[0])
        info = splits["train"].info
        if info.level == "set":
            continue
        wanted = (args.configs.split(",") if args.configs
                  else [task_specs[0].config.name, "gnp"])
        for spec in (s for s in task_specs if s.config.name in wanted):
            hp = spec.hparams
            loader = DataLoader(splits["train"], batch_size=hp.batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(0))
            batches = list(itertools.islice(itertools.cycle(loader),
                                            args.steps + args.warmup))
            models = {f: _model(spec, info, f) for f in (False, True)}
            with torch.no_grad():
                ref = {f: m.double()(batches[0].x.double(), batches[0].edge_index,
                                     None if batches[0].edge_attr is None
                                     else batches[0].edge_attr.double(), batches[0].batch,
                                     batches[0].num_graphs)
                       for f, m in models.items()}
            diff = float((ref[True] - ref[False]).abs().max() / ref[False].abs().max())
            models = {f: _model(spec, info, f) for f in (False, True)}
            optims = {f: make_optimizer(m, hp) for f, m in models.items()}
            times: dict[bool, list[float]] = {False: [], True: []}
            for k, batch in enumerate(batches):
                for f in (False, True):
                    model, opt = models[f], optims[f]
                    model.train()
                    start = time.perf_counter()
                    opt.zero_grad(set_to_none=True)
                    pred, target, _ = outputs(model, batch, info.level)
                    torch.nn.functional.mse_loss(pred, target).backward()
                    opt.step()
                    if k >= args.warmup:
                        times[f].append(time.perf_counter() - start)
            edge, node = (statistics.median(times[f]) * 1e3 for f in (False, True))
            print(f"{task:>20} {spec.config.name:>10}: per edge {edge:7.2f} ms, factorized "
                  f"{node:7.2f} ms, ratio {edge / node:.2f}x; float64 relative difference "
                  f"{diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
