"""How lab.release, lab.load and lab.verify show their results (progress on stderr)."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich import box
from rich.table import Table
from rich.text import Text

from ..lab.load import Counts, LoadProgress, LoadReport, VerifyReport
from ..lab.release import Built
from ..results import HostResult, tally
from .console import err, out, print_json

STATUS_STYLE = {"ok": "green", "failed": "red", "unreachable": "magenta"}


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def show_release(results: list[HostResult], image: str, broken: bool, seconds: float,
                 as_json: bool = False) -> None:
    """One line per host: the image id built, or why not; then a count."""
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
