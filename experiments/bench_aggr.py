"""Forward+backward time and peak memory of gnpool's aggregations against PyG's.

Every method runs in its own fresh subprocess on the same inputs (same seed), so peak
memory is a clean high-water mark; the parent prints all of them side by side as
ratios measured in one run.

    python experiments/bench_aggr.py                 # E=2,000,000, F=64, 100,000 sets
    python experiments/bench_aggr.py --small         # E=200,000, F=64, 10,000 sets
    python experiments/bench_aggr.py --methods gnp,mean --layout ptr
    python experiments/bench_aggr.py --report experiments/results/aggr --rounds 3  # all
    python experiments/bench_aggr.py --device cuda   # the same table on the GPU

On CUDA, time is measured between device synchronisations and peak memory is the
allocator's peak above what was allocated before the first (warm-up) step; GNP and AttSets
run on their Triton kernels there (chosen automatically for CUDA tensors; ``gnp-triton``
forces them), ``gnp-scatter``, ``gnp-native`` and ``attsets-native`` on torch ops.
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
           "gnp-scatter", "gnp-native", "attsets-native", "gnp-triton", "attsets-triton"]
# gnpool on its torch backends takes up to ~15 s a step at full size on the CPU; the
# -triton methods force the Triton kernels (CUDA; on the CPU only under TRITON_INTERPRET=1,
# far too slow at these sizes), which "gnp" and "attsets" already use on CUDA.
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
        "gnp-triton": lambda: gnpool.GNPAggregation(channels=channels, backend="triton"),
        "attsets-triton": lambda: gnpool.AttSetsAggregation(channels, backend="triton"),
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
    # The same inputs on every device: drawn on the CPU, then moved.
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
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    x, grad_out = x.to(device), grad_out.to(device)
    index = None if index is None else index.to(device)
    ptr = None if ptr is None else ptr.to(device)
    if module is not None:
        module = module.to(device)
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

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _rss_bytes()
    step()  # also the warm-up (and on CUDA the Triton kernels' compilation)
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _peak_bytes() - base
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return {"method": args.method, "time": min(times), "peak": peak}


def run_one(method: str, elements: int, channels: int, sets: int, layout: str = "sorted",
            inference: bool = False, repeat: int = 3, seed: int = 0,
            device: str = "cpu") -> dict:
    """Time and peak memory of one method, measured in a fresh subprocess."""
    cmd = [sys.executable, __file__, "--worker", method, "--elements", str(elements),
           "--channels", str(channels), "--sets", str(sets), "--layout", layout,
           "--repeat", str(repeat), "--seed", str(seed), "--device", device]
    if inference:
        cmd.append("--inference")
    print(f"  {method:14s} E={elements:>10,} F={channels:<4d} {layout:8s}"
          f"{' inference' if inference else ''}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {"method": method, "time": float("nan"), "peak": float("nan")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_rounds(methods: list[str], rounds: int, *args) -> list[dict]:
    """``run_one(method, *args)`` for every method, ``rounds`` times interleaved; per method
    the fastest round (time) and the largest peak. Interleaving spreads slow periods of a
    shared machine over all methods instead of one."""
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for m in methods:
            res = run_one(m, *args)
            old = best.get(m)
            if old is None:
                best[m] = res
            else:
                best[m] = {"method": m, "time": min(old["time"], res["time"]),
                           "peak": max(old["peak"], res["peak"])}
    return [best[m] for m in methods]


def run_all(args: argparse.Namespace) -> list[dict]:
    return run_rounds(args.methods, args.rounds, args.elements, args.channels, args.sets,
                      args.layout, args.inference, args.repeat, args.seed, args.device)


def where(device: str) -> str:
    """The hardware a measurement ran on, for table headers."""
    if device.startswith("cuda"):
        import torch
        return f"{torch.cuda.get_device_name(torch.device(device))} ({device})"
    return f"{os.cpu_count()} CPU threads"


def table(results: list[dict], ref: str) -> str:
    by_name = {r["method"]: r for r in results}
    base = by_name.get(ref, results[0])
    lines = [f"| method | time (s) | time / {base['method']} | peak extra (MB) | "
             f"peak / {base['method']} |", "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['method']} | {r['time']:.3f} | {r['time'] / base['time']:.2f} | "
                     f"{r['peak'] / 2**20:.0f} | {r['peak'] / base['peak']:.2f} |")
    return "\n".join(lines)


# The full report: the main comparison, the three set layouts, inference only, and scaling
# in the number of elements and channels.
REPORT_METHODS = ["copy", "sum", "mean", "powermean", "softmax", "attention", "gnp", "attsets"]
LAYOUT_METHODS = ["mean", "gnp", "attsets"]
SCALING_METHODS = ["copy", "mean", "gnp", "attsets"]
# PyG's AttentionalAggregation next to AttSets where the F x F scoring layer dominates.
CHANNEL_METHODS = SCALING_METHODS + ["attention"]
ELEMENTS = [100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]
CHANNELS = [8, 32, 64, 128, 256]
CHANNEL_ELEMENTS = 1_000_000


def report(args: argparse.Namespace) -> str:
    e, f, s, r, k = args.elements, args.channels, args.sets, args.repeat, args.rounds
    seed, dev = args.seed, args.device
    head = (f"E={e:,} elements, F={f} channels, {s:,} sets, float32, {where(dev)}; "
            f"each method in a fresh process, {k} interleaved rounds of {r} timed "
            "repetitions, the fastest kept.")
    print("main comparison (forward+backward)", file=sys.stderr)
    main_rows = run_rounds(REPORT_METHODS, k, e, f, s, "sorted", False, r, seed, dev)
    t = {row["method"]: row["time"] for row in main_rows}
    parts = ["## Forward+backward, sorted index", "", head, "", table(main_rows, "mean"), "",
             f"GNP is {t['powermean'] / t['gnp']:.1f}x faster than PowerMeanAggregation"
             f"(learn=True, channels={f}); AttSets is {t['attention'] / t['attsets']:.1f}x "
             f"faster than AttentionalAggregation(Linear({f}, {f})) and "
             f"{t['softmax'] / t['attsets']:.1f}x faster than SoftmaxAggregation(learn=True, "
             f"channels={f})."]
    print("layouts", file=sys.stderr)
    rows = ["| method | " + " | ".join(f"{lay} (s)" for lay in LAYOUTS) + " |",
            "|---|" + "---:|" * len(LAYOUTS)]
    by_layout = {lay: run_rounds(LAYOUT_METHODS, k, e, f, s, lay, False, r, seed, dev)
                 for lay in LAYOUTS}
    for i, m in enumerate(LAYOUT_METHODS):
        times = [by_layout[lay][i]["time"] for lay in LAYOUTS]
        rows.append(f"| {m} | " + " | ".join(f"{t:.3f}" for t in times) + " |")
    parts += ["", "## Set layouts (forward+backward)", "",
              "sorted: an index grouped by set; unsorted: a random index; ptr: CSR pointers.",
              "", "\n".join(rows)]
    print("inference", file=sys.stderr)
    parts += ["", "## Inference only (forward, no autograd)", "",
              table(run_rounds(REPORT_METHODS, k, e, f, s, "sorted", True, r, seed, dev), "mean")]
    scaling = {"elements": [], "channels": []}
    print("scaling", file=sys.stderr)
    for n in ELEMENTS:
        scaling["elements"].append(
            {m: run_one(m, n, 64, max(n // 20, 1), "sorted", False, r, seed, dev)
             for m in SCALING_METHODS})
    for c in CHANNELS:
        scaling["channels"].append(
            {m: run_one(m, CHANNEL_ELEMENTS, c, max(CHANNEL_ELEMENTS // 20, 1), "sorted", False,
                        r, seed, dev) for m in CHANNEL_METHODS})
    parts += ["", "## Scaling (forward+backward, 20 elements per set)", "",
              scaling_table("E (F=64)", ELEMENTS, scaling["elements"]), "",
              scaling_table(f"F (E={CHANNEL_ELEMENTS:,})", CHANNELS, scaling["channels"],
                            CHANNEL_METHODS),
              "", "AttSets' scoring layer Linear(F, F) costs E x F^2 multiply-adds (computed "
              "once in forward and again in backward, plus the two products of its gradient), "
              "so from about F = 128 on AttSets is bound by arithmetic, not by memory; "
              "AttentionalAggregation has the same products (and PyG's softmax on top).", "",
              "![scaling](scaling.png)"]
    os.makedirs(args.report, exist_ok=True)
    plot(scaling, os.path.join(args.report, "scaling.png"), where(dev))
    with open(os.path.join(args.report, "scaling.json"), "w") as fh:
        json.dump(scaling, fh, indent=1)
    return "\n".join(parts) + "\n"


def scaling_table(label: str, sizes: list[int], points: list[dict],
                  methods: list[str] = SCALING_METHODS) -> str:
    lines = [f"| {label} | " + " | ".join(f"{m} (s)" for m in methods)
             + " | gnp / mean | attsets / mean |", "|---:|" + "---:|" * (len(methods) + 2)]
    for n, point in zip(sizes, points, strict=True):
        t = {m: point[m]["time"] for m in methods}
        lines.append(f"| {n:,} | " + " | ".join(f"{t[m]:.3f}" for m in methods)
                     + f" | {t['gnp'] / t['mean']:.2f} | {t['attsets'] / t['mean']:.2f} |")
    return "\n".join(lines)


def plot(scaling: dict, path: str, hardware: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, sizes, xlabel in ((axes[0], "elements", ELEMENTS, "elements E (F = 64)"),
                                  (axes[1], "channels", CHANNELS,
                                   f"channels F (E = {CHANNEL_ELEMENTS:,})")):
        for m in CHANNEL_METHODS:
            if m in scaling[key][0]:
                ax.plot(sizes, [p[m]["time"] for p in scaling[key]], marker="o", label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("forward+backward time (s)")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend()
    fig.suptitle(f"Aggregation time, 20 elements per set, float32, {hardware}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    parser.add_argument("--rounds", type=int, default=1,
                        help="fresh-process rounds over all methods, interleaved (min is kept)")
    parser.add_argument("--inference", action="store_true", help="forward only, no autograd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu",
                        help="cpu, or cuda (cuda:N) to measure on a GPU")
    parser.add_argument("--report", metavar="DIR",
                        help="run the full suite (methods, layouts, inference, scaling) and "
                             "write DIR/README.md and DIR/scaling.png")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rounds < 1:
        parser.error("--repeat and --rounds must be at least 1")
    if args.elements is None:
        args.elements = 200_000 if args.small else 2_000_000
    if args.sets is None:
        args.sets = 10_000 if args.small else 100_000
    if args.worker:
        args.method = args.worker
        print(json.dumps(worker(args)))
        return
    if args.report:
        text = report(args)
        with open(os.path.join(args.report, "README.md"), "w") as fh:
            device = "" if args.device == "cpu" else f" --device {args.device}"
            fh.write("# Aggregation benchmark\n\n`python experiments/bench_aggr.py --report "
                     f"{args.report} --rounds {args.rounds} --repeat {args.repeat}{device}`\n\n"
                     + text)
        print(text)
        return
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {METHODS}")
    results = run_all(args)
    mode = "forward only" if args.inference else "forward+backward"
    print(f"E={args.elements:,} F={args.channels} sets={args.sets:,} layout={args.layout} "
          f"{mode}, float32, {where(args.device)}; best of {args.rounds} x {args.repeat}")
    print(table(results, args.reference))


if __name__ == "__main__":
    main()
