"""Data sets: the NLGP task, real images, offline natural images, your own tensors, Gaussian clones.

All share the :class:`Dataset` interface. Each is chosen by its registered name (``data.name``):
:func:`register_dataset` adds a factory ``DataConfig -> Dataset`` to :data:`DATASETS`, and
:func:`make_dataset` builds the one a config names, wrapped in its Gaussian clone when
``data.gaussian_clone`` (a data set that makes its own clone, like the NLGP's exact one, declares
``makes_own_clone``). A data set with parameters of its own declares them as a pydantic model
(``params=Model``): a config's ``data.params`` is validated against it and the factory reads the instance
as ``cfg.params``. The synthetic ones draw from versioned block streams (:mod:`.stream`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .. import registry
from ..plugins import check_params_model, load_plugins
from .base import Dataset
from .nlgp import NLGPTask

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["DATASETS", "DATASET_PARAMS", "Dataset", "NLGPTask", "Signature", "make_dataset", "register_dataset",
           "signature", "split_sizes"]

Factory = Callable[["DataConfig"], Dataset]
Signature = tuple[tuple[int, ...], int]
"""(input_shape, num_classes): what the engine needs to know of a data set to stack its runs."""
DATASETS: dict[str, Factory] = registry.DATASETS.objects
DATASET_PARAMS: dict[str, type[BaseModel] | None] = registry.DATASETS.params
"""Each data set's params model (None: it takes no parameters; ``data.params`` must stay empty)."""
_OWN_CLONE: set[str] = set()
_SIGNATURES: dict[str, Callable[["DataConfig"], Signature]] = {}


def register_dataset(name: str, makes_own_clone: bool = False, params: type[BaseModel] | None = None,
                     signature: Callable[["DataConfig"], Signature] | None = None) -> Callable[[Factory], Factory]:
    """Register ``factory(cfg) -> Dataset`` under ``name`` (then ``data: {name: NAME}`` selects it).

    ``params``: a pydantic model of the data set's own parameters (subclass
    :class:`ticketscope.config.Params`): ``data.params`` is validated against it, unknown keys refused,
    and the factory gets the instance as ``cfg.params``. ``signature(cfg) -> (input_shape, num_classes)``
    answers the shape without loading data (default: build the data set once and ask it).
    """
    check_params_model(f"data set {name!r}", params)

    def deco(factory: Factory) -> Factory:
        registry.DATASETS.add(name, factory, params)
        if makes_own_clone:
            _OWN_CLONE.add(name)
        if signature is not None:
            _SIGNATURES[name] = signature
        else:
            _SIGNATURES.pop(name, None)
        return factory

    return deco


@lru_cache(maxsize=256)
def _built_signature(cfg: "DataConfig") -> Signature:
    ds = make_dataset(cfg)
    return tuple(ds.input_shape), ds.num_classes


def signature(cfg: "DataConfig") -> Signature:
    """(input_shape, num_classes) of the data set ``cfg`` names (a Gaussian clone has its source's): from
    the data set's registered ``signature`` without loading data, else by building it once per config."""
    if cfg.name in _SIGNATURES:
        shape, classes = _SIGNATURES[cfg.name](cfg)
        return tuple(int(v) for v in shape), int(classes)
    return _built_signature(cfg)


def split_sizes(cfg: DataConfig) -> tuple[int, int]:
    """(training, test) items a run of ``cfg`` holds: ``n_train`` / ``n_test``, or where null (a tensors
    file used whole) the file's split sizes, read from its headers."""
    if cfg.n_train is not None and cfg.n_test is not None:
        return cfg.n_train, cfg.n_test
    from .tensors import file_split_sizes

    n_train, n_test = file_split_sizes(cfg.path)
    return (n_train if cfg.n_train is None else cfg.n_train), (n_test if cfg.n_test is None else cfg.n_test)


def make_dataset(cfg: "DataConfig") -> Dataset:
    """The data set a config names (its Gaussian clone when ``cfg.gaussian_clone``); synthetic
    ones sample from stream version ``cfg.stream``."""
    source = DATASETS[cfg.name](cfg)
    if not cfg.gaussian_clone or cfg.name in _OWN_CLONE:
        return source
    from .clone import GaussianClone

    return GaussianClone(source, ridge=cfg.ridge, stream=cfg.stream)


@register_dataset("nlgp", makes_own_clone=True, signature=lambda cfg: ((cfg.L,) * cfg.dim, len(cfg.xis)))
def _nlgp(cfg: "DataConfig") -> Dataset:
    return NLGPTask(L=cfg.L, dim=cfg.dim, xis=cfg.xis, gain=cfg.gain, gaussian_clone=cfg.gaussian_clone,
                    torus=cfg.torus, ridge=cfg.ridge, stream=cfg.stream)


@register_dataset("cifar10", signature=lambda cfg: ((32, 32) if cfg.grayscale else (3, 32, 32), 10))
def _cifar10(cfg: "DataConfig") -> Dataset:
    from .images import Cifar10

    return Cifar10(cfg.data_dir, grayscale=cfg.grayscale, standardize=cfg.standardize)


@register_dataset("mnist", signature=lambda cfg: ((28, 28), 10))
@register_dataset("fashion-mnist", signature=lambda cfg: ((28, 28), 10))
def _idx(cfg: "DataConfig") -> Dataset:
    from .images import IdxImages

    return IdxImages(cfg.name, cfg.data_dir, standardize=cfg.standardize)


@register_dataset("natural", signature=lambda cfg: ((cfg.L, cfg.L), 10))
def _natural(cfg: "DataConfig") -> Dataset:
    from .natural import NaturalPatches  # here, not at the top: it imports scikit-image (~0.4 s)

    return NaturalPatches(L=cfg.L, standardize=cfg.standardize)


def _tensors_signature(cfg: "DataConfig") -> Signature:
    from .tensors import file_signature

    return file_signature(cfg.path)


@register_dataset("tensors", signature=_tensors_signature)
def _tensors(cfg: "DataConfig") -> Dataset:
    from .tensors import TensorFile

    return TensorFile(cfg.path, standardize=cfg.standardize)


load_plugins()  # after the registry exists: plugins register into it
