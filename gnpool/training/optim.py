"""Optimiser parameter groups that treat pooling parameters as architecture parameters."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn import aggr as pyg_aggr

#: Pooling-parameter names of modules that do not list them themselves (a module lists
#: its own in a ``pooling_parameter_names`` class attribute, as GNPAggregation does).
KNOWN_POOLING_PARAMETERS: dict[type, tuple[str, ...]] = {
    pyg_aggr.PowerMeanAggregation: ("p",),
    pyg_aggr.SoftmaxAggregation: ("t",),
}
#: Learning rate of pooling parameters: GNP's exponent lives in [-1, 1], so about
#: 1 / DEFAULT_POOL_LR Adam steps cross from the mean to max. Chosen on the benchmark's
#: tuning split (experiments/results/gnp_tuning/).
DEFAULT_POOL_LR = 0.05


def _names(module: torch.nn.Module) -> tuple[str, ...]:
    own = getattr(module, "pooling_parameter_names", None)
    if own is not None:
        return tuple(own)
    for cls, names in KNOWN_POOLING_PARAMETERS.items():
        if isinstance(module, cls):
            return names
    return ()


def _check_module(name: str, value: Any) -> None:
    if not isinstance(value, torch.nn.Module):
        hint = (" (pass the model itself, not model.parameters())"
                if not isinstance(value, (str, bytes)) and hasattr(value, "__next__") else "")
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}"
                        + hint)


def _pooling_tensors(model: torch.nn.Module) -> dict[str, Tensor]:
    # Every pooling tensor the modules of `model` name (_names), a parameter (trainable or
    # not) or a buffer, by qualified name, in module order.
    _check_module("model", model)
    out: dict[str, Tensor] = {}
    for prefix, module in model.named_modules():
        for name in _names(module):
            value = module._parameters.get(name)
            if value is None:
                value = module._buffers.get(name)
            if value is not None:
                out[f"{prefix}.{name}" if prefix else name] = value
    return out


def pooling_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable pooling parameters of ``model`` as ``(qualified name, parameter)``:
    those a module names in its ``pooling_parameter_names`` attribute (GNP's ``p_unit``
    and ``beta`` of both parts), PyG's ``PowerMeanAggregation.p`` and
    ``SoftmaxAggregation.t``, and any added to :data:`KNOWN_POOLING_PARAMETERS`."""
    return [(name, value) for name, value in _pooling_tensors(model).items()
            if isinstance(value, torch.nn.Parameter) and value.requires_grad]


