"""FASet: two-stage training of a base network and its learnable set aggregator."""

from __future__ import annotations

import functools
import itertools
import pickle
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from .checkpoint import atomic_save, get_rng_state, plain, set_rng_state
from .multiview import (
    SetSizes,
    check_set_sizes,
    predict_multiview,
    single_view_batch,
    subset_batch,
)

Selection = Sequence[str] | Callable[[str, torch.nn.Parameter], bool] | torch.nn.Module | None
OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
History = dict[int, list[dict[str, Any]]]

_FORMAT = "gnpool.training.faset/1"


def default_aggregator_types() -> tuple[type, ...]:
    """The module types whose parameters FASet treats as the aggregator by default."""
    from ..aggr import AttSetsAggregation, GNPAggregation
    from ..nn import AttSets
    return (AttSets, GNPAggregation, AttSetsAggregation)


def aggregator_parameter_names(model: torch.nn.Module, aggregator: Selection = None) -> list[str]:
    """Names of the aggregator's parameters in ``model`` (see :class:`FASet`)."""
    named = dict(model.named_parameters())
    if aggregator is None:
        types = default_aggregator_types()
        owned = {id(p) for m in model.modules() if isinstance(m, types) for p in m.parameters()}
        names = [n for n, p in named.items() if id(p) in owned]
    elif isinstance(aggregator, torch.nn.Module):
        owned = {id(p) for p in aggregator.parameters()}
        names = [n for n, p in named.items() if id(p) in owned]
    elif isinstance(aggregator, str):
        raise TypeError(f"aggregator must be a list of parameter names, got the string "
                        f"{aggregator!r}; use [{aggregator!r}]")
    elif callable(aggregator):
        names = [n for n, p in named.items() if aggregator(n, p)]
    else:
        wanted = list(aggregator)
        unknown = [n for n in wanted if n not in named]
        if unknown:
            raise ValueError(f"aggregator names {unknown} are not parameters of the model; "
                             f"its parameters are {list(named)}")
        names = [n for n in named if n in set(wanted)]
    if not names:
        raise ValueError(f"aggregator selects no parameter of the model (selection: "
                         f"{_describe_selection(aggregator)}); name the aggregator's "
                         f"parameters, pass a predicate or the aggregator module")
    if len(names) == len(named):
        raise ValueError(f"aggregator selects every parameter of the model ({len(names)}), "
                         f"leaving no base network for stage 1")
    return names


def _describe_selection(aggregator: Selection) -> str:
    if aggregator is None:
        return "instances of " + ", ".join(t.__name__ for t in default_aggregator_types())
    if isinstance(aggregator, torch.nn.Module):
        return f"a {type(aggregator).__name__} module not inside the model or without parameters"
    return repr(aggregator)


