"""Sweep report: every run's tables joined, curves with seed bands, and the claims table.

``build_report(DIR)`` reads ``DIR/runs/*/`` (each run's config, metrics and analysis), groups
runs by every varying config field but the seed ("conditions"), and writes ``DIR/report/``:
``table.parquet`` (the joined tidy table), the figures, ``claims.json``, ``report.md`` and its
rendering ``report.html`` (self-contained, figures embedded).

Each claim of :data:`CLAIMS` compares two arms seed by seed and is judged by
:mod:`ticketscope.experiments.stats` (paired t where the arms share seeds, Holm-Bonferroni across
every row of the report, three-way verdicts against the claim's smallest effect of interest).
Claims are judged separately within each combination of the varying fields other than seed,
pruning method and clone ("context").
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import markdown
import pandas as pd

from .. import plots
from ..analysis import analyze_run, ranked_units, rf_panels
from ..config import load_run_config
from ..errors import TicketscopeError
from ..io import atomic_write_text, read_json, write_json, write_table
from ..runs import completed_rounds, load_round_file
from . import stats

FIRST = "layers.0"
METHOD, CLONE = "prune.method", "data.gaussian_clone"


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
        flat = _flatten(load_run_config(run).model_dump(mode="json"))
        fields.append(flat)
        df = pd.read_parquet(analysis / "rounds.parquet")
        for k, v in flat.items():
            df[k] = v
        df["run"] = run.name
        frames.append(df)
    keys = list(dict.fromkeys(k for f in fields for k in f))
    varying = [k for k in keys if k != "name" and len({str(f.get(k)) for f in fields}) > 1]
    return pd.concat(frames, ignore_index=True), varying


def _groups(table: pd.DataFrame, by: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """(values of ``by``, rows) for every combination present, None/NaN values kept as groups."""
    if not by:
        return [({}, table)]
    return [(dict(zip(by, key if isinstance(key, tuple) else (key,))), df)
            for key, df in table.groupby(by, dropna=False, sort=True)]


def _label(values: dict[str, Any]) -> str:
    """``field=value, ...`` (a config's None, which pandas reads back as NaN, printed as None)."""
    text = lambda v: "None" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)  # noqa: E731
    return ", ".join(f"{a.split('.')[-1]}={text(v)}" for a, v in values.items()) or "all runs"


def _contexts(axes: list[str]) -> list[str]:
    return [a for a in axes if a not in ("seed", METHOD, CLONE)]


def condition_curves(table: pd.DataFrame, axes: list[str], measures: list[tuple[str, str, Any]],
                     path: Path, title: str) -> Path:
    """Measures vs density, mean and 95% interval over seeds: colour = pruning method, line style =
    data (solid) or Gaussian clone (dashed); one row of panels per context; legend below the panels.

    A measure's null is a column (thin dotted line in the condition's style) or a constant (grey).
    """
    contexts = _groups(table, _contexts(axes))
    fig, axs = plots.plt.subplots(len(contexts), len(measures), figsize=(4.4 * len(measures), 3.3 * len(contexts)),
                                  squeeze=False)
    for row, (ctx, ctx_df) in enumerate(contexts):
        for ax, (col, ylabel, null) in zip(axs[row], measures):
            for cond, df in _groups(ctx_df, [a for a in (METHOD, CLONE) if a in ctx_df]):
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
            if len(contexts) > 1:
                ax.set_title(_label(ctx), fontsize=8)
    plots.legend_below(fig, axs)
    fig.suptitle(title, fontsize=9)
    return plots.save(fig, path)


