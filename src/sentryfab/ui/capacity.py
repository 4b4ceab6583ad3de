"""`fab capacity`: a table per tier with limit, planned use, headroom; the first to run out;
each db host's disk forecast and the tier that runs out of events/s first."""

from __future__ import annotations

import datetime as dt

from rich.table import Table
from rich.text import Text

from ..plans.capacity import GB, CapacityReport, Line
from ..plans.forecast import TB, DiskForecast, Outlook
from .console import out, print_json


def _fmt(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / TB:,.1f} TiB" if abs(value) >= TB else f"{value / GB:,.1f} GiB"
    if unit == "events/s":
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
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


def _report_json(report: CapacityReport) -> dict:
    first = report.first_to_run_out
    return {"lines": [{**x.__dict__, "headroom": x.headroom, "used_pct": round(x.used_pct, 1),
                       "over": x.over} for x in report.lines],
            "over": [x.component for x in report.over],
            "first_to_run_out": first.component if first else None}


def show(report: CapacityReport, as_json: bool = False) -> None:
    """Print the report (or JSON)."""
    if as_json:
        print_json(_report_json(report))
        return
    _tables(report)
    _summary(report)


def _tables(report: CapacityReport) -> None:
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


def _summary(report: CapacityReport) -> None:
    first = report.first_to_run_out
    if first:
        out.print(Text(f"first to run out: {first.component} ({first.tier}) at "
                       f"{first.used_pct:.0f}% of its limit", style="bold"))
    for x in report.over:
        # Sizes and minutes carry their unit already.
        unit = "" if x.unit in ("bytes", "minutes") else f" {x.unit}"
        out.print(Text(f"OVER: {x.component}: {_fmt(x.planned, x.unit)} > "
                       f"{_fmt(x.limit, x.unit)}{unit} ({x.note})", style="bold red"))


def when(days: float, today: dt.date) -> str:
    """'now', 'in 7.4 h' within a day, else 'on day 12 (2025-07-03)'."""
    if days <= 0:
        return "now"
    if days < 1:
        return f"in {days * 24:.1f} h"
    return f"on day {days:,.0f} ({today + dt.timedelta(days=days):%Y-%m-%d})"


def verdicts(o: Outlook, today: dt.date) -> list[tuple[str, str]]:
    """The forecast in sentences, each with its style: rate, disk, WAL, throughput, gaps."""
    lines: list[tuple[str, str]] = []
    if o.rate_source == "none":
        lines.append(("rate: none declared (roles.redis-queue.events_per_second) nor measured: "
                      "the disks are planned without growth, the tiers against 0", "yellow"))
    else:
        seen = (f"; measured {o.measured_rate:,.1f} events/s on the db hosts"
                if o.measured_rate is not None and o.rate_source == "declared" else "")
        lines.append((f"rate: {_fmt(o.rate, 'events/s')} events/s ({o.rate_source}){seen}; "
                      f"retention {o.retention_days} days: the database holds "
                      f"{o.retention_days + 1} days of events at steady state (cleanup runs "
                      "daily)", ""))
    first = o.first_disk
    if first is not None:
        inside = "inside" if o.runs_out_within_retention else "after"
        lines.append((f"disk: {first.host} fills first, {when(first.runs_out_day or 0.0, today)}"
                      f", {inside} the {o.retention_days}-day retention window: steady state "
                      f"needs {_fmt(first.need, 'bytes')}, it has {_fmt(first.room, 'bytes')}",
                      "bold red"))
    elif o.disks:
        d = max(o.disks, key=lambda d: d.need / d.room if d.room else float("inf"))
        grows = f", reached in {d.days_to_steady:,.0f} days" if d.growth_per_day else ""
        lines.append((f"disk: every db host holds the steady state (fullest: {d.host}, "
                      f"{_fmt(d.need, 'bytes')} of {_fmt(d.room, 'bytes')}{grows})", "green"))
    covers = [d for d in o.disks if d.slot_covers_seconds is not None]
    if covers:
        d = min(covers, key=lambda d: d.slot_covers_seconds or 0.0)
        lines.append((f"WAL: {d.wal_per_second / 1024 ** 2:,.1f} MiB/s on {d.host} at this "
                      f"rate ({_kib(d.wal_per_event)}/event): a replica "
                      f"may be away {_duration(d.slot_covers_seconds or 0.0)} before its slot "
                      f"is given up (max_slot_wal_keep_size {_fmt(d.slot_cap, 'bytes')}) and "
                      "it must be cloned again", ""))
    tier = o.first_tier
    if tier is not None:
        planned = (f" (planned {_fmt(tier.planned, 'events/s')}: {tier.used_pct:.0f}%)"
                   if tier.planned else "")
        lines.append((f"throughput: the {tier.component} runs out first, at "
                      f"{_fmt(tier.limit, 'events/s')} events/s{planned}",
                      "bold red" if tier.over else "bold"))
    lines += [(f"not known: {m}", "yellow") for m in o.missing]
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"


def _disk_json(d: DiskForecast) -> dict:
    return {**d.__dict__, "growth_per_day": d.growth_per_day, "steady": d.steady,
            "need": d.need, "days_to_steady": d.days_to_steady, "runs_out_day": d.runs_out_day,
            "wal_per_second": d.wal_per_second, "slot_covers_seconds": d.slot_covers_seconds}


def _disk_table(o: Outlook) -> Table:
    table = Table(title="disk forecast", title_justify="left")
    for col in ("host", "per event", "WAL per event", "now", "steady state", "WAL kept",
                "room", "fills"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for d in o.disks:
        day = d.runs_out_day
        table.add_row(d.host, f"{_kib(d.bytes_per_event)} ({d.bytes_source})",
                      f"{_kib(d.wal_per_event)} ({d.wal_source})", _fmt(d.db_now, "bytes"),
                      _fmt(d.steady, "bytes"), f"{_fmt(d.wal_kept, 'bytes')} ({d.wal_note})",
                      _fmt(d.room, "bytes"),
                      Text(f"day {day:,.1f}", style="red") if day is not None else
                      Text("never", style="green"))
    return table


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def show_outlook(o: Outlook, as_json: bool = False, today: dt.date | None = None) -> None:
    """`fab capacity`: the tables, the disk forecast and the verdicts (or JSON)."""
    if as_json:
        first, tier = o.first_disk, o.first_tier
        print_json({**_report_json(o.report), "forecast": {
            "rate": o.rate, "rate_source": o.rate_source, "measured_rate": o.measured_rate,
            "retention_days": o.retention_days, "disks": [_disk_json(d) for d in o.disks],
            "first_disk": {"host": first.host, "day": first.runs_out_day} if first else None,
            "runs_out_within_retention": o.runs_out_within_retention,
            "first_tier": {"tier": tier.component, "at": tier.limit} if tier else None,
            "missing": o.missing, "exit_code": o.exit_code}})
        return
    _tables(o.report)
    if o.disks:
        out.print(_disk_table(o))
    _summary(o.report)
    for text, style in verdicts(o, today or dt.date.today()):
        out.print(Text(text, style=style))
