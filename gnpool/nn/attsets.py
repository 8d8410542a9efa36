"""AttSets: feature-wise attention over the set axis of dense ``[B, V, ...]`` tensors."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_ACTIVATIONS = (None, "tanh")
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_LAYOUT = {0: "[B, V, C]", 2: "[B, V, C, H, W]", 3: "[B, V, C, D, H, W]"}


class AttSets(torch.nn.Module):
    r"""Attentional aggregation of a set of feature vectors or feature maps.

    A shared scoring layer :math:`g` scores every element of the set; a softmax over
    the set, taken separately per channel (and per position for feature maps), turns
    the scores into weights of the element-wise weighted sum:

    .. math::
        \mathbf{s}_i = \mathrm{softmax}_{i \in X}\big(g(\mathbf{x}_i)\big), \qquad
        \mathrm{AttSets}(X) = \sum_{i \in X} \mathbf{s}_i \odot \mathbf{x}_i

    :math:`g` is a ``Linear(C, C)`` for vectors and a ``Conv2d``/``Conv3d`` with ``C``
    output channels and ``'same'`` padding for 2D/3D maps, with Xavier-uniform weights,
    zero bias and no activation. The result does not depend on the order of the set, a
    one-element set passes through unchanged, masked elements get weight exactly 0 and a
    set whose elements are all masked pools to 0 (with zero gradients). The same holds for
    scores of -inf from the scoring layer: such an element gets weight 0 and a set (channel,
    position) whose scores are all -inf pools to 0; NaN scores give NaN. fp16/bf16 inputs
    are computed in float32 and returned in their own dtype. Feature maps with no positions
    (``H``, ``W`` or ``D`` of 0) pool to the empty result, ``[B, C, 0, W]`` and so on.

    Args:
        channels: number of channels ``C`` of each element.
        spatial_dims: 0 for vectors ``[B, V, C]``, 2 for maps ``[B, V, C, H, W]``, 3 for
            volumes ``[B, V, C, D, H, W]``.
        kernel_size: odd size of the scoring convolution (maps only; default 3).
        activation: ``None`` (scores used as they are) or ``"tanh"`` (scores squashed
            into ``(-1, 1)`` before the softmax).
        bias: give the scoring layer a bias (initialised to 0).

    Raises:
        ValueError: ``channels`` not a positive int, ``spatial_dims`` not the int 0, 2 or
            3, ``kernel_size`` not a positive odd int or given for vectors, an unknown
            ``activation``; in a call, ``x`` or ``mask`` of the wrong shape.
        TypeError: ``bias`` not a bool; in a call, ``x`` not a tensor or not
            floating-point, or ``mask`` not a boolean tensor.
    """

    def __init__(self, channels: int, spatial_dims: int = 0, kernel_size: int | None = None,
                 activation: str | None = None, bias: bool = True) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if (isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int)
                or spatial_dims not in _LAYOUT):
            raise ValueError(f"spatial_dims must be 0 (vectors), 2 or 3 (feature maps), "
                             f"got {spatial_dims!r}")
        if spatial_dims == 0 and kernel_size is not None:
            raise ValueError(f"kernel_size applies to feature maps (spatial_dims 2 or 3) "
                             f"only, got kernel_size={kernel_size!r} with spatial_dims=0")
        if spatial_dims > 0:
            kernel_size = 3 if kernel_size is None else kernel_size
            if (isinstance(kernel_size, bool) or not isinstance(kernel_size, int)
                    or kernel_size < 1 or kernel_size % 2 == 0):
                raise ValueError(f"kernel_size must be a positive odd int (for 'same' "
                                 f"padding), got {kernel_size!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {bias!r} of type {type(bias).__name__}")
        self.channels, self.spatial_dims = channels, spatial_dims
        self.kernel_size, self.activation = kernel_size, activation
        if spatial_dims == 0:
            self.score = torch.nn.Linear(channels, channels, bias=bias)
        else:
            conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
            self.score = conv(channels, channels, kernel_size, padding=kernel_size // 2,
                              bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform scoring weights and zero bias, as in the released AttSets code."""
        torch.nn.init.xavier_uniform_(self.score.weight)
        if self.score.bias is not None:
            torch.nn.init.zeros_(self.score.bias)

    def _check(self, x: Tensor, mask: Tensor | None) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        layout = _LAYOUT[self.spatial_dims]
        if x.dim() != 3 + self.spatial_dims:
            raise ValueError(f"x must have shape {layout} ({3 + self.spatial_dims} dimensions) "
                             f"for spatial_dims={self.spatial_dims}, got shape {tuple(x.shape)}")
        if x.size(2) != self.channels:
            raise ValueError(f"x must have channels={self.channels} at dim 2 ({layout}), got "
                             f"shape {tuple(x.shape)}")
        if mask is None:
            return
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            got = f"dtype {mask.dtype}" if isinstance(mask, Tensor) else type(mask).__name__
            raise TypeError(f"mask must be a boolean tensor of shape [B, V], got {got}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"mask must have shape [B, V] = {tuple(x.shape[:2])} for x of "
                             f"shape {tuple(x.shape)}, got {tuple(mask.shape)}")

    def _scores(self, x: Tensor) -> Tensor:
        weight = self.score.weight.to(x.dtype)
        bias = None if self.score.bias is None else self.score.bias.to(x.dtype)
        if self.spatial_dims == 0:
            return F.linear(x, weight, bias)
        if any(size == 0 for size in x.shape[3:]):
            # No positions: nothing to score (a convolution would reject the empty map).
            return x.new_zeros(x.shape)
        conv = F.conv2d if self.spatial_dims == 2 else F.conv3d
        flat = x.flatten(0, 1)
        out = conv(flat, weight, bias, padding=self.kernel_size // 2)
        return out.view(x.shape)

    def _weights(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """``x`` (masked elements zeroed) and its attention weights, in the compute dtype."""
        dtype = torch.float32 if x.dtype in _LOW_PRECISION else x.dtype
        x = x.to(dtype)
        keep = None
        if mask is not None:
            keep = mask.to(x.device).view(mask.shape + (1,) * (x.dim() - 2))
            # Zeroed padding cannot leak NaN/inf into the scores or the sum.
            x = x.masked_fill(~keep, 0)
        scores = self._scores(x)
        if self.activation == "tanh":
            scores = torch.tanh(scores)
        if keep is not None:
            # -inf gives masked elements weight exactly 0.
            scores = scores.masked_fill(~keep, -math.inf)
        # Where every score of a set is -inf (all elements masked, or -inf from the scoring
        # layer) a softmax is NaN: those sets get finite stand-in scores and weights 0, so
        # they pool to 0 with zero gradients. NaN scores stay NaN.
        if scores.size(1) == 0:  # no elements at all: amax has nothing to reduce
            return x, scores
        dead = scores.amax(1, keepdim=True) == -math.inf
        scores = scores.masked_fill(dead, 0.0)
        # softmax subtracts the per-set, per-channel max before exp.
        weights = torch.softmax(scores, dim=1).masked_fill(dead, 0.0)
        return x, weights

    def attention_weights(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        r"""The weights :math:`\mathbf{s}_i`, shaped like ``x``; each set's weights sum to 1
        per channel (0 for an all-masked set)."""
        self._check(x, mask)
        return self._weights(x, mask)[1].to(x.dtype)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """
        Args:
            x: sets ``[B, V, C]``, ``[B, V, C, H, W]`` or ``[B, V, C, D, H, W]``.
            mask: boolean ``[B, V]``, ``True`` for the elements present (default: all).

        Returns:
            ``x`` pooled over ``V``: ``[B, C]``, ``[B, C, H, W]`` or ``[B, C, D, H, W]``.
        """
        self._check(x, mask)
        values, weights = self._weights(x, mask)
        return (weights * values).sum(1).to(x.dtype)

    def __repr__(self) -> str:
        parts = [str(self.channels)]
        if self.spatial_dims:
            parts += [f"spatial_dims={self.spatial_dims}", f"kernel_size={self.kernel_size}"]
        if self.activation is not None:
            parts.append(f"activation={self.activation!r}")
        if self.score.bias is None:
            parts.append("bias=False")
        return f"{self.__class__.__name__}({', '.join(parts)})"
