"""PyG's own learnable set aggregations, built as readouts for a given width."""

from __future__ import annotations

from typing import Any

import torch
from torch_geometric.nn.aggr import (
    Aggregation,
    DeepSetsAggregation,
    SetTransformerAggregation,
    VariancePreservingAggregation,
)
from torch_geometric.resolver import normalize_string

#: The names :func:`pyg_set_readout` builds (PyG's class names without "Aggregation").
SET_READOUTS = ("deepsets", "settransformer", "variancepreserving")


def _mlp(channels: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(channels, channels), torch.nn.ReLU(),
                               torch.nn.Linear(channels, channels))


def is_set_readout(name: str) -> bool:
    """Whether ``name`` (any spelling PyG accepts, e.g. ``"set_transformer"``) is one of
    :data:`SET_READOUTS`."""
    return normalize_string(name).removesuffix("aggregation") in SET_READOUTS


def pyg_set_readout(name: str, channels: int, **kwargs: Any) -> Aggregation:
    """PyG's ``DeepSetsAggregation``, ``SetTransformerAggregation`` or
    ``VariancePreservingAggregation`` as a readout from ``channels`` to ``channels``
    features.

    The constructor arguments PyG leaves to the user are chosen here (``kwargs`` override
    them):

    - ``"deepsets"``: ``local_nn`` (phi) and ``global_nn`` (rho) are each
      ``Linear(F, F) - ReLU - Linear(F, F)`` (plain ``Sequential``s, so PyG's MLP batch
      norm is not involved): ``rho(sum_i phi(x_i))``. Without them PyG's module would
      be a plain sum.
    - ``"settransformer"``: one seed point (so the output has ``F`` features), one
      encoder and one decoder set-attention block (PyG's defaults), 4 heads when ``F``
      is divisible by 4 (else 2, else 1), no layer norm, no dropout. PyG's module
      requires the elements of each set to be contiguous and sets in order (a sorted
      ``index``), which a batch vector is; as a neighbourhood aggregation it needs an
      ``edge_index`` sorted by destination.
    - ``"variancepreserving"``: ``sum_i x_i / sqrt(n)``, no parameters.

    Raises:
        ValueError: ``name`` is not one of :data:`SET_READOUTS` or ``channels`` is not a
            positive int.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    key = normalize_string(name).removesuffix("aggregation") if isinstance(name, str) else None
    if key == "deepsets":
        args = {"local_nn": _mlp(channels), "global_nn": _mlp(channels), **kwargs}
        return DeepSetsAggregation(**args)
    if key == "settransformer":
        heads = next(h for h in (4, 2, 1) if channels % h == 0)
        args = {"channels": channels, "num_seed_points": 1, "num_encoder_blocks": 1,
                "num_decoder_blocks": 1, "heads": heads, "layer_norm": False,
                "dropout": 0.0, **kwargs}
        return SetTransformerAggregation(**args)
    if key == "variancepreserving":
        return VariancePreservingAggregation(**kwargs)
    raise ValueError(f"name={name!r} is not one of PyG's set readouts; expected one of "
                     f"{', '.join(SET_READOUTS)}")
