"""One run's analysis: measure every completed round on the probe set, store the tables, stamp them.

:func:`analyze_run` writes ``DIR/analysis/`` (its tables, the figures of :mod:`.figures` and the
stamp ``analysis.json``); :func:`analysis_status` says whether what is stored there is current.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..config import RunConfig
from ..data import Dataset, make_dataset
from ..errors import TicketscopeError
from ..metrics import ExcessCavity
from ..models import FCN, layer_index
from ..provenance import provenance
from ..device import resolve_device
from ..runs import RunDir, checkpoints_digest, prunable_layers
from ..seeding import derive_seed
from .figures import ALWAYS_DRAWN, write_figures
from .measures import (ANALYSIS_VERSION, CROSS_ROUND, ROUND_COLUMNS, cross_round_tables, LayerBatch, band_auc_row, batched_cavity_scores, cavity_rows,
                       measure, measure_batch, round_means, unit_measures)

log = logging.getLogger(__name__)
BATCH_ELEMENTS = 2**23  # rounds measured together: about this many float64 at most per (n, units) or (units, D) array
SNAPSHOT_MEASURES = ("ipr", "localization")  # of every first-layer unit at every weight snapshot
TABLES = ("units", "rounds", "cavity", *(m.name for m in CROSS_ROUND))


def probe_set(ds: Dataset, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n seeded held-out items, or all of a fixed held-out split that holds fewer (``Dataset.test_size``)."""
    size = ds.test_size
    return ds.test(n if size is None else min(n, size), seed=seed)


def _snapshot_rounds(done: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in done if "snapshots.safetensors" in s["files"]]


def _status(store: RunDir, done: list[dict[str, Any]], n_probe: int) -> str | None:
    """Why the stored analysis of the completed rounds ``done`` is not current (None: it is)."""
    try:
        stored = store.analysis_info()
    except TicketscopeError:
        return "analysis.json corrupt"
    if stored is None:
        return "no analysis"
    version = stored.get("version", 1)
    if version != ANALYSIS_VERSION:
        return f"analysis version {version}, this code writes version {ANALYSIS_VERSION}"
    if stored.get("rounds") != len(done):
        return f"made for {stored.get('rounds')} rounds, the run has {len(done)}"
    if stored.get("n_probe") != n_probe:
        return f"made with n_probe {stored.get('n_probe')}, not {n_probe}"
    return store.analysis_damage((*TABLES, *(("snapshots",) if _snapshot_rounds(done) else ())), done)


def analysis_status(run_dir: str | Path, n_probe: int = 4096) -> str | None:
    """None when ``run_dir``'s stored analysis is current (what :func:`analyze_run` with this
    ``n_probe`` would return without computing), else one short reason: no analysis, made for another
    number of rounds, an older version, another ``n_probe``, a table missing, or no run to analyze."""
    store = RunDir(run_dir)
    if not store.exists():
        return "not a run directory (no config.yaml)"
    done = store.rounds()
    return _status(store, done, n_probe) if done else "no completed round"


def analyze_run(run_dir: str | Path, n_probe: int = 4096, figures: bool = True, force: bool = False) -> Path:
    """Measure every completed round of the run in ``run_dir``; return the analysis folder.

    A current analysis (:func:`analysis_status`) is kept as it is unless ``force``; with ``figures``, its
    figures are drawn from the stored tables when they are missing (a sweep's worker analyzes without them)."""
    store = RunDir(run_dir).require()
    out = store.analysis_dir
    done = store.rounds()
    if not done:
        raise store.divergence_error() or TicketscopeError(
            f"{store.path} has no completed round yet; run `ticketscope run` first")
    stale = _status(store, done, n_probe)
    if not force and stale is None:
        if figures and not all((out / name).exists() for name in ALWAYS_DRAWN):
            _draw_stored(store, done)
        return out
    if stale is not None and stale.startswith("analysis version"):
        log.warning("%s: recomputing: %s", store.path, stale)
    cfg = store.config()
    device = resolve_device(cfg.device)
    ds = make_dataset(cfg.data)
    X, y = probe_set(ds, n_probe, derive_seed(cfg.seed, "analysis-probe"))
    order = y.argsort(stable=True)  # classes in contiguous blocks: the per-class moments need no gather
    X, y = X[order].to(device), y[order].to(device)
    states = [store.load(s, "final.safetensors") for s in done]
    units_df, rounds_df, cavity_df = measure_rounds(cfg, ds, done, states, X, y)
    computed = {"units": units_df, "rounds": rounds_df, "cavity": cavity_df, **cross_round_tables(units_df)}
    tables = {name: store.write_analysis_table(name, computed[name]) for name in TABLES}
    snap_rounds = _snapshot_rounds(done)
    snaps = snapshot_measures(store, cfg, ds, snap_rounds, device) if snap_rounds else None
    if snaps is not None:
        tables["snapshots"] = store.write_analysis_table("snapshots", snaps)
    if figures:
        write_figures(cfg, ds, states, units_df, rounds_df, cavity_df, out, snaps)
    stamp = {"rounds": len(done), "n_probe": n_probe, "version": ANALYSIS_VERSION}
    store.write_analysis_info({**stamp, "probe_size": len(X), "input_shape": list(ds.input_shape),
                               "torus": ds.torus, "tables": tables, "checkpoints": checkpoints_digest(done),
                               "provenance": provenance(device)})
    return out


