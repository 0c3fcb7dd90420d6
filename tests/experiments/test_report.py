"""Sweep report: joined table, claims judged by paired t + Holm on every context, HTML rendering."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import SRC, TINY, merge
from ticketscope.experiments import report
from ticketscope import plots
from ticketscope.errors import TicketscopeError
from ticketscope.experiments.report import (CLAIMS, FIRST, GAIN, SEED, SPECS, build_report, claims, collect, field_path,
                                          per_seed)
from ticketscope.experiments.sweep import load_sweep, run_sweep


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    sweep = load_sweep({"name": "t", "description": "Chosen *for* a\n test.", "base": merge(TINY, {"prune": {"rounds": 2}}),
                        "grid": {"data.gaussian_clone": [False, True], "prune.method": ["imp", "oneshot"], "seed": [0, 1]}})
    summary = run_sweep(sweep, root, workers=2, progress=False)
    assert (summary["status"] == "ok").all()
    return root


def test_sweep_workers_analyze_their_runs_and_keep_the_description(sweep_dir):
    assert len(list(sweep_dir.glob("runs/*/analysis/rounds.parquet"))) == 8
    assert load_sweep(sweep_dir / "sweep.yaml").description == "Chosen *for* a test."


def _holm(p):
    """Holm by hand, independent of stats.holm: step-down on the sorted p values."""
    order = np.argsort(p)
    adj = np.empty(len(p))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def test_report_builds_with_a_row_per_claim(sweep_dir):
    html = build_report(sweep_dir, notes="Chosen *for* a test.")
    out = html.parent
    table = pd.read_parquet(out / "table.parquet")
    assert table["run"].nunique() == 8 and set(table["prune.method"]) == {"imp", "oneshot"}
    rows = json.loads((out / "claims.json").read_text())
    assert len(rows) == len(CLAIMS) == 15
    # no random, cavity, cavity-high or cavity-low runs in this sweep: exactly the claims that need them are not tested
    untested = [i for i, c in enumerate(rows) if c["verdict"] == "not tested"]
    assert untested == [2, 3, 6, 13, 14]
    # independent recomputation of the tested rows from the checkpoints' table: scipy paired t + Holm by hand
    first = table[(table["layer"] == "layers.0") & (table["round"] == 2)]

    def arm(method, clone, col):
        df = first[(first["prune.method"] == method) & (first["data.gaussian_clone"] == clone)]
        return df.set_index("seed")[col].sort_index()

    pairs = {0: (arm("imp", True, "localization"), arm("imp", False, "localization")),
             1: (arm("oneshot", False, "localization"), arm("imp", False, "localization")),
             4: (arm("imp", False, "ng_excess"), arm("oneshot", False, "ng_excess"))}
    lagged = {(m, c): pd.Series({s: pd.read_parquet(sweep_dir / "runs" / run / "analysis" / "lagged.parquet")
                                 .set_index("layer").loc["layers.0", "lead"]
                                 for s, run in arm(m, c, "run").items()}) for m, c in (("imp", False), ("oneshot", False))}
    pairs[7] = lagged["oneshot", False], lagged["imp", False]  # the lead, read from each run's lagged table
    p = {i: stats.ttest_rel(a, b).pvalue for i, (a, b) in pairs.items()}
    # the per-round cavity effect's growth: per seed the fitted slope over the rounds of data minus clone
    rounds = table[table["layer"] == "layers.0"]
    cav = {c: rounds[(rounds["prune.method"] == "imp") & (rounds["data.gaussian_clone"] == c)]
           .pivot(index="round", columns="seed", values="cavity_removed_minus_random").dropna() for c in (False, True)}
    diff = cav[False] - cav[True]
    slopes = [np.polyfit(diff.index.to_numpy(float), diff[s].to_numpy(), 1)[0] for s in (0, 1)]
    assert rows[11]["effect"] == pytest.approx(np.mean(slopes), rel=1e-9)
    assert rows[11]["p"] == pytest.approx(stats.ttest_1samp(slopes, 0).pvalue, rel=1e-9)
    tested = [i for i, c in enumerate(rows) if c["verdict"] != "not tested"]
    assert tested == [0, 1, 4, 5, 7, 8, 9, 10, 11, 12]
    for i, (a, b) in pairs.items():
        assert rows[i]["effect"] == pytest.approx((a - b).mean(), rel=1e-9)
        assert rows[i]["p"] == pytest.approx(p[i], rel=1e-9) and rows[i]["seeds"] == [0, 1]
    adj = _holm(np.array([rows[i]["p"] for i in tested]))
    np.testing.assert_allclose([rows[i]["p_adj"] for i in tested], adj, rtol=1e-12)
    text = html.read_text()
    assert text.count("<tr>") == 16 and text.count("data:image/png;base64,") >= 5
    assert "Chosen <em>for</em> a test." in text and "*" not in re.sub(r"<[^>]+>|data:[^\"]+", "", text)
    md = (out / "report.md").read_text()
    assert md.count("\n| ") == 16  # header and 15 claims


def _synthetic_table(rng, effects, seeds=range(8), context_values=(None, 2.0)):
    """First-layer sparsest-round rows: per seed a shared seed effect plus each arm's offset and noise."""
    rows = []
    for ctx in context_values:
        for s in seeds:
            base = rng.normal(0.6, 0.1)  # a seed effect both arms share: pairing removes it
            for method in ("imp", "oneshot", "random", "cavity"):
                for clone in (False, True):
                    loc = base + effects.get((method, clone), 0.0) + rng.normal(0, 0.01)
                    rows.append({"layer": "layers.0", "round": 1, "seed": s, "prune.method": method,
                                 "data.gaussian_clone": clone, "train.epochs": ctx, "localization": loc,
                                 "ng_excess": 0.0 + rng.normal(0, 0.2), "cavity_removed_minus_random": np.nan})
    return pd.DataFrame(rows)


