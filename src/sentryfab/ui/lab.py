"""How the lab tasks show their results: progress on stderr, tables and summaries on stdout."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from rich import box
from rich.table import Table
from rich.text import Text

from sentryfab.lab import HostState, LabReport
from sentryfab.ui.console import err, out, print_json

OK = Text("ok", style="green")
BAD = Text("down", style="red")
NONE = Text("-", style="dim")


def step_printer() -> Callable[[str, str], None]:
    """An `on_step(host, message)` callback printing timed progress lines to stderr."""
    started = time.monotonic()

    def on_step(host: str, message: str) -> None:
        line = Text(f"{time.monotonic() - started:6.1f}s ", style="dim")
        line.append(f"{host:<14} ", style="bold cyan")
        line.append(message)
        err.print(line)  # rich serializes prints from the worker threads

    return on_step


def _roles(roles: tuple[str, ...]) -> str:
    return ", ".join(roles) or "-"


def show_up(report: LabReport) -> None:
    """The hosts `up` changed (unchanged ones are only counted) and where the files are."""
    changed = [h for h in report.hosts if h.actions]
    if changed:
        table = Table(title="lab hosts changed", title_justify="left", box=box.SIMPLE,
                  show_edge=False, pad_edge=False)
        for column in ("host", "address", "roles"):
            table.add_column(column, no_wrap=True)
        table.add_column("done")
        for h in changed:
            table.add_row(h.name, h.address, _roles(h.roles), "; ".join(h.actions))
        out.print(table)
    for action in report.lab_actions:
        out.print(Text(f"lab: {action}", style="dim"))
    role = sum(1 for h in report.hosts if h.roles)
    summary = Text("lab up: ", style="bold green")
    summary.append(f"{len(report.hosts)} hosts ({role} role, {len(report.hosts) - role} scale), "
                   f"{len(changed)} changed, in {report.seconds:.1f} s")
    out.print(summary)
    if report.inventory:
        out.print(f"inventory: {report.inventory}   ssh: fab lab.ssh web-1", markup=False,
                  highlight=False)


def show_down(report: LabReport) -> None:
    """What `down` removed."""
    for action in report.lab_actions:
        out.print(Text(f"lab: {action}", style="dim"))
    summary = Text("lab down: ", style="bold")
    summary.append(f"{len(report.hosts)} hosts removed in {report.seconds:.1f} s"
                   if report.changed else "nothing to remove")
    out.print(summary)


def _flag(value: bool | None) -> Text:
    return NONE if value is None else (OK if value else BAD)


def show_status(states: list[HostState], as_json: bool = False) -> None:
    """One row per host: network, sshd, Docker engine and image; then a count."""
    if as_json:
        print_json([{**dataclasses.asdict(s), "healthy": s.healthy} for s in states])
        return
    if not states:
        out.print("the lab is down (fab lab.up brings it up)")
        return
    table = Table(title=f"lab: {len(states)} hosts", title_justify="left", box=box.SIMPLE,
                  show_edge=False, pad_edge=False)
    for column in ("host", "address", "roles"):
        table.add_column(column, no_wrap=True)
    for column in ("network", "sshd", "docker", "image"):
        table.add_column(column, no_wrap=True)
    for s in states:  # pids are in --json
        table.add_row(s.name, s.address, _roles(s.roles), _flag(s.network), _flag(s.ssh),
                      _flag(s.docker), _flag(s.image))
    out.print(table)
    bad = [s.name for s in states if not s.healthy]
    if bad:
        names = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        out.print(Text(f"{len(bad)} of {len(states)} hosts need attention: {names} "
                       "(fab lab.up fixes what is missing)", style="red"))
    else:
        out.print(Text(f"all {len(states)} hosts healthy", style="green"))
