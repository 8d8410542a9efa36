"""The report of a multi-view grid: IoU tables, the targets checked against the
measured figures, and an IoU-against-views plot, from the database rows alone.

Noise: for two IoU means measured on the same test shapes (two view counts of one
model, or two models at one view count), the noise of their difference is twice the
standard error of the per-shape differences (shapes averaged over seeds first); a
difference within it is not told apart from sampling noise. The rule is fixed here,
before any figure is read.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Configurations in the order of the tables, with their labels.
ORDER = ("attsets-faset", "gnp-faset", "attsets-joint", "gru", "max", "mean", "sum")
LABELS = {"attsets-faset": "AttSets + FASet", "gnp-faset": "GNP + FASet",
          "attsets-joint": "AttSets, joint", "gru": "GRU (in view order)",
          "max": "max pooling", "mean": "mean pooling", "sum": "sum pooling"}
SPLIT_TITLES = {"test": "test shapes (training categories)",
                "test_ood": "held-out category"}
#: A difference counts as noise up to this many standard errors.
NOISE_SE = 2.0


@dataclass
class Curve:
    """One configuration's runs (seeds) on one split."""

    config: str
    views: list[int] = field(default_factory=list)
    iou: list[list[float]] = field(default_factory=list)            # [seed][k]
    orders: list[list[list[float]]] = field(default_factory=list)   # [seed][k][order]
    shapes: list[np.ndarray] = field(default_factory=list)          # [seed] -> [k, N]
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def mean(self) -> np.ndarray:
        """Mean IoU per view count, over seeds."""
        return np.mean(np.array(self.iou), axis=0)

    def std(self) -> np.ndarray | None:
        return np.std(np.array(self.iou), axis=0, ddof=1) if len(self.iou) > 1 else None

    def per_shape(self) -> np.ndarray:
        """IoU per view count and shape ``[k, N]``, averaged over seeds."""
        return np.mean(np.stack(self.shapes), axis=0)

    def spread(self) -> np.ndarray:
        """Max - min over view orders of the mean IoU, per view count (mean over seeds)."""
        arr = np.array(self.orders)                                   # [seed, k, order]
        return (arr.max(-1) - arr.min(-1)).mean(0)


def collect(rows: Iterable[dict[str, Any]], split: str) -> dict[str, Curve]:
    """``{config: Curve}`` of the finished multi-view rows, in :data:`ORDER`."""
    curves: dict[str, Curve] = {}
    for row in rows:
        bins = row.get("bins") or {}
        if row["status"] != "finished" or split not in bins:
            continue
        data = bins[split]
        curve = curves.setdefault(row["config"], Curve(row["config"], list(data["views"])))
        if data["views"] != curve.views:
            raise ValueError(f"runs of {row['config']!r} were evaluated with different view "
                             f"counts ({data['views']} and {curve.views})")
        curve.iou.append(data["iou"])
        curve.orders.append(data["iou_orders"])
        curve.shapes.append(np.array(data["per_shape"], dtype=np.float64))
        curve.seconds.append(row.get("wall_seconds") or math.nan)
        curve.cpu.append((bins.get("seconds") or {}).get("cpu", math.nan))
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(curves.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0])))


def paired_noise(a: np.ndarray, b: np.ndarray) -> float:
    """:data:`NOISE_SE` standard errors of the mean of per-shape differences ``a - b``."""
    diff = np.asarray(a) - np.asarray(b)
    if diff.size < 2:
        return math.nan
    return NOISE_SE * float(np.std(diff, ddof=1) / math.sqrt(diff.size))


def _fmt(mean: float, std: float | None = None) -> str:
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def iou_table(curves: dict[str, Curve]) -> str:
    """Mean IoU per configuration and number of views (± std over seeds)."""
    views = next(iter(curves.values())).views
    head = ["aggregator", *[str(k) for k in views], "seeds", "minutes (CPU)"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, curve in curves.items():
        mean, std = curve.mean(), curve.std()
        cells = [_fmt(m, None if std is None else s)
                 for m, s in zip(mean, std if std is not None else [None] * len(mean),
                                 strict=True)]
        wall, cpu = statistics.fmean(curve.seconds), statistics.fmean(curve.cpu)
        minutes = f"{wall / 60:.1f} ({cpu / 60:.1f})"
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells)
                     + f" | {len(curve.iou)} | {minutes} |")
    return "\n".join(lines)