def test_claims_keep_every_context_including_none_and_reach_each_verdict():
    rng = np.random.default_rng(0)
    effects = {("imp", True): 0.2, ("oneshot", False): -0.2, ("random", False): 0.001, ("cavity", False): 0.001}
    table = _synthetic_table(rng, effects)
    rows = claims(table, ["seed", "prune.method", "data.gaussian_clone", "train.epochs"])
    assert len(rows) == 2 * len(CLAIMS)  # a None context is a context, not dropped
    assert {r.context for r in rows} == {"epochs=None", "epochs=2.0"}
    by = {(r.context, r.claim): r for r in rows}
    for ctx in ("epochs=None", "epochs=2.0"):
        v = [by[(ctx, c.claim)].verdict for c in CLAIMS]
        assert v[0] == "supported"  # clone 0.2 less local than data, pairing removes the 0.1 seed spread
        assert v[1] == "contradicted"  # one-shot more local than IMP
        assert v[2] == "contradicted"  # random within 0.001 of IMP: inside +-0.05
        assert v[3] == "inconclusive" and by[(ctx, CLAIMS[3].claim)].seeds_needed > 8  # pure noise, sd 0.2
        assert v[5] == "not tested"  # no cavity values
    r = by[("epochs=None", CLAIMS[0].claim)]
    sub = table[table["train.epochs"].isna()]
    a = sub[(sub["prune.method"] == "imp") & sub["data.gaussian_clone"]].set_index("seed")["localization"]
    b = sub[(sub["prune.method"] == "imp") & ~sub["data.gaussian_clone"]].set_index("seed")["localization"]
    assert r.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


def test_per_seed_reductions():
    table = pd.DataFrame({"layer": "layers.0", "seed": [0, 0, 0, 1, 1, 1], "round": [0, 1, 2, 0, 1, 2],
                          "v": [1.0, 2.0, 4.0, 0.0, np.nan, 3.0], "prune.method": "imp"})
    where = {"prune.method": "imp"}
    assert per_seed(table, "v", where, "last").to_dict() == {0: 4.0, 1: 3.0}
    assert per_seed(table, "v", where, "change").to_dict() == {0: 3.0, 1: 3.0}
    assert per_seed(table, "v", where, "mean").to_dict() == {0: 7 / 3, 1: 1.5}  # NaN rounds left out
    assert per_seed(table, "v", {"prune.method": "random"}, "last").empty
    with pytest.raises(ValueError):
        per_seed(table, "v", where, "first")


def test_figures_share_one_visual_code(tmp_path, monkeypatch):
    """Colour by method, dashed clone: the curves of a condition carry its style, the legend sits below the axes."""
    rng = np.random.default_rng(1)
    table = _synthetic_table(rng, {}, seeds=range(3), context_values=(None,)).assign(density=0.5)
    table = pd.concat([table, table.assign(round=0, density=1.0)])
    captured = {}
    real_save = plots.save

    def capture(fig, path):
        captured["fig"] = fig
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save", capture)
    report.condition_curves(table, ["seed", "prune.method", "data.gaussian_clone"],
                            [("localization", "loc", 1.0)], tmp_path / "c.png", "t")
    fig = captured["fig"]
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}
    assert lines["imp, data"].get_color() == lines["imp, clone"].get_color() != lines["random, data"].get_color()
    assert lines["imp, data"].get_linestyle() == "-" and lines["imp, clone"].get_linestyle() == "--"
    legend_box = fig.legends[0].get_window_extent()
    assert legend_box.y1 <= fig.axes[0].get_window_extent().y0  # below the panel, never on the data


