"""The torch.library operators (torch.ops.gnpool.*): opcheck, torch.compile without graph
breaks, torch.export and TorchScript."""

from __future__ import annotations

import pytest
import torch
from conftest import random_sets, to_ptr
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch_geometric.nn import GraphConv

from gnpool import AttSetsAggregation, GNPAggregation, register
from gnpool.functional import attsets, gnp_unit
from gnpool.kernels import cpu, ops, triton_backend

_TRITON_REASON = ("triton is not installed (pip install 'gnpool[triton]')"
                  if not triton_backend.available else
                  "no CUDA device and TRITON_INTERPRET is not set")
_TRITON_OK = triton_backend.available and (torch.cuda.is_available()
                                           or triton_backend.interpreting())
OP_BACKENDS = [
    pytest.param("cpu", marks=pytest.mark.skipif(not cpu.available,
                                                 reason="fused CPU kernels not built")),
    pytest.param("triton", marks=pytest.mark.skipif(not _TRITON_OK, reason=_TRITON_REASON)),
    "native",
]
GNPOOL_OPS = {torch.ops.gnpool.attsets_forward.default, torch.ops.gnpool.attsets_backward.default,
              torch.ops.gnpool.attsets_linear_forward.default,
              torch.ops.gnpool.attsets_linear_backward.default, torch.ops.gnpool.csr.default,
              torch.ops.gnpool.gnp_forward.default, torch.ops.gnpool.gnp_backward.default}


def _device(backend: str) -> str:
    return "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"


def _csr_case(device: str, unsorted: bool):
    x, index = random_sets(11, 4, 5, seed=0, sort=not unsorted)
    index[:2] = 3  # set 3 has at least two elements; with 5 sets of 11 some are empty
    ptr, perm = torch.ops.gnpool.csr(index, 5)
    return x.to(device), ptr.to(device), perm.to(device) if unsorted else None


@pytest.mark.parametrize("backend", OP_BACKENDS)
def test_opcheck_attsets_operators(backend):
    device = _device(backend)
    x, ptr, perm = _csr_case(device, unsorted=True)
    scores = torch.randn(11, 5, dtype=torch.float64, device=device)
    grad_x = x.clone().requires_grad_()
    grad_scores = scores.clone().requires_grad_()
    torch.library.opcheck(torch.ops.gnpool.attsets_forward.default,
                          (grad_x, grad_scores, ptr, perm, 5, backend))
    out, m, l = torch.ops.gnpool.attsets_forward(x, scores, ptr, perm, 5, backend)
    upstream = torch.randn_like(out)
    for need_x, need_scores in ((True, True), (False, True)):
        torch.library.opcheck(torch.ops.gnpool.attsets_backward.default,
                              (upstream, x, scores, ptr, perm, out, m, l, need_x, need_scores,
                               backend))


@pytest.mark.parametrize("backend", OP_BACKENDS)
@pytest.mark.parametrize("shared, activation, with_bias", [(False, None, True),
                                                           (True, "tanh", False)])
def test_opcheck_attsets_linear_operators(backend, shared, activation, with_bias):
    device = _device(backend)
    x, ptr, perm = _csr_case(device, unsorted=not shared)
    weight = torch.randn(1 if shared else 5, 5, dtype=torch.float64, device=device)
    bias = torch.randn(weight.size(0), dtype=torch.float64, device=device) if with_bias else None
    needs_grad = [t.clone().requires_grad_() if t is not None else None
                  for t in (x, weight, bias)]
    torch.library.opcheck(torch.ops.gnpool.attsets_linear_forward.default,
                          (*needs_grad, activation, ptr, perm, 5, backend))
    out, m, l = torch.ops.gnpool.attsets_linear_forward(x, weight, bias, activation, ptr, perm,
                                                        5, backend)
    torch.library.opcheck(torch.ops.gnpool.attsets_linear_backward.default,
                          (torch.randn_like(out), x, weight, bias, activation, ptr, perm, out, m,
                           l, True, True, backend))


def test_opcheck_csr_and_its_result():
    index = torch.tensor([3, 1, 3, 0, 1, 3, 0])
    torch.library.opcheck(torch.ops.gnpool.csr.default, (index, 5))
    ptr, perm = torch.ops.gnpool.csr(index, 5)
    assert ptr.tolist() == [0, 2, 4, 4, 7, 7]
    assert perm.tolist() == [3, 6, 1, 4, 0, 2, 5]  # stable: a set's elements keep their order


