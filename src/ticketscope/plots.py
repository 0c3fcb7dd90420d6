"""Figure primitives shared by run analysis and sweep reports (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402


def save(fig: plt.Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def mean_ci(df: pd.DataFrame, x: str, y: str, by: Sequence[str] = (), level: float = 0.95) -> pd.DataFrame:
    """Mean of ``y`` and its ``level`` Student-t interval over the rows sharing (by..., x).

    Rows are independent seeds; with one row the interval collapses to the mean.
    """
    def agg(v: pd.Series) -> pd.Series:
        v = v.dropna()
        n, m = len(v), float(v.mean()) if len(v) else np.nan
        half = stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / np.sqrt(n) if n > 1 else 0.0
        return pd.Series({"mean": m, "lo": m - half, "hi": m + half, "n": n})

    keys = [*by, x]
    out = df.groupby(keys, dropna=False)[y].apply(agg).unstack()
    return out.reset_index().sort_values(keys)


def curve(ax: plt.Axes, agg: pd.DataFrame, x: str, label: str, **kw: object) -> None:
    """A mean curve with its shaded interval (from :func:`mean_ci`)."""
    (line,) = ax.plot(agg[x], agg["mean"], marker="o", ms=3, label=label, **kw)
    if (agg["hi"] > agg["lo"]).any():
        ax.fill_between(agg[x], agg["lo"], agg["hi"], color=line.get_color(), alpha=0.2, lw=0)


def density_axis(ax: plt.Axes) -> None:
    """Density on a log x axis, decreasing to the right (the direction of pruning)."""
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("density (fraction of weights kept)")


def _as_images(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(K, D) rows -> (K, H, W) images; channels averaged, 1D rows as 1 x L strips."""
    if len(shape) == 3:
        return w.reshape(len(w), *shape).mean(axis=1)
    if len(shape) == 1:
        return w.reshape(len(w), 1, shape[0])
    return w.reshape(len(w), *shape)


def rf_grid(panels: Sequence[tuple[str, np.ndarray, np.ndarray, Sequence[str]]], shape: tuple[int, ...],
            path: str | Path, title: str = "") -> Path:
    """Receptive fields: for each panel (row label, weights (k, D), masks (k, D), unit captions),
    one row of weight images (signed colormap, symmetric per unit) and one of their masks."""
    k = max(len(p[1]) for p in panels)
    fig, axes = plt.subplots(2 * len(panels), k, figsize=(1.3 * k, 2.7 * len(panels)), squeeze=False)
    for row, (label, w, m, captions) in enumerate(panels):
        wi, mi = _as_images(w, shape), _as_images(m, shape)
        for j in range(k):
            a_w, a_m = axes[2 * row, j], axes[2 * row + 1, j]
            for a in (a_w, a_m):
                a.set_xticks([])
                a.set_yticks([])
            if j >= len(w):
                a_w.axis("off")
                a_m.axis("off")
                continue
            v = float(np.abs(wi[j]).max()) or 1.0
            a_w.imshow(wi[j], cmap="RdBu_r", vmin=-v, vmax=v, aspect="auto" if len(shape) == 1 else "equal")
            a_m.imshow(mi[j], cmap="gray_r", vmin=0, vmax=1, aspect="auto" if len(shape) == 1 else "equal")
            a_w.set_title(captions[j], fontsize=7)
        axes[2 * row, 0].set_ylabel(f"{label}\nweights", fontsize=8)
        axes[2 * row + 1, 0].set_ylabel("mask", fontsize=8)
    fig.suptitle(title + "\n(red +, blue -; mask: black = kept)", fontsize=9)
    return save(fig, path)
