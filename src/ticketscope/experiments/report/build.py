"""``build_report``: the joined table, the figures, the judged claims and their rendering, in ``DIR/report/``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ...io import atomic_write_text, write_json, write_table
from ...runs import sweep_run_dir
from .claims import claims
from .figures import condition_curves, emergence_figure, gain_figure, loop_figure, rf_comparison
from .render import failed_table, seed_ranges, to_html, to_markdown
from .table import FIRST, GAIN, SEED, collect, points


def build_report(sweep_dir: str | Path, n_probe: int = 4096, notes: str = "") -> Path:
    """Write the report of the sweep in ``sweep_dir`` from its runs' stored analyses; return its HTML path."""
    sweep_dir = Path(sweep_dir)
    out = sweep_dir / "report"
    planned = points(sweep_dir)
    table, axes = collect(sweep_dir, n_probe, planned)
    write_table(out / "table.parquet", table)
    write_table(out / "points.parquet", planned[["digest", *[a for a in axes if a in planned], "run", "status", "reason"]])
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
    if any(sweep_run_dir(sweep_dir, run).has_analysis("snapshots") for run in table["run"].unique()):
        figs["Receptive fields over training"] = emergence_figure(sweep_dir, table, axes, out / "emergence.png")
    cav = table[(table["layer"] == FIRST)].dropna(subset=["cavity_removed_mean"]) if "cavity_removed_mean" in table else []
    if len(cav):
        figs["Cavity scores of pruned vs kept weights"] = condition_curves(
            cav, axes, [("cavity_removed_mean", "mean score of removed weights", 0.0),
                        ("cavity_removed_minus_random", "removed minus random survivors", 0.0),
                        ("cavity_removed_frac_positive", "removed: fraction > 0", 0.5)],
            out / "cavity.png", "per-class cavity scores of each pruning step (round -> next)")
    if "lagged_lead" in table and table["lagged_lead"].notna().any():
        figs["The feedback loop"] = loop_figure(table[table["layer"] == FIRST], axes, out / "loop.png")
    if GAIN in axes:
        figs["Dose-response over the gain"] = gain_figure(table[table["layer"] == FIRST], out / "gain.png")
    rows = claims(table, axes, planned)
    write_json(out / "claims.json", [asdict(c) for c in rows])
    seeds = sorted(table[SEED].unique().tolist())
    failed = planned[planned["status"] != "reported"]
    header = (f"{len(planned)} points planned, {table['run'].nunique()} reported"
              + (f", **{len(failed)} failed** (listed below the claims)" if len(failed) else "")
              + f"; seeds {seed_ranges(seeds)}; varying fields: {', '.join(axes) or 'none'}")
    md_text = to_markdown(rows, figs, header, notes, failed_table(failed, axes))
    atomic_write_text(out / "report.md", md_text + "\n")
    atomic_write_text(out / "report.html", to_html(md_text, figs))
    return out / "report.html"
