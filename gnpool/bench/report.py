"""The report of a grid: a Markdown table and PNG plots from the database alone."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..aggr.gnp import WHOLE_REDUCTIONS
from ..datasets import task_info
from ..training.recipe import _base_name
from .configs import FIXED, LEARNED
from .hparams import ADDED_AFTER_0_2

#: Learnable configurations in the order the tables list them.
LEARNED_ORDER = LEARNED
LABELS = {"gnp": "GNP", "attsets": "AttSets", "powermean": "PowerMean", "softmax": "Softmax",
          "laf": "LAF", "genagg": "GenAgg", "deepsets": "DeepSets",
          "settransformer": "SetTransformer", "variancepreserving": "VPA"}
#: GNP within this factor of the best fixed pair's extrapolation MAPE counts as matching it
#: (target: on every task) ...
MATCH_FACTOR = 1.5
#: ... and within this one as close to it (target: on at least half of the tasks).
CLOSE_FACTOR = 1.2


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
    """``mean ± std`` over seeds (std is left out with one seed or a non-finite value, e.g.
    a run whose predictions diverged); ``-`` when empty."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1 or not all(math.isfinite(v) for v in values):
        return f"{mean:.3g}"           # no spread of one run, or of an infinite one
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
    and GNP's ratio to the best fixed one. A learnable configuration that ran on no task
    has no column."""
    ran = [n for n in LEARNED_ORDER if any(n in by_config for by_config in cells.values())]
    head = ["task", "known-good", "best fixed (extrap)"] + [LABELS[n] for n in ran]
    head.append("GNP / best fixed")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, by_config in cells.items():
        best = best_fixed(by_config)
        row = [f"`{task}`", known_good(task) or "none exact",
               f"{best.config}: {fmt(best.extrap)}" if best else "-"]
        for name in ran:
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


def module_pooling(module: dict[str, Any]) -> str:
    """What one stored GNP (an entry of a run's ``gnp`` record) computes, by
    :meth:`GNPAggregation.closest_pooling`: one name, or the most common one with its share
    when channels differ."""
    import torch

    from ..aggr import GNPAggregation

    try:
        aggr = GNPAggregation(channels=len(module["p_unit"]))
        with torch.no_grad():
            for key in GNPAggregation.pooling_parameter_names:
                getattr(aggr, key).copy_(torch.tensor(module[key], dtype=torch.float32))
        names = aggr.closest_pooling()
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        # A record with missing or non-finite parameters (a diverged run, an older
        # format) is named, not allowed to stop the whole report.
        return f"unreadable parameters ({type(err).__name__})"
    return names if isinstance(names, str) else _most_common(names)


def _common_share(names: list[str]) -> tuple[str, float]:
    # The most common name and its share (ties go to the first in alphabetical order, so
    # that the text does not depend on hashing).
    common = min(set(names), key=lambda name: (-names.count(name), name))
    return common, names.count(common) / len(names)


def _most_common(names: list[str]) -> str:
    # One name per channel: the name, or the most common one and its share.
    common, share = _common_share(names)
    return common if share == 1 else f"{common} ({share:.0%} of channels)"


def _gnp_modules(row: dict[str, Any]) -> list[dict[str, Any]]:
    # The run's GNP records that hold the pooling parameters (older rows hold p and q only).
    return [m for m in row.get("gnp") or [] if "p_unit" in m]


def readout_pooling(row: dict[str, Any]) -> str | None:
    """What the run's last GNP (the readout or set pooling; a node-level model's last
    aggregation) computes after training (:func:`module_pooling`); ``None`` without one."""
    modules = _gnp_modules(row)
    return module_pooling(modules[-1]) if modules else None


def _ending(value: Any) -> str:
    # An MLP ending as the report names it ("ReLU", "linear", "softplus"), from any value
    # `last_activation` takes (gnpool.models.mlp.ending_name); others as they are.
    from ..models.mlp import ending_name

    try:
        name = ending_name(value)
    except ValueError:
        return str(value)
    return "ReLU" if name == "relu" else name


def kept_model(row: dict[str, Any]) -> str:
    """Which of a GNP run's trained models its figures come from, read from its ``gnp``
    record: one pooling per GNP or one per channel (``select_channels``), the search's
    model or the retrained one (``retrain``), and the MLPs' last activation."""
    modules = _gnp_modules(row)
    if not modules:
        return "-"
    hp = row.get("hparams") or {}
    first = modules[0]
    parts = []
    selection = first.get("selection")
    if isinstance(selection, dict):
        kept = selection.get("kept")
        parts.append({"shared": "one pooling per GNP",
                      "per_channel": "one per channel"}.get(kept, f"model {kept!r}"))
    retrain = first.get("retrain")
    # HParams.last_activation defaults to True (ReLU-ended MLPs).
    search_ending = _ending(hp.get("last_activation", True))
    if not isinstance(retrain, dict) or not retrain:
        parts.append(f"{search_ending}-ended")
    elif retrain.get("kept"):
        record = retrain.get("last_activation")
        ending = record.get("kept") if isinstance(record, dict) else None
        if ending is None:     # one retrain ending: the record names none
            rla = hp.get("retrain_last_activation")
            ending = hp.get("last_activation", True) if rla is None else rla
            # The model with one pooling per GNP under retrain_select_activation and
            # retrain_first_ending=False retrains with the other ending alone (ReLU after
            # linear or softplus, linear after ReLU); the per-channel model never does.
            if (hp.get("retrain_select_activation") and hp.get("retrain_first_ending") is False
                    and (not isinstance(selection, dict) or selection.get("kept") == "shared")):
                ending = ending is not True
        conjugated = [m.get("name") for m in modules
                      if isinstance(m.get("retrain"), dict)
                      and m["retrain"].get("conjugated") is True]
        classic = [m.get("name") for m in modules
                   if isinstance(m.get("retrain"), dict)
                   and m["retrain"].get("classic_end") in ("max", "min")]
        parts.append(f"retrained {_ending(ending)}-ended"
                     + (f", sign conjugate of {len(conjugated)} of {len(modules)} GNPs"
                        if conjugated else "")
                     + (f", {len(classic)} of {len(modules)} GNPs set to max or min "
                        "(classic ends)" if classic else ""))
    else:
        # A search that trained again ReLU-ended and won (search_refit_r2) is ReLU-ended.
        refit = retrain.get("search_refit")
        if isinstance(refit, dict) and refit.get("kept") == "relu":
            search_ending = _ending(True)
        parts.append(f"search ({search_ending}-ended)")
    return ", ".join(parts)


