"""The multi-view task family of the benchmark: 3D reconstruction from 1 to 24 views with
AttSets (FASet or joint training), GNP (FASet), max, mean and sum pooling and a GRU.

A run trains one :class:`gnpool.models.MultiViewReconstructor` on the ``multiview``
dataset and measures the mean IoU of its voxel predictions on the test shapes and the
held-out category with each number of views, for several random orders of the views.
The grid runner calls :func:`execute` for specs whose task is ``"multiview"``; rows go to
the same SQLite table as the extrapolation runs, with the IoU curves in ``bins``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..datasets.multiview import TASK, load_multiview_splits
from ..datasets.shapes import CATEGORIES
from ..models import MultiViewReconstructor, gnp_parameters
from ..training import (
    FASet,
    SetSizes,
    pooling_parameters,
    predict_multiview,
    single_view_batch,
    subset_batch,
)
from .configs import PoolingConfig
from .profiles import Profile, TaskPlan

#: The ``level`` column of multi-view rows.
LEVEL = "multiview"
#: The view counts the AttSets paper reports (and 24, every view).
EVAL_VIEWS = (1, 2, 3, 4, 5, 8, 12, 16, 20, 24)


def is_multiview(task: str) -> bool:
    """Whether ``task`` belongs to the multi-view family."""
    return task == TASK


@dataclass(frozen=True)
class MultiViewHParams:
    """Model, training and evaluation settings of a multi-view run.

    Attributes:
        channels: length of a view's feature vector (what the aggregator fuses).
        width: base width of the encoder and decoder convolutions.
        silhouette: feed silhouettes (``depth > 0``) instead of depth maps.
        occupancy: the share of occupied voxels the untrained decoder predicts (about
            the dataset's: 5.9% of the voxels of the default training split).
        training: ``"joint"`` (every parameter, on random view subsets, for ``epochs``)
            or ``"faset"`` (FASet: ``stage1_epochs`` of single views with the aggregator
            left out, then ``stage2_epochs`` training only the aggregator).
        epochs: epochs of joint training.
        stage1_epochs, stage2_epochs: epochs of FASet's two stages.
        stage1_views: views per shape in a stage-1 batch, each its own one-view set (a
            random choice per batch; the released AttSets code uses all 24).
        batch_size: shapes per batch.
        lr, weight_decay: Adam's for joint training and FASet's stage 1.
        stage2_lr: Adam's learning rate in FASet's stage 2.
        pool_lr: learning rate of GNP's exponents and size normalisations (no weight
            decay), in any stage; ``None``: the stage's learning rate.
        set_sizes: inclusive range of the random subset sizes (joint and stage 2).
        per_sample_sizes: a size per shape (sets of mixed sizes with a mask) rather
            than one per batch.
        aggregator_kwargs: keyword arguments of the aggregator (AttSets or GNP).
        eval_views: the numbers of views the IoU is measured with.
        orders: random orders of each shape's views in evaluation.
        threshold: a voxel is predicted occupied when its probability exceeds this.
        val_views: view counts of the validation IoU recorded after every epoch.
        eval_batch_size: shapes per evaluation batch.
        eval_seed: seed of the evaluation's view orders (the same for every run).
    """

    channels: int = 128
    width: int = 16
    silhouette: bool = False
    occupancy: float | None = 0.05
    training: str = "joint"
    epochs: int = 40
    stage1_epochs: int = 25
    stage2_epochs: int = 15
    stage1_views: int = 4
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    stage2_lr: float = 1e-3
    pool_lr: float | None = None
    set_sizes: tuple[int, int] = (1, 24)
    per_sample_sizes: bool = True
    aggregator_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_views: tuple[int, ...] = EVAL_VIEWS
    orders: int = 5
    threshold: float = 0.5
    val_views: tuple[int, ...] = (1, 4, 24)
    eval_batch_size: int = 32
    eval_seed: int = 0

    def __post_init__(self) -> None:
        if self.training not in ("joint", "faset"):
            raise ValueError(f"training must be 'joint' or 'faset', got {self.training!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        low, high = self.set_sizes
        if not 1 <= low <= high:
            raise ValueError(f"set_sizes must be (low, high) with 1 <= low <= high, got "
                             f"{self.set_sizes!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> dict[str, Any]:
        """What identifies a run (every setting)."""
        return self.to_dict()

    def updated(self, values: Mapping[str, Any]) -> MultiViewHParams:
        """A copy with ``values`` applied (unknown names raise ``ValueError``)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"multiview hyperparameters {unknown} are unknown; expected some "
                             f"of {', '.join(sorted(known))}")
        # Lists from JSON (the command line) become the tuples the fields hold.
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return dataclasses.replace(self, **values)


