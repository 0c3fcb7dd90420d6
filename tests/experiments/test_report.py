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
import yaml
from scipy import stats

from conftest import SRC, TINY, merge
from ticketscope.experiments import report
from ticketscope import plots
from ticketscope.errors import TicketscopeError
from ticketscope.experiments.report import (BY_ID, FIRST, GAIN, REGISTRY, REPORT_COLUMNS, SEED, Claim, Paired, arm,
                                          build_report, check_columns, collect, family, field_path, judge, per_seed)
from ticketscope.experiments.spec import RegisteredClaim

PRUNING = [c for c in REGISTRY if not c.kind.dense]  # the claims a pruning sweep is judged on
from ticketscope.experiments.sweep import load_sweep, run_sweep


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    sweep = load_sweep({"name": "t", "description": "Chosen *for* a\n test.", "base": merge(TINY, {"prune": {"rounds": 5}}),
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
    assert [r["id"] for r in rows] == [c.id for c in PRUNING]  # every pruning claim once (no context axis)
    by = {r["id"]: r for r in rows}
    # no random, cavity, cavity-high or cavity-low runs, and no gain axis: exactly those claims are not testable
    untestable = {r["id"]: r["why"] for r in rows if r["role"] == "not testable"}
    lacking = {"loc-imp-vs-random", "ng-imp-vs-random", "loc-cavity-vs-random", "loc-cavity-high-vs-low",
               "ng-cavity-high-vs-low", "loc-gain-trend", "loc-clone-imp-vs-random", "loc-path-cavity-high-vs-low",
               "loc-kurtosis-trend", "loc-advantage-kurtosis-trend", "loc-elliptical-data-vs-clone"}
    assert {i for i, why in untestable.items() if why.startswith("the sweep")} == lacking
    # tiny runs (probe halves of 128 items) leave the noise-corrected lag with fewer than two seeds in some arms
    assert all(i in lacking or (i.split("-")[0] in ("lead", "reverse", "asymmetry") and
                                (why == "fewer than two seeds with both arms" or "has a defined value on only" in why))
               for i, why in untestable.items())
    assert "the sweep has no runs of the arm method=random, gaussian_clone=False" in by["loc-imp-vs-random"]["why"]
    assert by["loc-gain-trend"]["why"] == "the sweep does not vary data.gain"
    # independent recomputation of the tested rows from the checkpoints' table: scipy paired t + Holm by hand
    first = table[(table["layer"] == "layers.0") & (table["round"] == 5)]

    def arm_(method, clone, col):
        df = first[(first["prune.method"] == method) & (first["data.gaussian_clone"] == clone)]
        return df.set_index("seed")[col].sort_index()

    dd = {c: (arm_("oneshot", c, "localization") - arm_("imp", c, "localization")) for c in (False, True)}
    pairs = {"loc-data-vs-clone": (arm_("imp", True, "localization"), arm_("imp", False, "localization")),
             "loc-clone-imp-vs-oneshot": (arm_("oneshot", True, "localization"), arm_("imp", True, "localization")),
             "loc-advantage-data-vs-clone": (dd[False], dd[True]),  # the difference of differences, paired by seed
             "loc-imp-vs-oneshot": (arm_("oneshot", False, "localization"), arm_("imp", False, "localization")),
             "ng-imp-vs-oneshot": (arm_("imp", False, "ng_excess"), arm_("oneshot", False, "ng_excess"))}
    lagged = {(m, c): pd.Series({s: pd.read_parquet(sweep_dir / "runs" / run / "analysis" / "lagged.parquet")
                                 .set_index("layer").loc["layers.0", "lead_unit"]
                                 for s, run in arm_(m, c, "run").items()}) for m, c in (("imp", False), ("oneshot", False))}
    pairs["lead-imp-vs-oneshot"] = lagged["oneshot", False], lagged["imp", False]  # read from each run's lagged table
    p = {i: stats.ttest_rel(a, b).pvalue for i, (a, b) in pairs.items()}
    # the per-round cavity effect's growth: per seed the fitted slope over the rounds of data minus clone
    rounds = table[table["layer"] == "layers.0"]
    cav = {c: rounds[(rounds["prune.method"] == "imp") & (rounds["data.gaussian_clone"] == c)]
           .pivot(index="round", columns="seed", values="cavity_excess_removed_minus_random").dropna() for c in (False, True)}
    diff = cav[False] - cav[True]
    slopes = [np.polyfit(diff.index.to_numpy(float), diff[s].to_numpy(), 1)[0] for s in (0, 1)]
    growth = by["cavity-growth-data-vs-clone"]
    assert growth["effect"] == pytest.approx(np.mean(slopes), rel=1e-9)
    assert growth["p"] == pytest.approx(stats.ttest_1samp(slopes, 0).pvalue, rel=1e-9)
    tested = [r for r in rows if r["role"] != "not testable"]
    assert all(r["role"] == "confirmatory" for r in tested)  # no registered family: every testable claim
    for i, (a, b) in pairs.items():
        assert by[i]["effect"] == pytest.approx((a - b).mean(), rel=1e-9)
        assert by[i]["p"] == pytest.approx(p[i], rel=1e-9) and by[i]["seeds"] == [0, 1]
    adj = _holm(np.array([r["p"] for r in tested]))
    np.testing.assert_allclose([r["p_adj"] for r in tested], adj, rtol=1e-12)
    assert all(r["outcome"] in ("supported", "supported-negligible", "absent", "opposite", "inconclusive")
               for r in tested)
    text = html.read_text()
    assert text.count("data:image/png;base64,") >= 7  # the claims and field-kind figures among them
    # the lag rows keep an outcome only where both specifications agree, else they say which way each points
    for r in (r for r in rows if r["id"].split("-")[0] in ("lead", "reverse", "asymmetry") and r["role"] != "not testable"):
        assert (r["outcome"] == r["also_outcome"] and r["outcome"] is not None) or \
            (r["outcome"] is None and r["why"].startswith("the specifications disagree"))
    assert "Chosen <em>for</em> a test." in text and "*" not in re.sub(r"<[^>]+>|data:[^\"]+", "", text)
    md = (out / "report.md").read_text()
    assert f"## Confirmatory claims ({len(tested)} rows; the sweep registers no family, so every testable claim is " \
           "confirmatory; Holm over these rows only)" in md
    assert md.count("\n| ") == len(tested) + 1  # header and one line per confirmatory row; no exploratory table
    assert "## Not testable on this sweep" in md and "`loc-imp-vs-random`" in md
    record = json.loads((out / "report.json").read_text())
    assert record["seeds"] == [0, 1] and record["machines"] and record["family"] is None and len(record["design"]) == 12


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
                                 "ng_excess": 0.0 + rng.normal(0, 0.2), "cavity_excess_removed_minus_random": np.nan})
    return pd.DataFrame(rows)


