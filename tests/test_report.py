"""Sweep report: joined table, claims table with a row per claim, verdict rule, HTML + Markdown."""

import json

import pandas as pd
import pytest
from scipy import stats

from conftest import TINY, merge
from ticketscope.experiments.report import _compare, build_report
from ticketscope.experiments.sweep import load_sweep, run_sweep


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    sweep = load_sweep({"name": "t", "description": "Chosen  for a\n test.", "base": merge(TINY, {"prune": {"rounds": 2}}),
                        "grid": {"data.gaussian_clone": [False, True], "prune.method": ["imp", "oneshot"], "seed": [0, 1]}})
    summary = run_sweep(sweep, root, workers=2, progress=False)
    assert (summary["status"] == "ok").all()
    return root


def test_sweep_workers_analyze_their_runs_and_keep_the_description(sweep_dir):
    assert len(list(sweep_dir.glob("runs/*/analysis/rounds.parquet"))) == 8
    assert load_sweep(sweep_dir / "sweep.yaml").description == "Chosen for a test."


def test_report_builds_with_a_row_per_claim(sweep_dir):
    html = build_report(sweep_dir, notes="Chosen for a test.")
    out = html.parent
    table = pd.read_parquet(out / "table.parquet")
    assert table["run"].nunique() == 8 and set(table["prune.method"]) == {"imp", "oneshot"}
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) == 8
    # no random or cavity runs in this sweep: exactly the claims that need them are not tested
    untested = [c["claim"] for c in claims if c["verdict"] == "not tested"]
    assert untested == [claims[2]["claim"], claims[7]["claim"]] and "random pruning" in untested[0]
    assert all(c["seeds"].startswith("[0, 1]") for c in claims if c["verdict"] != "not tested")
    table = table[(table["layer"] == "layers.0") & (table["round"] == 2)]
    imp = table[(table["prune.method"] == "imp") & ~table["data.gaussian_clone"]].sort_values("seed")
    one = table[(table["prune.method"] == "oneshot") & ~table["data.gaussian_clone"]].sort_values("seed")
    a, b = one["localization"].to_numpy(), imp["localization"].to_numpy()
    welch = stats.ttest_ind(a, b, equal_var=False)  # independent reference for the verdict rule
    expected = "held" if (a.mean() > b.mean() and welch.pvalue < 0.05) else "did not hold"
    assert claims[1]["verdict"] == expected and f"{a.mean():.3g}" in claims[1]["measured"]
    text = html.read_text()
    assert text.count("<tr>") == 9 and text.count("data:image/png;base64,") >= 4
    assert "Chosen for a test." in text
    md = (out / "report.md").read_text()
    assert md.count("\n| ") == 9  # header + 8 claims
    for fig in ("accuracy", "localization", "kurtosis", "rf_grid", "cavity"):
        assert (out / f"{fig}.png").stat().st_size > 5000


@pytest.mark.parametrize("a,b", [([1.0, 1.1, 0.9], [0.5, 0.6, 0.4]), ([0.0, 2.0, -1.0], [0.5, 0.6, 0.4]),
                                 ([1.0, 1.2], [0.9, 0.95]), ([3.0, 3.1, 2.9, 3.05], [2.0, 2.2, 2.1, 2.05])])
def test_verdict_rule_is_a_two_sided_welch_test(a, b):
    """Held iff the difference is in the predicted direction and Welch's test rejects at 5%."""
    sa, sb = pd.Series(a), pd.Series(b)
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert _compare(sa, sb, greater=True)[2] == ("held" if sa.mean() > sb.mean() and p < 0.05 else "did not hold")
    assert _compare(sb, sa, greater=True)[2] == "did not hold"  # wrong direction never holds


def test_one_sample_rule_and_too_few_seeds():
    a = pd.Series([0.6, 0.7, 0.65, 0.62])
    p = stats.ttest_1samp(a, 0.5).pvalue
    assert _compare(a, 0.5, greater=True)[2] == ("held" if p < 0.05 else "did not hold") == "held"
    assert _compare(pd.Series([0.52, 0.49, 0.55]), 0.5, greater=True)[2] == "did not hold"
    assert _compare(pd.Series([1.0]), pd.Series([0.5, 0.6]), greater=True)[2] == "not tested"  # one seed: no spread
