r"""Warm training-loop time of one aggregation: one process, repeated forward+backward.

Complements bench_aggr.py (fresh process per method, best of a few repetitions on 2M
elements) with what a training loop sees: the median of many iterations on inputs of a
training batch's size, where per-call overhead (checks, dispatch, host syncs) counts as
much as the kernels. Prints one JSON line per (method, size, inputs) so that two installations
(e.g. two commits) can be run alternately and compared side by side.

    python experiments/bench_warm_loop.py                       # gnp, attsets, mean
    python experiments/bench_warm_loop.py --sizes 3000:300,200000:10000 --iters 200
    # a GNP frozen exactly at max (segment reductions) against the same through GNP's
    # kernels, a learnable GNP at max, and PyG's max:
    python experiments/bench_warm_loop.py --methods max,gnp-max-frozen,gnp-max-kernel,gnp-max
    # one pooling per channel at four classic points, frozen, against GNP's kernels:
    python experiments/bench_warm_loop.py --methods gnp-mixed-frozen,gnp-mixed-kernel
    # GNP on a softplus of N(0, 40^2) (non-negative: about 1% of the values subnormal,
    # 0.5% exactly 0 where float32's softplus underflows), the same with every value below
    # the smallest normal float raised to it (zeros included), and with the subnormals set
    # to 0:
    python experiments/bench_warm_loop.py --methods gnp \
        --inputs softplus,softplus-floored,softplus-zeroed
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch_geometric.nn import aggr as pyg

from gnpool import AttSetsAggregation, GNPAggregation

METHODS = {
    "gnp": lambda channels: GNPAggregation(channels=channels),
    "attsets": lambda channels: AttSetsAggregation(channels),
    "mean": lambda channels: pyg.MeanAggregation(),
    "max": lambda channels: pyg.MaxAggregation(),
    # Exactly max, learnable (the kernels, with the exponent's gradient).
    "gnp-max": lambda channels: GNPAggregation.from_pooling("max"),
    # Exactly max, frozen: computed with segment reductions.
    "gnp-max-frozen": lambda channels: GNPAggregation.from_pooling("max", learn=False),
    # Exactly max, frozen, through the kernels (a backend named turns the reductions off).
    "gnp-max-kernel": lambda channels: GNPAggregation.from_pooling("max", learn=False,
                                                                  backend="cpu"),
    # One pooling per channel, a quarter of the channels at each of sum, mean, max and min
    # of x, frozen: grouped segment reductions, or GNP's kernels.
    "gnp-mixed-frozen": lambda channels: _mixed(channels, None),
    "gnp-mixed-kernel": lambda channels: _mixed(channels, "cpu"),
}


def _mixed(channels: int, backend: str | None) -> GNPAggregation:
    names = [("sum", "mean", "max", "min")[4 * k // channels] for k in range(channels)]
    aggr = GNPAggregation(channels=channels, learn=False, backend=backend)
    aggr.snap_(names)
    return aggr


def make(method: str, channels: int) -> torch.nn.Module:
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method](channels)


#: Input distributions: standard normal (the default), and the non-negative ones that
#: softplus-ended MLPs can produce after long training (pre-activations of scale 40: about
#: 1% of the outputs subnormal floats, 0.5% exactly 0 where float32's softplus
#: underflows), with every value below the smallest normal float raised to it (zeros
#: included) or the subnormals set to 0.
INPUTS = ("randn", "softplus", "softplus-floored", "softplus-zeroed")


def make_inputs(kind: str, elements: int, channels: int, gen: torch.Generator) -> torch.Tensor:
    if kind not in INPUTS:
        raise ValueError(f"inputs must be one of {list(INPUTS)}, got {kind!r}")
    x = torch.randn(elements, channels, generator=gen)
    if kind == "randn":
        return x
    x = torch.nn.functional.softplus(40 * x)
    tiny = torch.finfo(x.dtype).tiny
    if kind == "softplus-floored":
        return x.clamp_min(tiny)
    if kind == "softplus-zeroed":
        return torch.where(x < tiny, torch.zeros((), dtype=x.dtype), x)
    return x


def measure(method: str, elements: int, sets: int, channels: int, iters: int,
            seed: int = 0, inputs: str = "randn") -> dict:
    gen = torch.Generator().manual_seed(seed)
    x = make_inputs(inputs, elements, channels, gen).requires_grad_()
    index = torch.randint(0, sets, (elements,), generator=gen).sort().values
    module = make(method, channels)
    grad = torch.randn(sets, channels, generator=gen)
    times = []
    for i in range(iters + 10):            # the first 10 warm up
        start = time.perf_counter()
        out = module(x, index, dim_size=sets)
        out.backward(grad)
        x.grad = None
        module.zero_grad(set_to_none=True)
        if i >= 10:
            times.append(time.perf_counter() - start)
    return {"method": method, "elements": elements, "sets": sets, "channels": channels,
            "iters": iters, "inputs": inputs, "median_ms": 1e3 * statistics.median(times),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="mean,gnp,attsets")
    parser.add_argument("--sizes", default="3000:300,200000:10000",
                        help="comma-separated ELEMENTS:SETS")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--iters", type=int, default=300,
                        help="timed calls per size (at least 20, and a tenth of this, for "
                             "sizes above 10,000 elements); 10 more warm up")
    parser.add_argument("--inputs", default="randn",
                        help="comma-separated input distributions: " + ", ".join(INPUTS))
    args = parser.parse_args()
    kinds = args.inputs.split(",")
    for kind in kinds:
        if kind not in INPUTS:
            parser.error(f"--inputs must be among {', '.join(INPUTS)}, got {kind!r}")
    for method in args.methods.split(","):
        if method not in METHODS:
            parser.error(f"--methods must be among {', '.join(METHODS)}, got {method!r}")
    if args.channels < 1:
        parser.error(f"--channels must be a positive int, got {args.channels}")
    if args.iters < 1:
        parser.error(f"--iters must be a positive int, got {args.iters}")
    sizes = []
    for size in args.sizes.split(","):
        try:
            elements, sets = (int(v) for v in size.split(":"))
        except ValueError:
            parser.error(f"--sizes must be comma-separated ELEMENTS:SETS, got {size!r}")
        if elements < 1 or sets < 1:
            parser.error(f"--sizes needs positive ELEMENTS and SETS, got {size!r}")
        sizes.append((elements, sets))
    for elements, sets in sizes:
        iters = args.iters if elements <= 10000 else max(20, args.iters // 10)
        for method in args.methods.split(","):
            for kind in kinds:
                print(json.dumps(measure(method, elements, sets, args.channels, iters,
                                         inputs=kind)), flush=True)


if __name__ == "__main__":
    main()
