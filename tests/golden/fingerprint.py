"""What a small sweep writes, reduced to digests: the guard that a refactor changes no number.

``python tests/golden/fingerprint.py OUT`` runs :data:`SWEEP` (NLGP and its clone, every built-in
rule, two seeds, weight snapshots) through the command line into ``OUT``, reports it, and prints
the JSON digest of every file a user keeps: run directory names (config digests), every checkpoint's
bytes, every table's values and every JSON file, less the fields that hold wall times or
provenance (they differ between any two runs). ``golden.json`` beside this file holds the digests
that main printed before the redesign, with the machine they were taken on; ``test_golden.py``
compares.

It talks to ticketscope only through its command line and the files on disk, so the same script
runs on old and new code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

if __package__ in (None, ""):  # run as a script: tests/ (where machine.py lives) is not on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import machine  # noqa: E402  (the fingerprint the digests are keyed on, shared with test_stream)

SWEEP = """\
name: golden
base:
  data: {name: nlgp, dim: 1, L: 10, n_train: 512, n_test: 128, xis: [1.0, 3.0], gain: 3.0}
  model: {hidden: [8]}
  train: {steps: 48, batch_size: 32, n_eval_train: 128, eval_every: 24, snapshots: 2}
  prune: {rounds: 2, fraction: 0.3, n_probe: 64}
grid:
  data.gaussian_clone: [false, true]
  prune.method: [imp, oneshot, random, cavity]
  seed: [0, 1]
"""

TIMING = {"train_time_s", "wall_s", "train_s", "analysis_s", "provenance", "hook_time_s"}
ADDED = {  # fields files gained after af92e81 (records, not results), left out so old and new compare
    "round.json": {"config_digest", "history.parquet"},  # integrity: the config digest, the history's checksum
    "analysis.json": {"tables", "checkpoints", "version"},  # the tables' checksums, what they measured, the version
    "claims.json": {"planned_a", "planned_b",  # the seeds each arm planned
                    # Holm-adjusted across every row, and the feedback-loop claims (issue 19) joined the rows
                    "p_adj", "p_equivalence_adj", "verdict", "seeds_needed",
                    # issue 27: claims as records with stable ids, five outcomes with margins, a registered family
                    "id", "role", "se", "p_equivalence", "outcome", "margin", "fragile", "why", "registered",
                    "registered_seeds",
                    # issue 28: a claim's second specification (the lags' round fixed effects)
                    "also_effect", "also_ci_lo", "also_ci_hi", "also_outcome"},
}
ADDED_COLUMNS = {  # table columns added after af92e81 (issue 19): new measures, left out so old and new compare
    "cavity_auc_magnitude", "cavity_auc_bins", "lagged_lead", "lagged_reverse", "lagged_pairs",
    # issues 28 and 29: signed kurtosis, the probe halves, the kind of field, excess cavity scores, the removed |w|,
    # the matched-pair AUC, and the lagged coefficients under two specifications
    "kappa3_pooled", "kappa3_null", "kappa3_excess", "ng_excess_a", "ng_excess_b", "balance", "balance_null",
    "cavity_excess_removed_mean", "cavity_excess_removed_minus_random", "removed_abs_w", "cavity_auc_matched",
    "cavity_auc_matched_se", *(f"lagged_{k}_{s}" for s in ("round", "unit") for k in ("lead", "reverse", "asymmetry")),
    "lagged_n_pairs", "lagged_n_dropped"}
NEW_CLAIMS = ("The lead", "The reverse", "The per-round cavity", "Cavity scores predict", "cavity-high",  # issue 19
              "On the Gaussian clone", "IMP's localization advantage", "IMP's rise of excess",  # issue 28: necessity
              "The data's localization advantage",  # issue 27: listed, as not testable, where a sweep has no gain axis
              "The weights IMP removes",  # issue 28: judged on the excess cavity score (a control with the IPR mechanism)
              "In the", "The asymmetry",  # issue 28: the matched-pair AUC by phase, the loop's asymmetry
              "The per-round excess",  # issue 28: the per-round cavity effect on the excess score
              "IMP's receptive fields end", "IMP finds more local receptive fields on elliptical",  # issue 29
              "IMP pushes the pre-activations'")
NEW_FILES = {"report/points.parquet",  # files added after af92e81: every planned point and what became of it
             "report/report.json"}  # issue 27: the report's seeds, machines, family and replicate
NEW_TABLES = {"lagged.parquet"}  # in every run's analysis: the lagged per-unit statistics (issue 19)


def _strip(obj: Any, extra: frozenset[str] = frozenset()) -> Any:
    """A JSON value without its timing and provenance fields and the ``extra`` ones (recursively)."""
    if isinstance(obj, dict):
        return {k: _strip(v, extra) for k, v in obj.items() if k not in TIMING and k not in extra}
    if isinstance(obj, list):
        return [_strip(v, extra) for v in obj]
    return obj


def _table(path: Path) -> str:
    df = pd.read_parquet(path)
    df = df[[c for c in df.columns if c not in TIMING and c not in ADDED_COLUMNS]]
    cells = pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()
    return hashlib.sha256(json.dumps(list(map(str, df.columns))).encode() + cells).hexdigest()


def digest_tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> digest of every result file under ``root`` (figures, locks and paths starting with
    one of ``skip`` left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(skip):
            continue
        if not p.is_file() or p.name.startswith(".") or p.suffix in (".png", ".html", ".md", ".lock") or rel in NEW_FILES \
                or p.name in NEW_TABLES:
            continue
        if p.suffix == ".parquet":
            out[rel] = _table(p)
        elif p.suffix == ".json":
            value = json.loads(p.read_text())
            if p.name == "claims.json":
                value = [row for row in value if not row["claim"].startswith(NEW_CLAIMS)]
            text = json.dumps(_strip(value, frozenset(ADDED.get(p.name, ()))), sort_keys=True)
            out[rel] = hashlib.sha256(text.encode()).hexdigest()
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run(out: Path, src: Path | None = None) -> dict[str, Any]:
    """Run the sweep and its report with the ticketscope under ``src`` (default: the installed one)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "golden.yaml").write_text(SWEEP)
    env = {**os.environ, "TICKETSCOPE_PLUGINS": ""}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cli = [sys.executable, "-m", "ticketscope.cli"]
    sweep_dir = out / "sweep"
    subprocess.run([*cli, "sweep", str(out / "golden.yaml"), "--out", str(sweep_dir), "--workers", "1",
                    "--threads", "1", "--quiet"], check=True, env=env, capture_output=True)
    subprocess.run([*cli, "report", str(sweep_dir)], check=True, env=env, capture_output=True)
    return {"machine": machine(), "files": digest_tree(sweep_dir)}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1])), indent=1, sort_keys=True))
