"""Figure primitives shared by run analysis and sweep reports (matplotlib, Agg backend)."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from .io import atomic_write_bytes  # noqa: E402

_SIGNED = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.82")  # masked (pruned) pixels in grey


def save(fig: plt.Figure, path: str | Path, dpi: int = 120, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG atomically and close it; ``tight``: cropped to what is drawn (else the
    figure's own size, for layouts placed in inches)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
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


METHOD_COLOURS = {"imp": "#1f5fa8", "oneshot": "#d9822b", "random": "#7a7a7a", "cavity": "#2a9d55",
                  "cavity-high": "#c0392b", "cavity-low": "#8e44ad"}
"""One visual code in every sweep figure: colour = pruning method, line style = data vs Gaussian clone."""


def condition_style(method: str, clone: bool) -> dict[str, object]:
    """Colour by pruning method (other methods: matplotlib's cycle), solid data, dashed clone."""
    colour = METHOD_COLOURS.get(method) or f"C{4 + sum(map(ord, method)) % 6}"  # a registered rule of a user
    return {"color": colour, "ls": "--" if clone else "-", "label": f"{method}, {'clone' if clone else 'data'}"}


def curve(ax: plt.Axes, agg: pd.DataFrame, x: str, label: str, **kw: object) -> None:
    """A mean curve with its shaded interval (from :func:`mean_ci`)."""
    (line,) = ax.plot(agg[x], agg["mean"], marker="o", ms=3, label=label, **kw)
    if (agg["hi"] > agg["lo"]).any():
        ax.fill_between(agg[x], agg["lo"], agg["hi"], color=line.get_color(), alpha=0.15, lw=0)


def legend_below(fig: plt.Figure, axes: np.ndarray) -> None:
    """One legend for the whole figure, under the panels (never over the data)."""
    handles, labels = {}, []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) > 4), 1, 0.95))
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8,
               frameon=False)


def density_axis(ax: plt.Axes) -> None:
    """Density on a log x axis, decreasing to the right (the direction of pruning)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.invert_xaxis()
    ax.set_xlabel("density (fraction of weights kept)")


def _as_images(w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(K, D) rows -> (K, H, W) images; channels averaged."""
    if len(shape) == 3:
        return w.reshape(len(w), *shape).mean(axis=1)
    return w.reshape(len(w), *shape)


def _rf_1d(ax: plt.Axes, w: np.ndarray, m: np.ndarray) -> None:
    """A 1D receptive field: signed bars by position (two step artists, not one patch per bar), kept
    connections ticked along the bottom."""
    edges = np.arange(len(w) + 1) - 0.5
    v = float(np.abs(w).max()) or 1.0
    ax.stairs(np.maximum(w, 0), edges, fill=True, color="#c0392b", lw=0)
    ax.stairs(np.minimum(w, 0), edges, fill=True, color="#2e6fb5", lw=0)
    kept = np.flatnonzero(m > 0)
    ax.plot(kept, np.full(len(kept), -1.1 * v), "|", color="k", ms=4)
    ax.set_ylim(-1.2 * v, 1.05 * v)
    ax.set_xlim(-0.5, len(w) - 0.5)


@dataclass(frozen=True)
class RFPanel:
    """One row of an RF grid: a label, k units' weights and masks (k, D), a caption per unit, the input shape."""

    label: str
    weights: np.ndarray
    masks: np.ndarray
    captions: Sequence[str]
    shape: tuple[int, ...]


def rf_grid(panels: Sequence[RFPanel], path: str | Path, title: str = "") -> Path:
    """Receptive fields, a row per panel with its label on the left. Images (2D inputs): each unit's
    weights (signed colormap, symmetric per unit) with the pruned pixels greyed out; 1D inputs:
    signed bar plots with the kept connections ticked."""
    k = max(len(p.weights) for p in panels)
    row = 1.75 if len(panels[0].shape) == 1 else 2.0  # images need room for their captions
    height = row * len(panels) + 0.45  # 0.45 inch on top for the two-line title
    fig, axes = plt.subplots(len(panels), k + 1, figsize=(1.5 * k + 1.8, height), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2] + [1] * k})
    for row, p in enumerate(panels):
        axes[row, 0].axis("off")
        axes[row, 0].text(1.0, 0.5, p.label, ha="right", va="center", fontsize=7, transform=axes[row, 0].transAxes)
        for j, ax in enumerate(axes[row, 1:]):
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(p.weights):
                ax.axis("off")
                continue
            if len(p.shape) == 1:
                _rf_1d(ax, p.weights[j], p.masks[j])
            else:
                wi, mi = _as_images(p.weights[j:j + 1], p.shape)[0], _as_images(p.masks[j:j + 1], p.shape)[0]
                v = float(np.abs(wi).max()) or 1.0
                ax.imshow(np.ma.masked_where(mi == 0, wi), cmap=_SIGNED, vmin=-v, vmax=v, interpolation="nearest")
            ax.set_title(p.captions[j], fontsize=6, pad=2)
    legend = ("red +, blue -; ticks: kept connections" if len(panels[0].shape) == 1
              else "red +, blue -; grey: pruned pixels")
    fig.suptitle(f"{title}\n({legend})", fontsize=9, y=1 - 0.04 / height, va="top")  # 0.04 inch from the top
    fig.tight_layout(h_pad=0.6, w_pad=0.3, rect=(0, 0, 1, 1 - 0.45 / height))
    return save(fig, path)


