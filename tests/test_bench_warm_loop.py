"""experiments/bench_warm_loop.py: its input distributions and one tiny measurement."""

from __future__ import annotations

import pytest
import torch
from conftest import load_experiment


@pytest.fixture(scope="module")
def bench():
    return load_experiment("bench_warm_loop")


def test_softplus_inputs_hold_subnormals_and_their_variants_do_not(bench):
    tiny = torch.finfo(torch.float32).tiny

    def make(kind):
        return bench.make_inputs(kind, 20000, 8, torch.Generator().manual_seed(0))

    plain, floored, zeroed = make("softplus"), make("softplus-floored"), make("softplus-zeroed")
    subnormal = (plain > 0) & (plain < tiny)
    assert 0.002 < subnormal.float().mean() < 0.05          # about 1%
    assert (plain >= 0).all() and (make("randn") < 0).any()
    assert floored.min() >= tiny and torch.equal(floored[~subnormal & (plain > 0)],
                                                 plain[~subnormal & (plain > 0)])
    assert not ((zeroed > 0) & (zeroed < tiny)).any() and (zeroed[subnormal] == 0).all()
    with pytest.raises(ValueError, match="inputs must be one of"):
        make("uniform")


def test_measure_reports_the_input_distribution(bench):
    row = bench.measure("gnp", 200, 20, 4, iters=1, inputs="softplus")
    assert row["inputs"] == "softplus" and row["median_ms"] > 0


@pytest.mark.parametrize("args, message", [
    (["--sizes", "300"], "--sizes must be comma-separated ELEMENTS:SETS, got '300'"),
    (["--sizes", "0:3"], "--sizes needs positive ELEMENTS and SETS"),
    (["--methods", "bogus"], "--methods must be among"),
    (["--inputs", "uniform"], "--inputs must be among"),
    (["--channels", "0"], "--channels must be a positive int, got 0"),
    (["--iters", "0"], "--iters must be a positive int, got 0"),
])
def test_bad_arguments_are_named_before_anything_runs(bench, monkeypatch, capsys, args,
                                                      message):
    monkeypatch.setattr("sys.argv", ["bench_warm_loop.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
