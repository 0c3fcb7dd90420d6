"""Which runs can train as one ensemble, and how a list of runs is cut into ensembles.

One compatibility rule serves both the planner and the engine: :func:`shared_settings` is the
part of a run's model and training config that every member of an ensemble must share;
:func:`ensemble_key` adds the data shape, device and thread count to it, and
:func:`ticketscope.engine.train_ensemble` checks its members with it.
"""

from __future__ import annotations

import json
from math import prod
from typing import Any

from ..config import ModelConfig, RunConfig, TrainConfig
from ..data import signature, split_sizes
from .batches import chunk_steps

_NOT_SHARED_MODEL = {"init", "init_std"}
"""ModelConfig fields that only set a run's initial state: members of one ensemble may differ in them."""

_NOT_TRAINING = {"eval_every", "n_eval_train", "snapshots"}
"""TrainConfig fields that never enter an update: members of one ensemble may differ in them."""


def shared_settings(model: ModelConfig, train: TrainConfig) -> dict[str, Any]:
    """What the stacked training of an ensemble shares, of a run's model and training config.

    The network's shapes and non-linearity (hidden widths, activation, bias, batch norm, scaling,
    readout; not its init, which is per run) and every training setting that enters an update
    (optimizer, lr, momentum, schedule, budget, batch size, loss; not ``eval_every``,
    ``n_eval_train`` or ``snapshots``). Members with equal values can train in one ensemble.
    """
    return {"model": model.model_dump(mode="json", exclude=_NOT_SHARED_MODEL),
            "train": train.model_dump(mode="json", exclude=_NOT_TRAINING)}


def ensemble_key(cfg: RunConfig) -> str:
    """Runs with the same key can train in one ensemble (a JSON string; equal keys, same ensemble).

    It holds :func:`shared_settings`, the input size and number of classes (asked of the data set,
    :func:`ticketscope.data.signature`, without loading it), the device and the thread count. Seeds,
    data sets and their variants of the same shape (NLGP or its clone, gain, correlation lengths,
    online or fixed, training set size, two files of one width) and every pruning setting may differ.
    """
    D, C = _shape(cfg)
    key = {**shared_settings(cfg.model, cfg.train), "shape": [D, C], "device": cfg.device, "threads": cfg.threads}
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _shape(cfg: RunConfig) -> tuple[int, int]:
    """(flattened input size, classes) of the run's data set."""
    shape, classes = signature(cfg.data)
    return prod(shape), classes


def run_memory_bytes(cfg: RunConfig) -> int:
    """Rough memory one run takes inside an ensemble: stacked parameters with their gradient,
    mask and optimizer state, activations of a step, its share of the mini-batch buffer, its
    training set (fixed) and evaluation sets."""
    D, C = _shape(cfg)
    widths = [D, *cfg.model.hidden, C]
    B = cfg.train.batch_size
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    states = 3 + (2 if cfg.train.optimizer == "adam" else 1)
    activations = 6 * B * sum(widths)
    batches = chunk_steps(B, D) * B * (D + 2)
    n_train, n_test = split_sizes(cfg.data)
    data = (0 if cfg.data.online else n_train) * D + (cfg.train.n_eval_train + n_test) * D
    return 4 * (states * params + activations + batches + data)


def plan_ensembles(configs: list[RunConfig], max_runs: int | None = None,
                   max_bytes: int | None = 2 * 2**30) -> list[list[int]]:
    """Indices of ``configs`` grouped into ensembles: equal :func:`ensemble_key` (device included), in
    order of first appearance, each cut to at most ``max_runs`` runs and about ``max_bytes`` of
    memory (:func:`run_memory_bytes`). For schedulers: each group is one ``run_ensemble`` call.
    Before the cut, runs that read one sample stream (equal data config and seed, e.g. the pruning
    methods of one seed) are put side by side, so that they land in one ensemble and draw it once."""
    groups: dict[str, dict[tuple[str, int], list[int]]] = {}
    for i, cfg in enumerate(configs):
        streams = groups.setdefault(ensemble_key(cfg), {})
        streams.setdefault((cfg.data.model_dump_json(), cfg.seed), []).append(i)
    out = []
    for streams in groups.values():
        members = [i for same in streams.values() for i in same]
        cap = len(members) if max_runs is None else max(1, max_runs)
        if max_bytes is not None:
            cap = min(cap, max(1, max_bytes // max(1, max(run_memory_bytes(configs[i]) for i in members))))
        out.extend(members[k:k + cap] for k in range(0, len(members), cap))
    return out