def gain_figure(table: pd.DataFrame, path: Path) -> Path:
    """Against the gain g: localization(clone) - localization(data) paired by seed, and the excess |kappa-3|,
    each at the sparsest round with its 95% interval over seeds; a line per pruning method."""
    fig, (left, right) = plots.plt.subplots(1, 2, figsize=(9.5, 3.6))
    for method in sorted(table[METHOD].unique()):
        spec = ClaimSpec("", "", "localization", "last", _arm(method, True), _arm(method), +1, 0.0, "")
        diff = plots.mean_ci(gain_differences(table, spec), "gain", "diff")
        plots.curve(left, diff, "gain", **plots.condition_style(method, False))
        for clone in (False, True):
            ng = pd.DataFrame([{"gain": g, "v": v} for g, df in table.groupby(GAIN)
                               for v in _per_seed(df, "ng_excess", _arm(method, clone), "last").dropna()])
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
    seed = table["seed"].min()
    panels = []
    for values, df in _groups(table[(table["seed"] == seed) & (table["layer"] == FIRST)], [a for a in axes if a != "seed"]):
        run = sweep_dir / "runs" / df["run"].iloc[0]
        snaps = run / "analysis" / "snapshots.parquet"
        if snaps.exists():
            s = pd.read_parquet(snaps)
            panels.append((_label(values), s[s["round"] == 0]))
    D = math.prod(_input_shape(sweep_dir / "runs" / table["run"].iloc[0]))
    return plots.emergence(panels, path, D, title=f"IPR of every first-layer unit during dense training, seed {seed}")


def _input_shape(run: Path) -> tuple[int, ...]:
    """A run's input shape as its analysis recorded it (no data set is rebuilt)."""
    return tuple(read_json(run / "analysis" / "analysis.json")["input_shape"])


def rf_comparison(sweep_dir: Path, table: pd.DataFrame, axes: list[str], path: Path, k: int = 6) -> Path:
    """RF grids, one seed: each condition's most localized units at the dense and sparsest rounds."""
    conds = [a for a in axes if a != "seed"]
    seed = table["seed"].min()
    panels = []
    for values, df in _groups(table[table["seed"] == seed], conds):
        run = sweep_dir / "runs" / df["run"].iloc[0]
        done = completed_rounds(run)
        units = pd.read_parquet(run / "analysis" / "units.parquet")
        ends = {r: load_round_file(run, done[r], "final.safetensors") for r in (0, len(done) - 1)}
        panels += rf_panels(ends, units, FIRST, ranked_units(units, FIRST, len(done) - 1)[:k], _label(values),
                            _input_shape(run))
    return plots.rf_grid(panels, path, title=f"most localized first-layer units, seed {seed}")


# ---------------------------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class ClaimSpec:
    """A claim: arm A minus arm B of one per-seed value, its predicted sign and smallest effect of interest."""

    claim: str
    measure: str  # what the value is
    value: str  # column of the first-layer table
    at: str  # "last" (sparsest round) | "mean" (over rounds) | "change" (dense to sparsest)
    arm_a: dict[str, Any]
    arm_b: dict[str, Any]
    direction: int  # +1: A - B > 0 predicted
    delta: float  # smallest effect of interest, in the value's units
    control: str  # what could make the claim true trivially, and how this comparison rules it out


def _arm(method: str, clone: bool = False) -> dict[str, Any]:
    return {METHOD: method, CLONE: clone}


LOC = "spatial localization at the sparsest round (1 = same weights at random positions, lower = more local)"
NG = "excess |kappa-3| at the sparsest round (class-pooled |kappa-3| minus the same weights at random positions)"
CAV = ("per-class cavity score of the weights IMP removes minus that of random surviving weights, mean over "
       "IMP's pruning steps")