def param_groups(model: torch.nn.Module, lr: float, pool_lr: float | None = DEFAULT_POOL_LR,
                 weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Optimiser parameter groups: the model's weights, and its pooling parameters with
    their own learning rate and no weight decay.

    A learned exponent is an architecture choice (which pooling a layer computes), not a
    weight: weight decay would pull it towards an arbitrary point (p_unit = 0 is the
    geometric mean), and its natural scale is that of its range, not that of the
    weights. Pass the result to any ``torch.optim`` optimiser::

        optimizer = torch.optim.Adam(gnpool.param_groups(model, lr=1e-3))

    Args:
        model: any module; pooling parameters are found as in :func:`pooling_parameters`.
        lr: learning rate of every other parameter.
        pool_lr: learning rate of the pooling parameters (``None``: ``lr``).
        weight_decay: weight decay of every other parameter (pooling parameters get 0).

    Returns:
        ``[{"params": weights, "lr": lr, "weight_decay": weight_decay, "name":
        "weights"}, {"params": pooling, "lr": pool_lr, "weight_decay": 0.0, "name":
        "pooling"}]``, leaving out a group with no parameters.

    Raises:
        TypeError: ``model`` is not a module (``model.parameters()`` passed instead).
        ValueError: a learning rate or the weight decay is negative, infinite or not a
            number.
    """
    for arg, value in (("lr", lr), ("pool_lr", pool_lr), ("weight_decay", weight_decay)):
        if value is None and arg == "pool_lr":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 <= value < math.inf):
            raise ValueError(f"{arg} must be a finite non-negative number, got {value!r}")
    pooling = [p for _, p in pooling_parameters(model)]
    ids = {id(p) for p in pooling}
    weights = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay, "name": "weights"},
              {"params": pooling, "lr": lr if pool_lr is None else pool_lr,
               "weight_decay": 0.0, "name": "pooling"}]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def transfer_pooling_(source: torch.nn.Module, target: torch.nn.Module,
                      freeze: bool = True) -> list[str]:
    """Copy every pooling parameter of ``source`` into the parameter of the same qualified
    name in ``target`` and freeze it there: the second stage of *search, then retrain*. A
    model with learnable poolings is trained (the search; e.g. then :func:`snap_parts_`
    with ``tolerance=math.inf`` sets every GNP part to its nearest classic pooling), a
    second model of the same architecture is made from a fresh initialisation, given the
    searched poolings, and trained with only its other weights learning
    (:func:`param_groups` and :func:`pooling_parameters` leave frozen parameters out), so
    that no weight carries what it adapted to while the pooling was still moving. In the
    benchmark (``HParams.retrain``) this brought GNP from 2.2x to 1.1x the fixed max
    pooling's tuning MAPE on ``set_max`` (``experiments/results/gnp_tuning/stage9.md``).

    Pooling parameters are those :func:`pooling_parameters` names (GNP's ``p_unit``,
    ``beta``, ``p_neg_unit``, ``beta_neg``, PowerMean's ``p``, Softmax's ``t``, ...),
    frozen or not, and their buffers in modules built with ``learn=False``. ``torch.compile``
    wrappers are looked through; ``torch.jit.script``-ed modules no longer name their
    pooling parameters and count as having none.

    Args:
        source: the module whose pooling parameters are copied (cast to ``target``'s dtype).
        target: a module with the same pooling parameters (names and shapes), changed in
            place; its other parameters are left as they are.
        freeze: ``True``: the copied parameters of ``target`` stop training
            (``requires_grad=False``, any stored gradient dropped, so no optimiser step
            moves them); ``False``: they train (``requires_grad=True``).

    Returns:
        The qualified names of the copied tensors, in module order; ``[]`` when neither
        module has a pooling parameter.

    Raises:
        TypeError: ``source`` or ``target`` is not a module.
        ValueError: ``freeze`` is not a bool; the two modules' pooling parameters differ
            in names, shapes or kind (learnable in one, a fixed buffer in the other); a
            value of ``source`` is not finite (each message names the parameter).
    """
    if not isinstance(freeze, bool):
        raise ValueError(f"freeze must be True or False, got {freeze!r}")
    # torch.compile wrappers are looked through, so that compiled and plain modules match.
    _check_module("source", source)
    _check_module("target", target)
    src, dst = (_pooling_tensors(getattr(m, "_orig_mod", m)) for m in (source, target))
    if set(src) != set(dst):
        raise ValueError("source and target must have the same pooling parameters; only in "
                         f"source: {sorted(set(src) - set(dst))}, only in target: "
                         f"{sorted(set(dst) - set(src))}")
    for name, value in src.items():
        if value.shape != dst[name].shape:
            raise ValueError(f"pooling parameter {name!r} has shape {tuple(value.shape)} in "
                             f"source and {tuple(dst[name].shape)} in target")
        learnable = [isinstance(t, torch.nn.Parameter) for t in (value, dst[name])]
        if learnable[0] != learnable[1]:
            kinds = ["learnable" if flag else "a fixed buffer (learn=False)"
                     for flag in learnable]
            raise ValueError(f"pooling parameter {name!r} is {kinds[0]} in source and "
                             f"{kinds[1]} in target")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"pooling parameter {name!r} of source is not finite: "
                             f"{value.tolist()}")
    for name, value in src.items():
        dst[name].copy_(value)
        if isinstance(dst[name], torch.nn.Parameter):
            dst[name].requires_grad_(not freeze)
            if freeze:
                dst[name].grad = None
    return list(src)
