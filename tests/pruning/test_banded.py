"""cavity-high and cavity-low: IMP's count from IMP's magnitude band, chosen by brute-force cavity scores."""

from __future__ import annotations

import math
import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import TINY, merge
from ticketscope.config import parse_config
from ticketscope.errors import TicketscopeError
from ticketscope.pruning import RULES, PruneContext
from ticketscope.pruning.banded import Band
from ticketscope.runs import RunDir, run_experiment


def _layers() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Two layers on sign-like inputs (sub-Gaussian units), some weights already pruned; unit 0 of layer a keeps
    one tiny weight, whose removal leaves the unit constant (an undefined score)."""
    g = torch.Generator().manual_seed(11)
    X = {"a": torch.sign(torch.randn(600, 10, generator=g)).double(), "b": torch.sign(torch.randn(600, 8, generator=g)).double()}
    W = {"a": torch.randn(6, 10, generator=g).double(), "b": 2 * torch.randn(4, 8, generator=g).double()}
    masks = {n: (torch.rand(w.shape, generator=g) > 0.15).float() for n, w in W.items()}
    masks["a"][0] = 0
    masks["a"][0, 3] = 1
    W["a"][0, 3] = 1e-4
    return {n: w * masks[n].double() for n, w in W.items()}, masks, X, torch.arange(600) % 3 // 2


def _pooled_ng(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Class-pooled |kappa - 3| of h = X w by scipy (NaN for a constant h)."""
    h = X @ w
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return sum(np.mean(y == c) * abs(stats.kurtosis(h[y == c], fisher=False) - 3) for c in np.unique(y))


