"""The report's text: the claims table and what each claim measures, as Markdown and as one HTML file."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import markdown
import pandas as pd

from .claims import SPECS, Claim
from .table import label


RULE = ("Each claim compares arm A with arm B seed by seed (the arms share initialization, round 0 and data "
        "stream): effect = mean over seeds of A - B, with its 95% paired-t interval. p_adj is the two-sided p value "
        "of effect = 0, Holm-Bonferroni adjusted across every row. **supported**: p_adj < 0.05 with the predicted "
        "sign; **contradicted**: p_adj < 0.05 with the other sign, or an equivalence test (two one-sided tests, "
        "Holm-adjusted) shows |effect| < delta, the claim's smallest effect of interest; **inconclusive**: neither, "
        "with the seeds per arm the observed spread would need; **not tested**: fewer than two seeds in both arms.")


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _p(x: float) -> str:
    return "n/a" if math.isnan(x) else ("<1e-4" if x < 1e-4 else f"{x:.2g}")


def seed_ranges(seeds: list[int]) -> str:
    """Seeds as runs of consecutive integers: [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"; "none" for none."""
    s = sorted(seeds)
    starts = [x for i, x in enumerate(s) if i == 0 or s[i - 1] != x - 1]
    ends = [x for i, x in enumerate(s) if i == len(s) - 1 or s[i + 1] != x + 1]
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(starts, ends)) or "none"


def _count(n: int, planned: int | None) -> str:
    return f"{n} of {planned}" if planned is not None and n < planned else str(n)


def failed_table(failed: pd.DataFrame, axes: list[str]) -> list[str]:
    """Markdown lines: every planned point that is not in the report, its varying fields and why."""
    if failed.empty:
        return []
    shown = [a for a in axes if a in failed]
    lines = [f"## Points not in this report ({len(failed)})", "",
             "Every claim above is judged without them; a claim whose arms lost seeds says so in its seeds column.",
             "", "| point | " + " | ".join(shown) + " | why |", "|---" * (len(shown) + 2) + "|"]
    for row in failed.to_dict(orient="records"):
        values = [str(row[a]) for a in shown]
        lines.append(f"| {row['digest']} | " + " | ".join(values) + f" | {row['reason'].replace('|', '/')} |")
    return [*lines, ""]


def to_markdown(rows: list[Claim], figs: dict[str, Path], header: str, notes: str,
                failed: list[str] | None = None) -> str:
    """The report as Markdown: header, rule, claims table, the points left out (``failed``: lines of
    :func:`failed_table`), what each claim measures, notes, figures."""
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (|kappa-3| inside a table cell)
    lines = ["# ticketscope claims report", "", header, "", RULE, "",
             "| # | claim | context | A − B: effect [95% CI] (predicted sign, delta) | mean A / mean B | p_adj "
             "| seeds (n A, n B) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(rows, 1):
        needed = f" (~{c.seeds_needed} seeds)" if c.seeds_needed else ""
        short = ", on fewer seeds than planned" if c.short_of_plan else ""
        lines.append(
            f"| {i} | {cell(c.claim)} | {c.context or '—'} | {_fmt(c.effect)} [{_fmt(c.ci_lo)}, {_fmt(c.ci_hi)}] "
            f"({'+' if c.direction > 0 else '−'}, {c.delta:g}) | {_fmt(c.mean_a)} / {_fmt(c.mean_b)} | {_p(c.p_adj)} "
            f"| {seed_ranges(c.seeds)} ({_count(c.n_a, c.planned_a)}, {_count(c.n_b, c.planned_b)}) "
            f"| **{c.verdict}**{needed}{short} |")
    lines += ["", *(failed or [])]
    lines += ["## What each claim measures, and the control that rules out a trivial yes", ""]
    specs = [*{r.claim: spec for r in rows for spec in SPECS if spec.claim == r.claim}.values()]
    for i, spec in enumerate(specs, 1):
        a, b = (label(arm) for arm in (spec.arm_a, spec.arm_b))
        lines += [f"{i}. **{spec.claim}.** Value: {spec.measure}. A = {a}; B = {b}. {spec.control}", ""]
    if notes:
        lines += ["## How this sweep was chosen", "", notes, ""]
    for title, fig in figs.items():
        lines += [f"## {title}", "", f"![{title}]({fig.name})", ""]
    return "\n".join(lines)


def to_html(md_text: str, figs: dict[str, Path]) -> str:
    body = markdown.markdown(md_text, extensions=["tables"])
    for fig in figs.values():  # embed the figures: the HTML file stands alone
        data = base64.b64encode(fig.read_bytes()).decode()
        body = body.replace(f'src="{html.escape(fig.name)}"', f'src="data:image/png;base64,{data}"')
    colour = {"supported": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#9a6700", "not tested": "#6e7781"}
    for verdict, c in colour.items():
        body = body.replace(f"<strong>{verdict}</strong>", f"<strong style='color:{c}'>{verdict}</strong>")
    style = ("body{font-family:sans-serif;max-width:1250px;margin:auto;line-height:1.4}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 6px;font-size:12px;vertical-align:top}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ticketscope report</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
