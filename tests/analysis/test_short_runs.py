"""Short runs and sweep runs through `ticketscope analyze`: every rounds table has every column (NaN
where a run is too short for a measure), and a sweep's run, analyzed without figures by its worker,
gets its figures drawn from the stored tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import TINY, merge
from ticketscope.analysis import ROUND_COLUMNS, analyze_run
from ticketscope.analysis.figures import ALWAYS_DRAWN
from ticketscope.cli import app
from ticketscope.config import parse_config
from ticketscope.runs import run_experiment

SMALL = merge(TINY, {"data": {"L": 6, "n_train": 512, "n_test": 128}, "model": {"hidden": [8]},
                     "train": {"steps": 30, "batch_size": 32, "n_eval_train": 128}})
CAVITY = [c for c in ROUND_COLUMNS if c.startswith("cavity_") and not c.startswith("cavity_auc")]
AUC = ["cavity_auc_magnitude", "cavity_auc_bins"]


@pytest.fixture(scope="module")
def rounds_tables(tmp_path_factory) -> dict[int, pd.DataFrame]:
    """rounds.parquet of the same run pruned 0, 1 and 2 times."""
    tables = {}
    for n in (0, 1, 2):
        run = tmp_path_factory.mktemp(f"rounds{n}") / "r"
        run_experiment(parse_config(merge(SMALL, {"prune": {"rounds": n}})), run, progress=False)
        tables[n] = pd.read_parquet(analyze_run(run, n_probe=256, figures=False) / "rounds.parquet")
    return tables


def test_every_rounds_table_has_every_column_in_one_order(rounds_tables):
    """A one-round run used to lack the AUC columns (a reader failed with KeyError), a dense run every
    cavity column."""
    full = list(rounds_tables[2].columns)
    assert set(ROUND_COLUMNS) <= set(full)
    for n in (0, 1):
        assert list(rounds_tables[n].columns) == full, n
        rounds_tables[n][list(ROUND_COLUMNS)]  # what the report reads: no KeyError


def test_columns_a_run_is_too_short_for_are_nan_and_the_others_are_not(rounds_tables):
    dense, once, twice = rounds_tables[0], rounds_tables[1], rounds_tables[2]
    assert dense[CAVITY + AUC].isna().all().all()
    assert once[AUC].isna().all().all()  # the AUC needs a step after the next one
    assert once.loc[once["round"] == 0, CAVITY].notna().all().all()  # round 0 has a next pruning step
    assert once.loc[once["round"] == 1, CAVITY].isna().all().all()
    assert twice.loc[twice["round"] == 0, AUC].notna().all().all()
    assert twice.loc[twice["round"] > 0, AUC].isna().all().all()
    for table in (dense, once, twice):
        assert table[["density", "ipr", "kappa_pooled"]].notna().all().all()


def test_analyze_draws_the_figures_a_sweep_worker_left_out(tmp_path):
    """The sweep worker analyzes with figures=False; `ticketscope analyze RUN` then said "tables and figures
    in ..." and drew none (they needed --force). It draws them now, from the stored tables."""
    run = tmp_path / "r"
    run_experiment(parse_config(merge(SMALL, {"prune": {"rounds": 1}})), run, progress=False)
    out = analyze_run(run, n_probe=256, figures=False)
    assert not any((out / name).exists() for name in ALWAYS_DRAWN)
    stamp = (out / "analysis.json").read_text()
    tables = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    res = CliRunner().invoke(app, ["analyze", str(run), "--n-probe", "256"])
    assert res.exit_code == 0, res.output
    assert f"tables and figures in {out}" in res.output
    for name in (*ALWAYS_DRAWN, "rf_grid.png", "connectivity.png", "cavity.png"):
        assert (out / name).stat().st_size > 0, name
    # nothing was measured again: the stamp and the tables are the bytes they were
    assert (out / "analysis.json").read_text() == stamp
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == tables
    assert json.loads(stamp)["n_probe"] == 256


def test_analyze_keeps_figures_that_are_there(tmp_path):
    run = tmp_path / "r"
    run_experiment(parse_config(merge(SMALL, {"prune": {"rounds": 1}})), run, progress=False)
    out = analyze_run(run, n_probe=256)
    drawn = {name: (out / name).stat().st_mtime_ns for name in ALWAYS_DRAWN}
    assert analyze_run(run, n_probe=256) == out
    assert {name: (out / name).stat().st_mtime_ns for name in ALWAYS_DRAWN} == drawn
    assert np.isfinite(pd.read_parquet(out / "rounds.parquet")["ipr"]).all()
