"""The report's table: every complete run's stored analysis joined with its flattened config.

The report reads and never computes: each run's ``analysis/rounds.parquet`` must be current
(:func:`ticketscope.analysis.analysis_status`), as the sweep worker leaves it; runs without one are named in one error
with the command that fills them in. Also the helpers every other part of the report shares: the
config columns the claims key on (checked against :class:`~ticketscope.config.RunConfig` at import),
and grouping rows into conditions and contexts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from ...analysis import analysis_status
from ...config import RunConfig
from ...errors import TicketscopeError
from ...runs import complete_runs

SHOWN = 3  # run directories named in the error for runs without a current analysis


def field_path(*names: str) -> str:
    """The table column of a config field (``field_path("prune", "method") == "prune.method"``); raises
    if :class:`RunConfig` has no such field, so a renamed field fails at import, not as "not tested"."""
    model: Any = RunConfig
    for i, name in enumerate(names):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or name not in model.model_fields:
            raise TypeError(f"RunConfig has no field {'.'.join(names[:i + 1])}")
        model = model.model_fields[name].annotation
    return ".".join(names)


FIRST = "layers.0"  # the layer the claims and figures read
METHOD = field_path("prune", "method")
CLONE = field_path("data", "gaussian_clone")
GAIN = field_path("data", "gain")
SEED = field_path("seed")


def _flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v) if isinstance(v, list) else v
    return out


def collect(sweep_dir: Path, n_probe: int = 4096) -> tuple[pd.DataFrame, list[str]]:
    """Joined per-(run, round, layer) table of every complete run, and the varying config fields.

    Reads each run's stored analysis; raises one error naming the runs whose analysis is missing or
    stale (other rounds, version or ``n_probe``) instead of computing it.
    """
    sweep_dir = Path(sweep_dir)
    runs = complete_runs(sweep_dir)
    if not runs:
        raise TicketscopeError(f"no completed runs under {sweep_dir / 'runs'}; run `ticketscope sweep` first")
    stale = {run: why for run in runs if (why := analysis_status(run.path, n_probe)) is not None}
    if stale:
        shown = "; ".join(f"{run.path} ({why})" for run, why in list(stale.items())[:SHOWN])
        more = f"; and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
        raise TicketscopeError(
            f"{len(stale)} of {len(runs)} runs lack a current analysis: {shown}{more}. The report only reads "
            f"analyses; fill them in with `ticketscope analyze {sweep_dir / 'runs'}/* --n-probe {n_probe}` "
            "(current ones are skipped), then report again")
    frames, fields = [], []
    for run in runs:
        flat = _flatten(run.config().model_dump(mode="json"))
        fields.append(flat)
        df = run.analysis_table("rounds")
        for k, v in flat.items():
            df[k] = v
        df["run"] = run.name
        frames.append(df)
    keys = list(dict.fromkeys(k for f in fields for k in f))
    varying = [k for k in keys if k != "name" and len({str(f.get(k)) for f in fields}) > 1]
    return pd.concat(frames, ignore_index=True), varying


def groups(table: pd.DataFrame, by: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """(values of ``by``, rows) for every combination present, None/NaN values kept as groups."""
    if not by:
        return [({}, table)]
    return [(dict(zip(by, key if isinstance(key, tuple) else (key,))), df)
            for key, df in table.groupby(by, dropna=False, sort=True)]


def label(values: dict[str, Any]) -> str:
    """``field=value, ...`` (a config's None, which pandas reads back as NaN, printed as None)."""
    text = lambda v: "None" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)  # noqa: E731
    return ", ".join(f"{a.split('.')[-1]}={text(v)}" for a, v in values.items()) or "all runs"


def contexts(axes: list[str]) -> list[str]:
    """The varying fields claims are judged within: every axis but the seed and the two arms' fields."""
    return [a for a in axes if a not in (SEED, METHOD, CLONE)]
