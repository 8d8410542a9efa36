"""gnpool's kernels as PyTorch operators in the ``gnpool`` namespace (torch.library).

Registered operators are opaque single nodes to PyTorch's tools: ``torch.compile(
fullgraph=True)`` traces a call without a graph break (the fake implementation gives the
output shapes and dtypes without running a kernel), ``torch.export`` records
``torch.ops.gnpool.*`` nodes, TorchScript calls them, and autograd runs the registered
closed-form backward, itself an operator.

Every pooling operator takes ``backend`` as its last argument, naming the kernels:

- ``"cpu"``: the fused C++ kernels (CPU tensors);
- ``"triton"``: the Triton kernels (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``);
- ``"native"``: plain torch ops (any device; the reference);
- ``"auto"``: the fastest of these for the tensors' device, chosen at run time (what a
  scripted module passes, so that one scripted model runs on CPU and CUDA).

Outputs are in the accumulation dtype (float64 if an input is float64, else float32: fp16
and bf16 are pooled in float32); gradients come back in their input's dtype, and a gradient
that was not asked for is an empty tensor (operators cannot return ``None``).

Adding an operator, for a pooling ``name`` (GNP's and AttSets' below are the examples):

1. ``@torch.library.custom_op("gnpool::<name>_forward", mutates_args=())`` taking the
   ``[E, K]`` rows, the CSR ``ptr`` and optional ``perm`` (see ``segments.Segments``), the
   number of sets, the parameters and ``backend``; it returns the output and whatever
   per-set state the backward needs (O(sets x channels)). Its body calls
   ``_backend(backend, x)`` and the kernels of that backend: ``cpu.<name>_forward`` (C++),
   ``triton_backend.kernels("<name>").<name>_forward`` (Triton), or the composite.
2. ``@<op>.register_fake``: empty outputs of the right shapes and dtypes, no computation.
3. The same two for ``gnpool::<name>_backward`` (inputs: the upstream gradient, what the
   forward saved, one ``need_*`` flag per differentiable input).
4. ``<forward op>.register_autograd(backward, setup_context=setup)``: ``setup`` saves the
   inputs and state and marks the state outputs non-differentiable; ``backward`` calls the
   backward op through ``torch.ops.gnpool`` (so that compile and export trace it) and
   returns ``None`` for inputs that need no gradient.
5. Add ``"<name>"`` to :data:`TRACEABLE` with the backends now implemented as operators,
   to ``triton_backend.operators`` when it has Triton kernels, and call the forward op from
   the functional layer for those backends (``resolve_backend(..., op="<name>")``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import cpu, native, triton_backend
from .attsets_composite import attsets_backward as _composite_backward
from .attsets_composite import attsets_forward as _composite_forward
from .gnp_composite import PartState
from .gnp_composite import gnp_backward as _gnp_composite_backward
from .gnp_composite import gnp_forward as _gnp_composite_forward
from .segments import Segments, sort_csr

#: Backends whose kernels for an operator are registered here, by operator. Under
#: torch.compile only these (and ``native``, which compiles as plain torch) can be traced.
TRACEABLE: dict[str, frozenset[str]] = {"attsets": frozenset({"cpu", "triton"}),
                                         "gnp": frozenset({"cpu", "triton"})}
_OP_BACKENDS = ("cpu", "triton", "native", "auto")


def traceable(operator: str | None, backend: str) -> bool:
    """Whether ``backend``'s kernels for ``operator`` can run inside a traced graph."""
    return backend == "native" or backend in TRACEABLE.get(operator or "", ())


def _backend(backend: str, x: Tensor) -> str:
    """The concrete backend for ``backend`` and tensors on ``x``'s device (checked: the C++
    kernels would read a CUDA pointer as host memory)."""
    if backend == "auto":
        if x.device.type == "cpu" and cpu.available:
            return "cpu"
        if x.device.type == "cuda" and triton_backend.available:
            return "triton"
        return "native"
    if backend not in _OP_BACKENDS:
        raise ValueError(f"backend must be one of {list(_OP_BACKENDS)}, got {backend!r}")
    if backend == "cpu" and (not cpu.available or x.device.type != "cpu"):
        raise ValueError(f"backend 'cpu' needs the fused CPU kernels (built: {cpu.available}) "
                         f"and CPU tensors, got a tensor on {x.device}")
    if backend == "triton" and not triton_backend.supports(x):
        raise ValueError(f"backend 'triton' cannot run here: {triton_backend.why_not(x)}")
    return backend