def test_operator_backends_agree_with_each_other():
    x, ptr, perm = _csr_case("cpu", unsorted=True)
    scores = torch.randn(11, 5, dtype=torch.float64)
    results = {}
    for backend in ("native", "cpu", "auto") + (("triton",) if _TRITON_OK else ()):
        if backend == "cpu" and not cpu.available:
            continue
        device = _device(backend)
        out = torch.ops.gnpool.attsets_forward(x.to(device), scores.to(device), ptr.to(device),
                                               perm.to(device), 5, backend)
        results[backend] = [t.cpu() for t in out]
    for name, got in results.items():
        for a, b in zip(got, results["native"], strict=True):
            torch.testing.assert_close(a, b, msg=name)


def test_operator_rejects_unknown_or_unusable_backends(monkeypatch):
    x, ptr, perm = _csr_case("cpu", unsorted=True)
    with pytest.raises(ValueError, match="backend must be one of"):
        torch.ops.gnpool.attsets_forward(x, x, ptr, perm, 5, "scatter")
    if triton_backend.available:
        monkeypatch.setattr(triton_backend, "interpreting", lambda: False)
        with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
            torch.ops.gnpool.attsets_forward(x, x, ptr, perm, 5, "triton")


def test_traceable_backends_are_declared_per_operator():
    for operator in ("attsets", "gnp"):
        assert ops.traceable(operator, "cpu") and ops.traceable(operator, "triton")
        assert ops.traceable(operator, "native") and not ops.traceable(operator, "scatter")


class _Capture:
    """A torch.compile backend that keeps the forward and backward graphs AOTAutograd
    traced and runs them as they are."""

    def __init__(self):
        self.forward, self.backward = [], []

        def keep(graphs):
            def compiler(gm, example_inputs):
                graphs.append(gm)
                return make_boxed_func(gm.forward)
            return compiler

        self.backend = aot_autograd(fw_compiler=keep(self.forward),
                                    bw_compiler=keep(self.backward))

    @staticmethod
    def targets(graphs) -> set:
        return {node.target for gm in graphs for node in gm.graph.nodes}


@pytest.mark.parametrize("layout", ["unsorted", "ptr", "single"])
@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_compile_fullgraph_runs_the_operators_in_one_graph(layout):
    x, index = random_sets(40, 5, 6, seed=1, dtype=torch.float32, sort=layout == "ptr")
    kwargs = {"index": index, "dim_size": 5}
    if layout == "ptr":
        kwargs = {"ptr": to_ptr(index, 5)}
    elif layout == "single":
        kwargs = {"dim_size": 1}  # PyG's __call__ reads the index's maximum otherwise
    aggr = AttSetsAggregation(6)
    capture = _Capture()
    compiled = torch.compile(aggr, fullgraph=True, backend=capture.backend)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = compiled(xa, **kwargs)
    out.square().sum().backward()
    grad_weight = aggr.score.weight.grad.clone()
    aggr.score.weight.grad = None
    ref = aggr(xb, **kwargs)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(grad_weight, aggr.score.weight.grad)
    # One graph (fullgraph), with the fused forward in it and the fused backward in its
    # backward graph.
    assert len(capture.forward) == 1 and len(capture.backward) == 1
    assert torch.ops.gnpool.attsets_linear_forward.default in capture.targets(capture.forward)
    assert torch.ops.gnpool.attsets_linear_backward.default in capture.targets(capture.backward)


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_compile_of_given_scores_has_no_graph_break():
    x, index = random_sets(30, 4, 3, seed=2, dtype=torch.float32)
    scores = torch.randn(30, 3)

    def fn(x, scores, index):
        return attsets(x, scores, index, dim_size=4).relu()

    explained = torch._dynamo.explain(fn)(x, scores, index)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    targets = {node.target for node in explained.graphs[0].graph.nodes}
    assert torch.ops.gnpool.attsets_forward in targets  # Dynamo records the overload packet


