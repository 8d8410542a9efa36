"""Training and evaluation of one benchmark run."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Dataset
from torch_geometric.loader import DataLoader
from torch_geometric.nn.aggr import Aggregation
from tqdm.auto import tqdm

from ..aggr import GNPAggregation
from ..aggr.gnp import COMPARED
from ..datasets import TaskInfo
from ..models import DeepSets, MessageMLPGNN, gnp_parameters
from ..models.mlp import ending_name
from ..training import (
    classic_prior,
    mirror_idle_parts_,
    param_groups,
    pooling_parameters,
    recipe,
    snap_parts_,
    snap_to_classic,
    transfer_pooling_,
)
from ..training.recipe import (  # noqa: F401  (the benchmark's names for them)
    CANDIDATE_NAMES,
    CLASSIC_END_PREFIX,
    CONJUGATE_PREFIX,
    HEADING_ANGLE,
    MAX_CONJUGATED_MODULES,
    SNAP_SLACK,
    _check_conjugable,
    _lower,
    _lowest,
    _lowest_loss,
    _with_relu_margin,
    _without_weak_conjugates,
    apply_plan_,
    choose_model,
    classic_end_plans,
    conjugate_sets,
    head_parts_,
)
from ..training.snap import _learnable
from .configs import PoolingConfig
from .hparams import HParams


def pooling_kwargs(name: str | None, base: dict[str, Any], hp: HParams,
                   readout: bool) -> dict[str, Any]:
    """Keyword arguments of one pooling: GNP gets the profile's GNP settings."""
    if name != "gnp":
        return dict(base)
    kwargs = {"channels": hp.hidden, **hp.gnp_kwargs,
              **(hp.gnp_readout_kwargs if readout else {}), **base}
    if hp.gnp_per_channel:
        kwargs["channels"] = hp.hidden
    share, spread = hp.gnp_negative_share, hp.gnp_p_spread
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"gnp_negative_share must be in [0, 1], got {share!r}")
    channels = kwargs["channels"]
    negative = round(share * channels)
    if negative or spread is not None:
        # Channel order carries no meaning: the last channels get the negative exponents.
        groups = [channels - negative, negative]
        initial = {"p": kwargs.get("p", 1.0)}
        initial["p_neg"] = kwargs.get("p_neg", initial["p"])
        for key, value in initial.items():
            value = torch.as_tensor(value, dtype=torch.float32)
            mags = value.abs().expand(channels).clone()
            if spread is not None:
                if value.numel() != 1 or not spread > 0:
                    raise ValueError(f"gnp_p_spread={spread!r} needs a positive value and one "
                                     f"initial {key}, got {value.tolist()}")
                mags = torch.cat([_geometric(float(value.abs()), spread, n) for n in groups])
            sign = torch.cat([torch.ones(groups[0]), -torch.ones(groups[1])])
            kwargs[key] = (mags * sign).tolist()
    return kwargs


def _geometric(start: float, stop: float, count: int) -> Tensor:
    if count <= 1:
        return torch.full((count,), start)
    return torch.logspace(math.log10(start), math.log10(stop), count)


def build_model(info: TaskInfo, config: PoolingConfig, hp: HParams) -> torch.nn.Module:
    """The model of a run: :class:`MessageMLPGNN` for graph and node tasks,
    :class:`DeepSets` for set tasks."""
    if info.level == "set":
        return DeepSets(info.num_node_features, info.target_dim, hp.hidden, config.readout,
                        pooling_kwargs=pooling_kwargs(config.readout, config.readout_kwargs,
                                                      hp, True),
                        encoder_layers=hp.encoder_layers, decoder_layers=hp.decoder_layers,
                        last_activation=hp.last_activation)
    readout = config.readout if info.level == "graph" else None
    return MessageMLPGNN(
        info.num_node_features, info.target_dim, hp.hidden, hp.layers, config.aggr, readout,
        aggr_kwargs=pooling_kwargs(config.aggr, config.aggr_kwargs, hp, False),
        readout_kwargs=pooling_kwargs(readout, config.readout_kwargs, hp, True),
        edge_dim=info.edge_dim, mlp_layers=hp.mlp_layers, node_mlp_layers=hp.node_mlp_layers,
        output_layers=hp.output_layers, last_activation=hp.last_activation,
        share_aggr=hp.gnp_share_aggr and config.aggr == "gnp",
        factorized=hp.factorized_messages)


def make_optimizer(model: torch.nn.Module, hp: HParams) -> torch.optim.Optimizer:
    """Adam over :func:`gnpool.param_groups`: every learnable pooling's parameters (GNP's,
    PowerMean's p, Softmax's t, the baselines') in their own group at ``pool_lr`` without
    weight decay."""
    return torch.optim.Adam(param_groups(model, hp.lr, hp.pool_lr, hp.weight_decay))


def outputs(model: torch.nn.Module, batch: Batch, level: str) -> tuple[Tensor, Tensor, Tensor]:
    """Flat predictions, targets and the size (nodes or elements) of each target's sample."""
    sizes = batch.ptr.diff()
    target = scored_targets(batch, level)
    if level == "set":
        out = model(batch.x, batch.batch, dim_size=batch.num_graphs)
        size = sizes.view(-1, 1).expand_as(target)
    else:
        edge_attr = batch.edge_attr if "edge_attr" in batch else None
        out = model(batch.x, batch.edge_index, edge_attr, batch.batch, batch.num_graphs)
        if level == "node":
            out = out[batch.mask]
            size = sizes[batch.batch][batch.mask].view(-1, 1).expand_as(target)
        else:
            size = sizes.view(-1, 1).expand_as(target)
    return out.reshape(-1), target.reshape(-1), size.reshape(-1)


