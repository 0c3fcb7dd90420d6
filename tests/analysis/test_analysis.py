"""Run analysis: the stored tables agree with direct numpy/scipy recomputation from checkpoints."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from conftest import TINY, merge
from reference import per_round_tables
from ticketscope.analysis import analyze_run
from ticketscope.analysis import run as analysis_run
from ticketscope.config import parse_config
from ticketscope.data import make_dataset
from ticketscope.io import load_tensors
from ticketscope.metrics import lagged_coefficients
from ticketscope.runs import DamagedRun, RunDir, run_experiment
from ticketscope.seeding import derive_seed


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    cfg = parse_config(merge(TINY, {"model": {"hidden": [16, 8]}, "prune": {"rounds": 2}}))
    run = tmp_path_factory.mktemp("run") / "r"
    run_experiment(cfg, run, progress=False)
    return cfg, run, analyze_run(run, n_probe=512)


def test_tables_match_direct_recomputation(analyzed):
    cfg, run, out = analyzed
    units = pd.read_parquet(out / "units.parquet")
    rounds = pd.read_parquet(out / "rounds.parquet")
    assert sorted(rounds["round"]) == [0, 0, 1, 1, 2, 2]  # layers.0 and layers.1, three rounds
    X, y = make_dataset(cfg.data).test(512, seed=derive_seed(cfg.seed, "analysis-probe"))
    X, y = X.double().numpy(), y.numpy()
    final = load_tensors(RunDir(run).round_dir(2) / "final.safetensors")
    W = final["layers.0.weight"].double().numpy()
    h = X @ W.T  # bias excluded
    u = units[(units["round"] == 2) & (units["layer"] == "layers.0")].sort_values("unit")
    np.testing.assert_allclose(u["ipr"], (W**4).sum(1) / (W**2).sum(1) ** 2, rtol=1e-10)
    np.testing.assert_allclose(u["kappa"], stats.kurtosis(h, fisher=False), rtol=1e-8)
    np.testing.assert_allclose(u["kappa_class1"], stats.kurtosis(h[y == 1], fisher=False), rtol=1e-8)
    np.testing.assert_array_equal(u["in_degree"], (W != 0).sum(1))
    ng = [np.abs(stats.kurtosis(h[y == c], fisher=False) - 3) for c in (0, 1)]
    f = [np.mean(y == c) for c in (0, 1)]
    np.testing.assert_allclose(u["ng_pooled"], f[0] * ng[0] + f[1] * ng[1], rtol=1e-8)
    # second layer: inputs are the first layer's activations (relu of pre-activation plus bias)
    a1 = np.maximum(h + final["layers.0.bias"].double().numpy(), 0)
    W1 = final["layers.1.weight"].double().numpy()
    u1 = units[(units["round"] == 2) & (units["layer"] == "layers.1")].sort_values("unit")
    np.testing.assert_allclose(u1["kappa"], stats.kurtosis(a1 @ W1.T, fisher=False), rtol=1e-6)
    assert u1["localization"].isna().all() and u["localization"].notna().all()


def test_cavity_groups_follow_the_next_round(analyzed):
    _, run, out = analyzed
    rounds = pd.read_parquet(out / "rounds.parquet").set_index(["round", "layer"])
    m0 = load_tensors(RunDir(run).round_dir(0) / "masks.safetensors")["layers.0"]
    m1 = load_tensors(RunDir(run).round_dir(1) / "masks.safetensors")["layers.0"]
    assert rounds.loc[(0, "layers.0"), "cavity_removed_count"] == int((m0.bool() & ~m1.bool()).sum())
    assert rounds.loc[(0, "layers.0"), "cavity_kept_count"] == int(m1.sum())
    assert np.isnan(rounds.loc[(2, "layers.0"), "cavity_removed_count"])  # no next round


@pytest.mark.parametrize("update", [
    {"prune": {"layers": [1], "rounds": 1}},  # first layer never pruned: no RF figures, no crash
    {"data": {"L": 4, "dim": 1}, "model": {"hidden": [8]}, "prune": {"rounds": 3, "fraction": 0.7}},  # <= 1 input left
])
def test_analyze_survives_runs_without_measurable_receptive_fields(tmp_path, update):
    cfg = parse_config(merge(TINY, update))
    run_experiment(cfg, tmp_path / "r", progress=False)
    out = analyze_run(tmp_path / "r", n_probe=256)
    rounds = pd.read_parquet(out / "rounds.parquet")
    assert sorted(rounds["round"].unique()) == list(range(cfg.prune.rounds + 1))
    assert not (out / "rf_grid.png").exists()  # nothing to draw in either case


def test_cross_round_tables_are_their_functions_on_the_stored_units(analyzed):
    """lagged.parquet: one row per pruned layer, lead, reverse and asymmetry under both specifications of
    lagged_coefficients on the stored units.parquet (ng_excess with its probe halves, localization); the deeper layer
    has no localization, so every pair is dropped. The columns are CROSS_ROUND's, the report's joined names too."""
    from ticketscope.analysis import CROSS_ROUND, CROSS_ROUND_COLUMNS

    _, _, out = analyzed
    units = pd.read_parquet(out / "units.parquet")
    lagged = pd.read_parquet(out / "lagged.parquet")
    assert [m.name for m in CROSS_ROUND] == ["lagged"]
    assert lagged.columns.tolist() == ["layer", *CROSS_ROUND[0].columns]
    assert [f"lagged_{c}" for c in CROSS_ROUND[0].columns] == list(CROSS_ROUND_COLUMNS)
    assert lagged["layer"].tolist() == ["layers.0", "layers.1"]
    for row in lagged.itertuples(index=False):
        layer = units[units["layer"] == row.layer]
        for spec in ("round", "unit"):
            expected = lagged_coefficients(layer, ng="ng_excess", loc="localization", spec=spec,
                                           halves=("ng_excess_a", "ng_excess_b"))
            assert (row.n_pairs, row.n_dropped) == (expected.n_pairs, expected.n_dropped)
            np.testing.assert_array_equal([getattr(row, f"lead_{spec}"), getattr(row, f"reverse_{spec}"),
                                           getattr(row, f"asymmetry_{spec}")],
                                          [expected.lead, expected.reverse, expected.lead - expected.reverse])
    first, deeper = lagged.set_index("layer").loc["layers.0"], lagged.set_index("layer").loc["layers.1"]
    assert first["n_pairs"] + first["n_dropped"] == 16 and first["n_pairs"] >= 5  # 3 rounds: one pair a unit
    assert np.isfinite(first["lead_round"]) and np.isfinite(first["reverse_round"])
    assert np.isnan(first["lead_unit"])  # unit fixed effects need four pair-rounds for the jackknife; 3 rounds give 1
    assert (deeper["n_pairs"], deeper["n_dropped"]) == (0, 8) and np.isnan(deeper["lead_round"])


def test_an_older_analysis_version_is_recomputed_and_provenance_recorded(analyzed, caplog):
    import json


    from ticketscope.analysis import ANALYSIS_VERSION

    _, run, out = analyzed
    stamp = json.loads((out / "analysis.json").read_text())
    assert stamp["version"] == ANALYSIS_VERSION and stamp["input_shape"] == [8, 8]
    assert torch.__version__.startswith(stamp["provenance"]["torch"])  # "2.13.0" of "2.13.0+cpu"
    assert stamp["provenance"]["threads"] >= 1 and stamp["provenance"]["device"]
    before = (out / "units.parquet").stat().st_mtime_ns
    (out / "analysis.json").write_text(json.dumps({**stamp, "version": 1}))
    with caplog.at_level("WARNING"):
        analyze_run(run, n_probe=512, figures=False)
    assert "version 1" in caplog.text and (out / "units.parquet").stat().st_mtime_ns > before
    assert json.loads((out / "analysis.json").read_text())["version"] == ANALYSIS_VERSION


def _torus_spread(w: np.ndarray, L: int) -> float:
    """sigma of SCIENCE.md by brute force on an L x L torus: circular-mean centre per axis, explicit distances."""
    p = (w**2).reshape(L, L) / (w**2).sum()
    r = np.arange(L)
    centre = [np.angle((p.sum(1 - a) * np.exp(2j * np.pi * r / L)).sum()) * L / (2 * np.pi) % L for a in (0, 1)]
    d = [np.minimum(np.abs(r - c) % L, L - np.abs(r - c) % L) for c in centre]
    return float(np.sqrt((p * (d[0][:, None] ** 2 + d[1][None, :] ** 2)).sum()))


def test_stored_localization_ipr_null_and_cavity_scores_match_independent_recomputation(analyzed):
    """From the round-1 checkpoint, independently of the package's code paths:
    - localization = sigma(w) / mean of 8 shuffles: sigma by brute force, the shuffle mean by 3000 numpy
      permutations; the stored value's own 8-shuffle noise sets the tolerance (4.5 of its standard errors);
    - ipr_null: the mean IPR of Gaussian vectors with n non-zeros is exactly 3 / (n + 2); 32 draws, 4.5 se;
    - cavity_removed_mean: zero each weight the next round removes, recompute the unit's class-pooled
      |kappa - 3| with scipy on the analysis probe set (1e-8 relative)."""
    cfg, run, out = analyzed
    rng = np.random.default_rng(0)
    units = pd.read_parquet(out / "units.parquet")
    u = units[(units["round"] == 1) & (units["layer"] == "layers.0")].sort_values("unit")
    W = load_tensors(RunDir(run).round_dir(1) / "final.safetensors")["layers.0.weight"].double().numpy()
    for w, loc in zip(W, u["localization"]):
        null = np.array([_torus_spread(rng.permutation(w), 8) for _ in range(3000)])
        se = _torus_spread(w, 8) / null.mean() ** 2 * null.std() / np.sqrt(8)
        assert abs(loc - _torus_spread(w, 8) / null.mean()) < 4.5 * se + 1e-12
    n = (W != 0).sum(1)
    g = rng.standard_normal((20000, n.max()))
    for k, stored in zip(n, u["ipr_null"]):
        draws = (g[:, :k] ** 4).sum(1) / (g[:, :k] ** 2).sum(1) ** 2
        assert abs(stored - 3 / (k + 2)) < 4.5 * draws.std() / np.sqrt(32)
    X, y = make_dataset(cfg.data).test(512, seed=derive_seed(cfg.seed, "analysis-probe"))
    X, y = X.double().numpy(), y.numpy()
    m1 = load_tensors(RunDir(run).round_dir(1) / "masks.safetensors")["layers.0"].bool().numpy()
    m2 = load_tensors(RunDir(run).round_dir(2) / "masks.safetensors")["layers.0"].bool().numpy()

    def pooled(w):
        h = X @ w
        return sum(np.mean(y == c) * abs(stats.kurtosis(h[y == c], fisher=False) - 3) for c in (0, 1))

    scores = []
    for i, j in zip(*np.nonzero(m1 & ~m2)):
        v = W[i].copy()
        v[j] = 0.0
        scores.append(pooled(v) - pooled(W[i]))
    rounds = pd.read_parquet(out / "rounds.parquet").set_index(["round", "layer"])
    assert rounds.loc[(1, "layers.0"), "cavity_removed_mean"] == pytest.approx(np.mean(scores), rel=1e-8)


def assert_tables_equal(out, expected: dict[str, pd.DataFrame]) -> None:
    """Every column of every stored table equals the expected one: float columns to 1e-10 relative, with 1e-12
    absolute for values that are differences of O(1) kurtoses cancelling to ~0 (ng near 0, cavity scores)."""
    for table, frame in expected.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{table}.parquet"), frame, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("update", [
    {},  # the fixture's run: two hidden layers, both pruned (layers.1's inputs change with every round)
    {"model": {"batchnorm": True}, "prune": {"rounds": 2}},  # batch norm: even the first layer's inputs do
    {"data": {"xis": [1.0, 2.0, 4.0]}, "prune": {"rounds": 2, "layers": [1, 2]}},  # three classes; readout pruned
])
def test_batched_tables_equal_the_per_round_computation(analyzed, tmp_path, update, monkeypatch):
    """analyze_run measures each layer at all rounds at once; every column of its tables equals the per-round
    computation with the metric functions (tests/reference.py: the nulls' random placements and the cavity's
    random groups included), and does not depend on how many rounds share a batch."""
    if update:
        cfg = parse_config(merge(TINY, {"model": {"hidden": [16, 8]}, **update}))
        run = tmp_path / "r"
        run_experiment(cfg, run, progress=False)
        out = analyze_run(run, n_probe=512, figures=False)
    else:
        _, run, out = analyzed
    expected = per_round_tables(run, 512)
    assert_tables_equal(out, expected)
    monkeypatch.setattr(analysis_run, "BATCH_ELEMENTS", 1)  # one round a batch
    assert_tables_equal(analyze_run(run, n_probe=512, figures=False, force=True), expected)


def test_analysis_status_names_why_a_stored_analysis_is_stale(tmp_path):
    """None exactly when analyze_run would return the stored analysis without computing; else one reason."""
    import json
    import shutil

    from ticketscope.analysis import ANALYSIS_VERSION, analysis_status

    assert analysis_status(tmp_path) == "not a run directory (no config.yaml)"
    run = tmp_path / "r"
    run_experiment(parse_config(merge(TINY, {"prune": {"rounds": 1}})), run, progress=False)
    assert analysis_status(run) == "no analysis"
    out = analyze_run(run, n_probe=256, figures=False)
    assert analysis_status(run, n_probe=256) is None
    assert analysis_status(run) == "made with n_probe 256, not 4096"
    before = (out / "units.parquet").stat().st_mtime_ns
    assert analyze_run(run, n_probe=256) == out and (out / "units.parquet").stat().st_mtime_ns == before  # current
    stamp = json.loads((out / "analysis.json").read_text())
    (out / "analysis.json").write_text(json.dumps({**stamp, "rounds": 1}))
    assert analysis_status(run, n_probe=256) == "made for 1 rounds, the run has 2"
    (out / "analysis.json").write_text(json.dumps({k: v for k, v in stamp.items() if k != "version"}))
    assert analysis_status(run, n_probe=256) == f"analysis version 1, this code writes version {ANALYSIS_VERSION}"
    (out / "analysis.json").write_text(json.dumps(stamp))
    (out / "cavity.parquet").unlink()
    assert analysis_status(run, n_probe=256) == "cavity.parquet missing"
    analyze_run(run, n_probe=256, figures=False)
    assert analysis_status(run, n_probe=256) is None
    shutil.rmtree(run / "rounds" / "000")  # a finished run missing a round is damaged, never "fewer rounds"
    with pytest.raises(DamagedRun, match="rounds/000/round.json is missing"):
        analysis_status(run, n_probe=256)
    (run / "run.json").unlink()
    shutil.rmtree(run / "rounds")
    assert analysis_status(run, n_probe=256) == "no completed round"
