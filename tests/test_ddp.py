"""GNPAggregation, AttSetsAggregation and the dense AttSets under DistributedDataParallel:
2 processes on the gloo backend on CPU train on halves of a batch; their parameters must
stay identical across ranks and equal a single-process run on the combined batch.

GNPAggregation's training-mode forward clamps ``p_unit`` into [-1, 1] in place. Under DDP
that is safe only if every rank clamps the same values, which holds when the ranks'
parameters are identical after each step: this test lets the optimiser push ``p_unit``
past the ends (asserted) so that the clamp acts between steps on every rank.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from gnpool import AttSets, AttSetsAggregation, GNPAggregation
from gnpool.training import param_groups

WORLD = 2
STEPS = 8
SETS, CHANNELS, FEATURES = 8, 6, 3
# |p| spread over the channels, two of them exactly max (p_unit = 1, the end of its
# range) so that steps push p_unit past 1 and the forward's projection acts.
P_INIT = [math.inf, 2.0, 1.0, -1.0, -4.0, math.inf]
P_NEG_INIT = [-math.inf, 1.0, 3.0, 1.0, math.inf, 2.0]
MODELS = ("gnp_relu", "gnp_mixed", "attsets_aggr", "attsets_dense")


class SetModel(torch.nn.Module):
    """Encoder -> pooling over the elements of each set -> linear head."""

    def __init__(self, pool: torch.nn.Module, relu: bool, dense: bool) -> None:
        super().__init__()
        self.encode = torch.nn.Linear(FEATURES, CHANNELS)
        self.pool, self.relu, self.dense = pool, relu, dense
        self.head = torch.nn.Linear(CHANNELS, 1)

    def forward(self, x, index_or_mask):
        h = self.encode(x)
        if self.relu:      # as in the benchmark's models: pooling inputs >= 0
            h = torch.relu(h)
        if self.dense:
            pooled = self.pool(h, mask=index_or_mask)
        else:
            pooled = self.pool(h, index_or_mask, dim_size=int(index_or_mask.max()) + 1)
        return self.head(pooled).squeeze(-1)


def build(name: str) -> SetModel:
    torch.manual_seed(0)
    if name.startswith("gnp"):
        pool = GNPAggregation(CHANNELS, p=P_INIT, q=1.0, p_neg=P_NEG_INIT, q_neg=1.0)
    elif name == "attsets_aggr":
        pool = AttSetsAggregation(CHANNELS)
    else:
        pool = AttSets(CHANNELS)
    return SetModel(pool, relu=name == "gnp_relu", dense=name == "attsets_dense").double()


def batch(name: str, sets: slice = slice(None)):
    """The combined batch of ``SETS`` sets (or the sets in ``sets``): inputs, set index
    (or mask), targets. Halves have the same number of sets, so the mean loss over the
    combined batch is the mean of the halves' mean losses."""
    gen = torch.Generator().manual_seed(1)
    sizes = torch.tensor([2, 5, 3, 6, 4, 1, 5, 3])
    y = torch.randn(SETS, generator=gen, dtype=torch.float64)
    if name == "attsets_dense":
        x = torch.randn(SETS, int(sizes.max()), FEATURES, generator=gen, dtype=torch.float64)
        mask = torch.arange(int(sizes.max())) < sizes.view(-1, 1)
        return x[sets], mask[sets], y[sets]
    x = torch.randn(int(sizes.sum()), FEATURES, generator=gen, dtype=torch.float64)
    index = torch.repeat_interleave(torch.arange(SETS), sizes)
    keep = torch.isin(index, torch.arange(SETS)[sets])
    return x[keep], index[keep] - int(index[keep].min()), y[sets]


def train(model: torch.nn.Module, data, pooling_module: torch.nn.Module) -> bool:
    """``STEPS`` SGD steps; returns whether a step left some p_unit outside [-1, 1]."""
    x, index, y = data
    # Plain SGD: a step is linear in the gradient, so the runs differ by rounding only.
    optimizer = torch.optim.SGD(param_groups(pooling_module, lr=0.05, pool_lr=2.0))
    outside = False
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x, index), y)
        loss.backward()
        optimizer.step()
        pool = pooling_module.pool
        if isinstance(pool, GNPAggregation):
            outside |= bool((pool.p_unit.abs() > 1).any() | (pool.p_neg_unit.abs() > 1).any())
    return outside


def _worker(rank: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    try:
        results = {}
        half = SETS // WORLD
        for name in MODELS:
            model = build(name)
            ddp = DistributedDataParallel(model)
            outside = train(ddp, batch(name, slice(rank * half, (rank + 1) * half)), model)
            # DDP's reducer must go while the process group is alive: destroyed after
            # destroy_process_group (when this frame unwinds) it can wait forever.
            del ddp
            results[name] = {"state": {k: v.detach().clone()
                                       for k, v in model.state_dict().items()},
                             "outside": outside}
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Final states of the 2 DDP ranks, per model."""
    tmp = tmp_path_factory.mktemp("ddp")
    context = mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):          # raises if a rank failed
        if time.monotonic() > deadline:         # a hung rank fails the test, not the suite
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP ranks did not finish within 300 s")
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", MODELS)
def test_ddp_matches_single_process_on_the_combined_batch(ranks, name):
    first, second = ranks[0][name], ranks[1][name]
    assert first["state"].keys() == second["state"].keys()
    for key, value in first["state"].items():
        # Same averaged gradients on every rank: bit-identical parameters.
        assert torch.equal(value, second["state"][key]), key

    model = build(name)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    outside = train(model, batch(name), model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(first["state"][key], value, rtol=1e-9, atol=1e-10,
                                   msg=lambda m, key=key: f"{name} {key}: {m}")
        if key in ("encode.weight", "head.weight"):
            assert not torch.equal(value, initial[key])           # it did train
    if name.startswith("gnp"):
        # The projection acted between steps, in the DDP ranks as in the reference.
        assert outside and first["outside"] and second["outside"]
        pool = model.pool
        assert not torch.equal(pool.p_unit, initial["pool.p_unit"])
