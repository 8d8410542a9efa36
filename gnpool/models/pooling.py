"""Turn a pooling argument (a PyG aggregation string or module) into one module per use."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch_geometric.nn.aggr as pyg_aggr
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.resolver import normalize_string

from ..aggr import GNPAggregation, register
from ..baselines import is_set_readout, pyg_set_readout

#: A pooling argument: a name PyG's ``aggregation_resolver`` knows ('sum', 'max',
#: 'powermean', 'gnp', 'attsets', 'laf', 'genagg', ...) or an :class:`Aggregation` module
#: (copied per use).
Pooling = str | Aggregation


def aggregation_class(name: str) -> type[Aggregation]:
    """The :class:`Aggregation` class PyG resolves ``name`` to (gnpool's included)."""
    register()
    query = normalize_string(name)
    for cls in vars(pyg_aggr).values():
        if isinstance(cls, type) and issubclass(cls, Aggregation):
            key = normalize_string(cls.__name__)
            if query in (key, key.replace("aggregation", "")):
                return cls
    if query == "add":
        return pyg_aggr.SumAggregation
    raise ValueError(f"pooling={name!r} is not a PyG aggregation; expected a name such as "
                     "'sum', 'mean', 'max', 'min', 'powermean', 'softmax', 'gnp', 'attsets', "
                     "'laf', 'genagg' or 'deepsets'")


def resolve_pooling(pooling: Pooling, channels: int,
                    kwargs: Mapping[str, Any] | None = None) -> Aggregation:
    """A fresh aggregation module for ``channels`` input features.

    A string is resolved like PyG does, with ``kwargs`` passed to the class; when they do
    not say otherwise, ``in_channels`` (AttSets) and, for learnable aggregations,
    ``channels`` (GNP, learnable PowerMean and Softmax) are set to ``channels`` so that
    every feature channel learns its own parameters. PyG's set aggregations
    ``'deepsets'``, ``'settransformer'`` and ``'variancepreserving'`` are built by
    :func:`~gnpool.baselines.pyg_set_readout` for ``channels`` features (PyG's
    ``DeepSetsAggregation()`` without networks would be a plain sum). A module is
    deep-copied, so layers never share parameters.
    """
    kwargs = dict(kwargs or {})
    if isinstance(pooling, Aggregation):
        if kwargs:
            raise ValueError(f"pooling kwargs={kwargs!r} apply only to a pooling given by "
                             f"name, got the module {pooling!r}")
        return copy.deepcopy(pooling)
    if not isinstance(pooling, str):
        raise TypeError(f"pooling must be a str or an Aggregation, got {type(pooling).__name__}")
    if is_set_readout(pooling):
        return pyg_set_readout(pooling, channels, **kwargs)
    cls = aggregation_class(pooling)
    params = inspect.signature(cls.__init__).parameters
    if "in_channels" in params and "in_channels" not in kwargs:
        kwargs["in_channels"] = channels
    learn = kwargs.get("learn", getattr(params.get("learn"), "default", False))
    if "channels" in params and "channels" not in kwargs and learn is True:
        kwargs["channels"] = channels
    return cls(**kwargs)


def per_layer(pooling: Pooling | Sequence[Pooling], num_layers: int,
              name: str) -> list[Pooling]:
    """``pooling`` repeated for ``num_layers`` layers, or checked if given per layer."""
    if isinstance(pooling, (str, Aggregation)):
        return [pooling] * num_layers
    items = list(pooling)
    if len(items) != num_layers:
        raise ValueError(f"{name} must be one pooling or one per layer ({num_layers}), "
                         f"got {len(items)}")
    return items


@torch.no_grad()
def gnp_parameters(module: torch.nn.Module) -> list[dict[str, Any]]:
    """The learned parameters of every GNP inside ``module``, in module order: its native
    ``p_unit``, ``beta``, ``p_neg_unit``, ``beta_neg`` and the classic ``p``, ``q``,
    ``p_neg``, ``q_neg`` (``+-inf`` at max and min), each as a list of per-channel
    floats, with the module's name."""
    out = []
    for name, sub in module.named_modules():
        if isinstance(sub, GNPAggregation):
            row: dict[str, Any] = {"name": name}
            for key in (*GNPAggregation.pooling_parameter_names, "p", "q", "p_neg", "q_neg"):
                value: Tensor = getattr(sub, key)
                row[key] = [round(float(v), 6) for v in value.detach().cpu().reshape(-1)]
            out.append(row)
    return out
