"""Sweep report: every run's stored analysis joined, curves with seed bands, and the claims table.

``build_report(DIR)`` reads ``DIR/runs/*/`` (each run's config, metrics and stored analysis; it never
trains or analyzes), groups runs by every varying config field but the seed ("conditions"), and
writes ``DIR/report/``: ``table.parquet`` (the joined tidy table), the figures, ``claims.json``,
``report.md`` and its rendering ``report.html`` (self-contained, figures embedded).

Modules: :mod:`.table` (the join and the shared grouping helpers), :mod:`.claims` (what is claimed
and how it is judged), :mod:`.figures`, :mod:`.render` (Markdown, HTML), :mod:`.build`.
"""

from __future__ import annotations

from .build import build_report
from .claims import CLAIMS, EMERGENCE, SPECS, TREND, Claim, ClaimSpec, arm, claims, gain_differences, per_seed
from .figures import condition_curves, emergence_figure, gain_figure, rf_comparison
from .render import seed_ranges, to_html, to_markdown
from .table import CLONE, FIRST, GAIN, METHOD, SEED, collect, field_path

__all__ = ["CLAIMS", "CLONE", "EMERGENCE", "FIRST", "GAIN", "METHOD", "SEED", "SPECS", "TREND", "Claim", "ClaimSpec",
           "arm", "build_report", "claims", "collect", "condition_curves", "emergence_figure",
           "field_path", "gain_differences", "gain_figure", "per_seed", "rf_comparison", "seed_ranges", "to_html",
           "to_markdown"]
