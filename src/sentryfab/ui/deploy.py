"""How rollouts are shown: progress lines as batches go, then a table per role."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..plans.deploy import State
from ..procedures.deploy import RoleReport
from .console import err, out, print_json

STATE_STYLE: dict[State, str] = {
    State.UNCHANGED: "dim", State.UPDATED: "green", State.RELOADED: "cyan",
    State.ROLLED_BACK: "yellow", State.FAILED: "red", State.UNREACHABLE: "red bold",
    State.NOT_REACHED: "magenta"}
if set(STATE_STYLE) != set(State):  # a new state without a style would print unstyled
    raise RuntimeError(f"ui/deploy.py: STATE_STYLE does not match the deploy states: "
                       f"{sorted(set(State) ^ set(STATE_STYLE))}")


def event(role: str, message: str) -> None:
    """A progress line on stderr: '[web] batch 1/3: web-1, web-2'."""
    err.print(Text(f"[{role}] ", style="bold cyan") + Text(message))


def show(reports: list[RoleReport], seconds: float, as_json: bool = False) -> None:
    """One table per role that has hosts; 'nothing to do' when the cluster was up to date."""
    if as_json:
        print_json([{"role": r.role, "version": r.version, "ok": r.ok, "stopped": r.stopped,
                     "batches": r.batches,
                     "hosts": [o.__dict__ for o in r.outcomes]} for r in reports])
        return
    for r in reports:
        if not r.changed and r.ok:
            out.print(Text(f"{r.role}: up to date on {len(r.outcomes)} host(s) "
                           f"({r.version})", style="dim"))
            continue
        table = Table(title=f"{r.role} -> {r.version} ({r.batches} batch(es))",
                      title_justify="left")
        for col in ("host", "before", "after", "state", "detail"):
            table.add_column(col)
        for o in r.outcomes:
            table.add_row(o.host, o.before or "-", o.after or "-",
                          Text(o.state, style=STATE_STYLE.get(o.state, "")), o.detail)
        out.print(table)
        if r.stopped:
            out.print(Text(f"{r.role}: {r.stopped}", style="bold red"))
    changed = any(r.changed for r in reports)
    ok = all(r.ok for r in reports)
    verdict = ("deploy failed" if not ok else "deployed" if changed
               else "nothing to do: the cluster already runs what the inventory says")
    out.print(Text(f"{verdict} in {seconds:.1f} s", style="green" if ok else "bold red"))
