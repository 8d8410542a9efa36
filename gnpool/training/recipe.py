"""The benchmark's GNP recipe for any model: search, then retrain.

Train a model with learnable GNP poolings (the *search*), set each pooling part to a
classic point (sum, mean, max or min: :func:`head_parts_`, :func:`~gnpool.training.snap_parts_`,
:func:`~gnpool.training.mirror_idle_parts_`), then train freshly initialised copies of the
model with those poolings frozen (the *retrains*: with linear- and ReLU-ended MLPs, and
ReLU-ended with the poolings' sign conjugates, :func:`conjugate_sets`, and, where they fit
badly, at the classic ends of the GNPs left off max and min, :func:`classic_end_plans`), and
keep one model by validation loss (:func:`choose_model`). :func:`search_then_retrain` runs
it all with a model builder and a training function of the caller's; ``gnpool.bench`` runs
the same steps with its own datasets and records (``HParams.retrain`` and the settings after
it).
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.parameter import is_lazy

from ..aggr import GNPAggregation
from ..aggr.gnp import COMPARED, WHOLE_REDUCTIONS
from .optim import transfer_pooling_
from .snap import PART_CLASSICS, _learnable, _nearest, mirror_idle_parts_, snap_parts_

#: A retrain is kept unless its validation loss is more than this factor above the
#: search's (:func:`choose_model`); the benchmark's snapping (``HParams.snap``) keeps a
#: snapped model within it of the best before snapping.
SNAP_SLACK = 0.05


def _selection_loss(scores: dict[str, float] | None, on: str) -> float:
    value = (scores or {}).get("val_mse" if on == "val" else "val_mse_large")
    return math.nan if value is None else float(value)


def _lower(challenger: float, holder: float) -> bool:
    # Whether `challenger` is a lower loss than `holder`; NaN never wins, a finite loss
    # beats NaN.
    if math.isnan(challenger):
        return False
    return math.isnan(holder) or challenger < holder


def _lowest_loss(losses: Any) -> float:
    # The lowest of `losses` (NaN only where all are NaN), as the classic ends read it.
    return min(losses, key=lambda v: (math.isnan(v), v))


def _lowest(candidates: dict[str, dict[str, float]], names: list[str], on: str) -> str:
    # The lowest loss among `names`, the first on a tie; NaN never wins.
    return min(names, key=lambda n: (math.isnan(_selection_loss(candidates[n], on)),
                                     _selection_loss(candidates[n], on)))


#: The model names :func:`choose_model` knows: a search, a retrain by its MLP ending, a model
#: trained once; and :data:`CONJUGATE_PREFIX` or :data:`CLASSIC_END_PREFIX` followed by a
#: number from 1.
CANDIDATE_NAMES = ("search", "linear", "relu", "softplus", "model")
#: ``HParams.retrain_conjugates``: the name of the ReLU-ended retrain of the k-th set of
#: :func:`conjugate_sets` is this prefix and k (``"relu-conjugate-1"``, ...).
CONJUGATE_PREFIX = "relu-conjugate-"
#: ``HParams.retrain_classic_r2``: the name of the ReLU-ended retrain of the k-th plan of
#: :func:`classic_end_plans` is this prefix and k (``"relu-classic-1"``, ...).
CLASSIC_END_PREFIX = "relu-classic-"
#: At most this many learnable GNP modules for ``HParams.retrain_conjugates``, whose
#: conjugates are retrained in every combination (up to ``2 ** modules - 1`` retrains);
#: :func:`conjugate_sets` raises beyond it.
MAX_CONJUGATED_MODULES = 3


def _base_name(name: str) -> str:
    # "relu" for a conjugate or classic-end retrain (CONJUGATE_PREFIX or CLASSIC_END_PREFIX
    # and k), else the name itself.
    if _is_variant(name):
        return "relu"
    return name


def _is_variant(name: str) -> bool:
    # Whether `name` (without prefix) is a conjugate or a classic-end retrain's.
    return any(re.fullmatch(re.escape(prefix) + "[1-9][0-9]*", name)
               for prefix in (CONJUGATE_PREFIX, CLASSIC_END_PREFIX))


def _check_conjugable(model: torch.nn.Module, needs: str = "conjugates need",
                      remedy: str = "share one GNP between the message-passing layers "
                      "(MessageMLPGNN(share_aggr=True)) or leave the conjugates out "
                      "(search_then_retrain(conjugates=False))") -> None:
    # At most MAX_CONJUGATED_MODULES learnable GNP modules (their conjugates are retrained
    # in every combination); `needs` and `remedy` name the caller's setting and ways out.
    names = list(_learnable(model))
    if len(names) > MAX_CONJUGATED_MODULES:
        raise ValueError(f"{needs} at most {MAX_CONJUGATED_MODULES} learnable GNP modules, "
                         f"this model has {len(names)} ({', '.join(names)}): {remedy}")


@torch.no_grad()
def conjugate_sets(model: torch.nn.Module) -> list[tuple[str, ...]]:
    """The sets of ``model``'s learnable GNP modules to conjugate
    (:meth:`gnpool.GNPAggregation.conjugate_`, ``x -> -GNP(-x)``) for
    ``HParams.retrain_conjugates``: every non-empty combination, smallest first and in
    module order, of the modules that the conjugation changes (max and min trade places;
    sum and mean are their own conjugates).

    Why: ``min(x) = -max(-x)``. A search whose message functions can change sign fits its
    training data as well with max as with min (and with max where the labels call for
    min), so which of the two it ends at says little; a retrain of each and the
    validation loss tell them apart.

    Returns a list of tuples of module names (qualified, as ``named_modules`` gives
    them); empty when no module's conjugate differs. Raises ``ValueError`` when the model
    has more than :data:`MAX_CONJUGATED_MODULES` learnable GNP modules (the retrains grow
    as ``2 ** n``)."""
    _check_conjugable(model)
    differ = [name for name, module in _learnable(model).items()
              if not (torch.equal(module.p_unit.clamp(-1, 1), module.p_neg_unit.clamp(-1, 1))
                      and torch.equal(module.beta, module.beta_neg))]
    return [names for size in range(1, len(differ) + 1)
            for names in itertools.combinations(differ, size)]


#: What a plan of :func:`classic_end_plans` does to one GNP module: set it exactly to the
#: max or the min of its input (:meth:`gnpool.GNPAggregation.snap_`), conjugate it
#: (:meth:`gnpool.GNPAggregation.conjugate_`) or leave it as searched.
CLASSIC_END_ACTIONS = ("max", "min", "conjugate", "searched")


def _at_max_or_min(module: GNPAggregation) -> bool:
    # Whether every channel of `module` is exactly the max or the min of its whole input:
    # its parts at the PART_CLASSICS points WHOLE_REDUCTIONS pairs into a max or a min
    # (p_unit read clamped).
    parts = torch.stack([module.p_unit.clamp(-1, 1), module.beta,
                         module.p_neg_unit.clamp(-1, 1), module.beta_neg], dim=-1)
    at = torch.zeros(parts.shape[:-1], dtype=torch.bool, device=parts.device)
    for (positive, negative), whole in WHOLE_REDUCTIONS.items():
        if whole in ("max", "min"):
            point = parts.new_tensor([*PART_CLASSICS[positive], *PART_CLASSICS[negative]])
            at |= (parts == point).all(-1)
    return bool(at.all())


def _check_module(model: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


@torch.no_grad()
def classic_end_plans(model: torch.nn.Module) -> list[tuple[tuple[str, str], ...]]:
    """The poolings to retrain at when a search left GNP modules off max and min
    (``HParams.retrain_classic_r2``, :func:`search_then_retrain`'s ``classic_above``):
    every assignment in which each learnable GNP module with a channel that is not exactly
    the max or the min of its input (a sum, a mean, ``[max, mean]``, any other point) is
    set to the max or to the min of its input, every channel alike, and each module whose
    channels all are the max or the min is kept as searched or conjugated; ``2 ** n``
    plans for ``n`` modules, the first option first (module order, the first module
    varying slowest).

    Why: a search whose message functions can change sign may end a GNP at a pooling that
    fits the training sizes without extrapolating (on ``shortest_path`` a mean or a sum
    where the min is called for), and :func:`conjugate_sets` cannot turn that GNP into a
    max or a min; the classic ends give the retrain every max/min combination.

    Returns a list of plans, each a tuple of ``(module name, action)`` pairs in module
    order, the action one of :data:`CLASSIC_END_ACTIONS`; empty when every learnable
    module's channels are all the max or the min (the conjugate sets cover every max/min
    combination then) or the model has no learnable GNP. Raises ``ValueError`` when
    ``model`` is not a ``torch.nn.Module`` or has more than
    :data:`MAX_CONJUGATED_MODULES` learnable GNP modules."""
    _check_module(model)
    _check_conjugable(model)
    modules = _learnable(model)
    off = {name for name, module in modules.items() if not _at_max_or_min(module)}
    if not off:
        return []
    options = [("max", "min") if name in off else ("searched", "conjugate")
               for name in modules]
    return [tuple(zip(modules, actions, strict=True))
            for actions in itertools.product(*options)]


@torch.no_grad()
def apply_plan_(model: torch.nn.Module, plan: Sequence[tuple[str, str]]) -> None:
    """Apply a plan of :func:`classic_end_plans` (or any ``(module name, action)`` pairs
    with actions from :data:`CLASSIC_END_ACTIONS`, each module named once) to ``model``'s
    GNP modules in place.

    Every pair is checked before anything changes. Raises ``ValueError`` when ``model``
    is not a ``torch.nn.Module``, ``plan`` is not a sequence of ``(str, str)`` pairs (one
    plan, ``classic_end_plans(model)[k]``, not the list of them), an action is unknown, a
    name is not a :class:`~gnpool.GNPAggregation` of ``model``, or a module is named
    twice."""
    _check_module(model)
    shape = (f"plan must be a sequence of (module name, action) pairs, e.g. "
             f"classic_end_plans(model)[0]; got {plan!r}")
    if isinstance(plan, (str, bytes, dict)) or not isinstance(plan, Sequence):
        raise ValueError(shape)
    modules: dict[int, tuple[GNPAggregation, str]] = {}
    for pair in plan:
        if (isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(v, str) for v in pair)):
            raise ValueError(shape)
        name, action = pair
        if action not in CLASSIC_END_ACTIONS:
            raise ValueError(f"plan action for {name!r} must be one of {CLASSIC_END_ACTIONS}, "
                             f"got {action!r}")
        try:
            module = model.get_submodule(name)
        except AttributeError:
            module = None
        if not isinstance(module, GNPAggregation):
            raise ValueError(f"plan names {name!r}, which is not a GNPAggregation of the "
                             "model; expected the names of its GNP modules")
        if id(module) in modules:
            raise ValueError(f"plan names the GNP module {name!r} twice (or under two "
                             "names); expected each module once")
        modules[id(module)] = (module, action)
    for module, action in modules.values():
        if action in ("max", "min"):
            module.snap_(action)
        elif action == "conjugate":
            module.conjugate_()


_PREFIXES = ("shared/", "per_channel/")


def _loss_bound(name: str, value: Any) -> float | None:
    # A bound on a loss as a float: a finite real number >= 0 (a NumPy scalar or a
    # one-element real tensor, such as a loss computed with torch, included) or None.
    if value is None:
        return None
    number = value
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex() \
            and value.dtype != torch.bool:
        number = value.item()
    if isinstance(number, bool) or not isinstance(number, numbers.Real) \
            or not 0 <= number < math.inf:
        raise ValueError(f"{name} must be a finite non-negative number or None, got "
                         f"{value!r}")
    return float(number)


def _check_candidates(candidates: Any) -> None:
    if not isinstance(candidates, dict) or not candidates:
        raise ValueError(f"candidates must be a non-empty dict of model name -> scores, got "
                         f"{candidates!r}")
    for name, scores in candidates.items():
        if not isinstance(name, str):
            raise ValueError(f"candidates has a model named {name!r}; expected names from "
                             f"{CANDIDATE_NAMES}, {CONJUGATE_PREFIX}<k> or "
                             f"{CLASSIC_END_PREFIX}<k>, each with or without one of "
                             f"{_PREFIXES}")
        if scores is not None and not isinstance(scores, dict):
            raise ValueError(f"candidates[{name!r}] must be a dict of scores (as "
                             f"candidate_scores returns) or None, got {scores!r}")
        for key in ("val_mse", "val_mse_large"):
            value = (scores or {}).get(key)
            # A loss below 0 would turn the margins' divisions around; NaN stays allowed
            # (a diverged model, which never wins).
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"candidates[{name!r}][{key!r}] must be a non-negative "
                                 f"number (a mean squared error), NaN or None, got {value!r}")
    prefixed = [n for n in candidates if n.startswith(_PREFIXES)]
    if prefixed and len(prefixed) != len(candidates):
        raise ValueError(f"candidates {list(candidates)} mix names with and without the "
                         f"prefixes {_PREFIXES}; with select_channels every name has one")
    for name in candidates:
        base = _base_name(name.split("/", 1)[1] if prefixed else name)
        if base not in CANDIDATE_NAMES:
            raise ValueError(f"candidates has a model named {name!r}; expected names from "
                             f"{CANDIDATE_NAMES}, {CONJUGATE_PREFIX}<k> or "
                             f"{CLASSIC_END_PREFIX}<k>"
                             + (f" after one of {_PREFIXES}" if prefixed else ""))
    for prefix in (_PREFIXES if prefixed else ("",)):
        group = [n for n in candidates if n.startswith(prefix)]
        if f"{prefix}model" in group and len(group) > 1:
            raise ValueError(f"candidates {group} name a model trained once ({prefix}model) "
                             "next to others; 'model' stands alone")
    if prefixed:
        missing = [p for p in _PREFIXES if not any(n.startswith(p) for n in candidates)]
        if missing:
            raise ValueError(f"candidates {list(candidates)} have no model named "
                             f"{missing[0]!r}...; with select_channels both the 'shared/' "
                             "and the 'per_channel/' models are needed")


def _with_relu_margin(candidates: dict[str, dict[str, float] | None], margin: float
                      ) -> dict[str, dict[str, float] | None]:
    # The ReLU-ended retrains' losses divided by `margin` (a copy; the others as they are).
    if margin == 1.0:
        return candidates
    out: dict[str, dict[str, float] | None] = {}
    for name, scores in candidates.items():
        if _base_name(name.rsplit("/", 1)[-1]) == "relu" and scores is not None:
            scores = {k: (v / margin if k in ("val_mse", "val_mse_large")
                          and isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                      for k, v in scores.items()}
        out[name] = scores
    return out


def _check_margin(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise ValueError(f"{name} must be a number >= 1, got {value!r}")


def _without_weak_conjugates(candidates: dict[str, dict[str, float] | None], margin: float,
                             on: str) -> dict[str, dict[str, float] | None]:
    # The candidates but the conjugate and classic-end retrains whose loss is not below
    # 1 / margin of the plain ReLU-ended retrain's with the same prefix (kept where that one
    # is missing or its loss is NaN); all of them at margin 1.
    if margin == 1:
        return candidates
    out = {}
    for name, scores in candidates.items():
        prefix, _, base = name.rpartition("/")
        relu = _selection_loss(candidates.get(f"{prefix}/relu" if prefix else "relu"), on)
        if (_is_variant(base) and not math.isnan(relu)
                and not _selection_loss(scores, on) < relu / margin):
            continue
        out[name] = scores
    return out


def choose_model(candidates: dict[str, dict[str, float] | None], on: str = "val",
                 relu_margin: float = 1.0, conjugate_margin: float = 1.0) -> str:
    """Which of a run's trained models is kept (``HParams.select_on`` is ``on``).

    ``candidates`` maps each model to its scores (the benchmark's
    ``gnpool.bench.train.candidate_scores``), of which the key ``"val_mse"`` is read
    (``on="val"``) or ``"val_mse_large"`` (``"val_large"``); ``None`` or a missing key
    counts as NaN. The models are named ``"search"`` and by the retrain's MLP ending
    (``"linear"``, ``"relu"``, ``"softplus"``; a ReLU-ended retrain of conjugated poolings
    :data:`CONJUGATE_PREFIX` and its number, ``"relu-conjugate-1"``, ..., one of a plan of
    :func:`classic_end_plans` :data:`CLASSIC_END_PREFIX` and its number) in the order
    they trained, or ``"model"`` for a model trained once (:data:`CANDIDATE_NAMES`);
    with ``HParams.select_channels`` every name carries the prefix ``"shared/"`` or
    ``"per_channel/"``, and both sets are needed.
    Within a model: the retrain with the lowest loss (the first on a tie) is kept unless
    its loss is more than :data:`SNAP_SLACK` above the search's; then the per-channel
    model is kept if its kept loss is lower than the shared one's (the shared one on a
    tie). A NaN loss never wins: a finite one beats it, and of two NaN losses the search,
    or the shared model, is kept. The loss is the validation MSE (``on="val"``) or the
    MSE over the validation targets of the largest samples (``"val_large"``). With
    ``relu_margin`` (``HParams.select_relu_margin``) every comparison reads the
    ReLU-ended retrains' (``"relu"``, the conjugates' and the classic ends') losses
    divided by it: such a retrain is kept unless another model's loss is below
    ``1 / relu_margin`` of its own. With ``conjugate_margin``
    (``HParams.conjugate_margin``) a conjugate or classic-end retrain competes only where
    its loss is below ``1 / conjugate_margin`` of the plain ReLU-ended retrain's
    (``"relu"`` with the same prefix; one without that retrain always competes): min and
    max fit a model's validation data alike more often than they extrapolate alike
    (tuning stages 35 and 36).

    Returns the kept name. Raises ``ValueError`` for an ``on`` other than those two, a
    ``relu_margin`` or ``conjugate_margin`` that is not a number >= 1, and for
    ``candidates`` that are not such a dict, a loss below 0 included (naming the entry at
    fault)."""
    if on not in ("val", "val_large"):
        raise ValueError(f"on={on!r}; expected 'val' or 'val_large'")
    _check_margin("relu_margin", relu_margin)
    _check_margin("conjugate_margin", conjugate_margin)
    _check_candidates(candidates)
    candidates = _without_weak_conjugates(candidates, float(conjugate_margin), on)
    candidates = _with_relu_margin(candidates, float(relu_margin))

    def loss(name: str) -> float:
        return _selection_loss(candidates[name], on)

    def replaces(challenger: str, holder: str, bound: Callable[[float], float],
                 on_tie: bool) -> bool:
        # Whether `challenger` replaces `holder`: its loss below bound(holder's), or equal
        # to it where on_tie; NaN never wins, a finite loss beats NaN.
        if math.isnan(loss(challenger)):
            return False
        if math.isnan(loss(holder)):
            return True
        limit = bound(loss(holder))
        return loss(challenger) < limit or (on_tie and loss(challenger) == limit)

    def within(prefix: str) -> str:
        names = [n for n in candidates if n.startswith(prefix)]
        search = f"{prefix}search"
        retrains = [n for n in names if n != search]
        if search not in candidates:
            if len(names) != 1:
                raise ValueError(f"candidates {names} need a {search!r} entry to choose "
                                 "among the search's retrains")
            return names[0]
        if not retrains:
            return search
        best = _lowest(candidates, retrains, on)
        return (best if replaces(best, search, lambda v: (1 + SNAP_SLACK) * v, on_tie=True)
                else search)

    if any(n.startswith(_PREFIXES) for n in candidates):
        shared, per_channel = within("shared/"), within("per_channel/")
        return (per_channel if replaces(per_channel, shared, lambda v: v, on_tie=False)
                else shared)
    return within("")


#: ``HParams.retrain_heading``: a part's displacement heads for a classic point within this
#: angle of it (45 degrees: at most one of sum, mean, max and min seen from any of them).
HEADING_ANGLE = math.pi / 4


@torch.no_grad()
def head_parts_(model: torch.nn.Module, start: dict[str, Tensor], travel: float,
                targets: tuple[str, ...] = COMPARED) -> dict[str, list[list[str]]]:
    """Set each part of each learnable GNP of ``model`` that is still nearest the classic
    point nearest its start (``start``: a ``state_dict`` of the model before training) but
    at least ``travel`` from its start in ``(p_unit, beta)`` to the classic point its
    displacement points at: the one of ``targets`` other than that start point whose
    direction from the start is within :data:`HEADING_ANGLE` of the displacement (none:
    left as it is).

    Returns ``{module name: [[positive part, negative part] per channel]}`` with the
    classic point each part was set to or "none", for modules with a part set."""
    centres = torch.tensor(list(PART_CLASSICS.values()), dtype=torch.float64)     # [4, 2]
    # Classic points a part may head for (never the one it starts nearest).
    allowed = torch.tensor([name in targets for name in COMPARED])
    out: dict[str, list[list[str]]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, GNPAggregation) or not module.p_unit.requires_grad:
            continue
        names: list[list[str]] = [[] for _ in range(module.channels)]
        prefix = f"{name}." if name else ""
        for unit_name, beta_name in (("p_unit", "beta"), ("p_neg_unit", "beta_neg")):
            unit, beta = getattr(module, unit_name), getattr(module, beta_name)
            then_unit = start[prefix + unit_name].double()
            then_beta = start[prefix + beta_name].double()
            origins = _nearest(then_unit, then_beta)[1]
            nearest = _nearest(unit.double(), beta.double())[1]
            then = torch.stack([then_unit.clamp(-1, 1), then_beta], -1)
            moved = torch.stack([unit.double().clamp(-1, 1), beta.double()], -1) - then
            for k in range(module.channels):
                origin, distance = int(origins[k]), float(moved[k].norm())
                choice = "none"
                if int(nearest[k]) == origin and distance >= travel and distance > 0:
                    towards = centres - then[k]
                    cos = (towards @ moved[k]) / (towards.norm(dim=-1) * distance)
                    ok = allowed & (torch.arange(len(COMPARED)) != origin) & ~cos.isnan()
                    cos = torch.where(ok, cos, torch.full_like(cos, -math.inf))
                    best = int(cos.argmax())
                    if float(cos[best]) >= math.cos(HEADING_ANGLE) - 1e-12:
                        unit[k], beta[k] = (float(v) for v in centres[best])
                        choice = COMPARED[best]
                names[k].append(choice)
        if any(n != "none" for pair in names for n in pair):
            out[name] = names
    return out




def _check_same_start(start: dict[str, Tensor], model: torch.nn.Module, what: str) -> None:
    # A retrain starts where the search started: every tensor of the search's initial
    # state_dict that `model` has too (same name and shape) must be equal to it.
    for name, value in model.state_dict().items():
        first = start.get(name)
        if (first is None or is_lazy(first) or is_lazy(value)):
            continue                            # (a lazy module's weights come later)
        if first.shape == value.shape and not torch.equal(first, value):
            raise ValueError(f"build must return the same initial weights on every call "
                             f"(seed inside it, e.g. torch.manual_seed(0)); the {what} "
                             f"differs from the search's initial {name!r}")


def search_then_retrain(build: Callable[[bool | str], torch.nn.Module],
                        train: Callable[[torch.nn.Module], float], *,
                        run: Callable[[torch.nn.Module], Any] | None = None,
                        search_ending: bool | str = "softplus",
                        retrain_endings: Sequence[bool | str] = (False, True),
                        conjugates: bool = True, heading: float | None = 0.15,
                        refit_above: float | None = None, relu_margin: float = 5.0,
                        conjugate_margin: float = 1.0, classic_above: float | None = None,
                        ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Find each GNP's classic pooling by *search, then retrain*, for any model: the
    benchmark's GNP recipe (``gnpool.bench``'s profiles) with the caller's model and
    training loop.

    1. The search: ``build(search_ending)`` trained by ``train`` with learnable poolings
       (softplus-ended MLPs feed every GNP positive inputs: no channel dead, and no sign
       through which max and min could stand in for each other).
    2. With ``refit_above``: a search whose validation loss is above it (or NaN) fitted
       nothing to read a pooling from; ``build(True)`` (ReLU-ended) trains from the same
       initialisation, and the lower loss goes on (the benchmark: ``search_refit_r2=0.5``,
       a validation MSE above half the targets' variance).
    3. Each part that travelled at least ``heading`` in ``(p_unit, beta)`` towards max or
       min but is still nearest its start is set to that max or min (:func:`head_parts_`);
       then every part to its nearest classic point
       (:func:`~gnpool.training.snap_parts_`), and with ``run`` each part that pooled only
       zeros (a softplus search's negative parts) to its sibling's mirror
       (:func:`~gnpool.training.mirror_idle_parts_`), so each channel is the sum, mean,
       max or min of its whole input.
    4. The retrains: for each of ``retrain_endings``, ``build(ending)`` given those
       poolings, frozen (:func:`~gnpool.training.transfer_pooling_`), its other weights
       trained by ``train``; with ``conjugates``, a ReLU-ended retrain for each set of
       :func:`conjugate_sets` (those GNPs as ``x -> -GNP(-x)``: max and min traded,
       because ``min(x) = -max(-x)`` lets a search fit min labels with max). With
       ``classic_above``, where the lowest of these retrains' losses is above it (or NaN)
       and the search left a GNP off max and min, a ReLU-ended retrain for each plan of
       :func:`classic_end_plans` (those GNPs at max and at min, the others as searched or
       conjugated), which competes as a conjugate's retrain does.
    5. The kept model (:func:`choose_model` with ``relu_margin``): each ReLU-ended
       retrain's loss (the family of Xu et al.'s fixed poolings) is divided by
       ``relu_margin``, and the retrain with the lowest loss so read is kept unless that
       is more than a factor ``1 +`` :data:`gnpool.training.recipe.SNAP_SLACK` (5%)
       above the search's, in which case the **search itself** is kept: its
       learnable, unsnapped poolings, which need not be classic (``record["kept"]`` says
       which; the benchmark's ``max_degree`` runs keep their searches in every seed of
       the quick profile, and extrapolate better than the fixed pairs there).

    What the benchmark does besides: its search snaps each GNP near a classic pooling for
    the last fifth of its epochs, kept if validation agrees (``HParams.snap``; a ``train``
    may do so with :func:`~gnpool.training.snap_to_classic`), it passes ``refit_above``
    as half the variance of the validation targets (``HParams.search_refit_r2=0.5``) and
    ``classic_above`` as a tenth of it (``HParams.retrain_classic_r2=0.9``, tuning stage
    38; the default here, ``None``, retrains no classic ends), and it also searches a
    second model with one exponent per channel (``GNPAggregation(channels=...)`` against
    ``channels=1``) without retraining it (``HParams.select_channels_retrain=False``,
    tuning stage 40), keeping the model with the lower validation loss: train that model
    once with ``train`` and compare its loss with ``record["losses"][record["kept"]]``
    (the ReLU margin of ``relu_margin`` applies to a kept ReLU-ended retrain there too).
    Its settings were chosen on a tuning split of the benchmark's tasks
    (``experiments/results/gnp_tuning/``), not on any reported test split. Given the
    benchmark's model builder and training loop it trains the models of the benchmark's
    one-model recipe to the bit (tested without refit and with one pooling per GNP).

    Args:
        build: returns a new, freshly initialised model whose MLPs end as its argument
            says (``True`` or ``"relu"``: ReLU, ``False`` or ``"linear"``: linear,
            ``"softplus"``; as :class:`~gnpool.models.MessageMLPGNN`'s and
            :class:`~gnpool.models.DeepSets`' ``last_activation``), with the same initial
            weights on every call (seed inside it). Its learnable GNPs are the poolings
            searched for.
        train: trains a model in place (e.g. Adam over
            :func:`~gnpool.training.param_groups`, which leaves frozen poolings out) and
            returns its validation loss: a non-negative number (a Python or NumPy scalar,
            or a one-element tensor), lower is better, NaN or inf never wins (e.g. an MSE;
            not a negated score).
        run: calls a model on training inputs (its output is not used), for step 3's
            mirror; ``None`` leaves idle parts as the search left them.
        search_ending: the search's MLP ending.
        retrain_endings: one retrain per ending, in order (distinct; at least one).
        conjugates: also retrain ReLU-ended at the sign conjugates (at most
            :data:`gnpool.training.recipe.MAX_CONJUGATED_MODULES` learnable GNP modules).
        heading: the travel of step 3 (``None``: parts go to their nearest point only).
        refit_above: step 2's bound on the search's validation loss, a finite
            non-negative number, a NumPy scalar or a one-element tensor (``None``: no
            refit; none either where the search is ReLU-ended already).
        relu_margin: >= 1; 1 keeps the lowest loss.
        conjugate_margin: >= 1; a conjugate's retrain competes only where its loss is below
            ``1 / conjugate_margin`` of the plain ReLU-ended retrain's (1: always; the
            benchmark's profiles use 2 since tuning stage 36).
        classic_above: step 4's bound, in the units of ``train``'s loss, on the lowest
            loss of the retrains before it (every ending's and every conjugate's, no margin
            applied) above which the classic ends retrain too; a finite non-negative
            number, a NumPy scalar or a one-element tensor (``None``: never; needs
            ``conjugates``). Not an R^2: the benchmark's
            profiles read the bound as validation R^2 0.9 (``HParams.retrain_classic_r2``),
            which for an MSE is ``(1 - 0.9) *`` the variance of the validation targets.

    Returns:
        ``(model, record)``: the kept model, trained, and a dict with ``"kept"`` (its
        name: ``"search"``, an ending's name ``"linear"``/``"relu"``/``"softplus"``, or
        ``"relu-conjugate-<k>"``, ``"relu-classic-<k>"``), ``"losses"`` (every trained
        model's validation loss by name, the refit search's as ``"search-relu"``),
        ``"refit"`` (whether the ReLU-ended search replaced the first), ``"headed"``,
        ``"snapped"``, ``"mirrored"`` (what step 3 set, as :func:`head_parts_`,
        :func:`~gnpool.training.snap_parts_` and :func:`~gnpool.training.mirror_idle_parts_`
        return it), ``"conjugates"`` (the module sets conjugated, in retrain order),
        ``"classic_triggered"`` (whether the
        lowest loss was above ``classic_above``; ``None`` without it) and
        ``"classic_ends"`` (the plans of the classic-end retrains, ``[[module, action],
        ...]`` each, in retrain order, the k-th one ``"relu-classic-<k>"``; empty where
        none ran: the bound not crossed, or every GNP at max or min). Only the search
        and the best retrain so far are held in memory while it runs. If ``train`` or
        ``run`` raises, the search's model is put back as it was trained before the error
        passes on.

    Raises:
        ValueError: ``build`` without learnable GNPs, returning the same object twice or
            different initial weights on two calls (checked before anything trains);
            ``train`` returning something other than a non-negative number or NaN;
            ``search_ending`` or ``retrain_endings`` not MLP endings (repeated, none, or
            a string instead of a sequence of them); ``heading`` not positive;
            ``refit_above`` or ``classic_above`` not a finite non-negative number,
            ``classic_above`` without ``conjugates``; ``relu_margin`` or
            ``conjugate_margin`` below 1; more than
            ``MAX_CONJUGATED_MODULES`` learnable GNP modules with ``conjugates``.
        TypeError: ``conjugates`` not a bool.
    """
    from ..models.mlp import ending_name

    def endings(name: str, values: Sequence[Any]) -> list[str]:
        try:
            return [ending_name(v) for v in values]
        except ValueError:
            one = name == "search_ending"
            raise ValueError(f"{name} must be {'an MLP ending' if one else 'MLP endings'} "
                             "(True or 'relu', False or 'linear', 'softplus'), got "
                             f"{values[0] if one else values!r}") from None

    endings("search_ending", [search_ending])
    if isinstance(retrain_endings, (str, bytes)) or not isinstance(retrain_endings, Sequence):
        raise ValueError(f"retrain_endings must be a sequence of MLP endings, e.g. "
                         f"(False, True), got {retrain_endings!r}")
    names = endings("retrain_endings", retrain_endings)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"retrain_endings must name at least one MLP ending, each once, "
                         f"got {list(retrain_endings)!r}")
    if not isinstance(conjugates, bool):
        raise TypeError(f"conjugates must be True or False, got {conjugates!r}")
    if heading is not None and (isinstance(heading, bool) or not isinstance(
            heading, (int, float)) or not heading > 0):
        raise ValueError(f"heading must be a positive number or None, got {heading!r}")
    refit_above = _loss_bound("refit_above", refit_above)
    classic_above = _loss_bound("classic_above", classic_above)
    _check_margin("relu_margin", relu_margin)
    _check_margin("conjugate_margin", conjugate_margin)
    if classic_above is not None and not conjugates:
        raise ValueError(f"classic_above={classic_above!r} applies only with "
                         "conjugates=True (its retrains extend the conjugates'), got "
                         "conjugates=False")

    def loss_of(model: torch.nn.Module, what: str) -> float:
        value = train(model)
        if isinstance(value, Tensor) and value.numel() == 1:
            value = value.item()
        elif hasattr(value, "item") and getattr(value, "size", None) == 1:
            value = value.item()                # NumPy scalars and one-element arrays
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"train must return the validation loss as a non-negative "
                             f"number (an MSE, say; NaN never wins), got {value!r} for the "
                             f"{what}")
        return float(value)

    searched = build(search_ending)
    if not _learnable(searched):
        raise ValueError("build must return a model with learnable GNP poolings (e.g. "
                         "aggr='gnp'); this one has none")
    if conjugates:
        _check_conjugable(searched)
    start = copy.deepcopy(searched.state_dict())
    probe = build(retrain_endings[0])          # before anything trains
    if probe is searched:
        raise ValueError("build must return a new model on every call, not the same one")
    _check_same_start(start, probe, "second model")
    del probe
    trained = None
    try:
        losses = {"search": loss_of(searched, "search")}
        refit = False
        if (refit_above is not None and ending_name(search_ending) != "relu"
                and not losses["search"] <= refit_above):
            other = build(True)
            _check_same_start(start, other, "ReLU-ended search")
            losses["search-relu"] = loss_of(other, "ReLU-ended search")
            if _lower(losses["search-relu"], losses["search"]):
                searched, refit = other, True
            del other
        search_loss = losses["search-relu"] if refit else losses["search"]
        trained = copy.deepcopy(searched.state_dict())
        headed = ({} if heading is None
                  else head_parts_(searched, start, float(heading), ("max", "min")))
        snapped = snap_parts_(searched, math.inf)
        mirrored = (mirror_idle_parts_(searched, lambda: run(searched)) if run is not None
                    else {})
        sets = conjugate_sets(searched) if conjugates else []
        plan = ([(end, name, ()) for end, name in zip(retrain_endings, names, strict=True)]
                + [(True, f"{CONJUGATE_PREFIX}{k}", tuple((m, "conjugate") for m in flipped))
                   for k, flipped in enumerate(sets, start=1)])
        candidates: dict[str, dict[str, float]] = {"search": {"val_mse": search_loss}}
        best: tuple[str, torch.nn.Module] | None = None     # the best retrain so far
        classic: list[tuple[tuple[str, str], ...]] = []
        triggered = None

        def retrain(end: bool | str, name: str, actions: tuple[tuple[str, str], ...]) -> None:
            nonlocal best
            source = searched
            if actions:
                source = copy.deepcopy(searched)
                apply_plan_(source, actions)
            fresh = build(end)
            _check_same_start(start, fresh, f"{name} retrain")
            transfer_pooling_(source, fresh)
            losses[name] = loss_of(fresh, f"{name} retrain")
            candidates[name] = {"val_mse": losses[name]}
            competing = _without_weak_conjugates(candidates, conjugate_margin, "val")
            done = [n for n in candidates if n != "search" and n in competing]
            if name in competing and _lowest(_with_relu_margin(competing, relu_margin), done,
                                             "val") == name:
                best = (name, fresh)

        for end, name, actions in plan:
            retrain(end, name, actions)
        lowest = _lowest_loss(losses[n] for _, n, _ in plan)
        if classic_above is not None:
            triggered = not lowest <= classic_above
        if triggered:
            classic = classic_end_plans(searched)
            for k, actions in enumerate(classic, start=1):
                retrain(True, f"{CLASSIC_END_PREFIX}{k}", actions)
    finally:
        if trained is not None:
            searched.load_state_dict(trained)   # the search as trained, kept or not
    kept = choose_model(candidates, "val", relu_margin, conjugate_margin)
    record = {"kept": kept, "losses": losses, "refit": refit, "headed": headed,
              "snapped": snapped, "mirrored": mirrored,
              "conjugates": [list(s) for s in sets], "classic_triggered": triggered,
              "classic_ends": [[list(pair) for pair in actions] for actions in classic]}
    if kept == "search":
        return searched, record
    assert best is not None and best[0] == kept, (best, kept)
    return best[1], record