def _draw_stored(store: RunDir, done: list[dict[str, Any]]) -> None:
    """The figures of a current analysis, from its stored tables and the run's checkpoints (nothing measured)."""
    cfg = store.config()
    tables = {name: store.analysis_table(name) for name in ("units", "rounds", "cavity")}
    snaps = store.analysis_table("snapshots") if _snapshot_rounds(done) else None
    states = [store.load(s, "final.safetensors") for s in done]
    write_figures(cfg, make_dataset(cfg.data), states, tables["units"], tables["rounds"], tables["cavity"],
                  store.analysis_dir, snaps)


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
            scores = batched_cavity_scores(W[:len(scored)], x if x.dim() == 2 else x[:len(scored)], y, C,
                                           [derive_seed(cfg.seed, "ng-null", r, name) for r in scored])
            for b, r in enumerate(scored):
                masks = (states[r][f"{name}.mask"].to(X.device), states[r + 1][f"{name}.mask"].to(X.device))
                step = ExcessCavity(scores.raw[b], scores.null[b], scores.excess[b])
                stats, samples[r, name] = cavity_rows(r, name, step, W[b], *masks, derive_seed(cfg.seed, "cavity", r))
                rows[r, name].update(stats)
                if r + 2 < R:  # the survivors of this step have a next one: does today's score predict it?
                    rows[r, name].update(band_auc_row(step.raw, W[b], masks[1], states[r + 2][f"{name}.mask"]))
    keys = [(r, name) for r in range(R) for name in layers]
    cavity = (_concat([samples[k] for k in keys if k in samples]) if samples
              else pd.DataFrame(columns=["round", "layer", "group", "score"]))
    return _concat([units[k] for k in keys]), _every_column(pd.DataFrame([rows[k] for k in keys])), cavity


def _every_column(rounds: pd.DataFrame) -> pd.DataFrame:
    """The rounds table with every column of :data:`ROUND_COLUMNS`: a run too short for a measure (the cavity
    analysis needs a next pruning step, the magnitude-band AUC one more) gets its columns as NaN, after the
    others, in the order a longer run has them; a run long enough for all of them is unchanged."""
    missing = [c for c in ROUND_COLUMNS if c not in rounds.columns]
    return rounds.assign(**{c: np.nan for c in missing}) if missing else rounds


def _batch_inputs(xs: list[torch.Tensor]) -> torch.Tensor:
    """A layer's inputs at a batch of rounds: one (n, D) tensor when all rounds' are the same (the first
    layer, without batch norm), else stacked (B, n, D)."""
    return xs[0] if all(x is xs[0] or torch.equal(x, xs[0]) for x in xs[1:]) else torch.stack(xs)


def _concat(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """One table from column arrays given in parts (every part the same columns)."""
    return pd.DataFrame({col: np.concatenate([p[col] for p in parts]) for col in parts[0]})


def snapshot_measures(store: RunDir, cfg: RunConfig, ds: Dataset, summaries: list[dict[str, Any]],
                      device: torch.device) -> pd.DataFrame:
    """IPR and spatial localization (:data:`SNAPSHOT_MEASURES`, the same measures as ``units.parquet``'s)
    of every first-layer unit at every weight snapshot of the given completed rounds: columns round,
    step, samples (seen in the round: step x batch size), unit, ipr, localization.

    Each snapshot is measured alone (a batch of one): stacking a round's snapshots into one batch
    changes the localization's last bits (its spread reductions), and the stored tables keep theirs."""
    measures = [measure(name) for name in SNAPSHOT_MEASURES]
    rows = []
    for summary in summaries:
        for step, state in store.snapshots(summary).items():
            W = state["layers.0.weight"].to(device).double()
            cols = measure_batch(LayerBatch(W[None], ds.input_shape, ds.torus, first=True), measures)
            rows.append(pd.DataFrame({"round": summary["round"], "step": step, "samples": step * cfg.train.batch_size,
                                      "unit": np.arange(len(W)), **{k: v[0] for k, v in cols.items()}}))
    return pd.concat(rows, ignore_index=True)
