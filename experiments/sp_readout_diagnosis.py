r"""Where `shortest_path`'s extrapolation error comes from: the readout or the layers.

Xu et al. (ICLR 2021) name min aggregation with a min readout (min-min) as the pooling that
extrapolates on shortest path; in the benchmark's budgets min-max extrapolates better. This
script trains fixed configurations of a profile's `shortest_path` grid again, seed for seed
with the grid's own settings (one thread, as the grid's workers), prints each run's
extrapolation MAPE next to its committed run's (and a line on stderr where they differ),
and then, per split:

- ``MAPE readout``: the model as trained, ``head(readout(h))`` over all nodes' final
  embeddings ``h``;
- ``MAPE target only``: ``head(h_t)``, the same model reading the target node's embedding
  alone. Where the readout picks the target in (nearly) every channel the two agree, and
  what error remains is the layers'; elsewhere the head never saw such inputs in training
  and the figure only says that the readout does not read the target alone;
- ``varying channels``: the share of (graph, channel) pairs whose embedding values are not
  all equal inside the graph (the others, e.g. a channel at ReLU's floor in every node,
  are ties of all nodes and left out of the shares below);
- ``picks target``: the share of varying pairs in which the target's embedding attains the
  readout's value (ties included), ``picks target alone`` those in which no other node
  does; ``picks source`` and ``picks another node`` (any node but these two) the same;
  ``readout at 0``: varying pairs whose readout value is 0 (ReLU's floor);
- ``one node alone``: the share of varying pairs whose readout value exactly one node
  attains; ``others at 0``: in those pairs, the mean share of the graph's other nodes
  whose value is 0 (the rest of the graph at ReLU's floor);
- ``picks path`` and ``picks off path``: the share of varying pairs whose readout value a
  node on the source's shortest path to the target (source and target included) attains,
  and a node off that path; ``nodes on path``: the mean share of a graph's nodes on that
  path (how often a node drawn at random would be on it);
- MAPE through the readout and from the target alone for the graphs whose distance lies
  within the training split's largest, and for those beyond it, and the mean signed
  relative error there (negative: the prediction falls short).

Splits: ``val`` (the run's validation split), ``test_interp`` (training's node counts,
families and edge weights), ``test_extrap`` (larger graphs, other families, edge weights
up to 10), ``tune`` (the extrapolation distribution from the tuning data seed), and three
extrapolation splits from the tuning data seed with one shift each (``shift_size``,
``shift_weights``, ``shift_families``; :func:`shift_splits`). Nothing here chooses a
setting; it reads trained models::

    python experiments/sp_readout_diagnosis.py --configs min-min,min-max
    python experiments/sp_readout_diagnosis.py --profile quick --configs min-min --seeds 0
    python experiments/sp_readout_diagnosis.py --configs min-min --seeds 0 \
        --data num_train=10000         # Xu et al.'s number of training graphs
    python experiments/sp_readout_diagnosis.py --configs min-max \
        --set last_activation=false    # linear-ended MLPs: no floor at 0

``--summary FILE...`` prints compact tables of ``--json`` files instead of training.
``--data`` and ``--set`` change the runs (their MAPE then has no committed run to repeat,
shown as ``-``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from gnpool.bench.__main__ import _seeds as parse_seeds
from gnpool.bench.hparams import parse_assignments
from gnpool.bench.profiles import PROFILES
from gnpool.bench.runner import _splits, plan
from gnpool.bench.train import _train, flush_denormal, mape
from gnpool.datasets import load_task, task_info
from gnpool.datasets.labels import dijkstra

RESULTS = Path(__file__).resolve().parent / "results"
TASK = "shortest_path"
CLASSIC = ("sum", "mean", "max", "min")
PATH_PROFILES = sorted(name for name, p in PROFILES.items()
                       if any(t.task == TASK for t in p.tasks))


def path_nodes(batch, is_source: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """``bool`` [num_nodes]: the nodes on each graph's shortest path from its source to
    its target (both included), the nodes ``v`` with ``d(s, v) + d(v, t) = d(s, t)`` along
    the directed edges and weights the graph holds (the task's paths are unique).
    ``is_source``, ``is_target``: ``bool`` [num_nodes] marking exactly one node of each
    graph (:func:`split_parts` checks)."""
    on = torch.zeros(batch.num_nodes, dtype=torch.bool)
    src, dst = batch.edge_index.tolist()
    weight = batch.edge_attr.view(-1).double().tolist()
    ptr = batch.ptr.tolist()
    # Out-edges for d(s, v), in-edges (the reversed graph) for d(v, t).
    out: list[list[tuple[int, float]]] = [[] for _ in range(batch.num_nodes)]
    into: list[list[tuple[int, float]]] = [[] for _ in range(batch.num_nodes)]
    for u, v, w in zip(src, dst, weight, strict=True):
        out[u].append((v, w))
        into[v].append((u, w))
    for g in range(batch.num_graphs):
        lo, hi = ptr[g], ptr[g + 1]
        s = int(is_source[lo:hi].nonzero())
        t = int(is_target[lo:hi].nonzero())
        from_s = dijkstra([[(v - lo, w) for v, w in out[u]] for u in range(lo, hi)], s)[0]
        to_t = dijkstra([[(v - lo, w) for v, w in into[u]] for u in range(lo, hi)], t)[0]
        for v in range(hi - lo):
            on[lo + v] = math.isclose(from_s[v] + to_t[v], from_s[t], rel_tol=1e-9)
    return on


@torch.no_grad()
def split_parts(model: torch.nn.Module, dataset, batch_size: int) -> dict[str, np.ndarray]:
    """Per graph: target distance (``y``), prediction through the readout (``readout``)
    and from the target's embedding alone (``target``); the number of channels whose
    values vary inside the graph (``varying``) and, of those, the number in which the
    target (``picks``), the target and no other node (``alone``), the source
    (``source``) and some other node (``other``) attain the readout's value, and in
    which that value is 0 (``zero``: ReLU's floor); the number of varying channels whose
    readout value one node alone attains (``single``), and the sum over those channels of
    the share of the graph's other nodes whose value is 0 (``others_zero``: the rest at
    the floor); the number of varying channels whose readout value a node on the source's
    shortest path to the target attains (``path``: :func:`path_nodes`, source and target
    included) and a node off that path (``off_path``); the share of the graph's nodes on
    that path (``path_nodes``: how often a node drawn at random would be on it).
    ``width``: channels per graph.
    ``ValueError`` unless every graph has exactly one source and one target node."""
    model.eval()
    keys = ("y", "readout", "target", "varying", "picks", "alone", "source", "other", "zero",
            "single", "others_zero", "path", "off_path", "path_nodes")
    out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    width = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        h = batch.x
        for conv in model.convs:
            h = conv(h, batch.edge_index, batch.edge_attr)
        if model.node_mlp is not None:
            h = model.node_mlp(h)
        width = h.size(1)
        pooled = model.readout(h, batch.batch, dim_size=batch.num_graphs)
        is_target, is_source = batch.x[:, -1] == 1, batch.x[:, -2] == 1
        for marked in (is_target, is_source):
            if not torch.equal(batch.batch[marked], torch.arange(batch.num_graphs)):
                raise ValueError("expected exactly one source and one target node per graph")
        h_t, h_s = h[is_target], h[is_source]
        graphs = batch.num_graphs
        attains = (h == pooled[batch.batch]).double()
        # Nodes attaining the readout's value per (graph, channel), and whether any node
        # but the source and the target does (a channel at one value, e.g. ReLU's floor,
        # in every node is a tie of all nodes: only channels that vary count).
        count = scatter(attains, batch.batch, 0, graphs, reduce="sum")
        rest = ~(is_target | is_source)
        other = scatter(attains[rest], batch.batch[rest], 0, graphs, reduce="max")
        high = scatter(h, batch.batch, 0, graphs, reduce="max")
        low = scatter(h, batch.batch, 0, graphs, reduce="min")
        varying = (high != low).double()
        target = (h_t == pooled).double()
        # Where one node alone attains the readout's value: the share of the others at 0
        # (the attaining node is one of the zeros only where the value itself is 0).
        single = (count == 1).double()
        zeros = scatter((h == 0).double(), batch.batch, 0, graphs, reduce="sum")
        nodes = batch.ptr.diff().double().unsqueeze(1)
        rest_zero = (zeros - (pooled == 0).double()) / (nodes - 1).clamp(min=1)
        on = path_nodes(batch, is_source, is_target)
        path = scatter(attains[on], batch.batch[on], 0, graphs, reduce="max")
        off_path = scatter(attains[~on], batch.batch[~on], 0, graphs, reduce="max")
        out["path_nodes"].append((scatter(on.double(), batch.batch, 0, graphs, reduce="sum")
                                  / nodes.view(-1)).numpy())
        out["y"].append(batch.y.view(-1).double().numpy())
        out["readout"].append(model.head(pooled).view(-1).double().numpy())
        out["target"].append(model.head(h_t).view(-1).double().numpy())
        for key, hits in (("varying", varying), ("picks", target),
                          ("alone", target * single),
                          ("source", (h_s == pooled).double()), ("other", other),
                          ("zero", (pooled == 0).double()), ("single", single),
                          ("others_zero", single * rest_zero), ("path", path),
                          ("off_path", off_path)):
            out[key].append((hits * varying).sum(dim=1).numpy())
    parts = {k: np.concatenate(v) for k, v in out.items()}
    parts["width"] = np.array(width)
    return parts


def figures(parts: dict[str, np.ndarray], train_max: float) -> dict[str, float]:
    """A split's figures from :func:`split_parts`: MAPE (%) through the readout and from
    the target alone; the share of (graph, channel) pairs that vary; of those, the shares
    in which the target, the target alone, the source and another node attain the
    readout's value and in which that value is 0; the share attained by one node alone
    and, in those, the mean share of the other nodes at 0; the shares in which a node on
    the source's shortest path to the target and one off it attain that value, and the
    mean share of a graph's nodes on that path; and MAPE and mean signed relative error
    (%) of the graphs whose distance is at most / above ``train_max``."""
    y, readout, target = parts["y"], parts["readout"], parts["target"]
    varying = parts["varying"].sum()
    far = y > train_max

    def share(key: str) -> float:
        return float(parts[key].sum() / varying) if varying else float("nan")

    return {
        "mape_readout": part_mape(readout, y), "mape_target": part_mape(target, y),
        "varying": float(varying / (len(y) * int(parts["width"]))) if len(y) else float("nan"),
        "picks_target": share("picks"), "picks_target_alone": share("alone"),
        "picks_source": share("source"), "picks_other": share("other"),
        "readout_zero": share("zero"), "single_node": share("single"),
        "single_others_zero": (float(parts["others_zero"].sum() / parts["single"].sum())
                               if parts["single"].sum() else float("nan")),
        "picks_path": share("path"), "picks_off_path": share("off_path"),
        "path_nodes": float(parts["path_nodes"].mean()) if len(y) else float("nan"),
        "near_mape_readout": part_mape(readout[~far], y[~far]),
        "near_mape_target": part_mape(target[~far], y[~far]),
        "far_share": float(far.mean()) if len(y) else float("nan"),
        "far_mape_readout": part_mape(readout[far], y[far]),
        "far_mape_target": part_mape(target[far], y[far]),
        "far_signed_readout": signed(readout[far], y[far]),
        "far_signed_target": signed(target[far], y[far]),
    }


def shift_splits(spec, tune_seed: int) -> dict[str, Any]:
    """Extrapolation splits with one shift at a time, drawn from ``tune_seed`` (never the
    reported test splits): ``shift_size`` (extrapolation's node counts, training's
    families and edge weights), ``shift_weights`` (extrapolation's edge weights) and
    ``shift_families`` (extrapolation's graph families)."""
    params = task_info(TASK, **spec.data).params
    train = {"extrap_nodes": params["train_nodes"],
             "extrap_families": params["train_families"],
             "extrap_weights": params["train_weights"],
             "extrap_range": params["train_range"]}     # node features: no shift
    out = {}
    for name, keep in (("size", "extrap_nodes"), ("weights", "extrap_weights"),
                       ("families", "extrap_families")):
        changed = {k: v for k, v in train.items() if k != keep}
        out[f"shift_{name}"] = load_task(TASK, "test_extrap", root=spec.data_root,
                                         seed=tune_seed, progress=False,
                                         **{**spec.data, **changed})
    return out


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


def read_rows(paths: list[str]) -> list[dict[str, Any]]:
    """The rows of ``--json`` files, each checked to be a non-empty JSON list of row
    objects with ``config``, ``seed`` and ``split``; ``SystemExit`` naming the file
    otherwise."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            loaded = json.loads(Path(path).read_text())
        except OSError as err:
            raise SystemExit(f"--summary: cannot read {path}: {err}") from None
        except ValueError as err:
            raise SystemExit(f"--summary: {path} is not JSON ({err}); expected the list "
                             "of rows that --json writes") from None
        if (not isinstance(loaded, list) or not loaded
                or not all(isinstance(r, dict) and {"config", "seed", "split"} <= r.keys()
                           for r in loaded)):
            raise SystemExit(f"--summary: {path} holds no rows; expected the non-empty "
                             "JSON list of row objects (config, seed, split, figures) that "
                             "--json writes")
        rows += loaded
    return rows


SUMMARY_SPLITS = ("val", "test_interp", "shift_size", "shift_families", "shift_weights",
                  "test_extrap", "tune")


def summary(rows: list[dict[str, Any]]) -> str:
    """Markdown tables of ``rows`` (the ``--json`` output of runs with the same settings):
    per split and configuration the MAPE through the readout and the shares of varying
    channels whose readout value the target alone and the source attain, seed by seed.
    ``ValueError`` for rows of runs with different settings (``hp_hash``) of one
    configuration, or two rows of one (configuration, seed, split)."""
    configs = sorted({r["config"] for r in rows})
    settings = {c: {r.get("hp_hash") for r in rows if r["config"] == c} for c in configs}
    mixed = [c for c, hashes in settings.items() if len(hashes) > 1]
    if mixed:
        raise ValueError(f"rows of {mixed} come from runs with different settings "
                         "(hp_hash); summarise each setting on its own")
    seen: set[tuple[str, int, str]] = set()
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        key = (r["config"], r["seed"], r["split"])
        if key in seen:
            raise ValueError(f"two rows of config {key[0]!r}, seed {key[1]}, split {key[2]!r}")
        seen.add(key)
        by.setdefault((r["config"], r["split"]), []).append(r)
    seeds = {c: sorted({r["seed"] for r in rows if r["config"] == c}) for c in configs}
    header = " | ".join(f"{c} (seeds {', '.join(map(str, seeds[c]))})" for c in configs)
    lines = []
    for title, key, fmt in (("MAPE (%) through the readout", "mape_readout", "{:.3g}"),
                            ("Share of varying channels whose readout value the target "
                             "alone attains", "picks_target_alone", "{:.2f}"),
                            ("Share of varying channels whose readout value the source "
                             "attains", "picks_source", "{:.2f}"),
                            ("Share of varying channels whose readout value a node on the "
                             "source's shortest path to the target attains (source and "
                             "target included)", "picks_path", "{:.2f}"),
                            ("Mean share of a graph's nodes on that path (how often a node "
                             "drawn at random is on it)", "path_nodes", "{:.3f}"),
                            ("Where one node alone attains the readout's value: mean share "
                             "of the graph's other nodes at 0", "single_others_zero",
                             "{:.2f}")):
        if not any(key in r for r in rows):     # files written before the figure existed
            continue
        lines += [f"{title}:", "", f"| split | {header} |", "|---|" + "---|" * len(configs)]
        for split in SUMMARY_SPLITS:
            if not any((c, split) in by for c in configs):
                continue
            cells = []
            for c in configs:
                got = {r["seed"]: r for r in by.get((c, split), [])}
                cells.append(", ".join(fmt.format(got[s][key]) if key in got.get(s, {})
                                       else "-"
                                       for s in seeds[c]))
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="standard", choices=PATH_PROFILES,
                        help="a profile with the shortest_path task (default: standard)")
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
    parser.add_argument("--json", default=None, help="also write the figures to this file "
                        "(rewritten after every run)")
    parser.add_argument("--summary", nargs="+", metavar="JSON",
                        help="train nothing: print summary tables of these --json files")
    args = parser.parse_args(argv)
    if args.summary:
        try:
            print(summary(read_rows(args.summary)))
        except (KeyError, ValueError) as err:
            raise SystemExit(f"--summary {' '.join(args.summary)}: {err}") from None
        return 0
    configs = [c.strip() for c in args.configs.split(",")]
    if "" in configs or len(set(configs)) < len(configs):
        parser.error(f"--configs {args.configs!r}: expected distinct comma-separated "
                     "configuration names, e.g. min-min,min-max")
    try:
        seeds = parse_seeds(args.seeds)     # the benchmark CLI's own check
    except ValueError as err:
        parser.error(str(err))
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
    fixed = [s.config.name for s in plan(profile, tasks=[TASK], seeds=[0])
             if s.config.aggr in CLASSIC and s.config.readout in CLASSIC]
    if set(configs) - set(fixed):
        parser.error(f"--configs: {sorted(set(configs) - set(fixed))} are not fixed "
                     f"configurations of the profile's {TASK} grid; expected some of "
                     f"{', '.join(fixed)}")
    specs = plan(profile, tasks=[TASK], configs=configs, seeds=seeds, hparams=hparams,
                 data_root=args.data_root)
    if PROFILES[args.profile].tune_seed is None:
        raise SystemExit(f"--profile {args.profile} has no tuning data seed, which the "
                         "one-shift splits are drawn from")
    torch.set_num_threads(1)
    recorded = committed(args.profile)
    results = []
    columns = ["config", "seed", "split", "MAPE (committed)", "MAPE readout",
               "MAPE target only", "varying channels", "picks target", "picks target alone",
               "picks source", "picks another node", "readout at 0", "one node alone",
               "others at 0", "picks path", "picks off path", "nodes on path",
               "within train max: MAPE readout", "MAPE target only", "beyond: share",
               "MAPE readout", "MAPE target only", "signed readout", "signed target only"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for spec in specs:
        splits = _splits(spec)
        hp = spec.hparams
        train_max = float(max(float(d.y.max()) for d in splits["train"]))
        extra = shift_splits(spec, spec.tune_seed)
        with flush_denormal(hp.flush_denormal):
            model, *_ = _train(splits["train"].info, splits, spec.config, hp, spec.seed,
                               spec.label, 0, False)
            for split, dataset in ({**splits, **extra}).items():
                if split == "train":
                    continue
                row = {"config": spec.config.name, "seed": spec.seed, "split": split,
                       "train_max": train_max, "data": spec.data, "hp_hash": spec.hp_hash,
                       "mape_committed": (recorded.get((spec.config.name, spec.seed,
                                                        spec.hp_hash))
                                          if split == "test_extrap" else None),
                       **figures(split_parts(model, dataset, hp.eval_batch_size), train_max)}
                results.append(row)
                ref = row["mape_committed"]
                if ref is not None and not math.isclose(ref, row["mape_readout"],
                                                        rel_tol=1e-6):
                    print(f"{spec.label}: extrapolation MAPE {row['mape_readout']:.4g} here "
                          f"against the committed run's {ref:.4g}: the model differs",
                          file=sys.stderr)
                cells = [row["config"], row["seed"], split,
                         "-" if ref is None else f"{ref:.3g}"]
                cells += [f"{row[k]:.3g}" for k in ("mape_readout", "mape_target")]
                cells += [f"{row[k]:.2f}" for k in ("varying", "picks_target",
                                                    "picks_target_alone", "picks_source",
                                                    "picks_other", "readout_zero",
                                                    "single_node", "single_others_zero",
                                                    "picks_path", "picks_off_path",
                                                    "path_nodes")]
                cells += [f"{row[k]:.3g}" for k in ("near_mape_readout", "near_mape_target")]
                cells += [f"{row['far_share']:.2f}"]
                cells += [f"{row[k]:.3g}" for k in ("far_mape_readout", "far_mape_target")]
                cells += [f"{row[k]:+.3g}" for k in ("far_signed_readout",
                                                     "far_signed_target")]
                print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
        if args.json:       # after every run: an interrupted command keeps what finished
            Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