def test_claims_keep_every_context_including_none_and_reach_each_outcome():
    rng = np.random.default_rng(0)
    effects = {("imp", True): 0.2, ("oneshot", False): -0.2, ("random", False): 0.001, ("cavity", False): -0.019}
    table = _synthetic_table(rng, effects)
    rows = judge(table, ["seed", "prune.method", "data.gaussian_clone", "train.epochs"])
    assert len(rows) == 2 * len(PRUNING)  # a None context is a context, not dropped
    assert {r.context for r in rows} == {"epochs=None", "epochs=2.0"}
    by = {(r.context, r.id): r for r in rows}
    for ctx in ("epochs=None", "epochs=2.0"):
        out = {c.id: by[(ctx, c.id)].outcome for c in PRUNING}
        assert out["loc-data-vs-clone"] == "supported"  # clone 0.2 less local than data, pairing removes the seed spread
        assert out["loc-imp-vs-oneshot"] == "opposite"  # one-shot more local than IMP
        assert out["loc-imp-vs-random"] == "absent"  # random within 0.001 of IMP: shown inside +-0.05
        assert out["loc-cavity-vs-random"] == "supported-negligible"  # +0.02 (se 0.005) yet inside +-0.05
        assert out["ng-imp-vs-oneshot"] == "inconclusive" and by[(ctx, "ng-imp-vs-oneshot")].seeds_needed > 8  # sd 0.2
        assert by[(ctx, "cavity-removed-data-vs-clone")].role == "not testable"  # no cavity values
        assert by[(ctx, "cavity-removed-data-vs-clone")].why == "no run has a value of cavity_excess_removed_minus_random"
    r = by[("epochs=None", "loc-data-vs-clone")]
    sub = table[table["train.epochs"].isna()]
    a = sub[(sub["prune.method"] == "imp") & sub["data.gaussian_clone"]].set_index("seed")["localization"]
    b = sub[(sub["prune.method"] == "imp") & ~sub["data.gaussian_clone"]].set_index("seed")["localization"]
    assert r.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


