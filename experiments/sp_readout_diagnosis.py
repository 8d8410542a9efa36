r"""Where `shortest_path`'s extrapolation error comes from: the readout or the layers.

Xu et al. (ICLR 2021) name min aggregation with a min readout (min-min) as the pooling that
extrapolates on shortest path; in the benchmark's budgets min-max extrapolates better. This
script trains fixed configurations of a profile's `shortest_path` grid again, seed for seed
with the grid's own settings (one thread, as the grid's workers), checks that each repeats
the extrapolation MAPE its committed run recorded, and then splits each model's error:

- ``readout``: the model as trained, ``head(readout(h))`` over all nodes' final
  embeddings ``h``;
- ``target only``: ``head(h_t)``, the same model reading the target node's embedding alone,
  as if the readout picked the target in every channel. What the readout adds to the
  error is the difference; what remains is the layers' (the distance the target's
  embedding encodes);
- ``varying channels``: the share of (graph, channel) pairs whose embedding values are not
  all equal inside the graph (the others, e.g. a channel at ReLU's floor in every node,
  are ties of all nodes and left out of the next three);
- ``picks target``: the share of varying (graph, channel) pairs in which the target's
  embedding attains the readout's value (ties included); ``picks source`` the same for the
  source, ``picks another node`` for any node but these two;
- MAPE through the readout and from the target alone for the test graphs whose
  distance lies within the training split's largest, and for those beyond it
  (extrapolation draws edge weights from [1, 10] against [1, 5] in training), and the
  mean signed relative error there (negative: the prediction falls short).

Nothing here chooses a setting; it reads trained models. Splits: the two test splits and
the tuning split (extrapolation-distributed graphs from another data seed)::

    python experiments/sp_readout_diagnosis.py --configs min-min,min-max
    python experiments/sp_readout_diagnosis.py --profile quick --configs min-min --seeds 0
    python experiments/sp_readout_diagnosis.py --configs min-min --seeds 0 \
        --data num_train=10000         # Xu et al.'s number of training graphs

``--data`` and ``--set`` change the runs (their MAPE then has no committed run to repeat,
shown as ``-``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from gnpool.bench.hparams import parse_assignments
from gnpool.bench.profiles import PROFILES
from gnpool.bench.runner import _splits, plan
from gnpool.bench.train import _train, flush_denormal, mape
from gnpool.datasets import task_info

RESULTS = Path(__file__).resolve().parent / "results"
TASK = "shortest_path"


@torch.no_grad()
def split_parts(model: torch.nn.Module, dataset, batch_size: int) -> dict[str, np.ndarray]:
    """Per graph: target distance, prediction through the readout, prediction from the
    target's embedding alone, the number of channels whose values vary inside the graph,
    and of those the number in which the target, the source and another node attain the
    readout's value."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {"y": [], "readout": [], "target": [], "picks": [],
                                        "source": [], "other": [], "varying": []}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        h = batch.x
        for conv in model.convs:
            h = conv(h, batch.edge_index, batch.edge_attr)
        if model.node_mlp is not None:
            h = model.node_mlp(h)
        pooled = model.readout(h, batch.batch, dim_size=batch.num_graphs)
        is_target, is_source = batch.x[:, -1] == 1, batch.x[:, -2] == 1
        for marked in (is_target, is_source):
            if not torch.equal(batch.batch[marked], torch.arange(batch.num_graphs)):
                raise ValueError("expected exactly one source and one target node per graph")
        h_t, h_s = h[is_target], h[is_source]
        # Channels in which some node other than the source and the target attains the
        # readout's value; only channels whose values vary inside the graph count (a
        # channel at one value, e.g. ReLU's floor, in every node is a tie of all nodes).
        rest = ~(is_target | is_source)
        attains = (h[rest] == pooled[batch.batch[rest]]).double()
        graphs = batch.num_graphs
        other = scatter(attains, batch.batch[rest], 0, graphs, reduce="max")
        high = scatter(h, batch.batch, 0, graphs, reduce="max")
        low = scatter(h, batch.batch, 0, graphs, reduce="min")
        varying = (high != low).double()
        out["y"].append(batch.y.view(-1).double().numpy())
        out["readout"].append(model.head(pooled).view(-1).double().numpy())
        out["target"].append(model.head(h_t).view(-1).double().numpy())
        out["varying"].append(varying.sum(dim=1).numpy())
        out["picks"].append(((h_t == pooled).double() * varying).sum(dim=1).numpy())
        out["source"].append(((h_s == pooled).double() * varying).sum(dim=1).numpy())
        out["other"].append((other * varying).sum(dim=1).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def signed(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean signed relative error (%), NaN for no graphs."""
    return float(100.0 * np.mean((pred - y) / np.abs(y))) if len(y) else float("nan")


def part_mape(pred: np.ndarray, y: np.ndarray) -> float:
    """MAPE (%), NaN for no graphs."""
    return mape(pred, y) if len(y) else float("nan")


def committed(profile: str) -> dict[tuple[str, int, str], float]:
    """Extrapolation MAPE of the profile's committed runs, by (config, seed, hp_hash)."""
    db = RESULTS / profile / "runs.sqlite"
    if not db.exists():
        return {}
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT config, seed, hp_hash, mape_extrap FROM runs WHERE "
                            "task = ? AND status = 'finished'", (TASK,)).fetchall()
    conn.close()
    return {(c, s, h): m for c, s, h, m in rows}


def with_data(profile, data: dict):
    """``profile`` with ``data`` overriding the task's data parameters (``num_train``...)."""
    tasks = tuple(dataclasses.replace(t, data={**t.data, **data}) if t.task == TASK else t
                  for t in profile.tasks)
    return dataclasses.replace(profile, tasks=tasks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="standard", choices=sorted(PROFILES))
    parser.add_argument("--configs", default="min-min,min-max",
                        help="comma-separated fixed configurations of the task's grid")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="assign",
                        help="override a hyperparameter of every run (JSON value)")
    parser.add_argument("--data", action="append", metavar="KEY=VALUE", dest="data",
                        help="override a data parameter of the task (JSON value), e.g. "
                             "num_train=10000")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    seeds = None if args.seeds is None else [int(s) for s in args.seeds.split(",")]
    try:
        hparams = parse_assignments(args.assign, check=True)
        data = parse_assignments(args.data)
    except ValueError as err:
        raise SystemExit(f"--set/--data: {err}") from None
    profile = with_data(PROFILES[args.profile], data)
    try:
        task_info(TASK, **next(t.data for t in profile.tasks if t.task == TASK))
    except (TypeError, ValueError) as err:
        raise SystemExit(f"--data: {err}") from None
    specs = plan(profile, tasks=[TASK], configs=configs, seeds=seeds, hparams=hparams,
                 data_root=args.data_root)
    learnable = [s.config.name for s in specs if s.config.aggr not in ("min", "max", "sum",
                                                                      "mean")
                 or s.config.readout not in ("min", "max", "sum", "mean")]
    if learnable:
        raise SystemExit(f"--configs: {sorted(set(learnable))} are not fixed configurations; "
                         "expected fixed pairs such as min-min,min-max")
    torch.set_num_threads(1)
    recorded = committed(args.profile)
    results = []
    print("| config | seed | split | MAPE (committed) | MAPE readout | MAPE target only | "
          "varying channels | picks target | picks source | picks another node | "
          "within train max: MAPE readout | MAPE target only | "
          "beyond: share | MAPE readout | MAPE target only | signed readout | "
          "signed target only |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in specs:
        splits = _splits(spec)
        hp = spec.hparams
        train_max = float(max(float(d.y.max()) for d in splits["train"]))
        with flush_denormal(hp.flush_denormal):
            model, *_ = _train(splits["train"].info, splits, spec.config, hp, spec.seed,
                               spec.label, 0, False)
            for split in ("test_interp", "test_extrap", "tune"):
                if split not in splits:
                    continue
                parts = split_parts(model, splits[split], hp.eval_batch_size)
                y = parts["y"]
                far = y > train_max
                row = {
                    "config": spec.config.name, "seed": spec.seed, "split": split,
                    "train_max": train_max,
                    "data": spec.data, "hp_hash": spec.hp_hash,
                    "mape_committed": (recorded.get((spec.config.name, spec.seed,
                                                     spec.hp_hash))
                                       if split == "test_extrap" else None),
                    "mape_readout": mape(parts["readout"], y),
                    "mape_target": mape(parts["target"], y),
                    "varying": float(parts["varying"].sum() / (len(y) * hp.hidden)),
                    "picks_target": float(parts["picks"].sum() / parts["varying"].sum()),
                    "picks_source": float(parts["source"].sum() / parts["varying"].sum()),
                    "picks_other": float(parts["other"].sum() / parts["varying"].sum()),
                    "near_mape_readout": part_mape(parts["readout"][~far], y[~far]),
                    "near_mape_target": part_mape(parts["target"][~far], y[~far]),
                    "far_share": float(far.mean()),
                    "far_mape_readout": part_mape(parts["readout"][far], y[far]),
                    "far_mape_target": part_mape(parts["target"][far], y[far]),
                    "far_signed_readout": signed(parts["readout"][far], y[far]),
                    "far_signed_target": signed(parts["target"][far], y[far]),
                }
                results.append(row)
                ref = row["mape_committed"]
                print(f"| {row['config']} | {row['seed']} | {split} | "
                      f"{'-' if ref is None else f'{ref:.3g}'} | {row['mape_readout']:.3g} | "
                      f"{row['mape_target']:.3g} | {row['varying']:.2f} | "
                      f"{row['picks_target']:.2f} | "
                      f"{row['picks_source']:.2f} | {row['picks_other']:.2f} | "
                      f"{row['near_mape_readout']:.3g} | {row['near_mape_target']:.3g} | "
                      f"{row['far_share']:.2f} | {row['far_mape_readout']:.3g} | "
                      f"{row['far_mape_target']:.3g} | {row['far_signed_readout']:+.3g} | "
                      f"{row['far_signed_target']:+.3g} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
