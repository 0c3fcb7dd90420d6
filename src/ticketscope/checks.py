"""Conformance checks for data sets and pruning rules, in the manner of scikit-learn's ``check_estimator``.

Every registered data set and pruning rule, built-in or a plug-in's, must keep the promises the rest of
ticketscope relies on. Run them on your own entries::

    from ticketscope.checks import check_dataset, check_rule
    check_dataset(DataConfig(name="my-data", params={...}))  # or a zero-argument factory of a Dataset
    check_rule("my-rule")                                    # or the rule function itself

Each check raises :class:`ConformanceError` (an ``AssertionError``) whose message names the entry and the
property it broke; it returns None when all hold.

**Data sets** (:func:`check_dataset`): the interface of :class:`ticketscope.data.Dataset`
(X float32 ``(n, prod(input_shape))``, y int64 in ``0 .. num_classes - 1``, n honoured, ``test_size``
respected), determinism per seed (also across fresh instances: a run resumed in another process must see
the same data), different seeds giving different draws, train and test disjoint (no input shared; for
synthetic sets they are independent draws), nested subsets where promised, and, for infinite sets,
chunking invariance of ``sample(n, seed, offset)``: online training draws its stream step by step and an
ensemble in chunks of steps, and both must see the same bits.

**Pruning rules** (:func:`check_rule`): over several rounds of the lottery-ticket schedule, in both scopes,
on small synthetic layers with the context the rule declares it needs (``RULE_NEEDS``): masks are 0/1 of
each weight's shape and dtype, a pruned weight never comes back, the survivor targets of
:func:`ticketscope.pruning.survivor_targets` are hit exactly (per layer for ``layerwise``, in total for
``global``), and the same inputs give the same masks without the inputs being modified.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Union

import torch
from pydantic import BaseModel

from . import pruning
from .config import DataConfig
from .data import DATASETS, Dataset, make_dataset, signature
from .pruning import RULE_NEEDS, RULES, PruneContext, survivor_targets

Tensors = dict[str, torch.Tensor]
Rule = Callable[[Tensors, Tensors, PruneContext], Tensors]
DataSource = Union[DataConfig, Dataset, Callable[[], Dataset]]
ItemIds = Callable[[Dataset, str], Iterable[Hashable]]

__all__ = ["ConformanceError", "check_all", "check_dataset", "check_rule", "registered_datasets",
           "registered_rules"]

CHUNKS = (1, 2, 253, 3, 127, 5, 209)
"""Chunk sizes for the chunking check: odd sizes whose boundaries fall inside, on and across blocks of
a few hundred items (600 items in all)."""


class ConformanceError(AssertionError):
    """A data set or a rule broke a property of its interface; the message names both."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConformanceError(message)


# ---------------------------------------------------------------------------------------------- data sets


def _factory(source: DataSource) -> Callable[[], Dataset]:
    """A zero-argument factory of fresh instances (a Dataset instance can only be handed back itself)."""
    if isinstance(source, DataConfig):
        return lambda: make_dataset(source)
    if isinstance(source, Dataset):
        return lambda: source
    return source


def _rows(X: torch.Tensor) -> list[bytes]:
    """Each row's bytes: equal rows, equal keys."""
    return [bytes(r) for r in X.contiguous().numpy().view("uint8").reshape(len(X), -1)]


