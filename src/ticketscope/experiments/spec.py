"""Sweep specs: a base run config, grid axes over any config field, and the points they expand to.

Sweep file (YAML)::

    name: demo                  # optional; default: the file's stem
    base:                       # a partial RunConfig; defaults fill the rest
      data: {name: nlgp, L: 12}
      prune: {rounds: 4}
    grid:                       # cartesian product of the axes, each a dotted config path
      data.gaussian_clone: [false, true]
      prune.method: [imp, oneshot, random]
      seed: [0, 1, 2]
    zip:                        # optional: groups of axes whose values advance together
      - {train.lr: [0.1, 0.01], train.steps: [500, 2000]}
    claims:                     # optional: the registered (confirmatory) claims, by stable id
      - {id: data-vs-clone, delta: 0.02, seeds: 64}

The points are the product of the grid axes and the zip groups (each group is one factor). An axis
may also set one parameter of a plug-in rule or data set (``prune.params.NAME``, ``data.params.NAME``),
checked against the rule's or data set's model.

An axis's values (in ``grid`` or a ``zip`` group) may be written as a range of integers instead of a
list: ``seed: {range: [0, 64]}`` is ``seed: [0, 1, ..., 63]`` (Python's ``range``: the stop is left out;
an optional third element is the step, ``{range: [0, 64, 2]}``). It expands to exactly that list, so
every point and its digest are the same as with the list written out; :meth:`Sweep.to_dict` keeps the
range as written.

``claims`` registers the sweep's confirmatory claims (:class:`RegisteredClaim`): each a mapping with a
stable ``id`` (a string), optionally ``delta`` (its smallest effect of interest, a number > 0) and
``seeds`` (the seeds per arm it was planned with, an integer >= 2). This module checks the block's shape
(ids once each, no other keys); which ids exist is checked by the report.

:meth:`Sweep.replicate` is the same sweep on a disjoint block of seeds (``ticketscope sweep --replicate N``).

A sweep is validated whole when it is built (:func:`load_sweep`, ``Sweep(...)``), before anything
trains: every point's config is resolved, and one ``TicketscopeError`` lists the invalid ones, each
named by the axis values that make it invalid (or ``base``) with the field error. Two points that
resolve to the same config (``seed: [0, 0]``, or values that differ only in a field the digest
ignores, e.g. ``threads``) are refused too, naming the axis. Sweep files are read with
:func:`ticketscope.config.load_yaml`: an empty file and a duplicate key are refused.

Each point's config is named by ``RunConfig.digest()``; running a sweep is :mod:`.sweep`.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..config import RunConfig, load_yaml
from ..errors import TicketscopeError

TOP_LEVEL = ("name", "description", "budget", "base", "grid", "zip", "claims")
SHOWN = 5  # invalid points (grouped by cause) or duplicate axis values listed in one error, then "and N more"
SWEEP_HOLDS = "a mapping with base (a partial run config) and grid (axes to lists of values)"
RANGE_FORM = "{range: [start, stop]} or {range: [start, stop, step]} of integers (Python's range: stop left out)"
CLAIM_KEYS = ("id", "delta", "seeds")
SEED = "seed"  # the axis a replicate shifts


@dataclass(frozen=True)
class RegisteredClaim:
    """One claim a sweep registers as confirmatory: its stable ``id``, its smallest effect of interest
    ``delta`` (> 0; None: the claim's own default) and the ``seeds`` per arm it was planned with (>= 2;
    None: not stated). Which ids exist is checked where claims are judged, not here."""

    id: str
    delta: float | None = None
    seeds: int | None = None

    def __post_init__(self) -> None:
        problem = _claim_problem(self.id, self.delta, self.seeds)
        if problem:
            raise TicketscopeError(f"claim {self.id!r}: {problem}")
        if self.delta is not None:
            object.__setattr__(self, "delta", float(self.delta))

    def to_dict(self) -> dict[str, Any]:
        """The claim in its file format (fields left unset are left out)."""
        return {"id": self.id, **({"delta": self.delta} if self.delta is not None else {}),
                **({"seeds": self.seeds} if self.seeds is not None else {})}


@dataclass(frozen=True)
class SweepPoint:
    """One point: its axis values, its validated config and that config's digest (its run's name)."""

    overrides: dict[str, Any]
    config: RunConfig
    digest: str


@dataclass(frozen=True)
class Sweep:
    """A base config (partial dict) and the axes it varies; validated on construction."""

    name: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    zipped: list[dict[str, list[Any]]] = field(default_factory=list)
    description: str = ""  # free text: what the sweep tests and how it was chosen (shown in reports)
    budget: str = ""  # free text: its measured cost (wall time, machine), printed by `ticketscope presets`
    claims: tuple[RegisteredClaim, ...] = ()  # the registered (confirmatory) claims; empty: none registered
    _written: tuple[dict[str, Any], list[dict[str, Any]]] = field(init=False, repr=False, compare=False)
    _points: tuple[SweepPoint, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_axes(self)  # and expands the ranges in axes and zipped (keeping them as written for to_dict)
        _check_claims(self)
        object.__setattr__(self, "_points", _expand(self))

    def axis_names(self) -> list[str]:
        return [*self.axes, *(axis for group in self.zipped for axis in group)]

    def points(self) -> list[SweepPoint]:
        """Every point, in order: the last grid axis varies fastest, zip groups after the grid."""
        return list(self._points)

    def to_dict(self) -> dict[str, Any]:
        """The sweep in its file format (ranges kept as written)."""
        grid, zipped = self._written
        raw = {"name": self.name, "base": self.base, "grid": grid}
        raw |= {"zip": zipped} if zipped else {}
        raw |= {"description": self.description} if self.description else {}
        raw |= {"budget": self.budget} if self.budget else {}
        raw |= {"claims": [c.to_dict() for c in self.claims]} if self.claims else {}
        return copy.deepcopy(raw)

    def seeds(self) -> list[int]:
        """The values of the seed axis (grid or zip group), in order; refuses a sweep without one."""
        for group in (self.axes, *self.zipped):
            if SEED in group:
                return list(group[SEED])
        raise TicketscopeError(f"sweep {self.name!r} has no seed axis, so it has no seeds to replicate on; "
                               f"give it one, e.g. grid: {{seed: {{range: [0, 8]}}}}")

    def replicate(self, block: int) -> Sweep:
        """The same sweep on a disjoint block of seeds, named ``NAME-replicate{block}``.

        The rule: with the seed axis's values spanning ``span = max - min + 1`` integers, block b shifts
        every seed by ``b * span``. Block b's seeds then lie in ``[min + b*span, max + b*span]``, an
        interval of ``span`` integers that no other block's interval overlaps, so any two blocks share
        no seed, whatever the list (gaps, order, negative steps). ``seed: {range: [0, 64]}`` gives
        64..127 for block 1, 128..191 for block 2; ``[0, 2, 5]`` gives ``[6, 8, 11]`` for block 1. Every
        other axis, the base and the registered claims are unchanged. Block 0 is the sweep itself."""
        if isinstance(block, bool) or not isinstance(block, int) or block < 0:
            raise TicketscopeError(f"a replicate block is an integer >= 1 (0: the sweep itself), not {block!r}")
        seeds = self.seeds()
        if block == 0:
            return self
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise TicketscopeError(f"sweep {self.name!r}: a replicate shifts integer seeds; its seed axis holds {seeds!r}")
        offset = block * (max(seeds) + 1 - min(seeds))
        grid, zipped = copy.deepcopy(self._written)
        for group in (grid, *zipped):
            if SEED in group:
                group[SEED] = _shifted(group[SEED], offset)
        return Sweep(f"{self.name}-replicate{block}", copy.deepcopy(self.base), grid, zipped,
                     description=self.description, budget=self.budget, claims=self.claims)


def _shifted(values: Any, offset: int) -> Any:
    """Seed values as written (a list or a range mapping) with ``offset`` added to each, in the same form."""
    if isinstance(values, dict):
        start, stop, *step = values["range"]
        return {"range": [start + offset, stop + offset, *step]}
    return [v + offset for v in values]


def _range_values(axis: str, values: dict[str, Any]) -> list[int]:
    """The integers of a range mapping ``{range: [start, stop(, step)]}``; one error naming the axis otherwise."""
    args = values.get("range") if set(values) == {"range"} else None
    if not isinstance(args, (list, tuple)) or len(args) not in (2, 3) or \
            not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise TicketscopeError(f"axis {axis}: a range is written {RANGE_FORM}, e.g. {axis}: {{range: [0, 8]}}; "
                               f"got {values!r}")
    if len(args) == 3 and args[2] == 0:
        raise TicketscopeError(f"axis {axis}: a range's step must not be 0; got {values!r}")
    expanded = list(range(*args))
    if not expanded:
        raise TicketscopeError(f"axis {axis}: the range {args} is empty (the stop is left out: "
                               f"{{range: [0, 8]}} is 0..7); got {values!r}")
    return expanded


def _claim_problem(cid: Any, delta: Any, seeds: Any) -> str | None:
    """What is wrong with a registered claim's fields, in words (None: nothing)."""
    if not isinstance(cid, str) or not cid.strip():
        return f"id must be a non-empty string, not {cid!r}"
    if delta is not None and (isinstance(delta, bool) or not isinstance(delta, (int, float))
                              or not math.isfinite(delta) or delta <= 0):
        return f"delta (the smallest effect of interest) must be a number > 0, not {delta!r}"
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2):
        return f"seeds (planned per arm) must be an integer >= 2, not {seeds!r}"
    return None


