"""Sweep report: every run's tables joined, curves with seed bands, and the claims table.

``build_report(DIR)`` reads ``DIR/runs/*/`` (each run's config, metrics and analysis), groups
runs by every varying config field but the seed ("conditions"), and writes ``DIR/report/``:
``table.parquet`` (the joined tidy table), the figures, ``claims.json``, and ``report.html``
(self-contained, figures embedded) with its Markdown twin ``report.md``.

A claim *holds* only when the difference it predicts, between seed means, is in the predicted
direction and exceeds t * SE: SE its standard error over seeds, t the 97.5% Student-t quantile
(Welch's degrees of freedom; a one-sample t for a difference from a constant), i.e. a 95%
two-sided test, with at least two seeds on each side; otherwise it *did not hold*; it is *not
tested* when the sweep lacks the runs it needs. Claims are judged separately within each
combination of the varying fields other than seed, pruning method and clone ("context").
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from .. import plots
from ..analysis import analyze_run, ranked_units, rf_panels
from ..config import load_config
from ..data import make_dataset
from ..errors import TicketscopeError
from ..io import atomic_write_text, write_json, write_table
from ..runs import load_round_file, completed_rounds

FIRST = "layers.0"


def _flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v) if isinstance(v, list) else v
    return out


def collect(sweep_dir: Path, n_probe: int = 4096) -> tuple[pd.DataFrame, list[str]]:
    """Joined per-(run, round, layer) table of every complete run, and the varying config fields."""
    runs = sorted(p for p in (sweep_dir / "runs").glob("*") if (p / "run.json").exists())
    if not runs:
        raise TicketscopeError(f"no completed runs under {sweep_dir / 'runs'}; run `ticketscope sweep` first")
    frames, fields = [], []
    for run in runs:
        analysis = analyze_run(run, n_probe=n_probe)
        flat = _flatten(load_config(run / "config.yaml").model_dump(mode="json"))
        fields.append(flat)
        df = pd.read_parquet(analysis / "rounds.parquet")
        for k, v in flat.items():
            df[k] = v
        df["run"] = run.name
        frames.append(df)
    varying = [k for k in fields[0] if k != "name" and len({str(f.get(k)) for f in fields}) > 1]
    return pd.concat(frames, ignore_index=True), varying


def _label(row: pd.Series | dict[str, Any], axes: list[str]) -> str:
    return ", ".join(f"{a.split('.')[-1]}={row[a]}" for a in axes) or "all runs"


def condition_curves(table: pd.DataFrame, axes: list[str], measures: list[tuple[str, str, Any]],
                     path: Path, title: str) -> Path:
    """Panels of measures vs density: mean and 95% interval over seeds, a curve per condition."""
    conds = [a for a in axes if a != "seed"]
    fig, axs = plots.plt.subplots(1, len(measures), figsize=(4.4 * len(measures), 3.6), squeeze=False)
    for ax, (col, ylabel, null) in zip(axs[0], measures):
        for key, df in table.groupby(conds, dropna=False) if conds else [((), table)]:
            key = key if isinstance(key, tuple) else (key,)
            label = _label(dict(zip(conds, key)), conds)
            df = df.assign(x=df.groupby("round")["density"].transform("mean"))  # the round's density, over seeds
            agg = plots.mean_ci(df, "x", col, ["round"])
            plots.curve(ax, agg, "x", label)
            if isinstance(null, str):
                nagg = plots.mean_ci(df, "x", null, ["round"])
                ax.plot(nagg["x"], nagg["mean"], ls="--", lw=0.8, color=ax.lines[-1].get_color())
        if isinstance(null, (int, float)):
            ax.axhline(null, color="k", ls=":", lw=1)
        plots.density_axis(ax)
        ax.set_ylabel(ylabel)
    axs[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return plots.save(fig, path)


def rf_comparison(sweep_dir: Path, table: pd.DataFrame, axes: list[str], path: Path, k: int = 6) -> Path:
    """RF grids side by side, one seed: each condition's most localized units, dense and sparsest."""
    conds = [a for a in axes if a != "seed"]
    seed = table["seed"].min()
    panels = []
    for key, df in (table[table["seed"] == seed].groupby(conds) if conds else [((), table)]):
        run = sweep_dir / "runs" / df["run"].iloc[0]
        done = completed_rounds(run)
        units = pd.read_parquet(run / "analysis" / "units.parquet")
        ends = {r: load_round_file(run, done[r], "final.safetensors") for r in (0, len(done) - 1)}
        label = _label(dict(zip(conds, key if isinstance(key, tuple) else (key,))), conds)
        panels += rf_panels(ends, units, FIRST, ranked_units(units, FIRST, len(done) - 1)[:k], label)
    shape = make_dataset(load_config(sweep_dir / "runs" / table["run"].iloc[0] / "config.yaml").data).input_shape
    return plots.rf_grid(panels, shape, path, title=f"most localized first-layer units, seed {seed}")


@dataclass
class Claim:
    claim: str
    measure: str
    measured: str
    seeds: str
    verdict: str  # "held" | "did not hold" | "not tested"