def test_compile_of_a_graph_conv_matches_eager():
    torch.manual_seed(3)
    conv = GraphConv(8, 8, aggr=AttSetsAggregation(8))
    x, edge_index = torch.randn(12, 8), torch.randint(0, 12, (2, 40))
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, edge_index), conv(x, edge_index))


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = GraphConv(6, 6, aggr=AttSetsAggregation(6))
        self.gnp_conv = GraphConv(6, 6, aggr=GNPAggregation(6, p=2.0, q=0.5, p_neg=-3.0))
        self.readout = AttSetsAggregation(6, activation="tanh")
        self.gnp_readout = GNPAggregation.from_pooling("max", channels=6)

    def forward(self, x, edge_index, batch):
        h = self.gnp_conv(self.conv(x, edge_index).relu(), edge_index)
        return (self.readout(h, batch, dim_size=2)
                + self.gnp_readout(h, batch, dim_size=2))


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_export_records_gnpool_operators_and_runs():
    torch.manual_seed(4)
    model = _Model()
    x, edge_index = torch.randn(10, 6), torch.randint(0, 10, (2, 30))
    batch = torch.tensor([0] * 6 + [1] * 4)
    exported = torch.export.export(model, (x, edge_index, batch))
    targets = [node.target for node in exported.graph.nodes if node.op == "call_function"]
    assert targets.count(torch.ops.gnpool.attsets_linear_forward.default) == 2
    assert targets.count(torch.ops.gnpool.gnp_forward.default) == 2
    assert torch.ops.gnpool.csr.default in targets
    torch.testing.assert_close(exported.module()(x, edge_index, batch),
                               model(x, edge_index, batch))


@pytest.mark.parametrize("per_channel, activation", [(True, None), (False, "tanh")])
def test_scripted_aggregation_calls_the_operators(per_channel, activation):
    torch.manual_seed(5)
    aggr = AttSetsAggregation(5, activation=activation, per_channel=per_channel)
    scripted = torch.jit.script(aggr)
    assert "gnpool::attsets_linear_forward" in str(scripted.inlined_graph)
    x, index = random_sets(25, 4, 5, seed=6, dtype=torch.float32)
    for args in ((index, None, 4), (None, to_ptr(index.sort().values, 4), None),
                 (None, None, None)):
        torch.testing.assert_close(scripted(x, *args), aggr(x, *args))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    scripted(xa, index, None, 4).square().sum().backward()
    grad_weight = aggr.score.weight.grad.clone()
    aggr.score.weight.grad = None
    aggr(xb, index, dim_size=4).square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(grad_weight, aggr.score.weight.grad)
    # Another rank and pooled dimension: given-scores operator after the scoring layer.
    x3 = torch.randn(2, 7, 5)
    sets = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    torch.testing.assert_close(scripted(x3, sets, None, 3, 1), aggr(x3, sets, dim_size=3, dim=1))


# ---------------------------------------------------------------------------------------
# GNP


def _gnp_params(shared: bool, device: str, geometric: float = 0.0):
    # p_unit and beta per part: max-like, min-like, p = 0 (or near), mean and mixed in one
    # go. (A part with p = 0 and a zero element has a NaN sum A in the state, which opcheck's
    # comparison of eager and traced outputs would report as a mismatch.)
    gen = torch.Generator().manual_seed(7)
    if shared:
        values = [torch.tensor([[v]], dtype=torch.float64) for v in (0.6, 0.3, -0.4, 0.8)]
    else:
        a = torch.tensor([[1.0, -1.0, geometric, 0.5, -0.7]], dtype=torch.float64)
        values = [a, torch.rand(1, 5, generator=gen, dtype=torch.float64),
                  a.flip(1), torch.rand(1, 5, generator=gen, dtype=torch.float64)]
    return [v.to(device) for v in values]


@pytest.mark.parametrize("backend", OP_BACKENDS)
@pytest.mark.parametrize("shared", [False, True])
def test_opcheck_gnp_operators(backend, shared):
    device = _device(backend)
    x, ptr, perm = _csr_case(device, unsorted=not shared)
    x = x.abs() + 0.1 if shared else x  # the shared exponents include p < 0: no zero parts
    params = _gnp_params(shared, device, geometric=1e-3)
    needs_grad = [t.clone().requires_grad_() for t in (x, *params)]
    torch.library.opcheck(torch.ops.gnpool.gnp_forward.default,
                          (*needs_grad, ptr, perm, 5, backend))
    out, state = torch.ops.gnpool.gnp_forward(x, *params, ptr, perm, 5, backend)
    assert state.shape == (6, 5, 5)
    upstream = torch.randn_like(out)
    for need_x, need_params in ((True, True), (False, True), (True, False)):
        torch.library.opcheck(torch.ops.gnpool.gnp_backward.default,
                              (upstream, x, *params, ptr, perm, state, need_x, need_params,
                               backend))


