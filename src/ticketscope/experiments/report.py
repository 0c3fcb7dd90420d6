"""Sweep report: every run's tables joined, curves with seed bands, and the claims table.

``build_report(DIR)`` reads ``DIR/runs/*/`` (each run's config, metrics and analysis), groups
runs by every varying config field but the seed ("conditions"), and writes ``DIR/report/``:
``table.parquet`` (the joined tidy table), the figures, ``claims.json``, and ``report.html``
(self-contained, figures embedded) with its Markdown twin ``report.md``.

A claim *holds* only when the difference it predicts, averaged over seeds, is in the predicted
direction and larger than twice its standard error over seeds (Welch; about a 95% two-sided
test), with at least two seeds on each side; otherwise it *did not hold*; it is *not tested*
when the sweep lacks the runs it needs.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import plots
from ..analysis import analyze_run
from ..config import load_config
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
            agg = plots.mean_ci(df.assign(x=df.groupby("round")["density"].transform("mean")), "x", col, ["round"])
            plots.curve(ax, agg, "x", label)
            if isinstance(null, str):
                nagg = plots.mean_ci(df.assign(x=df.groupby("round")["density"].transform("mean")), "x", null, ["round"])
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
    panels, shape = [], None
    for key, df in (table[table["seed"] == seed].groupby(conds) if conds else [((), table)]):
        run = sweep_dir / "runs" / df["run"].iloc[0]
        done = completed_rounds(run)
        units = pd.read_parquet(run / "analysis" / "units.parquet")
        last = len(done) - 1
        u = units[(units["round"] == last) & (units["layer"] == FIRST)].dropna(subset=["localization"])
        idx = u.sort_values("localization")["unit"].to_numpy()[:k].copy()
        if shape is None:
            from ..data import make_dataset
            shape = make_dataset(load_config(run / "config.yaml").data).input_shape
        label = _label(dict(zip(conds, key if isinstance(key, tuple) else (key,))), conds)
        for r in sorted({0, last}):
            state = load_round_file(run, done[r], "final.safetensors")
            W, M = state[f"{FIRST}.weight"][idx], state[f"{FIRST}.mask"][idx]
            loc = units[(units["round"] == r) & (units["layer"] == FIRST)].set_index("unit")["localization"]
            panels.append((f"{label}\nround {r}", W.numpy(), M.numpy(), [f"loc {loc[j]:.2f}" for j in idx]))
    return plots.rf_grid(panels, shape, path, title=f"most localized first-layer units, seed {seed}")


@dataclass
class Claim:
    claim: str
    measure: str
    measured: str
    seeds: str
    verdict: str  # "held" | "did not hold" | "not tested"


def _compare(a: pd.Series, b: pd.Series, greater: bool) -> tuple[str, str, str]:
    """Mean of a - mean of b with its standard error; verdict per the module's rule."""
    a, b = a.dropna(), b.dropna()
    if len(a) < 2 or len(b) < 2:
        return f"{a.mean():.3g} vs {b.mean():.3g}", f"{len(a)} vs {len(b)}", "not tested"
    diff = a.mean() - b.mean()
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    held = (diff > 2 * se) if greater else (diff < -2 * se)
    text = f"{a.mean():.3g} ± {a.std(ddof=1):.2g} vs {b.mean():.3g} ± {b.std(ddof=1):.2g} (diff {diff:+.3g}, 2 SE {2 * se:.2g})"
    return text, f"{len(a)} vs {len(b)}", "held" if held else "did not hold"


def _per_run(table: pd.DataFrame, value: str, where: dict[str, Any], at: str = "last") -> pd.Series:
    """One value per run (first layer): at the sparsest round, or its change from the dense round."""
    df = table[table["layer"] == FIRST]
    for k, v in where.items():
        if k not in df:
            return pd.Series(dtype=float)
        df = df[df[k] == v]
    if at == "mean":
        return df.groupby("run")[value].mean()
    last = df.loc[df.groupby("run")["round"].idxmax()].set_index("run")[value]
    if at == "last":
        return last
    first = df.loc[df.groupby("run")["round"].idxmin()].set_index("run")[value]
    return last - first


def claims(table: pd.DataFrame) -> list[Claim]:
    """The claims of SCIENCE.md, each measured on the first layer at the sparsest round."""
    data, clone = {"data.gaussian_clone": False}, {"data.gaussian_clone": True}
    imp = {"prune.method": "imp"}
    out = []

    def add(claim: str, measure: str, a: pd.Series, b: pd.Series, greater: bool) -> None:
        out.append(Claim(claim, measure, *_compare(a, b, greater)))

    loc = "spatial localization at the sparsest round (lower = more local), A vs B"
    add("IMP finds local RFs on non-Gaussian data but not on its Gaussian clone (Redman et al. 1)",
        loc + "; A = clone, B = data", _per_run(table, "localization", {**imp, **clone}),
        _per_run(table, "localization", {**imp, **data}), greater=True)
    add("IMP localizes more than one-shot pruning at the same sparsity (Pellegrini & Biroli)",
        loc + "; A = one-shot, B = IMP (data)", _per_run(table, "localization", {"prune.method": "oneshot", **data}),
        _per_run(table, "localization", {**imp, **data}), greater=True)
    add("IMP localizes more than random pruning at the same sparsity",
        loc + "; A = random, B = IMP (data)", _per_run(table, "localization", {"prune.method": "random", **data}),
        _per_run(table, "localization", {**imp, **data}), greater=True)
    add("IMP increases pre-activation non-Gaussianity more than one-shot pruning (Redman et al. 2)",
        "change of per-class pooled |kappa-3| from dense to sparsest round; A = IMP, B = one-shot (data)",
        _per_run(table, "ng_pooled", {**imp, **data}, at="change"),
        _per_run(table, "ng_pooled", {"prune.method": "oneshot", **data}, at="change"), greater=True)
    if "cavity_removed_mean" in table:
        add("IMP removes the weights whose removal raises non-Gaussianity (Redman et al. 3, cavity)",
            "non-Gaussianity cavity score, mean over pruning steps; A = weights IMP removes, B = random survivors (data)",
            _per_run(table, "cavity_removed_mean", {**imp, **data}, at="mean"),
            _per_run(table, "cavity_random_mean", {**imp, **data}, at="mean"), greater=True)
    add("Cavity pruning (removing non-Gaussianity-raising weights) localizes at least as well as IMP (causal test)",
        loc + "; A = IMP, B = cavity pruning (data)", _per_run(table, "localization", {**imp, **data}),
        _per_run(table, "localization", {"prune.method": "cavity", **data}), greater=True)
    return out


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
    rows = claims(table[table["layer"] == FIRST])
    write_json(out / "claims.json", [asdict(c) for c in rows])
    seeds = sorted(table["seed"].unique().tolist())
    header = f"{table['run'].nunique()} runs, seeds {seeds}; varying fields: {', '.join(axes) or 'none'}"
    _write_markdown(out / "report.md", rows, figs, header, notes)
    _write_html(out / "report.html", rows, figs, header, notes)
    return out / "report.html"


RULE = ("A claim *held* when the predicted difference of seed means exceeds twice its standard error "
        "over seeds (Welch; at least 2 seeds per arm); *not tested* when the sweep lacks the runs.")


def _write_markdown(path: Path, rows: list[Claim], figs: dict[str, Path], header: str, notes: str) -> None:
    lines = ["# ticketscope claims report", "", header, "", RULE, "",
             "| claim | measure | measured (A vs B, mean ± sd over seeds) | seeds | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c.claim} | {c.measure} | {c.measured} | {c.seeds} | **{c.verdict}** |" for c in rows]
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
