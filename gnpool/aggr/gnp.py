"""GNP as a PyTorch Geometric aggregation."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ..functional._sets import (
    check_reverse_mode,
    compute_dtype,
    from_rows,
    make_segments,
    normalize_dim,
    to_rows,
)
from ..functional.gnp import gnp_unit_clamped, gnp_unit_script, p_to_unit, q_to_beta
from ..kernels.gnp_composite import exponent

Init = float | Sequence[float] | Tensor

#: Poolings ``from_pooling`` knows, as (p, q, p_neg, q_neg).
CLASSIC: dict[str, tuple[float, float, float, float]] = {
    "sum": (1.0, 0.0, 1.0, 0.0),
    "mean": (1.0, 1.0, 1.0, 1.0),
    "max": (math.inf, 1.0, -math.inf, 1.0),
    "min": (-math.inf, 1.0, math.inf, 1.0),
    "l2": (2.0, 0.0, 2.0, 0.0),
    "rms": (2.0, 1.0, 2.0, 1.0),
}
#: The poolings ``closest_pooling`` compares with.
COMPARED = ("sum", "mean", "max", "min")


def _part_point(p: float, q: float) -> tuple[float, float]:
    pt, qt = torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64)
    return float(p_to_unit(pt)) + 0.0, float(q_to_beta(pt, qt)) + 0.0     # no -0.0


#: Each part's classic points ``(p_unit, beta)`` (those of :data:`COMPARED`, in its order:
#: sum ``(1/2, 1)``, mean ``(1/2, 0)``, max ``(1, 0)``, min ``(-1, 0)``), as the segment
#: reductions of that part's input (``relu(x)`` or ``relu(-x)``) a GNP frozen there
#: computes with.
PART_REDUCTIONS: dict[tuple[float, float], str] = {
    _part_point(*CLASSIC[name][:2]): name for name in COMPARED}
#: Parts (positive, negative) that together are one reduction of ``x`` itself.
WHOLE_REDUCTIONS: dict[tuple[str, str], str] = {
    ("sum", "sum"): "sum", ("mean", "mean"): "mean", ("max", "min"): "max",
    ("min", "max"): "min"}


class _ChannelGroups(list):
    # [(channels, reductions)] of a GNP whose channels sit at different classic points, and
    # the column indices of each group and their inverse permutation per (columns, device),
    # computed once (nonzero() synchronises with the device).
    def __init__(self, groups) -> None:
        super().__init__(groups)
        self._columns: dict[tuple[int, str], tuple[list[Tensor], Tensor]] = {}

    def columns(self, count: int, channels: int, device: torch.device
                ) -> tuple[list[Tensor], Tensor]:
        key = (count, str(device))
        cache = self._columns
        if key not in cache:
            channel_of = torch.arange(count, device=device) % channels
            order = [torch.isin(channel_of, group.to(device)).nonzero().view(-1)
                     for group, _ in self]
            where = torch.cat(order)
            inverse = torch.empty_like(where)
            inverse[where] = torch.arange(where.numel(), device=device)
            cache[key] = (order, inverse)
        return cache[key]


def _channel_groups(values: Tensor) -> _ChannelGroups | None:
    # Channels grouped by the reductions they equal (values: [4, channels] of p_unit, beta,
    # p_neg_unit, beta_neg, p_unit clamped), or None when a part is not at a classic point.
    groups: dict[tuple[str, ...], list[int]] = {}
    units, betas, neg_units, neg_betas = values.tolist()
    for k in range(len(units)):
        pos = PART_REDUCTIONS.get((units[k], betas[k]))
        neg = PART_REDUCTIONS.get((neg_units[k], neg_betas[k]))
        if pos is None or neg is None:
            return None
        whole = WHOLE_REDUCTIONS.get((pos, neg))
        groups.setdefault((whole,) if whole is not None else (pos, neg), []).append(k)
    return _ChannelGroups((torch.tensor(channels), reductions)
                          for reductions, channels in groups.items())


def _reduce(data: Tensor, index: Tensor, size: int, reductions: tuple[str, ...]) -> Tensor:
    # One reduction of the rows, or one per part (of relu(x) and relu(-x)).
    if len(reductions) == 1:
        return _ClassicReduce.apply(data, index, size, reductions[0])
    return (_ClassicReduce.apply(torch.relu(data), index, size, reductions[0])
            - _ClassicReduce.apply(torch.relu(-data), index, size, reductions[1]))


def _unit_range(a: Tensor) -> Tensor:
    # ``a`` clamped into [-1, 1], as every forward reads ``p_unit`` and ``p_neg_unit``: the
    # clamp's values and derivatives (1 inside the range, 0 outside), computed so that
    # nothing of ``a`` itself is saved for backward. A training forward projects the
    # parameter in place first; where one module serves several calls of one forward and
    # a later call projects again (under torch.compile and TorchScript, which cannot tell
    # that nothing has changed it since, every training call does), the earlier calls'
    # graphs stay valid.
    # (One form while torch.jit.trace records, whose check runs again without grad.)
    if not (a.requires_grad and torch.is_grad_enabled()) and not torch.jit.is_tracing():
        return a.clamp(-1.0, 1.0)
    clamped = a.detach().clamp(-1.0, 1.0)
    # where() saves only its condition for backward.
    return torch.where(clamped == a.detach(), a, clamped)


class GNPAggregation(Aggregation):
    r"""Generalized norm-based pooling with a trainable exponent and size normalisation.

    .. math::
        G(Y) = |X|^{\beta} \Big(\frac{1}{|X|} \sum_{y \in Y} y^p\Big)^{1/p}, \quad
        p = \tan(\pi a / 2), \qquad
        \mathrm{GNP}(X) = G_{a,\beta}(\mathrm{relu}(X)) - G_{a^-,\beta^-}(\mathrm{relu}(-X))

    (after Ko, Kwon, Shin & Lee, 2021; :func:`gnpool.functional.gnp_unit`). The trained
    parameters are ``p_unit`` (``a``) in [-1, 1] and ``beta`` per part. Every classic
    pooling is a point of this square: sum ``(1/2, 1)``, mean ``(1/2, 0)``, exactly max
    ``(1, 0)`` for the positive part with ``(-1, 0)`` for the negative one, exactly min
    the other way round, the geometric mean at ``a = 0``, the L^p norm at ``beta = 1/p``;
    an exponent can move from the mean to max or min, or across to the other, in a
    distance of at most 1.5. ``p_unit`` is kept in [-1, 1] by projection: each forward
    in training mode first clamps the parameter itself into the range (the value the
    optimiser left; in eager mode skipped where nothing changed it since the last
    projection, under ``torch.compile`` and TorchScript done at every call; the forward
    reads the parameter without saving it for backward, so one module can serve several
    layers of a forward in all three, except in a compiled region whose compiler keeps
    the parameter for backward itself: activation checkpointing inside the region, or an
    activation memory budget below 1; a module traced by ``torch.jit.trace`` never
    projects, since the trace cannot replay an in-place change of a parameter, so there
    an exponent the optimiser pushes past an end stays there, with no gradient), so the
    function never sees a value
    outside it and the gradient at the ends stays finite and non-zero (``p = +-inf`` has
    one-sided derivatives). The
    classic view stays available as the properties :attr:`p`, :attr:`q`, :attr:`p_neg`,
    :attr:`q_neg` (``q = 1 - beta * p``).

    Args:
        channels: 1 shares the parameters across channels; ``F`` gives each of the
            ``F`` input channels (``x.size(-1)``) its own.
        p, q: initial exponent (any real or +-inf) and size normalisation of the
            positive part, as in :func:`gnpool.functional.gnp` (a float or ``channels``
            values); ``p = 0`` needs ``q = 1``. The default is the mean, one coordinate
            away from sum (``beta``), max and min (``p_unit``): started there, GNP
            extrapolated best on the benchmark's tuning split
            (experiments/results/gnp_tuning/).
        p_neg, q_neg: the same for the negative part (default: ``p`` and ``q``).
        learn: train the parameters (``False`` gives a fixed parametric pooling).
        backend: kernel backend passed to :func:`gnpool.functional.gnp_unit`. A scripted
            module (``torch.jit.script``) calls the ``gnpool::gnp_forward`` operator with
            the fused kernels of the input's device, chosen at run time.

    **Frozen at a classic pooling.** With ``backend=None`` (the default), a GNP whose
    parameters need no gradient (``learn=False``, parameters with ``requires_grad=False``
    as :func:`gnpool.training.transfer_pooling_` leaves them, or autograd disabled) and
    whose parts sit exactly at classic points (:data:`PART_REDUCTIONS`, where :meth:`snap_`
    and ``snap_parts_`` put them) is computed with segment reductions (``index_add`` and
    ``scatter_reduce``), as fast as the fixed pooling: one reduction of ``x`` for sum,
    mean, max and min, else one per part of ``relu(x)`` and ``relu(-x)``; channels at
    different points are reduced in groups, one group per combination of points (faster
    than the kernels for small inputs, slower for large ones, where the backward of
    ``scatter_reduce``'s max and min dominates: experiments/bench_warm_loop.py). Same
    values (to float rounding) and input gradients as the kernels, ties of max and min
    split evenly, for finite inputs away from 0; where
    they differ: at an element exactly 0 in a GNP whose two parts differ, the gradient is
    that of ``relu`` (0 from the part it leaves) where the kernels average the two
    one-sided derivatives, and for infinite or NaN inputs the gradient is that of the
    reductions (the kernels pass none through an infinite part, NaN through a NaN set).
    fp16/bf16 inputs are reduced in float32 as the kernels do. Whether the parameters are
    at such a point is read from them after each change that advances their version
    counter (a host synchronisation), not at every call: values written through
    ``.data`` or a NumPy view are not seen until the next such change (use ``copy_``
    under ``torch.no_grad()``, :meth:`snap_` or ``load_state_dict``).

    Raises:
        ValueError: ``channels`` is not a positive int, an initial value has neither 1
            nor ``channels`` entries or is out of range, or (in ``forward``) ``channels``
            does not match the features of ``x``, a ``p_unit`` is NaN or a ``beta`` is
            not finite (as after a diverged optimiser step).
        TypeError: ``learn`` is not a bool, an initial value is not a number, a sequence
            of numbers or a tensor, or (in ``forward``) ``x`` is not a tensor.
        NotImplementedError: (in ``forward``) ``x`` or a parameter under forward-mode AD
            (``torch.func.jvp``, ``torch.autograd.forward_ad``) or a ``torch.func``
            transform (``grad``, ``vmap``, ``functional_call`` ensembles under ``vmap``):
            GNP has a reverse-mode derivative only. Not detected, so the tangent comes out
            zero or missing: a module compiled with ``torch.jit.script``, and dual tensors
            of ``torch.autograd.forward_ad`` inside ``torch.compile``.
    """

    #: Parameters an optimiser should treat as pooling parameters (see
    #: :func:`gnpool.param_groups`).
    pooling_parameter_names = ("p_unit", "beta", "p_neg_unit", "beta_neg")
    # 2: (p_unit, beta) per part; 1: gnpool 0.1's (p_logit, p_sign, q) per part.
    _version = 2
    # The classic view is Python only; a scripted module compiles forward alone.
    __jit_unused_properties__ = ["p", "q", "p_neg", "q_neg"]

    def __init__(self, channels: int = 1, p: Init = 1.0, q: Init = 1.0,
                 p_neg: Init | None = None, q_neg: Init | None = None, learn: bool = True,
                 backend: str | None = None) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if not isinstance(learn, bool):
            raise TypeError(f"learn must be True or False, got {learn!r}")
        self.channels, self.learn, self.backend = channels, learn, backend
        # The classic reductions the parameters sit at (None: not at one), and the
        # parameters' identities and versions it was read from.
        self._reductions: tuple[str, ...] | _ChannelGroups | None = None
        self._reductions_of: tuple[Any, ...] | None = None
        # (data_ptr, version) of p_unit and p_neg_unit after the last projection.
        self._projected_at: tuple[int, ...] | None = None
        p_neg = p if p_neg is None else p_neg
        q_neg = q if q_neg is None else q_neg
        self._init = {"p": p, "q": q, "p_neg": p_neg, "q_neg": q_neg}
        for name in self.pooling_parameter_names:
            value = torch.zeros(channels)
            if learn:
                self.register_parameter(name, torch.nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.reset_parameters()

    @classmethod
    def from_pooling(cls, name: str, channels: int = 1, learn: bool = True,
                     **kwargs: Any) -> GNPAggregation:
        """A GNP initialised exactly at a classic pooling: ``"sum"``, ``"mean"``,
        ``"max"``, ``"min"``, ``"l2"`` (the L2 norm) or ``"rms"``."""
        if not isinstance(name, str) or name not in CLASSIC:
            raise ValueError(f"name must be one of {sorted(CLASSIC)}, got {name!r}")
        p, q, p_neg, q_neg = CLASSIC[name]
        return cls(channels, p=p, q=q, p_neg=p_neg, q_neg=q_neg, learn=learn, **kwargs)

    def _initial(self, name: str) -> Tensor:
        given = self._init[name]
        if given is None or isinstance(given, (bool, str, bytes)):
            raise TypeError(f"{name} must be a number, a sequence of numbers or a tensor, "
                            f"got {given!r}")
        try:
            value = torch.as_tensor(given, dtype=torch.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name} must be a number, a sequence of numbers or a tensor, "
                            f"got {given!r}") from error
        if value.numel() not in (1, self.channels):
            raise ValueError(f"{name} must have 1 or channels={self.channels} values, "
                             f"got {value.numel()}")
        bad = value.isnan() if name.startswith("p") else ~torch.isfinite(value)
        if bool(bad.any()):
            kind = "a number or +-inf" if name.startswith("p") else "finite"
            raise ValueError(f"{name} must be {kind}, got {value.tolist()}")
        return value.expand(self.channels)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for part in ("", "_neg"):
                p, q = self._initial(f"p{part}"), self._initial(f"q{part}")
                if bool(((p == 0) & (q != 1)).any()):
                    raise ValueError(f"p{part} = 0 is defined only with q{part} = 1 (the "
                                     f"geometric mean), got q{part}={q.tolist()}")
                getattr(self, f"p{part}_unit").copy_(p_to_unit(p))
                getattr(self, f"beta{part}").copy_(q_to_beta(p, q))

    @torch.no_grad()
    def snap_(self, pooling: str | Sequence[str]) -> None:
        """Set the parameters exactly to a classic pooling of :data:`CLASSIC`: one name for
        every channel, or one per channel (``"none"`` leaves a channel as it is).

        Raises:
            ValueError: an unknown name, or a list whose length is not ``channels``.
        """
        if not isinstance(pooling, (str, list, tuple)):
            raise ValueError(f"pooling must be one name or a list of channels={self.channels} "
                             f"names, got {pooling!r}")
        names = [pooling] * self.channels if isinstance(pooling, str) else list(pooling)
        if len(names) != self.channels:
            raise ValueError(f"pooling must be one name or channels={self.channels} names, "
                             f"got {len(names)}")
        for k, name in enumerate(names):
            if name == "none":
                continue
            if not isinstance(name, str) or name not in CLASSIC:
                raise ValueError(f"pooling names must be 'none' or one of {sorted(CLASSIC)}, "
                                 f"got {name!r}")
            p, q, p_neg, q_neg = (torch.tensor(v, dtype=torch.float64) for v in CLASSIC[name])
            self.p_unit[k] = p_to_unit(p)
            self.beta[k] = q_to_beta(p, q)
            self.p_neg_unit[k] = p_to_unit(p_neg)
            self.beta_neg[k] = q_to_beta(p_neg, q_neg)

    @torch.no_grad()
    def conjugate_(self) -> None:
        r"""Set the pooling to its sign conjugate, :math:`X \mapsto -\mathrm{GNP}(-X)`, by
        swapping the parameters of the positive part (``p_unit``, ``beta``) and the
        negative part (``p_neg_unit``, ``beta_neg``) of every channel: since
        :math:`\mathrm{GNP}(X) = G_{a,\beta}(\mathrm{relu}(X)) -
        G_{a^-,\beta^-}(\mathrm{relu}(-X))`, the swap gives
        :math:`G_{a^-,\beta^-}(\mathrm{relu}(X)) - G_{a,\beta}(\mathrm{relu}(-X))
        = -\mathrm{GNP}(-X)`. Max and min trade places (``[max, min]`` and ``[min, max]``),
        sum and mean (odd functions) stay as they are. Twice is the identity. The values
        are copied in place; whether each parameter trains is left as it is."""
        for pos, neg in (("p_unit", "p_neg_unit"), ("beta", "beta_neg")):
            a, b = getattr(self, pos), getattr(self, neg)
            swap = a.detach().clone()
            a.copy_(b)
            b.copy_(swap)

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp ``p_unit`` and ``p_neg_unit`` into [-1, 1] in place (done by every
        training-mode forward)."""
        self.p_unit.clamp_(-1.0, 1.0)
        self.p_neg_unit.clamp_(-1.0, 1.0)

    def _q(self, p: Tensor, beta: Tensor) -> Tensor:
        # q = 1 - beta * p; at p = +-inf q is 1 when beta = 0 (max and min).
        return torch.where(beta == 0, torch.ones_like(p), 1 - beta * p)

    @property
    def p(self) -> Tensor:
        """Current exponent of the positive part, ``[channels]`` (+-inf at max/min)."""
        return exponent(self.p_unit.clamp(-1.0, 1.0))[0]

    @property
    def q(self) -> Tensor:
        """Current size normalisation of the positive part, ``1 - beta * p``."""
        return self._q(self.p, self.beta)

    @property
    def p_neg(self) -> Tensor:
        """Current exponent of the negative part, ``[channels]``."""
        return exponent(self.p_neg_unit.clamp(-1.0, 1.0))[0]

    @property
    def q_neg(self) -> Tensor:
        """Current size normalisation of the negative part."""
        return self._q(self.p_neg, self.beta_neg)

    def __call__(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                 dim_size: int | None = None, dim: int = -2, **kwargs) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        # PyG's own check would only say that dim=-2 is invalid for a 1-D tensor.
        if x.dim() < 2 and dim == -2:
            raise ValueError(f"x must have at least 2 dimensions, [..., elements, features] "
                             f"with the elements along dim={dim}, got shape "
                             f"{tuple(x.shape)}; pass x.unsqueeze(-1) for one feature per "
                             f"element, or dim=0 to pool a 1-D x")
        return super().__call__(x, index, ptr=ptr, dim_size=dim_size, dim=dim, **kwargs)

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        if torch.jit.is_scripting():
            # TorchScript compiles this branch only: the operators, backend chosen at run time.
            if self.channels != 1 and (x.dim() < 2 or x.size(-1) != self.channels
                                       or dim % x.dim() == x.dim() - 1):
                raise ValueError("GNPAggregation has one exponent per feature channel: x "
                                 "must have channels features in its last dimension, "
                                 "pooled along another one")
            if self.learn and self.training:
                with torch.no_grad():
                    self.p_unit.clamp_(-1.0, 1.0)
                    self.p_neg_unit.clamp_(-1.0, 1.0)
            return gnp_unit_script(x, _unit_range(self.p_unit), self.beta,
                                   _unit_range(self.p_neg_unit), self.beta_neg, index, ptr,
                                   dim_size, dim)
        return self._forward(x, index, ptr, dim_size, dim)

    @torch.jit.unused
    def _forward(self, x: Tensor, index: Tensor | None, ptr: Tensor | None,
                 dim_size: int | None, dim: int) -> Tensor:
        # Before anything reads the parameters' storage (the frozen path's cache).
        check_reverse_mode("GNPAggregation", x, self.p_unit, self.beta, self.p_neg_unit,
                           self.beta_neg)
        if self.channels != 1 and (x.dim() < 2 or x.size(-1) != self.channels
                                   or dim % x.dim() == x.dim() - 1):
            features = x.size(-1) if x.dim() >= 2 and dim % x.dim() != x.dim() - 1 else None
            got = (f"x with {features} features (x.size(-1))" if features is not None else
                   f"x of shape {tuple(x.shape)} pooled along dim={dim}, which has no "
                   "feature dimension")
            raise ValueError(f"GNPAggregation(channels={self.channels}) has one exponent per "
                             f"feature channel but got {got}; use channels="
                             f"{features if features is not None else 1} or channels=1")
        # (torch.jit.trace would record the in-place projection, which a traced graph
        # cannot replay on a leaf that requires grad: a traced module reads the clamp.)
        if self.learn and self.training and torch.is_grad_enabled() and (
                self.p_unit.requires_grad or self.p_neg_unit.requires_grad) and (
                not torch.jit.is_tracing()):
            # Frozen parameters, and a forward without autograd, leave them alone (the
            # forward clamps its copy). Parameters not changed since their last projection
            # are left alone too: a module called twice in one forward (one aggregation
            # shared by several layers) must not modify what the first call saved for
            # backward.
            compiling = torch.compiler.is_compiling()
            if compiling or self._projection_key() != self._projected_at:
                self.project_()
                self._projected_at = None if compiling else self._projection_key()
        reductions = self._frozen_reductions(x)
        if reductions is not None:
            return self._reduce_classic(x, index, ptr, dim_size, dim, reductions)
        return gnp_unit_clamped(x, index, ptr, dim_size, dim, _unit_range(self.p_unit),
                                self.beta, _unit_range(self.p_neg_unit), self.beta_neg,
                                self.backend)

    @torch.jit.unused
    def _projection_key(self) -> tuple[int, ...]:
        # Identity and version of the projected parameters: an optimiser step, a copy_ or
        # a replaced tensor changes it.
        return tuple(v for t in (self.p_unit, self.p_neg_unit)
                     for v in (t.data_ptr(), t._version))

    def _frozen_reductions(
            self, x: Tensor) -> tuple[str, ...] | _ChannelGroups | None:
        # The segment reductions this GNP equals when no gradient reaches its parameters
        # (see the class docstring), else None.
        if self.backend is not None or not x.is_floating_point():
            return None
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return None
        params = [getattr(self, name) for name in self.pooling_parameter_names]
        if torch.is_grad_enabled() and any(t.requires_grad for t in params):
            return None
        # Inference tensors have no version counter: read them every time.
        key = (None if any(t.is_inference() for t in params)
               else tuple((t, t.data_ptr(), t._version) for t in params))
        old = self._reductions_of
        if key is None or old is None or any(
                a is not b or pa != pb or va != vb
                for (a, pa, va), (b, pb, vb) in zip(key, old, strict=True)):
            with torch.no_grad():
                values = torch.stack([t.detach().reshape(-1) for t in params]).cpu()
            values[0].clamp_(-1.0, 1.0)
            values[2].clamp_(-1.0, 1.0)
            groups = _channel_groups(values)
            # One group (every channel at the same points): its reductions, ungrouped.
            self._reductions = (groups[0][1] if groups is not None and len(groups) == 1
                                else groups)
            self._reductions_of = key
        return self._reductions

    def _reduce_classic(self, x: Tensor, index: Tensor | None, ptr: Tensor | None,
                        dim_size: int | None, dim: int,
                        reductions: tuple[str, ...] | _ChannelGroups
                        ) -> Tensor:
        # On GNP's own set description (int32 or int64 index or ptr, validated as the
        # kernels validate them) and rows [elements, columns] in the compute dtype.
        dtype = compute_dtype(x)
        dim = normalize_dim(x, dim)
        seg = make_segments(x.size(dim), index, ptr, dim_size, x.device, dim)
        rows = to_rows(x, dim, dtype)
        data = rows.data
        if isinstance(reductions, tuple):
            out = _reduce(data, seg.index, seg.size, reductions)
        else:
            # Channels at different classic points: each group of columns (column j holds
            # channel j % channels) reduced on its own, then put back in column order.
            order, inverse = reductions.columns(data.size(1), self.channels, data.device)
            pieces = [_reduce(data.index_select(1, columns), seg.index, seg.size, group)
                      for columns, (_, group) in zip(order, reductions, strict=True)]
            out = torch.cat(pieces, 1).index_select(1, inverse)
        return from_rows(out, rows, seg.size, x.dtype)

    @torch.no_grad()
    def pooling_distances(self) -> dict[str, Tensor]:
        """How far the current pooling is from sum, mean, max and min, per channel.

        Measured, not read off the parameters: GNP and each classic pooling pool a fixed
        bank of random sets (sizes 2 to 50, non-negative and mixed-sign, in float64); the
        distance is the mean absolute difference divided by the mean magnitude of the
        classic pooling's outputs (a relative error, so sum is not judged more strictly
        than mean). Returns ``{name: [channels] tensor}``; exactly 0 for an exact match.
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

        out = gnp_unit_clamped(x, index, None, num, -2, self.p_unit.double().clamp(-1, 1),
                               self.beta.double(), self.p_neg_unit.double().clamp(-1, 1),
                               self.beta_neg.double(), "native")
        how = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin"}
        distances = {}
        for name in COMPARED:
            classic = reduce(x, how[name])
            distances[name] = ((out - classic).abs().mean(0)
                               / classic.abs().mean(0)).float()
        return distances

    @torch.no_grad()
    def closest_pooling(self, tolerance: float = 0.05) -> str | list[str]:
        """The classic pooling (sum, mean, max or min) the current parameters reproduce,
        or ``"none"`` where the nearest one is farther than ``tolerance`` (see
        :meth:`pooling_distances`). Returns one name, or one per channel when
        ``channels > 1``. Raises ``ValueError`` for a ``tolerance`` that is not a
        non-negative number."""
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not (
                tolerance >= 0):
            raise ValueError(f"tolerance must be a non-negative number, got {tolerance!r}")
        distances = self.pooling_distances()
        stacked = torch.stack([distances[name] for name in COMPARED])
        best, where = stacked.min(0)
        result = [COMPARED[i] if d <= tolerance else "none"
                  for i, d in zip(where.tolist(), best.tolist(), strict=True)]
        return result[0] if self.channels == 1 else result

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str,
                              local_metadata: dict, strict: bool, missing_keys: list[str],
                              unexpected_keys: list[str], error_msgs: list[str]) -> None:
        if prefix + "p_logit" in state_dict and (local_metadata.get("version") or 1) < 2:
            warnings.warn("converting a gnpool 0.1 GNPAggregation state (p_logit, p_sign, q) "
                          "assuming its default bounds p_min=0.1, p_max=100; for other "
                          "bounds convert it with gnpool.aggr.gnp.upgrade_v01_state",
                          UserWarning, stacklevel=2)
            try:
                converted = upgrade_v01_state(state_dict, prefix=prefix)
            except ValueError as error:     # an incomplete 0.1 state: load_state_dict says so
                error_msgs.append(f"{prefix or 'GNPAggregation'}: {error}")
                return
            for key in [k for k in state_dict if k.startswith(prefix)]:
                if key not in converted:
                    del state_dict[key]
            state_dict.update(converted)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def __repr__(self) -> str:
        parts = [f"channels={self.channels}"]
        for name in ("p", "q", "p_neg", "q_neg"):
            value = getattr(self, name).detach().float()
            if value.numel() == 1:
                parts.append(f"{name}={value.item():.3f}")
            elif bool(torch.isfinite(value).all()):
                parts.append(f"{name}=mean {value.mean().item():.3f} "
                             f"[{value.min().item():.3f}, {value.max().item():.3f}]")
            else:           # channels at max or min (p = +-inf): no mean to show
                infinite = int((~torch.isfinite(value)).sum())
                parts.append(f"{name}=[{value.min().item():.3f}, {value.max().item():.3f}] "
                             f"({infinite} of {value.numel()} infinite)")
        parts.append(f"learn={self.learn}")
        return f"{self.__class__.__name__}({', '.join(parts)})"


class _ClassicReduce(torch.autograd.Function):
    """Sum, mean, max or min of the sets of ``[E, K]`` rows (int64 ``index``, ``size`` sets;
    an empty set pools to 0). The gradient of max and min is split evenly among the
    elements equal to their set's result, as GNP's kernels split it (torch's
    ``scatter_reduce`` with ``include_self=False`` also counts the empty start value as a
    tie when the result is 0)."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, size: int, how: str) -> Tensor:
        count = None
        if how in ("sum", "mean"):
            out = x.new_zeros(size, x.size(1)).index_add_(0, index, x)
            if how == "mean":
                count = torch.bincount(index, minlength=size).clamp_min(1).to(x.dtype)
                out = out / count.unsqueeze(1)
        else:
            out = x.new_zeros(size, x.size(1)).scatter_reduce_(
                0, index.view(-1, 1).expand_as(x), x, "amax" if how == "max" else "amin",
                include_self=False)
        ctx.save_for_backward(x, index, out, count)
        ctx.how = how
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, index, out, count = ctx.saved_tensors
        up = grad.index_select(0, index)
        if ctx.how == "sum":
            return up, None, None, None
        if ctx.how == "mean":
            return up / count.index_select(0, index).unsqueeze(1), None, None, None
        hit = x == out.index_select(0, index)
        ties = torch.zeros_like(out).index_add_(0, index, hit.to(out.dtype))
        share = up / ties.index_select(0, index).clamp_min(1)
        return torch.where(hit, share, torch.zeros_like(share)), None, None, None


def upgrade_v01_state(state: Mapping[str, Tensor], p_min: float = 0.1, p_max: float = 100.0,
                      prefix: str = "") -> dict[str, Tensor]:
    """A gnpool 0.1 ``GNPAggregation`` state (``p_logit``, ``p_sign``, ``q`` and their
    ``_neg`` twins under ``prefix``) in today's form (``p_unit``, ``beta``, ...).

    0.1 stored ``|p| = p_min * (p_max / p_min) ** sigmoid(p_logit)`` with the sign in
    ``p_sign``; ``p_min`` and ``p_max`` were constructor arguments (0.1 and 100 by
    default) that the state does not record. The function is the same after the
    conversion. Keys of other modules are returned unchanged.

    Raises:
        ValueError: a key of the six missing from ``state`` (naming them), or ``p_min``
            and ``p_max`` not finite numbers with ``0 < p_min < p_max``.
    """
    if not (isinstance(p_min, (int, float)) and isinstance(p_max, (int, float))
            and not isinstance(p_min, bool) and not isinstance(p_max, bool)
            and 0 < p_min < p_max < math.inf):
        raise ValueError(f"p_min and p_max must be finite numbers with 0 < p_min < p_max "
                         f"(gnpool 0.1's defaults: 0.1 and 100), got p_min={p_min!r}, "
                         f"p_max={p_max!r}")
    old = {prefix + name for part in ("", "_neg")
           for name in (f"p{part}_logit", f"p{part}_sign", f"q{part}")}
    missing = sorted(old - set(state))
    if missing:
        raise ValueError(f"a gnpool 0.1 GNPAggregation state has p_logit, p_sign, q, "
                         f"p_neg_logit, p_neg_sign and q_neg; this one lacks "
                         f"{', '.join(missing)}")
    out = {k: v for k, v in state.items() if k not in old}
    for part in ("", "_neg"):
        logit = state[prefix + f"p{part}_logit"].double()
        sign = state[prefix + f"p{part}_sign"].double()
        q = state[prefix + f"q{part}"].double()
        p = sign * p_min * (p_max / p_min) ** torch.sigmoid(logit)
        out[prefix + f"p{part}_unit"] = p_to_unit(p).to(logit.dtype).float()
        out[prefix + f"beta{part}"] = q_to_beta(p, q).float()
    return out