#: A whole pooling's parts, ``[positive, negative]`` (``max`` -> ``("max", "min")``).
_WHOLE = {whole: parts for parts, whole in WHOLE_REDUCTIONS.items()}


def _trained_pooling(module: dict[str, Any]) -> str:
    # A retrained model's GNP: the classic points its parts were set to, `[positive part,
    # negative part]` (the most common pair and its share when channels differ); a
    # search's: closest_pooling().
    # Parts set to their sibling's mirror after that (`retrain_mirror`) show the mirror.
    retrain = module.get("retrain")
    pairs = retrain.get("to") if isinstance(retrain, dict) and retrain.get("kept") else None
    channels = len(module.get("p_unit") or [])
    if (not isinstance(pairs, list) or len(pairs) != channels
            or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs)):
        return module_pooling(module)
    mirrored = retrain.get("mirrored")
    if (isinstance(mirrored, list) and len(mirrored) == channels
            and all(isinstance(m, (list, tuple)) and len(m) == 2 for m in mirrored)):
        pairs = [[m if m != "none" else t for t, m in zip(pair, over, strict=True)]
                 for pair, over in zip(pairs, mirrored, strict=True)]
    if retrain.get("classic_end") in ("max", "min"):
        # Retrained at a classic end (retrain_classic_r2): the whole input's max or min.
        pairs = [list(_WHOLE[retrain["classic_end"]])] * channels
    if retrain.get("conjugated") is True:
        # Retrained with the searched pooling's sign conjugate (retrain_conjugates): the
        # parts swapped.
        pairs = [[neg, pos] for pos, neg in pairs]
    text = _most_common([f"[{pos}, {neg}]" for pos, neg in pairs])
    if text.endswith(" of channels)"):
        # The most common pair can hide a positive part that most channels share.
        common, share = _common_share([str(pos) for pos, _ in pairs])
        text = text[:-1] + f", positive part {common} in {share:.0%})"
    return text


def _seed_order(row: dict[str, Any]) -> tuple[int, Any]:
    # Integer seeds in order, anything else after them.
    seed = row.get("seed")
    return (0, seed) if isinstance(seed, int) else (1, str(seed))


