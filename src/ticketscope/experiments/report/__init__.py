"""Sweep report: every run's stored analysis joined, curves with seed bands, and the claims table.

``build_report(DIR)`` reads ``DIR/runs/*/`` (each run's config, metrics and stored analysis; it never
trains or analyzes), groups runs by every varying config field but the seed ("conditions"), and
writes ``DIR/report/``: ``table.parquet`` (the joined tidy table), the figures, ``claims.json``,
``report.md`` and its rendering ``report.html`` (self-contained, figures embedded).

Modules: :mod:`.table` (the join and the shared grouping helpers), :mod:`.claims` (what is claimed,
as records, and how it is judged), :mod:`.kinds` (the kinds of comparison), :mod:`.replicate`, :mod:`.figures`, :mod:`.render` (Markdown, HTML), :mod:`.build`.
"""

from __future__ import annotations

from .build import build_report
from .claims import BY_ID, REGISTRY, Claim, Registration, Row, check_columns, family, judge
from .figures import claims_figure, condition_curves, emergence_figure, gain_figure, rf_comparison
from .kinds import AxisSlope, DiffOfDiffs, Emergence, Kind, Paired, RoundSlope, arm, per_seed
from .render import seed_ranges, to_html, to_markdown
from .table import CLONE, FIRST, GAIN, METHOD, REPORT_COLUMNS, SEED, collect, field_path

__all__ = ["BY_ID", "CLONE", "FIRST", "GAIN", "METHOD", "REGISTRY", "REPORT_COLUMNS", "SEED", "AxisSlope", "Claim",
           "DiffOfDiffs", "Emergence", "Kind", "Paired", "Registration", "RoundSlope", "Row", "arm", "build_report",
           "check_columns", "claims_figure", "collect", "condition_curves", "emergence_figure", "family",
           "field_path", "gain_figure", "judge", "per_seed", "rf_comparison", "seed_ranges", "to_html", "to_markdown"]