CLAIMS: list[ClaimSpec] = [
    ClaimSpec("IMP finds more local RFs on the non-Gaussian data than on its Gaussian clone (Redman et al. 1)",
              LOC, "localization", "last", _arm("imp", True), _arm("imp"), +1, 0.05,
              "Sparsity alone makes a few surviving weights look local; both arms prune to the same per-layer "
              "density and localization divides by the spread of the same weights at random positions. The clone "
              "has the data's exact covariance, so local filters that only exploit pixel correlations are open to "
              "both arms: a difference can only come from higher-order statistics."),
    ClaimSpec("IMP localizes more than one-shot pruning at the same sparsity (Pellegrini & Biroli)",
              LOC, "localization", "last", _arm("oneshot"), _arm("imp"), +1, 0.05,
              "Both arms remove small weights by magnitude, rewind to the same initialization and train on the "
              "same seed's data, at the same density: the only difference is iterating."),
    ClaimSpec("IMP localizes more than random pruning at the same sparsity",
              LOC, "localization", "last", _arm("random"), _arm("imp"), +1, 0.05,
              "Random pruning at the same per-layer density shares every effect of sparsity and retraining; "
              "the localization measure is itself sparsity-matched."),
    ClaimSpec("IMP raises the non-Gaussianity of pre-activations more than random pruning (Redman et al. 2)",
              NG, "ng_excess", "last", _arm("imp"), _arm("random"), +1, 0.05,
              "Any pruning raises |kappa-3| (i.i.d. +-1 inputs: |kappa-3| = 2 IPR, growing as weights go). The "
              "value subtracts the same weights at random positions on the same probe set, and the arms are "
              "compared at equal density, never with 0."),
    ClaimSpec("IMP raises the non-Gaussianity of pre-activations more than one-shot pruning (Redman et al. 2)",
              NG, "ng_excess", "last", _arm("imp"), _arm("oneshot"), +1, 0.05,
              "As above; one-shot pruning also removes small weights, so the contrast isolates iteration."),
    ClaimSpec("The weights IMP removes are those whose removal raises non-Gaussianity, beyond what removing "
              "small weights does (Redman et al. 3)",
              CAV, "cavity_removed_minus_random", "mean", _arm("imp"), _arm("imp", True), +1, 0.01,
              "Removing a small weight raises IPR and so |kappa-3| by itself, and IMP removes the smallest weights, "
              "so removed weights score above random survivors on any data. IMP on the Gaussian clone shares "
              "that mechanism (same magnitude rule, same density) but has no higher-order statistics; only "
              "the excess over it is credited. Scores are per class, so the class mixture does not enter."),
    ClaimSpec("Pruning by non-Gaussianity alone (cavity pruning) localizes more than random pruning (causal test, new)",
              LOC, "localization", "last", _arm("random"), _arm("cavity"), +1, 0.05,
              "Both arms prune to the same density with the same rewinding; cavity pruning never looks at "
              "positions, so localization can only come through the pre-activation statistics."),
]


GAIN = "data.gain"
TREND = ClaimSpec(
    "The data's localization advantage over its Gaussian clone grows with non-Gaussianity (the gain g; new test, "
    "no source paper ran it)",
    "per seed, the least-squares slope over the gains of [localization of IMP on the clone minus on the data] "
    "against ln g, at the sparsest round", "localization", "last", _arm("imp", True), _arm("imp"), +1, 0.02,
    "The clone has the data's covariance at every gain, so correlations alone give both arms the same local "
    "filters; the gain turns only the higher-order statistics up. A slope, per seed, uses each seed's own pairing; "
    "the seeds' slopes are then tested against 0 (one-sample t).")


EMERGENCE = ClaimSpec(
    "Dense training grows localized receptive fields on the non-Gaussian data but not on its Gaussian clone "
    "(Ingrosso & Goldt)",
    "IPR of the most localized first-layer unit at the end of dense training (3/D for a random unit)",
    "ipr_max", "last", {CLONE: False}, {CLONE: True}, +1, 0.01,
    "Both arms train the same network from the same initialization on the same budget of fresh samples; the "
    "clone has the data's exact covariance, so any localization that pixel correlations alone can drive is "
    "open to both. IPR grows with sparsity, but no weight is pruned here: every unit keeps all D inputs.")


