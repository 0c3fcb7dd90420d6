"""A replicate's comparison: the same sweep on a disjoint block of seeds, its confirmatory outcomes beside this one's.

Trained networks differ in their last bits across CPUs and then diverge, so per-seed values behave like a
fresh draw: an outcome worth writing down holds on a replicate with disjoint seeds. :func:`compare` pairs
the two reports' confirmatory rows by claim id and context and says where they differ.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...errors import TicketscopeError
from ...io import read_json
from .claims import Row
from .render import seed_ranges


def load_rows(sweep_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A sweep's judged rows (``report/claims.json``) and its report record (``report/report.json``)."""
    claims, record = sweep_dir / "report" / "claims.json", sweep_dir / "report" / "report.json"
    if not claims.exists() or not record.exists():
        raise TicketscopeError(f"{sweep_dir} has no report to compare with: run `ticketscope report {sweep_dir}` "
                               "first")
    return read_json(claims), read_json(record)


def _cell(outcome: str | None, margin: float | None, fragile: bool) -> str:
    if outcome is None:
        return "not judged"
    m = "∞" if margin is None or math.isinf(margin) else f"{margin:.1f}"
    return f"{outcome} (margin {m}{', fragile' if fragile else ''})"


def compare(rows: list[Row], this: dict[str, Any], other_dir: Path) -> tuple[list[str], list[dict]]:
    """Markdown lines and records: every confirmatory row of this report beside the replicate's (``other_dir``).

    ``this``: this report's record (seeds, machines, design digest, registered family). Refuses a replicate that
    shares a seed, varies or holds other settings (another design digest) or registers another family (its Holm
    family, and so its outcomes, would differ for that reason alone)."""
    other, record = load_rows(other_dir)
    seeds, machines = this["seeds"], this["machines"]
    shared = sorted(set(seeds) & set(record["seeds"]))
    if shared:
        raise TicketscopeError(f"{other_dir} is not a replicate of this sweep: both use seeds {seed_ranges(shared)}; "
                               "run `ticketscope sweep SWEEP --replicate N` for a disjoint block")
    if record.get("design") != this["design"]:
        raise TicketscopeError(f"{other_dir} is not a replicate of this sweep: its points differ in more than their "
                               "seeds (other settings or axes); replicate with `ticketscope sweep SWEEP --replicate N`")
    if record.get("family") != this["family"]:
        raise TicketscopeError(f"{other_dir} registers another claim family ({record.get('family')}) than this sweep "
                               f"({this['family']}): its outcomes would differ for that reason alone")
    theirs = {(r["id"], r["context"]): r for r in other if r["role"] == "confirmatory"}
    records, lines = [], []
    for r in rows:
        if r.role != "confirmatory":
            continue
        o = theirs.get((r.id, r.context))
        agree = o is not None and o["outcome"] == r.outcome
        records.append({"id": r.id, "context": r.context, "outcome": r.outcome, "margin": r.margin,
                        "effect": r.effect, "replicate_outcome": o and o["outcome"],
                        "replicate_margin": o and o["margin"], "replicate_effect": o and o["effect"], "agree": agree})
        lines.append(f"| `{r.id}` | {r.context or '—'} | {r.effect:.3g} [{r.ci_lo:.3g}, {r.ci_hi:.3g}] "
                     f"| {_cell(r.outcome, r.margin, r.fragile)} | "
                     + (f"{o['effect']:.3g} [{o['ci_lo']:.3g}, {o['ci_hi']:.3g}] | "
                        f"{_cell(o['outcome'], o['margin'], o['fragile'])}" if o else "— | not in the replicate")
                     + f" | {'yes' if agree else '**no**'} |")
    differ = [f"`{x['id']}`" + (f" ({x['context']})" if x["context"] else "") for x in records if not x["agree"]]
    summary = (f"All {len(records)} confirmatory outcomes agree." if not differ else
               f"{len(records) - len(differ)} of {len(records)} confirmatory outcomes agree; they differ on "
               f"{', '.join(differ)}: state none of those.")
    head = [f"## Replicate on disjoint seeds ({other_dir})", "",
            f"This block: seeds {seed_ranges(seeds)} on {'; '.join(machines) or 'unknown'}. Replicate: seeds "
            f"{seed_ranges(record['seeds'])} on {'; '.join(record.get('machines', [])) or 'unknown'}. {summary}", "",
            "| claim | context | this block: effect [95% CI] | outcome | replicate: effect [95% CI] | outcome | agree |",
            "|---" * 7 + "|"]
    return [*head, *lines, ""], records