class FASet:
    r"""Feature-attention separate training: the base network first, then the aggregator.

    Stage 1 trains every parameter except the aggregator's with each view as its own
    one-element set, where AttSets and GNP are the identity. Stage 2 freezes the base
    network (``requires_grad=False`` and eval mode, so batch-norm statistics and dropout
    are frozen too) and trains only the aggregator, in train mode, on random subsets of
    the views whose sizes are drawn from ``set_sizes``. Each stage has its own optimizer.

    The default batch layout is ``(views, target)`` or a dict with ``views``
    ``[B, V, ...]``, ``target`` and an optional boolean ``mask`` ``[B, V]``; the model
    is called as ``model(views)`` or ``model(views, mask=mask)``. Other layouts (graphs)
    plug in through ``single_view_batch``, ``subset_batch`` and ``predict``.

    Args:
        model: the network; its aggregator's parameters must be selectable.
        loss_fn: ``loss_fn(output, target)`` returning a scalar.
        aggregator: the aggregator's parameters: a list of parameter names, a predicate
            ``(name, parameter) -> bool``, a submodule, or ``None`` for every parameter
            of the :class:`gnpool.nn.AttSets`, :class:`gnpool.GNPAggregation` and
            ``AttSetsAggregation`` modules in ``model``.
        stage1_epochs, stage2_epochs: epochs of each stage (the released AttSets code
            uses 31 and 19).
        set_sizes: stage-2 set sizes, an int or an inclusive range ``(low, high)``. With
            the default batch layout ``high`` may not exceed the number of views ``V`` of
            the batches: the first batch of every epoch is checked, so a ``set_sizes``
            too large for the data raises ``ValueError`` before anything is trained
            (samples with fewer present views, masked, keep all of them).
        per_sample_sizes: draw a size per sample (sets of mixed sizes, with a mask)
            instead of one per batch.
        stage1_optimizer, stage2_optimizer: ``factory(parameters) -> Optimizer``
            (default: Adam with lr 1e-4).
        single_view_batch: ``f(batch) -> batch`` of one-view sets for stage 1.
        subset_batch: ``f(batch, sizes, generator) -> batch`` for stage 2, with ``sizes``
            a :class:`~gnpool.training.multiview.SetSizes` (``sizes(n)`` draws ``n``
            sizes) and ``generator`` the CPU generator to pick views with.
        predict: ``f(model, batch) -> (output, target)``.
        device: where to train (default: where the model is).
        progress: show progress bars on stderr.
        seed: seed of the generator drawing stage-2 subsets (default: drawn from
            ``torch``'s global generator when :meth:`fit` starts).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[Any, Any], Tensor],
                 aggregator: Selection = None, *, stage1_epochs: int = 31,
                 stage2_epochs: int = 19, set_sizes: int | tuple[int, int] = (1, 24),
                 per_sample_sizes: bool = False, stage1_optimizer: OptimizerFactory | None = None,
                 stage2_optimizer: OptimizerFactory | None = None,
                 single_view_batch: Callable[[Any], Any] = single_view_batch,
                 subset_batch: Callable[[Any, SetSizes, torch.Generator], Any] = subset_batch,
                 predict: Callable[[torch.nn.Module, Any], tuple[Any, Any]] = predict_multiview,
                 device: torch.device | str | None = None, progress: bool = True,
                 seed: int | None = None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        for name, value in (("stage1_epochs", stage1_epochs), ("stage2_epochs", stage2_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if isinstance(set_sizes, int):
            set_sizes = (set_sizes, set_sizes)
        if not isinstance(set_sizes, (tuple, list)) or len(set_sizes) != 2:
            raise ValueError(f"set_sizes must be an int or a (low, high) pair, got {set_sizes!r}")
        low, high = set_sizes
        self.generator = torch.Generator()
        self.set_sizes = SetSizes(low, high, per_sample_sizes, self.generator)
        self.model, self.loss_fn = model, loss_fn
        self.aggregator_names = aggregator_parameter_names(model, aggregator)
        self.epochs = {1: stage1_epochs, 2: stage2_epochs}
        adam = functools.partial(torch.optim.Adam, lr=1e-4)
        self.optimizer_factories = {1: stage1_optimizer or adam, 2: stage2_optimizer or adam}
        self.single_view_batch, self.subset_batch = single_view_batch, subset_batch
        self.predict, self.progress, self.seed = predict, progress, seed
        self.device = torch.device(device) if device is not None else None
        chosen = set(self.aggregator_names)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.stage_parameters = {
            1: [n for n, _ in model.named_parameters() if n not in chosen and n in trainable],
            2: [n for n in self.aggregator_names if n in trainable]}
        for stage, what in ((1, "base network"), (2, "aggregator")):
            if not self.stage_parameters[stage]:
                raise ValueError(f"stage {stage} has nothing to train: every parameter of the "
                                 f"{what} has requires_grad=False")
        self.aggregator_modules = self._aggregator_modules(chosen)

    def _aggregator_modules(self, chosen: set[str]) -> list[torch.nn.Module]:
        """Modules all of whose parameters belong to the aggregator: in train mode in stage 2."""
        found = []
        for prefix, module in self.model.named_modules():
            names = [n for n, _ in module.named_parameters(prefix=prefix)]
            if names and all(n in chosen for n in names):
                found.append(module)
        return found

    def _set_mode(self, stage: int) -> None:
        self.model.train(stage == 1)
        if stage == 2:
            for module in self.aggregator_modules:
                module.train()

    def fit(self, train_data: Iterable, *, validate: Callable[[torch.nn.Module], Any] | None = None,
            callbacks: Sequence[Callable[[int, int, dict[str, Any]], Any]] = (),
            checkpoint: str | None = None, checkpoint_every: int | None = None,
            resume: bool = False) -> History:
        """Run both stages (or what remains of them) and return the history.

        Args:
            train_data: an iterable of batches, iterated once per epoch (a DataLoader).
            validate: ``validate(model)`` after each epoch, in eval mode without
                gradients; its result goes to the logs as ``"val"`` (``None`` without it).
            callbacks: ``callback(stage, epoch, logs)`` after each epoch (once its
                checkpoint is written), with ``logs = {"epoch", "loss", "val"}``; ``loss``
                is the epoch's mean training loss.
            checkpoint: file written atomically after every epoch: model, both optimizers,
                stage, epoch, history and random states.
            checkpoint_every: also write it every this many batches.
            resume: continue from ``checkpoint`` (which must exist) where it stopped.

        Returns:
            ``{1: [logs per epoch], 2: [logs per epoch]}``.
        """
        if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(
                checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
        if (resume or checkpoint_every) and checkpoint is None:
            raise ValueError("resume and checkpoint_every need a checkpoint path, got "
                             "checkpoint=None")
        model = self.model
        device = self.device or next(model.parameters()).device
        model.to(device)
        modes = [(m, m.training) for m in model.modules()]
        flags = [(p, p.requires_grad) for p in model.parameters()]
        run = _Run(self, device, checkpoint, checkpoint_every)
        if resume:
            run.load()
        else:
            seed = self.seed if self.seed is not None else int(torch.randint(2**62, ()).item())
            self.generator.manual_seed(seed)
        try:
            for stage in (1, 2):
                if stage >= run.stage:
                    run.train_stage(stage, train_data, validate, callbacks)
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
            for m, mode in modes:
                m.training = mode
        return run.history


class _Run:
    """The position of one fit (stage, epoch, batch) and what a checkpoint holds."""

    def __init__(self, trainer: FASet, device: torch.device, path: str | None,
                 every: int | None) -> None:
        self.t, self.device, self.path, self.every = trainer, device, path, every
        self.stage, self.epoch, self.batch = 1, 0, 0
        self.history: History = {1: [], 2: []}
        self.optimizers: dict[int, Any] = {1: None, 2: None}  # live optimizers or saved states
        # float64 keeps long epochs' sums exact enough (MPS has no float64).
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.loss_sum = torch.zeros((), dtype=dtype, device=device)
        self.epoch_rng: dict | None = None  # random state when the current epoch began
        self.rng: dict | None = None  # random state of a loaded checkpoint

    def load(self) -> None:
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
            first = (str(error).splitlines() or [""])[0]
            raise ValueError(f"checkpoint {self.path!r} cannot be read as a FASet "
                             f"checkpoint ({type(error).__name__}: {first}); pass another "
                             "checkpoint, or resume=False to start over") from error
        found = state.get("format") if isinstance(state, dict) else None
        if found != _FORMAT:
            raise ValueError(f"checkpoint {self.path!r} is not a FASet checkpoint "
                             f"(format {found!r}, expected {_FORMAT!r})")
        if state["aggregator"] != self.t.aggregator_names:
            raise ValueError(f"checkpoint {self.path!r} was written for the aggregator "
                             f"parameters {state['aggregator']}, but this FASet selects "
                             f"{self.t.aggregator_names}")
        self.t.model.load_state_dict(state["model"])
        self.stage, self.epoch, self.batch = state["stage"], state["epoch"], state["batch"]
        self.history = state["history"]
        self.optimizers = dict(state["optimizers"])
        self.loss_sum = state["loss_sum"].to(self.device, self.loss_sum.dtype)
        self.epoch_rng = state["epoch_rng"]
        self.rng = state["rng"]
        set_rng_state(self.rng, self.t.generator)

    def save(self) -> None:
        optimizers = {s: o.state_dict() if isinstance(o, torch.optim.Optimizer) else o
                      for s, o in self.optimizers.items()}
        atomic_save({
            "format": _FORMAT, "stage": self.stage, "epoch": self.epoch, "batch": self.batch,
            "aggregator": self.t.aggregator_names, "model": self.t.model.state_dict(),
            "optimizers": optimizers, "history": self.history, "loss_sum": self.loss_sum.cpu(),
            "epoch_rng": self.epoch_rng, "rng": get_rng_state(self.t.generator),
        }, self.path)

    def train_stage(self, stage: int, data: Iterable, validate, callbacks) -> None:
        t, model = self.t, self.t.model
        if stage != self.stage:
            self.stage, self.epoch, self.batch = stage, 0, 0
        names = set(t.stage_parameters[stage])
        params = []
        for name, p in model.named_parameters():
            p.requires_grad_(name in names)
            if name in names:
                params.append(p)
        optimizer = t.optimizer_factories[stage](params)
        if self.optimizers[stage] is not None:
            optimizer.load_state_dict(self.optimizers[stage])
        self.optimizers[stage] = optimizer
        epochs = t.epochs[stage]
        bar = tqdm(total=epochs, initial=min(self.epoch, epochs), desc=f"FASet stage {stage}",
                   unit="epoch", file=sys.stderr, disable=not t.progress)
        with bar:
            while self.epoch < epochs:
                logs = self._epoch(stage, data, optimizer, validate)
                bar.update()
                bar.set_postfix(loss=f"{logs['loss']:.4g}")
                for callback in callbacks:
                    callback(stage, logs["epoch"], logs)

    def _epoch(self, stage: int, data: Iterable, optimizer, validate) -> dict[str, Any]:
        t, model = self.t, self.t.model
        t._set_mode(stage)
        if self.batch:
            # Mid-epoch resume: replay the loader from the epoch's start (same shuffle),
            # skip the batches already trained on, then continue from the saved state.
            set_rng_state(self.epoch_rng, t.generator)
            batches = iter(data)
            for _ in itertools.islice(batches, self.batch):
                pass
            set_rng_state(self.rng, t.generator)
        else:
            self.epoch_rng = get_rng_state(t.generator)
            self.loss_sum.zero_()
            batches = iter(data)
        try:
            total = len(data)  # type: ignore[arg-type]
        except TypeError:
            total = None
        desc = f"stage {stage} epoch {self.epoch + 1}/{t.epochs[stage]}"
        # With the default layout, a set_sizes the data cannot serve fails at once, in
        # stage 1 already, rather than after it.
        unchecked = t.subset_batch is subset_batch
        for batch in tqdm(batches, total=total, initial=self.batch, desc=desc, leave=False,
                          file=sys.stderr, disable=not t.progress):
            if unchecked:
                check_set_sizes(batch, t.set_sizes)
                unchecked = False
            batch = _to_device(batch, self.device)
            batch = (t.single_view_batch(batch) if stage == 1
                     else t.subset_batch(batch, t.set_sizes, t.generator))
            output, target = t.predict(model, batch)
            loss = t.loss_fn(output, target)
            if not isinstance(loss, Tensor) or loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar tensor, got "
                                 f"{tuple(loss.shape) if isinstance(loss, Tensor) else loss!r}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.loss_sum += loss.detach().to(self.loss_sum.dtype)
            self.batch += 1
            if self.every and self.batch % self.every == 0:
                self.save()
        if self.batch == 0:
            raise ValueError(f"train_data yielded no batch in stage {stage}, epoch {self.epoch}")
        logs: dict[str, Any] = {"epoch": self.epoch, "loss": self.loss_sum.item() / self.batch,
                                "val": None}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                logs["val"] = plain(validate(model), "validate's result")
            t._set_mode(stage)
        self.history[stage].append(logs)
        self.epoch, self.batch = self.epoch + 1, 0
        if self.path is not None:
            self.save()
        return logs


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        items = [_to_device(v, device) for v in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    to = getattr(batch, "to", None)
    return to(device) if callable(to) else batch
