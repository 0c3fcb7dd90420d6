"""cavity-high and cavity-low: one removal per stratum of neighbouring |w| ranks, by brute-force cavity scores; their
match in magnitude on trained runs."""

from __future__ import annotations

import math
import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import TINY, merge
from ticketscope.config import load_run_config, parse_config
from ticketscope.data import make_dataset
from ticketscope.errors import TicketscopeError
from ticketscope.metrics import class_cavity_scores
from ticketscope.models import FCN
from ticketscope.pruning import RULES, PruneContext
from ticketscope.pruning.banded import (Band, matched_magnitude_ratio, mean_removed_magnitude, removed_magnitude_ratio,
                                        strata, stratum_removals)
from ticketscope.runs import RunDir, run_experiment
from ticketscope.seeding import derive_seed


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


def expected_removed(W, masks, X, y, targets: dict[str, int], scope: str, band: int, high: bool) -> dict[str, np.ndarray]:
    """Brute force: per group (each layer, or all layers), the survivors sorted by (|w|, layer, position) with a
    Python sort, the min(survivors, band m) smallest cut into m consecutive strata (sizes as even as possible, the
    larger first, as numpy.array_split), and in each stratum the one candidate with the highest (high) or lowest
    (low) brute-force score removed, NaN scores last, equal scores to the earlier rank."""
    names = list(W)
    groups = [(names, targets["*"])] if scope == "global" else [([n], targets[n]) for n in names]
    removed = {n: np.zeros(W[n].shape, dtype=bool) for n in names}
    for group, target in groups:
        entries = []  # (|w|, layer order, flat index, score) of every survivor
        for li, n in enumerate(group):
            m, s = masks[n].bool().numpy(), brute_scores(W[n].numpy(), X[n].numpy(), y.numpy(), masks[n].bool().numpy())
            entries += [(abs(W[n].numpy().flat[k]), li, k, s.flat[k]) for k in np.flatnonzero(m)]
        m = len(entries) - target
        ranked = sorted(entries, key=lambda e: (e[0], e[1], e[2]))[:min(len(entries), band * m)]
        base, extra = divmod(len(ranked), m)
        start = 0
        for k in range(m):
            stratum = ranked[start:start + base + (k < extra)]
            start += base + (k < extra)
            defined = [e for e in stratum if not math.isnan(e[3])]
            pick = (max if high else min)(defined, key=lambda e: e[3]) if defined else stratum[0]
            # max / min return the first of equal values: the earlier rank
            removed[group[pick[1]]].flat[pick[2]] = True
    return removed


def _removed(rule: str, W, masks, X, y, targets, scope, band=2) -> dict[str, np.ndarray]:
    ctx = PruneContext(scope=scope, targets=targets, seed=0, layer_inputs=X, probe_labels=y, params=Band(band=band))
    new = RULES[rule](W, masks, ctx)
    for n in new:
        assert not bool((new[n].bool() & ~masks[n].bool()).any()), "a pruned weight came back"
    return {n: (masks[n].bool() & ~new[n].bool()).numpy() for n in new}


def _targets(masks, scope: str, remove: dict[str, int]) -> dict[str, int]:
    alive = {n: int(m.sum()) for n, m in masks.items()}
    return {"*": sum(alive.values()) - sum(remove.values())} if scope == "global" else {n: alive[n] - remove[n] for n in alive}


@pytest.mark.parametrize("band", [2, 3, 4])
@pytest.mark.parametrize("scope", ["layerwise", "global"])
@pytest.mark.parametrize("rule", ["cavity-high", "cavity-low"])
def test_removes_the_brute_force_pick_of_each_stratum(rule, scope, band):
    W, masks, X, y = _layers()
    targets = _targets(masks, scope, {"a": 9, "b": 5})
    got = _removed(rule, W, masks, X, y, targets, scope, band)
    want = expected_removed(W, masks, X, y, targets, scope, band, high=rule == "cavity-high")
    for n in W:
        np.testing.assert_array_equal(got[n], want[n])
    assert sum(int(r.sum()) for r in got.values()) == 14  # IMP's count


