"""`fab capacity`: a table per tier with limit, planned use, headroom; the first to run out."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..plans.capacity import GB, CapacityReport, Line
from .console import out, print_json


def _fmt(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / GB:,.1f} GiB"
    return f"{value:,.0f} min" if unit == "minutes" else f"{value:,.0f}"


def _folded(lines: list[Line]) -> list[Line]:
    """Hosts whose line is the same ('web-1 sentry', 'web-2 sentry', ...) become one row."""
    from dataclasses import replace

    from ..folding import fold_names

    groups: dict[tuple, list[Line]] = {}
    for x in lines:
        host, _, what = x.component.partition(" ")
        groups.setdefault((x.tier, what, x.limit, x.planned, x.what_if), []).append(x)
    out = []
    for (_, what, *_), members in groups.items():
        if len(members) == 1:
            out.append(members[0])
        else:
            hosts = fold_names([m.component.partition(" ")[0] for m in members])
            out.append(replace(members[0], component=f"{hosts} {what}"))
    return out


def show(report: CapacityReport, as_json: bool = False) -> None:
    """Print the report (or JSON)."""
    if as_json:
        first = report.first_to_run_out
        print_json({"lines": [{**x.__dict__, "headroom": x.headroom, "used_pct":
                               round(x.used_pct, 1), "over": x.over} for x in report.lines],
                    "over": [x.component for x in report.over],
                    "first_to_run_out": first.component if first else None})
        return
    tiers: dict[str, list[Line]] = {}
    for x in _folded(report.lines):
        tiers.setdefault(x.tier, []).append(x)
    for tier, lines in tiers.items():
        table = Table(title=tier, title_justify="left")
        for col in ("component", "limit", "planned", "headroom", "used", "what"):
            table.add_column(col, justify="right" if col in ("limit", "planned", "headroom",
                                                              "used") else "left")
        for x in sorted(lines, key=lambda x: -x.used_pct):
            style = "red" if x.over else "yellow" if x.used_pct >= 80 else "green"
            name = x.component + (" (what if)" if x.what_if else "")
            table.add_row(name, _fmt(x.limit, x.unit), _fmt(x.planned, x.unit),
                          _fmt(x.headroom, x.unit), Text(f"{x.used_pct:.0f}%", style=style),
                          x.note)
        out.print(table)
    first = report.first_to_run_out
    if first:
        out.print(Text(f"first to run out: {first.component} ({first.tier}) at "
                       f"{first.used_pct:.0f}% of its limit", style="bold"))
    for x in report.over:
        out.print(Text(f"OVER: {x.component}: {_fmt(x.planned, x.unit)} > "
                       f"{_fmt(x.limit, x.unit)} {x.unit} ({x.note})", style="bold red"))
