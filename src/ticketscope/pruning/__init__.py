"""Pruning rules: one function each, from (weights, masks, context) to new masks.

A rule scores every weight (higher = keep) and :func:`keep_top` keeps the ``ctx.targets``
best-scoring *surviving* weights, per layer (``layerwise``) or across the prunable layers
(``global``). Survivor counts follow the lottery-ticket schedule: after round r a layer of N
prunable weights keeps ``round(N (1 - p)^r)`` (Frankle & Carbin 2019), so every method
(IMP, one-shot, random, cavity) lands on the same per-layer density each round.

Add a rule with ``@register("name")``; the engine looks it up by ``PruneConfig.method``. A rule with
parameters of its own declares them as a pydantic model, ``@register("name", params=Model)``: a config's
``prune.params`` is validated against it and the rule reads the instance as ``ctx.params``. Rules
defined in files of your own reach the command line and every sweep worker through the environment
variable ``TICKETSCOPE_PLUGINS`` (:mod:`ticketscope.plugins`), imported once when this package is.
Built-in rules: :mod:`.magnitude` (imp, oneshot, random), :mod:`.cavity` (cavity), :mod:`.banded`
(cavity-high, cavity-low: cavity scores within IMP's magnitude band).
"""

from ..plugins import load_plugins
from . import banded, cavity, magnitude  # noqa: F401  (register the built-in rules)
from .base import (NEEDS, RULE_NEEDS, RULE_PARAMS, RULES, PruneContext, Rule, Tensors, connected_fraction, densities,
                   keep_top, register, survivor_targets)

__all__ = ["NEEDS", "RULES", "RULE_NEEDS", "RULE_PARAMS", "PruneContext", "Rule", "Tensors", "connected_fraction",
           "densities", "keep_top", "register", "survivor_targets"]

load_plugins()  # users' rules (TICKETSCOPE_PLUGINS), here and in every sweep worker
