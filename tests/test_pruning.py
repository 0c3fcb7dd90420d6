"""Pruning rules against brute-force references."""

import numpy as np
import pytest
import torch

from ticketscope.pruning import RULES, PruneContext, keep_top, survivor_targets


def _layers(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"layers.0": torch.randn(30, 40, generator=g), "layers.1": torch.randn(20, 30, generator=g) * 3}


def _ctx(masks, r, scope="layerwise", fraction=0.2, **kw) -> PruneContext:
    totals = {n: m.numel() for n, m in masks.items()}
    return PruneContext(round=r, scope=scope, targets=survivor_targets(totals, fraction, r, scope), seed=0, **kw)


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_magnitude_threshold_matches_brute_force_sort(scope):
    w = _layers()
    masks = {n: torch.ones_like(v) for n, v in w.items()}
    ctx = _ctx(masks, 1, scope)
    new = RULES["imp"](w, masks, ctx)
    groups = [list(w)] if scope == "global" else [[n] for n in w]
    for group in groups:
        values = np.concatenate([w[n].abs().numpy().ravel() for n in group])
        k = ctx.targets["*"] if scope == "global" else ctx.targets[group[0]]
        threshold = np.sort(values)[::-1][k - 1]  # brute force: the k-th largest |w| survives
        for n in group:
            expected = (w[n].abs().numpy() >= threshold).astype(np.float32)
            np.testing.assert_array_equal(new[n].numpy(), expected)


def test_global_scope_prunes_small_layers_more():
    w = _layers()  # layers.1 is 3x larger in magnitude: a global threshold spares it
    masks = {n: torch.ones_like(v) for n, v in w.items()}
    new = RULES["imp"](w, masks, _ctx(masks, 3, "global"))
    assert new["layers.0"].mean() < new["layers.1"].mean()


@pytest.mark.parametrize("method", ["imp", "oneshot", "random"])
def test_density_after_n_rounds_within_one_weight(method):
    w = _layers()
    masks = {n: torch.ones_like(v) for n, v in w.items()}
    g = torch.Generator().manual_seed(1)
    for r in range(1, 9):
        w = {n: v + 0.3 * torch.randn(v.shape, generator=g) for n, v in w.items()}  # "retraining"
        ctx = _ctx(masks, r, dense_weights=_layers())
        new = RULES[method](w, masks, ctx)
        for n, m in new.items():
            assert abs(int(m.sum()) - m.numel() * 0.8**r) <= 1
            assert not bool((new[n].bool() & ~masks[n].bool()).any()), "a pruned weight came back"
        masks = new


def test_ties_and_already_pruned_weights():
    w = {"a": torch.ones(4, 5)}
    masks = {"a": torch.ones(4, 5)}
    masks["a"][0] = 0
    ctx = PruneContext(round=1, scope="layerwise", targets={"a": 10}, seed=0)
    new = keep_top({"a": w["a"]}, masks, ctx)
    assert int(new["a"].sum()) == 10 and not bool(new["a"][0].any())
    ctx.targets = {"a": 100}  # more than survive: keep all survivors, revive none
    assert torch.equal(keep_top({"a": w["a"]}, masks, ctx)["a"], masks["a"])


def test_cavity_rule_removes_the_most_non_gaussianity_raising_weights():
    """Brute force: remove each weight alone, recompute |kappa - 3| of its unit with scipy."""
    from scipy import stats

    g = torch.Generator().manual_seed(3)
    X = torch.sign(torch.randn(600, 12, generator=g)).double()  # sign-like inputs: sub-Gaussian units
    W = torch.randn(5, 12, generator=g).double()
    masks = {"a": torch.ones(5, 12)}
    masks["a"][0, :4] = 0
    W = W * masks["a"].double()
    ctx = PruneContext(round=1, scope="layerwise", targets={"a": 40}, seed=0, layer_inputs={"a": X})
    new = RULES["cavity"]({"a": W}, masks, ctx)["a"]
    score = np.full((5, 12), -np.inf)
    for i in range(5):
        base = abs(stats.kurtosis((X @ W[i]).numpy(), fisher=False) - 3)
        for j in range(12):
            if masks["a"][i, j]:
                w = W[i].clone()
                w[j] = 0
                score[i, j] = abs(stats.kurtosis((X @ w).numpy(), fisher=False) - 3) - base
    alive = masks["a"].bool().numpy()
    removed = alive & ~new.bool().numpy()
    assert removed.sum() == alive.sum() - 40
    assert score[removed].min() >= score[new.bool().numpy()].max()  # pruned = highest scores
