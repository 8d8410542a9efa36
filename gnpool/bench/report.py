"""The report of a grid: a Markdown table and PNG plots from the database alone."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import task_info
from .configs import FIXED, LEARNED

#: Learnable configurations in the order the tables list them.
LEARNED_ORDER = LEARNED
LABELS = {"gnp": "GNP", "attsets": "AttSets", "powermean": "PowerMean", "softmax": "Softmax",
          "laf": "LAF", "genagg": "GenAgg", "deepsets": "DeepSets",
          "settransformer": "SetTransformer", "variancepreserving": "VPA"}
#: GNP within this factor of the best fixed pair's extrapolation MAPE counts as matching it.
MATCH_FACTOR = 1.5


@dataclass
class Cell:
    """One (task, configuration): its runs' MAPEs over seeds."""

    task: str
    config: str
    fixed: bool
    interp: list[float] = field(default_factory=list)
    extrap: list[float] = field(default_factory=list)
    failed: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def extrap_mean(self) -> float:
        return _mean(self.extrap)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def fmt(values: list[float]) -> str:
    """``mean ± std`` over seeds (std with one seed is left out); ``-`` when empty."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.3g}"
    return f"{mean:.3g} ± {statistics.stdev(values):.2g}"


def known_good(task: str) -> str | None:
    """The configuration name of the pooling the task's label is built from, when it is
    one of the fixed ones (``None`` for e.g. ``set_l2``)."""
    info = task_info(task)
    if info.level == "graph":
        name = f"{info.aggr}-{info.readout}"
        return name if info.aggr in FIXED and info.readout in FIXED else None
    pooling = info.aggr if info.level == "node" else info.readout
    return pooling if pooling in FIXED else None


def collect(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Cell]]:
    """``{task: {config: Cell}}`` in the order the rows come, failed runs counted."""
    cells: dict[str, dict[str, Cell]] = defaultdict(dict)
    for row in rows:
        fixed = bool((row.get("config_def") or {}).get("fixed", False))
        cell = cells[row["task"]].setdefault(row["config"],
                                             Cell(row["task"], row["config"], fixed))
        if row["status"] != "finished":
            cell.failed += 1
            continue
        cell.rows.append(row)
        for attr, col in (("interp", "mape_interp"), ("extrap", "mape_extrap")):
            value = row.get(col)
            getattr(cell, attr).append(math.inf if value is None else float(value))
    return dict(cells)


def best_fixed(cells: dict[str, Cell]) -> Cell | None:
    """The fixed configuration with the lowest mean extrapolation MAPE."""
    fixed = [c for c in cells.values() if c.fixed and c.extrap]
    return min(fixed, key=lambda c: c.extrap_mean) if fixed else None


def _order(cells: dict[str, Cell]) -> list[Cell]:
    learned = {n: i for i, n in enumerate(LEARNED_ORDER)}
    return sorted(cells.values(), key=lambda c: (not c.fixed, learned.get(c.config, 99),
                                                 c.config if not c.fixed else ""))


def summary_table(cells: dict[str, dict[str, Cell]]) -> str:
    """Per task: the best fixed configuration, each learnable one's extrapolation MAPE,
    and GNP's ratio to the best fixed one."""
    head = ["task", "known-good", "best fixed (extrap)"] + [LABELS[n] for n in LEARNED_ORDER]
    head.append("GNP / best fixed")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, by_config in cells.items():
        best = best_fixed(by_config)
        row = [f"`{task}`", known_good(task) or "none exact",
               f"{best.config}: {fmt(best.extrap)}" if best else "-"]
        for name in LEARNED_ORDER:
            cell = by_config.get(name)
            row.append(fmt(cell.extrap) if cell else "-")
        gnp = by_config.get("gnp")
        if best and gnp and gnp.extrap:
            ratio = gnp.extrap_mean / best.extrap_mean
            mark = "" if ratio <= MATCH_FACTOR else " (over 1.5x)"
            row.append(f"{ratio:.2f}x{mark}")
        else:
            row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def task_table(task: str, by_config: dict[str, Cell]) -> str:
    """Every configuration of one task: interpolation and extrapolation MAPE."""
    best = best_fixed(by_config)
    good = known_good(task)
    lines = ["| configuration | interp MAPE (%) | extrap MAPE (%) | runs |", "|---|---|---|---|"]
    for cell in _order(by_config):
        name = f"`{cell.config}`"
        if best is not None and cell.config == best.config:
            name = f"**{name}** (best fixed)"
        if cell.config == good:
            name += " (known-good)"
        runs = str(len(cell.rows)) + (f", {cell.failed} failed" if cell.failed else "")
        lines.append(f"| {name} | {fmt(cell.interp)} | {fmt(cell.extrap)} | {runs} |")
    return "\n".join(lines)


def render_markdown(cells: dict[str, dict[str, Cell]], title: str, intro: str = "",
                    plots: Iterable[str] = ()) -> str:
    """The whole report as Markdown."""
    levels = {task: task_info(task).level for task in cells}
    parts = [f"# {title}", ""]
    if intro:
        parts += [intro, ""]
    parts += ["MAPE = 100 * mean(|y - y_hat| / |y|) on the interpolation test (training "
              "distribution) and the extrapolation test (larger graphs or sets, shifted "
              "features, held-out graph families), at the epoch with the best validation "
              "loss; mean ± std over seeds.", "",
              "## Summary: extrapolation MAPE (%)", "", summary_table(cells), "",
              "Best fixed: the fixed configuration with the lowest mean extrapolation MAPE. "
              "Known-good: the pooling the label is computed with (Xu et al.); `set_l2` and "
              "the like have none among sum, mean, max and min. AttSets, DeepSets, "
              "SetTransformer and VPA (PyG's variance-preserving aggregation) on graph "
              "tasks are the readout over the task's known-good aggregation; LAF and "
              "GenAgg are, like GNP, every pooling of the model. Ratios above "
              f"{MATCH_FACTOR}x mark where GNP does not come within {MATCH_FACTOR}x of the "
              "best fixed configuration.", ""]
    for task, by_config in cells.items():
        kind = {"graph": "aggregation-readout", "node": "aggregation",
                "set": "set pooling"}[levels[task]]
        parts += [f"## `{task}` ({levels[task]}-level; configuration = {kind})", "",
                  task_table(task, by_config), ""]
    for plot in plots:
        parts += [f"![{Path(plot).stem}]({Path(plot).name})", ""]
    return "\n".join(parts).rstrip() + "\n"


def write_report(rows: list[dict[str, Any]], out_dir: str | Path, title: str,
                 intro: str = "", plots: bool = True) -> tuple[str, list[Path]]:
    """Write ``report.md`` and the PNG plots into ``out_dir``; returns the Markdown and
    the files written."""
    from .plots import plot_extrapolation, plot_gnp

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = collect(rows)
    images: list[Path] = []
    if plots and cells:
        images.append(plot_extrapolation(cells, out / "extrapolation.png"))
        gnp = plot_gnp(cells, out / "gnp_parameters.png")
        if gnp is not None:
            images.append(gnp)
    text = render_markdown(cells, title, intro, [p.name for p in images])
    path = out / "report.md"
    path.write_text(text)
    return text, [path, *images]
