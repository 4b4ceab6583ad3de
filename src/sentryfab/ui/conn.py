"""What `fab conn.status` and `fab conn.close` print."""

from __future__ import annotations

import time

from rich.table import Table

from .console import out, print_json


def held_lines(reply: dict, now: float) -> list[list[str]]:
    """One row per held connection: host, destination, open for, idle, closes in, commands."""
    rows = []
    for h in sorted(reply["held"], key=lambda h: h["host"]):
        closes = "in use" if h["in_use"] else _span(h["closes_in"])
        state = "" if h["alive"] else " (dead: reopened at next use)"
        rows.append([h["host"], h["destination"], _span(now - h["opened"]), _span(h["idle"]),
                     closes + state, str(h["commands"]), str(h["reopened"])])
    return rows


def show(reply: dict | None, as_json: bool = False) -> None:
    """The holder's connections, or that none is held."""
    if as_json:
        print_json(reply or {"held": []})
        return
    if reply is None:
        out.print("no connection held (no holder runs for you)")
        return
    now = time.time()
    table = Table(title=f"{len(reply['held'])} held connection"
                        f"{'s' * (len(reply['held']) != 1)} (holder pid {reply['pid']}, "
                        f"up {_span(now - reply['started'])}, {reply['socket']})",
                  title_justify="left")
    for column in ("host", "destination", "open for", "idle", "closes in", "commands",
                   "reopened"):
        table.add_column(column)
    for row in held_lines(reply, now):
        table.add_row(*row)
    out.print(table)


def closed(reply: dict | None, as_json: bool = False) -> None:
    """What conn.close ended."""
    if as_json:
        print_json({"closed": reply["closed"] if reply else 0})
        return
    if reply is None:
        out.print("no connection held (no holder runs for you)")
        return
    n = reply["closed"]
    out.print(f"closed {n} held connection{'s' * (n != 1)}; the holder (pid {reply['pid']}) "
              "has stopped")


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
