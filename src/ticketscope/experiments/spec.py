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

The points are the product of the grid axes and the zip groups (each group is one factor). An axis
may also set one parameter of a plug-in rule or data set (``prune.params.NAME``, ``data.params.NAME``),
checked against the rule's or data set's model.

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

TOP_LEVEL = ("name", "description", "budget", "base", "grid", "zip")
SHOWN = 5  # invalid points (grouped by cause) or duplicate axis values listed in one error, then "and N more"
SWEEP_HOLDS = "a mapping with base (a partial run config) and grid (axes to lists of values)"


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
    _points: tuple[SweepPoint, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_axes(self)
        object.__setattr__(self, "_points", _expand(self))

    def axis_names(self) -> list[str]:
        return [*self.axes, *(axis for group in self.zipped for axis in group)]

    def points(self) -> list[SweepPoint]:
        """Every point, in order: the last grid axis varies fastest, zip groups after the grid."""
        return list(self._points)

    def to_dict(self) -> dict[str, Any]:
        """The sweep in its file format."""
        raw = {"name": self.name, "base": self.base, "grid": self.axes}
        raw |= {"zip": self.zipped} if self.zipped else {}
        raw |= {"description": self.description} if self.description else {}
        raw |= {"budget": self.budget} if self.budget else {}
        return copy.deepcopy(raw)


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


def _check_axis(axis: Any, values: Any) -> None:
    paths = _config_paths()
    param = isinstance(axis, str) and axis.startswith(PARAM_AXES) and len(axis.split(".")) == 3 and axis[-1] != "."
    if axis not in paths and not param:
        close = difflib.get_close_matches(str(axis), paths, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise TicketscopeError(f"axis {axis!r} is not a config field{hint} (`ticketscope config` lists them)")
    if not isinstance(values, list) or not values:
        raise TicketscopeError(f"axis {axis} needs a non-empty list of values, e.g. {axis}: [a, b]; got {values!r}")


def _check_axes(sweep: Sweep) -> None:
    for group in (sweep.axes, *sweep.zipped):
        for axis, values in group.items():
            _check_axis(axis, values)
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
        if len(causes) == 1:
            raise TicketscopeError(f"{head}: {causes[0]}")
        raise TicketscopeError(f"{head}:{_listed(causes)}")
    _check_distinct(points, indices, factors)
    return tuple(points)


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
    return Sweep(name, *copy.deepcopy((base, grid, zipped)), description=description, budget=budget)


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
