"""The report's text: the claims table and what each claim measures, as Markdown and as one HTML file."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import markdown
import pandas as pd

from ..stats import MAX_SEEDS
from .claims import BY_ID, Row
from .table import label


RULE = ("Each claim compares arm A with arm B seed by seed (the arms share initialization, round 0 and data "
        "stream): effect = mean over seeds of A - B (or of the claim's contrast: a difference of differences, a "
        "slope), with its 95% t interval. Two tests decide a confirmatory row, both Holm-Bonferroni adjusted over "
        "the registered family only: the test of difference (effect = 0, p_adj) and the equivalence test (two "
        "one-sided tests that |effect| < delta, the claim's smallest effect of interest, p_eq_adj; Lakens 2017). "
        "Outcomes: **supported**: significant with the predicted sign and not shown smaller than delta; "
        "**supported-negligible**: significant with the predicted sign, but shown smaller than delta (real, too "
        "small to matter); **absent**: shown smaller than delta and not significant; **opposite**: significant "
        "against the predicted sign; **inconclusive**: neither, with the seeds per arm the observed spread would "
        "need. A claim is stated as an effect in one direction even where its source paper predicts none; the last "
        "column gives the outcome the paper's own statement implies (e.g. *absent* for a necessity claim). Margin: how many standard errors the estimate must move (spread and Holm multiplier held) to change "
        "the outcome; under 2 it is marked *fragile* (another CPU's per-seed values behave like a fresh draw and "
        "have moved estimates by 1.3 standard errors). Exploratory rows give the interval and the unadjusted p, "
        "and no outcome.")
OUTCOME_COLOURS = {"supported": "#1a7f37", "supported-negligible": "#4d8f5f", "absent": "#57606a",
                   "opposite": "#cf222e", "inconclusive": "#9a6700"}


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


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # |kappa-3| inside a table cell


def _effect(c: Row) -> str:
    return (f"{_fmt(c.effect)} [{_fmt(c.ci_lo)}, {_fmt(c.ci_hi)}] ({'+' if c.direction > 0 else '−'}, "
            f"{c.delta:g})")


def _seeds(c: Row) -> str:
    short = ", on fewer seeds than planned" if c.short_of_plan else ""
    return f"{seed_ranges(c.seeds)} ({_count(c.n_a, c.planned_a)}, {_count(c.n_b, c.planned_b)}{short})"


def outcome_text(c: Row) -> str:
    """The outcome cell: the keyword in bold, fragile and the seeds an inconclusive row would need."""
    if c.outcome is None:
        return f"no outcome: {c.why}" if c.why else "—"
    needed = "" if not c.seeds_needed else (f" (>{MAX_SEEDS} seeds)" if c.seeds_needed > MAX_SEEDS
                                            else f" (~{c.seeds_needed} seeds)")
    return f"**{c.outcome}**{', *fragile*' if c.fragile else ''}{needed}"


def _margin(c: Row) -> str:
    return "n/a" if c.margin is None else ("∞" if math.isinf(c.margin) else f"{c.margin:.1f}")


def claim_tables(rows: list[Row], registered: bool) -> list[str]:
    """Markdown lines: the confirmatory table, the exploratory table, and one line per reason a claim is not
    testable here (a sweep whose arms answer no claim says so in one line)."""
    confirmatory = [c for c in rows if c.role == "confirmatory"]
    exploratory = [c for c in rows if c.role == "exploratory"]
    untestable = [c for c in rows if c.role == "not testable"]
    family = ("the sweep registers its family (its file's `claims:` block)" if registered else
              "the sweep registers no family, so every testable claim is confirmatory")
    lines = [f"## Confirmatory claims ({len(confirmatory)} rows; {family}; Holm over these rows only)", ""]
    if confirmatory:
        lines += ["| # | claim | context | A − B: effect [95% CI] (stated sign, delta) | mean A / mean B "
                  "| p_adj / p_eq_adj | margin (SE) | seeds (n A, n B) | outcome | the paper predicts |",
                  "|---" * 10 + "|"]
        for i, c in enumerate(confirmatory, 1):
            paper = BY_ID[c.id].paper if c.id in BY_ID else None
            lines.append(f"| {i} | `{c.id}` {_cell(c.claim)} | {c.context or '—'} | {_effect(c)} | {_fmt(c.mean_a)} / "
                         f"{_fmt(c.mean_b)} | {_p(c.p_adj)} / {_p(c.p_equivalence_adj)} | {_margin(c)} | {_seeds(c)} "
                         f"| {outcome_text(c)} | {paper or '— (new test)'} |")
    else:
        lines.append("No confirmatory claim could be judged on this sweep.")
    lines.append("")
    if exploratory:
        lines += [f"## Exploratory claims ({len(exploratory)} rows: not registered, no outcome; p unadjusted)", "",
                  "| claim | context | A − B: effect [95% CI] (predicted sign, delta) | mean A / mean B | p "
                  "| seeds (n A, n B) |", "|---" * 6 + "|"]
        lines += [f"| `{c.id}` {_cell(c.claim)} | {c.context or '—'} | {_effect(c)} | {_fmt(c.mean_a)} / "
                  f"{_fmt(c.mean_b)} | {_p(c.p)} | {_seeds(c)} |" for c in exploratory]
        lines.append("")
    if untestable:
        if not confirmatory and not exploratory:
            lines += [f"This sweep's arms answer none of the {len({c.id for c in untestable})} claims ticketscope "
                      "knows: each needs arms or rounds it lacks (below).", ""]
        by_why: dict[str, list[str]] = {}
        for c in untestable:
            by_why.setdefault(c.why, []).append(f"`{c.id}`" + (" (**registered**)" if c.registered else ""))
        lines += ["## Not testable on this sweep", ""]
        lines += [f"- {why}: {', '.join(dict.fromkeys(ids))}" for why, ids in by_why.items()]
        lines.append("")
    return lines


def match_table(match: pd.DataFrame) -> list[str]:
    """Markdown lines: the causal test's measured magnitude match, step by step (empty without both rules)."""
    if not {"cavity-high", "cavity-low"} <= set(match.columns):
        return []
    ratio = match["cavity-high"] / match["cavity-low"]
    imp = "imp" in match
    lines = ["## The causal test's measured magnitude match", "",
             "Mean |w| removed at each pruning step (first layer, mean over seeds). cavity-high and cavity-low choose "
             "from the same strata of adjacent |w| ranks, so on the same weights they match within 1%; their runs "
             f"then diverge, and this is what they matched: cavity-high / cavity-low from {ratio.min():.3f} to "
             f"{ratio.max():.3f} over the steps" + (f"; against IMP's, cavity-high removed {(match['cavity-high'] / match['imp']).min():.2f}"
                                                    f"-{(match['cavity-high'] / match['imp']).max():.2f}x" if imp else "") + ".",
             "", "| step from round | cavity-high | cavity-low | high / low |" + (" imp | high / imp |" if imp else ""),
             "|---" * (6 if imp else 4) + "|"]
    for r, row in match.iterrows():
        extra = f" {row['imp']:.4g} | {row['cavity-high'] / row['imp']:.3f} |" if imp else ""
        lines.append(f"| {r} | {row['cavity-high']:.4g} | {row['cavity-low']:.4g} | {ratio[r]:.3f} |{extra}")
    return [*lines, ""]