def multiview_configs() -> list[PoolingConfig]:
    """The aggregators of the grid, FASet-trained ones first. ``readout`` names the
    aggregator; ``fixed`` marks the poolings with nothing to learn."""
    faset, joint = {"training": "faset"}, {"training": "joint"}
    return [
        PoolingConfig("attsets-faset", None, "attsets", overrides=faset),
        PoolingConfig("gnp-faset", None, "gnp", overrides=faset),
        PoolingConfig("attsets-joint", None, "attsets", overrides=joint),
        PoolingConfig("gru", None, "gru", overrides=joint),
        PoolingConfig("max", None, "max", fixed=True, overrides=joint),
        PoolingConfig("mean", None, "mean", fixed=True, overrides=joint),
        PoolingConfig("sum", None, "sum", fixed=True, overrides=joint),
    ]


def plan_task(profile: Profile, tp: TaskPlan, *, configs: Iterable[str] | None = None,
              seeds: Iterable[int] | None = None, hparams: Mapping[str, Any] | None = None,
              data_root: str | None = None,
              extra_configs: Iterable[PoolingConfig] = ()) -> list[Any]:
    """The runs of one multi-view task plan (see :func:`gnpool.bench.runner.plan`)."""
    from .runner import RunSpec

    grid = multiview_configs()
    if tp.configs is not None:
        grid = [c for c in grid if c.name in tp.configs]
    grid += list(extra_configs)
    if configs is not None:
        names = set(configs)
        grid = [c for c in grid if c.name in names]
    base = MultiViewHParams().updated(tp.hparams).updated(hparams or {})
    specs = []
    for config in grid:
        hp = base.updated({**config.overrides, **tp.overrides.get(config.name, {})})
        for seed in (seeds if seeds is not None else tp.seeds or profile.seeds):
            specs.append(RunSpec(profile.name, tp.task, config, int(seed), hp, dict(tp.data),
                                 profile.data_seed, data_root))
    return specs


def load_data(spec: Any, progress: bool = False) -> dict[str, Any]:
    """Every split of the run's dataset (generated or read from the cache)."""
    return load_multiview_splits(root=spec.data_root, seed=spec.data_seed, progress=progress,
                                 **spec.data)


def _generator(seed: int, stream: int) -> torch.Generator:
    # Independent random streams of one run: loader order, subsets, stage-1 views.
    word = int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0])
    return torch.Generator().manual_seed(word % (2 ** 63))


def build_model(info: Mapping[str, Any], config: PoolingConfig,
                hp: MultiViewHParams) -> MultiViewReconstructor:
    """The reconstructor of a run for a dataset with parameters ``info``."""
    return MultiViewReconstructor(config.readout, image_size=info["image_size"],
                                  grid=info["grid"], channels=hp.channels, width=hp.width,
                                  silhouette=hp.silhouette, occupancy=hp.occupancy,
                                  aggregator_kwargs=dict(hp.aggregator_kwargs))


def adam(model: torch.nn.Module, params: Iterable[torch.nn.Parameter], lr: float,
         hp: MultiViewHParams) -> torch.optim.Adam:
    """Adam over ``params``; pooling parameters (:func:`gnpool.pooling_parameters`: GNP's)
    in their own group (``pool_lr``, no weight decay)."""
    pooling = {id(p) for _, p in pooling_parameters(model)}
    params = list(params)
    rest = [p for p in params if id(p) not in pooling]
    gnp = [p for p in params if id(p) in pooling]
    groups = [{"params": rest}] if rest else []
    if gnp:
        groups.append({"params": gnp, "weight_decay": 0.0,
                       "lr": lr if hp.pool_lr is None else hp.pool_lr})
    return torch.optim.Adam(groups, lr=lr, weight_decay=hp.weight_decay)


def _loss(logits: Tensor, target: Tensor) -> Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)


