"""Ensembles stack only runs of one input shape: the key asks the data set (no built-in list)."""

from __future__ import annotations

import numpy as np

from conftest import TINY, merge
from ticketscope.config import parse_config
from ticketscope.data import signature
from ticketscope.engine import ensemble_key, plan_ensembles
from ticketscope.experiments.sweep import load_sweep, run_sweep


def _write(path, width: int, n: int = 300) -> str:
    rng = np.random.default_rng(width)
    np.savez(path, X=rng.standard_normal((n, width)).astype(np.float32), y=(np.arange(n) % 2).astype(np.int64))
    return str(path)


def test_a_sweep_over_tensors_files_of_two_widths_runs_every_point(tmp_path):
    paths = [_write(tmp_path / "narrow.npz", 12), _write(tmp_path / "wide.npz", 20)]
    base = merge(TINY, {"data": {"name": "tensors", "n_train": 200, "n_test": 40}, "prune": {"rounds": 1},
                        "train": {"steps": 20, "n_eval_train": 64}})
    cfgs = [parse_config(merge(base, {"data": {"path": p}})) for p in paths]
    assert [signature(c.data) for c in cfgs] == [((12,), 2), ((20,), 2)]
    assert ensemble_key(cfgs[0]) != ensemble_key(cfgs[1])
    assert sorted(map(sorted, plan_ensembles(cfgs))) == [[0], [1]]
    sweep = load_sweep({"name": "widths", "base": base, "grid": {"data.path": paths, "seed": [0, 1]}})
    summary = run_sweep(sweep, tmp_path / "sweep", workers=1, progress=False)
    assert list(summary["status"]) == ["ok"] * 4, summary["error"].tolist()
