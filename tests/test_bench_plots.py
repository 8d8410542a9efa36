"""The PNG plots' data preparation."""

from __future__ import annotations

from gnpool.bench.plots import _curve, _layer_label, plot_gnp
from gnpool.bench.report import Cell


def _row(mapes, sizes=(22.0, 60.0)):
    return {"bins": {"interp": [{"lo": 20, "mean_size": sizes[0], "mape": mapes[0]}],
                     "extrap": [{"lo": 50, "mean_size": sizes[1], "mape": mapes[1]}]}}


def test_curve_averages_seeds_per_bin():
    cell = Cell("t", "c", True, rows=[_row((1.0, 10.0)), _row((3.0, None), (24.0, 62.0))])
    assert _curve(cell, "interp") == ([23.0], [2.0])
    assert _curve(cell, "extrap") == ([61.0], [float("inf")])   # a diverged seed shows


def test_layer_labels():
    assert _layer_label("convs.0.aggr_module") == "layer 1"
    assert _layer_label("convs.2.aggr_module") == "layer 3"
    assert _layer_label("readout") == "readout" and _layer_label("pooling") == "pooling"


def test_no_gnp_runs_no_plot(tmp_path):
    cells = {"t": {"sum": Cell("t", "sum", True, rows=[_row((1.0, 2.0))])}}
    assert plot_gnp(cells, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