def iou(logits: Tensor, target: Tensor, threshold: float = 0.5) -> Tensor:
    """Per-sample IoU ``|P & T| / |P | T|`` of the voxels predicted occupied
    (``sigmoid(logits) > threshold``) and the true ones; 1 when both are empty."""
    pred = torch.sigmoid(logits) > threshold
    truth = target > 0.5
    inter = (pred & truth).flatten(1).sum(1).double()
    union = (pred | truth).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), 1.0)


@torch.no_grad()
def evaluate(model: MultiViewReconstructor, dataset: Any, views: Iterable[int], orders: int,
             threshold: float, batch_size: int = 32, seed: int = 0) -> Tensor:
    """Per-shape IoU with each number of views and each view order.

    The ``k`` views of a shape are its first ``k`` recorded views (random viewpoints);
    they are fed in ``orders`` random orders, the same for every model given ``seed``.

    Returns:
        float64 ``[len(views), orders, N]``.
    """
    model.eval()
    views = list(views)
    count, available = dataset.images.shape[:2]
    if max(views) > available:
        raise ValueError(f"views={views} asks for more views than the dataset has "
                         f"({available})")
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.rand(orders, count, k, generator=gen).argsort(-1) for k in views]
    out = torch.zeros(len(views), orders, count, dtype=torch.float64)
    dtype = next(model.parameters()).dtype
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        images = dataset.images[start:stop].unsqueeze(2).to(dtype) / 255
        target = dataset.voxels[start:stop]
        features = model.encode(images)
        for i, k in enumerate(views):
            for o in range(orders):
                if k == 1 and o:          # one view has one order
                    out[i, o, start:stop] = out[i, 0, start:stop]
                    continue
                index = perms[i][o, start:stop].unsqueeze(-1).expand(-1, -1, features.size(2))
                fused = model.aggregate(features[:, :k].gather(1, index))
                out[i, o, start:stop] = iou(model.decode(fused), target, threshold)
    return out


def _validator(dataset: Any, hp: MultiViewHParams) -> Callable[[Any], list[float]]:
    views = [k for k in hp.val_views if k <= dataset.images.size(1)]

    def validate(model: Any) -> list[float]:
        scores = evaluate(model, dataset, views, 1, hp.threshold, hp.eval_batch_size,
                          hp.eval_seed)
        return [round(float(s), 6) for s in scores.mean((1, 2))]
    return validate