def round_curves(rounds: pd.DataFrame, path: str | Path, cols: Sequence[tuple[str, str]],
                 nulls: dict[str, str | float] | None = None, extra: dict[str, Sequence[str]] | None = None,
                 title: str = "") -> Path:
    """One panel per measure against density, a line per pruned layer (a single run).

    ``nulls`` maps a measure to its null: another column (dashed) or a constant (dotted line);
    ``extra`` maps a measure to thin companion columns (e.g. per-class values).
    """
    nulls, extra = nulls or {}, extra or {}
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.4), squeeze=False)
    for ax, (col, label) in zip(axes[0], cols):
        for layer, df in rounds.groupby("layer"):
            df = df.sort_values("density")
            (line,) = ax.plot(df["density"], df[col], marker="o", ms=3, label=str(layer))
            null = nulls.get(col)
            if isinstance(null, str):
                ax.plot(df["density"], df[null], ls="--", color=line.get_color(), label=f"{layer} null")
            for e in extra.get(col, ()):
                ax.plot(df["density"], df[e], lw=0.8, alpha=0.6, color=line.get_color(), ls=":",
                        label=f"{layer} {e.split('_')[-1]}")
        if isinstance(nulls.get(col), float):
            ax.axhline(nulls[col], color="k", ls=":", lw=1, label="null")
        density_axis(ax)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def cavity_histograms(cavity: pd.DataFrame, path: str | Path, title: str = "", max_rounds: int = 6) -> Path:
    """Per pruning step: cavity-score distributions of removed vs kept vs random surviving weights."""
    steps = sorted(cavity["round"].unique())
    if len(steps) > max_rounds:
        steps = [steps[int(i)] for i in np.linspace(0, len(steps) - 1, max_rounds)]
    fig, axes = plt.subplots(1, len(steps), figsize=(3.2 * len(steps), 3), squeeze=False, sharey=False)
    for ax, r in zip(axes[0], steps):
        df = cavity[cavity["round"] == r]
        lo, hi = np.nanpercentile(df["score"], [1, 99]) if len(df) else (-1, 1)
        bins = np.linspace(lo, hi, 40)
        for group, color in (("removed", "C3"), ("kept", "C0"), ("random", "0.5")):
            s = df.loc[df["group"] == group, "score"]
            if len(s):
                ax.hist(s.clip(lo, hi), bins=bins, density=True, histtype="step", color=color, lw=1.4,
                        label=f"{group} (mean {s.mean():.2g}, {100 * (s > 0).mean():.0f}% > 0)")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"round {r} -> {r + 1}", fontsize=8)
        ax.set_xlabel("per-class cavity score (change of pooled |kappa-3|)", fontsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(title + "\npositive: removing the weight raises non-Gaussianity", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def connectivity(disp: object, indeg: object, path: str | Path, title: str = "") -> Path:
    """Pellegrini-Biroli statistics: pair displacements and in-degrees against their nulls."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    d, obs, null = disp.distance.numpy(), disp.observed.numpy(), disp.null.numpy()
    a.plot(d, obs / max(obs.sum(), 1), marker=".", label="observed")
    a.plot(d, null / max(null.sum(), 1e-12), ls="--", label="random positions (null)")
    a.set_xlabel("distance between connections of one unit (pixels)")
    a.set_ylabel("fraction of pairs")
    a.legend(fontsize=7)
    k, o, n = indeg.degree.numpy(), indeg.observed.numpy(), indeg.null.numpy()
    top = max(int(k[o > 0].max()) if (o > 0).any() else 1, int(k[n > 1e-3].max()) if (n > 1e-3).any() else 1) + 1
    b.bar(k[:top], o[:top], width=1.0, alpha=0.6, label="observed")
    b.plot(k[:top], n[:top], color="k", label=f"binomial null (density {indeg.density:.3f})")
    b.set_xlabel("in-degree")
    b.set_ylabel("units")
    b.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def emergence(panels: Sequence[tuple[str, pd.DataFrame]], path: str | Path, input_dim: int,
              title: str = "") -> Path:
    """Per-unit IPR of the first layer against samples seen (log x), one panel per ``(title, table)``,
    in the style of Ingrosso & Goldt's Fig. 1D/1G: a thin line per unit, the most localized unit
    at the end in bold, 3/D (a Gaussian random vector's IPR) dotted. Tables hold ``samples``,
    ``unit`` and ``ipr`` (``analysis/snapshots.parquet`` of one round); panels share the y axis.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False, sharey=True)
    for ax, (label, df) in zip(axes[0], panels):
        df = df[df["samples"] > 0]
        last = df[df["samples"] == df["samples"].max()]
        best = int(last.loc[last["ipr"].idxmax(), "unit"]) if len(last) else None
        for unit, u in df.groupby("unit"):
            u = u.sort_values("samples")
            ax.plot(u["samples"], u["ipr"], lw=2.0 if unit == best else 0.9,
                    color="C3" if unit == best else f"C{int(unit) % 10}", alpha=1.0 if unit == best else 0.6)
        ax.axhline(3.0 / input_dim, color="k", ls=":", lw=1, label=f"3/D = {3.0 / input_dim:.4f}")
        ax.set_xscale("log")
        ax.set_xlabel("samples seen")
        if len(last):
            label = f"{label}\nmost localized: IPR {last['ipr'].max():.3f}"
        ax.set_title(label, fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("IPR of each first-layer unit")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, path)


EXAMPLES_DPI = 100
EXAMPLE_CELL = 1.0  # inches per example
PAD_LEFT, PAD_TOP, MARGIN, GAP = 0.5, 0.7, 0.1, 0.3  # inches: class labels, titles, right/bottom, data|clone


def examples_size(num_classes: int, n_per_class: int, blocks: int) -> tuple[float, float]:
    """(width, height) in inches of :func:`examples_grid`; times ``EXAMPLES_DPI`` gives the PNG's pixel size."""
    width = PAD_LEFT + blocks * n_per_class * EXAMPLE_CELL + (blocks - 1) * GAP + MARGIN
    return width, PAD_TOP + num_classes * EXAMPLE_CELL + MARGIN


def _fit_title(text: str, width: float, max_size: float = 9.0) -> tuple[str, float]:
    """Wrap ``text`` to the figure ``width`` (inches) in at most two lines, shrinking the font if
    needed (a character is ~0.6 em wide; 72 points per inch)."""
    size = min(max_size, 2 * width * 72 / (0.6 * max(len(text), 1)))
    return textwrap.fill(text, width=max(int(width * 72 / (0.6 * size)), 1)), size


def _example(ax: plt.Axes, x: np.ndarray, vmax: float) -> None:
    """One example: line plot (1D), grayscale image on [-vmax, vmax] (2D or (1, H, W)), per-image
    rescaled RGB (3, H, W)."""
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 1:
        ax.plot(x, lw=0.8, color="k")
        ax.axhline(0, lw=0.4, color="0.6")
        ax.set_ylim(-vmax, vmax)
        ax.set_xlim(0, len(x) - 1)
    elif x.ndim == 2:
        ax.imshow(x, cmap="gray", vmin=-vmax, vmax=vmax, interpolation="nearest")
    else:
        rgb = np.moveaxis(x, 0, -1)
        span = rgb.max() - rgb.min()
        ax.imshow((rgb - rgb.min()) / (span if span > 0 else 1.0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def examples_grid(blocks: Sequence[tuple[str, Sequence[np.ndarray]]], path: str | Path, n_per_class: int,
                  title: str) -> Path:
    """A PNG grid of examples: one row per class, one block of ``n_per_class`` columns per (label,
    rows) in ``blocks`` (rows[c]: class c's examples, each shaped like an input), side by side.

    1D inputs are drawn as line plots, 2D as grayscale images and (3, H, W) as RGB. Line plots and
    grayscale images share one symmetric scale, the 99.5th percentile of |x| over everything drawn.
    Laid out in inches (:func:`examples_size`) at ``EXAMPLES_DPI``, not cropped; written atomically."""
    every = np.concatenate([x.ravel() for _, rows in blocks for x in rows])
    vmax = float(np.percentile(np.abs(every), 99.5)) if every.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    width, height = examples_size(len(blocks[0][1]), n_per_class, len(blocks))
    fig = plt.figure(figsize=(width, height), dpi=EXAMPLES_DPI)
    for b, (label, rows) in enumerate(blocks):
        left = PAD_LEFT + b * (n_per_class * EXAMPLE_CELL + GAP)
        fig.text((left + n_per_class * EXAMPLE_CELL / 2) / width, 1 - (PAD_TOP - 0.12) / height, label,
                 ha="center", va="bottom", fontsize=11, weight="bold")
        for c, examples in enumerate(rows):
            bottom = height - PAD_TOP - (c + 1) * EXAMPLE_CELL
            for k in range(n_per_class):
                ax = fig.add_axes(((left + k * EXAMPLE_CELL + 0.04) / width, (bottom + 0.04) / height,
                                   (EXAMPLE_CELL - 0.08) / width, (EXAMPLE_CELL - 0.08) / height))
                if k < len(examples):
                    _example(ax, examples[k], vmax)
                else:
                    ax.set_axis_off()
                if k == 0:
                    ax.set_ylabel(f"class {c}", fontsize=9)
    text, fontsize = _fit_title(title, width)
    fig.suptitle(text, y=1 - 0.06 / height, va="top", fontsize=fontsize)
    return save(fig, path, dpi=EXAMPLES_DPI, tight=False)
