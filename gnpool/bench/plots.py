"""PNG plots of a grid: extrapolation error against test size, learned GNP p and q."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from ..functional import P_MAX, P_MIN
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


def plot_extrapolation(cells: dict[str, dict[str, Cell]], path: Path) -> Path:
    """One panel per task: MAPE per test size bin of the best fixed configuration, the
    known-good one, the learnable ones (coloured) and the other fixed ones (grey)."""
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
        ax.yaxis.set_major_formatter(_plain)
        ax.yaxis.set_minor_formatter(_plain_minor)
        ax.set_title(task)
        ax.set_xlabel("test graph size (nodes)" if "set_" not in task else "test set size")
        ax.set_ylabel("MAPE (%)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3,
                  frameon=False)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.suptitle("MAPE against test size: interpolation test (shaded: the training sizes), "
                 "then extrapolation test (also shifted features and, for graphs, new "
                 "families)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plain(value: float, _pos: int) -> str:
    return f"{value:g}"


def _plain_minor(value: float, _pos: int) -> str:
    # Label 2x and 5x of each decade so that short log ranges still have numbers.
    mantissa = value / 10 ** math.floor(math.log10(value)) if value > 0 else 0
    return f"{value:g}" if round(mantissa) in (2, 5) else ""


def _shade_training(ax, by_config: dict[str, Cell]) -> None:
    for cell in by_config.values():
        for row in cell.rows:
            bins = (row.get("bins") or {}).get("interp")
            if bins:
                ax.axvspan(bins[0]["lo"], bins[-1]["hi"] - 1, color="0.92", zorder=0)
                return


def plot_gnp(cells: dict[str, dict[str, Cell]], path: Path) -> Path | None:
    """Per task, every GNP channel's learned |p| and q against its initial |p| (all
    layers and seeds): points on the diagonal kept their initial exponent."""
    tasks = [t for t, c in cells.items() if "gnp" in c and c["gnp"].rows]
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.1 * len(tasks) + 0.8),
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for (ax_p, ax_q), task in zip(axes, tasks, strict=True):
        layers: dict[str, list[dict]] = defaultdict(list)
        for row in cells[task]["gnp"].rows:
            for module in row.get("gnp") or []:
                if len(module.get("p_init", [])) == len(module["p"]):
                    layers[module["name"]].append(module)
        for i, (name, modules) in enumerate(layers.items()):
            p0 = [p for m in modules for p in m["p_init"]]
            p1 = [p for m in modules for p in m["p"]]
            q1 = [q for m in modules for q in m["q"]]
            for negative, marker in ((False, "o"), (True, "v")):
                sel = [k for k, p in enumerate(p0) if (p < 0) == negative]
                if not sel:
                    continue
                style = {"color": colours(i), "marker": marker, "s": 14, "alpha": 0.7,
                         "label": _layer_label(name) if not negative else None}
                ax_p.scatter([abs(p0[k]) for k in sel], [abs(p1[k]) for k in sel], **style)
                ax_q.scatter([abs(p0[k]) for k in sel], [q1[k] for k in sel], **style)
        for ax in (ax_p, ax_q):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(_plain)
            ax.grid(True, alpha=0.3)
        ax_p.set_yscale("log")
        ax_p.set_ylim(P_MIN / 1.3, P_MAX * 1.3)
        ax_p.yaxis.set_major_formatter(_plain)
        ax_p.plot([P_MIN, P_MAX], [P_MIN, P_MAX], color="0.5", lw=0.8, ls=":", zorder=0)
        ax_p.set_ylabel(f"{task}\nlearned |p|")
        ax_q.set_ylabel("learned q")
        if ax_p.get_legend_handles_labels()[0]:
            ax_p.legend(fontsize=7, loc="lower right", title="o: p > 0, v: p < 0",
                        title_fontsize=7)
    axes[-1][0].set_xlabel("initial |p| of the channel")
    axes[-1][1].set_xlabel("initial |p| of the channel")
    axes[0][0].set_title("exponent: on the dotted diagonal = unchanged;\n"
                         "|p| = 1 is sum or mean, large |p| max (p > 0) or min (p < 0)",
                         fontsize=9)
    axes[0][1].set_title("size normalisation: q = 0 sum-like, q = 1 mean-like\n"
                         "(initial q: 0 in message passing, 1 in readouts and set poolings)",
                         fontsize=9)
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
