"""Measurements of every round of a run on a held-out probe set, as tidy tables and figures.

``analyze_run(DIR)`` writes ``DIR/analysis/``:

* ``units.parquet``   one row per (round, layer, unit): in-degree, IPR and its sparsity-matched
  Gaussian null, spatial localization (first layer), kurtosis kappa over the probe set, pooled
  over classes and per class, |kappa - 3| per class and pooled (``ng_pooled``), its
  sparsity-matched null (``ng_null``: the same weights at random positions) and the excess
  ``ng_excess = ng_pooled - ng_null``;
* ``rounds.parquet``  one row per (round, layer): density, accuracy and the means over connected
  units of the above, plus the cavity analysis of the next round's pruning step;
* ``cavity.parquet``  per-class cavity scores (change of the class-pooled |kappa - 3|) of the weights the next round removes,
  keeps, and of random survivors (subsampled) for histograms;
* ``snapshots.parquet`` (runs with ``train.snapshots``) one row per (round, step, first-layer unit) of
  the weight snapshots taken during training: samples seen (step x batch size), IPR and spatial
  localization, the emergence of receptive fields over training time (Ingrosso & Goldt, Fig. 1D/1G);
* figures: ``rf_grid.png``, ``localization.png``, ``kurtosis.png``, ``cavity.png``, ``connectivity.png``,
  and ``emergence.png`` (per-unit IPR against samples seen, one panel per round) with snapshots.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import plots
from .config import RunConfig, load_run_config
from .data import Dataset, make_dataset
from .errors import TicketscopeError
from .io import read_json, write_json, write_table
from .metrics import (cavity_analysis, cavity_groups, class_cavity_scores, class_kurtosis, displacement_histogram,
                      in_degree_histogram, ipr, ipr_null, nongaussianity, nongaussianity_null, spatial_localization)
from .models import FCN, layer_index
from .provenance import provenance
from .runs import completed_rounds, load_round_file, load_snapshots, prunable_layers, resolve_device
from .seeding import derive_seed

log = logging.getLogger(__name__)
ANALYSIS_VERSION = 3  # bump when a stored measure changes: older analyses are then recomputed
SAMPLES_PER_GROUP = 2000  # cavity scores kept per (round, layer, group) for histograms


def unit_measures(W: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, ds: Dataset, first: bool,
                  num_classes: int, seed: int = 0) -> pd.DataFrame:
    """Per-unit measures of one layer with incoming weights W (K, D) on its probe inputs (n, D)."""
    W = W.double()
    ck = class_kurtosis(inputs.double() @ W.T, y, num_classes)
    null = nongaussianity_null(W, inputs, y, num_classes, seed=seed)
    cols: dict[str, Any] = {
        "unit": np.arange(len(W)),
        "in_degree": (W != 0).sum(1).cpu().numpy(),
        "ipr": ipr(W).cpu().numpy(),
        "ipr_null": ipr_null(W).cpu().numpy(),
        "kappa": ck.overall.cpu().numpy(),
        "kappa_pooled": ck.pooled.cpu().numpy(),
        "ng": nongaussianity(ck.overall).cpu().numpy(),
        "ng_pooled": ck.ng_pooled.cpu().numpy(),
        "ng_null": null.pooled.cpu().numpy(),
    }
    cols["ng_excess"] = cols["ng_pooled"] - cols["ng_null"]
    cols["localization"] = (spatial_localization(W, ds.input_shape, ds.torus).cpu().numpy()
                            if first else np.full(len(W), np.nan))
    ng_class = nongaussianity(ck.per_class)  # (C, K): |kappa_c - 3|, NaN where undefined
    for c in range(num_classes):
        cols[f"kappa_class{c}"] = ck.per_class[c].cpu().numpy()
        cols[f"ng_class{c}"] = ng_class[c].cpu().numpy()
        cols[f"ng_null_class{c}"] = null.per_class[c].cpu().numpy()
    return pd.DataFrame(cols)


def _cavity_rows(scores: torch.Tensor, W: torch.Tensor, mask: torch.Tensor, mask_next: torch.Tensor,
                 seed: int) -> tuple[dict[str, float], pd.DataFrame]:
    a = cavity_analysis(scores, W, mask, mask_next, seed=seed)
    stats = {f"cavity_{group}_{k}": v for group in ("removed", "kept", "random")
             for k, v in asdict(getattr(a, group)).items()}
    stats["cavity_spearman_abs_w"] = a.spearman_abs_w
    g = torch.Generator().manual_seed(seed)
    samples = []
    for group, s in cavity_groups(scores, mask, mask_next, seed=seed).items():
        s = s[s.isfinite()].cpu()
        s = s[torch.randperm(len(s), generator=g)[:SAMPLES_PER_GROUP]]
        samples.append(pd.DataFrame({"group": group, "score": s.numpy()}))
    return stats, pd.concat(samples, ignore_index=True)


def _stamp_matches(stored: dict[str, Any], stamp: dict[str, Any]) -> bool:
    return all(stored.get(k) == v for k, v in stamp.items())


def analyze_run(run_dir: str | Path, n_probe: int = 4096, figures: bool = True, force: bool = False) -> Path:
    """Measure every completed round of the run in ``run_dir``; return the analysis folder."""
    run = Path(run_dir)
    if not (run / "config.yaml").exists():
        raise TicketscopeError(f"{run} is not a run directory (no config.yaml); give the --out of `ticketscope run`")
    out = run / "analysis"
    done = completed_rounds(run)
    if not done:
        raise TicketscopeError(f"{run} has no completed round yet; run `ticketscope run` first")
    stamp = {"rounds": len(done), "n_probe": n_probe, "version": ANALYSIS_VERSION}
    tables = [out / f"{t}.parquet" for t in ("units", "rounds", "cavity")]
    snap_rounds = [s for s in done if "snapshots.safetensors" in s["files"]]
    if snap_rounds:
        tables.append(out / "snapshots.parquet")
    stored = read_json(out / "analysis.json") if (out / "analysis.json").exists() else None
    if not force and stored is not None and _stamp_matches(stored, stamp) and all(t.exists() for t in tables):
        return out
    if stored is not None and stored.get("version", 1) != ANALYSIS_VERSION:
        log.warning("%s: recomputing an analysis of version %s with version %s", run, stored.get("version", 1),
                    ANALYSIS_VERSION)
    cfg = load_run_config(run)
    device = resolve_device(cfg.device)
    ds = make_dataset(cfg.data)
    X, y = ds.test(n_probe, seed=derive_seed(cfg.seed, "analysis-probe"))
    X, y = X.to(device), y.to(device)
    model = FCN(ds.input_dim, ds.num_classes, cfg.model).to(device).eval()
    states = [load_round_file(run, s, "final.safetensors") for s in done]
    units, rounds, cavity = [], [], []
    for r, (summary, state) in enumerate(zip(done, states)):
        model.load_state_dict(state)
        with torch.no_grad():
            inputs = model.layer_inputs(X)
        for name in prunable_layers(cfg):
            i = layer_index(name)
            W, mask = state[f"{name}.weight"].to(device), state[f"{name}.mask"].to(device)
            u = unit_measures(W, inputs[i], y, ds, first=i == 0, num_classes=ds.num_classes,
                              seed=derive_seed(cfg.seed, "ng-null", r, name))
            u.insert(0, "layer", name)
            u.insert(0, "round", r)
            units.append(u)
            alive = u[u["in_degree"] > 0]
            row = {"round": r, "layer": name, "density": summary["layer_density"][name],
                   "test_accuracy": summary["test_accuracy"], "connected": len(alive) / len(u)}
            per_class = [f"{k}_class{c}" for k in ("kappa", "ng", "ng_null") for c in range(ds.num_classes)]
            for col in ("ipr", "ipr_null", "localization", "kappa", "kappa_pooled", "ng", "ng_pooled", "ng_null",
                        "ng_excess", *per_class):
                row[col] = float(alive[col].mean()) if alive[col].notna().any() else np.nan
            row["ipr_max"] = float(alive["ipr"].max()) if alive["ipr"].notna().any() else np.nan
            if r + 1 < len(done):
                scores = class_cavity_scores(W.double(), inputs[i].double(), y, ds.num_classes)
                stats, samples = _cavity_rows(scores, W, mask, states[r + 1][f"{name}.mask"].to(device),
                                              derive_seed(cfg.seed, "cavity", r))
                row.update(stats)
                row["cavity_removed_minus_random"] = stats["cavity_removed_mean"] - stats["cavity_random_mean"]
                samples.insert(0, "layer", name)
                samples.insert(0, "round", r)
                cavity.append(samples)
            rounds.append(row)
    units_df, rounds_df = pd.concat(units, ignore_index=True), pd.DataFrame(rounds)
    cavity_df = pd.concat(cavity, ignore_index=True) if cavity else pd.DataFrame(
        columns=["round", "layer", "group", "score"])
    write_table(out / "units.parquet", units_df)
    write_table(out / "rounds.parquet", rounds_df)
    write_table(out / "cavity.parquet", cavity_df)
    snaps = snapshot_measures(run, cfg, ds, snap_rounds, device) if snap_rounds else None
    if snaps is not None:
        write_table(out / "snapshots.parquet", snaps)
    if figures:
        write_figures(cfg, ds, states, units_df, rounds_df, cavity_df, out)
        if snaps is not None:
            label = f"{ds.name}{' (Gaussian clone)' if cfg.data.gaussian_clone else ''}, seed {cfg.seed}"
            plots.emergence([(f"round {r}", df) for r, df in snaps.groupby("round")], out / "emergence.png",
                            ds.input_dim, title=f"first-layer IPR over training: {label}")
    write_json(out / "analysis.json", {**stamp, "input_shape": list(ds.input_shape), "torus": ds.torus,
                                       "provenance": provenance(device)})
    return out


def snapshot_measures(run: Path, cfg: RunConfig, ds: Dataset, summaries: list[dict[str, Any]],
                      device: torch.device) -> pd.DataFrame:
    """IPR and spatial localization of every first-layer unit at every weight snapshot of the
    given completed rounds: columns round, step, samples (seen in the round: step x batch size),
    unit, ipr, localization (the same measures as ``units.parquet``'s)."""
    rows = []
    for summary in summaries:
        for step, state in load_snapshots(run, summary).items():
            W = state["layers.0.weight"].to(device).double()
            rows.append(pd.DataFrame({
                "round": summary["round"], "step": step, "samples": step * cfg.train.batch_size,
                "unit": np.arange(len(W)), "ipr": ipr(W).cpu().numpy(),
                "localization": spatial_localization(W, ds.input_shape, ds.torus).cpu().numpy()}))
    return pd.concat(rows, ignore_index=True)


def write_figures(cfg: RunConfig, ds: Dataset, states: list[dict[str, torch.Tensor]], units: pd.DataFrame,
                  rounds: pd.DataFrame, cavity: pd.DataFrame, out: Path) -> None:
    """The run's figures (first layer for RFs and connectivity; every pruned layer for curves)."""
    first = prunable_layers(cfg)[0]
    label = f"{ds.name}, {cfg.prune.method}, seed {cfg.seed}"
    plots.round_curves(rounds, out / "localization.png", [("ipr", "IPR"), ("localization", "spatial localization")],
                       nulls={"ipr": "ipr_null", "localization": 1.0}, title=label)
    kappa_cols = [("kappa_pooled", "kappa (per class, pooled)"),
                  ("ng_pooled", "|kappa - 3| (per class, pooled)\ndashed: same weights at random positions"),
                  ("ng_excess", "excess |kappa - 3| over that null")]
    classes = range(ds.num_classes)
    plots.round_curves(rounds, out / "kurtosis.png", kappa_cols,
                       nulls={"kappa_pooled": 3.0, "ng_pooled": "ng_null", "ng_excess": 0.0},
                       extra={"kappa_pooled": [f"kappa_class{c}" for c in classes],
                              "ng_pooled": [f"ng_class{c}" for c in classes]}, title=label)
    if len(cavity):
        plots.cavity_histograms(cavity[cavity["layer"] == first], out / "cavity.png", title=f"{label}, {first}")
    if first == "layers.0":  # receptive fields live in input space: only for a pruned first layer
        rf_figure(states, units, first, ds.input_shape, out / "rf_grid.png", label)
        mask = states[-1][f"{first}.mask"]
        plots.connectivity(displacement_histogram(mask, ds.input_shape, ds.torus), in_degree_histogram(mask),
                           out / "connectivity.png", title=f"{label}, sparsest round")


def ranked_units(units: pd.DataFrame, layer: str, rnd: int) -> np.ndarray:
    """Units of ``layer`` at round ``rnd`` from most to least localized (undefined ones left out)."""
    u = units[(units["round"] == rnd) & (units["layer"] == layer)].dropna(subset=["localization"])
    return u.sort_values("localization")["unit"].to_numpy().copy()


def rf_panels(states: dict[int, dict[str, torch.Tensor]], units: pd.DataFrame, layer: str, idx: np.ndarray,
              label: str, shape: tuple[int, ...]) -> list[plots.RFPanel]:
    """:func:`plots.rf_grid` panels of units ``idx``: weights and masks at each round of ``states``."""
    panels = []
    for r, state in sorted(states.items()):
        pick = torch.as_tensor(idx, dtype=torch.long)
        loc = units[(units["round"] == r) & (units["layer"] == layer)].set_index("unit")["localization"]
        panels.append(plots.RFPanel(f"{label}\nround {r}", state[f"{layer}.weight"][pick].numpy(),
                                    state[f"{layer}.mask"][pick].numpy(), [f"#{j} loc {loc[j]:.2f}" for j in idx],
                                    shape))
    return panels


def rf_figure(states: list[dict[str, torch.Tensor]], units: pd.DataFrame, layer: str, shape: tuple[int, ...],
              path: Path, label: str, k: int = 8) -> Path | None:
    """Most and least localized units of the sparsest round, shown at the dense and sparsest rounds
    (nothing when no unit has the two connections a localization needs)."""
    last = len(states) - 1
    order = ranked_units(units, layer, last)
    if not len(order):
        return None
    ends = {0: states[0], last: states[last]}
    panels = [*rf_panels(ends, units, layer, order[:k], "most localized", shape),
              *rf_panels(ends, units, layer, order[::-1][:k].copy(), "least localized", shape)]
    return plots.rf_grid(panels, path, title=f"first-layer receptive fields: {label}")