def _per_seed(table: pd.DataFrame, value: str, where: dict[str, Any], at: str = "last") -> pd.Series:
    """One value per seed (first layer): at the sparsest round, mean over rounds, or dense-to-sparsest change."""
    df = table[table["layer"] == FIRST]
    if value not in df:  # a measure no run has (e.g. cavity scores of a sweep without pruning rounds)
        return pd.Series(dtype=float)
    for k, v in where.items():
        df = df[df[k] == v] if k in df else df.iloc[:0]
    df = df.dropna(subset=[value]) if at == "mean" else df
    if at == "mean":
        return df.groupby("seed")[value].mean()
    last = df.loc[df.groupby("seed")["round"].idxmax()].set_index("seed")[value]
    if at == "last":
        return last
    if at == "change":
        return last - df.loc[df.groupby("seed")["round"].idxmin()].set_index("seed")[value]
    raise ValueError(f"at must be last, mean or change, not {at!r}")


@dataclass
class Claim:
    """One row of the claims table."""

    claim: str
    context: str
    measure: str
    test: str
    mean_a: float
    mean_b: float
    effect: float  # mean(A - B)
    ci_lo: float
    ci_hi: float
    p: float
    p_adj: float  # Holm across the report's rows
    p_equivalence_adj: float
    delta: float
    direction: int
    n_a: int
    n_b: int
    seeds: list[int]
    verdict: str  # supported | contradicted | inconclusive | not tested
    seeds_needed: int | None  # inconclusive rows: seeds the observed spread would need


def _effect(a: pd.Series, b: pd.Series, delta: float) -> stats.Effect | None:
    """Paired by seed where the arms share seeds (same initialization and data streams), Welch where they share none."""
    if a.dropna().index.intersection(b.dropna().index).empty:
        return stats.welch(a, b, delta)
    return stats.paired(a, b, delta)


def _dense(table: pd.DataFrame) -> bool:
    """A sweep of dense training only (no pruning round): its one claim is the Ingrosso-Goldt emergence."""
    return bool((table["round"] == 0).all())


def _specs(table: pd.DataFrame) -> list[ClaimSpec]:
    return [EMERGENCE] if _dense(table) else CLAIMS


def gain_differences(table: pd.DataFrame, spec: ClaimSpec) -> pd.DataFrame:
    """Rows (seed, gain, ln_gain, diff): the spec's arm A minus arm B at each gain, paired by seed."""
    rows = []
    for gain, df in table.groupby(GAIN):
        d = _per_seed(df, spec.value, spec.arm_a, spec.at) - _per_seed(df, spec.value, spec.arm_b, spec.at)
        rows += [{"seed": s, "gain": gain, "ln_gain": math.log(gain), "diff": v} for s, v in d.dropna().items()]
    return pd.DataFrame(rows, columns=["seed", "gain", "ln_gain", "diff"])


def _trend(table: pd.DataFrame, spec: ClaimSpec) -> tuple[pd.Series, pd.Series, stats.Effect | None]:
    slopes = stats.slopes(gain_differences(table, spec), "ln_gain", "diff")
    e = stats.one_sample(slopes, spec.delta, "slope t")
    return slopes, pd.Series(0.0, index=slopes.index), e