AXES = ["seed", "prune.method", "data.gaussian_clone", "train.epochs"]


def test_a_registered_family_is_unchanged_when_a_claim_joins_the_code():
    """Holm runs over the registered rows only: a new claim in the registry changes none of their numbers
    (without a registration the same new claim does move them, so the test can fail)."""
    rng = np.random.default_rng(4)
    table = _synthetic_table(rng, {("imp", True): 0.03, ("oneshot", False): -0.2})
    registered = family([RegisteredClaim("loc-data-vs-clone", 0.02, 8), RegisteredClaim("loc-imp-vs-oneshot")])
    extra = Claim("extra", "a claim a later version adds", "localization",
                  Paired("localization", arm("random"), arm("cavity")), +1, 0.05, "none")
    before, after = (judge(table, AXES, registered=registered, registry=reg) for reg in (REGISTRY, (*REGISTRY, extra)))
    keep = lambda rows: [(r.id, r.context, r.effect, r.p_adj, r.p_equivalence_adj, r.outcome, r.margin)  # noqa: E731
                         for r in rows if r.role == "confirmatory"]
    assert keep(before) == keep(after) and len(keep(before)) == 4  # two claims in two contexts
    assert {r.delta for r in before if r.id == "loc-data-vs-clone"} == {0.02}  # the registered delta rules
    assert {r.role for r in after if r.id == "extra"} == {"exploratory"}
    assert all(r.outcome is None for r in after if r.role == "exploratory")
    loose_before, loose_after = (judge(table, AXES, registry=reg) for reg in (REGISTRY, (*REGISTRY, extra)))
    assert keep(loose_before) != keep(loose_after)  # an unregistered family is whatever the code holds


def test_an_unknown_registered_claim_is_refused_with_the_known_ids():
    with pytest.raises(TicketscopeError, match="registers claim 'loc-data-vs-clon'.*known claims: loc-data-vs-clone"):
        family([RegisteredClaim("loc-data-vs-clon")])
    assert family([]) is None and family(None) is None


def test_arms_identical_by_design_and_missing_arms_are_not_testable(tmp_path):
    """With one pruning round IMP and one-shot prune the same weights: their rows say so instead of printing
    0 [0, 0] as an outcome; a sweep whose arms answer no claim says it in one line."""
    rng = np.random.default_rng(5)
    table = _synthetic_table(rng, {})
    imp = table[(table["prune.method"] == "imp")]
    table.loc[table["prune.method"] == "oneshot", ["localization", "ng_excess"]] = imp[["localization", "ng_excess"]].to_numpy()
    by = {(r.context, r.id): r for r in judge(table, AXES)}
    for cid in ("loc-imp-vs-oneshot", "ng-imp-vs-oneshot"):
        assert by[("epochs=2.0", cid)].role == "not testable" and "identical by design" in by[("epochs=2.0", cid)].why
    lone = table[(table["prune.method"] == "imp") & ~table["data.gaussian_clone"]]
    rows = judge(lone, ["seed", "train.epochs"])
    assert all(r.role == "not testable" for r in rows)
    md = report.to_markdown(rows, {}, "h", "")
    assert f"This sweep's arms answer none of the {len(PRUNING)} claims" in md
    assert md.count("\n- ") == len({r.why for r in rows})  # one line per reason, not a row per claim