def brute_scores(W: np.ndarray, X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each surviving weight removed alone, its unit's class-pooled |kappa - 3| recomputed."""
    s = np.full(W.shape, np.nan)
    for i, j in zip(*np.nonzero(mask)):
        w = W[i].copy()
        w[j] = 0.0
        s[i, j] = _pooled_ng(X, y, w) - _pooled_ng(X, y, W[i])
    return s


def expected_removed(W, masks, X, y, targets: dict[str, int], scope: str, band: float, high: bool) -> dict[str, np.ndarray]:
    """Brute force: per group (each layer, or all layers), the ceil(band m) smallest surviving |w| by a numpy sort,
    then the m of them with the highest (high) or lowest (low) score removed, NaN scores last, ties by position."""
    names = list(W)
    groups = [(names, targets["*"])] if scope == "global" else [([n], targets[n]) for n in names]
    removed = {n: np.zeros(W[n].shape, dtype=bool) for n in names}
    for group, target in groups:
        entries = []  # (|w|, score, layer, flat index) of every survivor
        for n in group:
            m, s = masks[n].bool().numpy(), brute_scores(W[n].numpy(), X[n].numpy(), y.numpy(), masks[n].bool().numpy())
            entries += [(abs(W[n].numpy().flat[k]), s.flat[k], n, k) for k in np.flatnonzero(m)]
        m = len(entries) - target
        band_entries = sorted(entries, key=lambda e: e[0])[:math.ceil(band * m)]
        sign = -1.0 if high else 1.0
        chosen = sorted(band_entries, key=lambda e: (math.isnan(e[1]), sign * e[1] if not math.isnan(e[1]) else 0.0))[:m]
        for _, _, n, k in chosen:
            removed[n].flat[k] = True
    return removed


def _removed(rule: str, W, masks, X, y, targets, scope, band=2.0) -> dict[str, np.ndarray]:
    ctx = PruneContext(scope=scope, targets=targets, seed=0, layer_inputs=X, probe_labels=y, params=Band(band=band))
    new = RULES[rule](W, masks, ctx)
    for n in new:
        assert not bool((new[n].bool() & ~masks[n].bool()).any()), "a pruned weight came back"
    return {n: (masks[n].bool() & ~new[n].bool()).numpy() for n in new}


def _targets(masks, scope: str, remove: dict[str, int]) -> dict[str, int]:
    alive = {n: int(m.sum()) for n, m in masks.items()}
    return {"*": sum(alive.values()) - sum(remove.values())} if scope == "global" else {n: alive[n] - remove[n] for n in alive}


@pytest.mark.parametrize("band", [2.0, 3.5])
@pytest.mark.parametrize("scope", ["layerwise", "global"])
@pytest.mark.parametrize("rule", ["cavity-high", "cavity-low"])
def test_removes_the_brute_force_extremes_of_the_band(rule, scope, band):
    W, masks, X, y = _layers()
    targets = _targets(masks, scope, {"a": 9, "b": 5})
    got = _removed(rule, W, masks, X, y, targets, scope, band)
    want = expected_removed(W, masks, X, y, targets, scope, band, high=rule == "cavity-high")
    for n in W:
        np.testing.assert_array_equal(got[n], want[n])
    assert sum(int(r.sum()) for r in got.values()) == 14  # IMP's count


def _band(W, masks, names: list[str], m: int) -> dict[str, np.ndarray]:
    """The 2m smallest surviving |w| of the layers ``names`` together, by a numpy sort."""
    entries = sorted((abs(W[n].numpy().flat[k]), n, k) for n in names for k in np.flatnonzero(masks[n].bool().numpy()))
    band = {n: np.zeros(W[n].shape, dtype=bool) for n in names}
    for _, n, k in entries[:2 * m]:
        band[n].flat[k] = True
    return band


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_high_and_low_differ_and_at_band_two_share_the_band(scope):
    """With 2m candidates of which u have an undefined score (removed last by both), high removes the top m of the
    2m - u defined scores and low the bottom m: they overlap in exactly u weights and together cover the defined
    candidates, IMP's m smallest among them. Layer a holds the one undefined score (unit 0), layer b none."""
    W, masks, X, y = _layers()
    targets = _targets(masks, scope, {"a": 9, "b": 5})
    high, low, imp = (_removed(r, W, masks, X, y, targets, scope) for r in ("cavity-high", "cavity-low", "imp"))
    groups = [(["a", "b"], 14)] if scope == "global" else [(["a"], 9), (["b"], 5)]
    for names, m in groups:
        band = _band(W, masks, names, m)
        undefined = {n: band[n] & np.isnan(brute_scores(W[n].numpy(), X[n].numpy(), y.numpy(), masks[n].bool().numpy()))
                     for n in names}
        u = sum(int(v.sum()) for v in undefined.values())
        assert u == (1 if "a" in names else 0)
        assert sum(int((high[n] & low[n]).sum()) for n in names) == u
        for n in names:
            np.testing.assert_array_equal(high[n] | low[n], band[n] & ~undefined[n])
            assert not (imp[n] & ~band[n]).any()
    assert any((high[n] != low[n]).any() for n in W)


def test_band_is_validated():
    cfg = parse_config(merge(TINY, {"prune": {"method": "cavity-high"}}))
    assert cfg.prune.params == Band(band=2.0)
    assert parse_config(merge(TINY, {"prune": {"method": "cavity-low", "params": {"band": 1.5}}})).prune.params.band == 1.5
    for bad in (1.0, 0.5):
        with pytest.raises(TicketscopeError, match=r"prune\.params\.band: Input should be greater than 1"):
            parse_config(merge(TINY, {"prune": {"method": "cavity-low", "params": {"band": bad}}}))
    with pytest.raises(TicketscopeError, match=r"prune\.params\.width: Extra inputs are not permitted"):
        parse_config(merge(TINY, {"prune": {"method": "cavity-high", "params": {"width": 2}}}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TINY runs (3 rounds, 20% a round) of IMP and of both band rules from the same seed and initialization."""
    root = tmp_path_factory.mktemp("banded")
    runs = {}
    for method in ("imp", "cavity-high", "cavity-low"):
        run_experiment(parse_config(merge(TINY, {"prune": {"method": method, "n_probe": 1024}})), root / method,
                       progress=False)
        runs[method] = RunDir(root / method)
    return runs


def _masks(store: RunDir) -> list[torch.Tensor]:
    return [store.load(s, "final.safetensors")["layers.0.mask"].bool() for s in store.rounds()]


def test_trained_runs_remove_imps_counts_and_never_revive(trained):
    imp = [int(m.sum()) for m in _masks(trained["imp"])]
    assert imp == [1024, 819, 655, 524]
    for method in ("cavity-high", "cavity-low"):
        masks = _masks(trained[method])
        assert [int(m.sum()) for m in masks] == imp
        assert all(not (new & ~old).any() for old, new in pairwise(masks))
    assert not torch.equal(_masks(trained["cavity-high"])[1], _masks(trained["cavity-low"])[1])


def test_removed_magnitudes_are_close_to_imps(trained):
    """At each pruning step of each band rule's own run, the |w| it removed against the |w| IMP would remove
    from the same trained weights (the m smallest), by the Wasserstein-1 distance W1 between the two samples.

    References, from the same weights: a choice blind to magnitude within the band (the band's 2m |w| as a
    sample) lies at W1_blind; the band's largest m at 2 W1_blind, the worst the band allows. The tolerance is
    their midpoint, 1.5 W1_blind: a rule leaning to the band's top by half of what it can fails. A two-sample
    Kolmogorov-Smirnov test then checks that high and low remove the same magnitudes (p > 0.01 at every step:
    a difference between the two rules cannot come through |w|). The contrast: random pruning of the same
    weights lands beyond 2 W1_blind, farther from IMP than anything the band allows."""
    for method in ("cavity-high", "cavity-low"):
        store = trained[method]
        done = store.rounds()
        for r in range(len(done) - 1):
            W = store.load(done[r], "final.safetensors")["layers.0.weight"].abs()
            mask, nxt = (store.load(done[q], "final.safetensors")["layers.0.mask"].bool() for q in (r, r + 1))
            alive = np.sort(W[mask].numpy())
            m = int(mask.sum() - nxt.sum())
            removed, imp, band = W[mask & ~nxt].numpy(), alive[:m], alive[:2 * m]
            blind = stats.wasserstein_distance(band, imp)
            assert removed.max() <= band[-1]
            assert stats.wasserstein_distance(removed, imp) <= 1.5 * blind, (method, r)
            random = np.random.default_rng(r).choice(alive, m, replace=False)
            assert stats.wasserstein_distance(random, imp) > 2 * blind
    for r in range(len(trained["imp"].rounds()) - 1):
        removed = []
        for method in ("cavity-high", "cavity-low"):
            store = trained[method]
            done = store.rounds()
            W = store.load(done[r], "final.safetensors")["layers.0.weight"].abs()
            mask, nxt = (store.load(done[q], "final.safetensors")["layers.0.mask"].bool() for q in (r, r + 1))
            removed.append(W[mask & ~nxt].numpy())
        assert stats.ks_2samp(*removed).pvalue > 0.01, r
