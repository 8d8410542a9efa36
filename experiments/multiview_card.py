"""Figures of the multi-view data card (datasets/multiview.md).

    python experiments/multiview_card.py                  # example PNG, split statistics
    python experiments/multiview_card.py --time-shapes 70 # also time a fresh generation

Writes datasets/multiview_examples.png (one shape per category: its voxels and six depth
maps) and prints a Markdown table of the default splits (generated and cached if
needed). ``--time-shapes N`` generates N shapes of the default split parameters into a
temporary directory with one torch thread and prints the wall and CPU time per shape.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from gnpool.datasets.multiview import load_multiview, load_multiview_splits, plot_examples

ROOT = Path(__file__).resolve().parents[1]


def split_table(splits: dict) -> str:
    lines = ["| split | shapes | categories | voxel occupancy: mean (min, max) | silhouette "
             "share of the image: mean (min, max) | generation (s, when cached) |",
             "|---|---:|---|---|---|---:|"]
    for name, ds in splits.items():
        s = ds.stats()
        cats = ", ".join(f"{c} {n}" for c, n in s["categories"].items())
        occ, sil = s["occupancy"], s["silhouette"]
        seconds = s["generation_seconds"]
        timed = "-" if seconds is None else f"{seconds:.0f}"
        lines.append(f"| `{name}` | {s['shapes']} | {cats} | {occ[0]:.3f} ({occ[1]:.3f}, "
                     f"{occ[2]:.3f}) | {sil[0]:.3f} ({sil[1]:.3f}, {sil[2]:.3f}) | {timed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "datasets" / "multiview_examples.png")
    parser.add_argument("--time-shapes", type=int, default=0,
                        help="time a fresh generation of this many shapes (one thread)")
    args = parser.parse_args(argv)
    splits = load_multiview_splits()
    print(split_table(splits))
    test, ood = splits["test"], splits["test_ood"]
    # One shape per training category, then the held-out one, in a single figure.
    picks = {int(c): i for i, c in reversed(list(enumerate(test.category.tolist())))}
    index = sorted(picks.values())
    merged = type(test)({"images": torch.cat([test.images[index], ood.images[:1]]),
                         "voxels": torch.cat([test.voxels[index], ood.voxels[:1]]),
                         "cameras": torch.cat([test.cameras[index], ood.cameras[:1]]),
                         "category": torch.cat([test.category[index], ood.category[:1]])},
                        test.params, "examples", test.seed)
    print(f"wrote {plot_examples(args.out, merged, per_category=1, views=6)}", file=sys.stderr)
    if args.time_shapes:
        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            load_multiview("train", root=tmp, num_train=args.time_shapes, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{args.time_shapes} shapes: {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"({1000 * wall / args.time_shapes:.0f} ms, {1000 * cpu / args.time_shapes:.0f} "
              f"ms CPU per shape, one thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