def test_every_claim_reads_columns_the_report_table_can_have():
    check_columns(REGISTRY, REPORT_COLUMNS)
    renamed = Claim("renamed", "t", "m", Paired("localisation", arm("imp"), arm("random")), +1, 0.05, "c")
    with pytest.raises(TypeError, match="claim 'renamed' reads columns .*'localisation'"):
        check_columns([renamed], REPORT_COLUMNS)
    with pytest.raises(TypeError, match="two claims have the id 'renamed'"):
        check_columns([renamed, renamed], REPORT_COLUMNS | {"localisation"})


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
                                 "ng_excess": rng.normal(0.1, 0.05), "cavity_excess_removed_minus_random": np.nan})
    table = pd.DataFrame(rows)
    out = judge(table, ["seed", "prune.method", "data.gaussian_clone", "data.gain"])
    trend = [r for r in out if r.id == "loc-gain-trend"]
    assert len(out) == 4 * (len(PRUNING) - 1) + 1 and len(trend) == 1
    imp = table[table["prune.method"] == "imp"]
    piv = imp.pivot_table(index=["seed", "data.gain"], columns="data.gaussian_clone", values="localization")
    d = (piv[True] - piv[False]).unstack()
    slopes = [np.polyfit(np.log(gains), d.loc[s, gains].to_numpy(), 1)[0] for s in range(8)]
    ref = stats.ttest_1samp(slopes, 0)
    assert trend[0].effect == pytest.approx(np.mean(slopes), rel=1e-9)
    assert trend[0].p == pytest.approx(ref.pvalue, rel=1e-9) and trend[0].outcome == "supported"
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
                             "cavity_excess_removed_minus_random": v})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("growth, outcome", [(0.004, "supported"), (0.0, "absent")])
def test_the_per_round_cavity_growth_is_the_data_minus_clone_slope(growth, outcome):
    """Slope per seed of [data - clone] against the round (numpy polyfit), one-sample t (scipy): a planted
    growth is found at its size; a trend both arms share (0.003 per round) cancels and is not credited."""
    spec = BY_ID["cavity-growth-data-vs-clone"]
    table = _cavity_rounds(np.random.default_rng(7), growth, shared=0.003)
    table.loc[(table["seed"] == 0) & (table["round"] == 4) & table["data.gaussian_clone"],
              "cavity_excess_removed_minus_random"] = np.nan  # an undefined step drops that round of that seed only
    row = next(r for r in judge(table, ["seed", "prune.method", "data.gaussian_clone"]) if r.id == spec.id)
    piv = table.pivot_table(index=["seed", "round"], columns="data.gaussian_clone",
                            values="cavity_excess_removed_minus_random")
    d = (piv[False] - piv[True]).dropna()
    slopes = [np.polyfit(g.index.get_level_values("round"), g.to_numpy(), 1)[0] for _, g in d.groupby(level="seed")]
    assert row.effect == pytest.approx(np.mean(slopes), rel=1e-9)
    assert row.p == pytest.approx(stats.ttest_1samp(slopes, 0).pvalue, rel=1e-9)
    assert row.effect == pytest.approx(growth, abs=3e-4)  # noise 0.001 per step: slope se 0.0002 per seed, 0.0001 over 8 seeds
    assert row.outcome == outcome and row.n_a == 8


