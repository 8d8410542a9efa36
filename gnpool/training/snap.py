"""Fix learned GNP poolings at the classic pooling they are close to, or pull them
towards one during training."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..aggr import GNPAggregation
from ..aggr.gnp import CLASSIC, COMPARED, PART_REDUCTIONS, WHOLE_REDUCTIONS
from ..functional import gnp_unit
from ..functional.gnp import p_to_unit, q_to_beta


@torch.no_grad()
def snap_to_classic(model: torch.nn.Module, tolerance: float = 0.1,
                    run: Callable[[], Any] | None = None) -> dict[str, list[str]]:
    """Set every GNP channel of ``model`` that is within ``tolerance`` of sum, mean, max or
    min exactly to that pooling.

    Sizes seen in training pin a learned pooling down only so far: ``n^beta`` with ``beta``
    = 0.02 is 5% between sets of 10 and 200 elements, invisible in a training loss on sets
    of 10 to 20 and a 5% error beyond them. Where the data cannot tell a learned pooling
    from a classic one, the classic one is the choice that holds at every size. Check the
    result on validation data (the rest of the model was fitted to the unsnapped pooling)
    and fine-tune the rest of the model with the pooling parameters held fixed.

    The distance of a channel to a classic pooling is the mean absolute difference of
    their outputs divided by the classic pooling's mean magnitude, measured on the inputs
    each GNP receives while ``run()`` runs the model (e.g. over validation data: a GNP
    that only ever sees non-negative inputs is then judged on those alone), or, without
    ``run``, on :meth:`GNPAggregation.pooling_distances`' fixed bank of random sets.

    Args:
        model: any module; its learnable :class:`GNPAggregation` modules (parameters that
            train, as :func:`snap_parts_` takes them) are snapped in place; a fixed GNP
            (``learn=False``, or frozen parameters) is left as it is.
        tolerance: largest distance that snaps (a relative error).
        run: a callable that runs ``model`` forward over representative inputs.

    Returns:
        ``{module name: [pooling per channel]}`` of the GNP modules with a snapped channel
        (``"none"`` for channels left as they were).

    Raises:
        ValueError: ``tolerance`` is negative or not a number, ``model`` is not a module,
            ``run`` is not callable, or ``run()`` called none of the model's learnable
            GNPs (nothing to measure them on).
    """
    _check_tolerance(tolerance)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modules = _learnable(model)
    if run is not None:
        if not callable(run):
            raise ValueError(f"run must be a callable that runs the model, got {run!r}")
        distances = _measured(model, modules, run)
        if modules and not distances:
            raise ValueError(f"run() called none of the model's learnable GNPAggregation "
                             f"modules ({', '.join(modules) or 'the model itself'}): pass "
                             "a run that calls the model forward on its inputs")
    else:
        distances = {name: m.pooling_distances() for name, m in modules.items()}
    snapped: dict[str, list[str]] = {}
    for name, module in modules.items():
        if name not in distances:
            continue
        stacked = torch.stack([distances[name][p] for p in COMPARED])
        best, where = stacked.min(0)
        names = [COMPARED[i] if d <= tolerance and math.isfinite(d) else "none"
                 for i, d in zip(where.tolist(), best.tolist(), strict=True)]
        if any(n != "none" for n in names):
            module.snap_(names)
            snapped[name] = names
    return snapped


def _learnable(model: torch.nn.Module) -> dict[str, GNPAggregation]:
    # The GNPs of `model` with a part whose parameters train, by name.
    return {name: m for name, m in model.named_modules()
            if isinstance(m, GNPAggregation) and any(trains for *_, trains in _parts(m))}


def _run_watched(model: torch.nn.Module, modules: dict[str, GNPAggregation],
                 watch: Callable[[str, GNPAggregation], Callable[..., None]],
                 run: Callable[[], Any]) -> None:
    # run() with watch(name, module) as a forward pre-hook (with kwargs) of each module, in
    # eval mode (no projection of p_unit while watching); the hooks are removed and the
    # modes restored afterwards (each submodule's own), also when run() raises.
    hooks = [m.register_forward_pre_hook(watch(n, m), with_kwargs=True)
             for n, m in modules.items()]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        run()
    finally:
        for handle in hooks:
            handle.remove()
        for m, training in modes:
            m.training = training


def _check_tolerance(tolerance: Any) -> None:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or \
            not tolerance >= 0:
        raise ValueError(f"tolerance must be a non-negative int or float, got {tolerance!r}")


def _classic(name: str, like: Tensor) -> list[Tensor]:
    p, q, p_neg, q_neg = (torch.tensor(v, dtype=torch.float64) for v in CLASSIC[name])
    return [t.to(like.dtype) for t in (p_to_unit(p), q_to_beta(p, q), p_to_unit(p_neg),
                                       q_to_beta(p_neg, q_neg))]


def _measured(model: torch.nn.Module, modules: dict[str, GNPAggregation],
              run: Callable[[], Any]) -> dict[str, dict[str, Tensor]]:
    # Sums of |G - classic| and |classic| per module, classic pooling and channel, over
    # the inputs each module receives while `run()` runs.
    diff: dict[str, dict[str, Tensor]] = defaultdict(dict)
    mag: dict[str, dict[str, Tensor]] = defaultdict(dict)

    def watch(name: str, module: GNPAggregation):
        def hook(_module, args, kwargs):
            x = args[0] if args else kwargs["x"]
            where = {k: kwargs.get(k) for k in ("index", "ptr", "dim_size")}
            dim = kwargs.get("dim", -2)
            # forward, not __call__: this hook must not run again.
            current = module.forward(x, dim=dim, **where)
            for pooling in COMPARED:
                a, b, a_neg, b_neg = _classic(pooling, current)
                classic = gnp_unit(x, dim=dim, p_unit=a, beta=b, p_neg_unit=a_neg,
                                   beta_neg=b_neg, backend=module.backend, **where)
                err = (current - classic).abs().reshape(-1, current.size(-1)).sum(0)
                size = classic.abs().reshape(-1, classic.size(-1)).sum(0)
                if module.channels == 1:    # one set of parameters for every column
                    err, size = err.sum().view(1), size.sum().view(1)
                diff[name][pooling] = diff[name].get(pooling, 0) + err.double()
                mag[name][pooling] = mag[name].get(pooling, 0) + size.double()
        return hook

    _run_watched(model, modules, watch, run)
    # A channel that is 0 for every input (a dead one) says nothing: it is not snapped.
    return {name: {pooling: torch.where(mag[name][pooling] > 0,
                                        diff[name][pooling] / mag[name][pooling],
                                        torch.full_like(mag[name][pooling], torch.inf)).float()
                   for pooling in COMPARED} for name in diff}


#: ``(p_unit, beta)`` of the sum, mean, max and min for one part of GNP on its own input,
#: in the order of :data:`gnpool.aggr.gnp.COMPARED`: the positive part's coordinates of
#: :data:`gnpool.aggr.gnp.CLASSIC`.
PART_CLASSICS: dict[str, tuple[float, float]] = {
    name: point for point, name in PART_REDUCTIONS.items()}


def _parts(module: GNPAggregation) -> list[tuple[Tensor, Tensor, bool]]:
    # (p_unit, beta, whether it trains) of the positive and the negative part.
    parts = ((module.p_unit, module.beta), (module.p_neg_unit, module.beta_neg))
    return [(unit, beta, isinstance(unit, torch.nn.Parameter)
             and (unit.requires_grad or beta.requires_grad)) for unit, beta in parts]


def _nearest(unit: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    # Squared distance of each channel's (clamped p_unit, beta) to its nearest point of
    # PART_CLASSICS, and which point (an index into COMPARED): two [channels] tensors.
    theta = torch.stack([unit.clamp(-1.0, 1.0), beta], dim=-1)          # [channels, 2]
    centres = theta.new_tensor(list(PART_CLASSICS.values()))            # [4, 2]
    return (theta.unsqueeze(-2) - centres).square().sum(-1).min(-1)


def classic_prior(model: torch.nn.Module) -> Tensor:
    """Squared distance of every learnable GNP in ``model`` to the nearest classic poolings,
    in GNP's native coordinates: a differentiable penalty that pulls each part of each GNP
    towards the closest of sum, mean, max and min of that part's input.

    A GNP channel has two parts (positive and negative, see :class:`~gnpool.GNPAggregation`),
    each with coordinates ``(p_unit, beta)``; on its own input a part is the sum at
    ``(1/2, 1)``, the mean at ``(1/2, 0)``, the max at ``(1, 0)`` and the min at
    ``(-1, 0)`` (:data:`PART_CLASSICS`). The penalty of a channel is ``sum over parts of
    min_k ||(clamp(p_unit, -1, 1), beta) - c_k||^2`` (``p_unit`` as the forward uses it);
    per module it is the mean over channels, and the result is the sum over modules. Every
    such point pools to a value whose dependence on the set size is known (linear for the
    sum, none for the others), which is what holds beyond the training sizes; training loss
    alone cannot tell ``n^0.4 * M_3`` from the sum on sets of 10 to 20 elements. Adding
    ``weight * loss.detach() * classic_prior(model)`` to the loss with the weight raised
    during training makes every part end at a classic point unless the data hold it away
    (``HParams.pool_prior`` in the benchmark).

    Args:
        model: any module; :class:`~gnpool.GNPAggregation` modules inside it (also inside
            PyG layers and ``torch.compile`` wrappers, not in a ``torch.jit.script``-ed
            module) count, parts whose parameters do not train are left out.

    Returns:
        A 0-dim tensor (the parameters' dtype) with a gradient for every learnable GNP
        parameter; a float32 ``0`` without gradient when ``model`` has no learnable GNP.
        It raises nothing; non-finite parameters give a non-finite result.
    """
    total: Tensor | None = None
    for module in model.modules():
        if not isinstance(module, GNPAggregation):
            continue
        for unit, beta, trains in _parts(module):
            if trains:
                term = _nearest(unit, beta)[0].mean()
                total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


@torch.no_grad()
def snap_parts_(model: torch.nn.Module, tolerance: float = 0.1) -> dict[str, list[list[str]]]:
    """Set each part of each learnable GNP channel in ``model`` exactly to the classic point
    of :data:`PART_CLASSICS` it is within ``tolerance`` of, the part-wise counterpart of
    :func:`snap_to_classic` for models trained with :func:`classic_prior`.

    The names are those of each part on its own input (``relu(x)`` for the positive part,
    ``relu(-x)`` for the negative one): a GNP that is exactly the max of ``x`` reports
    ``["max", "min"]`` (max of the positive part, min of the negative part; see
    :class:`~gnpool.GNPAggregation`). The values are set, not frozen: exclude the pooling
    parameters from the optimiser (or drop their gradients) to keep them there.

    Args:
        model: any module; its learnable :class:`~gnpool.GNPAggregation` modules are
            changed in place (``p_unit`` outside [-1, 1], as an optimiser step leaves it
            before the next training-mode forward projects it, is judged clamped).
        tolerance: largest Euclidean distance in ``(p_unit, beta)`` that snaps, a
            non-negative int or float (default 0.1).

    Returns:
        ``{module name: [[positive part, negative part] per channel]}`` with "sum",
        "mean", "max", "min" or "none" (left as it was), for modules with a snapped part.

    Raises:
        ValueError: ``tolerance`` is negative or not a number, or a learnable GNP
            parameter is not finite.
    """
    _check_tolerance(tolerance)
    out: dict[str, list[list[str]]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, GNPAggregation):
            continue
        parts = _parts(module)
        for unit, beta, trains in parts:
            if trains and not bool(torch.isfinite(unit).all() and torch.isfinite(beta).all()):
                raise ValueError(f"GNP {name or 'model'!r} has non-finite parameters: p_unit="
                                 f"{unit.tolist()}, beta={beta.tolist()}")
        names: list[list[str]] = [[] for _ in range(module.channels)]
        for unit, beta, trains in parts:
            squared, where = _nearest(unit, beta)
            for k, (d, i) in enumerate(zip(squared.tolist(), where.tolist(), strict=True)):
                if trains and d <= tolerance ** 2:
                    unit[k], beta[k] = PART_CLASSICS[COMPARED[i]]
                    names[k].append(COMPARED[i])
                else:
                    names[k].append("none")
        if any(n != "none" for pair in names for n in pair):
            out[name] = names
    return out


#: The classic point of one part that, with the other part at the key, makes the channel
#: that classic pooling of ``x`` itself (``[max, min]`` is the max of ``x``, ``[min, max]``
#: the min, ``[sum, sum]`` the sum, ``[mean, mean]`` the mean), read off
#: :data:`gnpool.aggr.gnp.WHOLE_REDUCTIONS`; the relation is symmetric.
MIRROR: dict[str, str] = {positive: negative for positive, negative in WHOLE_REDUCTIONS}


@torch.no_grad()
def mirror_idle_parts_(model: torch.nn.Module,
                       run: Callable[[], Any]) -> dict[str, list[list[str]]]:
    """Set each part of each learnable GNP channel in ``model`` that received no input
    while ``run()`` ran the model to the mirror (:data:`MIRROR`) of the other part's
    classic point, so that the channel computes that classic pooling of its whole input.

    A GNP channel pools ``relu(x)`` with its positive part and ``relu(-x)`` with its
    negative part and subtracts the second from the first (:class:`~gnpool.GNPAggregation`).
    Fed only non-negative inputs (after a ReLU or softplus), its negative part pools zeros:
    its parameters get no gradient and stay where they were initialised, which says
    nothing about the data. Fed signed inputs later (a model retrained with linear-ended
    MLPs around the searched pooling, :func:`transfer_pooling_`), that leftover value
    becomes part of the pooling: a channel that learned the min of its positive part and
    keeps a negative part at its initial mean computes ``min(relu(x)) - mean(relu(-x))``,
    no classic pooling. Mirrored, it is ``[min, max]``: exactly ``min(x)`` on any input,
    the same pooling on the non-negative inputs it was chosen on.

    A part is idle when no input of its channel (no column, for a GNP with one set of
    parameters) was ``< 0`` (the negative part) or ``> 0`` (the positive part) in any call
    during ``run()``; NaN counts as neither. A channel whose inputs were all 0 has both
    parts idle and is left as it is, as is a part whose sibling is not exactly at a classic
    point (:data:`PART_CLASSICS`, ``p_unit`` judged clamped to [-1, 1]; :func:`snap_parts_`
    puts it there). An idle part set to the point it already held is reported too. The
    values are set, not frozen: exclude the pooling parameters from the optimiser (as
    :func:`transfer_pooling_` does) to keep them there.

    Args:
        model: an ``nn.Module``; its learnable :class:`~gnpool.GNPAggregation` modules
            (parameters that train; also inside PyG layers and ``torch.compile`` wrappers,
            not in a ``torch.jit.script``-ed module) are changed in place.
        run: a callable that runs ``model`` forward over the inputs the pooling was chosen
            on (e.g. the training split). It is called once, under ``torch.no_grad()`` with
            the model in eval mode (no projection of ``p_unit``); every submodule's mode is
            restored afterwards, also when ``run()`` raises.

    Returns:
        ``{module name: [[positive part, negative part] per channel]}`` with the classic
        point each idle part was set to, or "none" (left as it was), for modules with a
        mirrored part.

    Raises:
        ValueError: ``model`` is not an ``nn.Module`` or has no learnable GNP (checked
            before ``run()`` is called), ``run`` is not callable, or ``run()`` called none
            of the model's learnable GNPs.
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(run):
        raise ValueError(f"run must be a callable that runs the model, got {run!r}")
    modules = _learnable(model)
    if not modules:
        raise ValueError("model has no learnable GNPAggregation (every GNP in it is fixed, "
                         "or it has none): there is no part to mirror")
    positive: dict[str, Tensor] = {}
    negative: dict[str, Tensor] = {}

    def watch(name: str, module: GNPAggregation):
        def hook(_module, args, kwargs):
            x = args[0] if args else kwargs["x"]
            flat = x.detach().flatten(0, -2) if x.dim() > 1 else x.detach().view(-1, 1)
            pos, neg = (flat > 0).any(0), (flat < 0).any(0)
            if module.channels == 1:            # one set of parameters for every column
                pos, neg = pos.any().view(1), neg.any().view(1)
            positive[name] = pos if name not in positive else positive[name] | pos
            negative[name] = neg if name not in negative else negative[name] | neg
        return hook

    _run_watched(model, modules, watch, run)
    if not positive:
        raise ValueError(f"run() called none of the model's learnable GNPAggregation modules "
                         f"({', '.join(repr(n) for n in modules)}); pass a callable that runs "
                         "the model forward over data")
    out: dict[str, list[list[str]]] = {}
    for name, module in modules.items():
        if name not in positive:
            continue
        (unit, beta, trains), (unit_neg, beta_neg, trains_neg) = _parts(module)
        names: list[list[str]] = []
        for k in range(module.channels):
            pos_live, neg_live = bool(positive[name][k]), bool(negative[name][k])
            pos_at = PART_REDUCTIONS.get((float(unit[k].clamp(-1, 1)), float(beta[k])))
            neg_at = PART_REDUCTIONS.get((float(unit_neg[k].clamp(-1, 1)), float(beta_neg[k])))
            pair = ["none", "none"]
            if pos_live and not neg_live and pos_at is not None and trains_neg:
                unit_neg[k], beta_neg[k] = PART_CLASSICS[MIRROR[pos_at]]
                pair[1] = MIRROR[pos_at]
            elif neg_live and not pos_live and neg_at is not None and trains:
                unit[k], beta[k] = PART_CLASSICS[MIRROR[neg_at]]
                pair[0] = MIRROR[neg_at]
            names.append(pair)
        if any(n != "none" for pair in names for n in pair):
            out[name] = names
    return out