def _check_split(ds: Dataset, who: str, what: str, X: object, y: object, n: int | None) -> None:
    """X float32 (n, prod(input_shape)) of finite values, y int64 (n,) in 0 .. num_classes - 1."""
    if not (isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise ConformanceError(f"{who}: {what} must return two torch tensors (X, y), got {type(X).__name__}, "
                               f"{type(y).__name__}")
    _require(X.dtype == torch.float32, f"{who}: {what} X has dtype {X.dtype}, expected torch.float32")
    _require(y.dtype == torch.int64, f"{who}: {what} y has dtype {y.dtype}, expected torch.int64")
    _require(X.ndim == 2 and X.shape[1] == ds.input_dim,
             f"{who}: {what} X has shape {tuple(X.shape)}, expected (n, {ds.input_dim}) = (n, prod{ds.input_shape})")
    _require(y.shape == (len(X),), f"{who}: {what} y has shape {tuple(y.shape)} for {len(X)} inputs, expected ({len(X)},)")
    if n is not None:
        _require(len(X) == n, f"{who}: {what} returned {len(X)} items, asked for {n}")
    _require(bool(torch.isfinite(X).all()), f"{who}: {what} X holds NaN or infinite values")
    if len(y):
        _require(int(y.min()) >= 0 and int(y.max()) < ds.num_classes,
                 f"{who}: {what} labels run from {int(y.min())} to {int(y.max())}, outside 0..{ds.num_classes - 1}")


def _same(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _check_disjoint(who: str, train_X: torch.Tensor, test_X: torch.Tensor, how: str) -> None:
    """No input of the test split is also an input of the training split (bit for bit)."""
    seen = set(_rows(train_X))
    shared = [i for i, r in enumerate(_rows(test_X)) if r in seen]
    _require(not shared, f"{who}: train and test are not disjoint ({how}): {len(shared)} of {len(test_X)} test "
                         f"inputs are also training inputs (the first: test item {shared[0] if shared else None})")


def check_dataset(source: DataSource, *, n: int = 32, seeds: tuple[int, int] = (0, 1),
                  nested: bool | None = None, item_ids: ItemIds | None = None) -> None:
    """Check that a data set keeps the :class:`~ticketscope.data.Dataset` interface's promises.

    ``source``: a :class:`~ticketscope.config.DataConfig` (built with ``make_dataset``, Gaussian clone
    included), or a zero-argument factory of the data set. A factory is called several times: the
    determinism and chunking checks compare fresh instances, so a cache cannot hide a difference. (A
    Dataset instance is accepted too, but then every comparison runs on the one instance.)

    ``n``: items per draw (finite sets: at most half their split sizes). ``seeds``: two different seeds.
    ``nested``: whether ``train(n, seed)`` must be a subset of ``train(m, seed)`` for m > n; default:
    yes for infinite sets, whose items have fixed positions in their stream (a prefix, then), no for
    finite ones, where the base interface does not promise it (pass True where a set's docstring does).
    ``item_ids``: for a finite set that exposes where its items come from, ``item_ids(ds, split)`` gives
    the identities of the items of ``ds.train()`` / ``ds.test()`` (split ``"train"`` / ``"test"``), e.g.
    the source pixels a patch covers; the splits must then share no identity. Without it the splits
    must share no input bit for bit (which fails where distinct items can coincide, like patches of
    flat sky cut from disjoint regions of a photograph).

    Properties, each a :class:`ConformanceError` naming the set and the property:

    - *interface*: X float32 ``(n, prod(input_shape))``, finite; y int64 ``(n,)`` in 0..num_classes-1;
      ``n`` honoured; for finite sets ``n=None`` gives the whole split and, where ``test_size`` is set,
      the test split holds exactly that many items and asking for more is refused.
    - *determinism per seed*: the same call on a fresh instance gives identical tensors; two seeds give
      different draws (for finite sets, subsets smaller than the split).
    - *disjoint splits*: over the whole splits of a finite set, no test item is a training item (by
      ``item_ids`` where given, else no input bit for bit); for a synthetic set, train and test are
      independent draws and share no input.
    - *nested subsets* (when ``nested``).
    - *signature* (``source`` a DataConfig): :func:`ticketscope.data.signature`, which the engine asks to
      stack runs without loading data, agrees with the built data set's input shape and classes.
    - *chunking invariance* (``infinite`` sets): items [0, N) of ``sample(N, seed, 0)`` equal the same
      items drawn in chunks of odd sizes at the matching offsets, in order, in reverse order with another
      seed's draws in between, and from a nonzero starting offset, bit for bit.
    """
    make = _factory(source)
    ds = make()
    who = f"data set {ds.name!r}"
    _require(seeds[0] != seeds[1], f"check_dataset: give two different seeds, got {seeds}")
    _require(isinstance(ds.input_shape, tuple) and all(isinstance(s, int) and s > 0 for s in ds.input_shape),
             f"{who}: input_shape must be a tuple of positive ints, got {ds.input_shape!r}")
    _require(isinstance(ds.num_classes, int) and ds.num_classes >= 2,
             f"{who}: num_classes must be an int >= 2, got {ds.num_classes!r}")
    if isinstance(source, DataConfig):
        told, built = signature(source), (tuple(ds.input_shape), ds.num_classes)
        _require(told == built, f"{who}: its registered signature says (input_shape, classes) = {told}, the "
                                f"data set has {built}; fix the signature= given to register_dataset")
    if ds.infinite:
        _check_stream(make, ds, who, n, seeds, True if nested is None else nested)
    else:
        _check_finite(make, ds, who, n, seeds, bool(nested), item_ids)


def _check_finite(make: Callable[[], Dataset], ds: Dataset, who: str, n: int, seeds: tuple[int, int],
                  nested: bool, item_ids: ItemIds | None) -> None:
    train, test = ds.train(None), ds.test(None)
    _check_split(ds, who, "train(None)", *train, None)
    _check_split(ds, who, "test(None)", *test, None)
    n_train, n_test = len(train[0]), len(test[0])
    _require(n_train >= 2 and n_test >= 2, f"{who}: the splits need at least 2 items each to be checked, "
                                           f"they hold {n_train} and {n_test}")
    if ds.test_size is not None:
        _require(ds.test_size == n_test, f"{who}: test_size is {ds.test_size} but test(None) returns {n_test} items")
        _check_split(ds, who, f"test({ds.test_size})", *ds.test(ds.test_size), ds.test_size)
        try:
            ds.test(ds.test_size + 1)
        except Exception:
            pass
        else:
            raise ConformanceError(f"{who}: test({ds.test_size + 1}) returned, but test_size is {ds.test_size}: "
                                   "a request beyond the held-out split must be refused")
    if item_ids is None:
        _check_disjoint(who, train[0], test[0], "whole splits")
    else:
        shared = set(item_ids(ds, "train")) & set(item_ids(ds, "test"))
        _require(not shared, f"{who}: train and test are not disjoint: {len(shared)} item identities are in both "
                             f"(e.g. {next(iter(shared), None)!r})")

    k_train, k_test = min(n, n_train // 2), min(n, n_test // 2)
    for split, k, call in (("train", k_train, ds.train), ("test", k_test, ds.test)):
        first = call(k, seeds[0])
        _check_split(ds, who, f"{split}({k}, seed={seeds[0]})", *first, k)
        again = getattr(make(), split)(k, seeds[0])
        _require(_same(first, again), f"{who}: not deterministic per seed: {split}({k}, seed={seeds[0]}) differs "
                                      "between two instances")
        _require(not _same(first, call(k, seeds[1])), f"{who}: {split}({k}) gives the same items for seeds "
                                                      f"{seeds[0]} and {seeds[1]}; a seed must pick the subset")
    if nested:  # k_train is at most half the split, so the larger subset is not the whole split
        k = max(1, k_train // 2)
        small, large = ds.train(k, seeds[0]), ds.train(k_train, seeds[0])
        pairs = set(zip(_rows(large[0]), large[1].tolist()))
        missing = sum((r, c) not in pairs for r, c in zip(_rows(small[0]), small[1].tolist()))
        _require(not missing, f"{who}: subsets are not nested: {missing} of the {k} items of "
                              f"train({k}, seed={seeds[0]}) are not in train({k_train}, seed={seeds[0]})")


def _check_stream(make: Callable[[], Dataset], ds: Dataset, who: str, n: int, seeds: tuple[int, int],
                  nested: bool) -> None:
    s0, s1 = seeds
    for split in ("train", "test"):
        first = getattr(ds, split)(n, s0)
        _check_split(ds, who, f"{split}({n}, seed={s0})", *first, n)
        _require(_same(first, getattr(make(), split)(n, s0)),
                 f"{who}: not deterministic per seed: {split}({n}, seed={s0}) differs between two instances")
        _require(not _same(first, getattr(ds, split)(n, s1)),
                 f"{who}: {split}({n}) gives the same samples for seeds {s0} and {s1}")
    _check_disjoint(who, ds.train(n, s0)[0], ds.test(n, s0)[0], "synthetic splits must be independent draws")
    if ds.test_size is not None:
        _check_split(ds, who, f"test({ds.test_size})", *ds.test(ds.test_size), ds.test_size)
    if nested:
        X, y = ds.train(3 * n, s0)
        _require(_same(ds.train(n, s0), (X[:n], y[:n])),
                 f"{who}: train({n}, seed={s0}) is not the first {n} items of train({3 * n}, seed={s0})")

    total, base = sum(CHUNKS), 301
    ref = make().sample(base + total, s0, 0)  # items 0 .. base + total - 1 in one call
    _check_split(ds, who, f"sample({base + total}, seed={s0}, offset=0)", *ref, base + total)
    _require(_same(ref, make().sample(base + total, s0, 0)),
             f"{who}: not deterministic per seed: sample({base + total}, seed={s0}) differs between two instances")
    _require(not _same(ref, make().sample(base + total, s1, 0)),
             f"{who}: sample({base + total}) gives the same samples for seeds {s0} and {s1}")
    starts = [sum(CHUNKS[:i]) for i in range(len(CHUNKS))]
    forward = list(range(len(CHUNKS)))
    for how, order, first, between in (
            ("in order", forward, 0, None),
            (f"in reverse order, with seed {s1}'s draws in between", forward[::-1], 0, s1),
            ("in order", forward, base, None)):
        fresh, parts = make(), {}
        for i in order:  # a fresh instance: no cache of the reference call can answer
            parts[i] = fresh.sample(CHUNKS[i], s0, first + starts[i])
            if between is not None:
                fresh.sample(7, between, 300)
        X, y = torch.cat([parts[i][0] for i in forward]), torch.cat([parts[i][1] for i in forward])
        want_X, want_y = ref[0][first:first + total], ref[1][first:first + total]
        _check_split(ds, who, f"sample(n, seed={s0}, offset) in chunks", X, y, total)
        bad = ((X != want_X).any(1) | (y != want_y)).nonzero().flatten().tolist()
        if bad:
            raise ConformanceError(
                f"{who}: sample is not chunking invariant: items {first}..{first + total - 1} drawn in chunks of "
                f"{list(CHUNKS)} {how} differ from one call sample({base + total}, seed={s0}, offset=0) "
                f"({len(bad)} items, the first at item {first + bad[0]})")


# -------------------------------------------------------------------------------------------------- rules


def _layers(seed: int) -> Tensors:
    """Three small layers of different sizes and scales (so global and layerwise targets part ways)."""
    g = torch.Generator().manual_seed(seed)
    return {"layers.0": torch.randn(16, 12, generator=g), "layers.1": 3 * torch.randn(8, 16, generator=g),
            "layers.2": 0.5 * torch.randn(2, 8, generator=g)}


def _probe(weights: Tensors, masks: Tensors, n_probe: int, seed: int) -> Tensors:
    """The input each layer sees for ``n_probe`` Gaussian inputs through the masked ReLU network."""
    x = torch.randn(n_probe, weights["layers.0"].shape[1], generator=torch.Generator().manual_seed(seed + 1))
    inputs = {}
    for i, name in enumerate(weights):
        inputs[name] = x
        if i < len(weights) - 1:
            x = torch.relu(x @ (weights[name] * masks[name]).T)
    return inputs


def _default_params(name: str | None) -> BaseModel | None:
    model = getattr(pruning, "RULE_PARAMS", {}).get(name) if name is not None else None
    return None if model is None else model()


def check_rule(name_or_rule: str | Rule, *, needs: Sequence[str] | None = None, params: BaseModel | None = None,
               rounds: int = 5, fraction: float = 0.2, seed: int = 0,
               scopes: Sequence[str] = ("layerwise", "global")) -> None:
    """Check that a pruning rule keeps the promises the engine relies on.

    ``name_or_rule``: a name in :data:`ticketscope.pruning.RULES` (its ``needs`` and params model are
    read from the registry; params at their defaults unless ``params`` is given), or the rule function
    itself (then give ``needs`` and ``params`` as you would to ``register``).

    For each scope, ``rounds`` rounds are run on three small synthetic layers, starting dense, feeding
    each round's masks back and perturbing the surviving weights in between ("retraining"). The context
    holds exactly what the rule declares it needs, as the engine builds it: ``dense_weights`` (the
    round-0 weights) and ``probe`` (``layer_inputs``: what each layer sees of 64 Gaussian inputs
    through the masked ReLU network; ``probe_labels``: two balanced classes). Each round, each a
    :class:`ConformanceError` naming the rule, scope, round and layer:

    - *well-formed*: one mask per weight, of its shape and dtype, holding only 0 and 1;
    - *never revives*: new mask <= old mask (the lottery-ticket schedule only removes weights);
    - *hits its targets exactly*: ``survivor_targets(totals, fraction, round, scope)`` survivors, per
      layer in ``layerwise`` scope, in total over the layers in ``global`` scope (respects scope);
    - *deterministic*: the same inputs give identical masks, and the rule leaves its inputs unchanged
      (the engine reuses them).
    A rule that raises (e.g. reading a context field it did not declare) fails with its error.
    """
    if isinstance(name_or_rule, str):
        name = name_or_rule
        _require(name in RULES, f"no pruning rule named {name!r}; registered: {', '.join(sorted(RULES))}")
        rule, declared = RULES[name], tuple(RULE_NEEDS.get(name, ())) if needs is None else tuple(needs)
        params = _default_params(name) if params is None else params
    else:
        rule, name, declared = name_or_rule, getattr(name_or_rule, "__name__", repr(name_or_rule)), tuple(needs or ())
    who = f"rule {name!r}"
    dense = _layers(seed)
    totals = {n: w.numel() for n, w in dense.items()}
    for scope in scopes:
        weights = {n: w.clone() for n, w in dense.items()}
        masks = {n: torch.ones_like(w) for n, w in dense.items()}
        noise = torch.Generator().manual_seed(seed + 2)
        for r in range(1, rounds + 1):
            where = f"{who} ({scope} scope, round {r})"
            ctx = PruneContext(scope=scope, targets=survivor_targets(totals, fraction, r, scope), seed=seed,
                               params=params)
            if "dense_weights" in declared:
                ctx.dense_weights = {n: w.clone() for n, w in dense.items()}
            if "probe" in declared:
                ctx.layer_inputs = _probe(weights, masks, 64, seed)
                ctx.probe_labels = torch.arange(64) % 2
            new = _call(rule, where, weights, masks, ctx, declared)
            _check_masks(where, new, masks, ctx)
            again = _call(rule, where, weights, masks, ctx, declared)
            _require(new.keys() == again.keys() and all(torch.equal(new[k], again[k]) for k in new),
                     f"{where}: not deterministic: the same weights, masks and context gave different masks")
            masks = new
            weights = {n: (w + 0.3 * torch.randn(w.shape, generator=noise)) * masks[n] for n, w in weights.items()}


def _call(rule: Rule, where: str, weights: Tensors, masks: Tensors, ctx: PruneContext,
          declared: tuple[str, ...]) -> Tensors:
    """The rule's masks for copies of its inputs; fails if it raises or modifies them."""
    w, m, c = ({n: t.clone() for n, t in weights.items()}, {n: t.clone() for n, t in masks.items()},
               copy.deepcopy(ctx))
    try:
        new = rule(w, m, c)
    except Exception as e:
        raise ConformanceError(f"{where} raised {type(e).__name__}: {e} (its context holds only what it declares "
                               f"it needs: {list(declared) or 'nothing'})") from e
    given = {"weights": (w, weights), "masks": (m, masks), "ctx.dense_weights": (c.dense_weights, ctx.dense_weights),
             "ctx.layer_inputs": (c.layer_inputs, ctx.layer_inputs)}
    changed = [f"{what}[{n!r}]" for what, (seen, kept) in given.items() for n in kept if not torch.equal(seen[n], kept[n])]
    _require(not changed, f"{where}: modified its inputs ({', '.join(changed)}); a rule must return new masks")
    _require(isinstance(new, dict), f"{where}: returned {type(new).__name__}, expected a dict of masks")
    return new


def _check_masks(where: str, new: Tensors, old: Tensors, ctx: PruneContext) -> None:
    _require(set(new) == set(old), f"{where}: returned masks for {sorted(new)}, expected {sorted(old)}")
    for n, m in new.items():
        _require(isinstance(m, torch.Tensor) and m.shape == old[n].shape and m.dtype == old[n].dtype,
                 f"{where}: layer {n!r}: mask of shape {tuple(getattr(m, 'shape', ()))} and dtype "
                 f"{getattr(m, 'dtype', type(m).__name__)}, expected {tuple(old[n].shape)} and {old[n].dtype}")
        _require(bool(((m == 0) | (m == 1)).all()), f"{where}: layer {n!r}: mask holds values other than 0 and 1")
        revived = int((m.bool() & ~old[n].bool()).sum())
        _require(not revived, f"{where}: layer {n!r}: revived {revived} pruned weight(s) (new mask > old mask)")
    kept = {n: int(m.sum()) for n, m in new.items()}
    if ctx.scope == "global":
        _require(sum(kept.values()) == ctx.targets["*"],
                 f"{where}: keeps {sum(kept.values())} weights in total ({kept}), global target {ctx.targets['*']}")
    else:
        for n, k in kept.items():
            _require(k == ctx.targets[n], f"{where}: layer {n!r} keeps {k} weights, target {ctx.targets[n]}")


# ------------------------------------------------------------------------------------------- registries


def registered_rules() -> list[str]:
    """Names of every registered pruning rule (``ticketscope.pruning.RULES``), sorted: for parametrizing."""
    return sorted(RULES)


def registered_datasets() -> list[str]:
    """Names of every registered data set (``ticketscope.data.DATASETS``), sorted: for parametrizing.
    Finite ones read files, so a test pairs each name with a config of its own (see check_all)."""
    return sorted(DATASETS)


def check_all(datasets: Iterable[DataSource] = (), rules: Iterable[str | Rule] | None = None) -> None:
    """Run :func:`check_rule` on ``rules`` (default: every registered rule) and :func:`check_dataset` on
    each of ``datasets`` (configs or factories: a data set is only checkable with its files, so none
    is built by default)."""
    for rule in registered_rules() if rules is None else rules:
        check_rule(rule)
    for source in datasets:
        check_dataset(source)
