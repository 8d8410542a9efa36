"""A DeepSets model (encoder, pooling, decoder) with pluggable pooling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .mlp import MLP
from .pooling import Pooling, resolve_pooling


class DeepSets(torch.nn.Module):
    r"""``decoder(pool_{x in X} encoder(x))`` over sets given by ``index`` or ``ptr``.

    Args:
        in_channels: element width.
        out_channels: target width.
        hidden_channels: width of the encoder's and decoder's hidden layers and of the
            pooled representation.
        pooling, pooling_kwargs: any PyG aggregation name or module, ``'gnp'`` and
            ``'attsets'`` included (see :func:`~gnpool.models.pooling.resolve_pooling`),
            and keyword arguments for a name.
        encoder_layers: linear layers of the element-wise encoder.
        decoder_layers: linear layers of the decoder (its last layer is linear).
        last_activation: end the encoder in a ReLU (``True``), so the pooling sees
            non-negative inputs; ``False`` ends it linearly, ``"softplus"`` in a softplus
            (strictly positive inputs; see :class:`~gnpool.models.MLP`).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 64,
                 pooling: Pooling = "sum", *, pooling_kwargs: Mapping[str, Any] | None = None,
                 encoder_layers: int = 2, decoder_layers: int = 1,
                 last_activation: bool | str = True) -> None:
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("hidden_channels", hidden_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        self.encoder = MLP(in_channels, hidden_channels, hidden_channels, encoder_layers,
                           last_activation)
        self.pooling = resolve_pooling(pooling, hidden_channels, pooling_kwargs)
        self.decoder = MLP(hidden_channels, hidden_channels, out_channels, decoder_layers,
                           last_activation=False)

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None) -> Tensor:
        """``[num_sets, out_channels]``; one set when neither ``index`` nor ``ptr`` is given."""
        # PyG's Aggregation pools everything into one set when neither is given.
        return self.decoder(self.pooling(self.encoder(x), index, ptr=ptr, dim_size=dim_size))
