"""Backends, set layouts and the fused CPU kernels' plumbing."""

from __future__ import annotations

import pytest
import torch
from conftest import random_sets, to_ptr

import gnpool.kernels as kernels
from gnpool.functional import gnp
from gnpool.kernels import Segments, cpu, resolve_backend


def test_segments_derive_every_layout_consistently():
    index = torch.tensor([2, 0, 2, 1, 0, 2])
    seg = Segments(6, 4, index=index)
    assert not seg.is_sorted and seg.ptr is None
    assert seg.count.tolist() == [2, 1, 3, 0]
    grouped = Segments(6, 4, index=index.sort().values)
    assert grouped.is_sorted and grouped.ptr.tolist() == [0, 2, 3, 6, 6]
    from_ptr = Segments(6, 4, ptr=torch.tensor([0, 2, 3, 6, 6]))
    assert from_ptr.index.tolist() == [0, 0, 1, 2, 2, 2]
    # A CSR pointer plus a permutation recovers the original index.
    perm = torch.tensor([1, 4, 3, 0, 2, 5])
    permuted = Segments(6, 4, ptr=torch.tensor([0, 2, 3, 6, 6]), perm=perm)
    assert permuted.index.tolist() == index.tolist() and permuted.ptr is None


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_counting_sort_builds_a_stable_csr():
    index = torch.tensor([3, 1, 3, 0, 1, 3, 0])
    ptr, perm = cpu.csr(Segments(7, 5, index=index))
    assert ptr.tolist() == [0, 2, 4, 4, 7, 7]
    assert perm.tolist() == [3, 6, 1, 4, 0, 2, 5]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cpu.csr(Segments(7, 3, index=index))


def test_available_backends_end_with_native():
    names = kernels.available_backends()
    assert names[-1] == "native" and len(set(names)) == len(names)


def test_auto_falls_back_when_a_backend_is_missing(monkeypatch):
    x, index = random_sets(50, 4, 3, seed=0, dtype=torch.float32)
    expected = gnp(x, index, p=2.0, backend="native")
    monkeypatch.setattr(cpu, "available", False)
    monkeypatch.setattr(kernels.scatter, "available", False)
    assert kernels.available_backends() == ["native"]
    assert resolve_backend(None, x).name == "native"
    torch.testing.assert_close(gnp(x, index, p=2.0), expected)
    with pytest.raises(ValueError, match="not available"):
        gnp(x, index, backend="cpu")


def test_auto_skips_the_fused_kernels_for_unsupported_dtypes():
    x = torch.randn(10, 2, dtype=torch.float16)
    assert resolve_backend(None, x).name != "cpu"
    if cpu.available:
        with pytest.raises(ValueError, match="does not support"):
            resolve_backend("cpu", x)


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_kernels_are_deterministic_across_calls(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, index = random_sets(5000, 300, 16, seed=1, dtype=torch.float32)
        p = torch.full((16,), 2.5, requires_grad=True)
        grads = []
        for _ in range(2):
            xi = x.clone().requires_grad_()
            gnp(xi, index, p=p, q=0.5, backend="cpu").square().sum().backward()
            grads.append((xi.grad, p.grad.clone()))
            p.grad = None
        assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    finally:
        torch.set_num_threads(previous)


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_fused_kernels_use_the_csr_path_for_ptr_and_a_permutation_otherwise():
    x, index = random_sets(400, 30, 4, seed=2, dtype=torch.float64, sort=True)
    ptr = to_ptr(index, 30)
    a = gnp(x, ptr=ptr, p=3.0, backend="cpu")
    shuffle = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    b = gnp(x[shuffle], index[shuffle], dim_size=30, p=3.0, backend="cpu")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, gnp(x, index, dim_size=30, p=3.0, backend="native"))
