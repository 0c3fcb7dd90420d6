"""Sweeps are validated whole when they load, before anything trains: every point's config, duplicate
axis values, empty files and duplicate YAML keys; errors name the file, the axis and the value. Also
seed ranges, the registered claims block and replicates on disjoint seeds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import SRC, TINY, merge
from ticketscope.errors import TicketscopeError
from ticketscope.experiments.presets import preset_names, preset_path
from ticketscope.experiments.spec import TOP_LEVEL, RegisteredClaim, Sweep, load_sweep

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


# --- seed ranges ---


def digests(sweep: Sweep) -> list[str]:
    return [p.digest for p in sweep.points()]


@pytest.mark.parametrize("written, listed", [
    ({"range": [0, 5]}, [0, 1, 2, 3, 4]),
    ({"range": [1, 10, 3]}, [1, 4, 7]),
    ({"range": [4, -1, -2]}, [4, 2, 0]),
    ([0, 1, 2], [0, 1, 2]),  # a list stays a list
])
def test_a_range_is_the_list_it_expands_to_with_the_same_points_and_digests(written, listed):
    grid = {"prune.method": ["imp", "random"]}
    ranged = load_sweep({"base": BASE, "grid": {**grid, "seed": written}})
    explicit = load_sweep({"base": BASE, "grid": {**grid, "seed": listed}})
    assert ranged.axes["seed"] == listed and ranged == explicit
    assert [p.overrides for p in ranged.points()] == [p.overrides for p in explicit.points()]
    assert digests(ranged) == digests(explicit) and len(set(digests(ranged))) == 2 * len(listed)


def test_a_range_in_a_zip_group_expands_too():
    ranged = load_sweep({"base": BASE, "zip": [{"seed": {"range": [0, 3]}, "train.steps": [10, 20, 30]}]})
    explicit = load_sweep({"base": BASE, "zip": [{"seed": [0, 1, 2], "train.steps": [10, 20, 30]}]})
    assert digests(ranged) == digests(explicit)
    assert [p.overrides for p in ranged.points()][2] == {"seed": 2, "train.steps": 30}


def test_to_dict_keeps_the_range_as_written_and_reloads_to_the_same_sweep(tmp_path):
    sweep = load_sweep({"base": BASE, "grid": {"seed": {"range": [0, 64, 2]}, "prune.method": ["imp", "random"]}})
    raw = sweep.to_dict()
    assert raw["grid"] == {"seed": {"range": [0, 64, 2]}, "prune.method": ["imp", "random"]}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    again = load_sweep(tmp_path / "sweep.yaml")
    assert again == sweep and digests(again) == digests(sweep) and len(again.points()) == 64


@pytest.mark.parametrize("values, needle", [
    ({"range": [0, 0]}, "axis seed: the range [0, 0] is empty"),
    ({"range": [5, 2]}, "axis seed: the range [5, 2] is empty"),
    ({"range": [0, 4, 0]}, "axis seed: a range's step must not be 0"),
    ({"range": [0, 4.5]}, "axis seed: a range is written {range: [start, stop]} or {range: [start, stop, step]}"),
    ({"range": [0, True]}, "axis seed: a range is written"),
    ({"range": ["0", "4"]}, "axis seed: a range is written"),
    ({"range": [4]}, "axis seed: a range is written"),
    ({"range": [0, 4, 1, 1]}, "axis seed: a range is written"),
    ({"range": "0..4"}, "axis seed: a range is written"),
    ({"range": [0, 4], "step": 2}, "axis seed: a range is written"),
    ({"from": 0, "to": 4}, "axis seed: a range is written"),
    ({}, "axis seed: a range is written"),
])
def test_a_bad_range_is_one_error_naming_the_axis(values, needle):
    with pytest.raises(TicketscopeError) as info:
        load_sweep({"base": BASE, "grid": {"prune.method": ["imp"], "seed": values}})
    message = str(info.value)
    assert message.startswith("invalid sweep <dict>: ") and needle in message and len(message.splitlines()) == 1
    assert f"got {values!r}" in message


def test_a_bad_range_in_a_sweep_file_is_refused_before_anything_runs(tmp_path):
    res, spec, out = cli_sweep(tmp_path, sweep_text({"seed": {"range": [3, 3]}}))
    assert_refused(res, out, str(spec), "axis seed: the range [3, 3] is empty")


def test_a_range_of_a_misspelt_axis_names_the_axis_first():
    with pytest.raises(TicketscopeError, match=r"axis 'sed' is not a config field; did you mean seed\?"):
        load_sweep({"base": BASE, "grid": {"sed": {"range": [0, 4]}}})


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_writes_its_seeds_as_a_range_with_the_points_of_the_list(name):
    raw = yaml.safe_load(preset_path(name).read_text())
    written = raw["grid"]["seed"]
    assert set(written) == {"range"}, f"{name}: seeds listed one by one"
    sweep = load_sweep(preset_path(name))
    listed = {**raw, "grid": {**raw["grid"], "seed": list(range(*written["range"]))}}
    assert digests(load_sweep(listed)) == digests(sweep)


# --- the registered claims block ---


def test_a_claims_block_is_stored_and_round_trips(tmp_path):
    sweep = load_sweep({"base": BASE, "grid": {"seed": [0, 1]}, "claims": [
        {"id": "data-vs-clone", "delta": 0.02, "seeds": 64}, {"id": "imp-vs-random"}, {"id": "lag", "delta": 1}]})
    assert sweep.claims == (RegisteredClaim("data-vs-clone", 0.02, 64), RegisteredClaim("imp-vs-random"),
                            RegisteredClaim("lag", 1.0))
    assert isinstance(sweep.claims[2].delta, float)
    raw = sweep.to_dict()
    assert raw["claims"] == [{"id": "data-vs-clone", "delta": 0.02, "seeds": 64}, {"id": "imp-vs-random"},
                             {"id": "lag", "delta": 1.0}]
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert load_sweep(tmp_path / "sweep.yaml").claims == sweep.claims


def test_without_a_claims_block_none_is_registered_and_the_points_are_the_same():
    plain = load_sweep({"base": BASE, "grid": {"seed": [0, 1]}})
    registered = load_sweep({"base": BASE, "grid": {"seed": [0, 1]}, "claims": [{"id": "x"}]})
    assert plain.claims == () and "claims" not in plain.to_dict()
    assert digests(plain) == digests(registered)  # claims name no run


@pytest.mark.parametrize("claims, needle", [
    ({"id": "x"}, "claims must be a list of mappings {id: ..., delta: ..., seeds: ...}, not dict"),
    ([], "claims is an empty list"),
    (["x"], "claims entry 1 must be a mapping {id: ..., delta: ..., seeds: ...}, not 'x'"),
    ([{"id": "a"}, {"delta": 0.1}], "claims entry 2 has no id"),
    ([{"id": "a", "detla": 0.1}], "claims entry 1 (id 'a'): unknown key(s) ['detla']; a registered claim has id, "
                                  "delta, seeds"),
    ([{"id": 3}], "claims entry 1 (id 3): id must be a non-empty string, not 3"),
    ([{"id": " "}], "claims entry 1 (id ' '): id must be a non-empty string"),
    ([{"id": "a", "delta": 0}], "claims entry 1 (id 'a'): delta (the smallest effect of interest) must be a number > 0, "
                                "not 0"),
    ([{"id": "a", "delta": -0.1}], "must be a number > 0, not -0.1"),
    ([{"id": "a", "delta": "small"}], "must be a number > 0, not 'small'"),
    ([{"id": "a", "delta": float("inf")}], "must be a number > 0, not inf"),
    ([{"id": "a", "delta": True}], "must be a number > 0, not True"),
    ([{"id": "a", "seeds": 1}], "claims entry 1 (id 'a'): seeds (planned per arm) must be an integer >= 2, not 1"),
    ([{"id": "a", "seeds": 8.0}], "seeds (planned per arm) must be an integer >= 2, not 8.0"),
    ([{"id": "a"}, {"id": "b"}, {"id": "a", "delta": 0.1}], "claims entries 1 and 3 both register 'a'; list each "
                                                            "claim once"),
])
def test_a_bad_claims_block_is_one_error_naming_the_entry(claims, needle):
    with pytest.raises(TicketscopeError) as info:
        load_sweep({"base": BASE, "grid": {"seed": [0]}, "claims": claims})
    message = str(info.value)
    assert message == f"invalid sweep <dict>: {needle}" or (message.startswith("invalid sweep <dict>: ")
                                                            and needle in message), message
    assert len(message.splitlines()) == 1


def test_a_bad_claims_block_in_a_sweep_file_is_refused_on_the_command_line(tmp_path):
    res, spec, out = cli_sweep(tmp_path, sweep_text({"seed": [0]}, claims=[{"id": "a", "seeds": 1}]))
    assert_refused(res, out, str(spec), "claims entry 1 (id 'a'): seeds (planned per arm) must be an integer >= 2")


def test_claims_built_in_python_are_checked_too():
    with pytest.raises(TicketscopeError, match=r"claims: 'a' registered more than once"):
        Sweep("direct", BASE, {"seed": [0]}, claims=(RegisteredClaim("a"), RegisteredClaim("a", 0.1)))
    with pytest.raises(TicketscopeError, match=r"claim 'a': delta .* must be a number > 0, not 0"):
        RegisteredClaim("a", 0)
    assert "claims" in TOP_LEVEL


# --- replicates on disjoint seeds ---


@pytest.mark.parametrize("seeds", [{"range": [0, 64]}, [0, 2, 5], [3, 1], [7], {"range": [10, 20, 3]},
                                   {"range": [9, -1, -1]}, [100, 4]])
def test_replicates_run_disjoint_seeds_and_other_digests(seeds):
    sweep = load_sweep({"name": "s", "base": BASE, "grid": {"prune.method": ["imp", "random"], "seed": seeds}})
    blocks = [sweep, *(sweep.replicate(b) for b in (1, 2, 3))]
    assert sweep.replicate(0) is sweep
    assert [b.name for b in blocks] == ["s", "s-replicate1", "s-replicate2", "s-replicate3"]
    for i, a in enumerate(blocks):
        assert len(a.seeds()) == len(sweep.seeds())
        for b in blocks[i + 1:]:
            assert not set(a.seeds()) & set(b.seeds()), (a.name, b.name)
            assert not set(digests(a)) & set(digests(b))
    span = max(sweep.seeds()) + 1 - min(sweep.seeds())  # the documented rule
    assert blocks[2].seeds() == [s + 2 * span for s in sweep.seeds()]
    for block in blocks[1:]:  # every other axis value unchanged, point for point
        assert [{k: v for k, v in p.overrides.items() if k != "seed"} for p in block.points()] == \
               [{k: v for k, v in p.overrides.items() if k != "seed"} for p in sweep.points()]


def test_a_replicate_of_a_range_is_the_next_range_and_keeps_the_rest(tmp_path):
    sweep = load_sweep({"name": "demo", "description": "d", "base": BASE, "claims": [{"id": "x", "delta": 0.1}],
                        "grid": {"seed": {"range": [0, 64]}, "prune.method": ["imp"]}})
    rep = sweep.replicate(1)
    assert rep.seeds() == list(range(64, 128))
    raw = rep.to_dict()
    assert raw["grid"] == {"seed": {"range": [64, 128]}, "prune.method": ["imp"]}
    assert (raw["name"], raw["description"], raw["claims"], raw["base"]) == ("demo-replicate1", "d",
                                                                             [{"id": "x", "delta": 0.1}], BASE)
    assert load_sweep(raw) == rep


def test_a_replicate_shifts_a_seed_axis_in_a_zip_group():
    sweep = load_sweep({"base": BASE, "zip": [{"seed": [0, 1], "train.steps": [10, 20]}]})
    rep = sweep.replicate(1)
    assert [p.overrides for p in rep.points()] == [{"seed": 2, "train.steps": 10}, {"seed": 3, "train.steps": 20}]


def test_a_sweep_without_a_seed_axis_has_no_replicate():
    sweep = load_sweep({"name": "one-seed", "base": merge(BASE, {"seed": 3}), "grid": {"prune.method": ["imp"]}})
    with pytest.raises(TicketscopeError, match=r"^sweep 'one-seed' has no seed axis, so it has no seeds to "
                                               r"replicate on; give it one, e.g. grid: \{seed: \{range: \[0, 8\]\}\}$"):
        sweep.replicate(1)
    for bad in (-1, True, 1.0):
        with pytest.raises(TicketscopeError, match="a replicate block is an integer >= 1"):
            load_sweep({"base": BASE, "grid": {"seed": [0]}}).replicate(bad)


def test_the_command_line_runs_a_replicate_on_the_shifted_seeds(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump({"name": "small", "base": BASE, "grid": {"seed": {"range": [0, 2]}}}))
    out = tmp_path / "rep"
    cmd = [sys.executable, "-m", "ticketscope.cli", "sweep", str(spec), "--out", str(out), "--workers", "1", "--quiet",
           "--replicate", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert res.returncode == 0, res.stderr
    assert "small-replicate2: 2 seeds in 4..5" in res.stdout and "2 points" in res.stdout
    written = load_sweep(out / "sweep.yaml")
    assert written.name == "small-replicate2" and written.seeds() == [4, 5]
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(digests(written))
    assert not set(digests(written)) & set(digests(load_sweep(spec)))


def test_the_command_line_refuses_a_replicate_into_another_sweeps_directory(tmp_path):
    """The likely slip: the original's --out. A preset name works as the sweep argument too."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "sweep.yaml").write_text(yaml.safe_dump(load_sweep(preset_path("demo")).to_dict(), sort_keys=False))
    cmd = [sys.executable, "-m", "ticketscope.cli", "sweep", "demo", "--out", str(out), "--replicate", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"{out} holds sweep 'demo'; give replicate 1 ('demo-replicate1') its own --out" in res.stderr
    assert not (out / "runs").exists()
    res = subprocess.run(cmd[:-1] + ["0"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert res.returncode == 2 and "--replicate takes a block number >= 1" in res.stderr, res.stderr


# --- a rule's parameters crossed with the rules ---


def test_parameters_crossed_with_rules_that_refuse_them_point_to_zip():
    with pytest.raises(TicketscopeError) as info:
        load_sweep({"base": BASE, "grid": {"prune.method": ["imp", "cavity-high"], "prune.params.band": [2.0, 3.0]}})
    lines = str(info.value).splitlines()
    assert "rule 'imp' takes no parameters" in lines[1]
    assert lines[-1] == ("  hint: the grid gives every prune.method every value of prune.params.band, and not every "
                         "rule takes them; pair each rule with its own parameters in one zip: group instead, e.g. "
                         "zip: [{prune.method: [imp, cavity-high], prune.params: [{}, {band: 2.0}]}] ({}: no parameters)")
    # the hint's way works
    zipped = load_sweep({"base": BASE, "zip": [{"prune.method": ["imp", "cavity-high"],
                                                "prune.params": [{}, {"band": 2.0}]}]})
    assert [p.config.prune.params for p in zipped.points()][0] is None
    assert zipped.points()[1].config.prune.params.band == 2.0


def test_no_zip_hint_for_other_errors_or_an_unswept_rule():
    with pytest.raises(TicketscopeError) as info:
        load_sweep({"base": BASE, "grid": {"prune.method": ["imp", "random"], "train.lr": [0.1, -1]}})
    assert "hint" not in str(info.value)
    with pytest.raises(TicketscopeError) as info:  # one rule for every point: the base is wrong, not the grid
        load_sweep({"base": BASE, "grid": {"prune.params.band": [2.0]}})
    assert "takes no parameters" in str(info.value) and "hint" not in str(info.value)
