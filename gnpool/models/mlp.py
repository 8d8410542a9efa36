"""The multi-layer perceptron the models are built from."""

from __future__ import annotations

import torch
from torch import Tensor


class MLP(torch.nn.Module):
    """``num_layers`` linear layers, a ReLU after each but (optionally) the last.

    Args:
        in_channels, hidden_channels, out_channels: widths of the input, the hidden
            layers and the output.
        num_layers: number of linear layers (at least 1).
        last_activation: end in a ReLU too, as Xu et al.'s message MLPs do (their
            outputs, and so the pooling inputs, are then non-negative).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, last_activation: bool = True) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        widths = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.linears = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.last_activation = last_activation

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.linears) - 1
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < last or self.last_activation:
                x = torch.relu(x)
        return x

    def __repr__(self) -> str:
        widths = [lin.in_features for lin in self.linears] + [self.linears[-1].out_features]
        end = "relu" if self.last_activation else "linear"
        return f"{self.__class__.__name__}({' -> '.join(map(str, widths))}, last={end})"