def _band(W, masks, names: list[str], m: int, band: int = 2) -> list[list[tuple[str, int]]]:
    """The m strata (lists of (layer, flat index)) of the band x m smallest surviving |w| of the layers ``names``
    together, by a numpy sort."""
    entries = sorted((abs(W[n].numpy().flat[k]), i, k) for i, n in enumerate(names)
                     for k in np.flatnonzero(masks[n].bool().numpy()))[:band * m]
    return [[(names[i], k) for _, i, k in entries[j * band:(j + 1) * band]] for j in range(m)]


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_one_removal_per_stratum_and_at_band_two_high_and_low_split_each_pair(scope):
    """Each rule removes exactly one weight of every stratum. At band 2 the strata are pairs of adjacent |w| ranks:
    where both scores are defined high takes one member and low the other; a pair holding the undefined score
    (unit 0 of layer a: removing its last weight leaves it constant) goes to its defined member under both rules."""
    W, masks, X, y = _layers()
    targets = _targets(masks, scope, {"a": 9, "b": 5})
    high, low = (_removed(r, W, masks, X, y, targets, scope) for r in ("cavity-high", "cavity-low"))
    groups = [(["a", "b"], 14)] if scope == "global" else [(["a"], 9), (["b"], 5)]
    scores = {n: brute_scores(W[n].numpy(), X[n].numpy(), y.numpy(), masks[n].bool().numpy()) for n in W}
    undefined_pairs = 0
    for names, m in groups:
        for pair in _band(W, masks, names, m):
            h, lo = [[high[n].flat[k] for n, k in pair], [low[n].flat[k] for n, k in pair]]
            assert sum(h) == 1 and sum(lo) == 1
            if any(np.isnan(scores[n].flat[k]) for n, k in pair):
                undefined_pairs += 1
                assert h == lo
            else:
                assert h != lo
    assert undefined_pairs == 1
    assert all(int(high[n].sum()) + int(low[n].sum()) > 0 for n in W)


def test_a_band_wider_than_the_survivors_is_cut_and_still_hits_the_count():
    """Removing 12 of 16 survivors at band 4: 48 candidates wanted, 16 exist; the 16 are cut into 12 strata (four
    of 2 ranks, eight of 1, as numpy.array_split) and each rule still removes exactly one per stratum, 12 in all,
    as the brute force (both rules remove every singleton stratum)."""
    g = torch.Generator().manual_seed(3)
    X = {"a": torch.sign(torch.randn(400, 16, generator=g)).double()}
    W = {"a": torch.randn(2, 16, generator=g).double()}
    masks = {"a": torch.zeros(2, 16)}
    masks["a"][0, :8] = 1
    masks["a"][1, 8:] = 1
    W = {"a": W["a"] * masks["a"].double()}
    y = torch.arange(400) % 2
    targets = {"a": 4}
    for rule in ("cavity-high", "cavity-low"):
        got = _removed(rule, W, masks, X, y, targets, "layerwise", band=4)
        want = expected_removed(W, masks, X, y, targets, "layerwise", 4, high=rule == "cavity-high")
        np.testing.assert_array_equal(got["a"], want["a"])
        assert int(got["a"].sum()) == 12
    ctx = PruneContext(scope="layerwise", targets=targets, seed=0)
    sizes = np.bincount(strata(W, masks, ctx, 4)["a"][masks["a"].bool()].numpy())
    assert sizes.tolist() == [2] * 4 + [1] * 8


def test_band_is_validated():
    cfg = parse_config(merge(TINY, {"prune": {"method": "cavity-high"}}))
    assert cfg.prune.params == Band(band=2)
    for ok in (3, 4, 4.0):
        assert parse_config(merge(TINY, {"prune": {"method": "cavity-low", "params": {"band": ok}}})).prune.params.band == ok
    for bad in (1, 0):
        with pytest.raises(TicketscopeError, match=r"prune\.params\.band: Input should be greater than or equal to 2"):
            parse_config(merge(TINY, {"prune": {"method": "cavity-low", "params": {"band": bad}}}))
    for bad in (5, 100):
        with pytest.raises(TicketscopeError, match=r"prune\.params\.band: Input should be less than or equal to 4"):
            parse_config(merge(TINY, {"prune": {"method": "cavity-low", "params": {"band": bad}}}))
    with pytest.raises(TicketscopeError, match=r"prune\.params\.band: Input should be a valid integer"):
        parse_config(merge(TINY, {"prune": {"method": "cavity-low", "params": {"band": 2.5}}}))
    with pytest.raises(TicketscopeError, match=r"prune\.params\.width: Extra inputs are not permitted"):
        parse_config(merge(TINY, {"prune": {"method": "cavity-high", "params": {"width": 2}}}))


