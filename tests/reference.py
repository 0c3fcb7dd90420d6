"""Reference implementations: the plain, slow computations that the package's fast paths must reproduce.

The tests compare against these, and the benchmarks time the package against them (``benchmarks/``
put this folder on ``sys.path`` and ``import reference``), so each reference exists once:

* :func:`per_round_tables`: a run's analysis tables (units, rounds, cavity) computed the unbatched way,
  one (round, layer) at a time, straight from the metric functions (the oracle of ``analyze_run``'s
  batching over rounds, its nulls' seeds included);
* :func:`cavity_brute_force`: cavity scores by their literal definition, one weight at a time (the
  oracle of ``cavity_scores``).

They use the package's metric functions and data sets, never its analysis code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import torch

from ticketscope.analysis import SAMPLES_PER_GROUP
from ticketscope.config import load_run_config
from ticketscope.data import make_dataset
from ticketscope.analysis.measures import EXCESS_SHUFFLES
from ticketscope.metrics import (cavity_analysis, cavity_groups, class_cavity_scores, class_kurtosis, excess_cavity_scores,
                                 ipr, ipr_null, magnitude_band_auc, matched_band_auc, nongaussianity, nongaussianity_null,
                                 signed_balance, signed_balance_null, spatial_localization)
from ticketscope.pruning.banded import mean_removed_magnitude
from ticketscope.models import FCN
from ticketscope.runs import RunDir
from ticketscope.seeding import derive_seed


def per_round_tables(run: Path, n_probe: int) -> dict[str, pd.DataFrame]:
    """The units, rounds and cavity tables of the run in ``run`` recomputed the unbatched way, one
    (round, layer) at a time, straight from the metric functions: what analyze_run's batching over
    rounds must reproduce, seeds included (to rounding: the probe items here are in drawn order)."""
    cfg = load_run_config(run)
    ds = make_dataset(cfg.data)
    X, y = ds.test(n_probe if ds.test_size is None else min(n_probe, ds.test_size),
                   seed=derive_seed(cfg.seed, "analysis-probe"))
    C = ds.num_classes
    done = RunDir(run).rounds()
    states = [RunDir(run).load(s, "final.safetensors") for s in done]
    model = FCN(ds.input_dim, C, cfg.model).eval()
    layers = [f"layers.{i}" for i in sorted(cfg.prune.layers if cfg.prune.layers is not None else range(len(cfg.model.hidden)))]
    units, rounds, cavity = [], [], []
    order = y.argsort(stable=True)  # the probe halves: alternate items of each class, in class order
    halves = (order[0::2], order[1::2])
    for r, state in enumerate(states):
        model.load_state_dict(state)
        with torch.no_grad():
            inputs = model.layer_inputs(X)
        for name in layers:
            i = int(name.split(".")[1])
            W, x = state[f"{name}.weight"].double(), inputs[i].double()
            ck = class_kurtosis(x @ W.T, y, C)
            null = nongaussianity_null(W, x, y, C, seed=derive_seed(cfg.seed, "ng-null", r, name))
            u = {"round": r, "layer": name, "unit": np.arange(len(W)), "in_degree": (W != 0).sum(1).numpy(),
                 "ipr": ipr(W).numpy(), "ipr_null": ipr_null(W).numpy(), "kappa": ck.overall.numpy(),
                 "kappa_pooled": ck.pooled.numpy(), "ng": nongaussianity(ck.overall).numpy(),
                 "ng_pooled": ck.ng_pooled.numpy(), "ng_null": null.pooled.numpy(),
                 "ng_excess": (ck.ng_pooled - null.pooled).numpy(), "kappa3_pooled": (ck.pooled - 3).numpy(),
                 "kappa3_null": null.excess_pooled.numpy(), "kappa3_excess": (ck.pooled - 3 - null.excess_pooled).numpy(),
                 "localization": (spatial_localization(W, ds.input_shape, ds.torus) if i == 0
                                  else torch.full((len(W),), torch.nan, dtype=torch.float64)).numpy()}
            for half, rows_ in zip("ab", halves):
                xh, yh = x[rows_], y[rows_]
                nh = nongaussianity_null(W, xh, yh, C, seed=derive_seed(cfg.seed, "ng-null", r, name)).pooled
                u[f"ng_excess_{half}"] = (class_kurtosis(xh @ W.T, yh, C).ng_pooled - nh).numpy()
            u |= {"balance": signed_balance(W).numpy(), "balance_null": signed_balance_null(W).numpy()}
            for c in range(C):
                u |= {f"kappa_class{c}": ck.per_class[c].numpy(), f"ng_class{c}": nongaussianity(ck.per_class[c]).numpy(),
                      f"ng_null_class{c}": null.per_class[c].numpy()}
            u = pd.DataFrame(u)
            units.append(u)
            alive = u[u["in_degree"] > 0]
            row = {"round": r, "layer": name, "density": done[r]["layer_density"][name],
                   "test_accuracy": done[r]["test_accuracy"], "connected": len(alive) / len(u)}
            for col in ["ipr", "ipr_null", "localization", "kappa", "kappa_pooled", "ng", "ng_pooled", "ng_null", "ng_excess",
                        "kappa3_pooled", "kappa3_null", "kappa3_excess", "balance", "balance_null",
                        *[f"{k}_class{c}" for k in ("kappa", "ng", "ng_null") for c in range(C)]]:
                row[col] = alive[col].mean()
            row["ipr_max"] = alive["ipr"].max()
            if r + 1 < len(states):
                scores = class_cavity_scores(W, x, y, C)
                mask, mask_next, seed = state[f"{name}.mask"], states[r + 1][f"{name}.mask"], derive_seed(cfg.seed, "cavity", r)
                a = cavity_analysis(scores, W, mask, mask_next, seed=seed)
                row |= {f"cavity_{g}_{k}": v for g in ("removed", "kept", "random") for k, v in vars(getattr(a, g)).items()}
                row |= {"cavity_spearman_abs_w": a.spearman_abs_w,
                        "cavity_removed_minus_random": a.removed.mean - a.random.mean}
                ex = cavity_analysis(excess_cavity_scores(W, x, y, C, shuffles=EXCESS_SHUFFLES, seed=derive_seed(
                    cfg.seed, "ng-null", r, name)).excess, W, mask, mask_next, seed=seed)
                row |= {"cavity_excess_removed_mean": ex.removed.mean,
                        "cavity_excess_removed_minus_random": ex.removed.mean - ex.random.mean,
                        "removed_abs_w": mean_removed_magnitude(W, mask, mask_next)}
                if r + 2 < len(states):
                    band = magnitude_band_auc(scores, W, mask_next, states[r + 2][f"{name}.mask"])
                    matched = matched_band_auc(scores, W, mask_next, states[r + 2][f"{name}.mask"])
                    row |= {"cavity_auc_magnitude": band.auc, "cavity_auc_bins": float(band.bins),
                            "cavity_auc_matched": matched.auc, "cavity_auc_matched_se": matched.se}
                pick = torch.Generator().manual_seed(seed)
                for group, v in cavity_groups(scores, mask, mask_next, seed=seed).items():
                    v = v[v.isfinite()]
                    v = v[torch.randperm(len(v), generator=pick)[:SAMPLES_PER_GROUP]]
                    cavity.append(pd.DataFrame({"round": r, "layer": name, "group": group, "score": v.numpy()}))
            rounds.append(row)
    return {"units": pd.concat(units, ignore_index=True), "rounds": pd.DataFrame(rounds),
            "cavity": pd.concat(cavity, ignore_index=True)}


def kappa_reference(h: np.ndarray) -> float:
    """scipy's population kurtosis; NaN when h is constant up to the rounding of X @ w.

    Removing a unit's last live weight leaves h' identically zero or constant; numpy's matmul may
    round identical rows differently at ~1e-16 relative, so constancy is ptp <= 1e-12 * max|h|.
    """
    if np.ptp(h) <= 1e-12 * np.abs(h).max():
        return np.nan
    return scipy.stats.kurtosis(h, fisher=False, bias=True)


def cavity_brute_force(W: np.ndarray, X: np.ndarray, kind: str = "kurtosis",
                       weights: tuple[np.ndarray, np.ndarray] | None = None,
                       kappa: Callable[[np.ndarray], float] = kappa_reference) -> np.ndarray:
    """Cavity scores by definition: for every (i, j), set w_ij = 0, recompute h_i = X w_i from scratch
    and its kurtosis ``kappa``; the score is the change of kappa (``kind`` "kurtosis") or of |kappa - 3|
    ("nongaussianity"). A (K, D) array, or with ``weights`` = (rows, cols) the scores of those weights."""
    K, D = W.shape
    rows, cols = weights if weights is not None else np.divmod(np.arange(K * D), D)
    base = {i: kappa(X @ W[i]) for i in np.unique(rows)}
    out = np.empty(len(rows))
    for n, (i, j) in enumerate(zip(rows, cols)):
        w = W[i].copy()
        w[j] = 0.0
        removed = kappa(X @ w)
        out[n] = removed - base[i] if kind == "kurtosis" else abs(removed - 3) - abs(base[i] - 3)
    return out if weights is not None else out.reshape(K, D)