def claims(table: pd.DataFrame, axes: list[str]) -> list[Claim]:
    """Every claim judged within each context, Holm-corrected across all rows."""
    rows: list[tuple[ClaimSpec, str, pd.Series, pd.Series, stats.Effect | None]] = []
    for ctx, df in _groups(table[table["layer"] == FIRST], _contexts(axes)):
        for spec in _specs(table):
            a = _per_seed(df, spec.value, spec.arm_a, spec.at)
            b = _per_seed(df, spec.value, spec.arm_b, spec.at)
            rows.append((spec, _label(ctx) if ctx else "", a, b, _effect(a, b, spec.delta)))
    if GAIN in axes:
        for ctx, df in _groups(table[table["layer"] == FIRST], [a for a in _contexts(axes) if a != GAIN]):
            rows.append((TREND, _label(ctx) if ctx else "", *_trend(df, TREND)))
    p_adj = stats.holm([e.p if e else math.nan for *_, e in rows])
    p_eq_adj = stats.holm([e.p_equivalence if e else math.nan for *_, e in rows])
    tested = sum(e is not None for *_, e in rows)
    out = []
    for (spec, ctx, a, b, e), pa, pe in zip(rows, p_adj, p_eq_adj):
        v = stats.verdict(e, spec.direction, pa, pe)
        out.append(Claim(
            spec.claim, ctx, spec.measure, e.test if e else "paired t", float(a.mean()), float(b.mean()),
            e.estimate if e else math.nan, e.lo if e else math.nan, e.hi if e else math.nan, e.p if e else math.nan,
            float(pa), float(pe), spec.delta, spec.direction, len(a.dropna()), len(b.dropna()),
            list(e.seeds) if e else [], v, stats.seeds_needed(e, spec.delta, tested) if v == "inconclusive" else None))
    return out


# ---------------------------------------------------------------------------------------------- rendering


RULE = ("Each claim compares arm A with arm B seed by seed (the arms share initialization, round 0 and data "
        "stream): effect = mean over seeds of A - B, with its 95% paired-t interval. p_adj is the two-sided p value "
        "of effect = 0, Holm-Bonferroni adjusted across every row. **supported**: p_adj < 0.05 with the predicted "
        "sign; **contradicted**: p_adj < 0.05 with the other sign, or an equivalence test (two one-sided tests, "
        "Holm-adjusted) shows |effect| < delta, the claim's smallest effect of interest; **inconclusive**: neither, "
        "with the seeds per arm the observed spread would need; **not tested**: fewer than two seeds in both arms.")


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _p(x: float) -> str:
    return "n/a" if math.isnan(x) else ("<1e-4" if x < 1e-4 else f"{x:.2g}")


def seed_ranges(seeds: list[int]) -> str:
    """Seeds as runs of consecutive integers: [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"; "none" for none."""
    s = sorted(seeds)
    starts = [x for i, x in enumerate(s) if i == 0 or s[i - 1] != x - 1]
    ends = [x for i, x in enumerate(s) if i == len(s) - 1 or s[i + 1] != x + 1]
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(starts, ends)) or "none"


