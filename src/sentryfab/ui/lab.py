"""How the lab tasks show their results: progress on stderr, tables and summaries on stdout.

The lab's hosts (lab.up, lab.down, lab.status), then its Sentry and workload (lab.release,
lab.load, lab.verify).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table
from rich.text import Text

from ..results import HostResult, tally
from .console import err, out, print_json

# Imported for the annotations only: `fab lab.up` need not load the load generator.
if TYPE_CHECKING:
    from ..lab import HostState, LabReport
    from ..lab.load import Counts, LoadProgress, LoadReport, VerifyReport

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


# -- the lab's Sentry and its workload ------------------------------------------------------------

STATUS_STYLE = {"ok": "green", "failed": "red", "unreachable": "magenta"}


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def show_release(results: list[HostResult], image: str, broken: bool, seconds: float,
                 as_json: bool = False) -> None:
    """One line per host: the image id built, or why not; then a count."""
    from ..lab.release import Built

    if as_json:
        print_json([{**r.as_record(), "image": image, "broken": broken,
                     "image_id": r.value.image_id if isinstance(r.value, Built) else None}
                    for r in results])
        return
    for r in results:
        line = Text(f"{r.host.name:<14} ", style="bold")
        line.append(r.status, style=STATUS_STYLE[r.status])
        if isinstance(r.value, Built):
            line.append(f"  {r.value.image_id[:19]}", style="dim")
        elif r.error:
            line.append(f"  {r.error}")
        out.print(line)
    counts = tally(results)
    summary = Text(f"{image}{' (broken: /_health/ always fails)' if broken else ''}: ",
                   style="bold")
    summary.append(f"built on {counts['ok']} of {len(results)} hosts in {seconds:.1f} s",
                   style="green" if counts["ok"] == len(results) else "red")
    out.print(summary)


def load_progress() -> Callable[[LoadProgress], None]:
    """An on_tick callback: one status line a second on stderr, when it is a terminal."""
    if not err.is_terminal:
        return lambda p: None

    def on_tick(p: LoadProgress) -> None:
        line = Text(f"{p.elapsed:6.1f}s  ", style="dim")
        line.append(f"sent {p.sent}/{p.planned}  accepted {p.accepted}  ")
        line.append(f"failed {p.failed}", style="red" if p.failed else "")
        err.print(line)

    return on_tick


def show_load(r: LoadReport, as_json: bool = False) -> None:
    """Counts, failure reasons, latency, the longest write outage, where the ids went."""
    if as_json:
        print_json(r.as_record())
        return
    title = f"load: {r.url} at {r.rate:g}/s for {r.duration:g} s"
    table = Table(title=title + (" (interrupted)" if r.interrupted else ""),
                  title_justify="left", box=box.SIMPLE, show_header=False, show_edge=False,
                  pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("sent", f"{r.sent} of {r.planned} in {r.seconds:.1f} s "
                          f"({r.achieved_rate:.0f}/s, {r.concurrency} senders)")
    table.add_row("accepted", Text(str(r.accepted), style="green"))
    failed = Text(str(r.failures), style="red" if r.failures else "green")
    if r.failed:
        failed.append("  " + ", ".join(f"{why}: {n}" for why, n in r.failed.items()))
    table.add_row("failed", failed)
    lat = r.latency
    table.add_row("latency", f"p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  "
                             f"p99 {_ms(lat['p99'])}  max {_ms(lat['max'])}")
    table.add_row("write outage", f"longest {r.unavailable:.2f} s without an accepted event "
                                  f"({r.unavailable_from:.2f}-{r.unavailable_to:.2f} s "
                                  "into the run)")
    if r.max_lag > 1:
        table.add_row("sender lag", Text(f"requests started up to {r.max_lag:.1f} s late: the "
                                         "target (or this machine) could not keep up",
                                         style="yellow"))
    if r.ids_file:
        table.add_row("ids", f"{r.ids_file} (fab lab.verify checks them)")
    out.print(table)


def verify_progress() -> Callable[[float, Counts | None], None]:
    """An on_poll callback: how many are still missing while verify waits."""

    def on_poll(elapsed: float, c: Counts | None) -> None:
        what = (f"{c.missing} of {c.accepted} not stored yet" if c is not None
                else "the database did not answer")
        err.print(Text(f"{elapsed:6.1f}s  {what}, waiting", style="dim"))

    return on_poll


def show_verify(r: VerifyReport, as_json: bool = False) -> None:
    """Accepted, stored, missing and duplicated events, and the first missing ones."""
    if as_json:
        print_json(r.as_record())
        return
    c = r.counts
    out.print(f"{r.ids_file} against PostgreSQL on {r.db_host}:", markup=False)
    table = Table(box=box.SIMPLE, show_header=False, show_edge=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("accepted", str(c.accepted))
    table.add_row("stored", str(c.stored))
    table.add_row("missing", Text(str(c.missing), style="red" if c.missing else "green"))
    table.add_row("duplicated", Text(str(c.duplicated), style="red" if c.duplicated else "green"))
    table.add_row("store lag", f"at most {c.max_lag:.2f} s from web to PostgreSQL")
    if r.polls > 1:
        table.add_row("waited", f"{r.waited:.0f} s ({r.polls} checks)")
    out.print(table)
    for eid, at in c.missing_sample:
        out.print(Text(f"  missing {eid} accepted at {_utc(at)}", style="red"))
    if r.ok:
        out.print(Text("every accepted event is stored exactly once", style="bold green"))
    else:
        out.print(Text("accepted events were lost or stored twice", style="bold red"))
