"""AttSets as a PyTorch Geometric aggregation."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.parameter import UninitializedParameter
from torch_geometric.nn.aggr import Aggregation

from ..functional import attsets_linear
from ..functional._sets import check_features
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

    With ``in_channels=-1`` (the default, as in PyG's lazy modules) the scoring layer is
    created on the first call, from ``x.size(-1)``; this is what PyG builds from the string
    ``aggr="attsets"`` (after :func:`gnpool.register`), which passes no ``in_channels``.
    Call the model once before building its optimizer, and outside ``torch.compile``.
    A lazy module loads a ``state_dict`` of a materialised one.

    fp16/bf16 inputs are computed in float32 and float64 inputs in float64 (the scoring
    layer's parameters converted to it for the call, as in the dense
    :class:`gnpool.nn.AttSets`); the output has the dtype of ``x``.

    Args:
        in_channels: number of features ``F`` (``x.size(-1)``), or ``-1`` to infer it on
            the first call.
        activation: ``None`` (default) or ``"tanh"`` applied to the scores.
        per_channel: ``True`` scores every channel (``Linear(F, F)``); ``False`` gives one
            score per element shared by all channels (``Linear(F, 1)``).
        bias: whether the scoring layer has a bias (initialised to zero).
        backend: kernel backend passed to :func:`gnpool.functional.attsets`.

    Raises:
        TypeError: ``per_channel`` or ``bias`` not a bool; in a call, ``x`` not a tensor or
            not floating-point (checked before a lazy module materialises). A module
            compiled with ``torch.jit.script`` raises it as ``torch.jit.Error``.
        ValueError: ``in_channels`` neither a positive int nor ``-1``, an unknown
            ``activation``; in a call, ``x`` with fewer than 2 dimensions, a last
            dimension other than ``in_channels``, or (lazy module) no features to infer
            ``in_channels`` from; a scoring layer whose ``weight`` or ``bias`` was replaced
            by one of another shape (:func:`gnpool.functional.attsets_linear`).
        NotImplementedError: in a call, ``x`` or a weight under forward-mode AD
            (``torch.func.jvp``, ``torch.autograd.forward_ad``) or a ``torch.func``
            transform: AttSets has a reverse-mode derivative only. Not detected (the
            tangent comes out zero): a module compiled with ``torch.jit.script``, and
            ``forward_ad`` dual tensors inside ``torch.compile``.
    """

    def __init__(self, in_channels: int = -1, activation: str | None = None,
                 per_channel: bool = True, bias: bool = True,
                 backend: str | None = None) -> None:
        super().__init__()
        if (isinstance(in_channels, bool) or not isinstance(in_channels, int)
                or (in_channels < 1 and in_channels != -1)):
            raise ValueError(f"in_channels must be a positive int, or -1 to infer it from the "
                             f"first input, got {in_channels!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        for name, flag in (("per_channel", per_channel), ("bias", bias)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r} of type "
                                f"{type(flag).__name__}")
        self.activation, self.per_channel, self.backend = activation, per_channel, backend
        if in_channels == -1:
            # The number of scores (F or 1) is set when F is known, before materialising.
            self.score: torch.nn.Linear = torch.nn.LazyLinear(1, bias=bias)
        else:
            self.score = torch.nn.Linear(in_channels, in_channels if per_channel else 1,
                                         bias=bias)
        self.reset_parameters()

    def _lazy(self) -> bool:
        # isinstance rather than torch.nn.parameter.is_lazy, which torch.compile cannot trace.
        return isinstance(self.score.weight, UninitializedParameter)

    @property
    def in_channels(self) -> int:
        """The number of features, ``-1`` until a lazy module's first call."""
        return -1 if self._lazy() else self.score.weight.size(1)

    def reset_parameters(self) -> None:
        if self._lazy():
            return
        torch.nn.init.xavier_uniform_(self.score.weight)
        if self.score.bias is not None:
            torch.nn.init.zeros_(self.score.bias)

    def _materialize(self, x: Tensor) -> None:
        features = x.size(-1)
        if self.per_channel:
            self.score.out_features = features
        # Calling the lazy layer once (on no rows) materialises it through torch's own hooks;
        # the rows have the parameters' dtype, whatever x's (fp16, float64) is.
        with torch.no_grad():
            self.score(torch.empty(0, features, dtype=self.score.weight.dtype,
                                   device=x.device))
        self.reset_parameters()

    def __call__(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                 dim_size: int | None = None, dim: int = -2, **kwargs) -> Tensor:
        if not isinstance(x, Tensor):   # PyG would fail on x.dim() (AttributeError)
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        # PyG's own check would only say that dim=-2 is invalid for a 1-D tensor.
        if x.dim() < 2:
            raise ValueError(f"x must have at least 2 dimensions, [..., elements, features] "
                             f"with the elements along dim={dim} and the features last, got "
                             f"shape {tuple(x.shape)}; with one feature per element pass "
                             f"x.unsqueeze(-1)")
        return super().__call__(x, index, ptr=ptr, dim_size=dim_size, dim=dim, **kwargs)

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        if torch.jit.is_scripting():
            # TorchScript compiles this branch only: the operators, backend chosen at run time.
            if x.size(-1) != self.score.weight.size(1):
                raise ValueError("x must have in_channels features in its last dimension")
            return attsets_linear_script(x, self.score.weight, self.score.bias,
                                         self.activation, index, ptr, dim_size, dim)
        return self._forward(x, index, ptr, dim_size, dim)

    @torch.jit.unused
    def _forward(self, x: Tensor, index: Tensor | None, ptr: Tensor | None,
                 dim_size: int | None, dim: int) -> Tensor:
        check_features("x", x)  # before a lazy module materialises on an integer x
        if self._lazy():
            if x.size(-1) == 0:
                raise ValueError(f"x must have at least one feature in its last dimension for "
                                 f"a lazy AttSetsAggregation to infer in_channels from, got "
                                 f"shape {tuple(x.shape)}")
            self._materialize(x)
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