def _check_claims(sweep: Sweep) -> None:
    if not isinstance(sweep.claims, (tuple, list)) or not all(isinstance(c, RegisteredClaim) for c in sweep.claims):
        raise TicketscopeError(f"claims must be a tuple of RegisteredClaim, not {sweep.claims!r}")
    object.__setattr__(sweep, "claims", tuple(sweep.claims))
    seen = Counter(c.id for c in sweep.claims)
    twice = [cid for cid, n in seen.items() if n > 1]
    if twice:
        raise TicketscopeError(f"claims: {', '.join(map(repr, twice))} registered more than once; list each claim once")


def _parse_claims(raw: Any) -> tuple[RegisteredClaim, ...]:
    """The ``claims:`` block: a list of mappings {id, delta (optional), seeds (optional)}; one error naming
    the entry otherwise."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TicketscopeError(f"claims must be a list of mappings {{id: ..., delta: ..., seeds: ...}}, "
                               f"not {type(raw).__name__}")
    if not raw:
        raise TicketscopeError("claims is an empty list; list the registered claims, or leave the key out "
                               "(then every testable claim is in the family)")
    claims: list[RegisteredClaim] = []
    first: dict[str, int] = {}
    for i, entry in enumerate(raw):
        where = f"claims entry {i + 1}" + (f" (id {entry['id']!r})" if isinstance(entry, dict) and "id" in entry else "")
        if not isinstance(entry, dict):
            raise TicketscopeError(f"{where} must be a mapping {{id: ..., delta: ..., seeds: ...}}, not {entry!r}")
        unknown = sorted(map(str, set(entry) - set(CLAIM_KEYS)))
        if unknown:
            raise TicketscopeError(f"{where}: unknown key(s) {unknown}; a registered claim has {', '.join(CLAIM_KEYS)}")
        if "id" not in entry:
            raise TicketscopeError(f"{where} has no id; a registered claim has {', '.join(CLAIM_KEYS)}")
        problem = _claim_problem(entry["id"], entry.get("delta"), entry.get("seeds"))
        if problem:
            raise TicketscopeError(f"{where}: {problem}")
        if entry["id"] in first:
            raise TicketscopeError(f"claims entries {first[entry['id']] + 1} and {i + 1} both register "
                                   f"{entry['id']!r}; list each claim once")
        first[entry["id"]] = i
        claims.append(RegisteredClaim(entry["id"], entry.get("delta"), entry.get("seeds")))
    return tuple(claims)


def _config_paths(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted field path of a config, sections included."""
    paths = []
    for name, f in model.model_fields.items():
        paths.append(prefix + name)
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            paths += _config_paths(f.annotation, f"{prefix}{name}.")
    return paths


