"""Offline natural-image patches: shapes, balance, disjoint train/test regions, determinism, no network."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from ticketscope.data.natural import PHOTOGRAPHS, TRAIN_FRACTION, NaturalPatches, cut_patches, photograph
from ticketscope.errors import TicketscopeError


@pytest.fixture(scope="module")
def patches() -> NaturalPatches:
    return NaturalPatches(L=8)


def test_shapes_range_and_balanced_classes(patches: NaturalPatches) -> None:
    assert patches.num_classes == len(PHOTOGRAPHS) >= 6 and patches.input_shape == (8, 8)
    assert not patches.torus and not patches.infinite
    X, y = patches.train(95, seed=1)
    assert X.shape == (95, 64) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= X.min() and X.max() <= 1
    counts = torch.bincount(y, minlength=patches.num_classes)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 95
    assert torch.equal(torch.bincount(patches.train(100)[1]), torch.full((10,), 10))
    assert len(patches.train()[1]) == 5000 and len(patches.test()[1]) == 1000


def test_patches_are_cut_at_the_reported_positions(patches: NaturalPatches) -> None:
    """What train() returns is exactly photograph[r:r+L, c:c+L] / 255 at positions()."""
    X, y = patches.train(40, seed=2)
    labels, rows, cols = patches.positions("train", 40, seed=2)
    np.testing.assert_array_equal(y.numpy(), labels)
    for i in range(40):
        img = photograph(patches.classes[labels[i]])
        np.testing.assert_array_equal(X[i].numpy(), (img[rows[i]:rows[i] + 8, cols[i]:cols[i] + 8] / np.float32(255)).ravel())


def test_train_and_test_regions_are_disjoint() -> None:
    """Pixel masks of everything train and test cover never intersect, and each respects the cut."""
    L = 16
    ds = NaturalPatches(L=L)
    covered = {}
    for split in ("train", "test"):
        labels, rows, cols = ds.positions(split, 5000, seed=0)
        masks = [np.zeros(img.shape, dtype=bool) for img in ds.images]
        for c, r, col in zip(labels, rows, cols):
            masks[c][r:r + L, col:col + L] = True
        covered[split] = masks
    for c, img in enumerate(ds.images):
        cut = int(TRAIN_FRACTION * img.shape[1])
        train, test = covered["train"][c], covered["test"][c]
        assert not (train & test).any()
        assert not train[:, cut:].any() and not test[:, :cut].any()
        # the regions are used up to the cut (500 uniform corners per class reach within a few columns)
        assert train[:, cut - 5:cut].any() and test[:, cut:cut + 5].any()


def test_seed_determinism() -> None:
    a, b = NaturalPatches(L=8), NaturalPatches(L=8)
    assert torch.equal(a.train(50, seed=3)[0], b.train(50, seed=3)[0])
    assert torch.equal(a.test(50, seed=3)[0], b.test(50, seed=3)[0])
    assert not torch.equal(a.train(50, seed=3)[0], a.train(50, seed=4)[0])
    assert not torch.equal(a.train(50, seed=3)[0], NaturalPatches(L=8, seed=1).train(50, seed=3)[0])


def test_standardized_patches(patches: NaturalPatches) -> None:
    """Per patch: zero mean; unit variance unless its contrast is under one grey level (then std * 255)."""
    X, _ = NaturalPatches(L=8, standardize=True).train(500, seed=5)
    raw, _ = patches.train(500, seed=5)
    raw_std = raw.std(1, correction=0)
    contrast = raw_std >= 1 / 255
    assert contrast.sum() > 400 and (~contrast).any()
    np.testing.assert_allclose(X.mean(1).numpy(), 0, atol=1e-4)  # float32 centring error / contrast ~ 1e-7 / 4e-3
    np.testing.assert_allclose(X[contrast].std(1, correction=0).numpy(), 1, rtol=1e-4)
    np.testing.assert_allclose(X[~contrast].std(1, correction=0).numpy(), 255 * raw_std[~contrast].numpy(), rtol=1e-4)


def test_no_network_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_socket(*args: object, **kwargs: object) -> None:
        raise AssertionError("natural patches tried to open a network socket")

    monkeypatch.setattr(socket, "socket", no_socket)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    X, _ = NaturalPatches(L=8).test(20)
    assert X.shape == (20, 64)


def test_too_large_patches_are_refused() -> None:
    with pytest.raises(TicketscopeError, match="L=100 is too large"):
        NaturalPatches(L=100)


def test_cut_patches() -> None:
    img = np.arange(30, dtype=np.float32).reshape(5, 6)
    out = cut_patches(img, np.array([0, 3]), np.array([4, 1]), 2)
    np.testing.assert_array_equal(out, [[[4, 5], [10, 11]], [[19, 20], [25, 26]]])


def test_the_analysis_probe_draws_as_many_patches_as_asked():
    """Patches can be drawn in any number (no fixed held-out split), so the probe set is never cut to n_test."""
    from ticketscope.analysis import probe_set
    from ticketscope.config import DataConfig
    from ticketscope.data import make_dataset

    ds = make_dataset(DataConfig(name="natural", L=8, n_test=100))
    assert ds.test_size is None
    X, y = probe_set(ds, 300, seed=5)
    assert X.shape == (300, 64) and torch.equal(X, ds.test(300, seed=5)[0])