def train_joint(model: MultiViewReconstructor, train: Any, val: Any, hp: MultiViewHParams,
                seed: int, bar: Any) -> list[dict[str, Any]]:
    """Every parameter trained on random view subsets; returns the per-epoch logs."""
    loader = DataLoader(train, batch_size=hp.batch_size, shuffle=True,
                        generator=_generator(seed, 0))
    picks = _generator(seed, 1)
    sizes = SetSizes(*hp.set_sizes, per_sample=hp.per_sample_sizes, generator=picks)
    optimizer = adam(model, model.parameters(), hp.lr, hp)
    validate, history = _validator(val, hp), []
    for epoch in range(hp.epochs):
        model.train()
        total, batches = 0.0, 0
        for batch in loader:
            output, target = predict_multiview(model, subset_batch(batch, sizes, picks))
            loss = _loss(output, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        history.append({"stage": 0, "epoch": epoch, "loss": total / batches,
                        "val": validate(model)})
        bar.update()
        bar.set_postfix(loss=f"{total / batches:.4g}", val=history[-1]["val"])
    return history


def train_faset(model: MultiViewReconstructor, train: Any, val: Any, hp: MultiViewHParams,
                seed: int, bar: Any) -> list[dict[str, Any]]:
    """FASet: the base network on single views, then only the aggregator on random
    subsets (:class:`gnpool.training.FASet`); returns the per-epoch logs."""
    loader = DataLoader(train, batch_size=hp.batch_size, shuffle=True,
                        generator=_generator(seed, 0))
    picks = _generator(seed, 2)

    def single_views(batch: Any) -> Any:
        # stage1_views random views of each shape, each its own one-view set.
        return single_view_batch(subset_batch(batch, hp.stage1_views, picks))

    def callback(stage: int, epoch: int, logs: dict[str, Any]) -> None:
        history.append({"stage": stage, **logs})
        bar.update()
        bar.set_postfix(stage=stage, loss=f"{logs['loss']:.4g}", val=logs["val"])

    history: list[dict[str, Any]] = []
    trainer = FASet(
        model, _loss, stage1_epochs=hp.stage1_epochs, stage2_epochs=hp.stage2_epochs,
        set_sizes=tuple(hp.set_sizes), per_sample_sizes=hp.per_sample_sizes,
        stage1_optimizer=lambda params: adam(model, params, hp.lr, hp),
        stage2_optimizer=lambda params: adam(model, params, hp.stage2_lr, hp),
        single_view_batch=single_views, progress=False, seed=_generator(seed, 3).initial_seed())
    trainer.fit(loader, validate=_validator(val, hp), callbacks=[callback])
    return history


def summarize(scores: Tensor, views: Iterable[int], categories: Tensor) -> dict[str, Any]:
    """The stored form of :func:`evaluate`'s result: mean IoU per view count, per view
    count and order, per view count and shape (mean over orders), and per category and
    view count (``categories`` [N]: each shape's category name index)."""
    names = list(CATEGORIES)
    per_category = {names[c]: [round(float(s), 6) for s in scores[:, :, categories == c]
                               .mean((1, 2))] for c in torch.unique(categories).tolist()}
    return {"views": list(views),
            "iou": [round(float(s), 6) for s in scores.mean((1, 2))],
            "iou_orders": [[round(float(s), 6) for s in row] for row in scores.mean(2)],
            "per_shape": [[round(float(s), 5) for s in row] for row in scores.mean(1)],
            "per_category": per_category}


def run(spec: Any, splits: Mapping[str, Any], position: int = 1,
        progress: bool = True) -> dict[str, Any]:
    """Train and evaluate the run ``spec``; returns the columns of its row."""
    hp: MultiViewHParams = spec.hparams
    info = splits["train"].params
    torch.manual_seed(spec.seed)
    model = build_model(info, spec.config, hp)
    initial = {m["name"]: m for m in gnp_parameters(model)}
    faset = hp.training == "faset"
    epochs = hp.stage1_epochs + hp.stage2_epochs if faset else hp.epochs
    start, cpu = time.perf_counter(), time.process_time()
    with tqdm(total=epochs, desc=spec.label, unit="epoch", leave=False, position=position,
              disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        train = train_faset if faset else train_joint
        history = train(model, splits["train"], splits["val"], hp, spec.seed, bar)
    train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    views = [k for k in hp.eval_views if k <= info["views"]]
    bins: dict[str, Any] = {"threshold": hp.threshold, "orders": hp.orders}
    for split in ("test", "test_ood"):
        scores = evaluate(model, splits[split], views, hp.orders, hp.threshold,
                          hp.eval_batch_size, hp.eval_seed)
        bins[split] = summarize(scores, views, splits[split].category)
    bins["seconds"] = {"train": train_seconds, "train_cpu": train_cpu,
                       "eval": time.perf_counter() - start - train_seconds,
                       "cpu": time.process_time() - cpu}
    bins["data_seconds"] = {name: split.generation_seconds for name, split in splits.items()}
    learned = gnp_parameters(model)
    for module in learned:
        for key in ("p", "q"):
            module[f"{key}_init"] = initial[module["name"]][key]
    return {"level": LEVEL, "status": "finished", "bins": bins, "history": history,
            "gnp": learned, "epochs": epochs,
            "num_params": sum(p.numel() for p in model.parameters())}


def execute(spec: Any, position: int = 1, progress: bool = True) -> dict[str, Any]:
    """:func:`gnpool.bench.runner.execute` for a multi-view run: its database row, with
    status ``failed`` and the traceback when it crashes (Ctrl-C still interrupts)."""
    from .runner import _base_row, _now, _splits

    start = time.perf_counter()
    row = _base_row(spec, started_at=_now(), level=LEVEL)
    try:
        row.update(run(spec, _splits(spec), position, progress))
    except Exception:  # a crashed run is a result too; the grid goes on
        row.update(status="failed", error=traceback.format_exc(limit=20))
    row.update(wall_seconds=time.perf_counter() - start, finished_at=_now())
    return row


def postfix(row: Mapping[str, Any]) -> dict[str, str]:
    """What the grid's progress bar shows after a multi-view run: IoU with all views."""
    if row["status"] != "finished":
        return {"iou": "failed"}
    curve = (row.get("bins") or {}).get("test", {}).get("iou") or [math.nan]
    return {"iou": f"{curve[-1]:.3f}"}