def scored_targets(batch: Batch, level: str) -> Tensor:
    """The scored targets of ``batch``, one row per sample (a node task's masked nodes)."""
    if level == "node":
        return batch.y.view(batch.num_nodes, -1)[batch.mask]
    return batch.y.view(batch.num_graphs, -1)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, level: str,
            batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, targets and sizes over a whole split, in float64."""
    model.eval()
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        parts.append(outputs(model, batch, level))
    pred, target, size = (torch.cat(t).double().numpy() for t in zip(*parts, strict=True))
    return pred, target, size


@torch.no_grad()
def dead_channels(model: torch.nn.Module, dataset: Dataset, level: str,
                  batch_size: int) -> dict[str, float]:
    """Per pooling module of ``model`` (every PyG :class:`Aggregation` in it, by name): the
    fraction of its input channels that are exactly 0 for every element of ``dataset``.
    Such a channel passes nothing through its pooling, and a learnable pooling's
    per-channel parameters get no gradient from it."""
    alive: dict[str, Tensor] = {}

    def watch(name: str):
        def hook(_module, args):
            x = args[0]
            seen = (x != 0).reshape(-1, x.size(-1)).any(0) if x.dim() > 1 else (x != 0).any()
            alive[name] = seen if name not in alive else alive[name] | seen
        return hook

    hooks = [module.register_forward_pre_hook(watch(name))
             for name, module in model.named_modules()
             if isinstance(module, Aggregation) and name]
    try:
        predict(model, dataset, level, batch_size)
    finally:
        for handle in hooks:
            handle.remove()
    return {name: round(1.0 - float(seen.float().mean()), 6) for name, seen in alive.items()}


def mape(pred: np.ndarray, target: np.ndarray) -> float:
    """``100 * mean(|y - y_hat| / |y|)``; NaN when a prediction is not finite."""
    if not np.isfinite(pred).all():
        return math.nan
    return float(100.0 * np.mean(np.abs(target - pred) / np.abs(target)))


def size_bins(pred: np.ndarray, target: np.ndarray, size: np.ndarray,
              bins: int) -> list[dict[str, float]]:
    """MAPE per size bin: ``bins`` equal-width integer ranges over the observed sizes."""
    lo, hi = int(size.min()), int(size.max()) + 1
    edges = np.unique(np.linspace(lo, hi, min(bins, hi - lo) + 1).round().astype(int))
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = (size >= a) & (size < b)
        if sel.any():
            out.append({"lo": int(a), "hi": int(b), "count": int(sel.sum()),
                        "mean_size": float(size[sel].mean()),
                        "mape": mape(pred[sel], target[sel])})
    return out


def _split_by_size(dataset: Dataset, share: float) -> tuple[Dataset, Dataset]:
    # The largest `share` of the samples (nodes or elements; ties broken by position).
    sizes = torch.tensor([data.num_nodes for data in dataset])
    order = torch.sort(sizes, stable=True).indices
    count = max(1, min(len(order) - 1, round(share * len(order))))
    return dataset[order[:-count]], dataset[order[-count:]]


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def fit(model: torch.nn.Module, train: Dataset, val: Dataset, level: str, hp: HParams,
        seed: int, desc: str = "", position: int = 0,
        progress: bool = True) -> dict[str, Any]:
    """Train with Adam on the MSE loss; restore the weights of the epoch with the best
    validation loss (epoch 0 is the untrained model). Returns the training record.

    With ``hp.snap > 0`` the last ``snap`` share of the epochs starts from the best state
    so far with every GNP channel near a classic pooling (on the validation inputs) fixed
    at it (:func:`gnpool.training.snap_to_classic`, tolerance ``hp.snap_tolerance``) and
    trains the rest of the model; the snapped model is kept if its best validation loss is
    within ``SNAP_SLACK`` of the best before snapping, else the run goes back to that state.
    With ``hp.pool_prior > 0`` the loss carries ``weight * mse.detach() *
    classic_prior(model)``, the weight rising linearly from 0 after the first
    ``hp.pool_prior_start`` share of the epochs to ``hp.pool_prior`` at the snap epoch (the
    last epoch without snapping), and the snap is part-wise
    (:func:`gnpool.training.snap_parts_`), as it is with ``hp.snap_parts``. With
    ``hp.snap_search > 0`` the snap epoch chooses each GNP's pooling by validation
    (:func:`snap_search`)."""
    optimizer = make_optimizer(model, hp)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, hp.lr_step, hp.lr_gamma)
                 if hp.lr_step else None)
    gen = torch.Generator().manual_seed(seed)
    pooling = [p for _, p in pooling_parameters(model)]
    size_shift = hp.pool_split > 0 and bool(pooling)
    if size_shift:
        small, large = _split_by_size(train, hp.pool_split)
        loader = DataLoader(small, batch_size=hp.batch_size, shuffle=True, generator=gen)
        pool_batches = _cycle(DataLoader(large, batch_size=hp.batch_size, shuffle=True,
                                         generator=gen))
        pool_ids = {id(p) for p in pooling}
        weights = [p for p in model.parameters() if id(p) not in pool_ids]
    else:
        loader = DataLoader(train, batch_size=hp.batch_size, shuffle=True, generator=gen)

    prior = {"weight": 0.0}

    def step(batch: Batch, frozen: list[torch.nn.Parameter]) -> None:
        optimizer.zero_grad(set_to_none=True)
        pred, target, _ = outputs(model, batch, level)
        loss = torch.nn.functional.mse_loss(pred, target)
        if prior["weight"] > 0:
            loss = loss + prior["weight"] * loss.detach() * classic_prior(model)
        loss.backward()
        for param in frozen:    # Adam leaves parameters without a gradient untouched
            param.grad = None
        optimizer.step()

    def val_loss() -> float:
        pred, target, _ = predict(model, val, level, hp.eval_batch_size)
        return float(np.mean((pred - target) ** 2))

    def step_epoch(frozen: list[torch.nn.Parameter]) -> None:
        model.train()
        for batch in loader:
            if size_shift and not frozen:
                step(batch, pooling)
                step(next(pool_batches), weights)
            else:
                step(batch, frozen)

    best_loss, best_epoch = val_loss(), 0
    best_state = copy.deepcopy(model.state_dict())
    history: list[float] = []
    # A snap share too small to round to an epoch still snaps, before the last epoch.
    snap_epoch = min(round(hp.epochs * (1 - hp.snap)), hp.epochs - 1) if hp.snap > 0 else None
    snap: dict[str, Any] | None = None
    frozen: list[torch.nn.Parameter] = []
    # Updated by hand after each epoch, with that epoch's losses, and redrawn every time:
    # an iterating bar only counts when it redraws, so with its default rate limits it
    # showed 0/N next to later epochs' losses.
    bar = tqdm(total=hp.epochs, desc=desc, unit="epoch", leave=False, position=position,
               disable=not progress, file=sys.stderr, dynamic_ncols=True, mininterval=0,
               miniters=1)
    ramp_end = snap_epoch if snap_epoch is not None else hp.epochs
    ramp_start = hp.pool_prior_start * ramp_end
    search: dict[str, Any] | None = None
    for epoch in range(1, hp.epochs + 1):
        prior["weight"] = hp.pool_prior * (
            1.0 if epoch >= ramp_end else 0.0 if epoch <= ramp_start
            else (epoch - ramp_start) / (ramp_end - ramp_start))
        if epoch - 1 == snap_epoch:
            model.load_state_dict(best_state)
            if hp.pool_prior > 0 or hp.snap_parts:
                snapped = snap_parts_(model, hp.snap_tolerance)
            elif hp.snap_search > 0:
                snapped, search = snap_search(model, optimizer, step_epoch, val_loss,
                                              hp.snap_search)
            else:
                snapped = snap_to_classic(
                    model, hp.snap_tolerance,
                    run=lambda: predict(model, val, level, hp.eval_batch_size))
            if snapped or search:
                snap = {"epoch": epoch - 1, "modules": snapped, "val_mse_before": best_loss,
                        "state_before": best_state, "best_epoch_before": best_epoch}
                if search is not None:
                    snap["search"] = search
                frozen = pooling
                best_loss, best_epoch = val_loss(), epoch - 1
                best_state = copy.deepcopy(model.state_dict())
        step_epoch(frozen)
        if scheduler is not None:
            scheduler.step()
        current = val_loss()
        history.append(current)
        if current < best_loss or not math.isfinite(best_loss):
            best_loss, best_epoch = current, epoch
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(val=f"{current:.3g}", best=f"{best_loss:.3g}@{best_epoch}",
                        refresh=False)
        bar.update(1)
    bar.close()
    if snap is not None:
        before = snap.pop("state_before")
        snap["val_mse_after"] = best_loss
        snap["kept"] = best_loss <= (1 + recipe.SNAP_SLACK) * snap["val_mse_before"]
        if not snap["kept"]:
            best_state, best_loss, best_epoch = (before, snap["val_mse_before"],
                                                 snap["best_epoch_before"])
    model.load_state_dict(best_state)
    return {"best_epoch": best_epoch, "val_mse": best_loss, "history": history,
            "snap": snap}


def snap_search(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                train_epoch: Callable[[list[torch.nn.Parameter]], None],
                val_loss: Callable[[], float],
                epochs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose the pooling of each learnable GNP of ``model`` by validation, module by module
    in module order: its learned pooling ("none") and sum, mean, max and min
    (:data:`gnpool.aggr.gnp.COMPARED`, set exactly with ``snap_``) are each trained for
    ``epochs`` calls of ``train_epoch(held)`` from the same state (weights and optimiser),
    ``held`` the pooling parameters that must not move (those of the GNPs snapped so far
    and of the candidate if it is classic); the classic pooling with the lowest ``val_loss()``
    after any of its epochs is kept with the weights it reached unless the learned one's is
    lower by more than ``SNAP_SLACK`` (a classic pooling holds at every size, which
    validation on the training sizes cannot show).

    Returns ``({module name: [pooling]}`` of the snapped modules (one name: the whole
    module, every channel, is snapped), ``{module name: {candidate: validation loss}})``
    (``None`` for a loss that was never finite). Only weights and optimiser state are
    restored between candidates: each trains on the next batches of the loader."""
    snapped: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    held: list[torch.nn.Parameter] = []
    modules = [(n, m) for n, m in model.named_modules()
               if isinstance(m, GNPAggregation) and m.p_unit.requires_grad]
    for name, module in modules:
        start = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
        results: dict[str, tuple[float, Any]] = {}
        for candidate in ("none", *COMPARED):
            model.load_state_dict(start[0])
            optimizer.load_state_dict(start[1])
            own = [getattr(module, n) for n in module.pooling_parameter_names]
            if candidate != "none":
                module.snap_(candidate)
            best = (math.inf, None)
            for _ in range(epochs):
                train_epoch(held + own if candidate != "none" else held)
                loss = val_loss()
                # A NaN loss never counts as best; a finite one replaces a NaN.
                if best[1] is None or loss < best[0] or not math.isfinite(best[0]):
                    best = (loss, (copy.deepcopy(model.state_dict()),
                                   copy.deepcopy(optimizer.state_dict())))
            results[candidate] = best
        # A classic pooling holds at every size: it is preferred unless the learned one is
        # better on validation by more than SNAP_SLACK.
        score = {c: v[0] if math.isfinite(v[0]) else math.inf for c, v in results.items()}
        classic = min(COMPARED, key=score.__getitem__)
        choice = (classic if score[classic] < math.inf
                  and score[classic] <= (1 + recipe.SNAP_SLACK) * score["none"] else "none")
        model.load_state_dict(results[choice][1][0])
        optimizer.load_state_dict(results[choice][1][1])
        if choice != "none":
            held += [getattr(module, n) for n in module.pooling_parameter_names]
        scores[name] = {c: (v[0] if math.isfinite(v[0]) else None) for c, v in results.items()}
        if choice != "none":
            snapped[name] = [choice]
    return snapped, scores