def category_table(rows: list[dict[str, Any]], split: str) -> str:
    """Mean IoU per category with one view and with every view (mean over seeds)."""
    found: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    views: list[int] = []
    for row in rows:
        data = (row.get("bins") or {}).get(split) or {}
        if row["status"] == "finished" and data.get("per_category"):
            views = data["views"]
            for cat, curve in data["per_category"].items():
                found[row["config"]][cat].append(curve)
    if not found:
        return ""
    cats = sorted({c for per in found.values() for c in per})
    head = ["aggregator", *[f"{c}: {views[0]} / {views[-1]}" for c in cats]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(cats)]
    rank = {name: i for i, name in enumerate(ORDER)}
    for name in sorted(found, key=lambda n: (rank.get(n, 99), n)):
        cells = []
        for cat in cats:
            curve = np.mean(np.array(found[name][cat]), axis=0)
            cells.append(f"{curve[0]:.3f} / {curve[-1]:.3f}")
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spread_table(curves: dict[str, Curve]) -> str:
    """Max - min over the view orders of the mean IoU, per view count (k >= 2)."""
    views = next(iter(curves.values())).views
    ks = [i for i, k in enumerate(views) if k > 1]
    head = ["aggregator", *[str(views[i]) for i in ks]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(ks)]
    for name, curve in curves.items():
        spread = curve.spread()
        lines.append(f"| {LABELS.get(name, name)} | "
                     + " | ".join(f"{spread[i]:.2e}" if spread[i] else "0" for i in ks) + " |")
    return "\n".join(lines)


def targets(curves: dict[str, Curve]) -> list[str]:
    """The issue's targets, each with the figures that decide it and a verdict."""
    out = []
    att = curves.get("attsets-faset")
    if att is None:
        return ["- AttSets + FASet was not run: no target can be checked."]
    views, mean, shapes = att.views, att.mean(), att.per_shape()
    drops = []
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            drop = mean[i] - mean[j]
            noise = paired_noise(shapes[i], shapes[j])
            if drop > 0:
                drops.append((drop, noise, views[i], views[j]))
    beyond = [d for d in drops if d[0] > d[1]]
    if not drops:
        out.append("- **Met**: AttSets + FASet's IoU never decreases from fewer to more "
                   f"views ({_fmt(mean[0])} with {views[0]} to {_fmt(mean[-1])} with "
                   f"{views[-1]}).")
    else:
        worst = max(drops)
        verdict = "**Not met**" if beyond else "**Met**"
        out.append(f"- {verdict}: AttSets + FASet's IoU goes from {_fmt(mean[0])} "
                   f"({views[0]} view) to {_fmt(mean[-1])} ({views[-1]} views); "
                   f"{len(drops)} pair(s) of view counts show a decrease, the largest "
                   f"{worst[0]:.4f} from {worst[2]} to {worst[3]} views (noise "
                   f"{worst[1]:.4f}); {len(beyond)} of them exceed the noise.")
    for base in ("max", "mean"):
        other = curves.get(base)
        if other is None:
            out.append(f"- {base} pooling was not run: cannot compare.")
            continue
        worse, within = [], []
        for i, k in enumerate(views):
            if k < 4:
                continue
            diff = mean[i] - other.mean()[i]
            if diff < 0:
                noise = paired_noise(shapes[i], other.per_shape()[i])
                (within if -diff <= noise else worse).append(f"{k} ({diff:+.4f}, noise "
                                                             f"{noise:.4f})")
        ks = [k for k in views if k >= 4]
        if not worse and not within:
            out.append(f"- **Met**: AttSets + FASet is at least as good as {base} pooling at "
                       f"every view count from 4 ({', '.join(map(str, ks))}).")
        else:
            out.append(f"- **Not met**: AttSets + FASet is below {base} pooling at "
                       f"{len(worse) + len(within)} of {len(ks)} view counts from 4 on: "
                       + "; ".join(worse + within)
                       + (f" ({len(within)} of them within the noise)" if within else "")
                       + ".")
    gru = curves.get("gru")
    others = [float(c.spread().max()) for n, c in curves.items() if n != "gru"]
    if gru is not None:
        spread = gru.spread()[[i for i, k in enumerate(gru.views) if k > 1]]
        verdict = "**Met**" if bool((spread > 0).all()) else "**Not met**"
        out.append(f"- {verdict}: the GRU's mean IoU differs between view orders: max - "
                   f"min over {len(gru.orders[0][0])} orders from {spread.min():.2e} to "
                   f"{spread.max():.2e} (view counts >= 2)"
                   + (f"; the other aggregators' largest: {max(others):.1e}." if others
                      else "."))
    for name in ("attsets-faset", "gnp-faset"):
        curve = curves.get(name)
        if curve is not None:
            worst = float(curve.spread().max())
            verdict = "**Met**" if worst == 0 else "**Not met** exactly"
            note = ("" if worst == 0 else "; float32 sums over the views round differently "
                    "in another order and can flip a voxel at the threshold; in float64, "
                    "`tests/test_bench_multiview.py`, every order gives the same IoU")
            out.append(f"- {verdict}: {LABELS[name]} gives the same mean IoU for every view "
                       f"order (largest max - min: {worst:.1e}{note}).")
    return out


