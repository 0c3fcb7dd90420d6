"""Plug-in rules and data sets declare their own parameters (a pydantic model), validated as ``prune.params`` /
``data.params`` without touching the core config; configs without them keep their digests."""

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml
from pydantic import BaseModel, Field

from conftest import TINY, merge
from ticketscope import data, pruning
from ticketscope.config import Params, RunConfig, dump_config, load_config, load_run_config, parse_config
from ticketscope.errors import TicketscopeError
from ticketscope.io import load_tensors
from ticketscope.runs import RunDir, run_experiment

PLUGIN = '''
import torch
from pydantic import Field
from ticketscope.config import Params
from ticketscope.data import NLGPTask, register_dataset
from ticketscope.pruning import keep_top, register


class Ring(Params):
    wide: float = Field(4.0, gt=0, description="(pixels) correlation length of class 1")


@register_dataset("ring", params=Ring)
def ring(cfg):
    return NLGPTask(L=cfg.L, dim=1, xis=(1.0, cfg.params.wide), gain=cfg.gain, gaussian_clone=cfg.gaussian_clone)


class Jitter(Params):
    temperature: float = Field(1.0, gt=0, description="(weight units) scale of the noise added to |w|")


@register("jittered", params=Jitter)
def jittered(weights, masks, ctx):
    g = torch.Generator().manual_seed(ctx.seed)
    return keep_top({n: w.abs() + ctx.params.temperature * torch.rand(w.shape, generator=g).to(w.device)
                     for n, w in weights.items()}, masks, ctx)
'''
CLI = [sys.executable, "-c", "from ticketscope.cli import main; main()"]


@pytest.fixture
def registries():
    """Restore the rule and data set registries after a test registers into them."""
    saved = [(d, dict(d)) for d in (pruning.RULES, pruning.RULE_NEEDS, pruning.RULE_PARAMS, data.DATASETS,
                                    data.DATASET_PARAMS)]
    yield
    for d, old in saved:
        d.clear()
        d.update(old)