def to_markdown(rows: list[Row], figs: dict[str, Path], header: str, notes: str, failed: list[str] | None = None,
                registered: bool = False, replicate: list[str] | None = None, extra: list[str] | None = None) -> str:
    """The report as Markdown: header, rule, confirmatory and exploratory tables, what is not testable, the
    replicate's comparison, ``extra`` sections (e.g. :func:`match_table`), the points left out (``failed``: lines
    of :func:`failed_table`), what each claim measures, notes, figures."""
    lines = ["# ticketscope claims report", "", header, "", RULE, "", *claim_tables(rows, registered),
             *(replicate or []), *(extra or []), *(failed or [])]
    lines += ["## What each claim measures, and the control that rules out a trivial yes", ""]
    for spec in (BY_ID[i] for i in dict.fromkeys(r.id for r in rows if r.role != "not testable")):
        arms = "; ".join(f"{name} = {label(arm)}" for name, arm in zip(("A", "B", "A2", "B2"), spec.kind.arms()))
        lines += [f"- `{spec.id}` **{spec.text}.** Value: {spec.measure}. {arms}. {spec.control}", ""]
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
    for outcome, c in OUTCOME_COLOURS.items():
        body = body.replace(f"<strong>{outcome}</strong>", f"<strong style='color:{c}'>{outcome}</strong>")
    style = ("body{font-family:sans-serif;max-width:1250px;margin:auto;line-height:1.4}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 6px;font-size:12px;vertical-align:top}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ticketscope report</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")
