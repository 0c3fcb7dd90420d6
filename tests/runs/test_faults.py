"""Fault injection: every file a run directory holds, deleted and corrupted in turn, against every command.

Each command must either refuse in one line (a non-zero exit with one ``TicketscopeError`` line) or
succeed with exactly the numbers of the untouched sweep: ``show`` the same rounds, ``analyze`` the
same tables, ``report`` the same claims and table, ``run`` and ``sweep`` (the repair commands)
the same files, bit for bit (this machine, this thread count). Never exit 0 with fewer rounds or
other numbers. The default suite injects one fault of each kind of file; ``-m slow`` every file.

Files are compared with the golden guard's digests (:func:`golden.fingerprint.digest_tree`: bytes of
checkpoints, cells of tables, JSON less timing and provenance).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import TINY, merge
from golden.fingerprint import digest_tree
from ticketscope.cli import app
from ticketscope.errors import TicketscopeError
from ticketscope.experiments import sweep as sweep_mod
from ticketscope.experiments.executors import Executor, Options

runner = CliRunner()
SWEEP = {"name": "faults", "base": merge(TINY, {"prune": {"rounds": 2}, "train": {"snapshots": 2}}),
         "grid": {"seed": [0, 1]}}
N_PROBE = "512"


def _inline(tasks, options, worker):
    """An executor that runs every task in this process (the sweep's logic without spawning workers)."""
    for task in tasks:
        yield from worker(task, 1)


@pytest.fixture(autouse=True)
def inline_executor(monkeypatch):
    monkeypatch.setitem(sweep_mod.EXECUTORS, "inline", Executor("inline", Options, _inline))


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=True)


def _sweep(sweep_dir: Path):
    return _invoke("sweep", str(sweep_dir / "sweep.yaml"), "--out", str(sweep_dir), "--executor", "inline", "--quiet")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A finished, analyzed and reported two-point sweep."""
    root = tmp_path_factory.mktemp("faults")
    (root / "spec.yaml").write_text(yaml.safe_dump(SWEEP))
    sweep_dir = root / "sweep"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sweep_mod.EXECUTORS, "inline", Executor("inline", Options, _inline))
        res = _invoke("sweep", str(root / "spec.yaml"), "--out", str(sweep_dir), "--executor", "inline", "--quiet")
    assert res.exit_code == 0, res.output
    assert _invoke("report", str(sweep_dir)).exit_code == 0
    return sweep_dir


def _run_dir(sweep_dir: Path) -> Path:
    return sorted((sweep_dir / "runs").iterdir())[0]


def _digests(path: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return digest_tree(path, skip)


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    """A valid config of another run copied in (another seed)."""
    path.write_text(path.read_text().replace("seed: 0", "seed: 7"))


FAULTS: dict[str, Callable[[Path], None]] = {"deleted": _delete, "truncated": _truncate, "flipped": _flip}
RUN_FILES = ["config.yaml", "run.json", "metrics.parquet"]
ROUND_FILES = ["round.json", "start.safetensors", "final.safetensors", "masks.safetensors", "history.parquet",
               "snapshots.safetensors"]
ANALYSIS_FILES = ["analysis/analysis.json", "analysis/units.parquet", "analysis/rounds.parquet",
                  "analysis/cavity.parquet", "analysis/snapshots.parquet", "analysis/lagged.parquet"]
EVERY_FILE = [*RUN_FILES, *(f"rounds/{r:03d}/{f}" for r in range(3) for f in ROUND_FILES),
              "rounds/000/rewind.safetensors", *ANALYSIS_FILES]
ONE_OF_EACH = [("config.yaml", "truncated"), ("run.json", "deleted"), ("metrics.parquet", "flipped"),
               ("rounds/001/round.json", "deleted"), ("rounds/001/final.safetensors", "flipped"),
               ("rounds/001/masks.safetensors", "truncated"), ("rounds/002/history.parquet", "deleted"),
               ("analysis/units.parquet", "flipped"), ("analysis/analysis.json", "truncated")]
"""The default suite's cases: one fault of each kind of file (``-m slow``: every file, every fault)."""


def _refused(res) -> bool:
    """A non-zero exit with one clear line (what ``ticketscope.cli.main`` prints for a TicketscopeError)."""
    if res.exit_code == 0:
        return False
    e = res.exception
    if isinstance(e, SystemExit):  # the sweep: its failed points, one line each
        return all(line.startswith(("  failed", "2 points", "worker time")) or not line
                   for line in res.output.splitlines())
    return isinstance(e, TicketscopeError) and "\n" not in str(e)