def _module_label(name: Any, shared: bool) -> str:
    # A module's name in the table; with gnp_share_aggr the one aggregation module every
    # message-passing layer calls is recorded once, under its first layer's name.
    name = str(name or "?").removesuffix(".aggr_module")
    return "every layer" if shared and name.startswith("convs.") else name


def gnp_runs(cells: dict[str, dict[str, Cell]]) -> str:
    """Per GNP run (task, seed): its extrapolation MAPE, the model it kept
    (:func:`kept_model`) and each of its GNPs after training: a retrained model's classic
    points `[positive part, negative part]`, a search's :func:`module_pooling`. Empty
    without GNP runs that recorded their poolings."""
    lines = ["| task | seed | extrap MAPE (%) | model kept | poolings after training |",
             "|---|---|---|---|---|"]
    rows = 0
    for task, by_config in cells.items():
        gnp = by_config.get("gnp")
        if gnp is None:
            continue
        for row in sorted(gnp.rows, key=_seed_order):
            modules = _gnp_modules(row)
            mape = row.get("mape_extrap")
            mape = f"{mape:.3g}" if isinstance(mape, (int, float)) else "-"
            if not modules:
                lines.append(f"| `{task}` | {row.get('seed', '-')} | {mape} | - | "
                             "(no pooling parameters recorded) |")
                continue
            shared = bool((row.get("hparams") or {}).get("gnp_share_aggr"))
            poolings = "; ".join(
                f"{_module_label(m.get('name'), shared)}: {_trained_pooling(m)}"
                for m in modules).replace("|", "\\|")
            lines.append(f"| `{task}` | {row.get('seed', '-')} | {mape} | "
                         f"{kept_model(row)} | {poolings} |")
            rows += 1
    return "\n".join(lines) if rows else ""


def _expected_readout(task: str) -> str | None:
    # The pooling the readout target names: max or min where the task's known-good
    # readout (set pooling, node-level aggregation) is one of them.
    info = task_info(task)
    pooling = info.aggr if info.level == "node" else info.readout
    return pooling if pooling in ("max", "min") else None


def targets(cells: dict[str, dict[str, Cell]]) -> list[str]:
    """Markdown bullet lines saying which of GNP's targets hold, with the figures."""
    ratios: dict[str, float] = {}
    beaten: list[str] = []
    for task, by_config in cells.items():
        best, gnp = best_fixed(by_config), by_config.get("gnp")
        if best is None or gnp is None or not gnp.extrap:
            continue
        ratios[task] = gnp.extrap_mean / best.extrap_mean
        for rival in ("powermean", "softmax"):
            other = by_config.get(rival)
            if other and other.extrap and not gnp.extrap_mean < other.extrap_mean:
                beaten.append(f"`{task}` ({LABELS[rival]} {fmt(other.extrap)} vs GNP "
                              f"{fmt(gnp.extrap)})")
    if not ratios:
        return []
    over = [f"`{t}` {r:.2f}x" for t, r in ratios.items() if not r <= MATCH_FACTOR]
    close = [t for t, r in ratios.items() if r <= CLOSE_FACTOR]
    half = math.ceil(len(ratios) / 2)
    lines = [
        f"- GNP within {MATCH_FACTOR}x of the best fixed configuration on every task: "
        + ("**met**" if not over else "**missed** (" + ", ".join(over) + ")"),
        f"- GNP within {CLOSE_FACTOR}x on at least half of the tasks ({half} of "
        f"{len(ratios)}): " + ("**met**" if len(close) >= half else "**missed**")
        + f" ({len(close)}: " + (", ".join(f"`{t}`" for t in close) or "none") + ")",
        "- GNP better than PowerMean and Softmax on every task: "
        + ("**met**" if not beaten else "**missed** (" + "; ".join(beaten) + ")"),
    ]
    checks = []
    for task, by_config in cells.items():
        expected, gnp = _expected_readout(task), by_config.get("gnp")
        if expected is None or gnp is None or not gnp.rows:
            continue
        found = [readout_pooling(r) for r in gnp.rows]
        checks.append((task, expected, found))
    if checks:
        ok = all(all(f == e for f in found) for _, e, found in checks)
        detail = "; ".join(f"`{t}`: expected {e}, got " + ", ".join(str(f) for f in found)
                           for t, e, found in checks)
        lines.append("- The trained readout's `closest_pooling()` names the known-good "
                     "pooling in every seed: " + ("**met**" if ok else "**missed**")
                     + f" ({detail})")
        lines += [f"  - `{task}`: {reason}" for task, expected, _ in checks
                  if (reason := _readout_miss(task, expected, cells[task]))]
    return lines


