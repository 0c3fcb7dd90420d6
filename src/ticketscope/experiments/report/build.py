"""``build_report``: the joined table, the figures, the judged claims and their rendering, in ``DIR/report/``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ...io import atomic_write_text, write_json, write_table
from ...runs import sweep_run_dir
from ..spec import load_sweep
from .claims import family, judge
from .figures import axis_figure, claims_figure, condition_curves, emergence_figure, gain_figure, loop_figure, rf_comparison
from .render import failed_table, match_table, seed_ranges, to_html, to_markdown
from .replicate import compare
from .table import FIRST, GAIN, KURTOSIS, SEED, collect, magnitude_match, points


def _machines(sweep_dir: Path, runs: list[str]) -> list[str]:
    """The CPUs (or GPUs) the runs were trained on, as their provenance records them."""
    names = []
    for run in runs:
        prov = sweep_run_dir(sweep_dir, run).info().get("provenance", {})
        names.append(prov.get("cpu") or prov.get("device") or "unknown")
    return sorted(set(names))


def design(planned: pd.DataFrame) -> str:
    """A digest of what the sweep varies and holds, seeds left out: a replicate on other seeds has the same one."""
    configs = planned.drop(columns=[c for c in ("digest", "run", "status", "reason", "name", SEED) if c in planned])
    rows = sorted({json.dumps(r, sort_keys=True, default=str) for r in configs.to_dict(orient="records")})
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:12]


def build_report(sweep_dir: str | Path, n_probe: int = 4096, notes: str = "",
                 replicate: str | Path | None = None) -> Path:
    """Write the report of the sweep in ``sweep_dir`` from its runs' stored analyses; return its HTML path.
    ``replicate``: a sweep directory of the same sweep on disjoint seeds, already reported, to compare with."""
    sweep_dir = Path(sweep_dir)
    out = sweep_dir / "report"
    planned = points(sweep_dir)
    table, axes = collect(sweep_dir, n_probe, planned)
    spec = sweep_dir / "sweep.yaml"
    registered = family(load_sweep(spec).claims) if spec.exists() else None
    write_table(out / "table.parquet", table)
    write_table(out / "points.parquet", planned[["digest", *[a for a in axes if a in planned], "run", "status", "reason"]])
    first = table[table["layer"] == FIRST]
    figs = {
        "Test accuracy": condition_curves(first, axes, [("test_accuracy", "test accuracy", None)],
                                          out / "accuracy.png", "test accuracy (mean, 95% interval over seeds)"),
        "Localization": condition_curves(
            first, axes,
            [("ipr", "IPR (dotted: Gaussian weights,\nsame number of non-zeros)", "ipr_null"),
             ("localization", "spatial localization\n(1 = same weights at random positions)", 1.0)],
            out / "localization.png", "first-layer receptive fields"),
        "Non-Gaussianity of pre-activations": condition_curves(
            first, axes,
            [("ng_pooled", "|kappa-3| per class, pooled\n(dotted: same weights at random positions)", "ng_null"),
             ("ng_excess", "excess |kappa-3| over that null", 0.0),
             ("kappa_pooled", "kappa per class, pooled", 3.0)],
            out / "kurtosis.png", "first-layer pre-activation kurtosis"),
        **rf_comparison(sweep_dir, table, axes, out),
        "What kind of receptive field": condition_curves(
            first, axes, [("balance", "signed balance |sum w| / sum |w|\n(1 one-signed blob, 0 difference filter;"
                                      "\ndotted: the same |w| with random signs)", "balance_null"),
                          ("kappa3_pooled", "signed kappa - 3 per class, pooled\n(dotted: same weights at random "
                                            "positions)", "kappa3_null")],
            out / "field_kind.png", "first-layer fields: blob or difference filter, and the sign of their kurtosis"),
    }
    if any(sweep_run_dir(sweep_dir, run).has_analysis("snapshots") for run in table["run"].unique()):
        figs["Receptive fields over training"] = emergence_figure(sweep_dir, table, axes, out / "emergence.png")
    cav = first.dropna(subset=["cavity_removed_mean"]) if "cavity_removed_mean" in first else []
    if len(cav):
        figs["Cavity scores of pruned vs kept weights"] = condition_curves(
            cav, axes, [("cavity_removed_mean", "mean score of removed weights", 0.0),
                        ("cavity_removed_minus_random", "removed minus random survivors", 0.0),
                        ("cavity_excess_removed_minus_random", "the same, excess over the weights'\nvalues "
                         "at random positions", 0.0),
                        ("cavity_removed_frac_positive", "removed: fraction > 0", 0.5)],
            out / "cavity.png", "per-class cavity scores of each pruning step (round -> next)")
    if table["lagged_lead_unit"].notna().any():
        figs["The feedback loop"] = loop_figure(first, axes, out / "loop.png")
    if GAIN in axes:
        figs["Dose-response over the gain"] = gain_figure(first, out / "gain.png")
    if KURTOSIS in axes:
        figs["Against the marginals' excess kurtosis"] = axis_figure(
            first, KURTOSIS, out / "kurtosis_sign.png", "which non-Gaussianity: mean and 95% interval over seeds")
    rows = judge(table, axes, planned, registered)
    if any(r.role == "confirmatory" for r in rows):
        figs = {"Confirmatory claims, seed by seed": claims_figure(first, axes, rows, out / "claims.png"), **figs}
    seeds = sorted(int(s) for s in table[SEED].unique())
    machines = _machines(sweep_dir, sorted(table["run"].unique()))
    record = {"seeds": seeds, "machines": machines, "design": design(planned),
              "family": None if registered is None else [{"id": r.claim.id, "delta": r.delta} for r in registered]}
    comparison, records = compare(rows, record, Path(replicate)) if replicate is not None else ([], [])
    write_json(out / "claims.json", [asdict(c) for c in rows])
    write_json(out / "report.json", {**record, "replicate": str(replicate) if replicate is not None else None,
                                     "replicate_rows": records})
    failed = planned[planned["status"] != "reported"]
    header = (f"{len(planned)} points planned, {table['run'].nunique()} reported"
              + (f", **{len(failed)} failed** (listed below the claims)" if len(failed) else "")
              + f"; seeds {seed_ranges(seeds)}; varying fields: {', '.join(axes) or 'none'}; trained on "
              + ("; ".join(machines) or "unknown"))
    md_text = to_markdown(rows, figs, header, notes, failed_table(failed, axes), registered is not None, comparison,
                          match_table(magnitude_match(first)))
    atomic_write_text(out / "report.md", md_text + "\n")
    atomic_write_text(out / "report.html", to_html(md_text, figs))
    return out / "report.html"
