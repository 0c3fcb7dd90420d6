"""Shared fixtures: tiny run configs that train in about a second."""

from __future__ import annotations

import copy
from typing import Any

import pytest

TINY: dict[str, Any] = {
    "data": {"name": "nlgp", "L": 8, "n_train": 1024, "n_test": 256, "gain": 3.0, "xis": [1.0, 3.0]},
    "model": {"hidden": [16]},
    "train": {"steps": 60, "batch_size": 64, "n_eval_train": 256},
    "prune": {"rounds": 3},
}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def tiny() -> dict[str, Any]:
    return copy.deepcopy(TINY)