def gnp_summary(rows: list[dict[str, Any]]) -> str:
    """Per run with a GNP: its exponents and size normalisations, initial and learned
    (mean [min, max] over the channels)."""
    lines = []
    for row in rows:
        for module in row.get("gnp") or []:
            def describe(values: list[float]) -> str:
                return f"{statistics.fmean(values):.3g} [{min(values):.3g}, {max(values):.3g}]"
            lines.append(f"| {LABELS.get(row['config'], row['config'])} | {row['seed']} | "
                         f"`{module['name']}` | {describe(module['p_init'])} | "
                         f"{describe(module['p'])} | {describe(module['q_init'])} | "
                         f"{describe(module['q'])} |")
    if not lines:
        return ""
    head = ("| run | seed | module | initial p | learned p | initial q | learned q |\n"
            "|---|---:|---|---|---|---|---|")
    return head + "\n" + "\n".join(lines) + ("\n\np = 1, q = 1 is the mean; a larger p "
                                              "moves towards max, q = 0 towards the sum.")


def render_markdown(rows: list[dict[str, Any]], title: str, intro: str = "",
                    plots: Iterable[str] = ()) -> str:
    """The whole report as Markdown."""
    parts = [f"# {title}", ""]
    if intro:
        parts += [intro, ""]
    threshold = next((r["bins"].get("threshold") for r in rows if r.get("bins")), 0.5)
    parts += [f"Mean IoU of the predicted voxels (occupied where the predicted probability "
              f"exceeds {threshold}) and the true ones, over the test shapes, with the "
              "first k of each shape's recorded views (random viewpoints), averaged over "
              "random orders of those views; mean ± std over seeds when there are several. "
              f"Noise: a difference counts as noise up to {NOISE_SE:g} standard errors of "
              "the per-shape differences (same shapes, so paired).", ""]
    for split, name in SPLIT_TITLES.items():
        curves = collect(rows, split)
        if not curves:
            continue
        parts += [f"## Mean IoU by number of views: {name}", "", iou_table(curves), ""]
        by_category = category_table(rows, split)
        if by_category and split == "test":
            parts += ["Per category, with one view / with every view:", "", by_category, ""]
        if split == "test":
            parts += ["## Targets", "", *targets(curves), "",
                      "## Order dependence: max - min of the mean IoU over view orders "
                      "(test shapes)", "", spread_table(curves), ""]
    learned = gnp_summary(rows)
    if learned:
        parts += ["## GNP's learned parameters", "", learned, ""]
    failed = [r for r in rows if r["status"] != "finished"]
    if failed:
        parts += ["## Failed runs", ""] + [f"- `{r['config']}` seed {r['seed']}: "
                                           f"{(r.get('error') or '').strip().splitlines()[-1:]}"
                                           for r in failed] + [""]
    for plot in plots:
        parts += [f"![{Path(plot).stem}]({Path(plot).name})", ""]
    return "\n".join(parts).rstrip() + "\n"


