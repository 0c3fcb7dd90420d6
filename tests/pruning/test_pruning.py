"""Pruning rules against brute-force references."""

import numpy as np
import pytest
import torch
from scipy import stats

from ticketscope.pruning import RULES, PruneContext, keep_top, survivor_targets
from ticketscope.seeding import generator


def _layers(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"layers.0": torch.randn(30, 40, generator=g), "layers.1": torch.randn(20, 30, generator=g) * 3}


def _ctx(masks, r, scope="layerwise", fraction=0.2, **kw) -> PruneContext:
    totals = {n: m.numel() for n, m in masks.items()}
    return PruneContext(scope=scope, targets=survivor_targets(totals, fraction, r, scope), seed=0, **kw)


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
    """One global threshold at round 3 (51.2% of all 1800 weights kept): each layer keeps exactly its
    weights among the 922 largest |w| of both, so layers.1, 3x larger in magnitude, is spared."""
    w = _layers()
    masks = {n: torch.ones_like(v) for n, v in w.items()}
    new = RULES["imp"](w, masks, _ctx(masks, 3, "global"))
    magnitudes = np.concatenate([w[n].abs().numpy().ravel() for n in w])
    largest = np.zeros(len(magnitudes), dtype=bool)
    largest[np.argsort(-magnitudes)[:round(1800 * 0.8**3)]] = True
    expected = dict(zip(w, np.split(largest, [w["layers.0"].numel()])))
    for n in w:
        np.testing.assert_array_equal(new[n].numpy().ravel(), expected[n])
    assert new["layers.0"].mean() < 0.8**3 < new["layers.1"].mean()  # ~0.39 and ~0.76


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


def _kept_counts(rule, mask: torch.Tensor, keep: int, seeds: int) -> np.ndarray:
    """How often each position survives ``rule`` over runs with seeds 0 .. seeds - 1."""
    w = {"a": torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))}
    counts = np.zeros(mask.numel())
    for seed in range(seeds):
        ctx = PruneContext(scope="layerwise", targets={"a": keep}, seed=seed)
        counts += rule(w, {"a": mask}, ctx)["a"].flatten().numpy()
    return counts


def _uniformity_p_value(counts: np.ndarray, keep: int, seeds: int) -> float:
    """P-value of "every seed keeps a uniformly random ``keep``-subset of the N positions".

    One seed's indicators are a draw without replacement: variance q(1 - q), covariance
    -q(1 - q)/(N - 1), q = keep/N. The counts' covariance is then seeds q(1 - q) N/(N - 1) (I - J/N),
    so Pearson's statistic sum (O - E)^2 / E, E = seeds q (scipy.stats.chisquare), is (1 - q) N/(N - 1)
    times a chi-square with N - 1 degrees of freedom; undone here (checked: p-values of simulated
    uniform draws are uniform)."""
    N = len(counts)
    q = keep / N
    pearson = stats.chisquare(counts).statistic
    return float(stats.chi2.sf(pearson * (N - 1) / ((1 - q) * N), N - 1))


def test_random_pruning_keeps_uniformly_random_positions():
    """Chi-square on how often each surviving position is kept over 2000 seeds (expected 1000 each),
    at level 1e-3. Power: the same test rejects a rule whose scores lean by 5% of their range towards
    later positions (keep probability ~0.475 .. 0.525 across positions instead of 0.5)."""
    seeds, keep = 2000, 35
    mask = torch.ones(8, 10)
    mask[0] = 0  # already pruned: never kept, and the 70 survivors are what must be uniform
    alive = mask.flatten().bool().numpy()
    counts = _kept_counts(RULES["random"], mask, keep, seeds)
    assert counts[~alive].sum() == 0 and counts.sum() == seeds * keep
    assert _uniformity_p_value(counts[alive], keep, seeds) > 1e-3

    def leaning(weights, masks, ctx):
        return keep_top({n: torch.rand(v.shape, generator=generator(ctx.seed, "lean", n))
                         + 0.05 * torch.arange(v.numel()).view_as(v) / v.numel() for n, v in weights.items()}, masks, ctx)

    assert _uniformity_p_value(_kept_counts(leaning, mask, keep, seeds)[alive], keep, seeds) < 1e-3


def test_ties_and_already_pruned_weights():
    w = {"a": torch.ones(4, 5)}
    masks = {"a": torch.ones(4, 5)}
    masks["a"][0] = 0
    ctx = PruneContext(scope="layerwise", targets={"a": 10}, seed=0)
    new = keep_top({"a": w["a"]}, masks, ctx)
    assert int(new["a"].sum()) == 10 and not bool(new["a"][0].any())
    ctx.targets = {"a": 100}  # more than survive: keep all survivors, revive none
    assert torch.equal(keep_top({"a": w["a"]}, masks, ctx)["a"], masks["a"])


def test_cavity_rule_removes_the_most_non_gaussianity_raising_weights():
    """Brute force: remove each weight alone, recompute its unit's class-pooled |kappa - 3| with scipy."""
    from scipy import stats

    g = torch.Generator().manual_seed(3)
    X = torch.sign(torch.randn(600, 12, generator=g)).double()  # sign-like inputs: sub-Gaussian units
    W = torch.randn(5, 12, generator=g).double()
    masks = {"a": torch.ones(5, 12)}
    masks["a"][0, :4] = 0
    W = W * masks["a"].double()
    y = torch.arange(600) % 3 // 2  # classes of 400 and 200 probe inputs
    ctx = PruneContext(scope="layerwise", targets={"a": 40}, seed=0, layer_inputs={"a": X}, probe_labels=y)
    new = RULES["cavity"]({"a": W}, masks, ctx)["a"]

    def pooled_ng(w: torch.Tensor) -> float:
        h = (X @ w).numpy()
        return sum((y == c).double().mean().item() * abs(stats.kurtosis(h[(y == c).numpy()], fisher=False) - 3)
                   for c in (0, 1))

    score = np.full((5, 12), -np.inf)
    for i in range(5):
        base = pooled_ng(W[i])
        for j in range(12):
            if masks["a"][i, j]:
                w = W[i].clone()
                w[j] = 0
                score[i, j] = pooled_ng(w) - base
    alive = masks["a"].bool().numpy()
    removed = alive & ~new.bool().numpy()
    assert removed.sum() == alive.sum() - 40
    assert score[removed].min() >= score[new.bool().numpy()].max()  # pruned = highest scores