def _config_readout(task: str, config: str) -> str:
    # The readout of a fixed configuration: a graph task's "aggregation-readout" pair
    # names it second; a node or set task's configuration is the one pooling.
    return config.split("-")[-1] if task_info(task).level == "graph" else config


def _readout_miss(task: str, expected: str, by_config: dict[str, Cell]) -> str:
    """Why a task's trained readouts miss ``expected``, from the figures: where the best
    fixed configuration reads another pooling, the known-good configuration's
    extrapolation MAPE against it; and for each seed that missed, the model it kept
    (:func:`kept_model`). Empty where every seed names ``expected``."""
    gnp = by_config["gnp"]
    missed = [r for r in sorted(gnp.rows, key=_seed_order) if readout_pooling(r) != expected]
    if not missed:
        return ""
    parts = []
    best, good = best_fixed(by_config), known_good(task)
    good_cell = by_config.get(good) if good else None
    if best is not None and _config_readout(task, best.config) != expected:
        part = (f"the best fixed configuration, {best.config}, reads "
                f"{_config_readout(task, best.config)}")
        if good_cell is not None and good_cell.extrap:
            part += (f"; the known-good {good} extrapolates at "
                     f"{good_cell.extrap_mean / best.extrap_mean:.2f}x its MAPE "
                     f"({good_cell.extrap_mean:.3g} against {best.extrap_mean:.3g})")
        parts.append(part)
    parts += [f"seed {r.get('seed', '-')} kept: {kept_model(r)}{_against_relu(r)}"
              for r in missed]
    return "; ".join(parts)


def _against_relu(row: dict[str, Any]) -> str:
    # A kept model other than a ReLU-ended retrain, with its validation MSE against the
    # best ReLU-ended retrain's (the fixed configurations' model family, which
    # `select_relu_margin` favours), from the run's record of its models.
    record = row.get("candidates")
    models = record.get("models") if isinstance(record, dict) else None
    kept = record.get("kept") if isinstance(record, dict) else None
    if not isinstance(models, dict) or kept not in models:
        return ""
    relu = [m.get("val_mse") for name, m in models.items()
            if _base_name(name.split("/")[-1]) == "relu"]
    relu = [v for v in relu if isinstance(v, (int, float))]
    kept_mse = models[kept].get("val_mse")
    if not relu or _base_name(kept.split("/")[-1]) == "relu" or not isinstance(kept_mse,
                                                                         (int, float)):
        return ""
    return (f" (validation MSE {kept_mse:.2g} against the ReLU-ended retrain's "
            f"{min(relu):.2g})")


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def settings_section(rows: Iterable[dict[str, Any]]) -> str:
    """The settings the runs were actually made with, read from their rows: a Markdown
    table of the hyperparameters and data parameters that differ between tasks or
    configurations (per task: the most common value, then the configurations with another
    one) and a line with those every run shares."""
    by_task: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    per_config: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    keys: dict[str, None] = {}
    for row in rows:
        # A setting added after a run was made is absent from its row: it ran at the
        # setting's default (ADDED_AFTER_0_2), as a later row records it.
        hparams = {**ADDED_AFTER_0_2, **(row.get("hparams") or {})}
        values = {k: _value(v) for k, v in hparams.items()}
        values.update({f"data: {k}": _value(v)
                       for k, v in (row.get("data_params") or {}).items()})
        for key, value in values.items():
            keys.setdefault(key)
            by_task[row["task"]][key][value] += 1
            per_config[(row["task"], row["config"])][key] = value
    if not by_task:
        return ""
    tasks = list(by_task)
    shared, varying = [], []
    for key in keys:
        seen = {v for t in tasks for v in by_task[t].get(key, ())}
        if len(seen) == 1 and all(key in by_task[t] for t in tasks):
            shared.append(f"{key}={next(iter(seen))}")
        else:
            varying.append(key)
    lines = ["## Settings of these runs", "",
             "From the database rows. Data parameters not listed are the task's defaults."]
    if varying:
        lines += ["", "| setting | " + " | ".join(f"`{t}`" for t in tasks) + " |",
                  "|---|" + "---|" * len(tasks)]
        for key in varying:
            cells = []
            for task in tasks:
                counts = by_task[task].get(key)
                if not counts:
                    cells.append("-")
                    continue
                common = counts.most_common(1)[0][0]
                others = sorted(f"{config}: {vals[key]}" for (t, config), vals in
                                per_config.items() if t == task and vals.get(key, common)
                                != common)
                cells.append(common + (f" ({', '.join(others)})" if others else ""))
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if shared:
        lines += ["", "Same in every run: " + ", ".join(shared) + "."]
    return "\n".join(lines)


