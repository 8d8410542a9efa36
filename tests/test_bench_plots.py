"""The PNG plots' data preparation."""

from __future__ import annotations

import pytest

from gnpool.bench.plots import _curve, _layer_label, extrapolation_figure, plot_gnp
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


def _visible_labels(fig, ax) -> list[str]:
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    return [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
            if t.get_text() and lo <= v <= hi]


@pytest.mark.parametrize("mapes", [((56.0, 71.0), (60.0, 66.0)),     # no 1-2-5 tick inside
                                   ((61.0, 64.0), (62.0, 69.0)),     # not even a multiple
                                   ((0.3, 800.0), (2.0, 9.0))])      # several decades
def test_one_task_keeps_its_title_and_two_y_labels(mapes):
    import matplotlib.pyplot as plt
    def row(values):
        return {"bins": {"interp": [{"lo": 20, "hi": 31, "mean_size": 25.0, "mape": values[0]}],
                         "extrap": [{"lo": 50, "hi": 71, "mean_size": 60.0,
                                     "mape": values[1]}]}}

    cells = {"set_l2": {"max": Cell("set_l2", "max", True, rows=[row(mapes[0])]),
                        "sum": Cell("set_l2", "sum", True, rows=[row(mapes[1])])}}
    fig = extrapolation_figure(cells)
    try:
        fig.canvas.draw()
        title = fig.get_suptitle() and fig._suptitle.get_window_extent()
        assert 0 <= title.x0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
        ax = fig.axes[0]
        labels = _visible_labels(fig, ax)
        assert len(labels) >= 2, labels
        lo, hi = ax.get_ylim()
        assert lo <= min(min(m) for m in mapes) and hi >= max(max(m) for m in mapes)
    finally:
        plt.close(fig)