#: ``HParams.select_on="val_large"``: the share of the validation targets, those of the
#: largest samples, whose MSE chooses among a run's trained models.
LARGE_SHARE = 1 / 3


def candidate_scores(model: torch.nn.Module, splits: dict[str, Dataset], level: str,
                     batch_size: int, val_mse: float) -> dict[str, float]:
    """How one of a run's trained models does, to choose among them and for the record.

    Returns ``val_mse`` (the validation MSE :func:`fit` measured for the kept epoch, given),
    ``val_mse_large`` (the MSE over the :data:`LARGE_SHARE` of the validation targets,
    at least one, whose samples are largest: most nodes in their graph, most elements in
    their set; ties in split order), ``mape_val`` and ``mape_val_large`` (MAPE, %, over
    the same targets), ``val_mse_high`` and ``mape_val_high`` (MSE and MAPE over the
    :data:`LARGE_SHARE` of the validation targets largest in magnitude, at least one; ties
    in split order: the nearest the training distribution comes to the larger values
    that extrapolation asks for) and, where ``splits`` has a ``"tune"`` split,
    ``mape_tune``: floats,
    inf or NaN where the model's outputs are (the database stores those as null). The
    global random state is left as it was, so a run trains the same with or without these
    scores. Raises ``ValueError`` if ``splits`` has no ``"val"`` split or ``val_mse`` is
    not a number."""
    if "val" not in splits:
        raise ValueError(f"splits must have a 'val' split; got {sorted(splits)}")
    if isinstance(val_mse, bool) or not isinstance(val_mse, (int, float)):
        raise ValueError(f"val_mse must be a number (fit's validation MSE), got {val_mse!r}")
    with torch.random.fork_rng(devices=[]):
        pred, target, size = predict(model, splits["val"], level, batch_size)
        count = max(1, math.ceil(LARGE_SHARE * len(size)))
        large = np.argsort(-size, kind="stable")[:count]
        high = np.argsort(-np.abs(target), kind="stable")[:count]
        with np.errstate(all="ignore"):
            out = {"val_mse": float(val_mse),
                   "val_mse_large": float(np.mean((pred[large] - target[large]) ** 2)),
                   "mape_val": mape(pred, target),
                   "mape_val_large": mape(pred[large], target[large]),
                   "val_mse_high": float(np.mean((pred[high] - target[high]) ** 2)),
                   "mape_val_high": mape(pred[high], target[high])}
            if "tune" in splits:
                out["mape_tune"] = mape(*predict(model, splits["tune"], level, batch_size)[:2])
    return out


