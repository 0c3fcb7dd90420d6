"""Sweeps are validated whole when they load, before anything trains: every point's config, duplicate
axis values, empty files and duplicate YAML keys; errors name the file, the axis and the value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SRC, TINY, merge
from ticketscope.errors import TicketscopeError
from ticketscope.experiments.presets import preset_names, preset_path
from ticketscope.experiments.spec import Sweep, load_sweep

BASE = merge(TINY, {"data": {"L": 6, "n_train": 256, "n_test": 128}, "model": {"hidden": [8]},
                    "train": {"steps": 30, "batch_size": 32, "n_eval_train": 128}, "prune": {"rounds": 1}})


def cli_sweep(tmp_path: Path, text: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """`ticketscope sweep FILE --out DIR` on a sweep file holding ``text``, in a real subprocess."""
    spec, out = tmp_path / "bad-sweep.yaml", tmp_path / "out"
    spec.write_text(text)
    cmd = [sys.executable, "-m", "ticketscope.cli", "sweep", str(spec), "--out", str(out), "--workers", "1", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(SRC)})
    return res, spec, out


def assert_refused(res: subprocess.CompletedProcess, out: Path, *needles: str, lines: int = 1) -> str:
    """Exit status 2 (a user error), ``lines`` lines on stderr holding every needle, nothing written."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == lines, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists(), "the sweep directory was created"
    return err


def sweep_text(grid: dict, base: dict = BASE, **extra) -> str:
    return json.dumps({"base": base, "grid": grid, **extra})  # JSON is YAML


# --- every point's config, checked before anything trains ---


def test_a_bad_axis_value_is_refused_before_any_point_trains(tmp_path):
    res, spec, out = cli_sweep(tmp_path, sweep_text({"train.lr": [0.05, -1]}))
    assert_refused(res, out, str(spec), "1 of 2 points is invalid", "train.lr=-1",
                   "train.lr: Input should be greater than 0 (got -1)")


def test_several_bad_values_are_listed_in_one_error(tmp_path):
    res, spec, out = cli_sweep(tmp_path, sweep_text({"train.lr": [0.05, -1, "fast"], "seed": [0, 1]}))
    err = assert_refused(res, out, str(spec), "4 of 6 points are invalid", lines=3)
    assert err.splitlines()[1:] == [
        "  train.lr=-1 (2 points): train.lr: Input should be greater than 0 (got -1)",
        ("  train.lr='fast' (2 points): train.lr: Input should be a valid number, unable to parse string as a "
         "number (got 'fast')")]


def test_an_invalid_base_is_named_as_the_base(tmp_path):
    res, spec, out = cli_sweep(tmp_path, sweep_text({"seed": [0, 1]}, base=merge(BASE, {"train": {"lr": -1}})))
    assert_refused(res, out, str(spec), "2 of 2 points are invalid", "base (2 points): train.lr: Input should be "
                   "greater than 0")


def test_a_cross_field_error_names_the_axis_value_behind_it():
    with pytest.raises(TicketscopeError, match=r"1 of 2 points is invalid.*: prune\.layers=\[5\]: prune\.layers "
                                               r"\[5\] out of range: the model has layers 0\.\.1$"):
        load_sweep({"base": BASE, "grid": {"prune.layers": [[0], [5]]}})


def test_many_invalid_points_are_cut_short():
    with pytest.raises(TicketscopeError) as info:
        load_sweep({"base": BASE, "grid": {"train.lr": [-1, -2, -3, -4, -5, -6, -7, 0.1]}})
    lines = str(info.value).splitlines()
    assert lines[0].endswith("7 of 8 points are invalid, so none was run:")
    assert lines[1:6] == [f"  train.lr=-{i}: train.lr: Input should be greater than 0 (got -{i})" for i in range(1, 6)]
    assert lines[6:] == ["  and 2 more"]


def test_a_sweep_built_in_python_is_validated_too():
    with pytest.raises(TicketscopeError, match=r"^1 of 1 points is invalid, so none was run: train\.steps=0: "):
        Sweep("direct", BASE, {"train.steps": [0]})


def test_a_zip_group_value_is_named():
    with pytest.raises(TicketscopeError, match=r"train\.lr=-0\.1: train\.lr: Input should be greater than 0"):
        load_sweep({"base": BASE, "zip": [{"train.lr": [0.1, -0.1], "train.steps": [10, 20]}]})


# --- duplicate axis values ---


def test_a_repeated_axis_value_is_refused(tmp_path):
    res, spec, out = cli_sweep(tmp_path, sweep_text({"seed": [0, 0]}))
    assert_refused(res, out, str(spec), "axis seed: its values 0 and 0 give the same run config; list each value once")


