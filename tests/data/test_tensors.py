"""The `tensors` data set: a user's own .npz / .safetensors file, and its errors as one clear line."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from safetensors.numpy import save_file
from typer.testing import CliRunner

from conftest import TINY, merge
from ticketscope import open_run
from ticketscope.cli import app
from ticketscope.config import DataConfig, load_run_config, parse_config
from ticketscope.data import make_dataset
from ticketscope.data.tensors import read_arrays
from ticketscope.errors import TicketscopeError
from ticketscope.runs.round import RunData

from conftest import SRC


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6, 6) images: class 1 has a bright square, class 0 does not."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 6, 6)).astype(np.float32)
    X[y == 1, 2:4, 2:4] += 3.0
    return X, y


def test_npz_with_a_test_split_is_read_exactly(tmp_path):
    X, y = blobs(200, 0)
    Xt, yt = blobs(50, 1)
    np.savez(tmp_path / "d.npz", X=X, y=y, X_test=Xt, y_test=yt)
    ds = make_dataset(DataConfig(name="tensors", path=str(tmp_path / "d.npz")))
    assert ds.input_shape == (6, 6) and ds.num_classes == 2
    Xa, ya = ds.train()
    assert torch.equal(Xa, torch.from_numpy(X.reshape(200, 36))) and torch.equal(ya, torch.from_numpy(y))
    Xb, yb = ds.test(10, seed=3)
    rows = [np.flatnonzero((Xt.reshape(50, 36) == r.numpy()).all(1))[0] for r in Xb]
    assert len(set(rows)) == 10 and (yt[rows] == yb.numpy()).all()  # a subset of the test split, labels kept
    assert torch.equal(ds.test(5, seed=3)[0], Xb[:5])  # nested in n


def test_safetensors_without_a_test_split_holds_out_the_last_fifth(tmp_path):
    X, y = blobs(100, 0)
    save_file({"X": X.reshape(100, 36), "y": y.astype(np.int64), "input_shape": np.array([6, 6])},
              str(tmp_path / "d.safetensors"))
    ds = make_dataset(DataConfig(name="tensors", path=str(tmp_path / "d.safetensors")))
    assert ds.input_shape == (6, 6)
    assert torch.equal(ds.train()[0], torch.from_numpy(X[:80].reshape(80, 36)))
    assert torch.equal(ds.test()[1], torch.from_numpy(y[80:]))
    clone = make_dataset(DataConfig(name="tensors", path=str(tmp_path / "d.safetensors"), gaussian_clone=True))
    assert clone.input_shape == (6, 6) and clone.train(16)[0].shape == (16, 36)


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ticketscope.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=300)


def test_a_run_on_your_own_file_and_bad_files_are_one_clear_line(tmp_path):
    X, y = blobs(400, 0)
    np.savez(tmp_path / "ok.npz", X=X, y=y)
    np.savez(tmp_path / "disagree.npz", X=X, y=y[:-3])
    np.savez(tmp_path / "half_split.npz", X=X, y=y, X_test=X[:10])
    base = merge(TINY, {"data": {"name": "tensors", "n_train": 256, "n_test": 64}, "prune": {"rounds": 1}})
    cases = {"ok": "ok.npz", "disagree": "disagree.npz", "half_split": "half_split.npz", "unknown": None}
    for name, file in cases.items():
        cfg = merge(base, {"data": {"path": str(tmp_path / file)}} if file else {"data": {"name": "imagenet"}})
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("run", f"{tmp_path}/ok.yaml", "--out", "r_ok", "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = cli("analyze", "r_ok", cwd=tmp_path)  # a held-out split (80) smaller than the probe set asked for
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "r_ok" / "analysis" / "analysis.json").read_text())["probe_size"] == 80
    expect = {"disagree": "X has 400 items but y has shape (397,)", "half_split": "needs both X_test and y_test",
              "unknown": "no data set named 'imagenet'"}
    for name, needle in expect.items():
        res = cli("run", f"{tmp_path}/{name}.yaml", "--out", f"r_{name}", cwd=tmp_path)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) <= 3 and not (tmp_path / f"r_{name}").exists()


def test_missing_path_is_named():
    with pytest.raises(TicketscopeError, match="needs data.path"):
        make_dataset(DataConfig(name="tensors"))


# --- files that keep their geometry; a finite file used whole, n_train / n_test as optional caps ------------------

runner = CliRunner()
SMALL = {"model": {"hidden": [16]}, "train": {"steps": 30, "batch_size": 64, "n_eval_train": 256}, "prune": {"rounds": 1}}


def _run(tmp_path, data: dict, out: str = "r"):
    """`ticketscope run` in-process on a config of ``data`` (exactly as given) and a tiny network."""
    (tmp_path / f"{out}.yaml").write_text(yaml.safe_dump({"data": data, **SMALL}))
    return runner.invoke(app, ["run", str(tmp_path / f"{out}.yaml"), "--out", str(tmp_path / out), "--quiet"])


def test_a_sampled_12x12_nlgp_file_is_measured_as_12x12_images_on_a_torus(tmp_path):
    f = tmp_path / "nlgp.safetensors"
    res = runner.invoke(app, ["data", "sample", "--task", "nlgp", "--L", "12", "--n", "800", "--out", str(f)])
    assert res.exit_code == 0, res.output
    assert "input shape (12, 12), on a torus" in res.output
    stored = read_arrays(f)
    assert stored["input_shape"].tolist() == [12, 12] and stored["torus"].tolist() == [1]
    res = _run(tmp_path, {"name": "tensors", "path": str(f)})  # no n_train: the file is used whole
    assert res.exit_code == 0, res.output
    assert "2 rounds" in res.output
    ds = open_run(tmp_path / "r").dataset()
    assert (ds.input_shape, ds.torus, ds.test_size) == ((12, 12), True, 160)  # 800 items, the last fifth held out
    res = runner.invoke(app, ["analyze", str(tmp_path / "r"), "--n-probe", "256"])
    assert res.exit_code == 0, res.output
    stamp = json.loads((tmp_path / "r" / "analysis" / "analysis.json").read_text())
    assert (stamp["input_shape"], stamp["torus"], stamp["probe_size"]) == ([12, 12], True, 160)
    # the open-boundary, 1-D and natural-image geometries are kept too
    for args, shape, torus in ((["--task", "nlgp", "--L", "6", "--open"], [6, 6], [0]),
                               (["--task", "nlgp", "--L", "6", "--dim", "1"], [6], [1])):
        res = runner.invoke(app, ["data", "sample", *args, "--n", "20", "--out", str(tmp_path / "g.safetensors")])
        assert res.exit_code == 0, res.output
        ds = make_dataset(DataConfig(name="tensors", path=str(tmp_path / "g.safetensors")))
        assert (list(ds.input_shape), [int(ds.torus)]) == (shape, torus)


def test_the_readme_example_uses_an_800_item_file_whole_and_sizes_are_optional_caps(tmp_path):
    X, y = blobs(800, 0)
    np.savez(tmp_path / "my_data.npz", X=X, y=y)
    res = _run(tmp_path, {"name": "tensors", "path": str(tmp_path / "my_data.npz")})  # README: data: {name: tensors, path: F}
    assert res.exit_code == 0, res.output
    cfg = load_run_config(tmp_path / "r")
    assert (cfg.data.n_train, cfg.data.n_test) == (None, None)  # the stored config says so, and reloads the same
    data = RunData.build(cfg, torch.device("cpu"))
    assert (len(data.batches.X), len(data.test[0])) == (640, 160)
    assert torch.equal(data.test[0], torch.from_numpy(X[640:].reshape(160, 36)))  # in file order
    # a cap is a seeded subset of that many; more than the split holds is one error naming the field
    res = _run(tmp_path, {"name": "tensors", "path": str(tmp_path / "my_data.npz"), "n_train": 300, "n_test": 50}, "c")
    assert res.exit_code == 0, res.output
    data = RunData.build(load_run_config(tmp_path / "c"), torch.device("cpu"))
    assert (len(data.batches.X), len(data.test[0])) == (300, 50)
    for field, n, most in (("n_train", 20000, 640), ("n_test", 2000, 160)):
        res = _run(tmp_path, {"name": "tensors", "path": str(tmp_path / "my_data.npz"), field: n}, f"bad_{field}")
        assert isinstance(res.exception, TicketscopeError), res.output
        msg = str(res.exception)
        assert f"asked for {n} my_data.npz" in msg and f"set data.{field}" in msg and f"at most {most}" in msg, msg
        assert f"leave data.{field} out to use the whole split" in msg


def test_whole_file_defaults_leave_every_other_configs_digest_unchanged():
    """Digests computed on main before tensors files were used whole: only a tensors file without sizes changes
    (it now means the whole file, not a 20000-item subset); its clone, mnist and explicit sizes keep theirs."""
    pinned = {"mnist": ({"name": "mnist"}, "c52370192f2f"),
              "clone": ({"name": "tensors", "path": "d.npz", "gaussian_clone": True}, "8d4a484ea428"),
              "explicit": ({"name": "tensors", "path": "d.npz", "n_train": 20000, "n_test": 2000}, "d3fe3182d12a")}
    for data, digest in pinned.values():
        assert parse_config({"data": data}).digest() == digest
    whole = parse_config({"data": {"name": "tensors", "path": "d.npz"}})
    assert (whole.data.n_train, whole.data.n_test) == (None, None) and whole.digest() != pinned["explicit"][1]
    assert parse_config({"data": {"name": "tensors", "path": "d.npz", "gaussian_clone": "true"}}).data.n_train == 20000
    assert parse_config({}).data.n_train == 20000
    for data in ({"n_train": None}, {"name": "tensors", "path": "d.npz", "gaussian_clone": True, "n_test": None}):
        with pytest.raises(TicketscopeError, match="null .the whole split. is for a tensors file"):
            parse_config({"data": data})


@pytest.mark.parametrize("arrays,needle", [
    ({"torus": np.array([2])}, "torus must be one 0 or 1"),
    ({"torus": np.array([0.5])}, "torus must be one 0 or 1"),
    ({"input_shape": np.array(36)}, "input_shape must be a list of positive integers"),
    ({"input_shape": np.array([6.0, 6.0])}, "input_shape must be a list of positive integers"),
])
def test_a_bad_geometry_is_one_clear_error(tmp_path, arrays, needle):
    X, y = blobs(20, 0)
    np.savez(tmp_path / "g.npz", X=X, y=y, **arrays)
    with pytest.raises(TicketscopeError, match=needle):
        make_dataset(DataConfig(name="tensors", path=str(tmp_path / "g.npz")))


def test_the_ensemble_planner_sizes_a_whole_file_from_its_headers(tmp_path):
    from ticketscope.engine.plan import run_memory_bytes

    X, y = blobs(800, 0)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    base = {"data": {"name": "tensors", "path": str(tmp_path / "d.npz")}, **SMALL}
    whole = run_memory_bytes(parse_config(base))
    assert whole == run_memory_bytes(parse_config({**base, "data": {**base["data"], "n_train": 640, "n_test": 160}}))
