"""PNG plots of a grid: extrapolation error against test size, learned GNP p and q."""

from __future__ import annotations

import math
import statistics
import textwrap
from collections import defaultdict
from pathlib import Path

from .report import LABELS, LEARNED_ORDER, Cell, best_fixed, known_good

_COLOURS = {"gnp": "tab:red", "attsets": "tab:purple", "powermean": "tab:orange",
            "softmax": "tab:brown", "laf": "tab:pink", "genagg": "tab:olive",
            "deepsets": "tab:cyan", "settransformer": "black",
            "variancepreserving": "gold", "best": "tab:blue", "known": "tab:green"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _curve(cell: Cell, split: str) -> tuple[list[float], list[float]]:
    """Mean size and mean MAPE per size bin of one test split, over the seeds."""
    points: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for row in cell.rows:
        for b in (row.get("bins") or {}).get(split, []):
            mape = b["mape"] if b["mape"] is not None else math.inf
            points[b["lo"]].append((b["mean_size"], mape))
    xs, ys = [], []
    for lo in sorted(points):
        xs.append(statistics.fmean(v[0] for v in points[lo]))
        ys.append(statistics.fmean(v[1] for v in points[lo]))
    return xs, ys


def _draw(ax, cell: Cell, label: str | None, **style) -> None:
    # The two test splits are separate segments: sizes between them were never tested.
    for split in ("interp", "extrap"):
        xs, ys = _curve(cell, split)
        ax.plot(xs, ys, label=label if split == "interp" else None, **style)


_TITLE = ("MAPE against test size: interpolation test (shaded: the training sizes), then "
          "extrapolation test (also shifted features and, for graphs, new families)")


def plot_extrapolation(cells: dict[str, dict[str, Cell]], path: Path) -> Path:
    """One panel per task: MAPE per test size bin of the best fixed configuration, the
    known-good one, the learnable ones (coloured) and the other fixed ones (grey)."""
    plt = _pyplot()
    fig = extrapolation_figure(cells)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def extrapolation_figure(cells: dict[str, dict[str, Cell]]):
    """The matplotlib figure :func:`plot_extrapolation` saves."""
    plt = _pyplot()
    tasks = list(cells)
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.4 * cols, 5.0 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        by_config = cells[task]
        best, good = best_fixed(by_config), known_good(task)
        grey_done = False
        for cell in by_config.values():
            if not cell.fixed or cell is best or cell.config == good:
                continue
            _draw(ax, cell, None if grey_done else "other fixed", color="0.75", lw=0.8,
                  marker=".", ms=3, zorder=1)
            grey_done = True
        if good in by_config and (best is None or best.config != good):
            _draw(ax, by_config[good], f"{good} (known-good)", color=_COLOURS["known"],
                  lw=1.8, marker="s", ms=4, zorder=3)
        if best is not None:
            tag = "best fixed" + (", known-good" if best.config == good else "")
            _draw(ax, best, f"{best.config} ({tag})", color=_COLOURS["best"], lw=2.2,
                  marker="o", ms=4, zorder=4)
        for name in LEARNED_ORDER:
            if name in by_config:
                _draw(ax, by_config[name], LABELS[name], color=_COLOURS[name], lw=1.6,
                      marker="^", ms=4, ls="--" if name != "gnp" else "-",
                      zorder=5 if name == "gnp" else 3)
        _shade_training(ax, by_config)
        ax.set_yscale("log")
        _label_log_axis(ax)
        ax.set_title(task)
        ax.set_xlabel("test graph size (nodes)" if "set_" not in task else "test set size")
        ax.set_ylabel("MAPE (%)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3,
                  frameon=False)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    # Wrapped to the figure's width (about 12 characters of 11-point text per inch), so
    # that a one-panel figure keeps its whole title.
    width = max(40, int(fig.get_figwidth() * 12))
    fig.suptitle(textwrap.fill(_TITLE, width), fontsize=11)
    fig.tight_layout()
    return fig


def _plain(value: float, _pos: int) -> str:
    return f"{value:g}"


# Labelled ticks of a log axis, tried in turn until at least two fall inside the view:
# decades, then 1-2-5, then every integer multiple of a decade.
_SUBS = ((1.0,), (1.0, 2.0, 5.0), tuple(float(k) for k in range(1, 10)))


def _log_ticks(lo: float, hi: float, subs: tuple[float, ...]) -> list[float]:
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = (k * 10.0 ** e for e in range(first, last + 1) for k in subs)
    return [t for t in ticks if lo <= t * (1 + 1e-9) and t <= hi * (1 + 1e-9)]


def _label_log_axis(ax) -> None:
    """At least two labelled ticks on a log y axis, however short its range: the
    coarsest of :data:`_SUBS` that puts two inside the view, else the view widened to the
    nearest multiples of a decade around the data."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim()
    if not (0 < lo < hi and math.isfinite(hi)):
        return
    for subs in _SUBS:
        if len(_log_ticks(lo, hi, subs)) >= 2:
            break
    else:
        below = [t for t in _log_ticks(lo / 10, lo, subs) if t <= lo]
        above = [t for t in _log_ticks(hi, hi * 10, subs) if t >= hi]
        ax.set_ylim(below[-1], above[0])
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_locator(LogLocator(base=10.0, subs=_SUBS[-1]))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _shade_training(ax, by_config: dict[str, Cell]) -> None:
    for cell in by_config.values():
        for row in cell.rows:
            bins = (row.get("bins") or {}).get("interp")
            if bins:
                ax.axvspan(bins[0]["lo"], bins[-1]["hi"] - 1, color="0.92", zorder=0)
                return


def plot_gnp(cells: dict[str, dict[str, Cell]], path: Path) -> Path | None:
    """Per task, every GNP channel's learned exponent (``p_unit``) and size exponent
    (``beta``) against its initial exponent (all layers and seeds, positive parts): points
    on the diagonal kept their initial exponent."""
    tasks = [t for t, c in cells.items() if "gnp" in c and c["gnp"].rows]
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.1 * len(tasks) + 0.8),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    ticks = ([-1.0, -0.5, 0.0, 0.5, 1.0], ["min", "p=-1", "p=0", "p=1", "max"])
    for (ax_p, ax_b), task in zip(axes, tasks, strict=True):
        layers: dict[str, list[dict]] = defaultdict(list)
        for row in cells[task]["gnp"].rows:
            for module in row.get("gnp") or []:
                if "p_unit_init" in module and len(module["p_unit_init"]) == len(module["p_unit"]):
                    layers[module["name"]].append(module)
        for i, (name, modules) in enumerate(layers.items()):
            a0 = [a for m in modules for a in m["p_unit_init"]]
            a1 = [a for m in modules for a in m["p_unit"]]
            b1 = [b for m in modules for b in m["beta"]]
            style = {"color": colours(i), "s": 14, "alpha": 0.7, "label": _layer_label(name)}
            ax_p.scatter(a0, a1, **style)
            ax_b.scatter(a0, b1, **style)
        for ax in (ax_p, ax_b):
            ax.set_xlim(-1.08, 1.08)
            ax.set_xticks(*ticks)
            ax.grid(True, alpha=0.3)
        ax_p.set_ylim(-1.08, 1.08)
        ax_p.set_yticks(*ticks)
        ax_p.plot([-1, 1], [-1, 1], color="0.5", lw=0.8, ls=":", zorder=0)
        ax_p.set_ylabel(f"{task}\nlearned exponent")
        ax_b.set_ylabel("learned beta")
        if ax_p.get_legend_handles_labels()[0]:
            ax_p.legend(fontsize=7, loc="lower right")
    axes[-1][0].set_xlabel("initial exponent of the channel (p_unit)")
    axes[-1][1].set_xlabel("initial exponent of the channel (p_unit)")
    axes[0][0].set_title("exponent p = tan(pi p_unit / 2): on the dotted diagonal = "
                         "unchanged;\n1 is exactly max, -1 exactly min, 1/2 sum or mean",
                         fontsize=9)
    axes[0][1].set_title("size exponent (G = n^beta * power mean):\nbeta = 1 sum-like, "
                         "0 mean-, max- or min-like", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _layer_label(name: str) -> str:
    # "convs.0.aggr_module" -> "layer 1"; "readout" / "pooling" stay.
    parts = name.split(".")
    if parts[0] == "convs" and len(parts) > 1 and parts[1].isdigit():
        return f"layer {int(parts[1]) + 1}"
    return parts[0]