@pytest.mark.parametrize("grid, zipped, needle", [
    ({"train.lr": [0.1, 1e-1]}, [], "axis train.lr: its values 0.1 and 0.1"),  # one value, written twice
    ({"threads": [1, 2]}, [], "axis threads: its values 1 and 2"),  # a field the digest ignores
    ({"model.hidden": [[8], [8.0]]}, [], "axis model.hidden: its values [8] and [8.0]"),  # one config once validated
    ({"seed": [0, 1, 0], "prune.method": ["imp", "random"]}, [], "axis seed: its values 0 and 0"),  # once, not per point
    ({}, [{"train.lr": [0.1, 0.1], "train.steps": [10, 10]}],
     ("zip group train.lr, train.steps: its rows {'train.lr': 0.1, 'train.steps': 10} and {'train.lr': 0.1, "
      "'train.steps': 10}")),
])
def test_axis_values_that_give_one_config_twice_are_refused(grid, zipped, needle):
    with pytest.raises(TicketscopeError) as info:
        load_sweep({"base": BASE, "grid": grid, "zip": zipped})
    assert str(info.value) == (f"invalid sweep <dict>: two points would be one run: {needle} give the same run "
                               "config; list each value once")


def test_two_axes_with_repeated_values_are_both_named():
    with pytest.raises(TicketscopeError) as info:
        load_sweep({"base": BASE, "grid": {"seed": [0, 0]}, "zip": [{"train.lr": [0.1, 0.1]}]})
    assert str(info.value).splitlines() == [
        "invalid sweep <dict>: points would be one run:",
        "  axis train.lr: its values 0.1 and 0.1 give the same run config; list each value once",
        "  axis seed: its values 0 and 0 give the same run config; list each value once"]


# --- empty files and duplicate YAML keys ---


EMPTY = "is empty; it must hold a mapping with base (a partial run config) and grid (axes to lists of values)"


def test_an_empty_sweep_file_is_refused(tmp_path):
    """It used to run one point of every default: the full default experiment."""
    res, spec, out = cli_sweep(tmp_path, "")
    assert_refused(res, out, f"sweep file {spec} {EMPTY}")


@pytest.mark.parametrize("text", ["\n  \n", "# a sweep, some day\n\n", "---\n# nothing yet\n"])
def test_a_blank_or_comment_only_sweep_file_is_refused(tmp_path, text):
    (tmp_path / "blank.yaml").write_text(text)
    message = f"sweep file {tmp_path / 'blank.yaml'} {EMPTY}"
    with pytest.raises(TicketscopeError, match=f"^{re.escape(message)}$"):
        load_sweep(tmp_path / "blank.yaml")


def test_an_explicit_null_sweep_is_refused_and_an_explicit_empty_mapping_is_one_default_point(tmp_path):
    (tmp_path / "null.yaml").write_text("null\n")
    with pytest.raises(TicketscopeError, match=r"sweep file .*null\.yaml must hold a mapping .*, not null$"):
        load_sweep(tmp_path / "null.yaml")
    (tmp_path / "defaults.yaml").write_text("{}\n")
    (only,) = load_sweep(tmp_path / "defaults.yaml").points()
    assert only.overrides == {} and only.config.prune.rounds == 10


def test_a_duplicate_yaml_key_in_a_sweep_file_is_refused(tmp_path):
    """It used to be kept silently, the last one winning."""
    res, spec, out = cli_sweep(tmp_path, f"base: {json.dumps(BASE)}\ngrid:\n  seed: [0]\ngrid:\n  seed: [1]\n")
    assert_refused(res, out, f"sweep file {spec}, line 4: key 'grid' is given twice in one mapping (first on line 2); "
                   "keep one")


@pytest.mark.parametrize("text, line, key, first", [
    ("base:\n  train:\n    lr: 0.1\n    steps: 10\n    lr: 0.2\ngrid: {seed: [0]}\n", 5, "lr", 3),
    ("grid: {seed: [0], seed: [1]}\n", 1, "seed", 1),
    ("grid:\n  seed: [0]\n  'seed': [1]\n", 3, "seed", 2),
])
def test_a_duplicate_yaml_key_is_named_with_its_line(tmp_path, text, line, key, first):
    (tmp_path / "dup.yaml").write_text(text)
    message = (f"sweep file {tmp_path / 'dup.yaml'}, line {line}: key {key!r} is given twice in one mapping "
               f"(first on line {first}); keep one")
    with pytest.raises(TicketscopeError, match=f"^{re.escape(message)}$"):
        load_sweep(tmp_path / "dup.yaml")


def test_a_yaml_merge_key_may_still_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base:\n  train:\n    <<: {lr: 0.1, steps: 10}\n    lr: 0.2\ngrid: {seed: [0]}\n")
    (point,) = load_sweep(path).points()
    assert (point.config.train.lr, point.config.train.steps) == (0.2, 10)


# --- what still loads ---


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name):
    points = load_sweep(preset_path(name)).points()
    assert points and len({p.digest for p in points}) == len(points)