def test_gnp_operator_backends_agree_with_each_other():
    x, ptr, perm = _csr_case("cpu", unsorted=True)
    x[3] = 0.0
    params = _gnp_params(False, "cpu")
    upstream = torch.randn(5, 5, dtype=torch.float64)
    results = {}
    for backend in ("native", "cpu", "auto") + (("triton",) if _TRITON_OK else ()):
        if backend == "cpu" and not cpu.available:
            continue
        device = _device(backend)
        args = [t.to(device) for t in (x, *params)]
        out, state = torch.ops.gnpool.gnp_forward(*args, ptr.to(device), perm.to(device), 5,
                                                  backend)
        grads = torch.ops.gnpool.gnp_backward(upstream.to(device), *args, ptr.to(device),
                                              perm.to(device), state, True, True, backend)
        results[backend] = [t.cpu() for t in (out, state[2], state[5], *grads)]
    for name, got in results.items():
        for a, b in zip(got, results["native"], strict=True):
            torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("layout", ["unsorted", "ptr"])
@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_compile_fullgraph_runs_the_gnp_operators_in_one_graph(layout):
    x, index = random_sets(40, 5, 6, seed=8, dtype=torch.float32, sort=layout == "ptr")
    kwargs = {"ptr": to_ptr(index, 5)} if layout == "ptr" else {"index": index, "dim_size": 5}
    aggr = GNPAggregation(6, p=[1.0, 2.0, -3.0, 0.0, 40.0, float("inf")],
                          q=[0.0, 0.5, 1.0, 1.0, 1.0, 1.0], p_neg=-2.0)
    capture = _Capture()
    compiled = torch.compile(aggr, fullgraph=True, backend=capture.backend)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = compiled(xa, **kwargs)
    out.square().sum().backward()
    grads = [t.grad.clone() for t in (aggr.p_unit, aggr.beta, aggr.p_neg_unit, aggr.beta_neg)]
    aggr.zero_grad()
    ref = aggr(xb, **kwargs)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xa.grad, xb.grad)
    for got, t in zip(grads, (aggr.p_unit, aggr.beta, aggr.p_neg_unit, aggr.beta_neg),
                      strict=True):
        torch.testing.assert_close(got, t.grad)
    assert len(capture.forward) == 1 and len(capture.backward) == 1
    assert torch.ops.gnpool.gnp_forward.default in capture.targets(capture.forward)
    assert torch.ops.gnpool.gnp_backward.default in capture.targets(capture.backward)


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_compile_of_a_gnp_graph_conv_matches_eager_and_projects_the_exponent():
    register()
    torch.manual_seed(9)
    conv = GraphConv(8, 8, aggr="gnp", aggr_kwargs={"channels": 8, "p": 3.0, "q": 0.5,
                                                    "p_neg": -2.0})
    aggr = conv.aggr_module
    with torch.no_grad():
        aggr.p_unit[:3] += 0.5  # outside [-1, 1]: a training forward projects it back
    x, edge_index = torch.randn(12, 8), torch.randint(0, 12, (2, 40))
    compiled = torch.compile(conv, fullgraph=True, backend="aot_eager")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = compiled(xa, edge_index)
    assert bool((aggr.p_unit.detach().abs() <= 1).all())
    out.square().sum().backward()
    grads = [t.grad.clone() for t in (aggr.p_unit, aggr.beta, conv.lin_rel.weight)]
    conv.zero_grad()
    ref = conv(xb, edge_index)
    ref.square().sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(xa.grad, xb.grad)
    for got, t in zip(grads, (aggr.p_unit, aggr.beta, conv.lin_rel.weight), strict=True):
        torch.testing.assert_close(got, t.grad)
    # No graph break, and the fused kernels in the graph (not the native composite).
    explained = torch._dynamo.explain(conv)(x, edge_index)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    targets = {node.target for node in explained.graphs[0].graph.nodes}
    assert torch.ops.gnpool.gnp_forward in targets


