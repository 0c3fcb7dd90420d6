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

Each measure is computed for all rounds of a layer at once (:func:`measure_rounds`), with every
round's random nulls seeded as if measured alone.
"""

from __future__ import annotations

import logging
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
                      in_degree_histogram, ipr, ipr_null, nongaussianity, nongaussianity_null, preactivations,
                      spatial_localization)
from .metrics.moments import BLOCK_ELEMENTS
from .models import FCN, layer_index
from .provenance import provenance
from .runs import completed_rounds, load_round_file, load_snapshots, prunable_layers, resolve_device
from .seeding import derive_seed

log = logging.getLogger(__name__)
ANALYSIS_VERSION = 3  # bump when a stored measure changes: older analyses are then recomputed
SAMPLES_PER_GROUP = 2000  # cavity scores kept per (round, layer, group) for histograms
BATCH_ELEMENTS = 2**23  # rounds measured together: about this many float64 at most per (n, units) or (units, D) array
MEANS = ("ipr", "ipr_null", "localization", "kappa", "kappa_pooled", "ng", "ng_pooled", "ng_null", "ng_excess")


def unit_measures(W: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, ds: Dataset, first: bool,
                  num_classes: int, seeds: list[int]) -> dict[str, np.ndarray]:
    """Per-unit measures (the columns of ``units.parquet``, each (B, K)) of a batch of B layers W (B, K, D),
    e.g. one layer at B rounds, on their probe inputs: (n, D) shared by the batch or (B, n, D) each its own.
    ``seeds[b]`` seeds layer b's non-Gaussianity null; every measure is one call for the whole batch."""
    W = W.double()
    B, K, _ = W.shape
    ck = class_kurtosis(preactivations(W, inputs), y, num_classes)
    null = nongaussianity_null(W, inputs, y, num_classes, seed=seeds)

    def per_unit(t: torch.Tensor) -> np.ndarray:  # (..., B * K) -> (..., B, K)
        return t.reshape(*t.shape[:-1], B, K).cpu().numpy()

    cols: dict[str, np.ndarray] = {
        "in_degree": (W != 0).sum(-1).cpu().numpy(),
        "ipr": ipr(W).cpu().numpy(),
        "ipr_null": ipr_null(W, seed=[0] * B).cpu().numpy(),  # every layer the draws of seed 0, as unbatched
        "kappa": per_unit(ck.overall),
        "kappa_pooled": per_unit(ck.pooled),
        "ng": per_unit(nongaussianity(ck.overall)),
        "ng_pooled": per_unit(ck.ng_pooled),
        "ng_null": null.pooled.cpu().numpy(),
    }
    cols["ng_excess"] = cols["ng_pooled"] - cols["ng_null"]
    cols["localization"] = (spatial_localization(W, ds.input_shape, ds.torus, seed=[0] * B).cpu().numpy()
                            if first else np.full((B, K), np.nan))
    kappa_class, ng_class = per_unit(ck.per_class), per_unit(nongaussianity(ck.per_class))  # (C, B, K)
    for c in range(num_classes):
        cols[f"kappa_class{c}"] = kappa_class[c]
        cols[f"ng_class{c}"] = ng_class[c]
        cols[f"ng_null_class{c}"] = null.per_class[c].cpu().numpy()
    return cols


def round_means(cols: dict[str, np.ndarray], num_classes: int) -> dict[str, np.ndarray]:
    """(B,) means over the connected units (in-degree > 0) of each layer of :func:`unit_measures`'
    columns, NaN values left out (NaN where none is left), their connected fraction and largest IPR."""
    alive = cols["in_degree"] > 0
    per_class = [f"{k}_class{c}" for k in ("kappa", "ng", "ng_null") for c in range(num_classes)]
    means = {"connected": alive.mean(-1)}
    with np.errstate(invalid="ignore"):
        for col in (*MEANS, *per_class):
            ok = alive & ~np.isnan(cols[col])
            means[col] = np.where(ok, cols[col], 0.0).sum(-1) / ok.sum(-1)
    ok = alive & ~np.isnan(cols["ipr"])
    means["ipr_max"] = np.where(ok.any(-1), np.where(ok, cols["ipr"], -np.inf).max(-1), np.nan)
    return means


def batched_cavity_scores(W: torch.Tensor, inputs: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K, D) :func:`class_cavity_scores` of a batch of layers W (B, K, D) on inputs as in
    :func:`unit_measures`: rows are independent, so shared inputs score all B * K units in one call.
    Probe rows are taken in chunks small enough for each (rows, units) temporary to stay in cache."""
    if inputs.dim() == 2:
        units = W.flatten(0, 1).double()
        return class_cavity_scores(units, inputs.double(), y, num_classes,
                                   chunk_size=max(1, BLOCK_ELEMENTS // len(units))).view(W.shape)
    chunk = max(1, BLOCK_ELEMENTS // W.shape[1])
    return torch.stack([class_cavity_scores(w.double(), x.double(), y, num_classes, chunk) for w, x in zip(W, inputs)])


def _cavity_rows(r: int, name: str, scores: torch.Tensor, W: torch.Tensor, mask: torch.Tensor, mask_next: torch.Tensor,
                 seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The cavity analysis of layer ``name``'s pruning step after round r: its ``rounds.parquet``
    statistics and its ``cavity.parquet`` rows (up to SAMPLES_PER_GROUP scores per group), as columns."""
    a = cavity_analysis(scores, W, mask, mask_next, seed=seed)
    stats = {f"cavity_{group}_{k}": v for group in ("removed", "kept", "random")
             for k, v in vars(getattr(a, group)).items()}
    stats["cavity_spearman_abs_w"] = a.spearman_abs_w
    stats["cavity_removed_minus_random"] = stats["cavity_removed_mean"] - stats["cavity_random_mean"]
    g = torch.Generator().manual_seed(seed)
    kept = {}
    for group, s in cavity_groups(scores, mask, mask_next, seed=seed).items():
        s = s[s.isfinite()].cpu()
        kept[group] = s[torch.randperm(len(s), generator=g)[:SAMPLES_PER_GROUP]].numpy()
    size = sum(len(s) for s in kept.values())
    return stats, {"round": np.full(size, r), "layer": np.full(size, name, dtype=object),
                   "group": np.repeat(np.array(list(kept), dtype=object), [len(s) for s in kept.values()]),
                   "score": np.concatenate(list(kept.values()))}


