"""Conformance: every registered data set and pruning rule passes ticketscope.checks, and the checks
catch deliberately broken ones (a check that cannot fail guards nothing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from conftest import TINY, merge
from data.test_images import write_cifar, write_idx_set
from data.test_tensors import blobs
from ticketscope import data
from ticketscope.checks import (ConformanceError, check_all, check_dataset, check_rule, registered_datasets,
                                registered_rules)
from ticketscope.config import DataConfig, parse_config
from ticketscope.data import Capabilities, Dataset, NLGPTask, capabilities, make_dataset, register_dataset
from ticketscope.data.clone import GaussianClone
from ticketscope.errors import TicketscopeError
from ticketscope.pruning import RULES, PruneContext


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These tensors are tiny: on a busy machine torch's worker threads make them 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def registries() -> Iterator[None]:
    """Restore the data set registry after a test registers into it."""
    saved = [(d, dict(d)) for d in (data.DATASETS, data.DATASET_PARAMS, data.registry.DATASETS.describers)]
    yield
    for d, old in saved:
        d.clear()
        d.update(old)


# ---------------------------------------------------------------------------- registered data sets

def _cifar(tmp: Path, **kw: object) -> DataConfig:
    write_cifar(tmp / "cifar10" / "cifar-10-batches-bin", per_batch=8)
    return DataConfig(name="cifar10", data_dir=str(tmp), **kw)


def _idx(name: str, gz: bool) -> Callable[[Path], DataConfig]:
    def config(tmp: Path) -> DataConfig:
        write_idx_set(tmp / name, gz=gz)
        return DataConfig(name=name, data_dir=str(tmp))
    return config


def _npz(tmp: Path, **kw: object) -> DataConfig:
    (X, y), (Xt, yt) = blobs(40, 0), blobs(12, 1)
    np.savez(tmp / "d.npz", X=X, y=y, X_test=Xt, y_test=yt)
    return DataConfig(name="tensors", path=str(tmp / "d.npz"), **kw)


def _safetensors_held_out(tmp: Path) -> DataConfig:
    """No test split in the file: the last fifth of X is held out (and must be disjoint from train)."""
    X, y = blobs(50, 2)
    save_file({"X": X.reshape(50, 36), "y": y.astype(np.int64), "input_shape": np.array([6, 6])},
              str(tmp / "d.safetensors"))
    return DataConfig(name="tensors", path=str(tmp / "d.safetensors"))


def natural_pixels(ds: Dataset, split: str) -> set[tuple[int, int, int]]:
    """(photograph, row, column) of every source pixel the patches of ``ds.train()``/``ds.test()`` cover:
    flat regions make equal patches from disjoint regions, so disjointness is by position."""
    labels, rows, cols = ds.positions(split, ds.default_n[split])  # type: ignore[attr-defined]
    L = ds.L  # type: ignore[attr-defined]
    return {(int(c), int(r) + i, int(q) + j) for c, r, q in zip(labels, rows, cols) for i in range(L) for j in range(L)}


# id -> (registered name, config written into tmp_path, check_dataset options)
CASES: dict[str, tuple[str, Callable[[Path], DataConfig], dict]] = {
    "nlgp": ("nlgp", lambda tmp: DataConfig(name="nlgp", L=6), {}),
    "nlgp-1d-open": ("nlgp", lambda tmp: DataConfig(name="nlgp", L=10, dim=1, torus=False, xis=(1.0, 2.0, 4.0)), {}),
    "nlgp-stream1": ("nlgp", lambda tmp: DataConfig(name="nlgp", L=6, stream=1), {}),
    "nlgp-clone": ("nlgp", lambda tmp: DataConfig(name="nlgp", L=6, gaussian_clone=True), {}),
    "nlgp-clone-open": ("nlgp", lambda tmp: DataConfig(name="nlgp", L=5, torus=False, gaussian_clone=True), {}),
    "copula": ("copula", lambda tmp: DataConfig(name="copula", L=6, params={"excess_kurtosis": -1.5}), {}),
    "copula-heavy-1d-open": ("copula", lambda tmp: DataConfig(name="copula", L=10, dim=1, torus=False, xis=(1.0, 2.0, 4.0),
                                                               params={"excess_kurtosis": 3.0}), {}),
    "copula-field-open": ("copula", lambda tmp: DataConfig(name="copula", L=5, torus=False,
                                                            params={"excess_kurtosis": -1.0, "covariance_of": "field"}), {}),
    "copula-clone": ("copula", lambda tmp: DataConfig(name="copula", L=5, torus=False, gaussian_clone=True), {}),
    "elliptical": ("elliptical", lambda tmp: DataConfig(name="elliptical", L=6), {}),
    "elliptical-1d-open": ("elliptical", lambda tmp: DataConfig(name="elliptical", L=10, dim=1, torus=False,
                                                                 xis=(1.0, 2.0, 4.0),
                                                                 params={"excess_kurtosis": 1.0, "radius": "inverse-gamma"}), {}),
    "elliptical-clone": ("elliptical", lambda tmp: DataConfig(name="elliptical", L=6, gaussian_clone=True,
                                                               params={"radius": "lognormal"}), {}),
    "cifar10": ("cifar10", _cifar, {"nested": True}),
    "cifar10-rgb": ("cifar10", lambda tmp: _cifar(tmp, grayscale=False, standardize=True), {"nested": True}),
    "mnist": ("mnist", _idx("mnist", gz=True), {"nested": True}),
    "fashion-mnist": ("fashion-mnist", _idx("fashion-mnist", gz=False), {"nested": True}),
    "natural": ("natural", lambda tmp: DataConfig(name="natural", L=4), {"item_ids": natural_pixels}),
    "natural-clone": ("natural", lambda tmp: DataConfig(name="natural", L=4, gaussian_clone=True), {}),
    "tensors-npz": ("tensors", _npz, {"nested": True}),
    "tensors-safetensors": ("tensors", _safetensors_held_out, {"nested": True}),
    "tensors-clone": ("tensors", lambda tmp: _npz(tmp, gaussian_clone=True, ridge=0.1), {}),
    "tensors-clone-stream1": ("tensors", lambda tmp: _npz(tmp, gaussian_clone=True, stream=1), {}),
}


def test_every_registered_data_set_has_a_case():
    missing = set(registered_datasets()) - {name for name, _, _ in CASES.values()}
    assert not missing, f"registered data sets without a conformance case here: {sorted(missing)}"


@pytest.mark.parametrize("case", list(CASES))
def test_data_set_conforms(case: str, tmp_path: Path) -> None:
    _, config, options = CASES[case]
    check_dataset(config(tmp_path), **options)


@pytest.mark.parametrize("case", list(CASES))
def test_capabilities_agree_with_the_built_data_set(case: str, tmp_path: Path) -> None:
    """What a data set declares from its config alone (config validation asks it) is what it does once built."""
    _, config, _ = CASES[case]
    cfg = config(tmp_path)
    caps, ds = capabilities(cfg), make_dataset(cfg)
    assert caps == cfg.capabilities()  # the config asks the same declaration
    assert caps.infinite == ds.infinite and caps.torus == ds.torus
    assert caps.num_classes in (None, ds.num_classes)
    if caps.infinite:
        assert cfg.stream in caps.streams
    if caps.analytic_covariance:
        cov = ds.covariance(0)  # type: ignore[attr-defined]
        assert cov.dtype == torch.float64 and cov.shape == (ds.input_dim, ds.input_dim)
    if cfg.gaussian_clone:
        assert isinstance(ds, GaussianClone) != caps.natural_clone
    kurt = ds.marginal_excess_kurtosis(n=64)
    assert isinstance(kurt, float) and (kurt == kurt or "mnist" in case or "cifar" in case)


def test_config_validation_asks_capabilities_not_names(registries) -> None:
    """Online training needs an infinite stream and the fixed readout two classes, whoever declares them."""
    ok = {"model": {"readout": "fixed"}, "data": {"online": True}}
    for name, params in (("nlgp", None), ("copula", {"excess_kurtosis": 2.0}), ("elliptical", {"radius": "lognormal"})):
        cfg = parse_config(merge(TINY, {**ok, "data": {"name": name, "online": True, "params": params}}))
        assert cfg.data.capabilities().infinite and cfg.data.capabilities().num_classes == 2
    with pytest.raises(TicketscopeError, match="data set 'cifar10' is finite"):
        parse_config(merge(TINY, {"data": {"name": "cifar10", "online": True}}))
    parse_config(merge(TINY, {"data": {"name": "cifar10", "online": True, "gaussian_clone": True}}))  # a fitted clone streams
    with pytest.raises(TicketscopeError, match="two-class task .* data set 'cifar10' has 10 classes"):
        parse_config(merge(TINY, {"model": {"readout": "fixed"}, "data": {"name": "cifar10"}}))
    with pytest.raises(TicketscopeError, match="two-class task .* 'copula' has 3 classes"):
        parse_config(merge(TINY, {"model": {"readout": "fixed"}, "data": {"name": "copula", "xis": [1, 2, 3]}}))
    with pytest.raises(TicketscopeError, match="two-class task .* 'tensors' has an unknown number of classes"):
        parse_config(merge(TINY, {"model": {"readout": "fixed"}, "data": {"name": "tensors", "path": "x.npz"}}))
    with pytest.raises(TicketscopeError, match="data.stream: the data set 'copula' has sample stream version 2 only"):
        parse_config(merge(TINY, {"data": {"name": "copula", "stream": 1}}))
    parse_config(merge(TINY, {"data": {"name": "nlgp", "stream": 1}}))

    def two_streams(cfg):
        return make_dataset(DataConfig(name="nlgp", L=cfg.L, dim=1, xis=cfg.xis))

    register_dataset("undeclared")(two_streams)
    with pytest.raises(TicketscopeError, match="data.online needs .* 'undeclared' is finite"):
        parse_config(merge(TINY, {"data": {"name": "undeclared", "online": True}}))
    register_dataset("declared", capabilities=Capabilities(infinite=True, num_classes=2))(two_streams)
    parse_config(merge(TINY, {**ok, "data": {"name": "declared", "online": True}}))
    register_dataset("by-class", capabilities=NLGPTask)(two_streams)
    assert capabilities(DataConfig(name="by-class", torus=False, xis=(1, 2, 3))).num_classes == 3


@pytest.mark.parametrize("name", registered_rules())
def test_rule_conforms(name: str) -> None:
    check_rule(name)


# ------------------------------------------------------------------------------- broken data sets

FEATURES = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))


class Toy(Dataset):
    """A correct finite set: 30 training and 10 test rows, seeded subsets nested in n."""

    name, input_shape, num_classes = "toy", (3,), 2

    def _rows(self, split: str) -> torch.Tensor:
        return torch.arange(30) if split == "train" else torch.arange(30, 40)

    def _order(self, size: int, n: int | None, seed: int) -> torch.Tensor:
        return torch.arange(size) if n is None else torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]

    def _take(self, split: str, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._rows(split)
        if n is not None and n > len(rows):
            raise ValueError(f"only {len(rows)} {split} items")
        idx = rows[self._order(len(rows), n, seed)]
        return FEATURES[idx], idx % 2

    def train(self, n=None, seed=0):
        return self._take("train", n, seed)

    def test(self, n=None, seed=0):
        return self._take("test", n, seed)

    @property
    def test_size(self) -> int:
        return 10


class Leaky(Toy):
    def _rows(self, split):
        return torch.arange(30) if split == "train" else torch.arange(28, 38)


class Float64(Toy):
    def _take(self, split, n, seed):
        X, y = super()._take(split, n, seed)
        return X.double(), y


class BadLabels(Toy):
    def _take(self, split, n, seed):
        X, y = super()._take(split, n, seed)
        return X, y * 2


class Short(Toy):
    def _take(self, split, n, seed):
        X, y = super()._take(split, n, seed)
        return (X[:-1], y[:-1]) if n is not None else (X, y)


class Unseeded(Toy):
    def _order(self, size, n, seed):
        return torch.arange(size) if n is None else torch.randperm(size)[:n]


class SeedBlind(Toy):
    def _order(self, size, n, seed):
        return torch.arange(size if n is None else n)


class NotNested(Toy):
    def _order(self, size, n, seed):
        return torch.arange(size) if n is None else torch.randperm(size, generator=torch.Generator().manual_seed(seed + n))[:n]


class Unrefused(Toy):
    """Answers test(11) with its 10 test items."""

    def _take(self, split, n, seed):
        rows = self._rows(split)
        return super()._take(split, None if n is not None and n > len(rows) else n, seed)


class Unflattened(Toy):
    def _take(self, split, n, seed):
        X, y = super()._take(split, n, seed)
        return X[:, None, :], y


class WrongTestSize(Toy):
    @property
    def test_size(self) -> int:
        return 12


class Stream(Dataset):
    """A correct infinite stream: item i of seed s is N(0, I) under a generator seeded by (s, i)."""

    name, input_shape, num_classes, infinite = "toy-stream", (3,), 2, True

    def _item(self, seed: int, i: int) -> torch.Tensor:
        return torch.randn(3, generator=torch.Generator().manual_seed(1000003 * seed + i))

    def _positions(self, n: int, offset: int) -> range:
        return range(offset, offset + n)

    def sample(self, n, seed=0, offset=0):
        items = self._positions(n, offset)
        return torch.stack([self._item(seed, i) for i in items]), torch.tensor([i % 2 for i in items])

    def train(self, n=None, seed=0):
        return self.sample(n, 2 * seed)

    def test(self, n=None, seed=0):
        return self.sample(n, 2 * seed + 1)


class CallRelative(Stream):
    """Numbers items from the start of each call: chunks at an offset replay items from 0."""

    def sample(self, n, seed=0, offset=0):
        X = torch.stack([self._item(seed, j) for j in range(n)])
        return X, torch.arange(offset, offset + n) % 2


class Cursor(Stream):
    """Ignores ``offset`` and continues where its last call stopped: right only for calls in order."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def sample(self, n, seed=0, offset=0):
        start = self._next.get(seed, 0)
        self._next[seed] = start + n
        return super().sample(n, seed, start)


