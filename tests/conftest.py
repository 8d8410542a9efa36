"""Shared fixtures and independent float64 references."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

# Without a GPU the Triton kernels are tested under Triton's interpreter on CPU tensors; it
# must be switched on before gnpool first imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from gnpool.kernels import available_backends, triton_backend  # noqa: E402

BACKENDS = available_backends()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny ops (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): a second thread only adds synchronisation,
    and stalls when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cpu_backends(op: str) -> list[str]:
    """The backends with kernels for operator ``op`` that pool CPU tensors here (Triton's
    only under its interpreter, which is how they are tested without a GPU)."""
    return [name for name in available_backends(op)
            if name != "triton" or triton_backend.interpreting()]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def rounded(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float32 ``t`` rounded to ``dtype`` the way the Triton kernels' stores do: to nearest,
    except that Triton's interpreter rounds float32 to bfloat16 toward zero (it drops the
    low 16 bits; GPUs round to nearest even)."""
    if dtype == torch.bfloat16 and triton_backend.interpreting():
        return (t.view(torch.int32) & ~0xFFFF).view(torch.float32).to(dtype)
    return t.to(dtype)


def gradcheck_backend(fn, inputs: tuple, backend: str, **kwargs) -> None:
    """``torch.autograd.gradcheck`` of ``fn(*inputs, backend=backend)`` in float64; on the
    Triton backend, where every finite difference is an interpreted kernel launch (and fast
    mode's random directions are not meaningful at the ties and zeros these inputs hold),
    the analytic gradients for a random upstream gradient must equal the native backend's
    instead, which the same test gradchecks."""
    if backend != "triton":
        assert torch.autograd.gradcheck(lambda *a: fn(*a, backend=backend), inputs, **kwargs)
        return
    results = []
    for name in ("triton", "native"):
        leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
        out = fn(*leaves, backend=name)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(0),
                               dtype=out.dtype)
        wanted = [t for t in leaves if t.requires_grad]
        results.append((out.detach(), torch.autograd.grad((out * upstream).sum(), wanted)))
    (out_t, grads_t), (out_n, grads_n) = results
    torch.testing.assert_close(out_t, out_n, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads_t, grads_n, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def naive_gnp(x: torch.Tensor, index: torch.Tensor, num_sets: int, p, q, p_neg, q_neg
              ) -> torch.Tensor:
    """GNP straight from its definition, set by set and channel by channel, in float64
    (differentiable where the formula is): ``(n^-q sum y^p)^(1/p)`` per part, exactly max
    and min at ``p = +-inf`` and the geometric mean at ``p = 0`` (``q = 1``)."""
    columns = x.size(1)

    def col(v):
        v = torch.as_tensor(v, dtype=torch.float64)
        return v.expand(columns) if v.numel() == 1 else v

    p, q, p_neg, q_neg = col(p), col(q), col(p_neg), col(q_neg)
    rows = []
    for s in range(num_sets):
        xs = x[index == s].double()
        n = xs.size(0)
        if n == 0:
            rows.append(torch.zeros(columns, dtype=torch.float64))
            continue
        out = []
        for k in range(columns):
            parts = []
            for y, pp, qq in ((xs[:, k].clamp_min(0), p[k], q[k]),
                              ((-xs[:, k]).clamp_min(0), p_neg[k], q_neg[k])):
                pv = float(pp.detach())
                if pv == math.inf:
                    g = y.amax()
                elif pv == -math.inf or (pv <= 0 and bool((y == 0).any())):
                    # A zero with p <= 0 makes the part exactly 0.
                    g = y.amin() if pv == -math.inf else y.sum() * 0
                elif pv == 0:
                    g = y.log().mean().exp()
                else:
                    g = (n ** -qq * y.pow(pp).sum()).pow(1 / pp)
                parts.append(g)
            out.append(parts[0] - parts[1])
        rows.append(torch.stack(out))
    return torch.stack(rows)


def log_space_gnp(values: list[float], p: float, q: float, p_neg: float, q_neg: float) -> float:
    """GNP of one scalar set with math.fsum in log space: a reference for extreme values
    (finite inputs, any p including +-inf)."""
    n = len(values)
    out = 0.0
    for sign, pp, qq in ((1.0, p, q), (-1.0, p_neg, q_neg)):
        ys = [max(sign * v, 0.0) for v in values]
        if pp <= 0 and min(ys) == 0.0 or pp > 0 and max(ys) == 0.0:
            continue
        if math.isinf(pp):
            out += sign * (max(ys) if pp > 0 else min(ys))
            continue
        if pp == 0:
            out += sign * math.exp(math.fsum(math.log(y) for y in ys) / n)
            continue
        logs = [pp * math.log(y) for y in ys if y > 0]
        m = max(logs)
        log_g = (m + math.log(math.fsum(math.exp(v - m) for v in logs)) - qq * math.log(n)) / pp
        out += sign * math.exp(log_g)
    return out


def random_sets(num_elements: int, num_sets: int, columns: int, seed: int = 0,
                dtype=torch.float64, sort: bool = False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_elements, columns, generator=gen, dtype=dtype)
    index = torch.randint(0, num_sets, (num_elements,), generator=gen)
    if sort:
        index = index.sort().values
    return x, index


def to_ptr(index: torch.Tensor, num_sets: int) -> torch.Tensor:
    count = torch.bincount(index, minlength=num_sets)
    return torch.cat([count.new_zeros(1), count.cumsum(0)])


def load_experiment(name: str) -> ModuleType:
    """The script ``experiments/<name>.py`` imported as a module (scripts are not a
    package)."""
    path = Path(__file__).resolve().parent.parent / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
