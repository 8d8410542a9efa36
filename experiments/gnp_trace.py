"""Where training moves GNP's exponent: p, q and the sign of dLoss/dp epoch by epoch.

Trains the quick profile's DeepSets model with a GNP set pooling on a set task from
three starts: the mean (p = 1, q = 1), the middle of the exponent's range in the
reparameterisation (p = sqrt(p_min * p_max) ~ 3.16, q = 1) and max itself (p = p_max).
For every epoch it reports, over the steps and channels whose gradient for p is not zero,
the share that would raise p, and the test MAPEs.

    python experiments/gnp_trace.py                # set_max
    python experiments/gnp_trace.py --task set_l2 --epochs 30

Writes experiments/results/gnp_investigation/trace_<task>.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from gnpool.bench import PoolingConfig, get_profile
from gnpool.bench.hparams import HParams
from gnpool.bench.train import build_model, make_optimizer, mape, outputs, predict
from gnpool.datasets import load_splits
from gnpool.functional import P_MAX, P_MIN

OUT = Path(__file__).resolve().parent / "results" / "gnp_investigation"
STARTS = {
    "mean (p=1, q=1)": {"p": 1.0, "q": 1.0},
    "middle (p=3.16, q=1)": {"p": math.sqrt(P_MIN * P_MAX), "q": 1.0},
    "max (p=100, q=1)": {"p": P_MAX, "q": 1.0, "p_neg": -P_MAX},
}


def trace(task: str, epochs: int, seed: int) -> str:
    plan = next(tp for tp in get_profile("quick").tasks if tp.task == task)
    splits = load_splits(task, progress=False, **plan.data)
    info = splits["train"].info
    lines = [f"# GNP exponent during training: `{task}`", "",
             "Quick-profile data and model (hidden 32, lr 0.01, batch 64), GNP set pooling "
             "with every channel at the same start; `p up`: of the epoch's (step, channel) "
             "pairs with a non-zero gradient for p, the share whose gradient raises p; "
             "`live`: the share of pairs with a non-zero gradient.", "",
             "| start | epoch | median p | max p | median q | p up | live | interp MAPE | "
             "extrap MAPE |", "|---|---|---|---|---|---|---|---|---|"]
    for label, kwargs in STARTS.items():
        hp = HParams().updated({**plan.hparams, "epochs": epochs, "gnp_negative_share": 0.0,
                                "gnp_p_spread": None, "gnp_readout_kwargs": kwargs})
        torch.manual_seed(seed)
        model = build_model(info, PoolingConfig("gnp", None, "gnp"), hp)
        optimizer = make_optimizer(model, hp)
        loader = DataLoader(splits["train"], batch_size=hp.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        pool = model.pooling
        for epoch in range(1, epochs + 1):
            model.train()
            ups, downs = [], []
            for batch in loader:
                optimizer.zero_grad()
                pred, target, _ = outputs(model, batch, info.level)
                torch.nn.functional.mse_loss(pred, target).backward()
                # A negative gradient of the logit raises |p| (and p, all channels positive).
                ups.append((pool.p_logit.grad < 0).float())
                downs.append((pool.p_logit.grad > 0).float())
                optimizer.step()
            if epoch in (1, 2, 5) or epoch % 10 == 0 or epoch == epochs:
                up_t, down_t = torch.stack(ups), torch.stack(downs)
                up_n, down_n = up_t.sum().item(), down_t.sum().item()
                live = (up_n + down_n) / up_t.numel()
                up = up_n / max(up_n + down_n, 1.0)
                res = {}
                for split in ("test_interp", "test_extrap"):
                    p, t, _ = predict(model, splits[split], info.level, hp.eval_batch_size)
                    res[split] = mape(p, t)
                with torch.no_grad():
                    lines.append(f"| {label} | {epoch} | {pool.p.median():.2f} | "
                                 f"{pool.p.max():.2f} | {pool.q.median():.2f} | {up:.2f} | "
                                 f"{live:.2f} | "
                                 f"{res['test_interp']:.3g} | {res['test_extrap']:.3g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="set_max", choices=["set_max", "set_l2"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    text = trace(args.task, args.epochs, args.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"trace_{args.task}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
