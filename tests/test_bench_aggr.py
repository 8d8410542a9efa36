"""experiments/bench_aggr.py at a tiny size: the table, the report and its plot."""

from __future__ import annotations

import json

import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def bench():
    return load_experiment("bench_aggr")


def test_table_has_every_method_relative_to_the_reference(bench, capsys):
    bench.main(["--elements", "3000", "--sets", "150", "--channels", "8", "--repeat", "1",
                "--rounds", "2", "--methods", "mean,attsets", "--layout", "ptr"])
    out = capsys.readouterr().out
    assert "best of 2 x 1" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| method")}
    assert set(rows) == {"mean", "attsets"}
    assert rows["mean"][1].strip() == "1.00"
    for cells in rows.values():
        assert float(cells[0]) >= 0 and float(cells[1]) > 0 and float(cells[2]) >= 0


def test_worker_failure_gives_nan_not_a_crash(bench):
    res = bench.run_one("mean", 10, 4, 20, repeat=1)       # more sets than elements is fine
    assert res["time"] > 0
    bad = bench.run_one("gnp", 10, 0, 5, repeat=1)         # zero channels: the worker fails
    assert bad["time"] != bad["time"]


def test_report_writes_tables_plot_and_json(bench, tmp_path, monkeypatch):
    # The report's assembly, from stand-in measurements (run_one itself is tested above):
    # every method's time is its position in METHODS (+1) times E * F.
    calls = []

    def fake_run_one(method, elements, channels, sets, layout="sorted", inference=False,
                     repeat=3, seed=0, device="cpu"):
        assert device == "cpu"
        calls.append((method, elements, channels, layout, inference))
        return {"method": method, "peak": 1e6 * (1 + bench.METHODS.index(method)),
                "time": 1e-9 * (1 + bench.METHODS.index(method)) * elements * channels}

    monkeypatch.setattr(bench, "run_one", fake_run_one)
    monkeypatch.setattr(bench, "ELEMENTS", [2000, 4000])
    monkeypatch.setattr(bench, "CHANNELS", [4, 8])
    out = tmp_path / "aggr"
    bench.main(["--elements", "2000", "--sets", "100", "--channels", "8", "--report", str(out)])
    text = (out / "README.md").read_text()
    for heading in ("## Forward+backward, sorted index", "## Set layouts", "## Inference only",
                    "## Scaling"):
        assert heading in text
    # powermean is METHODS[3], gnp METHODS[6]: 4/7 as fast; attention 6/8 of attsets.
    assert "GNP is 0.6x faster than PowerMeanAggregation" in text
    assert "AttSets is 0.8x faster than AttentionalAggregation(Linear(8, 8))" in text
    assert "| 4,000 |" in text and "| gnp | 7.000 |" not in text
    assert {c[3] for c in calls} == {"sorted", "unsorted", "ptr"} and any(c[4] for c in calls)
    assert ("attention", bench.CHANNEL_ELEMENTS, 8, "sorted", False) in calls
    scaling = json.loads((out / "scaling.json").read_text())
    assert len(scaling["elements"]) == 2 and "attention" in scaling["channels"][0]
    assert (out / "scaling.png").stat().st_size > 1000


def test_bad_arguments_are_rejected(bench):
    with pytest.raises(SystemExit):
        bench.main(["--methods", "nope"])
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])
