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

from conftest import TINY, merge
from ticketscope.config import DataConfig
from ticketscope.data import make_dataset
from ticketscope.errors import TicketscopeError

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
