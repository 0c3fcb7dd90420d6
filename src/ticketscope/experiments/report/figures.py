"""The report's figures: curves of every condition with seed bands, dose-response, RF grids, emergence.

Figures read only files: the joined table, each run's stored analysis and its checkpoints.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib.ticker
import pandas as pd

from ... import plots
from ...analysis import ranked_units, rf_panels
from ...runs import RunDir, sweep_run_dir
from .claims import BY_ID, Row
from .kinds import AxisSlope, RoundSlope, arm, per_seed
from .table import CLONE, FIRST, GAIN, METHOD, NAME, SEED, contexts, groups, label


def condition_curves(table: pd.DataFrame, axes: list[str], measures: list[tuple[str, str, Any]],
                     path: Path, title: str) -> Path:
    """Measures vs density, mean and 95% interval over seeds: colour = pruning method, line style =
    data (solid) or Gaussian clone (dashed); one row of panels per context; legend below the panels.

    A measure's null is a column (thin dotted line in the condition's style) or a constant (grey).
    """
    panels = groups(table, contexts(axes))
    fig, axs = plots.plt.subplots(len(panels), len(measures), figsize=(4.4 * len(measures), 3.3 * len(panels)),
                                  squeeze=False)
    for row, (ctx, ctx_df) in enumerate(panels):
        for ax, (col, ylabel, null) in zip(axs[row], measures):
            for cond, df in groups(ctx_df, [a for a in (METHOD, CLONE) if a in ctx_df]):
                style = plots.condition_style(cond.get(METHOD, "imp"), bool(cond.get(CLONE, False)))
                df = df.assign(x=df.groupby("round")["density"].transform("mean"))  # the round's density, over seeds
                plots.curve(ax, plots.mean_ci(df, "x", col, ["round"]), "x", **style)
                if isinstance(null, str):
                    nagg = plots.mean_ci(df, "x", null, ["round"])
                    ax.plot(nagg["x"], nagg["mean"], ls=":", lw=0.9, color=style["color"])
            if isinstance(null, (int, float)):
                ax.axhline(null, color="0.5", ls="-", lw=0.8, zorder=0)
            plots.density_axis(ax)
            ax.set_ylabel(ylabel, fontsize=8)
            if len(panels) > 1:
                ax.set_title(label(ctx), fontsize=8)
    plots.legend_below(fig, axs)
    fig.suptitle(title, fontsize=9)
    return plots.save(fig, path)


def _empty(ax: Any, why: str) -> None:
    """A panel with nothing to show says why, instead of an empty box."""
    ax.text(0.5, 0.5, textwrap.fill(why, 40), ha="center", va="center", fontsize=8, color="0.35",
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def loop_figure(table: pd.DataFrame, axes: list[str], path: Path) -> Path:
    """The feedback loop, one row of panels per context: the lead and reverse coefficients of every condition
    (mean and 95% interval over seeds); IMP's per-round cavity effect, data minus clone, paired by seed; the
    magnitude-band AUC per round of every condition (0.5: nothing beyond magnitude)."""
    panels = groups(table, contexts(axes))
    fig, axs = plots.plt.subplots(len(panels), 3, figsize=(14, 3.6 * len(panels)), squeeze=False)
    growth = BY_ID["cavity-growth-data-vs-clone"].kind
    assert isinstance(growth, RoundSlope)
    for row, (ctx, df) in enumerate(panels):
        lag, cav, auc = axs[row]
        conds = groups(df, [a for a in (METHOD, CLONE) if a in df])
        for i, (cond, cdf) in enumerate(conds):
            style = plots.condition_style(cond.get(METHOD, "imp"), bool(cond.get(CLONE, False)))
            for dx, (col, marker) in zip((-0.12, 0.12), (("lagged_lead_unit", "o"), ("lagged_reverse_unit", "s"))):
                every = per_seed(cdf, col, {}, "last")
                v = every.dropna().rename("v").reset_index()
                if len(v) < max(2, len(every) / 2):  # defined on a chance-selected minority of seeds: not shown
                    lag.text(i, 0, "undefined on\nmost seeds", ha="center", va="bottom", fontsize=6, color="0.4")
                    continue
                if len(v):
                    m = plots.mean_ci(v.assign(x=i + dx), "x", "v")
                    lag.errorbar(m["x"], m["mean"], yerr=[m["mean"] - m["lo"], m["hi"] - m["mean"]], marker=marker,
                                 color=style["color"], mfc="white" if style["ls"] == "--" else style["color"], ms=5,
                                 ls="none", capsize=2)
            aucs = cdf[cdf["layer"] == FIRST].dropna(subset=["cavity_auc_matched"]) if "cavity_auc_matched" in cdf \
                else cdf.iloc[:0]
            if len(aucs):
                agg = plots.mean_ci(aucs, "round", "cavity_auc_matched")
                plots.curve(auc, agg.assign(lo=agg["lo"].clip(0, 1), hi=agg["hi"].clip(0, 1)), "round", **style)
        for marker, text in (("o", "lead: non-Gaussianity first"), ("s", "reverse: localization first")):
            lag.plot([], [], marker=marker, ls="none", color="k", mfc="white", label=text)
        lag.legend(fontsize=7, loc="best")
        lag.set_xticks(range(len(conds)), [plots.condition_style(c.get(METHOD, "imp"), bool(c.get(CLONE, False)))["label"]
                                           for c, _ in conds], rotation=30, ha="right", fontsize=7)
        lag.set_ylabel("partial correlation of the lagged changes\n(unit and round fixed effects)", fontsize=8)
        lag.axhline(0, color="0.5", lw=0.8, zorder=0)
        diff = growth.differences(df)
        if len(diff):
            plots.curve(cav, plots.mean_ci(diff, "round", "diff"), "round", label="imp: data minus clone", color="k")
            cav.axhline(0, color="0.5", lw=0.8, zorder=0)
            cav.set_ylabel("removed-minus-random excess cavity score\nIMP on the data minus on the clone", fontsize=8)
        else:
            _empty(cav, "no per-round cavity effect to show: it needs IMP runs on the data and on its Gaussian "
                        "clone with at least one pruning step")
        if auc.has_data():
            auc.axhline(0.5, color="0.5", lw=0.8, zorder=0)
            auc.set_ylim(0, 1)
            auc.set_ylabel("AUC of the cavity score for the next removal\nwithin pairs of adjacent |w| rank", fontsize=8)
        else:
            _empty(auc, "no magnitude-band AUC to show: it needs runs with at least two pruning steps")
        for ax in (cav, auc):
            if ax.has_data():
                ax.set_xlabel("round (pruning step round -> round + 1)")
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if len(panels) > 1:
            cav.set_title(label(ctx), fontsize=8)
    plots.legend_below(fig, axs)
    fig.suptitle("the feedback loop: mean and 95% interval over seeds (first layer)", fontsize=9)
    return plots.save(fig, path)


def gain_figure(table: pd.DataFrame, path: Path) -> Path:
    """Against the gain g: localization(clone) - localization(data) paired by seed, and the excess |kappa-3|,
    each at the sparsest round with its 95% interval over seeds; a line per pruning method."""
    fig, (left, right) = plots.plt.subplots(1, 2, figsize=(9.5, 3.6))
    for method in sorted(table[METHOD].unique()):
        diff = AxisSlope("localization", arm(method, True), arm(method), axis=GAIN).differences(table)
        if len(diff):  # the method has its clone arm
            plots.curve(left, plots.mean_ci(diff.rename(columns={GAIN: "gain"}), "gain", "diff"), "gain",
                        **plots.condition_style(method, False))
        for clone in (False, True):
            ng = pd.DataFrame([{"gain": g, "v": v} for g, df in table.groupby(GAIN)
                               for v in per_seed(df, "ng_excess", arm(method, clone), "last").dropna()])
            if len(ng):
                plots.curve(right, plots.mean_ci(ng, "gain", "v"), "gain", **plots.condition_style(method, clone))
    left.set_ylabel("localization: clone minus data\n(> 0: more local on the data)", fontsize=8)
    right.set_ylabel("excess |kappa-3| at the sparsest round", fontsize=8)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.axhline(0, color="0.5", lw=0.8, zorder=0)
        ax.set_xlabel("gain g (non-Gaussianity of the NLGP)")
    plots.legend_below(fig, [left, right])
    fig.suptitle("dose-response: mean and 95% interval over seeds", fontsize=9)
    return plots.save(fig, path)


def axis_figure(table: pd.DataFrame, axis: str, path: Path, title: str) -> Path:
    """Against a numeric sweep axis (e.g. the marginals' excess kurtosis): localization and the signed excess
    kurtosis of the pre-activations at the sparsest round (the most localized unit's IPR for dense sweeps), mean and
    95% interval over seeds, one line per pruning method and data set (dashed: the Gaussian clone); a dense sweep
    also shows each seed (a few seeds that localize can carry a mean)."""
    dense = bool((table["round"] == 0).all())
    cols = [("ipr_max", "IPR of the most localized unit\n(end of dense training)")] if dense else [
        ("localization", "localization at the sparsest round\n(1 = chance, lower = more local)"),
        ("kappa3_excess", "signed kappa - 3 at the sparsest round\nover the same weights at random positions")]
    fig, axs = plots.plt.subplots(1, len(cols), figsize=(4.8 * len(cols), 3.6), squeeze=False)
    for cond, df in groups(table, [a for a in (METHOD, CLONE, NAME) if a in table]):
        style = plots.condition_style(cond.get(METHOD, "imp") if METHOD in table else "imp", bool(cond.get(CLONE, False)))
        if dense:  # no pruning method to name
            style["label"] = "dense, " + ("clone" if cond.get(CLONE, False) else "data")
        if NAME in cond:
            style = {**style, "label": f"{style['label']}, {cond[NAME]}", "lw": 1.6 if cond[NAME] == "copula" else 0.8}
        for ax, (col, ylabel) in zip(axs[0], cols):
            v = pd.DataFrame([{"x": x, "v": val} for x, g in df.groupby(axis) for val in per_seed(g, col, {}).dropna()])
            if len(v):
                plots.curve(ax, plots.mean_ci(v, "x", "v"), "x", **style)
                if dense:
                    ax.scatter(v["x"] + (0.04 if cond.get(CLONE, False) else -0.04), v["v"], s=7, alpha=0.5,
                               color=style["color"], marker="x" if cond.get(CLONE, False) else "o", lw=0.8)
            ax.set_ylabel(ylabel, fontsize=8)
    for ax in axs[0]:
        ax.set_xlabel(axis.split(".")[-1].replace("_", " ") + " of the inputs' marginals")
        ax.axvline(0, color="0.7", lw=0.8, zorder=0)
    plots.legend_below(fig, axs)
    fig.suptitle(title, fontsize=9)
    return plots.save(fig, path)


def claims_figure(table: pd.DataFrame, axes: list[str], rows: list[Row], path: Path, cols: int = 4) -> Path:
    """One panel per confirmatory row: the claim's per-seed contrast (its kind draws it), the mean with its
    95% interval, and the band +-delta of effects too small to matter; titled by id, context and outcome."""
    shown = [r for r in rows if r.role == "confirmatory"]
    n_rows = math.ceil(len(shown) / cols)
    fig, axs = plots.plt.subplots(n_rows, cols, figsize=(3.2 * cols, 2.6 * n_rows), squeeze=False)
    contexts_of = {}
    for r in shown:
        kind = BY_ID[r.id].kind
        by = [a for a in contexts(axes) if a != kind.over]
        contexts_of.setdefault(tuple(by), {label(ctx) if ctx else "": df for ctx, df in groups(table, by)})
    for ax, r in zip(axs.flat, shown):
        kind = BY_ID[r.id].kind
        df = contexts_of[tuple(a for a in contexts(axes) if a != kind.over)][r.context]
        kind.plot(ax, *kind.values(df), r.delta, r.direction)
        margin = "" if r.margin is None or math.isinf(r.margin) else f", margin {r.margin:.1f}"
        ax.set_title(textwrap.fill(f"{r.id}{' (' + r.context + ')' if r.context else ''}: {r.outcome}{margin}", 38),
                     fontsize=7)
    for ax in list(axs.flat)[len(shown):]:
        ax.set_visible(False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (2.6 * n_rows)), w_pad=1.5)
    fig.suptitle("confirmatory claims: per-seed contrast (dots), mean and 95% interval (black), "
                 "+-delta shaded", fontsize=9)
    return plots.save(fig, path)


def emergence_figure(sweep_dir: Path, table: pd.DataFrame, axes: list[str], path: Path) -> Path:
    """Per-unit IPR over training (round 0) of the first seed of each condition, side by side."""
    seed = table[SEED].min()
    panels = []
    for values, df in groups(table[(table[SEED] == seed) & (table["layer"] == FIRST)], [a for a in axes if a != SEED]):
        run = sweep_run_dir(sweep_dir, df["run"].iloc[0])
        if run.has_analysis("snapshots"):
            s = run.analysis_table("snapshots")
            panels.append((label(values), s[s["round"] == 0]))
    D = math.prod(_input_shape(sweep_run_dir(sweep_dir, table["run"].iloc[0])))
    return plots.emergence(panels, path, D, title=f"IPR of every first-layer unit during dense training, seed {seed}")


def _input_shape(run: RunDir) -> tuple[int, ...]:
    """A run's input shape as its analysis recorded it (no data set is rebuilt)."""
    return tuple((run.analysis_info() or {})["input_shape"])


def rf_comparison(sweep_dir: Path, table: pd.DataFrame, axes: list[str], out: Path, k: int = 6,
                  both_rounds_up_to: int = 6) -> dict[str, Path]:
    """RF grids, one seed, each condition's most localized units: one grid per data family where the sweep
    varies the family (``rf_grid_<name>.png``), else one (``rf_grid.png``). A grid of at most
    ``both_rounds_up_to`` conditions shows the dense and the sparsest round, a larger one the sparsest only."""
    conds = [a for a in axes if a != SEED]
    seed = table[SEED].min()
    at_seed = table[table[SEED] == seed]
    families = groups(at_seed, [NAME]) if NAME in conds else [({}, at_seed)]
    grids = {}
    for family, rows_of in families:
        within = [a for a in conds if a != NAME]
        conditions = groups(rows_of, within)
        panels, pruned = [], False
        for values, df in conditions:
            run = sweep_run_dir(sweep_dir, df["run"].iloc[0])
            done = run.rounds()
            units = run.analysis_table("units")
            shown = (0, len(done) - 1) if len(conditions) <= both_rounds_up_to else (len(done) - 1,)
            ends = {r: run.load(done[r], "final.safetensors") for r in shown}
            pruned |= len(done) > 1
            panels += rf_panels(ends, units, FIRST, ranked_units(units, FIRST, len(done) - 1)[:k], label(values),
                                _input_shape(run))
        name = family.get(NAME)
        title = f"most localized first-layer units, seed {seed}" + (f", {name} inputs" if name else "")
        if pruned and len(conditions) > both_rounds_up_to:
            title += ", sparsest round"
        key = "Receptive fields" + (f": {name}" if name else "")
        grids[key] = plots.rf_grid(panels, out / (f"rf_grid_{name}.png" if name else "rf_grid.png"), title=title)
    return grids