def plot_iou(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Mean IoU against the number of views, one panel per split; the GRU's band spans
    its best and worst view order."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [(s, collect(rows, s)) for s in SPLIT_TITLES]
    splits = [(s, c) for s, c in splits if c]
    if not splits:
        return None
    colours = defaultdict(lambda: "0.5", {
        "attsets-faset": "tab:purple", "gnp-faset": "tab:red", "attsets-joint": "tab:pink",
        "gru": "tab:green", "max": "tab:blue", "mean": "tab:orange", "sum": "tab:brown"})
    fig, axes = plt.subplots(1, len(splits), figsize=(6.2 * len(splits), 4.6), squeeze=False)
    for ax, (split, curves) in zip(axes[0], splits, strict=True):
        for name, curve in curves.items():
            learned = name in ("attsets-faset", "gnp-faset", "attsets-joint", "gru")
            ax.plot(curve.views, curve.mean(), color=colours[name], marker="o", ms=3.5,
                    lw=2.0 if name == "attsets-faset" else 1.4,
                    ls="-" if learned else "--", label=LABELS.get(name, name))
            if name == "gru":
                arr = np.array(curve.orders).mean(0)                  # [k, order]
                ax.fill_between(curve.views, arr.min(-1), arr.max(-1), color=colours[name],
                                alpha=0.25, lw=0, label="GRU: best to worst view order")
        ax.set_title(f"mean IoU: {SPLIT_TITLES[split]}", fontsize=10)
        ax.set_xlabel("number of views")
        ax.set_ylabel("mean IoU")
        ax.set_xticks(curves[next(iter(curves))].views)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if split == "test" else "best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rows: list[dict[str, Any]], out_dir: str | Path, title: str,
                 intro: str = "", plots: bool = True) -> tuple[str, list[Path]]:
    """Write ``report.md`` and ``iou_views.png`` into ``out_dir``; returns the Markdown
    and the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    if plots:
        image = plot_iou(rows, out / "iou_views.png")
        if image is not None:
            images.append(image)
    text = render_markdown(rows, title, intro, [p.name for p in images])
    path = out / "report.md"
    path.write_text(text)
    return text, [path, *images]


def profile_report(rows: list[dict[str, Any]], out_dir: str | Path, profile: Any,
                   plots: bool = True) -> tuple[str, list[Path]]:
    """:func:`write_report` with the title and introduction of a benchmark profile."""
    finished = [r for r in rows if r["status"] == "finished"]
    wall = sum(r.get("wall_seconds") or 0.0 for r in rows)
    cpu = sum(((r.get("bins") or {}).get("seconds") or {}).get("cpu", 0.0) for r in finished)
    versions = next((r["versions"] for r in rows if r.get("versions")), {}) or {}
    data = next((r["bins"].get("data_seconds") for r in finished
                 if r["bins"].get("data_seconds")), None)
    commit = versions.get("gnpool_commit")
    intro = (f"Profile `{profile.name}`: {profile.description}. {len(finished)} runs finished, "
             f"{len(rows) - len(finished)} failed; {wall / 60:.1f} minutes of run time "
             f"summed over the runs ({cpu / 60:.1f} CPU minutes). Produced by "
             f"`python -m gnpool.bench run --profile {profile.name} --report` with torch "
             f"{versions.get('torch', '?')}, gnpool {versions.get('gnpool', '?')}"
             + (f" (commit {commit})" if commit else "") + ".")
    if data:
        parts = ", ".join(f"{split} {seconds:.0f} s" for split, seconds in data.items()
                          if seconds is not None)
        intro += f" Generating the dataset took {parts} (measured when it was generated)."
    return write_report(rows, out_dir, f"Multi-view benchmark: `{profile.name}` profile",
                        intro, plots)