def _compare(a: pd.Series, b: pd.Series | float, greater: bool) -> tuple[str, str, str]:
    """(measured, seeds, verdict) for mean(a) - mean(b) (or - b, a constant) per the module's rule."""
    a = a.dropna()
    one_sample = not isinstance(b, pd.Series)
    b_text = f"{b:g}" if one_sample else f"{b.mean():.3g} ± {b.std(ddof=1):.2g}"
    seeds = f"{sorted(a.index.tolist())}" + ("" if one_sample else f" vs {sorted(b.dropna().index.tolist())}")
    if len(a) < 2 or (not one_sample and len(b.dropna()) < 2):
        return f"{a.mean():.3g} vs {b_text}", seeds, "not tested"
    va = a.var(ddof=1) / len(a)
    if one_sample:
        diff, se, dof = a.mean() - b, math.sqrt(va), len(a) - 1
    else:
        b = b.dropna()
        vb = b.var(ddof=1) / len(b)
        diff, se = a.mean() - b.mean(), math.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
    bound = float(stats.t.ppf(0.975, dof)) * se
    held = diff > bound if greater else diff < -bound
    text = (f"{a.mean():.3g} ± {a.std(ddof=1):.2g} vs {b_text} (diff {diff:+.3g}, needs {'>' if greater else '<'} "
            f"{'' if greater else '-'}{bound:.2g})")
    return text, seeds, "held" if held else "did not hold"


def _per_seed(table: pd.DataFrame, value: str, where: dict[str, Any], at: str = "last") -> pd.Series:
    """One value per seed (first layer): at the sparsest round, mean over rounds, or dense-to-sparsest change."""
    df = table[table["layer"] == FIRST]
    for k, v in where.items():
        df = df[df[k] == v] if k in df else df.iloc[:0]
    if at == "mean":
        return df.groupby("seed")[value].mean()
    last = df.loc[df.groupby("seed")["round"].idxmax()].set_index("seed")[value]
    if at == "last":
        return last
    return last - df.loc[df.groupby("seed")["round"].idxmin()].set_index("seed")[value]


def claims(table: pd.DataFrame, context: str = "") -> list[Claim]:
    """The claims of SCIENCE.md in one context (one run per seed and arm), first layer."""
    data, clone = {"data.gaussian_clone": False}, {"data.gaussian_clone": True}
    imp, one, rnd, cav = ({"prune.method": m, **data} for m in ("imp", "oneshot", "random", "cavity"))
    loc = "spatial localization at the sparsest round (lower = more local)"
    ng = "change of |kappa-3| (per class, pooled) from the dense to the sparsest round"
    cavity = "non-Gaussianity cavity score, mean over IMP's pruning steps"
    rows = [
        ("IMP finds local RFs on non-Gaussian data but not on its Gaussian clone (Redman et al. 1)",
         f"{loc}; A = IMP on the clone, B = IMP on the data",
         _per_seed(table, "localization", {"prune.method": "imp", **clone}), _per_seed(table, "localization", imp), True),
        ("IMP localizes more than one-shot pruning at the same sparsity (Pellegrini & Biroli)",
         f"{loc}; A = one-shot, B = IMP", _per_seed(table, "localization", one), _per_seed(table, "localization", imp), True),
        ("IMP localizes more than random pruning at the same sparsity",
         f"{loc}; A = random, B = IMP", _per_seed(table, "localization", rnd), _per_seed(table, "localization", imp), True),
        ("IMP increases the non-Gaussianity of pre-activations (Redman et al. 2)",
         f"{ng}; A = IMP, B = 0", _per_seed(table, "ng_pooled", imp, at="change"), 0.0, True),
        ("IMP increases non-Gaussianity more than one-shot pruning (Redman et al. 2)",
         f"{ng}; A = IMP, B = one-shot", _per_seed(table, "ng_pooled", imp, at="change"),
         _per_seed(table, "ng_pooled", one, at="change"), True),
        ("The weights IMP removes raise non-Gaussianity more than random surviving weights (Redman et al. 3)",
         f"{cavity}; A = removed weights, B = random survivors", _per_seed(table, "cavity_removed_mean", imp, at="mean"),
         _per_seed(table, "cavity_random_mean", imp, at="mean"), True),
        ("Most weights IMP removes raise non-Gaussianity when removed (cavity score > 0; Redman et al. 3)",
         "fraction of removed weights with a positive score, mean over steps; A = IMP, B = 0.5",
         _per_seed(table, "cavity_removed_frac_positive", imp, at="mean"), 0.5, True),
        ("Pruning by non-Gaussianity alone (cavity pruning) localizes more than random pruning (causal test, new)",
         f"{loc}; A = random, B = cavity pruning", _per_seed(table, "localization", rnd),
         _per_seed(table, "localization", cav), True),
    ]
    prefix = f"[{context}] " if context else ""
    return [Claim(prefix + claim, measure, *_compare(a, b, greater)) for claim, measure, a, b, greater in rows]


