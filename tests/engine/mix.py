"""Shared by the engine's tests: eight runs that share one ensemble, and members built by hand."""

from __future__ import annotations

import torch

from conftest import TINY, merge
from ticketscope.config import ModelConfig, TrainConfig, parse_config
from ticketscope.data import NLGPTask
from ticketscope.engine import BatchSource, Member
from ticketscope.models import FCN

# Eight runs that share one ensemble: every pruning method, NLGP and its clone, online and fixed
# training sets of different sizes, late rewinding (a second cohort per round), different stop
# rounds (prune.rounds, target_density), evaluation during training.
MIX = [
    {"seed": 0, "prune": {"method": "imp"}},
    {"seed": 1, "data": {"gaussian_clone": True}, "prune": {"method": "oneshot"}},
    {"seed": 2, "data": {"online": True}, "prune": {"method": "random"}},
    {"seed": 3, "data": {"gaussian_clone": True, "online": True}, "prune": {"method": "cavity", "n_probe": 256}},
    {"seed": 4, "data": {"gaussian_clone": True, "online": True}, "prune": {"method": "imp", "rounds": 1}},
    {"seed": 5, "prune": {"method": "random", "target_density": 0.7}},
    {"seed": 6, "prune": {"method": "imp", "rewind": "step", "rewind_step": 20}},
    {"seed": 7, "data": {"n_train": 768}, "train": {"eval_every": 20},
     "prune": {"method": "cavity", "n_probe": 256, "rounds": 2}},
]


def mix_config(i: int, **extra):
    """Run ``i`` of :data:`MIX` (TINY at one torch thread: OpenMP threads stall each other on a
    shared machine, test_nlgp.py), with ``extra`` merged in."""
    return parse_config(merge(merge(merge(TINY, {"threads": 1}), MIX[i]), extra))


def make_member(seed: int, D: int, B: int, model: ModelConfig, train: TrainConfig, online: bool, clone: bool,
                keep: float = 0.6) -> Member:
    """A member on NLGP inputs of size ``D`` (online or a fixed set), random masks keeping ``keep``."""
    g = torch.Generator().manual_seed(seed)
    ds = NLGPTask(L=D, dim=1, xis=(1.0, 3.0), gain=3.0, gaussian_clone=clone)
    if online:
        batches = BatchSource(B, torch.device("cpu"), 100 + seed, dataset=ds)
    else:
        X, y = ds.train(B * 4 + seed, seed=seed)
        batches = BatchSource(B, torch.device("cpu"), seed, X=X, y=y)
    net = FCN(D, 2, model)
    net.reset_parameters(g)
    net.set_masks({n: (torch.rand(m.shape, generator=g) < keep).float() for n, m in net.masks().items()})
    return Member(model, train, {k: v.clone() for k, v in net.state_dict().items()}, batches, label=f"member {seed}")
