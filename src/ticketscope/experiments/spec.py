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
may also set one parameter of a plug-in rule or data set (``prune.params.NAME``, ``data.params.NAME``):
each point's config checks it against the rule's or data set's model, so a bad one fails its points.

Each point's config is named by ``RunConfig.digest()``; running a sweep is :mod:`.sweep`.
"""

from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import RunConfig, load_yaml, parse_config
from ..errors import TicketscopeError

TOP_LEVEL = ("name", "description", "budget", "base", "grid", "zip")


@dataclass(frozen=True)
class SweepPoint:
    """One point: its axis values and its resolved config, or why that config is invalid."""

    overrides: dict[str, Any]
    config: RunConfig | None
    error: str | None
    digest: str | None


@dataclass(frozen=True)
class Sweep:
    """A base config (partial dict) and the axes it varies; validated on construction."""

    name: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    zipped: list[dict[str, list[Any]]] = field(default_factory=list)
    description: str = ""  # free text: what the sweep tests and how it was chosen (shown in reports)
    budget: str = ""  # free text: its measured cost (wall time, machine), printed by `ticketscope presets`

    def __post_init__(self) -> None:
        _check_axes(self)

    def axis_names(self) -> list[str]:
        return [*self.axes, *(axis for group in self.zipped for axis in group)]

    def points(self) -> list[SweepPoint]:
        """Every point, in order: the last grid axis varies fastest, zip groups after the grid."""
        factors = [[{axis: v} for v in values] for axis, values in self.axes.items()]
        factors += [[dict(zip(group, row)) for row in zip(*group.values())] for group in self.zipped]
        return [self._point({k: v for part in combo for k, v in part.items()})
                for combo in itertools.product(*factors)]

    def _point(self, overrides: dict[str, Any]) -> SweepPoint:
        label = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "(base)"
        try:
            cfg = parse_config(_apply(self.base, overrides), f"for sweep point {label}")
        except TicketscopeError as e:
            return SweepPoint(overrides, None, str(e), None)
        return SweepPoint(overrides, cfg, None, cfg.digest())

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
        raw, where, default_name = load_yaml(source), str(source), Path(source).stem
    else:
        raise TicketscopeError(f"a sweep is a mapping (name, base, grid, zip), not {type(source).__name__}")
    try:
        return _parse(raw, default_name)
    except TicketscopeError as e:
        raise TicketscopeError(f"invalid sweep {where}: {e}") from None
