"""The multi-layer perceptron the models are built from."""

from __future__ import annotations

import torch
from torch import Tensor

#: The endings an :class:`MLP` takes (``last_activation``), by name; ``True`` is
#: ``"relu"`` and ``False`` is ``"linear"``.
ENDINGS = ("relu", "linear", "softplus")


def ending_name(last_activation: bool | str) -> str:
    """``"relu"``, ``"linear"`` or ``"softplus"`` for an MLP's ``last_activation``
    (``True`` is ``"relu"``, ``False`` ``"linear"``); ``ValueError`` naming the argument
    and the accepted values otherwise."""
    if last_activation is True:
        return "relu"
    if last_activation is False:
        return "linear"
    if isinstance(last_activation, str) and last_activation in ENDINGS:
        return last_activation
    raise ValueError(f"last_activation must be true, false or one of {', '.join(ENDINGS)}, "
                     f"got {last_activation!r}")


class MLP(torch.nn.Module):
    """``num_layers`` linear layers, a ReLU after each but (optionally) the last.

    Args:
        in_channels, hidden_channels, out_channels: widths of the input, the hidden
            layers and the output.
        num_layers: number of linear layers (at least 1).
        last_activation: how the last layer ends: ``True`` or ``"relu"`` in a ReLU, as
            Xu et al.'s message MLPs do (the outputs, and so the pooling inputs, are then
            non-negative); ``False`` or ``"linear"`` linearly (signed outputs);
            ``"softplus"`` in ``log(1 + exp(x))`` (positive outputs whose gradient never
            vanishes, so no output channel is 0 on every input, up to underflow of
            pre-activations below about -100 in float32 and -17 in float16).

    Raises:
        ValueError: ``num_layers`` is not a positive int, or ``last_activation`` (here or
            set later) is none of the above.
    """

    # Read in Python only; a scripted forward reads the ending's name, a str.
    __jit_unused_properties__ = ["last_activation", "ending"]

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int = 2, last_activation: bool | str = True) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        self.last_activation = last_activation      # checked by the setter
        widths = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.linears = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

    @property
    def last_activation(self) -> bool | str:
        """How the last layer ends, as given (``True``, ``False`` or a name); may be set
        after construction, and is checked when set."""
        return self._last_activation

    @last_activation.setter
    def last_activation(self, value: bool | str) -> None:
        self._ending = ending_name(value)
        self._last_activation = value

    @property
    def ending(self) -> str:
        """``"relu"``, ``"linear"`` or ``"softplus"``: how the last layer ends (from
        ``last_activation``)."""
        return self._ending

    def __setstate__(self, state: dict) -> None:
        # An MLP pickled before last_activation became a property kept it as an attribute.
        if "last_activation" in state:
            value = state.pop("last_activation")
            state["_last_activation"], state["_ending"] = value, ending_name(value)
        super().__setstate__(state)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_after_first(self.linears[0](x))

    def forward_after_first(self, z: Tensor) -> Tensor:
        """The MLP's output given ``z``, the output of its first linear layer (before that
        layer's activation): ``forward(x)`` is ``forward_after_first(linears[0](x))``.

        Lets a caller compute the first layer its own way, e.g. a message MLP's first
        layer per node instead of per edge (:class:`~gnpool.models.MessageMLPConv`).

        Args:
            z: ``[..., hidden_channels]`` (``out_channels`` for a one-layer MLP).
        """
        last, ending = len(self.linears) - 1, self._ending
        for i, linear in enumerate(self.linears):
            if i > 0:
                z = linear(z)
            if i < last or ending == "relu":
                z = torch.relu(z)
            elif ending == "softplus":
                z = torch.nn.functional.softplus(z)
        return z

    def __repr__(self) -> str:
        widths = [lin.in_features for lin in self.linears] + [self.linears[-1].out_features]
        return (f"{self.__class__.__name__}({' -> '.join(map(str, widths))}, "
                f"last={self.ending})")
