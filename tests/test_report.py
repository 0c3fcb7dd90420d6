"""Sweep report: joined table, claims table with a row per claim, verdict rule, HTML + Markdown."""

import json

import pandas as pd
import pytest

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
    assert len(claims) == 6
    verdicts = {c["claim"].split(" (")[0]: c["verdict"] for c in claims}
    assert all(v in ("held", "did not hold", "not tested") for v in verdicts.values())
    # no random or cavity runs in this sweep: those claims cannot have been tested
    assert [c["verdict"] for c in claims if "random" in c["claim"] or "Cavity pruning" in c["claim"]] == ["not tested"] * 2
    text = html.read_text()
    assert text.count("<tr>") == 7 and text.count("data:image/png;base64,") >= 4
    assert "Chosen for a test." in text
    md = (out / "report.md").read_text()
    assert md.count("\n| ") == 7  # header + 6 claims
    for fig in ("accuracy", "localization", "kurtosis", "rf_grid", "cavity"):
        assert (out / f"{fig}.png").stat().st_size > 5000


def test_verdict_rule_needs_the_difference_to_exceed_the_seed_spread():
    a, b = pd.Series([1.0, 1.1, 0.9]), pd.Series([0.5, 0.6, 0.4])
    assert _compare(a, b, greater=True)[2] == "held"
    assert _compare(b, a, greater=True)[2] == "did not hold"  # wrong direction
    noisy = pd.Series([0.0, 2.0, -1.0])  # mean 0.33, sd 1.5: overlaps with b
    assert _compare(noisy, b, greater=False)[2] == "did not hold"
    assert _compare(pd.Series([1.0]), b, greater=True)[2] == "not tested"  # one seed is no spread