def _check_commands(pristine: Path, sweep_dir: Path) -> dict[str, str]:
    """Run show, analyze, report, then the repair (run or sweep) on the damaged copy; return each outcome."""
    run = _run_dir(sweep_dir)
    rel = run.relative_to(sweep_dir)
    outcome = {}

    res = _invoke("show", str(run), "--json")
    if _refused(res):
        outcome["show"] = "refused"
    else:
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["rounds"] == json.loads(_invoke("show", str(pristine / rel), "--json").output)["rounds"]
        outcome["show"] = "exact"

    res = _invoke("analyze", str(run), "--n-probe", "4096")
    if _refused(res):
        outcome["analyze"] = "refused"
    else:
        assert res.exit_code == 0, res.output
        assert _digests(run / "analysis") == _digests(pristine / rel / "analysis"), "analyze changed numbers"
        outcome["analyze"] = "exact"

    res = _invoke("report", str(sweep_dir))
    if _refused(res):
        outcome["report"] = "refused"
    else:
        assert res.exit_code == 0, res.output
        if _digests(sweep_dir / "report") == _digests(pristine / "report"):
            outcome["report"] = "exact"
        else:  # only a run that looks unfinished may be left out, and then the report must say so
            points = pd.read_parquet(sweep_dir / "report" / "points.parquet").set_index("run")
            md = (sweep_dir / "report" / "report.md").read_text()
            assert points.loc[run.name, "status"] == "failed" and "unfinished" in points.loc[run.name, "reason"]
            assert "1 failed" in md and "Points not in this report (1)" in md and run.name in md
            outcome["report"] = "accounted"
    return outcome


def _check_repair(pristine: Path, sweep_dir: Path, how: str) -> str:
    run = _run_dir(sweep_dir)
    rel = run.relative_to(sweep_dir)
    if how == "run":
        res = _invoke("run", str(pristine / rel / "config.yaml"), "--out", str(run), "--quiet")
        skip: tuple[str, ...] = ("analysis",)  # run trains; it never touches the analysis
    else:
        res = _sweep(sweep_dir)
        skip = ()
    if _refused(res):
        return "refused"
    assert res.exit_code == 0, res.output
    assert _digests(run, skip) == _digests(pristine / rel, skip), f"{how} exited 0 with other files"
    return "repaired exactly"


def _inject(pristine: Path, tmp_path: Path, file: str, fault: Callable[[Path], None]) -> Path:
    copy = tmp_path / "sweep"
    shutil.copytree(pristine, copy, ignore=shutil.ignore_patterns("report"))
    fault(_run_dir(copy) / file)
    return copy


def _case(pristine: Path, tmp_path: Path, file: str, fault: str) -> dict[str, str]:
    faults = {**FAULTS, "foreign": _foreign}
    outcome = _check_commands(pristine, _inject(pristine, tmp_path / "a", file, faults[fault]))
    outcome["run"] = _check_repair(pristine, _inject(pristine, tmp_path / "b", file, faults[fault]), "run")
    outcome["sweep"] = _check_repair(pristine, _inject(pristine, tmp_path / "c", file, faults[fault]), "sweep")
    return outcome


def _judge(pristine: Path, tmp_path: Path, file: str, fault: str) -> None:
    outcome = _case(pristine, tmp_path, file, fault)
    assert outcome["sweep"] == "repaired exactly", outcome  # the sweep knows the config: it always repairs
    assert outcome["run"] in ("repaired exactly", "refused"), outcome
    if file.startswith("analysis"):  # analyze (run before report on the same copy) recomputes it exactly
        assert outcome["analyze"] == outcome["show"] == "exact" and outcome["report"] in ("refused", "exact"), outcome
    elif file == "run.json" and fault == "deleted":  # indistinguishable from a run killed before its end
        assert outcome["report"] == "accounted" and outcome["show"] == "exact", outcome
    elif file.startswith("rounds/") or file in ("config.yaml", "run.json"):  # the run's own records: no reader may use it
        assert outcome["show"] == outcome["analyze"] == outcome["report"] == "refused", outcome
    else:  # metrics.parquet, derived from the rounds: refused, or its numbers read back unchanged
        assert {outcome["show"], outcome["analyze"], outcome["report"]} <= {"refused", "exact"}, outcome


@pytest.mark.parametrize("file, fault", ONE_OF_EACH)
def test_every_command_repairs_exactly_or_refuses(pristine, tmp_path, file, fault):
    _judge(pristine, tmp_path, file, fault)


EVERY_CASE = [(f, fault) for f in EVERY_FILE for fault in FAULTS if (f, fault) not in ONE_OF_EACH
              and (fault != "flipped" or f.endswith((".safetensors", ".parquet")))]  # text files: truncated instead


@pytest.mark.slow
@pytest.mark.parametrize("file, fault", EVERY_CASE)
def test_every_file_of_the_run_directory(pristine, tmp_path, file, fault):
    _judge(pristine, tmp_path, file, fault)


def test_a_foreign_config_is_refused_by_readers_and_repaired_from_the_records(pristine, tmp_path):
    """A valid config.yaml of another run copied in: no reader relabels the run; the repair commands, given
    the config the run's records (run.json, round.json) name, put it back; given the foreign one, refuse."""
    outcome = _case(pristine, tmp_path, "config.yaml", "foreign")
    assert outcome == {"show": "refused", "analyze": "refused", "report": "refused", "run": "repaired exactly",
                       "sweep": "repaired exactly"}, outcome
    run = _run_dir(_inject(pristine, tmp_path / "d", "config.yaml", _foreign))
    res = _invoke("run", str(run / "config.yaml"), "--out", str(run), "--quiet")
    assert _refused(res) and "foreign config.yaml" in str(res.exception), res.output
