"""What GNP's and AttSets' input guards cost in a warm training loop, side by side in one
process: the exponent read through ``gnpool.aggr.gnp._unit_range`` against a plain clamp,
and the CPU kernels' set checks (``gnpool.kernels.cpu._sets``) against a pass-through.
Prints one line per (guard, method, size): the medians of ``--iters`` forward+backward
calls, alternated ``--rounds`` times (median of the medians), and their ratio.

    python experiments/bench_guard_overhead.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import gnpool.aggr.gnp as gnp_module
import gnpool.kernels.cpu as cpu
from gnpool import AttSetsAggregation, GNPAggregation


def _unchecked_sets(rows, ptr, perm, size):
    return ptr.contiguous(), (None if perm is None or perm.numel() == 0 else perm.contiguous())


def _plain_clamp(a):
    return a.clamp(-1.0, 1.0)


def _median(module, name, fn, pool, x, index, sets, n) -> float:
    # Median seconds of n forward+backward calls with module.name set to fn.
    setattr(module, name, fn)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        pool(x, index, dim_size=sets).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    guards = {"exponent read": (gnp_module, "_unit_range", _plain_clamp),
              "kernel set checks": (cpu, "_sets", _unchecked_sets)}
    torch.manual_seed(0)
    for elements, sets in ((3000, 300), (200000, 10000)):
        x = torch.randn(elements, 64, requires_grad=True)
        index = torch.randint(0, sets, (elements,))
        iters = args.iters if elements < 10000 else max(1, args.iters // 10)
        for guard, (module, name, without) in guards.items():
            with_guard = getattr(module, name)
            methods = {"gnp": GNPAggregation(channels=64).train()}
            if guard == "kernel set checks":
                methods["attsets"] = AttSetsAggregation(64).train()
            for method, pool in methods.items():
                call = (module, name)
                data = (pool, x, index, sets)
                _median(*call, without, *data, 20), _median(*call, with_guard, *data, 20)
                before, after = [], []
                for _ in range(args.rounds):
                    after.append(_median(*call, with_guard, *data, iters))
                    before.append(_median(*call, without, *data, iters))
                setattr(module, name, with_guard)
                b, a = statistics.median(before), statistics.median(after)
                print(f"{guard}, {method}, E={elements} S={sets}: without {b * 1e3:.3f} ms, "
                      f"with {a * 1e3:.3f} ms, ratio {a / b:.3f}")


if __name__ == "__main__":
    main()
