"""The README's extension example, copied verbatim from the README, works from the command line."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, merge
from ticketscope.io import load_tensors
from ticketscope.runs import RunDir

ROOT = Path(__file__).resolve().parents[1]


def readme_rule() -> str:
    blocks = re.findall(r"```python\n(# my_rules\.py\n.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README's extension example is gone"
    return blocks[0]


def test_readme_rule_registers_and_prunes_by_its_score(tmp_path):
    (tmp_path / "my_rules.py").write_text(readme_rule())
    cfg = merge(TINY, {"prune": {"method": "row-normalized", "rounds": 1, "params": {"power": 2.0}}})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "TICKETSCOPE_PLUGINS": str(tmp_path / "my_rules.py")}
    cli = [sys.executable, "-c", "from ticketscope.cli import main; main()"]
    res = subprocess.run([*cli, "run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "r"), "--quiet"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    # round 1 keeps exactly the 80% of layer-0 weights largest relative to their row norm squared (brute force)
    W = load_tensors(RunDir(tmp_path / "r").round_dir(0) / "final.safetensors")["layers.0.weight"].double()
    mask = load_tensors(RunDir(tmp_path / "r").round_dir(1) / "masks.safetensors")["layers.0"].bool().flatten()
    score = {p: (W.abs() / W.norm(dim=1, keepdim=True) ** p).flatten() for p in (1, 2)}
    assert int(mask.sum()) == round(0.8 * W.numel())
    assert score[2][mask].min() >= score[2][~mask].max()
    assert score[1][mask].min() < score[1][~mask].max()  # the parameter matters: power 1 keeps other weights
    # a bad parameter value is refused in one line naming the field, before anything is written
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(merge(cfg, {"prune": {"params": {"power": -1}}})))
    res = subprocess.run([*cli, "run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "r3")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "prune.params.power: Input should be greater than or equal to 0" in res.stderr
    assert not (tmp_path / "r3").exists()
    # without the plugin the name is refused in one line naming the registered rules
    env.pop("TICKETSCOPE_PLUGINS")
    res = subprocess.run([*cli, "run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "r2")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "no pruning rule named 'row-normalized'" in res.stderr
    assert "cavity, cavity-high, cavity-low, imp, oneshot, random" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r2").exists()  # nothing written for a run that cannot start


def test_a_missing_plugin_file_is_one_clear_error(tmp_path):
    env = {**os.environ, "TICKETSCOPE_PLUGINS": str(tmp_path / "nowhere.py")}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(TINY))
    res = subprocess.run([sys.executable, "-c", "from ticketscope.cli import main; main()", "run",
                          str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "r")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "TICKETSCOPE_PLUGINS" in res.stderr and "Traceback" not in res.stderr


def test_a_plugin_data_set_is_chosen_by_name(tmp_path):
    """A factory registered with @register_dataset in a plugin file reaches the config check and the run."""
    (tmp_path / "my_data.py").write_text(
        "from ticketscope.data import NLGPTask, register_dataset\n\n"
        "@register_dataset('ring')\n"
        "def ring(cfg):\n"
        "    return NLGPTask(L=cfg.L, dim=1, xis=(1.0, 4.0), gain=cfg.gain, gaussian_clone=cfg.gaussian_clone)\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(merge(TINY, {"data": {"name": "ring", "L": 16},
                                                                   "prune": {"rounds": 1}})))
    env = {**os.environ, "TICKETSCOPE_PLUGINS": str(tmp_path / "my_data.py")}
    res = subprocess.run([sys.executable, "-c", "from ticketscope.cli import main; main()", "run",
                          str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "r"), "--quiet"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    W = load_tensors(RunDir(tmp_path / "r").round_dir(0) / "final.safetensors")["layers.0.weight"]
    assert W.shape == (16, 16)  # a 1D ring of 16 pixels, as the plugin's factory builds it


def test_a_rule_declares_what_it_needs_and_gets_it(tmp_path):
    """A user's rule registered with needs=("probe",) receives the probe inputs each pruned layer sees (for the
    first layer: the run's probe samples themselves) and their classes."""
    from ticketscope.config import parse_config
    from ticketscope.data import make_dataset
    from ticketscope.pruning import RULES, keep_top, register
    from ticketscope.runs import RunDir, run_experiment
    from ticketscope.seeding import derive_seed

    seen = {}

    @register("input-variance", needs=("probe",))
    def input_variance(weights, masks, ctx):
        seen["labels"], seen["inputs"] = ctx.probe_labels, ctx.layer_inputs["layers.0"]
        return keep_top({n: ctx.layer_inputs[n].var(0).expand_as(w) + 0 * w for n, w in weights.items()}, masks, ctx)

    cfg = parse_config(merge(TINY, {"prune": {"method": "input-variance", "rounds": 1, "n_probe": 256}}))
    try:
        run_experiment(cfg, tmp_path / "r", progress=False)
    finally:
        del RULES["input-variance"]
    X, y = make_dataset(cfg.data).train(256, seed=derive_seed(cfg.seed, "probe"))
    assert torch.equal(seen["inputs"], X) and torch.equal(seen["labels"], y)
    mask = load_tensors(RunDir(tmp_path / "r").round_dir(1) / "masks.safetensors")["layers.0"]
    assert int(mask.sum()) == round(0.8 * mask.numel())
    with pytest.raises(ValueError, match="a rule may need dense_weights, probe"):
        register("bad", needs=("gradients",))


@pytest.mark.parametrize("section", [{"prune": {"method": "myrule"}}, {"data": {"name": "mydata"}}])
def test_a_name_from_a_plugin_that_is_not_loaded_hints_at_ticketscope_plugins(tmp_path, section):
    """`run` and `config` with $TICKETSCOPE_PLUGINS unset, then set to a file that registers other names."""
    from typer.testing import CliRunner

    from ticketscope.cli import app

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(merge(TINY, section)))
    what = "pruning rule" if "prune" in section else "data set"
    unset = "needs its file or module named in $TICKETSCOPE_PLUGINS, which is unset here"
    for env, hint in (({"TICKETSCOPE_PLUGINS": None}, unset),
                      ({"TICKETSCOPE_PLUGINS": "my_rules.py"}, f"$TICKETSCOPE_PLUGINS (my_rules.py) registered no {what}")):
        for args in (["run", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "r")], ["config", str(tmp_path / "cfg.yaml")]):
            res = CliRunner().invoke(app, args, env=env)
            assert hint in str(res.exception) and f"no {what} named 'my" in str(res.exception), res.exception
    assert not (tmp_path / "r").exists()