def seed_spread(cells: dict[str, dict[str, Cell]]) -> str:
    """Per task: the extrapolation MAPE of every seed of the best fixed configuration and of
    GNP, the ratio of their means (what the targets judge) and of their medians, and the
    spread of the best fixed configuration's own seeds (largest over smallest): a ratio
    within that spread is within the noise of two runs of one fixed pooling. Empty without
    GNP runs."""
    lines = ["| task | best fixed, per seed | GNP, per seed | ratio of means | ratio of "
             "medians | best fixed's own spread |", "|---|---|---|---|---|---|"]
    rows = 0
    for task, by_config in cells.items():
        best, gnp = best_fixed(by_config), by_config.get("gnp")
        if best is None or gnp is None or not gnp.extrap or not best.extrap:
            continue

        def seeds(cell: Cell) -> str:
            ordered = sorted(cell.rows, key=_seed_order)
            return ", ".join(f"{math.inf if r.get('mape_extrap') is None else r['mape_extrap']:.3g}"
                             for r in ordered)

        low = min(best.extrap)
        spread = f"{max(best.extrap) / low:.1f}x" if len(best.extrap) > 1 and low > 0 else "-"
        lines.append(f"| `{task}` | {best.config}: {seeds(best)} | {seeds(gnp)} | "
                     f"{gnp.extrap_mean / best.extrap_mean:.2f}x | "
                     f"{statistics.median(gnp.extrap) / statistics.median(best.extrap):.2f}x"
                     f" | {spread} |")
        rows += 1
    return "\n".join(lines) if rows else ""


def render_markdown(cells: dict[str, dict[str, Cell]], title: str, intro: str = "",
                    plots: Iterable[str] = (), appendix: str = "") -> str:
    """The whole report as Markdown; ``appendix`` (Markdown) goes after the task tables."""
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
    goals = targets(cells)
    if goals:
        parts += ["## Targets", "", *goals, ""]
    spread = seed_spread(cells)
    if spread:
        parts += ["## Seed spread", "",
                  "Extrapolation MAPE (%) of every seed (in seed order). The targets judge "
                  "the ratio of means; the ratio of medians is less swayed by one bad seed, "
                  "and the best fixed configuration's own spread (its largest seed over its "
                  "smallest) shows how far apart two runs of one fixed pooling land.", "",
                  spread, ""]
    runs = gnp_runs(cells)
    if runs:
        parts += ["## GNP's runs", "",
                  "Per run: the model whose figures the tables give (with `select_channels`, "
                  "one pooling per GNP or one per channel; with `retrain`, the search's model "
                  "or the retrained one; the MLPs' last activation), and each GNP after "
                  "training: a retrained model's classic points `[positive part, negative "
                  "part]` (the pooling of `relu(x)` and of `relu(-x)`), a search's "
                  "`closest_pooling()` (`none`: no classic pooling within its tolerance). "
                  "With one pooling per channel: the most common one and its share of the "
                  "channels, and the positive parts' most common point. The readout target "
                  "above judges the same parameters by `closest_pooling()` on signed sets, "
                  "so a retrained `[max, mean]` fed non-negative inputs (a ReLU's) computes "
                  "the max here and reads `none` there. With `gnp_share_aggr` one GNP "
                  "serves every message-passing layer (`every layer`).", "", runs, ""]
    for task, by_config in cells.items():
        kind = {"graph": "aggregation-readout", "node": "aggregation",
                "set": "set pooling"}[levels[task]]
        parts += [f"## `{task}` ({levels[task]}-level; configuration = {kind})", "",
                  task_table(task, by_config), ""]
    if appendix:
        parts += [appendix, ""]
    for plot in plots:
        parts += [f"![{Path(plot).stem}]({Path(plot).name})", ""]
    return "\n".join(parts).rstrip() + "\n"


def write_report(rows: list[dict[str, Any]], out_dir: str | Path, title: str,
                 intro: str = "", plots: bool = True, appendix: str = ""
                 ) -> tuple[str, list[Path]]:
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
    text = render_markdown(cells, title, intro, [p.name for p in images], appendix)
    path = out / "report.md"
    path.write_text(text)
    return text, [path, *images]