class Offset(Stream):
    """Numbers items of a call from ``offset // 2``: chunks starting at 0 agree, later ones do not."""

    def _positions(self, n, offset):
        return range(offset // 2, offset // 2 + n)


class NotAPrefix(Stream):
    """train(n) draws its own stream for each n."""

    def train(self, n=None, seed=0):
        return self.sample(n, 2 * seed + 1000 * n)


class TrainIsTest(Stream):
    def test(self, n=None, seed=0):
        return self.train(n, seed)


def test_correct_toy_sets_pass():
    check_dataset(Toy, nested=True)
    check_dataset(Stream)
    check_all(datasets=[Toy, Stream], rules=["imp"])


@pytest.mark.parametrize("broken, match, options", [pytest.param(*case, id=case[0].__name__) for case in [
    (Leaky, "train and test are not disjoint", {}),
    (Float64, "dtype torch.float64, expected torch.float32", {}),
    (BadLabels, "outside 0..1", {}),
    (Short, r"returned \d+ items, asked for", {}),
    (Unseeded, "not deterministic per seed", {}),
    (SeedBlind, "same items for seeds 0 and 1", {}),
    (NotNested, "subsets are not nested", {"nested": True}),
    (Unrefused, r"test\(11\) returned, but test_size is 10", {}),
    (Unflattened, r"X has shape \(\d+, 1, 3\), expected \(n, 3\)", {}),
    (Offset, "not chunking invariant", {}),
    (NotAPrefix, r"train\(32, seed=0\) is not the first 32 items", {}),
    (WrongTestSize, r"test_size is 12 but test\(None\) returns 10", {}),
    (CallRelative, "not chunking invariant", {}),
    (Cursor, "not chunking invariant: .* in reverse order", {"nested": False}),  # nested would catch it first
    (TrainIsTest, "train and test are not disjoint", {}),
]])
def test_broken_data_sets_are_caught(broken, match, options):
    with pytest.raises(ConformanceError, match=match) as err:
        check_dataset(broken, **options)
    assert f"data set {broken.name!r}" in str(err.value)


def test_natural_patches_need_positions_for_disjointness(tmp_path):
    """Why natural passes item_ids: with 4 x 4 patches, flat regions of disjoint columns coincide
    pixel for pixel, and the bit-for-bit rule would call that a leak."""
    with pytest.raises(ConformanceError, match="train and test are not disjoint"):
        check_dataset(DataConfig(name="natural", L=4))


# ----------------------------------------------------------------------------------- broken rules

def _imp(weights, masks, ctx):
    return RULES["imp"](weights, masks, ctx)


def forgets_mask(weights, masks, ctx):
    """Keeps the smallest |w| among all weights, pruned ones (0 after retraining) included."""
    return _imp({n: 1 / (w.abs() + 1e-3) for n, w in weights.items()}, {n: torch.ones_like(m) for n, m in masks.items()}, ctx)


def one_short(weights, masks, ctx):
    new = _imp(weights, masks, ctx)
    first = new["layers.0"].flatten()
    first[first.nonzero()[0]] = 0
    return new


def unseeded(weights, masks, ctx):
    ctx.seed = int(torch.randint(1 << 30, ()))
    return RULES["random"](weights, masks, ctx)


def bool_masks(weights, masks, ctx):
    return {n: m.bool() for n, m in _imp(weights, masks, ctx).items()}


def in_place(weights, masks, ctx):
    for n, m in _imp(weights, masks, ctx).items():
        masks[n].copy_(m)
    return masks


def ignores_scope(weights, masks, ctx):
    """Always prunes layer by layer, reading the global total as every layer's target."""
    per_layer = PruneContext(scope="layerwise", targets={n: ctx.targets.get(n, ctx.targets.get("*")) for n in weights},
                             seed=ctx.seed)
    return _imp(weights, masks, per_layer)


def dense_magnitude(weights, masks, ctx):
    """One-shot magnitude pruning: needs ctx.dense_weights, so it must declare it."""
    return RULES["imp"]({n: ctx.dense_weights[n] for n in weights}, masks, ctx)


@pytest.mark.parametrize("rule, match", [pytest.param(*case, id=case[0].__name__) for case in [
    (forgets_mask, r"revived \d+ pruned weight"),
    (one_short, "layer 'layers.0' keeps .* weights, target"),
    (unseeded, "not deterministic"),
    (bool_masks, "dtype torch.bool, expected .* torch.float32"),
    (in_place, "modified its inputs"),
    (ignores_scope, "global scope, round 1\\): keeps .* in total"),
    (dense_magnitude, "raised KeyError.*declares it needs: nothing"),
]])
def test_broken_rules_are_caught(rule, match):
    with pytest.raises(ConformanceError, match=match) as err:
        check_rule(rule)
    assert f"rule {rule.__name__!r}" in str(err.value)


def test_a_correct_rule_function_passes_with_its_declared_needs():
    check_rule(dense_magnitude, needs=("dense_weights",))


def test_a_plug_in_rule_is_checked_with_its_params_at_their_defaults():
    from pydantic import BaseModel, ConfigDict

    import ticketscope.pruning as pruning

    class Power(BaseModel):
        model_config = ConfigDict(extra="forbid")
        power: float = 2.0

    @pruning.register("power-magnitude", params=Power)
    def power_magnitude(weights, masks, ctx):
        return RULES["imp"]({n: w.abs() ** ctx.params.power for n, w in weights.items()}, masks, ctx)

    try:
        assert "power-magnitude" in registered_rules()
        check_rule("power-magnitude")
        check_all(rules=["power-magnitude"])
        with pytest.raises(ConformanceError, match="raised AttributeError"):  # as a bare function: no params
            check_rule(power_magnitude)
        check_rule(power_magnitude, params=Power(power=0.5))
    finally:
        for registry in (pruning.RULES, pruning.RULE_NEEDS, getattr(pruning, "RULE_PARAMS", {})):
            registry.pop("power-magnitude", None)
