"""LAF, learnable aggregation functions (Pellegrini et al., IJCAI 2021), as a PyG aggregation."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ._sets import check_channels, per_set, restore, segment_extreme, segment_sum, set_rows

# Elements of the largest temporary of powers (about 128 MB in float32).
_CHUNK_ELEMENTS = 1 << 25

#: The aggregators of Table 1 of the paper as (a, b, c, d, e, f, g, h) and
#: (alpha, beta, gamma, delta); the paper's unused ("-") terms get exponents 0 and weight 0.
#: ``r`` and ``s`` are the exponents that tend to infinity, ``k`` and ``l`` the moment's
#: order and power, ``kappa`` the constant.
TABLE = {
    "constant": lambda r, s, k, l, kappa: ((0, 1, 0, 0, 0, 1, 0, 0), (kappa, 0, 1, 0)),
    "max": lambda r, s, k, l, kappa: ((1 / r, r, 0, 0, 0, 1, 0, 0), (1, 0, 1, 0)),
    "min": lambda r, s, k, l, kappa: ((0, 1, 1 / r, r, 0, 1, 0, 0), (1, -1, 1, 0)),
    "sum": lambda r, s, k, l, kappa: ((1, 1, 0, 0, 0, 1, 0, 0), (1, 0, 1, 0)),
    "count": lambda r, s, k, l, kappa: ((1, 0, 0, 0, 0, 1, 0, 0), (1, 0, 1, 0)),
    "mean": lambda r, s, k, l, kappa: ((1, 1, 0, 0, 1, 0, 0, 0), (1, 0, 1, 0)),
    "moment": lambda r, s, k, l, kappa: ((1, k, 0, 0, 1, 0, 0, 0), (1, 0, 1, 0)),
    "power_moment": lambda r, s, k, l, kappa: ((l, k, 0, 0, l, 0, 0, 0), (1, 0, 1, 0)),
    "min_over_max": lambda r, s, k, l, kappa: ((0, 1, 1 / r, r, 1 / s, s, 0, 0),
                                               (1, -1, 1, 0)),
    "max_over_min": lambda r, s, k, l, kappa: ((1 / r, r, 0, 0, 0, 1, 1 / s, s),
                                               (1, 0, 1, -1)),
}


class LAFAggregation(Aggregation):
    r"""LAF: a learnable ratio of sums of powers (Pellegrini, Tibo, Frasconi, Passerini and
    Jaeger, "Learning Aggregation Functions", IJCAI 2021).

    .. math::
        L_{a,b}(X) = \Big(\sum_{x \in X} x^b\Big)^a, \qquad
        \mathrm{LAF}(X) = \frac{\alpha L_{a,b}(X) + \beta L_{c,d}(1 - X)}
                               {\gamma L_{e,f}(X) + \delta L_{g,h}(1 - X)}

    over ``X = sigmoid(x)``, so every element lies in (0, 1), as in the paper. One *unit*
    has eight exponents ``a..h`` and four weights ``alpha..delta``; with the values of
    Table 1 of the paper (:attr:`TABLE`, :meth:`from_pooling`) a unit computes sum, count,
    mean, moments, max, min, their ratios or a constant.

    Layout (the paper's LAF layer): ``units`` units, each applied to every channel with
    the same 12 parameters (parameters are shared across channels, not across units).
    The units of a channel are concatenated, channel-major (channel ``c``, unit ``u`` at
    ``c * units + u``), giving ``in_channels * units`` features; the paper's models follow
    the layer with a dense layer, which ``project=True`` adds as
    ``Linear(in_channels * units, in_channels)`` so the module keeps the width of its
    input (``units=1`` needs no projection and has none).

    Parameterisation and safeguards:

    - exponents: ``a..h = |theta|`` of a free parameter: never negative, every value
      including the exactly-0 entries of Table 1 reachable, gradient of magnitude
      ``|dL/da|`` everywhere but at exactly 0 (where ``abs`` has gradient 0);
    - weights: unconstrained (Table 1 needs negative ones);
    - powers as ``exp(b * log x)`` with ``log x = logsigmoid(x)`` and
      ``log(1 - x) = logsigmoid(-x)``: exact for inputs whose sigmoid rounds to 0 or 1,
      and ``x^0 = 1`` for every element (so ``L_{1,0}`` is the set size);
    - every sum of powers taken relative to the set's largest ``x`` (or ``1 - x``):
      ``sum_i x_i^b = x_max^b sum_i (x_i / x_max)^b``, kept as a logarithm, so that
      large exponents (``b = r`` for max) never underflow to a zero sum;
    - the four terms are scaled by their largest magnitude before they are combined, so
      ``L`` values beyond the dtype's range still give finite ratios;
    - denominator: where ``|gamma L + delta L| < eps`` it is replaced by ``eps`` with its
      sign (``+eps`` for 0), and that replacement carries no gradient.

    Initialisation: exponents and weights uniform in [0, 1) (the paper restarts from random
    values; non-negative weights keep every denominator positive at the start); the
    projection is PyTorch's default ``Linear``.

    Args:
        in_channels: features ``F`` of ``x`` (its last dimension).
        units: LAF units per channel.
        project: map the ``F * units`` unit outputs back to ``F`` with a ``Linear`` layer
            (only when ``units > 1``); ``False`` returns them as they are.
        eps: smallest magnitude of a denominator.

    Shapes: ``x`` is ``[..., E, ..., F]`` with the elements along ``dim`` (not the last
    dimension); the output has ``dim_size`` sets along ``dim`` and ``F`` (or
    ``F * units`` without projection) features. fp16/bf16 inputs are computed in float32.
    An empty set pools to 0.

    Raises:
        ValueError: a non-positive ``in_channels`` or ``units``, ``eps <= 0``, ``x`` without
            ``in_channels`` features, or a bad ``dim``/``index``/``ptr``/``dim_size``.
        TypeError: ``x`` is not a floating-point tensor.
    """

    #: The parameters an optimiser should treat as pooling parameters.
    pooling_parameter_names = ("exponents", "weights")
    TABLE = TABLE

    def __init__(self, in_channels: int, units: int = 1, project: bool = True,
                 eps: float = 1e-7) -> None:
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("units", units)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a positive finite float, got {eps!r}")
        self.in_channels, self.units, self.eps = in_channels, units, float(eps)
        self.exponents = torch.nn.Parameter(torch.empty(units, 8))
        self.weights = torch.nn.Parameter(torch.empty(units, 4))
        self.project = (torch.nn.Linear(in_channels * units, in_channels)
                        if project and units > 1 else None)
        #: Features of the output.
        self.out_channels = in_channels if project or units == 1 else in_channels * units
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.exponents.uniform_(0.0, 1.0)
            self.weights.uniform_(0.0, 1.0)
        if self.project is not None:
            self.project.reset_parameters()

    @classmethod
    def from_pooling(cls, name: str, in_channels: int, units: int = 1, *, r: float = 100.0,
                     s: float | None = None, k: float = 2.0, l: float = 1.0,
                     kappa: float = 1.0, **kwargs) -> LAFAggregation:
        """A LAF whose units all start at one aggregator of Table 1 of the paper (see
        :meth:`init_pooling`); ``kwargs`` go to the constructor."""
        return cls(in_channels, units, **kwargs).init_pooling(name, r=r, s=s, k=k, l=l,
                                                              kappa=kappa)

    @torch.no_grad()
    def init_pooling(self, name: str, *, r: float = 100.0, s: float | None = None,
                     k: float = 2.0, l: float = 1.0, kappa: float = 1.0) -> LAFAggregation:
        """Set every unit to one aggregator of Table 1 of the paper, in the parameters'
        current dtype; returns the module.

        ``name`` is a key of :attr:`TABLE`. Max, min and their ratios are limits for
        ``r`` (and ``s``, default ``r``) to infinity: with ``n`` elements a finite ``r``
        overestimates ``max`` by at most a factor ``n^(1/r)`` (and ``1 - min`` likewise).
        ``k`` and ``l`` are the order and power of a moment, ``kappa`` the constant.
        """
        if name not in TABLE:
            raise ValueError(f"name must be one of {sorted(TABLE)}, got {name!r}")
        s = r if s is None else s
        for arg, value in (("r", r), ("s", s)):
            if not value > 0:
                raise ValueError(f"{arg} must be positive, got {value!r}")
        exps, weights = TABLE[name](r, s, k, l, kappa)
        self.exponents.copy_(torch.tensor(exps, dtype=torch.float64).expand(self.units, 8))
        self.weights.copy_(torch.tensor(weights, dtype=torch.float64).expand(self.units, 4))
        return self

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        check_channels(x, self.in_channels)
        rows, seg, d = set_rows(x, index, ptr, dim_size, dim, type(self).__name__)
        dtype = rows.dtype
        live = per_set(seg.count, rows) > 0
        # log x and log(1 - x) relative to their largest value in the set: each power
        # x_i^b = x_max^b * exp(b * (log x_i - log x_max)) of the sum below is at most 1 and
        # the largest is exactly 1, so no sum underflows (b >= 0). The shift cancels in
        # value and gradient, so it is taken without gradient.
        bases, tops = [], []
        for log_x in (torch.nn.functional.logsigmoid(rows),
                      torch.nn.functional.logsigmoid(-rows)):
            with torch.no_grad():
                top = segment_extreme(log_x, seg, "amax")
            bases.append(log_x - top[seg.index])
            tops.append(top)
        # Terms 0 and 2 are powers of x, terms 1 and 3 powers of 1 - x.
        base = torch.stack([bases[0], bases[1], bases[0], bases[1]], -1)   # [E, *rest, 4]
        top = torch.stack([tops[0], tops[1], tops[0], tops[1]], -1)        # [S, *rest, 4]
        exps = self.exponents.to(dtype).abs().view(self.units, 4, 2)
        outer, inner = exps[..., 0], exps[..., 1]                          # [U, 4] each
        # Units in chunks: one [elements, *rest, chunk, 4] tensor of powers at a time
        # bounds the memory of a large batch, and wide rows keep the per-set sums fast.
        chunk = max(1, _CHUNK_ELEMENTS // max(1, base.numel()))
        parts = []
        for lo in range(0, self.units, chunk):
            b = inner[lo:lo + chunk]
            powers = torch.exp(base.unsqueeze(-2) * b)                       # [E, ..., k, 4]
            total = segment_sum(powers.flatten(1), seg).view(-1, *powers.shape[1:])
            total = torch.where(live[..., None, None], total, torch.ones_like(total))
            parts.append(outer[lo:lo + chunk] * (b * top.unsqueeze(-2) + torch.log(total)))
        log_l = torch.cat(parts, -2)                                      # [S, *rest, U, 4]
        out = _ratio(log_l, self.weights.to(dtype), self.eps)          # [S, *rest, U]
        out = torch.where(live.unsqueeze(-1), out, torch.zeros_like(out))
        out = out.flatten(-2)
        if self.project is not None:
            out = self.project(out.to(self.project.weight.dtype)).to(dtype)
            # Empty sets pool to 0 after the projection too (not to its bias).
            out = torch.where(live, out, torch.zeros_like(out))
        return restore(out, d, x.dtype)

    def __repr__(self) -> str:
        extra = "" if self.project is None else ", project=True"
        return f"{self.__class__.__name__}({self.in_channels}, units={self.units}{extra})"


def _ratio(log_l: Tensor, weights: Tensor, eps: float) -> Tensor:
    """``(w0 L0 + w1 L1) / (w2 L2 + w3 L3)`` from ``log L`` (last dimension 4), scaled by
    the largest weighted term so that no ``L`` is ever formed on its own."""
    with torch.no_grad():
        # The ratio does not depend on the scale, except through the eps floor below.
        scale = (log_l + weights.abs().log()).amax(-1, keepdim=True)
        scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))
    terms = weights * torch.exp(log_l - scale)
    num = terms[..., 0] + terms[..., 1]
    den = terms[..., 2] + terms[..., 3]
    floor = eps * torch.exp(-scale.squeeze(-1))
    signed = torch.where(den >= 0, floor, -floor)
    den = torch.where(den.abs() >= floor, den, signed)
    return num / den