def _stamp_matches(stored: dict[str, Any], stamp: dict[str, Any]) -> bool:
    return all(stored.get(k) == v for k, v in stamp.items())


def probe_set(ds: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded held-out items, or all of a fixed held-out split that holds fewer (``Dataset.test_size``)."""
    size = ds.test_size
    return ds.test(n if size is None else min(n, size), seed=seed)


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
    X, y = probe_set(ds, n_probe, derive_seed(cfg.seed, "analysis-probe"))
    order = y.argsort(stable=True)  # classes in contiguous blocks: the per-class moments need no gather
    X, y = X[order].to(device), y[order].to(device)
    states = [load_round_file(run, s, "final.safetensors") for s in done]
    units_df, rounds_df, cavity_df = measure_rounds(cfg, ds, done, states, X, y)
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
    write_json(out / "analysis.json", {**stamp, "probe_size": len(X), "input_shape": list(ds.input_shape),
                                       "torus": ds.torus, "provenance": provenance(device)})
    return out


def measure_rounds(cfg: RunConfig, ds: Dataset, done: list[dict[str, Any]], states: list[dict[str, torch.Tensor]],
                   X: torch.Tensor, y: torch.Tensor) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The units, rounds and cavity tables of the completed rounds ``done`` (final weights ``states``) on
    the probe set X, y.

    Each pruned layer is measured at a batch of rounds at once (as many as ``BATCH_ELEMENTS`` allows:
    every round of a small net). Without batch norm the first layer sees the same inputs at every round,
    so one GEMM gives all rounds' pre-activations and one cavity call scores all their weights; deeper
    layers stack each round's own inputs. The nulls keep their per-(round, layer) seeds, so how rounds
    are batched changes no number beyond rounding.
    """
    layers, R, C, n = prunable_layers(cfg), len(states), ds.num_classes, len(X)
    model = FCN(ds.input_dim, C, cfg.model).to(X.device).eval()
    shapes = [states[0][f"{name}.weight"].shape for name in layers]
    batch = max(1, BATCH_ELEMENTS // max(max(n * max(K, D), K * D) for K, D in shapes))
    units: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    samples: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for start in range(0, R, batch):
        idx = range(start, min(start + batch, R))
        inputs = []
        for r in idx:
            model.load_state_dict(states[r])
            with torch.no_grad():
                inputs.append(model.layer_inputs(X))
        for name in layers:
            i = layer_index(name)
            x = _batch_inputs([v[i] for v in inputs])
            W = torch.stack([states[r][f"{name}.weight"] for r in idx]).to(X.device)
            K = W.shape[1]
            cols = unit_measures(W, x, y, ds, i == 0, C, [derive_seed(cfg.seed, "ng-null", r, name) for r in idx])
            means = round_means(cols, C)
            for b, r in enumerate(idx):
                units[r, name] = {"round": np.full(K, r), "layer": np.full(K, name, dtype=object), "unit": np.arange(K),
                                  **{k: v[b] for k, v in cols.items()}}
                rows[r, name] = {"round": r, "layer": name, "density": done[r]["layer_density"][name],
                                 "test_accuracy": done[r]["test_accuracy"], **{k: float(v[b]) for k, v in means.items()}}
            scored = [r for r in idx if r + 1 < R]  # the rounds with a next pruning step
            if not scored:
                continue
            scores = batched_cavity_scores(W[:len(scored)], x if x.dim() == 2 else x[:len(scored)], y, C)
            for b, r in enumerate(scored):
                masks = (states[r][f"{name}.mask"].to(X.device), states[r + 1][f"{name}.mask"].to(X.device))
                stats, samples[r, name] = _cavity_rows(r, name, scores[b], W[b], *masks, derive_seed(cfg.seed, "cavity", r))
                rows[r, name].update(stats)
    keys = [(r, name) for r in range(R) for name in layers]
    cavity = (_concat([samples[k] for k in keys if k in samples]) if samples
              else pd.DataFrame(columns=["round", "layer", "group", "score"]))
    return _concat([units[k] for k in keys]), pd.DataFrame([rows[k] for k in keys]), cavity


def _batch_inputs(xs: list[torch.Tensor]) -> torch.Tensor:
    """A layer's inputs at a batch of rounds: one (n, D) tensor when all rounds' are the same (the first
    layer, without batch norm), else stacked (B, n, D)."""
    return xs[0] if all(x is xs[0] or torch.equal(x, xs[0]) for x in xs[1:]) else torch.stack(xs)


def _concat(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """One table from column arrays given in parts (every part the same columns)."""
    return pd.DataFrame({col: np.concatenate([p[col] for p in parts]) for col in parts[0]})


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