def test_a_dense_sweep_is_judged_on_the_emergence_claim_only():
    """Round 0 only (no pruning): the pruning claims would read a dense network as 'IMP at its sparsest';
    the one claim is Ingrosso-Goldt's, paired by seed like the others (checked against scipy)."""
    rng = np.random.default_rng(3)
    rows = [{"layer": "layers.0", "round": 0, "seed": s, "prune.method": "imp", "data.gaussian_clone": clone,
             "ipr_max": (0.06 if not clone else 0.008) + rng.normal(0, 0.005)} for s in range(3) for clone in (False, True)]
    table = pd.DataFrame(rows)
    trend, row = judge(table, ["seed", "data.gaussian_clone"])
    assert row.id == "emergence-ipr" and row.outcome == "supported"
    assert trend.id == "ipr-kurtosis-trend-dense" and trend.role == "not testable"  # no kurtosis axis here
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


def test_report_draws_one_rf_grid_per_data_family(tmp_path):
    """A sweep across data families gets one RF grid per family (a single grid of every condition grew to
    15,000 pixels on the kurtosis-sign preset); each grid's conditions are labelled without the family."""
    sweep = load_sweep({"name": "families", "base": merge(TINY, {"prune": {"rounds": 1}, "train": {"steps": 20}}),
                        "zip": [{"data.name": ["nlgp", "elliptical"],
                                 "data.params": [{}, {"excess_kurtosis": 1.0}]}]})
    assert (run_sweep(sweep, tmp_path, workers=1, progress=False)["status"] == "ok").all()
    html = build_report(tmp_path)
    grids = sorted(p.name for p in html.parent.glob("rf_grid*.png"))
    assert grids == ["rf_grid_elliptical.png", "rf_grid_nlgp.png"]
    text = html.read_text()
    assert "Receptive fields: elliptical" in text and "Receptive fields: nlgp" in text


@pytest.mark.parametrize("seeds, text", [([8, 0, 1, 2, 5, 7], "0-2, 5, 7-8"), ([], "none"), ([3], "3"),
                                         (list(range(64)), "0-63"), ([1, 3], "1, 3")])
def test_seed_ranges_name_every_seed_once(seeds, text):
    assert report.seed_ranges(seeds) == text


def test_every_claim_names_columns_the_joined_table_has(sweep_dir):
    """A renamed config field or measure would otherwise turn a claim silently into "not testable"."""
    table, _ = collect(sweep_dir)
    for claim in REGISTRY:
        missing = claim.kind.columns() - set(table.columns) - {GAIN, "data.params.excess_kurtosis"}  # axes this sweep lacks
        assert not missing, f"claim {claim.id!r} names columns the table lacks: {missing}"
    per_class = {c for c in table.columns if re.search(r"_class\d+$", c)}  # as many as the data set has classes
    assert set(table.columns) - per_class <= REPORT_COLUMNS  # the import-time check knows every other column
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