@pytest.fixture
def plugin(tmp_path, registries):
    """The plugin file, also imported here (its rule and data set registered in this process)."""
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("my_plugin", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return path


def cli_run(cfg: dict, tmp_path, plugin_path):
    """``ticketscope run`` of ``cfg`` into tmp_path/r, with the plugin named in TICKETSCOPE_PLUGINS."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "TICKETSCOPE_PLUGINS": str(plugin_path)}
    return subprocess.run([*CLI, "run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "r"), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)


def test_a_rule_gets_its_validated_params_and_they_change_what_it_does(tmp_path, registries):
    class Extreme(Params):
        largest: bool = Field(True, description="(flag) keep the largest |w|; false: the smallest")

    seen = []

    @pruning.register("extreme", params=Extreme)
    def extreme(weights, masks, ctx):
        seen.append(ctx.params)
        sign = 1 if ctx.params.largest else -1
        return pruning.keep_top({n: sign * w.abs() for n, w in weights.items()}, masks, ctx)

    cfg = parse_config(merge(TINY, {"prune": {"method": "extreme", "rounds": 1, "params": {"largest": False}}}))
    assert cfg.prune.params == Extreme(largest=False)
    run_experiment(cfg, tmp_path / "r", progress=False)
    assert seen == [Extreme(largest=False)]
    W = load_tensors(RunDir(tmp_path / "r").round_dir(0) / "final.safetensors")["layers.0.weight"].abs().flatten()
    mask = load_tensors(RunDir(tmp_path / "r").round_dir(1) / "masks.safetensors")["layers.0"].bool().flatten()
    assert int(mask.sum()) == round(0.8 * W.numel())
    assert W[mask].max() <= W[~mask].min()  # the smallest weights survive, as largest: false asks
    # the run's config.yaml holds the parameters and gives back the same config
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["prune"]["params"] == {"largest": False}
    assert load_run_config(tmp_path / "r") == cfg and load_run_config(tmp_path / "r").digest() == cfg.digest()


def test_a_plugin_data_set_gets_its_validated_params(tmp_path, plugin):
    cfg = merge(TINY, {"data": {"name": "ring", "L": 16, "params": {"wide": 8.0}}, "prune": {"rounds": 1}})
    assert data.make_dataset(parse_config(cfg).data).xis == (1.0, 8.0)
    assert data.make_dataset(parse_config(merge(TINY, {"data": {"name": "ring"}})).data).xis == (1.0, 4.0)  # default
    res = cli_run(cfg, tmp_path, plugin)  # the plugin reaches the CLI through TICKETSCOPE_PLUGINS
    assert res.returncode == 0, res.stderr
    assert load_tensors(RunDir(tmp_path / "r").round_dir(0) / "final.safetensors")["layers.0.weight"].shape == (16, 16)
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["data"]["params"] == {"wide": 8.0} and saved["prune"]["params"] is None
    assert load_run_config(tmp_path / "r") == parse_config(cfg)


@pytest.mark.parametrize("update, line", [
    ({"prune": {"method": "jittered", "params": {"temperature": -1}}},
     "prune.params.temperature: Input should be greater than 0"),
    ({"prune": {"method": "jittered", "params": {"temprature": 2}}},
     "prune.params.temprature: Extra inputs are not permitted"),
    ({"prune": {"params": {"temperature": 2}}}, "prune.params: rule 'imp' takes no parameters"),
    ({"data": {"name": "ring", "params": {"wide": 0}}}, "data.params.wide: Input should be greater than 0"),
    ({"data": {"params": {"wide": 2}}}, "data.params: data set 'nlgp' takes no parameters"),
])
def test_bad_params_are_one_line_naming_the_field(tmp_path, plugin, update, line):
    with pytest.raises(TicketscopeError, match=line.replace(".", r"\.")):
        parse_config(merge(TINY, update))
    res = cli_run(merge(TINY, update), tmp_path, plugin)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    named = [ln.strip() for ln in res.stderr.splitlines() if ln.startswith("  ")]  # the block's error lines
    assert len(named) == 1 and named[0].startswith(f"{line} (got ")  # one: the field, the problem, the value
    assert not (tmp_path / "r").exists()  # nothing written for a run that cannot start


def test_a_config_without_params_keeps_its_digest(tmp_path):
    pinned = {"default": "7aedf68dcdf4", "tiny": "aed9903f44ff"}  # computed before params existed
    for key, raw in (("default", {}), ("tiny", TINY)):
        assert parse_config(raw).digest() == pinned[key]
        assert parse_config(merge(raw, {"data": {"params": {}}, "prune": {"params": None}})).digest() == pinned[key]
    # a run's config.yaml from before params existed (no params keys) still loads, with the same digest
    old = yaml.safe_load(dump_config(parse_config(TINY)))
    del old["data"]["params"], old["prune"]["params"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert load_run_config(tmp_path).digest() == pinned["tiny"]


def test_params_round_trip_through_config_yaml_and_enter_the_digest(tmp_path, plugin):
    raw = merge(TINY, {"data": {"name": "ring", "params": {"wide": 6}},
                       "prune": {"method": "jittered", "params": {"temperature": 0.5}}})
    cfg = parse_config(raw)
    (tmp_path / "cfg.yaml").write_text(dump_config(cfg))
    again = load_config(tmp_path / "cfg.yaml")
    assert again == cfg and again.digest() == cfg.digest() and again.prune.params.temperature == 0.5
    assert hash(again.data) == hash(cfg.data)  # runs of an ensemble share data sets keyed by data config
    assert parse_config(merge(raw, {"prune": {"params": {"temperature": 2}}})).digest() != cfg.digest()
    omitted = {**raw, "prune": {"method": "jittered"}}
    assert parse_config(omitted).digest() == \
        parse_config(merge(omitted, {"prune": {"params": {"temperature": 1.0}}})).digest()  # defaults resolved


def test_a_params_model_must_refuse_unknown_keys(registries):
    class Loose(BaseModel):
        x: int = 1

    with pytest.raises(ValueError, match="rule 'loose': params must be a pydantic model that forbids unknown keys"):
        pruning.register("loose", params=Loose)
    with pytest.raises(ValueError, match="data set 'loose': params must be a pydantic model"):
        data.register_dataset("loose", params=Loose)
    assert "loose" not in pruning.RULES and "loose" not in data.DATASETS
    assert RunConfig().prune.params is None and RunConfig().data.params is None


def test_a_sweep_axis_sets_one_plugin_parameter(tmp_path, plugin, monkeypatch):
    """The points run in spawned workers, which get the plug-in from TICKETSCOPE_PLUGINS: the config, with the
    plug-in's params model, crosses to them as its JSON form."""
    from ticketscope.experiments.sweep import load_sweep, run_sweep

    monkeypatch.setenv("TICKETSCOPE_PLUGINS", str(plugin))
    base = merge(TINY, {"prune": {"method": "jittered", "rounds": 1}})
    sweep = load_sweep({"name": "temp", "base": base, "grid": {"prune.params.temperature": [0.5, 2.0]}})
    points = sweep.points()
    assert [p.config.prune.params.temperature for p in points] == [0.5, 2.0] and points[0].digest != points[1].digest
    df = run_sweep(sweep, tmp_path / "s", workers=1, progress=False)
    assert df["status"].tolist() == ["ok", "ok"] and df["prune.params.temperature"].tolist() == [0.5, 2.0]
    with pytest.raises(TicketscopeError, match=r"prune\.params\.temprature=1\.0: prune\.params\.temprature: Extra "
                                               r"inputs are not permitted"):  # refused as the sweep loads
        load_sweep({"name": "typo", "base": base, "grid": {"prune.params.temprature": [1.0]}})
    with pytest.raises(TicketscopeError, match=r"axis 'prune.params.' is not a config field"):
        load_sweep({"name": "bad", "base": base, "grid": {"prune.params.": [1.0]}})
