"""Optimiser parameter groups that treat pooling parameters as architecture parameters."""

from __future__ import annotations

from typing import Any

import torch
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


def pooling_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable pooling parameters of ``model`` as ``(qualified name, parameter)``:
    those a module names in its ``pooling_parameter_names`` attribute (GNP's ``p_unit``
    and ``beta`` of both parts), PyG's ``PowerMeanAggregation.p`` and
    ``SoftmaxAggregation.t``, and any added to :data:`KNOWN_POOLING_PARAMETERS`."""
    out = []
    for prefix, module in model.named_modules():
        for name in _names(module):
            param = module._parameters.get(name)
            if isinstance(param, torch.nn.Parameter) and param.requires_grad:
                out.append((f"{prefix}.{name}" if prefix else name, param))
    return out


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
        ValueError: a learning rate or the weight decay is negative or not a number.
    """
    for arg, value in (("lr", lr), ("pool_lr", pool_lr), ("weight_decay", weight_decay)):
        if value is None and arg == "pool_lr":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{arg} must be a non-negative number, got {value!r}")
    pooling = [p for _, p in pooling_parameters(model)]
    ids = {id(p) for p in pooling}
    weights = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay, "name": "weights"},
              {"params": pooling, "lr": lr if pool_lr is None else pool_lr,
               "weight_decay": 0.0, "name": "pooling"}]
    return [g for g in groups if g["params"]]
