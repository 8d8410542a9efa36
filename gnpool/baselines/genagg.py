"""GenAgg, the augmented f-mean (Kortvelesy, Morad and Prorok, NeurIPS 2023), as a PyG
aggregation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ._sets import check_channels, per_set, restore, segment_sum, set_rows
from .bijections import Bijection, monotone, monotone_inverse

Init = float | Sequence[float] | Tensor

# The learned f's slope never drops below this, so its inverse stays well conditioned
# (|dx/dy| <= 1 / _MIN_SLOPE).
_MIN_SLOPE = 1e-3


class GenAggAggregation(Aggregation):
    r"""GenAgg: a generalised f-mean with a learned invertible ``f`` (Kortvelesy, Morad and
    Prorok, "Generalised f-Mean Aggregation for Graph Neural Networks", NeurIPS 2023).

    .. math::
        \mathrm{GenAgg}(X) = f^{-1}\Big(n^{\alpha - 1} \sum_{x_i \in X}
                                          f(x_i - \beta \mu)\Big), \qquad
        n = |X|, \ \mu = \mathrm{mean}(X)

    ``alpha`` sets how the output grows with the set size (0: a mean, 1: a sum) and
    ``beta`` centres the inputs (1 gives central moments such as the standard deviation).
    With a fixed ``f`` from :mod:`gnpool.baselines.bijections` the module computes the
    special cases of Table 1 of the paper: mean (``Identity``, alpha 0), sum
    (``Identity``, alpha 1), product (``Log``, alpha 1), geometric mean (``Log``, alpha 0),
    harmonic mean (``Power(-1)``), RMS (``Power(2)``), Euclidean norm (``Power(2)``,
    alpha 1), standard deviation (``Power(2)``, beta 1), log-sum-exp (``Exp(1)``, alpha 1)
    and, as limits of large ``|p|``, max and min (``Exp(+-p)``) and max and min magnitude
    (``Power(+-p)``).

    The learned ``f`` (``f=None``) differs from the paper's, which trains two MLPs for
    ``f`` and ``f^{-1}`` with a loss that makes them inverse to each other: here ``f`` is
    invertible by construction,

    .. math::
        f(x) = c\,x + \sum_{k=1}^{K} w_k \tanh(a_k x + b_k), \quad
        c = 10^{-3} + \mathrm{softplus}(\cdot),\ w_k, a_k = \mathrm{softplus}(\cdot) \ge 0,

    strictly increasing with ``f' >= c``, and its inverse is computed numerically
    (bisection on an exact bracket, then one Newton step whose gradient is the implicit
    one; see :func:`~gnpool.baselines.bijections.monotone_inverse`). Like the paper's
    MLPs, ``f`` is linear far from the origin. Initialisation: ``c = 1``,
    ``w_k = softplus(-4) = 0.018``, ``a_k = 1``, ``b_k`` evenly spread over [-3, 3], so the
    module starts close to the mean (``alpha = beta = 0``, the paper's initial values).

    Args:
        channels: 1 shares ``f``, ``alpha`` and ``beta`` across channels (the paper);
            ``F`` gives each of the ``F`` channels (``x.size(-1)``) its own.
        alpha, beta: initial values (a float or ``channels`` values).
        f: a fixed :class:`~gnpool.baselines.bijections.Bijection`, or ``None`` to learn
            ``f`` as above.
        hidden: the number ``K`` of tanh terms of the learned ``f``.
        learn: train ``alpha``, ``beta`` and the learned ``f`` (``False`` keeps them as
            buffers).

    Shapes: ``x`` is ``[..., E, ..., F]`` with the elements along ``dim`` (not the last
    dimension); the output has ``dim_size`` sets along ``dim``. fp16/bf16 inputs are
    computed in float32. An empty set pools to 0. Inputs outside a fixed ``f``'s domain
    (e.g. ``x <= 0`` for ``Log``) give what the formula gives (NaN or inf).

    Raises:
        ValueError: a non-positive ``channels`` or ``hidden``, an initial value with neither
            1 nor ``channels`` entries or not finite, ``x`` whose last dimension is not
            ``channels`` (when ``channels > 1``), or a bad ``dim``/``index``/``ptr``/
            ``dim_size``.
        TypeError: ``f`` is not a ``Bijection`` or ``None``; ``x`` not floating-point.
    """

    #: The parameters an optimiser should treat as pooling parameters (those of the
    #: learned ``f`` exist only when ``f`` is learned).
    pooling_parameter_names = ("alpha", "beta", "f_slope", "f_weight", "f_scale", "f_shift")

    def __init__(self, channels: int = 1, alpha: Init = 0.0, beta: Init = 0.0,
                 f: Bijection | None = None, hidden: int = 8, learn: bool = True) -> None:
        super().__init__()
        for arg, value in (("channels", channels), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        if f is not None and not isinstance(f, Bijection):
            raise TypeError(f"f must be a gnpool.baselines.bijections.Bijection or None, "
                            f"got {type(f).__name__}")
        self.channels, self.hidden, self.learn, self.f = channels, hidden, learn, f
        self._init = {"alpha": alpha, "beta": beta}
        shapes = {"alpha": (channels,), "beta": (channels,)}
        if f is None:
            shapes.update(f_slope=(channels,), f_weight=(channels, hidden),
                          f_scale=(channels, hidden), f_shift=(channels, hidden))
        for name in self.pooling_parameter_names:
            if name not in shapes:
                self.register_parameter(name, None)
            elif learn:
                self.register_parameter(name, torch.nn.Parameter(torch.zeros(shapes[name])))
            else:
                self.register_buffer(name, torch.zeros(shapes[name]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for name, init in self._init.items():
                value = torch.as_tensor(init, dtype=torch.float32).reshape(-1)
                if value.numel() not in (1, self.channels):
                    raise ValueError(f"{name} must have 1 or channels={self.channels} values, "
                                     f"got {value.numel()}")
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(f"{name} must be finite, got {value.tolist()}")
                getattr(self, name).copy_(value.expand(self.channels))
            if self.f is None:
                # softplus^-1(1 - _MIN_SLOPE): c starts at exactly 1.
                self.f_slope.fill_(float(torch.tensor(1 - _MIN_SLOPE).expm1().log()))
                self.f_weight.fill_(-4.0)
                self.f_scale.fill_(float(torch.tensor(1.0).expm1().log()))
                self.f_shift.copy_(torch.linspace(-3.0, 3.0, self.hidden).expand_as(self.f_shift))

    def f_parameters(self, dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """The learned ``f``'s ``(c, w, a, b)``: ``[channels]`` and three
        ``[channels, hidden]`` tensors."""
        if self.f is not None:
            raise ValueError("f is fixed; f_parameters exist only for a learned f")
        softplus = torch.nn.functional.softplus
        c = _MIN_SLOPE + softplus(self.f_slope)
        w, a, b = softplus(self.f_weight), softplus(self.f_scale), self.f_shift
        return tuple(t if dtype is None else t.to(dtype) for t in (c, w, a, b))

    def f_forward(self, x: Tensor) -> Tensor:
        """``f(x)`` element-wise, channels in the last dimension of ``x``."""
        if self.f is not None:
            return self.f(x)
        return monotone(x, *self.f_parameters(x.dtype))

    def f_inverse(self, y: Tensor) -> Tensor:
        """``f^{-1}(y)`` element-wise, channels in the last dimension of ``y``."""
        if self.f is not None:
            return self.f.inverse(y)
        return monotone_inverse(y, *self.f_parameters(y.dtype))

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        if self.channels > 1:
            check_channels(x, self.channels, "channels")
        rows, seg, d = set_rows(x, index, ptr, dim_size, dim, type(self).__name__)
        dtype = rows.dtype
        alpha, beta = self.alpha.to(dtype), self.beta.to(dtype)
        count = per_set(seg.count, rows)
        size = count.clamp_min(1)
        mean = segment_sum(rows, seg) / size
        centred = rows - beta * mean[seg.index]
        scaled = torch.exp((alpha - 1) * size.log()) * segment_sum(self.f_forward(centred), seg)
        # An empty set inverts f(1) instead of f's value at 0 (which may be infinite), so
        # that its masked-out branch stays finite in backward as well.
        scaled = torch.where(count > 0, scaled, self.f_forward(torch.ones_like(scaled)))
        out = self.f_inverse(scaled)
        out = torch.where(count > 0, out, torch.zeros_like(out))
        return restore(out, d, x.dtype)

    def __repr__(self) -> str:
        f = f"f={self.f!r}" if self.f is not None else f"f=learned(hidden={self.hidden})"
        parts = [f"channels={self.channels}", f]
        for name in ("alpha", "beta"):
            value = getattr(self, name).detach().float()
            parts.append(f"{name}={value.mean().item():.3f}" if value.numel() == 1 else
                         f"{name}=mean {value.mean().item():.3f}")
        return f"{self.__class__.__name__}({', '.join(parts)})"
