"""The report's figures: curves of every condition with seed bands, dose-response, RF grids, emergence.

Figures read only files: the joined table, each run's stored analysis and its checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ... import plots
from ...analysis import ranked_units, rf_panels
from ...runs import RunDir, sweep_run_dir
from .claims import LOOP, ClaimSpec, arm, gain_differences, per_seed, round_differences
from .table import CLONE, FIRST, GAIN, METHOD, SEED, contexts, groups, label


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


def loop_figure(table: pd.DataFrame, axes: list[str], path: Path) -> Path:
    """The feedback loop, one row of panels per context: the lead and reverse coefficients of every condition
    (mean and 95% interval over seeds); IMP's per-round cavity effect, data minus clone, paired by seed; the
    magnitude-band AUC per round of every condition (0.5: nothing beyond magnitude)."""
    panels = groups(table, contexts(axes))
    fig, axs = plots.plt.subplots(len(panels), 3, figsize=(14, 3.6 * len(panels)), squeeze=False)
    growth = next(spec for spec in LOOP if spec.at == "slope")
    for row, (ctx, df) in enumerate(panels):
        lag, cav, auc = axs[row]
        conds = groups(df, [a for a in (METHOD, CLONE) if a in df])
        for i, (cond, cdf) in enumerate(conds):
            style = plots.condition_style(cond.get(METHOD, "imp"), bool(cond.get(CLONE, False)))
            for dx, (col, marker) in zip((-0.12, 0.12), (("lagged_lead", "o"), ("lagged_reverse", "s"))):
                v = per_seed(cdf, col, {}, "last").dropna().rename("v").reset_index()
                if len(v):
                    m = plots.mean_ci(v.assign(x=i + dx), "x", "v")
                    lag.errorbar(m["x"], m["mean"], yerr=[m["mean"] - m["lo"], m["hi"] - m["mean"]], marker=marker,
                                 color=style["color"], mfc="white" if style["ls"] == "--" else style["color"], ms=5,
                                 ls="none", capsize=2)
            if "cavity_auc_magnitude" in cdf:
                plots.curve(auc, plots.mean_ci(cdf[cdf["layer"] == FIRST], "round", "cavity_auc_magnitude"), "round",
                            **style)
        lag.set_xticks(range(len(conds)), [plots.condition_style(c.get(METHOD, "imp"), bool(c.get(CLONE, False)))["label"]
                                           for c, _ in conds], rotation=30, ha="right", fontsize=7)
        lag.set_ylabel("partial correlation\n(o lead: ng first; s reverse: loc first)", fontsize=8)
        diff = round_differences(df, growth)
        if len(diff):
            plots.curve(cav, plots.mean_ci(diff, "round", "diff"), "round", label="imp: data minus clone", color="k")
        cav.set_ylabel("removed-minus-random cavity score\nIMP on the data minus on the clone", fontsize=8)
        auc.axhline(0.5, color="0.5", lw=0.8, zorder=0)
        auc.set_ylabel("AUC of the cavity score for the next removal\nwithin |w| deciles", fontsize=8)
        for ax in (lag, cav):
            ax.axhline(0, color="0.5", lw=0.8, zorder=0)
        for ax in (cav, auc):
            ax.set_xlabel("round (pruning step round -> round + 1)")
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
        spec = ClaimSpec("", "", "localization", "last", arm(method, True), arm(method), +1, 0.0, "")
        diff = plots.mean_ci(gain_differences(table, spec), "gain", "diff")
        plots.curve(left, diff, "gain", **plots.condition_style(method, False))
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


def rf_comparison(sweep_dir: Path, table: pd.DataFrame, axes: list[str], path: Path, k: int = 6) -> Path:
    """RF grids, one seed: each condition's most localized units at the dense and sparsest rounds."""
    conds = [a for a in axes if a != SEED]
    seed = table[SEED].min()
    panels = []
    for values, df in groups(table[table[SEED] == seed], conds):
        run = sweep_run_dir(sweep_dir, df["run"].iloc[0])
        done = run.rounds()
        units = run.analysis_table("units")
        ends = {r: run.load(done[r], "final.safetensors") for r in (0, len(done) - 1)}
        panels += rf_panels(ends, units, FIRST, ranked_units(units, FIRST, len(done) - 1)[:k], label(values),
                            _input_shape(run))
    return plots.rf_grid(panels, path, title=f"most localized first-layer units, seed {seed}")