def _check_conjugable_hparams(model: torch.nn.Module) -> None:
    # At most MAX_CONJUGATED_MODULES learnable GNP modules (any of them may end at max, so
    # search_and_retrain checks before its search), in the benchmark's settings' terms.
    _check_conjugable(model, "retrain_conjugates=True needs", "set gnp_share_aggr=True (one GNP "
                      "for every message-passing layer) or retrain_conjugates=False")


def search_and_retrain(info: TaskInfo, config: PoolingConfig, hp: HParams,
                       model: torch.nn.Module, splits: dict[str, Dataset], seed: int,
                       desc: str = "", position: int = 0, progress: bool = True,
                       search_only: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``hp.retrain``: train ``model`` (initialised from ``seed``) for the search share of
    the epochs as configured (:func:`fit`), set each part of each learnable GNP to its
    nearest classic point (within ``hp.retrain_tolerance``;
    :func:`gnpool.training.snap_parts_`), then build the model again from ``seed``, give it
    the searched pooling parameters, frozen, and train its other weights for
    ``hp.epochs`` epochs without snapping or prior. With ``hp.retrain_heading`` the parts
    still nearest their start's classic point but that far from their start are first set
    to the classic point they were heading for (:func:`head_parts_`); with
    ``hp.retrain_whole`` each GNP channel is then set to the classic pooling of its whole
    input nearest its output on the validation inputs
    (:func:`gnpool.training.snap_to_classic`) before the rest is set part-wise; with
    ``hp.retrain_mirror`` each part that pooled only zeros on the training split is then
    set to the mirror of its sibling (:func:`gnpool.training.mirror_idle_parts_`). The
    pooling is what the search found; the weights no longer carry what they adapted to
    while it was still moving. With ``hp.retrain_select_activation`` the retrain runs
    twice from the same search and the same initialisation: first with the MLP ending
    ``hp.retrain_last_activation`` names (or ``hp.last_activation`` where that is
    ``None``), then with the other one (linear after ReLU, ReLU after linear or softplus),
    and the one with the lower loss (the first on a tie; a NaN loss never wins) goes on to
    the comparison with the search. With ``hp.retrain_conjugates`` a ReLU-ended retrain
    follows for each set of :func:`conjugate_sets` (the searched pooling with those GNP
    modules conjugated, :meth:`gnpool.GNPAggregation.conjugate_`), named
    :data:`CONJUGATE_PREFIX` and its number, which competes as a ReLU-ended retrain. With
    ``hp.retrain_classic_r2``, where the lowest validation MSE of those retrains leaves a
    validation R^2 (:func:`r_squared`) below it (or NaN), a ReLU-ended retrain follows for
    each plan of :func:`gnpool.training.classic_end_plans` (the modules with a channel
    off max and min set to max and to min, the others as searched or conjugated), named
    :data:`CLASSIC_END_PREFIX` and its number, which competes as a conjugate's. The
    loss is the one ``hp.select_on`` names (:func:`choose_model`): the validation MSE, or
    its share over the largest samples. With ``hp.search_refit_r2`` a search whose
    validation R^2 (:func:`r_squared`) is below it (or NaN) trains again from the same
    initialisation with ReLU-ended MLPs, and the search with the lower validation MSE is
    the one the retrains start from (``"search_refit"`` in the record: the first search's
    R^2 and validation MSE, the second's, and which was kept).

    Returns the kept model (the retrained one unless its loss is more than
    ``SNAP_SLACK`` above the search's) and its training record, whose ``"retrain"``
    entry holds the search's and the retrain's validation MSEs (over the whole split), the
    snapped parts, which model was kept and, with ``hp.retrain_select_activation``, every
    retrain's validation MSE and the MLP ending of the one chosen (``"last_activation"``;
    the search's model may still be the one kept), the sets of modules conjugated
    (``"conjugates"``, in the order of their retrains) and the kept retrain's
    (``"conjugated"``, empty when it is not one of them), with ``hp.retrain_classic_r2``
    the R^2 read (``"classic_r2"``, else ``None``), the classic-end plans retrained
    (``"classic_ends"``) and the kept one (``"classic_end"``, ``None`` unless a classic-end
    retrain was kept), and whose ``"candidates"`` entry every model's
    :func:`candidate_scores` and the name :func:`choose_model` kept;
    ``"history"`` runs over the search and the chosen retrain. With ``search_only`` the
    searched model is kept as it is, with no retrain (``"retrain"`` says so: ``kept``
    false, nothing snapped, ``val_mse_retrain`` ``None``); the search trains as it would
    with its retrains (``HParams.select_channels_retrain``)."""
    if hp.retrain_conjugates:
        # Too many modules to conjugate in every combination: said before the search.
        _check_conjugable_hparams(model)
    search_hp = dataclasses.replace(hp, epochs=max(1, round(hp.retrain * hp.epochs)))
    start = copy.deepcopy(model.state_dict())
    searched = fit(model, splits["train"], splits["val"], info.level, search_hp, seed,
                   desc, position, progress)
    refit = None
    if hp.search_refit_r2 is not None and hp.last_activation is not True:
        r2 = r_squared(searched["val_mse"], splits["val"], info.level, hp.eval_batch_size)
        refit = {"r2": r2, "val_mse_first": searched["val_mse"], "kept": "first"}
        if not r2 >= hp.search_refit_r2:
            # The search fitted too little: again from the same initialisation, with the
            # fixed configurations' ReLU-ended MLPs; the lower validation MSE goes on.
            relu_hp = dataclasses.replace(search_hp, last_activation=True)
            torch.manual_seed(seed)
            other = build_model(info, config, relu_hp)
            other_record = fit(other, splits["train"], splits["val"], info.level, relu_hp,
                               seed, desc + "/search-relu", position, progress)
            refit["val_mse_relu"] = other_record["val_mse"]
            if _lower(other_record["val_mse"], searched["val_mse"]):
                model, searched, refit["kept"] = other, other_record, "relu"
    candidates = {"search": candidate_scores(model, splits, info.level, hp.eval_batch_size,
                                             searched["val_mse"])}
    search_epochs = search_hp.epochs * (1 + ("val_mse_relu" in (refit or {})))
    if search_only:
        return model, {**searched, "epochs": search_epochs,
                       "retrain": {"search_epochs": search_hp.epochs, "snapped": {},
                                   "headed": {}, "whole": {}, "mirrored": {},
                                   "val_mse_search": searched["val_mse"],
                                   "val_mse_retrain": None,
                                   "search_snap": searched["snap"], "kept": False,
                                   "search_refit": refit, "last_activation": None,
                                   "conjugates": [], "conjugated": [], "classic_r2": None,
                                   "classic_ends": [], "classic_end": None},
                       "candidates": {"models": candidates, "kept": "search"}}
    tolerance = math.inf if hp.retrain_tolerance is None else hp.retrain_tolerance
    last = (hp.last_activation if hp.retrain_last_activation is None
            else hp.retrain_last_activation)
    retrain_hp = dataclasses.replace(
        hp, snap=0.0, snap_parts=False, pool_prior=0.0, pool_prior_start=0.0, snap_search=0,
        pool_split=0.0, retrain=0.0, retrain_tolerance=None, retrain_last_activation=None,
        retrain_conjugates=False, retrain_first_ending=True, conjugate_margin=1.0,
        retrain_classic_r2=None, select_channels_retrain=True,
        retrain_heading=None, retrain_heading_exponent=False, retrain_whole=False,
        retrain_mirror=False, retrain_select_activation=False, select_on="val",
        select_relu_margin=1.0, search_refit_r2=None)
    trained = copy.deepcopy(model.state_dict())
    targets = ("max", "min") if hp.retrain_heading_exponent else COMPARED
    headed = ({} if hp.retrain_heading is None
              else head_parts_(model, start, hp.retrain_heading, targets))
    # Every live channel (a dead one has no output to compare: it is set part-wise).
    whole = (snap_to_classic(model, math.inf,
                             run=lambda: predict(model, splits["val"], info.level,
                                                 hp.eval_batch_size))
             if hp.retrain_whole else {})
    snapped = snap_parts_(model, tolerance)
    # Parts that pooled only zeros in the search (the negative part of a channel fed by a
    # softplus- or ReLU-ended MLP) mirror their sibling: the channel is then that classic
    # pooling of its whole input when the retrain feeds it signed values.
    # (A model whose learnable poolings are not GNPs has no part to mirror.)
    mirrored = (mirror_idle_parts_(model, lambda: predict(model, splits["train"], info.level,
                                                          hp.eval_batch_size))
                if hp.retrain_mirror and _learnable(model) else {})
    search_val = searched["val_mse"]
    # The other ending: linear after ReLU, ReLU after linear or softplus.
    lasts = ([last, last is not True][0 if hp.retrain_first_ending else 1:]
             if hp.retrain_select_activation else [last])
    # With retrain_conjugates, ReLU-ended retrains of the sign conjugates: each set of the
    # GNP modules whose conjugate differs from them (max <-> min), conjugated together.
    conjugates = conjugate_sets(model) if hp.retrain_conjugates else []
    plan = ([(end, ending_name(end), ()) for end in lasts]
            + [(True, f"{CONJUGATE_PREFIX}{k}", tuple((m, "conjugate") for m in names))
               for k, names in enumerate(conjugates, start=1)])
    retrains = []

    def retrain(end: bool | str, name: str, actions: tuple[tuple[str, str], ...],
                alone: bool) -> None:
        end_hp = dataclasses.replace(retrain_hp, last_activation=end)
        source = model
        if actions:
            source = copy.deepcopy(model)
            apply_plan_(source, actions)
        torch.manual_seed(seed)
        fresh = build_model(info, config, end_hp)
        transfer_pooling_(source, fresh)
        suffix = "" if alone else "/" + name
        retrains.append((fresh, fit(fresh, splits["train"], splits["val"], info.level, end_hp,
                                    seed, desc + suffix, position, progress)))
        candidates[name] = candidate_scores(
            fresh, splits, info.level, hp.eval_batch_size, retrains[-1][1]["val_mse"])

    for end, name, actions in plan:
        # (With classic ends possible after it, even a lone retrain is named.)
        retrain(end, name, actions, len(plan) == 1 and hp.retrain_classic_r2 is None)
    # With retrain_classic_r2, where no retrain explains that share of the validation
    # variance: ReLU-ended retrains with the modules the search left off max and min at
    # max and at min (and the others as searched or conjugated).
    classic_r2 = None
    classic = []
    if hp.retrain_classic_r2 is not None:
        lowest = _lowest_loss(fit_record["val_mse"] for _, fit_record in retrains)
        classic_r2 = r_squared(lowest, splits["val"], info.level, hp.eval_batch_size)
        if not classic_r2 >= hp.retrain_classic_r2:
            classic = classic_end_plans(model)
            for k, actions in enumerate(classic, start=1):
                plan.append((True, f"{CLASSIC_END_PREFIX}{k}", actions))
                retrain(True, plan[-1][1], actions, False)
    model.load_state_dict(trained)      # what is kept if the retrain does worse
    # The retrain with the lower loss (the first on a tie), kept unless the search did
    # better by more than SNAP_SLACK (choose_model).
    choice = choose_model(candidates, hp.select_on, hp.select_relu_margin,
                          hp.conjugate_margin)
    names = [name for _, name, _ in plan]
    competing = _without_weak_conjugates(candidates, hp.conjugate_margin, hp.select_on)
    best = names.index(_lowest(_with_relu_margin(competing, hp.select_relu_margin),
                               [n for n in names if n in competing], hp.select_on))
    fresh, retrained = retrains[best]
    kept = choice != "search"
    record = retrained if kept else searched
    activation = (None if len(plan) == 1 else
                  {**{f"val_mse_{name}": fit_record["val_mse"]
                      for (_, name, _), (_, fit_record) in zip(plan, retrains, strict=True)},
                   "kept": ending_name(plan[best][0])})
    record = {**record, "history": searched["history"] + retrained["history"],
              "epochs": search_epochs + len(plan) * hp.epochs,
              "retrain": {"search_epochs": search_hp.epochs, "snapped": snapped,
                          "headed": headed, "whole": whole, "mirrored": mirrored,
                          "val_mse_search": search_val, "val_mse_retrain": retrained["val_mse"],
                          "search_snap": searched["snap"], "kept": kept,
                          "search_refit": refit,
                          "last_activation": activation,
                          "conjugates": [list(names) for names in conjugates],
                          "conjugated": ([m for m, action in plan[best][2]
                                          if action == "conjugate"] if kept else []),
                          "classic_r2": classic_r2,
                          "classic_ends": [[list(pair) for pair in actions]
                                           for actions in classic],
                          "classic_end": ([list(pair) for pair in plan[best][2]]
                                          if kept and plan[best][1].startswith(
                                              CLASSIC_END_PREFIX) else None)},
              "candidates": {"models": candidates, "kept": choice}}
    if kept:
        record["best_epoch"] += search_hp.epochs
    return (fresh if kept else model), record


def r_squared(val_mse: float, dataset: Dataset, level: str, batch_size: int) -> float:
    """``1 - val_mse / variance`` of ``dataset``'s targets (the scored ones: a node task's
    masked nodes), the variance per output channel (population, float64) and averaged:
    the share of the targets' variance that a model with validation MSE ``val_mse``
    explains (1: exact; 0: no better than predicting the mean; NaN where the targets do
    not vary)."""
    target = torch.cat([scored_targets(batch, level)
                        for batch in DataLoader(dataset, batch_size=batch_size)]).double()
    variance = float(target.var(dim=0, unbiased=False).mean())
    return 1.0 - val_mse / variance if variance > 0 else math.nan


def _train(info: TaskInfo, splits: dict[str, Dataset], config: PoolingConfig, hp: HParams,
           seed: int, desc: str, position: int, progress: bool, search_only: bool = False):
    # Build from `seed` and train (search and retrain where configured; the search alone
    # with `search_only`); returns the model, its training record, its GNP parameters at
    # initialisation and its dead channels then.
    torch.manual_seed(seed)
    model = build_model(info, config, hp)
    initial = {m["name"]: m for m in gnp_parameters(model)}
    dead_before = dead_channels(model, splits["train"], info.level, hp.eval_batch_size)
    # A model without a learnable pooling has nothing to search: it trains once.
    if hp.retrain and pooling_parameters(model):
        model, record = search_and_retrain(info, config, hp, model, splits, seed, desc,
                                           position, progress, search_only)
    else:
        record = fit(model, splits["train"], splits["val"], info.level, hp, seed, desc,
                     position, progress)
    return model, record, initial, dead_before


def denormals_flushed() -> bool:
    """Whether float arithmetic on this thread's CPU flushes subnormal floats to zero now
    (:func:`torch.set_flush_denormal`), read off ``1e-39 * 1`` in float32."""
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(1.0)) == 0.0


@contextlib.contextmanager
def flush_denormal(enabled: bool):
    """With ``enabled``, run the block with subnormal floats (float32 and float64) flushed
    to zero on the CPU (:func:`torch.set_flush_denormal`: read and written as 0) and
    restore the previous state afterwards; without, change nothing. The flag belongs to
    the calling thread: torch's other intra-op threads (and the OpenMP threads of GNP's
    kernels) keep theirs, so with ``torch.get_num_threads() > 1`` only part of the work is
    flushed, and a ``UserWarning`` says so (the benchmark's workers run one thread each).
    Where the processor cannot flush, a ``UserWarning`` says so and the block runs
    unflushed."""
    if not enabled or denormals_flushed():
        yield
        return
    if not torch.set_flush_denormal(True):
        warnings.warn("flush_denormal=True: torch.set_flush_denormal is not supported on "
                      "this CPU; the run goes on with subnormal floats", UserWarning,
                      stacklevel=3)
        yield
        return
    if torch.get_num_threads() > 1:
        warnings.warn(f"flush_denormal=True flushes subnormal floats on the calling thread "
                      f"only; torch runs {torch.get_num_threads()} threads, whose others "
                      "keep them (torch.set_num_threads(1) flushes everything)", UserWarning,
                      stacklevel=3)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def run(info: TaskInfo, splits: dict[str, Dataset], config: PoolingConfig, hp: HParams,
        seed: int, *, desc: str = "", position: int = 0,
        progress: bool = True) -> dict[str, Any]:
    """Build, train and evaluate one model (with ``hp.select_channels``, two: the one
    :func:`choose_model` keeps, by the loss ``hp.select_on`` names, is evaluated; with
    ``hp.retrain``, each searched and retrained (the one with a pooling per channel only
    searched with ``hp.select_channels_retrain=False``), with
    ``hp.retrain_select_activation`` the first retrained twice and, with
    ``hp.retrain_conjugates``, once more for each set of its conjugated GNP modules, and with
    ``hp.retrain_classic_r2`` where its retrains fit badly once more for each classic-end
    plan; see :func:`search_and_retrain`); returns metrics, learned
    GNP parameters, per-size MAPE of both test splits and, for a run that trained more than one
    model, ``"candidates"``: every model's :func:`candidate_scores`, the name kept and
    ``hp.select_on`` (``None`` for a run that trained one model). With ``hp.flush_denormal`` all
    of it runs with subnormal floats flushed to zero (:func:`flush_denormal`)."""
    with flush_denormal(hp.flush_denormal):
        return _run(info, splits, config, hp, seed, desc, position, progress)


def _run(info: TaskInfo, splits: dict[str, Dataset], config: PoolingConfig, hp: HParams,
         seed: int, desc: str, position: int, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    model, record, initial, dead_before = _train(info, splits, config, hp, seed, desc,
                                                 position, progress)
    selection = None
    candidates = ({**record["candidates"], "on": hp.select_on} if "candidates" in record
                  else None)
    if hp.select_channels and any(isinstance(m, GNPAggregation) and m.learn
                                  for m in model.modules()):
        # (Its search and retrain, if any, are chosen between as the shared model's.)
        per_channel = dataclasses.replace(hp, select_channels=False, gnp_per_channel=True,
                                          select_channels_retrain=True,
                                          retrain_select_activation=False,
                                          retrain_first_ending=True,
                                          retrain_conjugates=False, conjugate_margin=1.0,
                                          retrain_classic_r2=None,
                                          select_relu_margin=1.0,
                                          select_on=hp.select_on if hp.retrain else "val")
        other = _train(info, splits, config, per_channel, seed, desc + "/channels",
                       position, progress, search_only=not hp.select_channels_retrain)
        both = {}
        for prefix, (trained, trained_record) in (("shared", (model, record)),
                                                  ("per_channel", (other[0], other[1]))):
            own = trained_record.get("candidates") or {
                "models": {"model": candidate_scores(trained, splits, info.level,
                                                     hp.eval_batch_size,
                                                     trained_record["val_mse"])}}
            both.update({f"{prefix}/{n}": v for n, v in own["models"].items()})
        kept_name = choose_model(both, hp.select_on, hp.select_relu_margin,
                                 hp.conjugate_margin)
        candidates = {"models": both, "kept": kept_name, "on": hp.select_on}
        selection = {"val_mse_shared": record["val_mse"],
                     "val_mse_per_channel": other[1]["val_mse"],
                     "kept": kept_name.split("/")[0]}
        epochs = record.get("epochs", hp.epochs) + other[1].get("epochs", hp.epochs)
        if selection["kept"] == "per_channel":
            model, record, initial, dead_before = other
        record = {**record, "epochs": epochs}
    dead_after = dead_channels(model, splits["train"], info.level, hp.eval_batch_size)
    metrics: dict[str, Any] = {"best_epoch": record["best_epoch"], "val_mse": record["val_mse"],
                               "epochs": record.get("epochs", hp.epochs)}
    bins: dict[str, Any] = {}
    # "tune": extrapolation-distributed samples from another data seed, for choosing
    # recipes without looking at the reported test splits.
    # The kept model's validation and tuning MAPEs are among its candidate scores already.
    scored = candidates["models"][candidates["kept"]] if candidates is not None else {}
    for split in ("val", "test_interp", "test_extrap", "tune"):
        if split not in splits:
            continue
        if f"mape_{split}" in scored:
            metrics[f"mape_{split}"] = scored[f"mape_{split}"]
            continue
        pred, target, size = predict(model, splits[split], info.level, hp.eval_batch_size)
        metrics[f"mape_{split.removeprefix('test_')}"] = mape(pred, target)
        if split.startswith("test_"):
            bins[split.removeprefix("test_")] = size_bins(pred, target, size, hp.size_bins)
    learned = gnp_parameters(model)
    snap = record["snap"]
    for module in learned:
        if selection is not None:
            module["selection"] = selection
        for key in ("p_unit", "beta", "p_neg_unit", "beta_neg"):
            module[f"{key}_init"] = initial[module["name"]][key]
        if snap is not None and module["name"] in snap["modules"]:
            module["snap"] = {"to": snap["modules"][module["name"]], "kept": snap["kept"],
                              "epoch": snap["epoch"], "val_mse_before": snap["val_mse_before"],
                              "val_mse_after": snap["val_mse_after"]}
        if snap is not None and module["name"] in snap.get("search", {}):
            module["snap_search"] = snap["search"][module["name"]]
        retrain = record.get("retrain")
        if retrain is not None:
            # The search's snap (inside its epochs), then the part-wise one before the
            # retrain; the parameters above are the kept model's.
            first = retrain["search_snap"]
            module["retrain"] = {
                "to": retrain["snapped"].get(module["name"]), "kept": retrain["kept"],
                "headed": retrain["headed"].get(module["name"]),
                "whole": retrain["whole"].get(module["name"]),
                "mirrored": retrain.get("mirrored", {}).get(module["name"]),
                "conjugates": retrain.get("conjugates", []),
                "conjugated": module["name"] in retrain.get("conjugated", []),
                "classic_r2": retrain.get("classic_r2"),
                "classic_ends": retrain.get("classic_ends", []),
                "classic_end": dict(retrain.get("classic_end") or []).get(module["name"]),
                "search_epochs": retrain["search_epochs"],
                "val_mse_search": retrain["val_mse_search"],
                "search_refit": retrain.get("search_refit"),
                "val_mse_retrain": retrain["val_mse_retrain"],
                "last_activation": retrain["last_activation"],
                "search_snap": (None if first is None or module["name"] not in first["modules"]
                                else {"to": first["modules"][module["name"]],
                                      "kept": first.get("kept")})}
    return {
        "metrics": metrics, "bins": bins, "history": record["history"], "gnp": learned,
        "dead_channels": {name: {"before": dead_before[name], "after": dead_after[name]}
                          for name in dead_before},
        "candidates": candidates,
        "num_params": sum(p.numel() for p in model.parameters()),
        "train_seconds": time.perf_counter() - start,
    }
