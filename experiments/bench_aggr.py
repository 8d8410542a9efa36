"""Forward+backward time and peak memory of gnpool's aggregations against PyG's.

Every method runs in its own fresh subprocess on the same inputs (same seed), so peak
memory is a clean high-water mark; the parent prints all of them side by side as
ratios measured in one run.

    python experiments/bench_aggr.py                 # E=2,000,000, F=64, 100,000 sets
    python experiments/bench_aggr.py --small         # E=200,000, F=64, 10,000 sets
    python experiments/bench_aggr.py --methods gnp,mean --layout ptr
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METHODS = ["copy", "sum", "mean", "powermean", "softmax", "attention", "gnp", "attsets",
           "gnp-scatter", "gnp-native", "attsets-native"]
# The last three (gnpool on its torch backends) take up to ~15 s a step at full size.
DEFAULT_METHODS = METHODS[:8]
LAYOUTS = ["sorted", "unsorted", "ptr"]


def build(name: str, channels: int):
    """The aggregation module for a method name (``None`` for the copy baseline)."""
    import torch
    from torch_geometric.nn import aggr as pyg

    import gnpool

    if name == "copy":
        return None
    factories = {
        "sum": lambda: pyg.SumAggregation(),
        "mean": lambda: pyg.MeanAggregation(),
        "powermean": lambda: pyg.PowerMeanAggregation(learn=True, channels=channels),
        "softmax": lambda: pyg.SoftmaxAggregation(learn=True, channels=channels),
        "attention": lambda: pyg.AttentionalAggregation(
            gate_nn=torch.nn.Linear(channels, channels)),
        "gnp": lambda: gnpool.GNPAggregation(channels=channels),
        "attsets": lambda: gnpool.AttSetsAggregation(channels),
        "attsets-native": lambda: gnpool.AttSetsAggregation(channels, backend="native"),
        "gnp-scatter": lambda: gnpool.GNPAggregation(channels=channels, backend="scatter"),
        "gnp-native": lambda: gnpool.GNPAggregation(channels=channels, backend="native"),
    }
    return factories[name]()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args: argparse.Namespace) -> dict:
    import torch

    torch.manual_seed(args.seed)
    e, f, s = args.elements, args.channels, args.sets
    x = torch.randn(e, f)
    index = torch.randint(0, s, (e,))
    if args.layout != "unsorted":
        index = index.sort().values
    ptr = None
    if args.layout == "ptr":
        count = torch.bincount(index, minlength=s)
        ptr = torch.cat([count.new_zeros(1), count.cumsum(0)])
        index = None
    grad_out = torch.randn(s, f)
    module = build(args.method, f)
    x.requires_grad_(not args.inference)

    def step():
        if module is None:
            return x.detach().clone()
        if args.inference:
            with torch.no_grad():
                return module(x, index, ptr=ptr, dim_size=s)
        out = module(x, index, ptr=ptr, dim_size=s)
        out.backward(grad_out)
        x.grad = None
        for prm in module.parameters():
            prm.grad = None
        return out

    base = _rss_bytes()
    step()  # also the warm-up
    peak = _peak_bytes() - base
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"method": args.method, "time": min(times), "peak": peak}


def run_all(args: argparse.Namespace) -> list[dict]:
    results = []
    for method in args.methods:
        cmd = [sys.executable, __file__, "--worker", method, "--elements", str(args.elements),
               "--channels", str(args.channels), "--sets", str(args.sets), "--layout",
               args.layout, "--repeat", str(args.repeat), "--seed", str(args.seed)]
        if args.inference:
            cmd.append("--inference")
        print(f"running {method} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            results.append({"method": method, "time": float("nan"), "peak": float("nan")})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def table(results: list[dict], ref: str) -> str:
    by_name = {r["method"]: r for r in results}
    base = by_name.get(ref, results[0])
    lines = [f"| method | time (s) | time / {base['method']} | peak extra (MB) | "
             f"peak / {base['method']} |", "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['method']} | {r['time']:.3f} | {r['time'] / base['time']:.2f} | "
                     f"{r['peak'] / 2**20:.0f} | {r['peak'] / base['peak']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true",
                        help="E=200,000 elements and 10,000 sets instead of 2,000,000 / 100,000")
    parser.add_argument("--elements", type=int, default=None)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sets", type=int, default=None)
    parser.add_argument("--layout", choices=LAYOUTS, default="sorted",
                        help="sorted index, unsorted index, or CSR ptr")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--reference", default="mean", help="method the ratios divide by")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (min is kept)")
    parser.add_argument("--inference", action="store_true", help="forward only, no autograd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.elements is None:
        args.elements = 200_000 if args.small else 2_000_000
    if args.sets is None:
        args.sets = 10_000 if args.small else 100_000
    if args.worker:
        args.method = args.worker
        print(json.dumps(worker(args)))
        return
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    results = run_all(args)
    mode = "forward only" if args.inference else "forward+backward"
    print(f"E={args.elements:,} F={args.channels} sets={args.sets:,} layout={args.layout} "
          f"{mode}, float32, {os.cpu_count()} CPU threads; best of {args.repeat}")
    print(table(results, args.reference))


if __name__ == "__main__":
    main()