PARAM_AXES = ("data.params.", "prune.params.")
"""Axes below these set one parameter of a plug-in data set or rule (checked against its model per point)."""


def _check_axis(axis: Any, values: Any) -> list[Any]:
    """The axis's values (a range mapping expanded), checked: a config field or plug-in parameter, and a
    non-empty list."""
    paths = _config_paths()
    param = isinstance(axis, str) and axis.startswith(PARAM_AXES) and len(axis.split(".")) == 3 and axis[-1] != "."
    if axis not in paths and not param:
        close = difflib.get_close_matches(str(axis), paths, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise TicketscopeError(f"axis {axis!r} is not a config field{hint} (`ticketscope config` lists them)")
    if isinstance(values, dict):
        return _range_values(axis, values)
    if not isinstance(values, list) or not values:
        raise TicketscopeError(f"axis {axis} needs a non-empty list of values, e.g. {axis}: [a, b], or a range "
                               f"of integers, {RANGE_FORM}; got {values!r}")
    return values


def _check_axes(sweep: Sweep) -> None:
    """Check every axis, and replace each range mapping in ``sweep.axes`` and ``sweep.zipped`` by its list
    (``sweep._written`` keeps the ranges, for :meth:`Sweep.to_dict`)."""
    written = copy.deepcopy(([sweep.axes], sweep.zipped))
    groups = [{axis: _check_axis(axis, values) for axis, values in group.items()} for group in (sweep.axes, *sweep.zipped)]
    for group in (*written[0], *written[1]):
        for axis, values in group.items():
            if isinstance(values, dict):
                group[axis] = {"range": list(values["range"])}
    object.__setattr__(sweep, "_written", (written[0][0], written[1]))
    object.__setattr__(sweep, "axes", groups[0])
    object.__setattr__(sweep, "zipped", groups[1:])
    for group in sweep.zipped:
        if len({len(v) for v in group.values()}) != 1:
            raise TicketscopeError(f"zip group {list(group)}: every axis needs the same number of values")
    for a, b in itertools.permutations(sweep.axis_names(), 2):
        if a == b or b.startswith(a + "."):
            raise TicketscopeError(f"axes {a} and {b} set the same field; keep one")


Factor = tuple[tuple[str, ...], list[tuple[Any, ...]]]  # the axes of a grid axis or zip group, and its rows


def _factors(sweep: Sweep) -> list[Factor]:
    factors: list[Factor] = [((axis,), [(v,) for v in values]) for axis, values in sweep.axes.items()]
    return factors + [(tuple(group), list(zip(*group.values()))) for group in sweep.zipped]


def _label(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in overrides.items())


def _blamed(overrides: dict[str, Any], loc: str, msg: str) -> dict[str, Any]:
    """The axis values an error at config path ``loc`` is about: axes at, below or above it (for a check of
    the whole config, those its message names, else all)."""
    if not loc:
        return {a: v for a, v in overrides.items() if a in msg} or overrides
    return {a: v for a, v in overrides.items() if a == loc or a.startswith(loc + ".") or loc.startswith(a + ".")}


def _errors(raw: dict[str, Any]) -> RunConfig | list[tuple[str, str, str]]:
    """A config, or its errors as (config path, message, the error in words)."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = ".".join(str(part) for part in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            given = "" if isinstance(err.get("input"), dict) else f" (got {err.get('input')!r})"  # not a whole section
            errors.append((loc, msg, f"{loc}: {msg}{given}" if loc else msg))
        return errors


def _resolve(base: dict[str, Any], overrides: dict[str, Any],
             base_errors: set[str]) -> RunConfig | list[tuple[str, str]]:
    """The point's config, or its errors as (what makes it invalid, the field error): the axis values the
    error is about, else ``base`` when the base alone has that error, else all the point's values."""
    try:
        got = _errors(_apply(base, overrides))
    except TicketscopeError as e:
        return [(_label(overrides) or "base", str(e))]
    if isinstance(got, RunConfig):
        return got
    causes: dict[str, list[str]] = {}
    for loc, msg, text in got:
        blamed = _blamed(overrides, loc, msg) or ({} if text in base_errors else overrides)
        causes.setdefault(_label(blamed) or "base", []).append(text)
    return [(cause, "; ".join(texts)) for cause, texts in causes.items()]


def _listed(lines: list[str]) -> str:
    more = f"\n  and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    return "".join(f"\n  {line}" for line in lines[:SHOWN]) + more


def _expand(sweep: Sweep) -> tuple[SweepPoint, ...]:
    """Every point's validated config; one error lists the invalid points, or the axis values that give
    one config twice."""
    factors = _factors(sweep)
    alone = _errors(copy.deepcopy(sweep.base))
    base_errors = set() if isinstance(alone, RunConfig) else {text for _, _, text in alone}
    points, indices, invalid = [], [], Counter[tuple[str, str]]()
    for index in itertools.product(*(range(len(rows)) for _, rows in factors)):
        overrides = {a: v for (axes, rows), i in zip(factors, index) for a, v in zip(axes, rows[i])}
        cfg = _resolve(sweep.base, overrides, base_errors)
        if isinstance(cfg, RunConfig):
            points.append(SweepPoint(overrides, cfg, cfg.digest()))
            indices.append(index)
        else:
            invalid.update(cfg)
    if invalid:
        total = math.prod(len(rows) for _, rows in factors)
        n_bad = total - len(points)
        causes = [f"{cause}{f' ({n} points)' if n > 1 else ''}: {error}" for (cause, error), n in invalid.items()]
        head = f"{n_bad} of {total} points {'is' if n_bad == 1 else 'are'} invalid, so none was run"
        hint = _params_hint(sweep, [error for _, error in invalid])
        if len(causes) == 1:
            raise TicketscopeError(f"{head}: {causes[0]}{hint}")
        raise TicketscopeError(f"{head}:{_listed(causes)}{hint}")
    _check_distinct(points, indices, factors)
    return tuple(points)


PARAM_OWNERS = {"prune.params": ("prune.method", "rule"), "data.params": ("data.name", "data set")}
"""A parameter section, the field that picks whose parameters they are, and what that field names."""


def _params_hint(sweep: Sweep, errors: list[str]) -> str:
    """A hint for parameters crossed with the rules (or data sets) they belong to: when an axis sets
    ``prune.params`` (or one parameter below it) and ``prune.method`` is an axis of its own, every rule gets
    every parameter value, and a rule without that parameter refuses it; a ``zip:`` group pairs them."""
    axes = sweep.axis_names()
    for params, (owner, noun) in PARAM_OWNERS.items():
        set_here = [a for a in axes if a == params or a.startswith(params + ".")]
        if owner not in axes or not set_here or not any(params in e for e in errors):
            continue
        if any(owner in group and all(a in group for a in set_here) for group in sweep.zipped):
            continue  # already paired
        owners = next(group[owner] for group in (sweep.axes, *sweep.zipped) if owner in group)[:2]
        name, value = (set_here[0].split(".")[-1], _flow(next(
            group[set_here[0]] for group in (sweep.axes, *sweep.zipped) if set_here[0] in group)[0])) \
            if set_here[0] != params else ("NAME", "VALUE")
        example = f"{{{owner}: [{', '.join(map(_flow, owners))}], {params}: [{{}}, {{{name}: {value}}}]}}"
        return (f"\n  hint: the grid gives every {owner} every value of {', '.join(set_here)}, and not every "
                f"{noun} takes them; pair each {noun} with its own parameters in one zip: group instead, "
                f"e.g. zip: [{example}] ({{}}: no parameters)")
    return ""


def _flow(value: Any) -> str:
    """A value as it is written in a YAML flow sequence."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _check_distinct(points: list[SweepPoint], indices: list[tuple[int, ...]], factors: list[Factor]) -> None:
    """Refuse two points of one config, named by the one axis (or zip group) whose values they differ in;
    points that differ in several are named themselves, when no single axis explains the clash."""
    first: dict[str, int] = {}
    single: dict[str, None] = {}  # ordered sets of messages
    several: dict[str, None] = {}
    for k, p in enumerate(points):
        j = first.setdefault(p.digest, k)
        if j == k:
            continue
        differ = [f for f, (a, b) in enumerate(zip(indices[j], indices[k])) if a != b]
        if len(differ) > 1:
            several[f"points {_label(points[j].overrides)} and {_label(p.overrides)}"] = None
            continue
        axes, rows = factors[differ[0]]
        a, b = rows[indices[j][differ[0]]], rows[indices[k][differ[0]]]
        single[f"axis {axes[0]}: its values {a[0]!r} and {b[0]!r}" if len(axes) == 1 else
               f"zip group {', '.join(axes)}: its rows {dict(zip(axes, a))} and {dict(zip(axes, b))}"] = None
    lines = [f"{what} give the same run config; list each value once" for what in single or several]
    if len(lines) == 1:
        raise TicketscopeError(f"two points would be one run: {lines[0]}")
    if lines:
        raise TicketscopeError(f"points would be one run:{_listed(lines)}")


def _apply(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with each dotted path set to its value."""
    obj = copy.deepcopy(base)
    for path, value in overrides.items():
        *sections, leaf = path.split(".")
        node = obj
        for i, section in enumerate(sections):
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                raise TicketscopeError(f"base.{'.'.join(sections[:i + 1])} must be a mapping to set {path}")
        node[leaf] = copy.deepcopy(value)
    return obj


def _parse(raw: dict[str, Any], default_name: str) -> Sweep:
    unknown = sorted(map(str, set(raw) - set(TOP_LEVEL)))
    if unknown:
        raise TicketscopeError(f"unknown top-level key(s) {unknown}; a sweep has {', '.join(TOP_LEVEL)}")
    name, base = raw.get("name", default_name), raw.get("base") or {}
    description, budget = (" ".join(str(raw.get(k) or "").split()) for k in ("description", "budget"))
    grid, zipped = raw.get("grid") or {}, raw.get("zip") or []
    for key, value, kind, noun in (("name", name, str, "string"), ("base", base, dict, "mapping"),
                                   ("grid", grid, dict, "mapping"), ("zip", zipped, list, "list")):
        if not isinstance(value, kind):
            raise TicketscopeError(f"{key} must be a {noun}, not {type(value).__name__}")
    if not all(isinstance(group, dict) and group for group in zipped):
        raise TicketscopeError("zip must be a list of mappings, each of one or more axes to lists of values")
    claims = _parse_claims(raw.get("claims"))
    return Sweep(name, *copy.deepcopy((base, grid, zipped)), description=description, budget=budget, claims=claims)


def load_sweep(source: str | Path | dict[str, Any]) -> Sweep:
    """A sweep from a YAML file or a dict; a malformed sweep raises one clear ``TicketscopeError``."""
    if isinstance(source, dict):
        raw, where, default_name = source, "<dict>", "sweep"
    elif isinstance(source, (str, Path)):
        raw, where, default_name = load_yaml(source, "sweep file", SWEEP_HOLDS), str(source), Path(source).stem
    else:
        raise TicketscopeError(f"a sweep is a mapping (name, base, grid, zip), not {type(source).__name__}")
    try:
        return _parse(raw, default_name)
    except TicketscopeError as e:
        raise TicketscopeError(f"invalid sweep {where}: {e}") from None