def test_a_replicate_on_disjoint_seeds_is_compared_outcome_by_outcome(sweep_dir, tmp_path):
    """The same sweep on seeds 2-3, reported, then beside seeds 0-1: every confirmatory row of both blocks in
    one table with where they differ; a block that shares a seed is refused as a replicate."""
    registered = {"claims": [{"id": "loc-data-vs-clone", "delta": 0.05, "seeds": 2}, {"id": "ng-imp-vs-oneshot"}]}
    base = load_sweep({**load_sweep(sweep_dir / "sweep.yaml").to_dict(), **registered})
    rep = tmp_path / "rep"
    assert (run_sweep(base.replicate(1), rep, workers=2, progress=False)["status"] == "ok").all()
    build_report(rep)
    rows = json.loads((rep / "report" / "claims.json").read_text())
    assert sorted(r["seeds"] for r in rows if r["role"] == "confirmatory")[0] == [2, 3]
    assert {r["id"] for r in rows if r["role"] == "confirmatory"} == {"loc-data-vs-clone", "ng-imp-vs-oneshot"}
    copy = tmp_path / "first"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("report"))
    (copy / "sweep.yaml").write_text(yaml.safe_dump(base.to_dict()))
    md = (build_report(copy, replicate=rep).parent / "report.md").read_text()
    record = json.loads((copy / "report" / "report.json").read_text())
    pairs = record["replicate_rows"]
    assert [r["id"] for r in pairs] == ["loc-data-vs-clone", "ng-imp-vs-oneshot"]
    assert all(r["outcome"] and r["replicate_outcome"] and r["agree"] == (r["outcome"] == r["replicate_outcome"])
               for r in pairs)
    differ = [r for r in pairs if not r["agree"]]
    assert (f"they differ on `{differ[0]['id']}`" if differ else "All 2 confirmatory outcomes agree.") in md
    assert "## Replicate on disjoint seeds" in md and "This block: seeds 0-1" in md and "Replicate: seeds 2-3" in md
    assert md.count("| `loc-data-vs-clone` |") == 1
    with pytest.raises(TicketscopeError, match="not a replicate of this sweep: both use seeds 0-1"):
        build_report(copy, replicate=copy)
    with pytest.raises(TicketscopeError, match="registers another claim family"):
        build_report(sweep_dir, replicate=rep)  # the same points, judged without the registered family


@pytest.mark.parametrize("name", __import__("ticketscope.experiments.presets", fromlist=["x"]).preset_names())
def test_every_preset_registers_claims_its_arms_can_test(name):
    """Each preset names the claims it was built to test, and each of them reads arms the preset runs."""
    from ticketscope.experiments.presets import preset_path

    sweep = load_sweep(preset_path(name))
    registered = family(sweep.claims)
    assert registered, f"preset {name} registers no claims"
    configs = [p.config for p in sweep.points()]
    runs = {(c.prune.method, c.data.gaussian_clone) for c in configs}
    for r in registered:
        for where in r.claim.kind.arms():
            method, clone = where.get("prune.method"), where.get("data.gaussian_clone")
            assert any((method is None or m == method) and (clone is None or c == clone) for m, c in runs), \
                f"{name}: {r.claim.id} needs the arm {where}"
        assert r.seeds == len({c.seed for c in configs})


def test_a_sweep_registering_an_unknown_claim_is_refused_before_training(tmp_path):
    sweep = load_sweep({"name": "u", "base": TINY, "grid": {"seed": [0, 1]}, "claims": [{"id": "no-such-claim"}]})
    with pytest.raises(TicketscopeError, match="registers claim 'no-such-claim'"):
        run_sweep(sweep, tmp_path, workers=1, progress=False)
    assert not (tmp_path / "runs").exists()


def test_rows_that_cannot_be_judged_say_why_instead_of_an_outcome():
    """Review findings: a difference of differences whose clone pair shares no seed is not a plain difference; an
    infinite per-seed value is not an interval; a slope over the rounds needs two of them."""
    rng = np.random.default_rng(6)
    table = _synthetic_table(rng, {("imp", True): 0.1}, context_values=(None,))
    clone = table["data.gaussian_clone"] & (table["prune.method"] == "oneshot")
    disjoint = table[~clone | (table["seed"] >= 4)].copy()
    disjoint = disjoint[~(disjoint["data.gaussian_clone"] & (disjoint["prune.method"] == "imp") & (disjoint["seed"] >= 4))]
    by = {r.id: r for r in judge(disjoint, AXES[:3])}
    assert by["loc-advantage-data-vs-clone"].role == "not testable"  # clone pair: one-shot on 4-7, IMP on 0-3
    assert by["loc-advantage-data-vs-clone"].why == "fewer than two seeds with both arms"
    table.loc[(table["prune.method"] == "random") & (table["seed"] == 3), "localization"] = np.inf
    by = {r.id: r for r in judge(table, AXES[:3])}
    assert by["loc-imp-vs-random"].role == "not testable" and "infinite" in by["loc-imp-vs-random"].why
    one_round = _cavity_rounds(rng, 0.0, 0.0, rounds=[1])
    by = {r.id: r for r in judge(one_round, AXES[:3])}
    assert "two or more rounds" in by["cavity-growth-data-vs-clone"].why