def test_scripted_gnp_aggregation_calls_the_operators():
    torch.manual_seed(10)
    aggr = GNPAggregation(5, p=[1.0, 2.0, -3.0, 0.5, 40.0], q=0.5, p_neg=2.0)
    with torch.no_grad():
        aggr.beta.add_(torch.linspace(-0.2, 0.2, 5))
    scripted = torch.jit.script(aggr)
    assert "gnpool::gnp_forward" in str(scripted.inlined_graph)
    x, index = random_sets(25, 4, 5, seed=11, dtype=torch.float32)
    for args in ((index, None, 4), (None, to_ptr(index.sort().values, 4), None),
                 (None, None, None)):
        torch.testing.assert_close(scripted(x, *args), aggr(x, *args))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    scripted(xa, index, None, 4).square().sum().backward()
    grads = [t.grad.clone() for t in (aggr.p_unit, aggr.beta, aggr.p_neg_unit, aggr.beta_neg)]
    aggr.zero_grad()
    aggr(xb, index, dim_size=4).square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for got, t in zip(grads, (aggr.p_unit, aggr.beta, aggr.p_neg_unit, aggr.beta_neg),
                      strict=True):
        torch.testing.assert_close(got, t.grad)
    # Another rank and pooled dimension, per-channel parameters repeated over the batch.
    x3 = torch.randn(2, 7, 5)
    sets = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    torch.testing.assert_close(scripted(x3, sets, None, 3, 1), aggr(x3, sets, dim_size=3, dim=1))
    # Training mode projects the exponents into [-1, 1] in place; evaluation does not.
    with torch.no_grad():
        aggr.p_unit.fill_(1.5)
        aggr.p_neg_unit.fill_(-2.0)
    expected = gnp_unit(x, index, dim_size=4, p_unit=1.0, beta=aggr.beta.detach(),
                        p_neg_unit=-1.0, beta_neg=aggr.beta_neg.detach())
    scripted.eval()
    scripted(x, index, None, 4)
    assert bool((aggr.p_unit == 1.5).all())
    scripted.train()
    torch.testing.assert_close(scripted(x, index, None, 4), expected)
    assert bool((aggr.p_unit == 1.0).all() and (aggr.p_neg_unit == -1.0).all())


def test_every_registered_operator_is_listed_here():
    # A new operator must join GNPOOL_OPS and get an opcheck above.
    registered = {name for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("gnpool::")}
    assert registered == {op.name() for op in GNPOOL_OPS}


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_cpu_kernels_reject_sets_that_do_not_describe_x():
    # The kernels index x through ptr and perm without bounds checks: the operators are
    # public, and TorchScript and torch.compile skip the modules' Python-side checks, so
    # what they are given is checked before any kernel runs (a ValueError, not a crash).
    x = torch.rand(4, 3)
    one = torch.zeros(1, 1)
    params = (one, one, one, one)
    good_ptr = torch.tensor([0, 2, 4])
    out, _ = torch.ops.gnpool.gnp_forward(x, *params, good_ptr, None, 2, "cpu")
    assert out.shape == (2, 3)
    cases = [
        (torch.tensor([0, 2, 5]), None, 2, r"ptr must start at 0 and end at the number of "
                                           r"elements \(4\), got ptr\[0\]=0, ptr\[-1\]=5"),
        (torch.tensor([1, 2, 4]), None, 2, r"ptr\[0\]=1"),
        (torch.tensor([0, 3, 2, 4]), None, 3, "ptr must be non-decreasing"),
        (torch.tensor([0, 2, 4]), None, 3, r"ptr must be a 1-D int64 CPU tensor of size \+ 1 "
                                           r"= 4 offsets"),
        (torch.tensor([0, 2, 4], dtype=torch.int32), None, 2, "int64"),
        (torch.tensor([0, 2, 4]), torch.tensor([0, 1, 2, 3, 4]), 2,
         r"perm must be a 1-D int64 CPU tensor with one entry per element \(4\), got "
         r"torch.int64 of shape \(5,\)"),
    ]
    cases.append((torch.empty(0, dtype=torch.long), None, -1,
                  r"size \(the number of sets\) must be >= 0, got -1"))
    out, state = torch.ops.gnpool.gnp_forward(x, *params, good_ptr, None, 2, "cpu")
    scores = torch.rand(4, 3)
    weight = torch.rand(3, 3)
    att = torch.ops.gnpool.attsets_forward(x, scores, good_ptr, None, 2, "cpu")
    lin = torch.ops.gnpool.attsets_linear_forward(x, weight, None, None, good_ptr, None, 2,
                                                  "cpu")
    grad = torch.ones(2, 3)
    # Every operator that reaches the kernels: forward and backward.
    calls = {
        "gnp_forward": lambda p, q, s: torch.ops.gnpool.gnp_forward(x, *params, p, q, s,
                                                                    "cpu"),
        "gnp_backward": lambda p, q, s: torch.ops.gnpool.gnp_backward(
            grad[:max(s, 0)], x, *params, p, q, state[:, :max(s, 0)], True, True, "cpu"),
        "attsets_forward": lambda p, q, s: torch.ops.gnpool.attsets_forward(
            x, scores, p, q, s, "cpu"),
        "attsets_backward": lambda p, q, s: torch.ops.gnpool.attsets_backward(
            grad[:max(s, 0)], x, scores, p, q, *(t[:max(s, 0)] for t in att), True, True,
            "cpu"),
        "attsets_linear_forward": lambda p, q, s: torch.ops.gnpool.attsets_linear_forward(
            x, weight, None, None, p, q, s, "cpu"),
        "attsets_linear_backward": lambda p, q, s: torch.ops.gnpool.attsets_linear_backward(
            grad[:max(s, 0)], x, weight, None, None, p, q, *(t[:max(s, 0)] for t in lin),
            True, True, "cpu"),
    }
    for name, call in calls.items():
        call(good_ptr, None, 2)
        for ptr, perm, size, message in cases:
            if name.endswith("backward") and size != 2:
                continue    # (the backward reads the set count off grad and the state)
            with pytest.raises(ValueError, match=message):
                call(ptr, perm, size)


