"""Benchmark profiles: which tasks, data sizes, hyperparameters and seeds a grid runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..datasets import list_tasks
from .hparams import HParams


@dataclass(frozen=True)
class TaskPlan:
    """One task of a profile.

    Attributes:
        task: a name from :func:`gnpool.datasets.list_tasks`.
        data: task parameters passed to :func:`gnpool.datasets.load_task`.
        hparams: :class:`~gnpool.bench.hparams.HParams` values for this task.
        configs: names of the configurations to run (``None``: all of the task's level).
        overrides: per configuration name, hyperparameters that differ for it.
        seeds: seeds of this task (``None``: the profile's).
    """

    task: str
    data: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    configs: tuple[str, ...] | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Profile:
    """A named grid: task plans x configurations x ``seeds``."""

    name: str
    description: str
    tasks: tuple[TaskPlan, ...]
    seeds: tuple[int, ...] = (0,)
    workers: int = 1
    data_seed: int = 0
    #: Data seed of the tuning split: extrapolation-distributed samples drawn
    #: independently of the reported test splits, on which recipes are chosen.
    tune_seed: int | None = 1000


# What the GNP investigation (experiments/results/gnp_investigation/) settled on. Trained
# from p = 1, the exponents barely move in the budgets used here, so every GNP starts as a
# bank of poolings: |p| spread from 1 to 50 over its channels, a quarter of them with
# negative exponents (only those can become min on the non-negative outputs of ReLU MLPs),
# and readouts and set poolings with q = 1 (p = 1 is then the mean, not the sum).
GNP_SETTINGS: dict[str, Any] = {"gnp_readout_kwargs": {"q": 1.0}, "gnp_negative_share": 0.25,
                                "gnp_p_spread": 50.0}
#: GNP's exponents learn at this multiple of the model's learning rate (an override of the
#: "gnp" configuration; PowerMean's and Softmax's exponents keep the model's).
GNP_LR_FACTOR = 5.0
#: Configurations whose pooling parameters get GNP's optimiser treatment (their own group
#: at GNP_LR_FACTOR times the learning rate, no weight decay): GNP and the baselines
#: LAF and GenAgg, so that they are compared on equal terms.
POOL_LR_CONFIGS = ("gnp", "laf", "genagg")


def _task(task: str, data: dict[str, Any], hparams: dict[str, Any],
          seeds: tuple[int, ...] | None = None) -> TaskPlan:
    pool = {"pool_lr": GNP_LR_FACTOR * hparams.get("lr", HParams.lr)}
    return TaskPlan(task, data=data, hparams={**hparams, **GNP_SETTINGS},
                    overrides={name: dict(pool) for name in POOL_LR_CONFIGS}, seeds=seeds)

# Xu et al.: max degree 2 layers, hidden 256, lr 0.01, batch 64; shortest path 3 layers,
# lr 0.005, batch 32; 2-layer message MLPs, a linear output layer, 300 epochs,
# learning rate halved every 50 epochs, weight decay 1e-5.
_XU_DEGREE = {"hidden": 256, "layers": 2, "mlp_layers": 2, "node_mlp_layers": 2, "lr": 0.01,
              "batch_size": 64, "epochs": 300, "lr_step": 50, "lr_gamma": 0.5}
_XU_PATH = {**_XU_DEGREE, "layers": 3, "node_mlp_layers": 0, "lr": 0.005, "batch_size": 32}
_XU_SETS = {"hidden": 256, "encoder_layers": 2, "decoder_layers": 1, "lr": 0.01,
            "batch_size": 64, "epochs": 300, "lr_step": 50, "lr_gamma": 0.5}


def _paper_plan(task: str) -> TaskPlan:
    if task.startswith("set_"):
        hp = _XU_SETS
    elif "shortest_path" in task:
        hp = _XU_PATH
    else:
        hp = _XU_DEGREE
    return _task(task, {}, hp)


_QUICK_GRAPH = {"num_train": 1000, "num_val": 200, "num_test": 500}
# A constant learning rate: halving it within 30 epochs left the models less trained.
_QUICK_HP = {"hidden": 32, "epochs": 30}
_QUICK_SETS = {"num_train": 1000, "num_val": 200, "num_test": 500}

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", "seconds: two tiny tasks, a few configurations, 2 epochs (tests)",
        tasks=(
            TaskPlan("max_degree",
                     data={"num_train": 16, "num_val": 8, "num_test": 8,
                           "train_nodes": (6, 10), "extrap_nodes": (12, 16)},
                     hparams={"hidden": 8, "epochs": 2, "batch_size": 8, "size_bins": 2},
                     configs=("sum-max", "sum-sum", "gnp")),
            TaskPlan("set_max",
                     data={"num_train": 16, "num_val": 8, "num_test": 8,
                           "train_sizes": (3, 6), "extrap_sizes": (10, 20)},
                     hparams={"hidden": 8, "epochs": 2, "batch_size": 8, "size_bins": 2},
                     configs=("max", "sum", "gnp")),
        ),
        seeds=(0,), workers=1),
    "quick": Profile(
        "quick", "the README's benchmark: 2 graph, 1 node and 2 set tasks, every "
                 "configuration, 2 seeds (shortest_path 1), 1000 training samples, hidden "
                 "width 32, 30 epochs (max_degree 60) at a constant learning rate; GNP as "
                 "chosen by the GNP investigation",
        tasks=(
            # The most expensive task first, so that the two workers finish together.
            _task("shortest_path", _QUICK_GRAPH,
                  {**_QUICK_HP, "layers": 3, "lr": 0.005, "batch_size": 32}, seeds=(0,)),
            # 30 epochs leave even sum-max far from extrapolating on max_degree.
            _task("max_degree", _QUICK_GRAPH, {**_QUICK_HP, "layers": 2, "epochs": 60}),
            _task("node_neighbour_max", _QUICK_GRAPH, {**_QUICK_HP, "layers": 1}),
            _task("set_max", _QUICK_SETS, _QUICK_HP),
            _task("set_l2", _QUICK_SETS, _QUICK_HP),
        ),
        seeds=(0, 1), workers=2),
    "paper": Profile(
        "paper", "Xu et al.'s data sizes, models and 300 epochs, every task, 3 seeds "
                 "(far longer than quick)",
        tasks=tuple(_paper_plan(t) for t in list_tasks()),
        seeds=(0, 1, 2), workers=2),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile={name!r} is unknown; expected one of "
                         f"{', '.join(PROFILES)}") from None


# The multi-view family (gnpool/bench/multiview.py): one task, "multiview", with its own
# hyperparameters (MultiViewHParams) and aggregators (attsets-faset, gnp-faset,
# attsets-joint, gru, max, mean, sum).
_MV_SMOKE_DATA = {"num_train": 8, "num_val": 4, "num_test": 6, "num_ood": 3, "views": 6,
                  "grid": 8, "image_size": 8}
_MV_SMOKE_HP = {"channels": 16, "width": 4, "epochs": 2, "stage1_epochs": 1,
                "stage2_epochs": 1, "stage1_views": 2, "batch_size": 4, "set_sizes": (1, 6),
                "eval_views": (1, 2, 3, 6), "orders": 3, "val_views": (1, 6),
                # Untrained decoders then predict about half the voxels: non-zero IoUs.
                "occupancy": None}

# GNP's exponents learn at GNP_LR_FACTOR times FASet's stage-2 learning rate (1e-3), as
# in the extrapolation profiles.
_MV_GNP = {"gnp-faset": {"pool_lr": GNP_LR_FACTOR * 1e-3}}

MULTIVIEW_PROFILES: dict[str, Profile] = {
    "multiview_smoke": Profile(
        "multiview_smoke", "seconds: 8 tiny shapes with 6 views, 8^3 voxels, 1-2 epochs "
                           "(tests)",
        tasks=(TaskPlan("multiview", data=_MV_SMOKE_DATA, hparams=_MV_SMOKE_HP),),
        seeds=(0,), workers=1),
    "multiview_quick": Profile(
        "multiview_quick", "about 20 minutes on 2 CPU cores: 1000 training shapes of 7 "
                           "categories, 24 depth maps of 32^2 each, 32^3 voxels, 128 "
                           "features per view, 40 epochs (FASet: 25 + 15, 4 single views "
                           "per shape and batch in stage 1), every aggregator, 1 seed",
        tasks=(TaskPlan("multiview", data={}, hparams={}, overrides=_MV_GNP),),
        seeds=(0,), workers=2),
    "multiview": Profile(
        "multiview", "the larger grid: 4000 training shapes, 600 test shapes, 300 of the "
                     "held-out category, 256 features per view, 80 epochs (FASet: 50 + 30, "
                     "8 single views per shape and batch in stage 1), every aggregator, 3 "
                     "seeds (estimated from the quick profile's CPU time: about 16 CPU "
                     "hours, 8 hours on 2 cores)",
        tasks=(TaskPlan("multiview",
                        data={"num_train": 4000, "num_val": 200, "num_test": 600,
                              "num_ood": 300},
                        hparams={"channels": 256, "epochs": 80, "stage1_epochs": 50,
                                 "stage2_epochs": 30, "stage1_views": 8},
                        overrides=_MV_GNP),),
        seeds=(0, 1, 2), workers=2),
}
PROFILES.update(MULTIVIEW_PROFILES)
