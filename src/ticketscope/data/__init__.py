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
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ..plugins import check_params_model, load_plugins
from .base import Dataset
from .nlgp import NLGPTask

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["DATASETS", "DATASET_PARAMS", "Dataset", "NLGPTask", "make_dataset", "register_dataset"]

Factory = Callable[["DataConfig"], Dataset]
DATASETS: dict[str, Factory] = {}
DATASET_PARAMS: dict[str, type[BaseModel] | None] = {}
"""Each data set's params model (None: it takes no parameters; ``data.params`` must stay empty)."""
_OWN_CLONE: set[str] = set()


def register_dataset(name: str, makes_own_clone: bool = False,
                     params: type[BaseModel] | None = None) -> Callable[[Factory], Factory]:
    """Register ``factory(cfg) -> Dataset`` under ``name`` (then ``data: {name: NAME}`` selects it).

    ``params``: a pydantic model of the data set's own parameters (subclass
    :class:`ticketscope.config.Params`): ``data.params`` is validated against it, unknown keys refused,
    and the factory gets the instance as ``cfg.params``.
    """
    check_params_model(f"data set {name!r}", params)

    def deco(factory: Factory) -> Factory:
        DATASETS[name], DATASET_PARAMS[name] = factory, params
        if makes_own_clone:
            _OWN_CLONE.add(name)
        return factory

    return deco


def make_dataset(cfg: "DataConfig") -> Dataset:
    """The data set a config names (its Gaussian clone when ``cfg.gaussian_clone``); synthetic
    ones sample from stream version ``cfg.stream``."""
    source = DATASETS[cfg.name](cfg)
    if not cfg.gaussian_clone or cfg.name in _OWN_CLONE:
        return source
    from .clone import GaussianClone

    return GaussianClone(source, ridge=cfg.ridge, stream=cfg.stream)


@register_dataset("nlgp", makes_own_clone=True)
def _nlgp(cfg: "DataConfig") -> Dataset:
    return NLGPTask(L=cfg.L, dim=cfg.dim, xis=cfg.xis, gain=cfg.gain, gaussian_clone=cfg.gaussian_clone,
                    torus=cfg.torus, ridge=cfg.ridge, stream=cfg.stream)


@register_dataset("cifar10")
def _cifar10(cfg: "DataConfig") -> Dataset:
    from .images import Cifar10

    return Cifar10(cfg.data_dir, grayscale=cfg.grayscale, standardize=cfg.standardize)


@register_dataset("mnist")
@register_dataset("fashion-mnist")
def _idx(cfg: "DataConfig") -> Dataset:
    from .images import IdxImages

    return IdxImages(cfg.name, cfg.data_dir, standardize=cfg.standardize)


@register_dataset("natural")
def _natural(cfg: "DataConfig") -> Dataset:
    from .natural import NaturalPatches  # here, not at the top: it imports scikit-image (~0.4 s)

    return NaturalPatches(L=cfg.L, standardize=cfg.standardize)


@register_dataset("tensors")
def _tensors(cfg: "DataConfig") -> Dataset:
    from .tensors import TensorFile

    return TensorFile(cfg.path, standardize=cfg.standardize)


load_plugins()  # after the registry exists: plugins register into it