def all_claims(table: pd.DataFrame, axes: list[str]) -> list[Claim]:
    """Claims judged within each context: a combination of the varying fields but seed, method, clone."""
    others = [a for a in axes if a not in ("seed", "prune.method", "data.gaussian_clone")]
    if not others:
        return claims(table)
    return [c for key, df in table.groupby(others)
            for c in claims(df, _label(dict(zip(others, key if isinstance(key, tuple) else (key,))), others))]


def _img(path: Path) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" style="max-width:100%">'


def build_report(sweep_dir: str | Path, n_probe: int = 4096, notes: str = "") -> Path:
    """Analyze every run of a sweep if needed and write the report; return its HTML path."""
    sweep_dir = Path(sweep_dir)
    out = sweep_dir / "report"
    table, axes = collect(sweep_dir, n_probe)
    write_table(out / "table.parquet", table)
    figs = {
        "Test accuracy": condition_curves(table, axes, [("test_accuracy", "test accuracy", None)],
                                          out / "accuracy.png", "test accuracy (mean, 95% interval over seeds)"),
        "Localization": condition_curves(
            table, axes, [("ipr", "IPR (dashed: Gaussian null at the same sparsity)", "ipr_null"),
                          ("localization", "spatial localization (1 = shuffled null)", 1.0)],
            out / "localization.png", "first-layer receptive fields"),
        "Non-Gaussianity of pre-activations": condition_curves(
            table, axes, [("kappa_pooled", "kappa per class, pooled", 3.0), ("ng_pooled", "|kappa-3| per class, pooled", 0.0),
                          ("kappa", "kappa over the whole probe set", 3.0)],
            out / "kurtosis.png", "first-layer pre-activation kurtosis"),
        "Receptive fields": rf_comparison(sweep_dir, table, axes, out / "rf_grid.png"),
    }
    if table["cavity_removed_mean"].notna().any():
        figs["Cavity scores of pruned vs kept weights"] = condition_curves(
            table.dropna(subset=["cavity_removed_mean"]), axes,
            [("cavity_removed_mean", "mean score of removed weights", 0.0),
             ("cavity_kept_mean", "mean score of kept weights", 0.0),
             ("cavity_removed_frac_positive", "removed: fraction > 0", None)],
            out / "cavity.png", "non-Gaussianity cavity scores of each pruning step (dense -> next)")
    rows = all_claims(table[table["layer"] == FIRST], axes)
    write_json(out / "claims.json", [asdict(c) for c in rows])
    seeds = sorted(table["seed"].unique().tolist())
    header = f"{table['run'].nunique()} runs, seeds {seeds}; varying fields: {', '.join(axes) or 'none'}"
    _write_markdown(out / "report.md", rows, figs, header, notes)
    _write_html(out / "report.html", rows, figs, header, notes)
    return out / "report.html"


RULE = ("A claim *held* when the predicted difference of seed means exceeds t x its standard error over seeds "
        "(95% two-sided Student-t, Welch degrees of freedom; at least 2 seeds per arm); *not tested* when the sweep "
        "lacks the runs. A = first arm, B = second arm or constant.")


def _write_markdown(path: Path, rows: list[Claim], figs: dict[str, Path], header: str, notes: str) -> None:
    lines = ["# ticketscope claims report", "", header, "", RULE, "",
             "| claim | measure | measured (A vs B, mean ± sd over seeds) | seeds | verdict |", "|---|---|---|---|---|"]
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (|kappa-3| inside a table cell)
    lines += [f"| {cell(c.claim)} | {cell(c.measure)} | {cell(c.measured)} | {c.seeds} | **{c.verdict}** |" for c in rows]
    if notes:
        lines += ["", "## How this sweep was chosen", "", notes]
    for title, fig in figs.items():
        lines += ["", f"## {title}", "", f"![{title}]({fig.name})"]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _write_html(path: Path, rows: list[Claim], figs: dict[str, Path], header: str, notes: str) -> None:
    e = html.escape
    colour = {"held": "#1a7f37", "did not hold": "#cf222e", "not tested": "#6e7781"}
    body = [f"<h1>ticketscope claims report</h1><p>{e(header)}</p><p>{e(RULE)}</p>",
            "<table><tr><th>claim</th><th>measure</th><th>measured (A vs B, mean ± sd over seeds)</th>"
            "<th>seeds</th><th>verdict</th></tr>"]
    body += [f"<tr><td>{e(c.claim)}</td><td>{e(c.measure)}</td><td>{e(c.measured)}</td><td>{e(c.seeds)}</td>"
             f"<td style='color:{colour[c.verdict]}'><b>{e(c.verdict)}</b></td></tr>" for c in rows]
    body.append("</table>")
    if notes:
        body.append(f"<h2>How this sweep was chosen</h2><p>{e(notes)}</p>")
    body += [f"<h2>{e(t)}</h2>{_img(f)}" for t, f in figs.items()]
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}")
    atomic_write_text(path, f"<!doctype html><html><head><meta charset='utf-8'><title>ticketscope report</title>"
                            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
