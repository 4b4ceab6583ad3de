"""How topology, plans and switchover/failover/rejoin runs are shown (progress on stderr)."""

from __future__ import annotations

from rich import box
from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from ..plans.failover import Plan, Step, command, size
from ..procedures.failover import Report
from ..topology.model import Topology
from ..topology.values import lsn_text
from .console import err, out, print_json

STATE_STYLE = {"primary": "bold green", "replica": "green", "stopped": "yellow",
               "down": "red", "unreachable": "bold red", "empty": "dim"}


def topology_record(topo: Topology) -> dict:
    """The --json form of a topology."""
    p = topo.primary
    nodes = []
    for n in topo.nodes:
        lag = topo.lag(n) if n.is_replica else None
        nodes.append({
            "host": n.name, "address": n.address, "state": n.state,
            "timeline": n.known_timeline, "wal": lsn_text(n.position) if n.position else None,
            "streaming_from": p.name if p is not None and n.streams_from(p) else None,
            "lag_bytes": lag.bytes if lag else None, "lag_seconds": lag.seconds if lag else None,
            "sync_state": next((s.sync_state for s in p.standbys if s.name == n.name), None)
            if p is not None else None,
            "synchronous_standby_names": n.sync_names if n.is_primary else None,
            "fenced": n.fenced.as_record() if n.fenced else None,
            "degraded": n.degraded.as_record() if n.degraded and n.is_primary else None,
            "container": n.container, "error": n.error or n.sql_error,
        })
    return {
        "primary": p.name if p else None, "synchronous": topo.synchronous,
        "degraded": topo.degraded, "nodes": nodes,
        "pgbouncers": [{"host": b.name, "reachable": b.reachable, "error": b.error,
                        "points_to": topo.points_to(b) if b.reachable else None,
                        "paused": any(d.paused for d in b.databases)}
                       for b in topo.bouncers],
        "fenced": [n.name for n in topo.nodes if n.fenced],
        "problems": topo.problems(),
    }


def show_topology(topo: Topology, as_json: bool = False) -> None:
    """db hosts (state, timeline, WAL, lag, sync, fence), PgBouncers, then problems."""
    if as_json:
        print_json(topology_record(topo))
        return
    rec = topology_record(topo)
    mode = ("synchronous, DEGRADED to async" if topo.degraded
            else "synchronous" if topo.synchronous else "asynchronous")
    table = Table(title=f"database topology ({mode} replication)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("host", "state", "timeline", "WAL", "lag", "sync", "notes"):
        table.add_column(col, no_wrap=col != "notes")
    for n, r in zip(topo.nodes, rec["nodes"], strict=True):
        lag = "-"
        if r["lag_bytes"] is not None or r["lag_seconds"] is not None:
            secs = f", {r['lag_seconds']:.1f} s" if r["lag_seconds"] is not None else ""
            lag = size(r["lag_bytes"]) + secs
        notes = []
        if r["streaming_from"]:
            notes.append(f"streams from {r['streaming_from']}")
        elif n.is_replica:
            notes.append("NOT streaming")
        if n.fenced:
            notes.append(f"FENCED {n.fenced.describe()}")
        if r["degraded"]:
            notes.append("DEGRADED to async")
        if n.control is not None:
            notes.append(f"last stopped: {n.control.state}")
        if r["error"]:
            notes.append(str(r["error"]))
        table.add_row(n.name, Text(n.state, style=STATE_STYLE.get(n.state, "")),
                      str(r["timeline"] or "-"), r["wal"] or "-", lag, r["sync_state"] or "-",
                      "; ".join(notes))
    out.print(table)
    if topo.bouncers:
        bt = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("pgbouncer", topo.database + " ->", "paused", "notes"):
            bt.add_column(col)
        for b in topo.bouncers:
            paused = any(d.paused for d in b.databases)
            bt.add_row(b.name, topo.points_to(b) or "-" if b.reachable else "-",
                       Text("PAUSED", style="bold red") if paused else Text("no", style="dim"),
                       "" if b.reachable and not b.error else str(b.error))
        out.print(bt)
    for p in rec["problems"]:
        out.print(Text("  ! " + p, style="yellow"))


def show_plan(plan: Plan) -> None:
    """What was found, what will be done step by step, or why it will not be done."""
    title = command(plan.kind) + (f" -> {plan.target}" if plan.target else "")
    out.print(Text(title, style="bold"))
    out.print(Text("found:", style="bold"))
    for line in plan.found:
        out.print(f"  {line}", markup=False)
    for r in plan.overridden:
        out.print(Text(f"  forced past: {r}", style="yellow"))
    if plan.refused:
        out.print(Text("refused:", style="bold red"))
        for r in plan.refusals:
            out.print(Text(f"  {r}", style="red"))
        out.print("nothing was changed", markup=False)
        return
    if plan.steps:
        out.print(Text("plan:", style="bold"))
        for i, s in enumerate(plan.steps, start=1):
            out.print(Text(f"  {i:>2}. ") + Text(f"{s.host}", style="cyan")
                      + Text(f" [{s.action}] {s.text}"))
    for n in plan.notes:
        out.print(Text(f"  note: {n}", style="dim"))


def confirm(plan: Plan) -> bool:
    """Ask before changing anything; no terminal means no (pass --yes)."""
    if not out.is_terminal:
        out.print("not a terminal: pass --yes to run this plan", markup=False)
        return False
    return Confirm.ask(f"run these {len(plan.steps)} steps?", console=out)


def step_event(state: str, i: int, total: int, step: Step, detail: str) -> None:
    """A progress line on stderr per step start, end, failure and undo."""
    if state == "start":
        err.print(Text(f"[{i}/{total}] ", style="bold cyan") + Text(f"{step.host}: ")
                  + Text(step.text, style="dim"))
    elif state == "undo":
        err.print(Text("  <- undo ", style="yellow") + Text(f"{step.host}: {step.text}: {detail}"))
    else:
        style = "green" if state == "done" else "bold red"
        err.print(Text("      ") + Text(state, style=style) + Text(f": {detail}"))


def show_report(report: Report, as_json: bool = False) -> None:
    """The outcome: ok or where it stopped and what was put back; the timings."""
    if as_json:
        print_json(report.as_record())
        return
    if report.dry_run:
        out.print(Text("dry run: nothing was changed", style="dim"))
        return
    if report.plan.refused:
        return
    if report.error:
        out.print(Text(f"{command(report.plan.kind)} failed: {report.error}",
                       style="bold red"))
        return
    if not report.steps:
        out.print(Text(f"{command(report.plan.kind)}: nothing to do", style="green"))
        return
    line = f"{command(report.plan.kind)} done in {report.seconds:.1f} s"
    if report.paused_seconds is not None:
        line += f"; clients waited (PgBouncer paused) {report.paused_seconds:.2f} s"
    if report.write_after is not None:
        line += f"; first verified write {report.write_after:.1f} s after the start"
    out.print(Text(line, style="green"))
    for n in report.plan.notes:
        out.print(Text(f"next: {n}", style="dim"))