BANDS = (2, 4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TINY runs (3 rounds, 20% a round) of IMP and of both band rules at bands 2 and 4, from the same seed and
    initialization."""
    root = tmp_path_factory.mktemp("banded")
    runs = {}
    for method, band in [("imp", None)] + [(m, b) for b in BANDS for m in ("cavity-high", "cavity-low")]:
        prune = {"method": method, "n_probe": 1024} | ({"params": {"band": band}} if band else {})
        run_experiment(parse_config(merge(TINY, {"prune": prune})), root / f"{method}{band}", progress=False)
        runs[method if band is None else (method, band)] = RunDir(root / f"{method}{band}")
    return runs


def _masks(store: RunDir) -> list[torch.Tensor]:
    return [store.load(s, "final.safetensors")["layers.0.mask"].bool() for s in store.rounds()]


def _steps(store: RunDir) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    states = [store.load(s, "final.safetensors") for s in store.rounds()]
    return [(a["layers.0.weight"], a["layers.0.mask"], b["layers.0.mask"]) for a, b in pairwise(states)]


def test_trained_runs_remove_imps_counts_and_never_revive(trained):
    imp = [int(m.sum()) for m in _masks(trained["imp"])]
    assert imp == [1024, 819, 655, 524]
    for band in BANDS:
        for method in ("cavity-high", "cavity-low"):
            masks = _masks(trained[method, band])
            assert [int(m.sum()) for m in masks] == imp
            assert all(not (new & ~old).any() for old, new in pairwise(masks))
        assert not torch.equal(_masks(trained["cavity-high", band])[1], _masks(trained["cavity-low", band])[1])


def _probe_scores(store: RunDir, r: int) -> torch.Tensor:
    """The class-pooled cavity scores the rule saw at the step after round r: the engine's probe (prune.n_probe
    training inputs, seed derive_seed(seed, "probe")) through the round's trained network."""
    cfg = load_run_config(store.path)
    ds = make_dataset(cfg.data)
    X, y = ds.train(cfg.prune.n_probe, seed=derive_seed(cfg.seed, "probe"))
    model = FCN(ds.input_dim, ds.num_classes, cfg.model).eval()
    state = store.load(store.rounds()[r], "final.safetensors")
    model.load_state_dict(state)
    with torch.no_grad():
        inputs = model.layer_inputs(X)[0]
    return class_cavity_scores(state["layers.0.weight"].double(), inputs.double(), y)


@pytest.mark.parametrize("band", BANDS)
def test_high_and_low_match_in_magnitude_at_every_step(trained, band):
    """The causal test's promise, by construction: at every pruning step of every band rule's run (and of IMP's),
    cavity-high and cavity-low applied to the same trained weights and probe (:func:`stratum_removals`) remove
    mean |w| within 3% of each other (:func:`matched_magnitude_ratio`). Measured when this was written: within
    0.75% at all 12 steps of a feedback-loop-preset run (seed 0) at bands 2 to 20, and within 0.16% here. Each
    run's own removal is exactly the pick :func:`stratum_removals` makes from its weights (the rule is that choice).

    Across the two rules' own runs (:func:`removed_magnitude_ratio`) the first step compares the same weights
    (ratio 1 to 0.1%); later steps compare networks that diverged after different removals, which the strata do not
    control: within 3% on these short runs (measured 0.998-1.010 at band 2, 0.993-1.001 at band 4), but up to
    1.24 at the late steps of that feedback-loop run: a report states the measured ratio, not a promise."""
    for store in (trained["imp"], trained["cavity-high", band], trained["cavity-low", band]):
        cfg = load_run_config(store.path)
        for r, (W, mask, nxt) in enumerate(_steps(store)):
            scores = {"layers.0": _probe_scores(store, r)}
            ctx = PruneContext(scope="layerwise", targets={"layers.0": int(nxt.sum())}, seed=0)
            weights, masks = {"layers.0": W}, {"layers.0": mask}
            ratio = matched_magnitude_ratio(weights, masks, scores, ctx, band)
            assert abs(ratio - 1) < 0.03, (cfg.prune.method, r, ratio)
            high, low = stratum_removals(weights, masks, scores, ctx, band)
            if cfg.prune.method != "imp":
                own = high if cfg.prune.method == "cavity-high" else low
                assert torch.equal(own["layers.0"], mask.bool() & ~nxt.bool()), (cfg.prune.method, r)
    across = removed_magnitude_ratio(_steps(trained["cavity-high", band]), _steps(trained["cavity-low", band]))
    assert len(across) == 3 and abs(across[0] - 1) < 0.003 and np.all(np.abs(across - 1) < 0.03)


def test_removed_magnitudes_stay_in_the_band_and_are_not_imps(trained):
    """What the rules do not match: IMP. Every removed |w| lies inside the band of the step (at most the band x m-th
    smallest survivor), and at the first step, where |w| is dense near 0, the mean removed |w| is about band x IMP's
    (measured 2.04 at band 2 and 4.36 at band 4; asserted within [0.8, 1.2] x band). A report says so."""
    imp = _steps(trained["imp"])
    for band in BANDS:
        for method in ("cavity-high", "cavity-low"):
            steps = _steps(trained[method, band])
            for W, mask, nxt in steps:
                alive = np.sort(W.abs()[mask.bool()].numpy())
                m = int(mask.sum() - nxt.sum())
                assert W.abs()[mask.bool() & ~nxt.bool()].max().item() <= alive[band * m - 1]
            first = removed_magnitude_ratio(steps[:1], imp[:1])[0]
            assert 0.8 * band < first < 1.2 * band, (method, band, first)
            assert mean_removed_magnitude(*steps[0]) == pytest.approx(first * mean_removed_magnitude(*imp[0]))