def _accumulation(*tensors: Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0) if t is None else t


# ---------------------------------------------------------------------------------------
# CSR from an index in any order


@torch.library.custom_op("gnpool::csr", mutates_args=())
def csr(index: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(ptr [size + 1], perm [E])`` of an int64 index in any order: the elements of set
    ``s`` are ``perm[ptr[s]:ptr[s + 1]]``, in their original order (a stable sort)."""
    if index.device.type == "cpu" and cpu.available:
        return cpu.csr_from_index(index, size)
    return sort_csr(index, size)


@csr.register_fake
def _(index: Tensor, size: int) -> tuple[Tensor, Tensor]:
    return index.new_empty(size + 1), index.new_empty(index.size(0))


# ---------------------------------------------------------------------------------------
# AttSets with given scores


@torch.library.custom_op("gnpool::attsets_forward", mutates_args=())
def attsets_forward(x: Tensor, scores: Tensor, ptr: Tensor, perm: Tensor | None, size: int,
                    backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """AttSets of ``x`` ``[E, K]`` with ``scores`` of the same shape over the CSR sets:
    ``(out, m, l)``, each ``[size, K]``: the output, each set's largest score (0 where all
    are ``-inf`` or the set is empty) and its sum of ``exp(score - m)``."""
    name = _backend(backend, x)
    if name == "triton":
        return triton_backend.kernels("attsets").attsets_forward(x, scores, ptr, perm, size)
    acc = _accumulation(x, scores)
    x, scores = x.to(acc), scores.to(acc)
    if name == "cpu":
        return cpu.attsets_forward(x, scores, ptr, perm, size)
    return _composite_forward(native, x, scores, Segments(x.size(0), size, ptr=ptr, perm=perm))


@attsets_forward.register_fake
def _(x, scores, ptr, perm, size, backend):
    acc = _accumulation(x, scores)
    return tuple(x.new_empty(size, x.size(1), dtype=acc) for _ in range(3))


@torch.library.custom_op("gnpool::attsets_backward", mutates_args=())
def attsets_backward(grad: Tensor, x: Tensor, scores: Tensor, ptr: Tensor, perm: Tensor | None,
                     out: Tensor, m: Tensor, l: Tensor, need_x: bool, need_scores: bool,
                     backend: str) -> tuple[Tensor, Tensor]:
    """Gradients of :func:`attsets_forward` for ``x`` and ``scores`` (empty when not
    needed), from the upstream gradient ``grad`` ``[size, K]`` and the forward's state."""
    name = _backend(backend, x)
    if name == "triton":
        gx, gz = triton_backend.kernels("attsets").attsets_backward(
            grad, x, scores, ptr, perm, out, m, l, need_x, need_scores)
    else:
        acc = out.dtype
        xa, za = x.to(acc), scores.to(acc)
        if name == "cpu":
            gx, gz = cpu.attsets_backward(grad, xa, za, ptr, perm, out.size(0), out, m, l,
                                          need_x, need_scores)
        else:
            seg = Segments(x.size(0), out.size(0), ptr=ptr, perm=perm)
            gx, gz = _composite_backward(native, grad.to(acc).contiguous(), xa, za, seg, out,
                                         m, l, need_x, need_scores)
        gx = None if gx is None else gx.to(x.dtype)
        gz = None if gz is None else gz.to(scores.dtype)
    return _or_empty(gx, x), _or_empty(gz, scores)


@attsets_backward.register_fake
def _(grad, x, scores, ptr, perm, out, m, l, need_x, need_scores, backend):
    return (torch.empty_like(x) if need_x else x.new_empty(0),
            torch.empty_like(scores) if need_scores else scores.new_empty(0))


def _attsets_setup(ctx, inputs, output) -> None:
    x, scores, ptr, perm, _size, backend = inputs
    out, m, l = output
    ctx.save_for_backward(x, scores, ptr, perm, out, m, l)
    ctx.backend = backend
    ctx.mark_non_differentiable(m, l)
    # No zero gradients for the statistics: they would cost two [S, K] tensors per call.
    ctx.set_materialize_grads(False)


