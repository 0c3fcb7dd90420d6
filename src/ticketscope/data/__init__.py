"""Data sets: the NLGP task, copula and elliptical inputs of a chosen covariance, real images, offline
natural images, your own tensors, Gaussian clones.

All share the :class:`Dataset` interface. Each is chosen by its registered name (``data.name``):
:func:`register_dataset` adds a factory ``DataConfig -> Dataset`` to :data:`DATASETS`, and
:func:`make_dataset` builds the one a config names, wrapped in its Gaussian clone when
``data.gaussian_clone``. A data set declares what it can do (:class:`Capabilities`: an infinite stream,
a torus, an analytic covariance, its own exact clone, its classes, its stream versions), answered by
:func:`capabilities` from a config before anything is loaded: config validation asks it instead of
naming data sets, and a data set with a natural clone (the NLGP's exact one) is not wrapped in a fitted
clone. A data set with parameters of its own declares them as a pydantic model (``params=Model``): a
config's ``data.params`` is validated against it and the factory reads the instance as ``cfg.params``.
The synthetic ones draw from versioned block streams (:mod:`.stream`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .. import registry
from ..plugins import check_params_model, load_plugins
from .base import Capabilities, Dataset
from .copula import CopulaParams, CopulaTask
from .elliptical import EllipticalParams, EllipticalTask
from .nlgp import NLGPTask
from .stream import VERSIONS

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["DATASETS", "DATASET_PARAMS", "Capabilities", "CopulaTask", "Dataset", "EllipticalTask", "NLGPTask",
           "Signature", "capabilities", "make_dataset", "register_dataset", "signature", "split_sizes"]

Factory = Callable[["DataConfig"], Dataset]
Signature = tuple[tuple[int, ...], int]
"""(input_shape, num_classes): what the engine needs to know of a data set to stack its runs."""
DATASETS: dict[str, Factory] = registry.DATASETS.objects
DATASET_PARAMS: dict[str, type[BaseModel] | None] = registry.DATASETS.params
"""Each data set's params model (None: it takes no parameters; ``data.params`` must stay empty)."""
_SIGNATURES: dict[str, Callable[["DataConfig"], Signature]] = {}
Declared = Capabilities | Callable[["DataConfig"], Capabilities] | type[Dataset]


def _declared(declared: Declared | None, makes_own_clone: bool) -> Callable[["DataConfig"], Capabilities]:
    """``cfg -> Capabilities`` of the source data set (its Gaussian clone aside) from what was declared."""
    if isinstance(declared, type) and issubclass(declared, Dataset):
        ask = declared.capabilities
    elif isinstance(declared, Capabilities) or declared is None:
        fixed = declared or Capabilities()
        ask = lambda cfg: fixed  # noqa: E731
    else:
        ask = declared
    if not makes_own_clone:
        return ask
    return lambda cfg: replace(ask(cfg), natural_clone=True)


def _with_clone(own: Capabilities, cfg: "DataConfig") -> Capabilities:
    """The capabilities of what ``cfg`` builds: the source's, or with ``gaussian_clone`` and no natural
    clone, a fitted clone's (an infinite Gaussian stream of either version, covariance estimated)."""
    if not cfg.gaussian_clone or own.natural_clone:
        return own
    return Capabilities(infinite=True, torus=own.torus, num_classes=own.num_classes, streams=VERSIONS)