@pytest.mark.skipif(not cpu.available, reason="fused CPU kernels not built")
def test_scripted_modules_given_an_index_of_the_wrong_length_raise():
    # A scripted module skips the Python-side checks; an index with more entries than x
    # has rows must still raise instead of reading and writing past x (it corrupted the
    # heap before the kernels checked their sets).
    for module in (GNPAggregation(3), AttSetsAggregation(3)):
        scripted = torch.jit.script(module)
        x = torch.rand(4, 3, requires_grad=True)
        bad = torch.tensor([0, 0, 1, 1, 1])
        # (TorchScript raises the operator's ValueError as a RuntimeError.)
        with pytest.raises(RuntimeError, match="ValueError: ptr must start at 0 and end at "
                                               r"the number of elements \(4\)"):
            scripted(x, bad)


def test_traced_modules_match_eager_mode():
    # torch.jit.trace records only registered operators: the sets go through
    # torch.ops.gnpool.csr while tracing (ctypes calls would be missing from the graph and
    # the replay would read uninitialised offsets), a traced GNP reads its exponent without
    # the in-place projection, and the trace's own check (a second invocation) passes.
    from gnpool.models import MessageMLPGNN

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gnn = MessageMLPGNN(3, 1, 8, 2, aggr="gnp", readout="gnp", share_aggr=True)

        def forward(self, x, edge_index, batch):
            return self.gnn(x, edge_index, None, batch, 2)

    gen = torch.Generator().manual_seed(0)
    x, index = torch.rand(40, 3, generator=gen) + 0.05, torch.arange(40) % 4
    other = torch.rand(40, 3, generator=gen) + 0.05
    edge_index = torch.randint(0, 10, (2, 30), generator=gen)
    batch = torch.arange(10) // 5
    cases = [(GNPAggregation(3, p=[0.3, 2.0, -1.0]), (x, index), (other, index)),
             (GNPAggregation.from_pooling("max", channels=3), (x, index), (other, index)),
             (AttSetsAggregation(3), (x, index), (other, index)),
             (Graph(), (x[:10], edge_index, batch), (other[:10], edge_index, batch))]
    for module, example, inputs in cases:
        for mode in ("eval", "train"):
            getattr(module, mode)()
            traced = torch.jit.trace(module, example)
            out, ref = traced(*inputs), module(*inputs)
            torch.testing.assert_close(out, ref)
            params = [p for p in module.parameters() if p.requires_grad]
            if mode == "train" and params:
                grads = torch.autograd.grad(out.sum(), params)
                expected = torch.autograd.grad(module(*inputs).sum(), params)
                for g, e in zip(grads, expected, strict=True):
                    torch.testing.assert_close(g, e)
