"""Data sets: the NLGP task, real images, offline natural images and Gaussian clones.

All share the :class:`Dataset` interface; :func:`make_dataset` builds one from a ``DataConfig``.
The synthetic ones (NLGP and clones) draw from versioned block streams (:mod:`.stream`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Dataset
from .nlgp import NLGPTask

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["Dataset", "NLGPTask", "make_dataset"]


def make_dataset(cfg: "DataConfig") -> Dataset:
    """The data set a config names (its Gaussian clone when ``cfg.gaussian_clone``); synthetic
    ones sample from stream version ``cfg.stream``."""
    if cfg.name == "nlgp":
        return NLGPTask(L=cfg.L, dim=cfg.dim, xis=cfg.xis, gain=cfg.gain,
                        gaussian_clone=cfg.gaussian_clone, torus=cfg.torus, ridge=cfg.ridge, stream=cfg.stream)
    from .clone import GaussianClone
    from .images import load_image_dataset

    source = load_image_dataset(cfg)
    return GaussianClone(source, ridge=cfg.ridge, stream=cfg.stream) if cfg.gaussian_clone else source
