"""Planning: which runs share an ensemble (one rule for the planner and the engine), and the cut."""

from __future__ import annotations

import pytest

from ticketscope.config import ModelConfig, TrainConfig
from ticketscope.engine import ensemble_key, plan_ensembles, run_memory_bytes, shared_settings, train_ensemble

from .mix import MIX, make_member, mix_config


def test_mix_shares_one_ensemble_key():
    assert len({ensemble_key(mix_config(i)) for i in range(len(MIX))}) == 1
    base = ensemble_key(mix_config(0))
    for other in ({"model": {"hidden": [12]}}, {"train": {"lr": 0.01}}, {"train": {"batch_size": 32}},
                  {"model": {"activation": "tanh"}}, {"data": {"L": 6}}, {"threads": 2}):
        assert ensemble_key(mix_config(0, **other)) != base, other
    for same in ({"model": {"init": "glorot"}}, {"train": {"eval_every": 7, "n_eval_train": 128}},
                 {"data": {"gain": 9.0, "xis": [2.0, 4.0]}}, {"prune": {"fraction": 0.5}}):
        assert ensemble_key(mix_config(0, **same)) == base, same


@pytest.mark.parametrize("change,shared", [
    ({"model": {"init": "normal", "init_std": 0.3}}, True),
    ({"train": {"eval_every": 5, "n_eval_train": 64, "snapshots": 3}}, True),
    ({"model": {"activation": "tanh"}}, False),
    ({"model": {"batchnorm": True}}, False),
    ({"train": {"lr": 0.02}}, False),
    ({"train": {"optimizer": "adam"}}, False),
])
def test_the_engine_checks_members_by_the_key_rule(change, shared):
    """The engine accepts two members exactly when the planner's rule puts them in one ensemble."""
    base = mix_config(0)
    other = mix_config(0, **change)
    assert (ensemble_key(other) == ensemble_key(base)) is shared
    assert (shared_settings(other.model, other.train) == shared_settings(base.model, base.train)) is shared
    members = [make_member(i, 6, 16, c.model, c.train.model_copy(update={"steps": 3, "batch_size": 16}),
                           online=False, clone=False) for i, c in enumerate((base, other))]
    if shared:
        assert all(e is None for e in train_ensemble(members, 0, 3).errors)
    else:
        with pytest.raises(ValueError, match="cannot train in one ensemble"):
            train_ensemble(members, 0, 3)


def test_members_of_different_widths_are_refused():
    model, train = ModelConfig(hidden=(8,)), TrainConfig(steps=3, batch_size=16)
    members = [make_member(0, 6, 16, model, train, online=False, clone=False),
               make_member(1, 7, 16, model, train, online=False, clone=False)]
    with pytest.raises(ValueError, match="member 1 cannot train in one ensemble with member 0"):
        train_ensemble(members, 0, 3)


def test_plan_ensembles_groups_by_key_and_caps_size():
    cfgs = [mix_config(i) for i in range(8)] + [mix_config(0, model={"hidden": [12]}), mix_config(1, train={"lr": 0.3})]
    assert plan_ensembles(cfgs) == [list(range(8)), [8], [9]]
    assert plan_ensembles(cfgs, max_runs=3) == [[0, 1, 2], [3, 4, 5], [6, 7], [8], [9]]
    per_run = run_memory_bytes(cfgs[0])
    assert 0 < per_run < 2**24
    assert plan_ensembles(cfgs[:8], max_bytes=2 * per_run + 1) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # a grid of methods x seeds: the runs of one seed (one stream) are cut into one ensemble
    grid = [mix_config(2, seed=seed, prune={"method": m}) for m in ("imp", "oneshot", "random") for seed in (0, 1)]
    assert plan_ensembles(grid, max_runs=3) == [[0, 2, 4], [1, 3, 5]]