@pytest.mark.parametrize("round_spec, agree", [(0.2, True), (-0.2, False)])
def test_a_lag_row_has_an_outcome_only_where_both_specifications_agree(round_spec, agree):
    """Unit fixed effects say IMP's lead is 0.2 more negative than one-shot's; with round effects only it is 0.2
    more negative (agree: supported) or 0.2 less negative (disagree: no outcome, the row says which way each points)."""
    rng = np.random.default_rng(8)
    rows = []
    for s_ in range(12):
        for method, unit, rnd in (("imp", -0.3, -0.3 if round_spec > 0 else 0.1), ("oneshot", -0.1, -0.1)):
            rows.append({"layer": "layers.0", "round": 3, "seed": s_, "prune.method": method, "data.gaussian_clone": False,
                         "lagged_lead_unit": unit + rng.normal(0, 0.01), "lagged_lead_round": rnd + rng.normal(0, 0.01)})
    row = next(r for r in judge(pd.DataFrame(rows), ["seed", "prune.method"]) if r.id == "lead-imp-vs-oneshot")
    assert row.role == "confirmatory" and row.effect == pytest.approx(0.2, abs=0.01)
    assert row.also_effect == pytest.approx(round_spec, abs=0.01)
    if agree:
        assert row.outcome == row.also_outcome == "supported"
    else:
        assert row.outcome is None and row.also_outcome == "opposite"
        assert row.why.startswith("the specifications disagree: supported with unit fixed effects (0.1")
        assert "opposite with round fixed effects only (-0.2" in row.why  # the estimates as printed, 3 digits
        assert "no outcome: the specifications disagree" in report.to_markdown([row], {}, "h", "")


def test_the_kurtosis_sign_claims_are_slopes_over_the_family_axis():
    """IMP's localization planted to rise 0.03 per unit of the copula marginals' excess kurtosis (data only): the
    trend claim is the mean of the per-seed polyfit slopes of IMP's own localization (no arm B), its advantage over
    one-shot falls by as much, and the elliptical rows are judged only in the elliptical contexts."""
    rng = np.random.default_rng(9)
    ks, rows = [-1.5, -1.0, 0.0, 1.0, 2.0], []
    for s_ in range(6):
        for fam, values in (("copula", ks), ("elliptical", [1.0, 3.0])):
            for k in values:
                for m in ("imp", "oneshot"):
                    for c in (False, True):
                        loc = 0.4 + 0.03 * k * (m == "imp" and not c) + 0.2 * (m == "oneshot") + rng.normal(0, 0.01)
                        rows.append({"layer": "layers.0", "round": 12, "seed": s_, "prune.method": m,
                                     "data.gaussian_clone": c, "data.name": fam, "data.params.excess_kurtosis": k,
                                     "localization": loc, "kappa3_excess": -0.2 * (m == "imp") + rng.normal(0, 0.02)})
    table = pd.DataFrame(rows)
    by = {(r.id, r.context): r for r in judge(table, ["seed", "prune.method", "data.gaussian_clone", "data.name",
                                                       "data.params.excess_kurtosis"])}
    cop = table[(table["data.name"] == "copula") & (table["prune.method"] == "imp") & ~table["data.gaussian_clone"]]
    slopes = [np.polyfit(g["data.params.excess_kurtosis"], g["localization"], 1)[0] for _, g in cop.groupby("seed")]
    trend = by[("loc-kurtosis-trend", "name=copula")]
    assert trend.effect == pytest.approx(np.mean(slopes), rel=1e-9) and trend.outcome == "supported"
    assert trend.p == pytest.approx(stats.ttest_1samp(slopes, 0).pvalue, rel=1e-9)
    assert by[("loc-advantage-kurtosis-trend", "name=copula")].effect == pytest.approx(-0.03, abs=0.005)
    assert by[("loc-kurtosis-trend", "name=elliptical")].role == "not testable"
    # planted: IMP on the elliptical data 0.09 less local than on its clone at k = 3, against the stated sign
    assert by[("loc-elliptical-data-vs-clone", "name=elliptical, excess_kurtosis=3.0")].outcome == "opposite"
    assert by[("loc-elliptical-data-vs-clone", "name=copula, excess_kurtosis=1.0")].role == "not testable"
    assert all(r.outcome == "supported" for (i, _), r in by.items() if i == "kappa3-imp-vs-oneshot")  # -0.2: IMP pushes down
    md = report.to_markdown(list(by.values()), {}, "h", "")  # a slope without arm B names its one arm
    assert "`loc-kurtosis-trend` **IMP's receptive fields" in md and "A = method=imp, gaussian_clone=False, name=copula. " in md


