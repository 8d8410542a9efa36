"""GNP as a PyTorch Geometric aggregation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ..functional import P_MAX, P_MIN, gnp

Init = float | Sequence[float] | Tensor

#: The classic poolings as (p, q, p_neg, q_neg); "inf" stands for the module's p_max.
CLASSIC = {
    "sum": (1.0, 0.0, 1.0, 0.0),
    "mean": (1.0, 1.0, 1.0, 1.0),
    "max": (math.inf, 1.0, -math.inf, 1.0),
    "min": (-math.inf, 1.0, math.inf, 1.0),
}

# Keeps the reparameterisation invertible at the ends of [p_min, p_max].
_EDGE = 1e-6


class GNPAggregation(Aggregation):
    r"""Generalized norm-based pooling with trainable exponent and size normalisation.

    .. math::
        G_{p,q}(Y) = \Big(|X|^{-q} \sum_{y \in Y} y^p\Big)^{1/p}, \qquad
        \mathrm{GNP}(X) = G_{p,q}(\mathrm{relu}(X)) - G_{p^-,q^-}(\mathrm{relu}(-X))

    One module covers sum (``p=1, q=0``), mean (``p=1, q=1``), max
    (``p -> p_max, p_neg -> -p_max``), min (``p -> -p_max, p_neg -> p_max``), RMS,
    L^p norms and everything between, so a model can learn its pooling.

    The sign of each exponent is fixed at construction and its magnitude is
    reparameterised as ``|p| = p_min * (p_max / p_min) ** sigmoid(theta)``: ``p``
    never reaches the singularity at 0 nor leaves ``[p_min, p_max]``, and its gradient
    never becomes exactly zero. ``q`` is unconstrained.

    Args:
        channels: 1 shares the parameters across channels; ``F`` gives each of the
            ``F`` input channels (``x.size(-1)``) its own.
        p, q: initial exponent and size normalisation of the positive part (a float,
            or ``channels`` values).
        p_neg, q_neg: the same for the negative part (default: ``p`` and ``q``).
        learn: train the parameters (``False`` gives a fixed parametric pooling).
        p_min, p_max: bounds of ``|p|`` within ``[P_MIN, P_MAX]``.
        backend: kernel backend passed to :func:`gnpool.functional.gnp`.
    """

    def __init__(self, channels: int = 1, p: Init = 1.0, q: Init = 0.0,
                 p_neg: Init | None = None, q_neg: Init | None = None, learn: bool = True,
                 p_min: float = P_MIN, p_max: float = P_MAX,
                 backend: str | None = None) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if not P_MIN <= p_min < p_max <= P_MAX:
            raise ValueError(f"p_min and p_max must satisfy {P_MIN} <= p_min < p_max <= {P_MAX},"
                             f" got p_min={p_min}, p_max={p_max}")
        self.channels, self.learn, self.backend = channels, learn, backend
        self.p_min, self.p_max = float(p_min), float(p_max)
        p_neg = p if p_neg is None else p_neg
        q_neg = q if q_neg is None else q_neg
        self._init = {"p": p, "q": q, "p_neg": p_neg, "q_neg": q_neg}
        for name in ("p", "p_neg"):
            self.register_buffer(f"{name}_sign", torch.ones(channels))
            self._add(f"{name}_logit")
        for name in ("q", "q_neg"):
            self._add(name)
        self.reset_parameters()

    @classmethod
    def from_pooling(cls, name: str, channels: int = 1, learn: bool = True,
                     **kwargs) -> GNPAggregation:
        """A GNP initialised at a classic pooling: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.

        Max and min use ``|p| = p_max`` and ``q = 1``; they match the exact max/min of a
        non-negative set of ``n`` elements within a relative ``1 - n^(-1/p_max)``.
        """
        if name not in CLASSIC:
            raise ValueError(f"name must be one of {sorted(CLASSIC)}, got {name!r}")
        p_max = kwargs.get("p_max", P_MAX)
        p, q, p_neg, q_neg = (math.copysign(p_max, v) if math.isinf(v) else v
                              for v in CLASSIC[name])
        return cls(channels, p=p, q=q, p_neg=p_neg, q_neg=q_neg, learn=learn, **kwargs)

    def _add(self, name: str) -> None:
        value = torch.zeros(self.channels)
        if self.learn:
            self.register_parameter(name, torch.nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def _values(self, name: str) -> Tensor:
        value = torch.as_tensor(self._init[name], dtype=torch.float32).reshape(-1)
        if value.numel() not in (1, self.channels):
            raise ValueError(f"{name} must have 1 or channels={self.channels} values, "
                             f"got {value.numel()}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite, got {value.tolist()}")
        return value.expand(self.channels)

    def reset_parameters(self) -> None:
        span = math.log(self.p_max / self.p_min)
        with torch.no_grad():
            for name in ("p", "p_neg"):
                value = self._values(name)
                mag = value.abs()
                if bool(((mag < self.p_min * (1 - 1e-6)) | (mag > self.p_max * (1 + 1e-6))).any()):
                    raise ValueError(f"{name} must satisfy {self.p_min} <= |{name}| <= "
                                     f"{self.p_max}, got {value.tolist()}")
                unit = (torch.log(mag / self.p_min) / span).clamp(_EDGE, 1 - _EDGE)
                getattr(self, f"{name}_sign").copy_(torch.sign(value))
                getattr(self, f"{name}_logit").copy_(torch.logit(unit))
            for name in ("q", "q_neg"):
                getattr(self, name).copy_(self._values(name))

    def _exponent(self, name: str) -> Tensor:
        logit = getattr(self, f"{name}_logit")
        mag = self.p_min * torch.exp(math.log(self.p_max / self.p_min) * torch.sigmoid(logit))
        return getattr(self, f"{name}_sign") * mag

    @property
    def p(self) -> Tensor:
        """Current exponent of the positive part, ``[channels]``."""
        return self._exponent("p")

    @property
    def p_neg(self) -> Tensor:
        """Current exponent of the negative part, ``[channels]``."""
        return self._exponent("p_neg")

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        return gnp(x, index=index, ptr=ptr, dim_size=dim_size, dim=dim, p=self.p, q=self.q,
                   p_neg=self.p_neg, q_neg=self.q_neg, backend=self.backend)

    @torch.no_grad()
    def closest_pooling(self) -> str | list[str]:
        """The classic pooling whose outputs the current parameters reproduce best.

        Measured, not read off the parameters: GNP and sum, mean, max and min pool a
        fixed bank of random sets (sizes 2 to 50, non-negative and mixed-sign), and the
        one with the smallest mean error relative to each set's mean magnitude wins.
        Returns one name, or one per channel when ``channels > 1``.
        """
        gen = torch.Generator().manual_seed(0)
        sizes = torch.tensor([2, 3, 5, 8, 13, 21, 34, 50] * 4)
        index = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
        x = torch.rand(index.numel(), self.channels, generator=gen, dtype=torch.float64)
        mixed = (index >= sizes.numel() // 2).view(-1, 1)
        x = torch.where(mixed, 2 * x - 1, x)
        num = sizes.numel()
        cols = index.view(-1, 1).expand_as(x)

        def reduce(values: Tensor, how: str) -> Tensor:
            out = torch.zeros(num, self.channels, dtype=torch.float64)
            return out.scatter_reduce_(0, cols, values, how, include_self=False)

        scale = reduce(x.abs(), "mean")
        out = gnp(x, index, dim_size=num, p=self.p.double(), q=self.q.double(),
                  p_neg=self.p_neg.double(), q_neg=self.q_neg.double())
        names = sorted(CLASSIC)
        how = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin"}
        errors = [((out - reduce(x, how[name])).abs() / scale).mean(0) for name in names]
        best = torch.stack(errors).argmin(0).tolist()
        result = [names[i] for i in best]
        return result[0] if self.channels == 1 else result

    def __repr__(self) -> str:
        parts = [f"channels={self.channels}"]
        for name in ("p", "q", "p_neg", "q_neg"):
            value = getattr(self, name).detach().float()
            if value.numel() == 1:
                parts.append(f"{name}={value.item():.3f}")
            else:
                parts.append(f"{name}=mean {value.mean().item():.3f} "
                             f"[{value.min().item():.3f}, {value.max().item():.3f}]")
        parts.append(f"learn={self.learn}")
        return f"{self.__class__.__name__}({', '.join(parts)})"