def _markdown(rows: list[Claim], figs: dict[str, Path], header: str, notes: str) -> str:
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (|kappa-3| inside a table cell)
    lines = ["# ticketscope claims report", "", header, "", RULE, "",
             "| # | claim | context | A − B: effect [95% CI] (predicted sign, delta) | mean A / mean B | p_adj "
             "| seeds (n A, n B) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(rows, 1):
        needed = f" (~{c.seeds_needed} seeds)" if c.seeds_needed else ""
        lines.append(
            f"| {i} | {cell(c.claim)} | {c.context or '—'} | {_fmt(c.effect)} [{_fmt(c.ci_lo)}, {_fmt(c.ci_hi)}] "
            f"({'+' if c.direction > 0 else '−'}, {c.delta:g}) | {_fmt(c.mean_a)} / {_fmt(c.mean_b)} | {_p(c.p_adj)} "
            f"| {seed_ranges(c.seeds)} ({c.n_a}, {c.n_b}) | **{c.verdict}**{needed} |")
    lines += ["", "## What each claim measures, and the control that rules out a trivial yes", ""]
    specs = [*{r.claim: spec for r in rows for spec in (*CLAIMS, TREND, EMERGENCE) if spec.claim == r.claim}.values()]
    for i, spec in enumerate(specs, 1):
        a, b = (_label(arm) for arm in (spec.arm_a, spec.arm_b))
        lines += [f"{i}. **{spec.claim}.** Value: {spec.measure}. A = {a}; B = {b}. {spec.control}", ""]
    if notes:
        lines += ["## How this sweep was chosen", "", notes, ""]
    for title, fig in figs.items():
        lines += [f"## {title}", "", f"![{title}]({fig.name})", ""]
    return "\n".join(lines)


def _html(md_text: str, figs: dict[str, Path]) -> str:
    body = markdown.markdown(md_text, extensions=["tables"])
    for fig in figs.values():  # embed the figures: the HTML file stands alone
        data = base64.b64encode(fig.read_bytes()).decode()
        body = body.replace(f'src="{html.escape(fig.name)}"', f'src="data:image/png;base64,{data}"')
    colour = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#9a6700", "not tested": "#6e7781"}
    for verdict, c in colour.items():
        body = body.replace(f"<strong>{verdict}</strong>", f"<strong style='color:{c}'>{verdict}</strong>")
    style = ("body{font-family:sans-serif;max-width:1250px;margin:auto;line-height:1.4}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 6px;font-size:12px;vertical-align:top}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ticketscope report</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")


def build_report(sweep_dir: str | Path, n_probe: int = 4096, notes: str = "") -> Path:
    """Analyze every run of a sweep if needed and write the report; return its HTML path."""
    sweep_dir = Path(sweep_dir)
    out = sweep_dir / "report"
    table, axes = collect(sweep_dir, n_probe)
    write_table(out / "table.parquet", table)
    figs = {
        "Test accuracy": condition_curves(table[table["layer"] == FIRST], axes, [("test_accuracy", "test accuracy", None)],
                                          out / "accuracy.png", "test accuracy (mean, 95% interval over seeds)"),
        "Localization": condition_curves(
            table[table["layer"] == FIRST], axes,
            [("ipr", "IPR (dotted: Gaussian weights,\nsame number of non-zeros)", "ipr_null"),
             ("localization", "spatial localization\n(1 = same weights at random positions)", 1.0)],
            out / "localization.png", "first-layer receptive fields"),
        "Non-Gaussianity of pre-activations": condition_curves(
            table[table["layer"] == FIRST], axes,
            [("ng_pooled", "|kappa-3| per class, pooled\n(dotted: same weights at random positions)", "ng_null"),
             ("ng_excess", "excess |kappa-3| over that null", 0.0),
             ("kappa_pooled", "kappa per class, pooled", 3.0)],
            out / "kurtosis.png", "first-layer pre-activation kurtosis"),
        "Receptive fields": rf_comparison(sweep_dir, table, axes, out / "rf_grid.png"),
    }
    snapshots = sorted(p for p in (sweep_dir / "runs").glob("*/analysis/snapshots.parquet"))
    if snapshots:
        figs["Receptive fields over training"] = emergence_figure(sweep_dir, table, axes, out / "emergence.png")
    cav = table[(table["layer"] == FIRST)].dropna(subset=["cavity_removed_mean"]) if "cavity_removed_mean" in table else []
    if len(cav):
        figs["Cavity scores of pruned vs kept weights"] = condition_curves(
            cav, axes, [("cavity_removed_mean", "mean score of removed weights", 0.0),
                        ("cavity_removed_minus_random", "removed minus random survivors", 0.0),
                        ("cavity_removed_frac_positive", "removed: fraction > 0", 0.5)],
            out / "cavity.png", "per-class cavity scores of each pruning step (round -> next)")
    if GAIN in axes:
        figs["Dose-response over the gain"] = gain_figure(table[table["layer"] == FIRST], out / "gain.png")
    rows = claims(table, axes)
    write_json(out / "claims.json", [asdict(c) for c in rows])
    seeds = sorted(table["seed"].unique().tolist())
    header = f"{table['run'].nunique()} runs, seeds {seed_ranges(seeds)}; varying fields: {', '.join(axes) or 'none'}"
    md_text = _markdown(rows, figs, header, notes)
    atomic_write_text(out / "report.md", md_text + "\n")
    atomic_write_text(out / "report.html", _html(md_text, figs))
    return out / "report.html"