def test_the_causal_tests_magnitude_match_is_measured_not_promised():
    """removed_abs_w per step: cavity-high over cavity-low and over IMP, seed means, as the report states them."""
    from ticketscope.experiments.report.render import match_table
    from ticketscope.experiments.report.table import magnitude_match

    rows = [{"layer": "layers.0", "round": r, "seed": s_, "prune.method": m, "removed_abs_w": w * (1 + 0.1 * s_)}
            for s_ in range(3) for r in range(2) for m, w in (("cavity-high", 0.2 + r), ("cavity-low", 0.1 + r),
                                                              ("imp", 0.05))]
    match = magnitude_match(pd.DataFrame(rows))
    assert match.loc[0, "cavity-high"] == pytest.approx(0.2 * 1.1) and match.loc[1, "imp"] == pytest.approx(0.05 * 1.1)
    md = "\n".join(match_table(match))
    assert "cavity-high / cavity-low from 1.091 to 2.000 over the steps" in md  # 1.2/1.1 and 0.2/0.1
    assert "| 0 | 0.22 | 0.11 | 2.000 | 0.055 | 4.000 |" in md
    assert match_table(match.drop(columns="cavity-low")) == []  # without both rules, no such section


def test_the_dense_axis_figure_names_no_pruning_method_and_shows_every_seed(tmp_path, monkeypatch):
    """The dense anchor's figure: a line per arm labelled 'dense, data' / 'dense, clone' (it used to say 'imp'
    of a sweep that prunes nothing) and one point per seed, so a mean carried by a few localizing seeds shows."""
    from ticketscope.experiments.report.figures import axis_figure
    rng = np.random.default_rng(5)
    ks = [-1.5, 0.0, 2.0]
    table = pd.DataFrame([{"layer": FIRST, "round": 0, SEED: s, "prune.method": "imp", "data.gaussian_clone": c,
                           "data.name": "copula", "data.params.excess_kurtosis": k, "ipr_max": rng.uniform(0.007, 0.02)}
                          for s in range(4) for c in (False, True) for k in ks])
    figs = []
    monkeypatch.setattr(plots, "save", lambda fig, path, **kw: figs.append(fig) or path)
    axis_figure(table, "data.params.excess_kurtosis", tmp_path / "k.png", "t")
    (fig,) = figs
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["dense, data, copula", "dense, clone, copula"]
    points = np.concatenate([c.get_offsets()[:, 1] for c in fig.axes[0].collections if hasattr(c, "get_offsets")
                             and len(c.get_offsets()) == len(ks) * 4])
    assert np.sort(points).tolist() == pytest.approx(np.sort(table["ipr_max"].to_numpy()).tolist())