def test_gain_trend_is_a_t_test_on_per_seed_slopes(tmp_path):
    """d_s(g) = loc(clone) - loc(data) = 0.05 ln g + seed noise: the per-seed slopes (numpy polyfit) are
    tested against 0 by scipy's one-sample t; the row joins the Holm family and the figure is drawn."""
    rng = np.random.default_rng(2)
    gains, rows = [0.3, 1.0, 3.0, 10.0], []
    for s in range(8):
        base = rng.normal(0.5, 0.1)
        for g in gains:
            for clone in (False, True):
                loc = base + (0.05 * np.log(g) if clone else 0.0) + rng.normal(0, 0.02)
                for method in ("imp", "random"):
                    rows.append({"layer": "layers.0", "round": 3, "seed": s, "prune.method": method, "density": 0.3,
                                 "data.gaussian_clone": clone, "data.gain": g, "localization": loc,
                                 "ng_excess": rng.normal(0.1, 0.05), "cavity_removed_minus_random": np.nan})
    table = pd.DataFrame(rows)
    out = claims(table, ["seed", "prune.method", "data.gaussian_clone", "data.gain"])
    trend = [r for r in out if r.claim == report.TREND.claim]
    assert len(out) == 4 * len(CLAIMS) + 1 and len(trend) == 1
    imp = table[table["prune.method"] == "imp"]
    piv = imp.pivot_table(index=["seed", "data.gain"], columns="data.gaussian_clone", values="localization")
    d = (piv[True] - piv[False]).unstack()
    slopes = [np.polyfit(np.log(gains), d.loc[s, gains].to_numpy(), 1)[0] for s in range(8)]
    ref = stats.ttest_1samp(slopes, 0)
    assert trend[0].effect == pytest.approx(np.mean(slopes), rel=1e-9)
    assert trend[0].p == pytest.approx(ref.pvalue, rel=1e-9) and trend[0].verdict == "supported"
    assert report.gain_figure(table, tmp_path / "gain.png").stat().st_size > 10_000


def _cavity_rounds(rng, growth, shared, seeds=range(8), rounds=range(1, 9)):
    """IMP's per-step cavity effect on the data and its clone: a trend both arms share (``shared`` per round,
    what sparsity does to the scores), the data's own growth, a seed effect and noise."""
    rows = []
    for s in seeds:
        base = rng.normal(0.01, 0.005)
        for r in rounds:
            for clone in (False, True):
                v = base + shared * r + (0.0 if clone else growth * r) + rng.normal(0, 0.001)
                rows.append({"layer": "layers.0", "round": r, "seed": s, "prune.method": "imp",
                             "data.gaussian_clone": clone, "localization": 0.5, "ng_excess": 0.1,
                             "cavity_removed_minus_random": v})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("growth, verdict", [(0.004, "supported"), (0.0, "contradicted")])
def test_the_per_round_cavity_growth_is_the_data_minus_clone_slope(growth, verdict):
    """Slope per seed of [data - clone] against the round (numpy polyfit), one-sample t (scipy): a planted
    growth is found at its size; a trend both arms share (0.003 per round) cancels and is not credited."""
    spec = next(c for c in CLAIMS if c.at == "slope")
    table = _cavity_rounds(np.random.default_rng(7), growth, shared=0.003)
    table.loc[(table["seed"] == 0) & (table["round"] == 4) & table["data.gaussian_clone"],
              "cavity_removed_minus_random"] = np.nan  # an undefined step drops that round of that seed only
    row = next(r for r in claims(table, ["seed", "prune.method", "data.gaussian_clone"]) if r.claim == spec.claim)
    piv = table.pivot_table(index=["seed", "round"], columns="data.gaussian_clone",
                            values="cavity_removed_minus_random")
    d = (piv[False] - piv[True]).dropna()
    slopes = [np.polyfit(g.index.get_level_values("round"), g.to_numpy(), 1)[0] for _, g in d.groupby(level="seed")]
    assert row.effect == pytest.approx(np.mean(slopes), rel=1e-9)
    assert row.p == pytest.approx(stats.ttest_1samp(slopes, 0).pvalue, rel=1e-9)
    assert row.effect == pytest.approx(growth, abs=3e-4)  # noise 0.001 per step: slope se 0.0002 per seed, 0.0001 over 8 seeds
    assert row.verdict == verdict and row.n_a == 8