def _attsets_autograd(ctx, grad, _grad_m, _grad_l):
    if grad is None:
        return None, None, None, None, None, None
    x, scores, ptr, perm, out, m, l = ctx.saved_tensors
    need_x, need_scores = ctx.needs_input_grad[:2]
    gx, gz = torch.ops.gnpool.attsets_backward(grad, x, scores, ptr, perm, out, m, l, need_x,
                                               need_scores, ctx.backend)
    return gx if need_x else None, gz if need_scores else None, None, None, None, None


attsets_forward.register_autograd(_attsets_autograd, setup_context=_attsets_setup)


# ---------------------------------------------------------------------------------------
# AttSets with a linear scoring layer act(x W^T + b)


def _linear_scores(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str | None
                   ) -> Tensor:
    scores = torch.nn.functional.linear(x, weight.to(x.dtype),
                                        None if bias is None else bias.to(x.dtype))
    return torch.tanh(scores) if activation == "tanh" else scores


def _check_linear(x: Tensor, weight: Tensor, bias: Tensor | None,
                  activation: str | None) -> None:
    # The kernels read K * rows weights and rows biases through raw pointers: anything else
    # would be read out of bounds (or, off x's device, as host memory).
    if not x.is_floating_point() or not weight.is_floating_point():
        bad, t = ("x", x) if not x.is_floating_point() else ("weight", weight)
        raise TypeError(f"{bad} must be a floating-point tensor, got dtype {t.dtype}")
    if x.dim() != 2:
        raise ValueError(f"x must be [E, K] rows, got shape {tuple(x.shape)}")
    k = x.size(1)
    if weight.dim() != 2 or weight.size(1) != k or weight.size(0) not in (1, k):
        raise ValueError(f"weight must have shape [{k}, {k}] or [1, {k}] for x with {k} "
                         f"columns, got {tuple(weight.shape)}")
    if bias is not None:
        if not bias.is_floating_point():
            raise TypeError(f"bias must be a floating-point tensor, got dtype {bias.dtype}")
        if tuple(bias.shape) != (weight.size(0),):
            raise ValueError(f"bias must have shape [{weight.size(0)}] (weight.size(0)), got "
                             f"{tuple(bias.shape)}")
    for label, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{label} must be on x's device ({x.device}), got {t.device}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")


_ACTIVATIONS = (None, "tanh")


