"""The report's table: every reported point's stored analysis joined with its flattened config, and the
account of every point the sweep planned (:func:`points`: reported, failed and why, or damaged).

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

from ...analysis import CROSS_ROUND, CROSS_ROUND_COLUMNS, ROUND_COLUMNS, analysis_status
from ...config import RunConfig
from ...registry import DATASETS, RULES
from ...errors import TicketscopeError
from ...io import read_json
from ...runs import DamagedRun, RunDir, sweep_run_dir
from ..spec import load_sweep

SHOWN = 3  # run directories named in the error for runs without a current analysis


def field_path(*names: str) -> str:
    """The table column of a config field (``field_path("prune", "method") == "prune.method"``); raises
    if :class:`RunConfig` has no such field, so a renamed field fails at import, not as "not testable"."""
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
NAME = field_path("data", "name")
KURTOSIS = "data.params.excess_kurtosis"  # the copula and elliptical families' knob (checked with the claims)


def _config_columns(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    cols = []
    for name, f in model.model_fields.items():
        sub = f.annotation
        cols += (_config_columns(sub, f"{prefix}{name}.") if isinstance(sub, type) and issubclass(sub, BaseModel)
                 else [prefix + name])
    return cols


def _params_columns() -> list[str]:
    """``data.params.NAME`` and ``prune.params.NAME`` of every built-in data set's and rule's own parameters."""
    cols = []
    for section, registry, builtin in (("data", DATASETS, "nlgp"), ("prune", RULES, "imp")):
        registry.require(builtin)  # fills the registry
        for name in list(registry.objects):
            model = registry.params_model(name)
            cols += [f"{section}.params.{f}" for f in (model.model_fields if model is not None else ())]
    return cols


REPORT_COLUMNS = frozenset([*ROUND_COLUMNS, *CROSS_ROUND_COLUMNS, *_config_columns(), *_params_columns(), "run"])
"""Every column the joined table (:func:`collect`) can have: what a claim may read."""


def _flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v) if isinstance(v, list) else v
    return out


def _fate(store: RunDir, error: str | None) -> tuple[str, str]:
    """What became of a planned point: (reported | failed | damaged, why); the run is verified once."""
    if store.exists() or store.has_results():
        try:
            store.verify()
        except DamagedRun as e:
            return "damaged", str(e)
    if not store.exists():
        return "failed", error or "never ran: run the sweep again"
    diverged = store.diverged()
    if diverged is not None:
        return "failed", f"diverged in round {diverged['round']} at step {diverged['step']} (loss {diverged['loss']})"
    if store.info():  # run.json, and the whole directory verified above
        return "reported", ""
    return "failed", error or "unfinished: run the sweep again to resume it"


def _not_a_run(sweep_dir: Path) -> None:
    """Refuse a single run's directory given where a sweep's is expected, saying what reads a run."""
    if RunDir(sweep_dir).exists() and not (sweep_dir / "sweep.yaml").exists():
        raise TicketscopeError(
            f"{sweep_dir} is a run directory, not a sweep: `ticketscope report` reads a sweep directory (made by "
            f"`ticketscope sweep FILE --out DIR`). For this run, `ticketscope show {sweep_dir}` prints its rounds and "
            f"`ticketscope analyze {sweep_dir}` writes its tables and figures to {sweep_dir / 'analysis'}")


def points(sweep_dir: Path) -> pd.DataFrame:
    """Every point the sweep planned (``sweep.yaml``; without one, every run directory): its flattened
    config, digest, run, and ``status`` (reported | failed | damaged) with the ``reason``, from the run
    directory and the sweep summary's error. A single run's directory is refused, saying so."""
    sweep_dir = Path(sweep_dir)
    _not_a_run(sweep_dir)
    if (sweep_dir / "sweep.yaml").exists():
        planned = [(p.digest, p.config) for p in load_sweep(sweep_dir / "sweep.yaml").points()]
    else:
        planned = [(d.name, RunDir(d).config()) for d in sorted((sweep_dir / "runs").glob("*")) if RunDir(d).exists()]
    summary = sweep_dir / "summary.json"
    errors = {p["digest"]: p.get("error") for p in read_json(summary)["points"]} if summary.exists() else {}
    rows = []
    for digest, cfg in planned:
        store = sweep_run_dir(sweep_dir, digest)
        status, reason = _fate(store, errors.get(digest))
        rows.append({**_flatten(cfg.model_dump(mode="json")), "digest": digest, "run": store.name,
                     "status": status, "reason": reason})
    return pd.DataFrame(rows)


def collect(sweep_dir: Path, n_probe: int = 4096, planned: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Joined per-(run, round, layer) table of every reported point (:func:`points`): each run's
    ``rounds.parquet`` with its layer's cross-round measures (``lagged_lead_unit``, ...: every
    :data:`~ticketscope.analysis.CROSS_ROUND_COLUMNS`, the same on every round), and the fields that vary over
    the points the sweep planned (failed ones included).

    Reads each run's stored analysis; raises one error naming the damaged runs and their repair, or the
    runs whose analysis is missing or stale (other rounds, version, ``n_probe``, checkpoints) instead of
    computing it. ``planned``: :func:`points` of the sweep, when the caller has it.
    """
    sweep_dir = Path(sweep_dir)
    _not_a_run(sweep_dir)
    if planned is None:
        planned = points(sweep_dir) if (sweep_dir / "runs").exists() else pd.DataFrame()
    if planned.empty or not (planned["status"] == "reported").any():
        raise TicketscopeError(f"no completed runs under {sweep_dir / 'runs'}; run `ticketscope sweep` first")
    damaged = planned[planned["status"] == "damaged"]
    if len(damaged):
        raise TicketscopeError(f"{len(damaged)} of {len(planned)} runs are damaged, so the report would read "
                               f"fewer rounds or other numbers; the first: {damaged['reason'].iloc[0]}")
    runs = [sweep_run_dir(sweep_dir, d) for d in sorted(planned.loc[planned["status"] == "reported", "digest"])]
    stale = {run: why for run in runs if (why := analysis_status(run.path, n_probe)) is not None}
    if stale:
        shown = "; ".join(f"{run.path} ({why})" for run, why in list(stale.items())[:SHOWN])
        more = f"; and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
        raise TicketscopeError(
            f"{len(stale)} of {len(runs)} runs lack a current analysis: {shown}{more}. The report only reads "
            f"analyses; fill them in with `ticketscope analyze {sweep_dir / 'runs'}/* --n-probe {n_probe}` "
            "(current ones are skipped), then report again")
    frames = []
    for run in runs:
        flat = _flatten(run.config().model_dump(mode="json"))
        df = run.analysis_table("rounds")
        for m in CROSS_ROUND:  # a layer's measures across its rounds, on every round of the layer
            df = df.merge(run.analysis_table(m.name).add_prefix(f"{m.name}_").rename(columns={f"{m.name}_layer": "layer"}),
                          on="layer", how="left")
        for k, v in flat.items():
            df[k] = v
        df["run"] = run.name
        frames.append(df)
    configs = planned.drop(columns=["digest", "run", "status", "reason"])
    varying = [k for k in configs.columns if k != "name" and configs[k].astype(str).nunique() > 1]
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


def magnitude_match(first: pd.DataFrame, rules: tuple[str, ...] = ("cavity-high", "cavity-low", "imp")) -> pd.DataFrame:
    """Per pruning step (the round it starts from), the mean over seeds of the mean |w| each of ``rules`` removed
    (``removed_abs_w``, first layer), one column per rule present: what the causal test's rules actually matched."""
    df = first[first[METHOD].isin(rules)].dropna(subset=["removed_abs_w"]) if "removed_abs_w" in first else first.iloc[:0]
    if df.empty:
        return pd.DataFrame()
    return df.groupby([METHOD, "round"])["removed_abs_w"].mean().unstack(METHOD)[[r for r in rules if r in set(df[METHOD])]]