def register_dataset(name: str, makes_own_clone: bool = False, params: type[BaseModel] | None = None,
                     signature: Callable[["DataConfig"], Signature] | None = None,
                     capabilities: Declared | None = None) -> Callable[[Factory], Factory]:
    """Register ``factory(cfg) -> Dataset`` under ``name`` (then ``data: {name: NAME}`` selects it).

    ``params``: a pydantic model of the data set's own parameters (subclass
    :class:`ticketscope.config.Params`): ``data.params`` is validated against it, unknown keys refused,
    and the factory gets the instance as ``cfg.params``. ``signature(cfg) -> (input_shape, num_classes)``
    answers the shape without loading data (default: build the data set once and ask it).
    ``capabilities``: what the data set can do (:class:`Capabilities`), as the Dataset class the factory
    builds (its ``capabilities(cfg)`` is asked), a function ``cfg -> Capabilities`` or a fixed value;
    default: a finite set of unknown classes (so ``data.online`` needs its ``gaussian_clone``).
    ``makes_own_clone``: the data set handles ``data.gaussian_clone`` itself (``natural_clone``).
    """
    check_params_model(f"data set {name!r}", params)
    own = _declared(capabilities, makes_own_clone)

    def deco(factory: Factory) -> Factory:
        registry.DATASETS.add(name, factory, params, describe=lambda cfg: _with_clone(own(cfg), cfg))
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


def capabilities(cfg: "DataConfig") -> Capabilities:
    """What the data set ``cfg`` names (its Gaussian clone where ``cfg.gaussian_clone``) can do, from its
    declaration alone: nothing is built or loaded. An entry added without a declaration answers the
    defaults of :class:`Capabilities` (its fitted clone: an infinite stream)."""
    caps = registry.DATASETS.describe(cfg.name, cfg)
    return _with_clone(Capabilities(), cfg) if caps is None else caps


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
    if not cfg.gaussian_clone or capabilities(cfg).natural_clone:
        return source
    from .clone import GaussianClone

    return GaussianClone(source, ridge=cfg.ridge, stream=cfg.stream)


def _grid_signature(cfg: "DataConfig") -> Signature:
    return (cfg.L,) * cfg.dim, len(cfg.xis)


@register_dataset("nlgp", capabilities=NLGPTask, signature=_grid_signature)
def _nlgp(cfg: "DataConfig") -> Dataset:
    return NLGPTask(L=cfg.L, dim=cfg.dim, xis=cfg.xis, gain=cfg.gain, gaussian_clone=cfg.gaussian_clone,
                    torus=cfg.torus, ridge=cfg.ridge, stream=cfg.stream)


@register_dataset("copula", capabilities=CopulaTask, params=CopulaParams, signature=_grid_signature)
def _copula(cfg: "DataConfig") -> Dataset:
    return CopulaTask(L=cfg.L, dim=cfg.dim, xis=cfg.xis, excess_kurtosis=cfg.params.excess_kurtosis,
                      covariance_of=cfg.params.covariance_of, gaussian_clone=cfg.gaussian_clone, torus=cfg.torus,
                      ridge=cfg.ridge, stream=cfg.stream)


@register_dataset("elliptical", capabilities=EllipticalTask, params=EllipticalParams, signature=_grid_signature)
def _elliptical(cfg: "DataConfig") -> Dataset:
    return EllipticalTask(L=cfg.L, dim=cfg.dim, xis=cfg.xis, excess_kurtosis=cfg.params.excess_kurtosis,
                          radius=cfg.params.radius, gaussian_clone=cfg.gaussian_clone, torus=cfg.torus,
                          ridge=cfg.ridge, stream=cfg.stream)


TEN_CLASSES = Capabilities(num_classes=10)


@register_dataset("cifar10", capabilities=TEN_CLASSES,
                  signature=lambda cfg: ((32, 32) if cfg.grayscale else (3, 32, 32), 10))
def _cifar10(cfg: "DataConfig") -> Dataset:
    from .images import Cifar10

    return Cifar10(cfg.data_dir, grayscale=cfg.grayscale, standardize=cfg.standardize)


@register_dataset("mnist", capabilities=TEN_CLASSES, signature=lambda cfg: ((28, 28), 10))
@register_dataset("fashion-mnist", capabilities=TEN_CLASSES, signature=lambda cfg: ((28, 28), 10))
def _idx(cfg: "DataConfig") -> Dataset:
    from .images import IdxImages

    return IdxImages(cfg.name, cfg.data_dir, standardize=cfg.standardize)


@register_dataset("natural", capabilities=TEN_CLASSES, signature=lambda cfg: ((cfg.L, cfg.L), 10))
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