def test_a_dense_sweep_is_judged_on_the_emergence_claim_only():
    """Round 0 only (no pruning): the pruning claims would read a dense network as 'IMP at its sparsest';
    the one claim is Ingrosso-Goldt's, paired by seed like the others (checked against scipy)."""
    rng = np.random.default_rng(3)
    rows = [{"layer": "layers.0", "round": 0, "seed": s, "prune.method": "imp", "data.gaussian_clone": clone,
             "ipr_max": (0.06 if not clone else 0.008) + rng.normal(0, 0.005)} for s in range(3) for clone in (False, True)]
    table = pd.DataFrame(rows)
    (row,) = claims(table, ["seed", "data.gaussian_clone"])
    assert row.claim == report.EMERGENCE.claim and row.verdict == "supported"
    a = table[~table["data.gaussian_clone"]].set_index("seed")["ipr_max"]
    b = table[table["data.gaussian_clone"]].set_index("seed")["ipr_max"]
    assert row.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


def test_report_on_a_sweep_that_varies_the_input_shape(tmp_path):
    """Regression: every condition used to be reshaped with the first run's input shape (and a clone was
    refitted to read it); now each run's own shape comes from its analysis stamp."""
    sweep = load_sweep({"name": "shapes", "base": merge(TINY, {"prune": {"rounds": 1}, "train": {"steps": 20}}),
                        "grid": {"data.L": [6, 8], "data.dim": [1, 2]}})
    assert (run_sweep(sweep, tmp_path, workers=1, progress=False)["status"] == "ok").all()
    html = build_report(tmp_path)
    table = pd.read_parquet(html.parent / "table.parquet")
    assert sorted(table.groupby(["data.L", "data.dim"]).size().index.tolist()) == [(6, 1), (6, 2), (8, 1), (8, 2)]
    assert (html.parent / "rf_grid.png").stat().st_size > 10_000


@pytest.mark.parametrize("seeds, text", [([8, 0, 1, 2, 5, 7], "0-2, 5, 7-8"), ([], "none"), ([3], "3"),
                                         (list(range(64)), "0-63"), ([1, 3], "1, 3")])
def test_seed_ranges_name_every_seed_once(seeds, text):
    assert report.seed_ranges(seeds) == text


def test_every_claim_names_columns_the_joined_table_has(sweep_dir):
    """A renamed config field or measure would otherwise turn a claim silently into "not tested"."""
    table, _ = collect(sweep_dir)
    for spec in SPECS:
        missing = {spec.value, *spec.arm_a, *spec.arm_b} - set(table.columns)
        assert not missing, f"claim {spec.claim!r} names columns the table lacks: {missing}"
    assert {GAIN, SEED, FIRST} <= set(table.columns) | set(table["layer"])
    with pytest.raises(TypeError, match="no field prune.methd"):
        field_path("prune", "methd")


def test_a_run_without_a_current_analysis_is_named_not_computed(sweep_dir, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("report"))
    runs = sorted(p for p in (copy / "runs").iterdir() if p.is_dir())
    shutil.rmtree(runs[1] / "analysis")
    with pytest.raises(TicketscopeError) as e:
        build_report(copy)
    text = str(e.value)
    assert text.startswith("1 of 8 runs lack a current analysis") and f"{runs[1]} (no analysis)" in text
    command = f"ticketscope analyze {copy / 'runs'}/* --n-probe 4096"
    assert f"`{command}`" in text
    assert not (runs[1] / "analysis").exists() and not (copy / "report").exists()  # nothing was computed
    stamp = json.loads((runs[2] / "analysis" / "analysis.json").read_text())
    (runs[2] / "analysis" / "analysis.json").write_text(json.dumps({**stamp, "version": -1}))
    with pytest.raises(TicketscopeError, match=r"^2 of 8 runs"):
        collect(copy)
    with pytest.raises(TicketscopeError, match=r"^8 of 8 runs .*made with n_probe 4096, not 100.*; and 5 more\. "
                                               r".*--n-probe 100`"):
        collect(sweep_dir, n_probe=100)
    shutil.rmtree(runs[2] / "analysis")  # the command the error names fills in exactly the missing analyses
    before = (runs[0] / "analysis" / "rounds.parquet").stat().st_mtime_ns
    subprocess.run([sys.executable, "-m", "ticketscope.cli", "analyze", *map(str, runs), "--n-probe", "4096"],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert (runs[0] / "analysis" / "rounds.parquet").stat().st_mtime_ns == before
    assert len(collect(copy)[0]) == len(collect(sweep_dir)[0])
