"""A run's figures, drawn from its analysis tables and checkpoints with :mod:`ticketscope.plots`.

``rf_grid.png``, ``localization.png``, ``kurtosis.png``, ``cavity.png``, ``connectivity.png`` and,
for runs with weight snapshots, ``emergence.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import plots
from ..config import RunConfig
from ..data import Dataset
from ..metrics import displacement_histogram, in_degree_histogram
from ..runs import prunable_layers

ALWAYS_DRAWN = ("localization.png", "kurtosis.png")
"""The figures :func:`write_figures` draws for every run (the others depend on the run's layers, cavity
rows and snapshots): an analysis without them has had no figures drawn."""


def write_figures(cfg: RunConfig, ds: Dataset, states: list[dict[str, torch.Tensor]], units: pd.DataFrame,
                  rounds: pd.DataFrame, cavity: pd.DataFrame, out: Path, snapshots: pd.DataFrame | None = None) -> None:
    """The run's figures (first layer for RFs and connectivity; every pruned layer for curves; the
    emergence of receptive fields over training time when ``snapshots`` are given)."""
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
    if snapshots is not None:
        label = f"{ds.name}{' (Gaussian clone)' if cfg.data.gaussian_clone else ''}, seed {cfg.seed}"
        plots.emergence([(f"round {r}", df) for r, df in snapshots.groupby("round")], out / "emergence.png",
                        ds.input_dim, title=f"first-layer IPR over training: {label}")


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