@torch.library.custom_op("gnpool::attsets_linear_forward", mutates_args=())
def attsets_linear_forward(x: Tensor, weight: Tensor, bias: Tensor | None,
                           activation: str | None, ptr: Tensor, perm: Tensor | None,
                           size: int, backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """AttSets of ``x`` ``[E, K]`` with scores ``act(x W^T + b)``, ``weight`` ``[K, K]`` (a
    score per channel) or ``[1, K]`` (one per element), ``bias`` ``None`` or
    ``[weight.size(0)]``, all floating-point on one device, ``activation`` ``None`` or
    ``"tanh"``: ``(out, m, l)`` as :func:`attsets_forward`. No ``[E, K]`` score tensor
    outlives the call. Other shapes, dtypes or devices raise ``ValueError``/``TypeError``
    before any kernel runs."""
    _check_linear(x, weight, bias, activation)
    name = _backend(backend, x)
    if name == "triton":
        return triton_backend.kernels("attsets").attsets_linear_forward(
            x, weight, bias, activation, ptr, perm, size)
    acc = _accumulation(x, weight)
    x = x.to(acc)
    if name == "cpu":
        return cpu.attsets_linear_forward(x, weight, bias, activation, ptr, perm, size)
    scores = _linear_scores(x, weight, bias, activation).expand_as(x)
    return _composite_forward(native, x, scores, Segments(x.size(0), size, ptr=ptr, perm=perm))


@attsets_linear_forward.register_fake
def _(x, weight, bias, activation, ptr, perm, size, backend):
    acc = _accumulation(x, weight)
    return tuple(x.new_empty(size, x.size(1), dtype=acc) for _ in range(3))


@torch.library.custom_op("gnpool::attsets_linear_backward", mutates_args=())
def attsets_linear_backward(grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None,
                            activation: str | None, ptr: Tensor, perm: Tensor | None,
                            out: Tensor, m: Tensor, l: Tensor, need_x: bool, need_params: bool,
                            backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of :func:`attsets_linear_forward` for ``x``, ``weight`` and ``bias`` (empty
    when not needed or when there is no bias); the scores are recomputed."""
    name = _backend(backend, x)
    if name == "triton":
        gx, gw, gb = triton_backend.kernels("attsets").attsets_linear_backward(
            grad, x, weight, bias, activation, ptr, perm, out, m, l, need_x, need_params)
    elif name == "cpu":
        gx, gw, gb = cpu.attsets_linear_backward(grad, x.to(out.dtype), weight, bias,
                                                 activation, ptr, perm, out, m, l, need_x,
                                                 need_params)
        # weight's and bias' gradients are views of one buffer; outputs may not alias.
        gb = None if gb is None else gb.clone()
    else:
        gx, gw, gb = _native_linear_backward(grad, x, weight, bias, activation, ptr, perm, out,
                                             m, l, need_x, need_params)
    gx = None if gx is None else gx.to(x.dtype)
    return _or_empty(gx, x), _or_empty(gw, weight), _or_empty(gb, weight)


def _native_linear_backward(grad, x, weight, bias, activation, ptr, perm, out, m, l, need_x,
                            need_params):
    # The composite's score gradient, taken back through the activation and the product by
    # hand (autograd does not record inside an operator's implementation).
    acc = out.dtype
    xa, wa = x.to(acc), weight.to(acc)
    scores = _linear_scores(xa, wa, bias, activation)
    seg = Segments(x.size(0), out.size(0), ptr=ptr, perm=perm)
    gx, gz = _composite_backward(native, grad.to(acc).contiguous(), xa, scores.expand_as(xa),
                                 seg, out, m, l, need_x, True)
    if activation == "tanh":
        gz = gz * (1 - scores * scores)
    if weight.size(0) == 1:
        gz = gz.sum(1, keepdim=True)
    gw = gb = None
    if need_x:
        gx = gx.addmm_(gz, wa)
    if need_params:
        gw = (gz.t() @ xa).to(weight.dtype)
        gb = None if bias is None else gz.sum(0).to(bias.dtype)
    return gx, gw, gb


@attsets_linear_backward.register_fake
def _(grad, x, weight, bias, activation, ptr, perm, out, m, l, need_x, need_params, backend):
    return (torch.empty_like(x) if need_x else x.new_empty(0),
            torch.empty_like(weight) if need_params else weight.new_empty(0),
            torch.empty_like(bias) if need_params and bias is not None else weight.new_empty(0))


def _linear_setup(ctx, inputs, output) -> None:
    x, weight, bias, activation, ptr, perm, _size, backend = inputs
    out, m, l = output
    ctx.save_for_backward(x, weight, bias, ptr, perm, out, m, l)
    ctx.activation, ctx.backend = activation, backend
    ctx.mark_non_differentiable(m, l)
    ctx.set_materialize_grads(False)


def _linear_autograd(ctx, grad, _grad_m, _grad_l):
    if grad is None:
        return None, None, None, None, None, None, None, None
    x, weight, bias, ptr, perm, out, m, l = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = torch.ops.gnpool.attsets_linear_backward(
        grad, x, weight, bias, ctx.activation, ptr, perm, out, m, l, need_x, need_w or need_b,
        ctx.backend)
    return (gx if need_x else None, gw if need_w else None, gb if need_b else None,
            None, None, None, None, None)


attsets_linear_forward.register_autograd(_linear_autograd, setup_context=_linear_setup)


# ---------------------------------------------------------------------------------------
# GNP in its native coordinates (p_unit, beta) per part


@torch.library.custom_op("gnpool::gnp_forward", mutates_args=())
def gnp_forward(x: Tensor, a_pos: Tensor, b_pos: Tensor, a_neg: Tensor, b_neg: Tensor,
                ptr: Tensor, perm: Tensor | None, size: int, backend: str
                ) -> tuple[Tensor, Tensor]:
    """GNP of ``x`` ``[E, K]`` over the CSR sets (``gnp_composite``), with ``p_unit``
    (``a``) and ``beta`` of each part ``[1, K]`` or ``[1, 1]`` in the accumulation dtype:
    ``(out [size, K], state [6, size, K])``, the state being ``(r, A, G)`` of the positive
    and of the negative part."""
    name = _backend(backend, x)
    if name == "triton":
        return triton_backend.kernels("gnp").gnp_forward(x, a_pos, b_pos, a_neg, b_neg, ptr,
                                                          perm, size)
    x = x.to(_accumulation(x))
    params = (a_pos, b_pos, a_neg, b_neg)
    if name == "cpu":
        return cpu.gnp_forward(x, ptr, perm, size, params)
    seg = Segments(x.size(0), size, ptr=ptr, perm=perm)
    out, pos, neg = _gnp_composite_forward(native, x, seg, *(p.to(x.dtype) for p in params))
    return out, torch.stack([*pos, *neg])


@gnp_forward.register_fake
def _(x, a_pos, b_pos, a_neg, b_neg, ptr, perm, size, backend):
    acc = _accumulation(x)
    return (x.new_empty(size, x.size(1), dtype=acc),
            x.new_empty(6, size, x.size(1), dtype=acc))


def _like_params(grads: Tensor, params: tuple[Tensor, ...]) -> list[Tensor]:
    # Per-column gradients [4, K] summed down to each parameter's shape ([1, 1] or [1, K]),
    # each its own tensor (an operator's outputs may not alias).
    return [(g.sum().view(1, 1) if p.numel() == 1 else g.reshape(p.shape).clone()).to(p.dtype)
            for g, p in zip(grads.unbind(0), params, strict=True)]


@torch.library.custom_op("gnpool::gnp_backward", mutates_args=())
def gnp_backward(grad: Tensor, x: Tensor, a_pos: Tensor, b_pos: Tensor, a_neg: Tensor,
                 b_neg: Tensor, ptr: Tensor, perm: Tensor | None, state: Tensor, need_x: bool,
                 need_params: bool, backend: str
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of :func:`gnp_forward` for ``x`` (in its dtype) and ``(a_pos, b_pos,
    a_neg, b_neg)`` (in their shapes), each empty when not needed, from the upstream
    gradient ``grad`` ``[size, K]`` and the forward's state."""
    name = _backend(backend, x)
    params = (a_pos, b_pos, a_neg, b_neg)
    if name == "triton":
        gx, gp = triton_backend.kernels("gnp").gnp_backward(
            grad, x, a_pos, b_pos, a_neg, b_neg, ptr, perm, state, need_x, need_params)
    else:
        xa = x.to(state.dtype)
        if name == "cpu":
            gx, gp = cpu.gnp_backward(grad, xa, ptr, perm, state.size(1), params, state,
                                      need_x, need_params)
        else:
            seg = Segments(x.size(0), state.size(1), ptr=ptr, perm=perm)
            grads = _gnp_composite_backward(
                native, grad.to(state.dtype).contiguous(), xa, seg,
                *(p.to(state.dtype) for p in params), PartState(*state[:3]),
                PartState(*state[3:]), (need_x,) + (need_params,) * 4)
            gx = grads[0]
            gp = torch.stack(grads[1:]) if need_params else None
        gx = None if gx is None else gx.to(x.dtype)
    grad_params = (_like_params(gp, params) if gp is not None and need_params
                   else [p.new_empty(0) for p in params])
    return (_or_empty(gx if need_x else None, x), *grad_params)


@gnp_backward.register_fake
def _(grad, x, a_pos, b_pos, a_neg, b_neg, ptr, perm, state, need_x, need_params, backend):
    params = (a_pos, b_pos, a_neg, b_neg)
    return (torch.empty_like(x) if need_x else x.new_empty(0),
            *(torch.empty_like(p) if need_params else p.new_empty(0) for p in params))


def _gnp_setup(ctx, inputs, output) -> None:
    x, a_pos, b_pos, a_neg, b_neg, ptr, perm, _size, backend = inputs
    _out, state = output
    ctx.save_for_backward(x, a_pos, b_pos, a_neg, b_neg, ptr, perm, state)
    ctx.backend = backend
    ctx.mark_non_differentiable(state)
    # No zero gradient for the state: it would cost a [6, S, K] tensor per call.
    ctx.set_materialize_grads(False)


def _gnp_autograd(ctx, grad, _grad_state):
    if grad is None:
        return None, None, None, None, None, None, None, None, None
    x, a_pos, b_pos, a_neg, b_neg, ptr, perm, state = ctx.saved_tensors
    needs = ctx.needs_input_grad[:5]
    grads = torch.ops.gnpool.gnp_backward(grad, x, a_pos, b_pos, a_neg, b_neg, ptr, perm, state,
                                          needs[0], any(needs[1:]), ctx.backend)
    return (*(g if need else None for g, need in zip(grads, needs, strict=True)),
            None, None, None, None)


gnp_forward.register_autograd(_gnp_autograd, setup_context=_gnp_setup)
