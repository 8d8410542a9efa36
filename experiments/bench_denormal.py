r"""Training-epoch time of a benchmark GNP model with subnormal floats flushed to zero and
without, side by side in one process (``HParams.flush_denormal``).

Subnormal floats (below 1.2e-38 in float32) take the processor's slow path. A trained
model can meet them anywhere in its forward and backward: in GNP's inputs (a
softplus-ended MLP's very negative pre-activations), in its intermediates (a power of a
small ratio), in the MLPs' gradients. This script trains the search model of a profile's
GNP run (seed 0, the profile's settings, with subnormals flushed so that it trains
fast), then times training
epochs (forward, backward and Adam step over the training split) from that state, each
from a fresh copy of it, alternating flushed and unflushed ``--reps`` times, and prints
the median of each, their ratio, and the share of the values reaching GNP (its inputs)
that are subnormal when not flushed. One thread, as the benchmark's workers use::

    python experiments/bench_denormal.py                                 # standard shortest_path
    python experiments/bench_denormal.py --profile quick --task max_degree --reps 5
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time

import torch
from torch_geometric.loader import DataLoader

from gnpool import GNPAggregation
from gnpool.bench.profiles import get_profile
from gnpool.bench.runner import _splits, plan
from gnpool.bench.train import build_model, fit, flush_denormal, make_optimizer, outputs


def epoch_seconds(model: torch.nn.Module, train, level: str, hp, flushed: bool) -> float:
    """Seconds of one training epoch of ``model`` (changed in place)."""
    optimizer = make_optimizer(model, hp)
    loader = DataLoader(train, batch_size=hp.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model.train()
    with flush_denormal(flushed):
        start = time.perf_counter()
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            pred, target, _ = outputs(model, batch, level)
            torch.nn.functional.mse_loss(pred, target).backward()
            optimizer.step()
        return time.perf_counter() - start


def subnormal_share(model: torch.nn.Module, train, level: str, hp) -> float:
    """Share of the values reaching the model's GNPs in one pass over ``train`` that are
    subnormal (not flushed)."""
    counts = [0, 0]

    def hook(_module, args, kwargs):
        x = (args[0] if args else kwargs["x"]).detach()
        tiny = torch.finfo(x.dtype).tiny
        counts[0] += int(((x != 0) & (x.abs() < tiny)).sum())
        counts[1] += x.numel()

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True)
               for m in model.modules() if isinstance(m, GNPAggregation)]
    try:
        with torch.no_grad():
            model.eval()
            for batch in DataLoader(train, batch_size=hp.eval_batch_size):
                outputs(model, batch, level)
    finally:
        for h in handles:
            h.remove()
    return counts[0] / max(counts[1], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--task", default="shortest_path")
    parser.add_argument("--reps", type=int, default=3, help="epochs timed per setting")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    torch.set_num_threads(1)
    (spec,) = plan(get_profile(args.profile), tasks=[args.task], configs=["gnp"], seeds=[0])
    splits = _splits(spec)
    info = splits["train"].info
    hp = dataclasses.replace(spec.hparams, select_channels=False,
                             select_channels_retrain=True, flush_denormal=False)
    search = dataclasses.replace(hp, epochs=max(1, round(hp.retrain * hp.epochs)))
    torch.manual_seed(0)
    model = build_model(info, spec.config, search)
    start = time.perf_counter()
    with flush_denormal(True):
        fit(model, splits["train"], splits["val"], info.level, search, seed=0,
            progress=False)
    trained = time.perf_counter() - start
    times: dict[bool, list[float]] = {True: [], False: []}
    # One untimed epoch first; then the order alternates, so that neither setting is
    # always the first.
    epoch_seconds(copy.deepcopy(model), splits["train"], info.level, hp, True)
    for rep in range(args.reps):
        for flushed in ((False, True) if rep % 2 == 0 else (True, False)):
            times[flushed].append(epoch_seconds(copy.deepcopy(model), splits["train"],
                                                info.level, hp, flushed))
    plain, flushed = (statistics.median(times[k]) for k in (False, True))
    share = subnormal_share(model, splits["train"], info.level, hp)
    print(json.dumps({"profile": args.profile, "task": args.task,
                      "search_epochs": search.epochs, "search_seconds": round(trained, 1),
                      "input_subnormal_share": share,
                      "epoch_seconds_unflushed": round(plain, 3),
                      "epoch_seconds_flushed": round(flushed, 3),
                      "ratio": round(plain / flushed, 3), "reps": args.reps}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
