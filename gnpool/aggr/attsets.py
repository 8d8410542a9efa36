"""AttSets as a PyTorch Geometric aggregation."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ..functional import attsets_linear
from ..functional.attsets import attsets_linear_script

_ACTIVATIONS = (None, "tanh")


class AttSetsAggregation(Aggregation):
    r"""Feature-wise attention over a set (AttSets, Yang et al., IJCV 2019).

    .. math::
        s = \mathrm{softmax}_{\text{set}}\big(g(x_i)\big) \ \text{(per channel)}, \qquad
        \mathrm{out} = \sum_i s_i \odot x_i

    The scoring layer ``g`` is one ``Linear(F, F)`` with Xavier-uniform weights, zero bias
    and no activation, as in the released code; each channel gets its own softmax over
    the set. It computes the same function as
    ``AttentionalAggregation(gate_nn=Linear(F, F))`` with less time and memory: the
    attention weights are recomputed in backward instead of stored.

    Args:
        in_channels: number of features ``F`` (``x.size(-1)``).
        activation: ``None`` (default) or ``"tanh"`` applied to the scores.
        per_channel: ``True`` scores every channel (``Linear(F, F)``); ``False`` gives one
            score per element shared by all channels (``Linear(F, 1)``).
        bias: whether the scoring layer has a bias (initialised to zero).
        backend: kernel backend passed to :func:`gnpool.functional.attsets`.
    """

    def __init__(self, in_channels: int, activation: str | None = None,
                 per_channel: bool = True, bias: bool = True,
                 backend: str | None = None) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        self.in_channels, self.activation = in_channels, activation
        self.per_channel, self.backend = per_channel, backend
        self.score = torch.nn.Linear(in_channels, in_channels if per_channel else 1, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.score.weight)
        if self.score.bias is not None:
            torch.nn.init.zeros_(self.score.bias)

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        if torch.jit.is_scripting():
            # TorchScript compiles this branch only: the operators, backend chosen at run time.
            if x.size(-1) != self.in_channels:
                raise ValueError("x must have in_channels features in its last dimension")
            return attsets_linear_script(x, self.score.weight, self.score.bias,
                                         self.activation, index, ptr, dim_size, dim)
        return self._forward(x, index, ptr, dim_size, dim)

    @torch.jit.unused
    def _forward(self, x: Tensor, index: Tensor | None, ptr: Tensor | None,
                 dim_size: int | None, dim: int) -> Tensor:
        if x.size(-1) != self.in_channels:
            raise ValueError(f"x must have in_channels={self.in_channels} features in its last "
                             f"dimension, got shape {tuple(x.shape)}")
        return attsets_linear(x, self.score.weight, self.score.bias, self.activation,
                              index=index, ptr=ptr, dim_size=dim_size, dim=dim,
                              backend=self.backend)

    def __repr__(self) -> str:
        extra = "" if self.activation is None else f", activation={self.activation!r}"
        extra += "" if self.per_channel else ", per_channel=False"
        return f"{self.__class__.__name__}({self.in_channels}{extra})"
