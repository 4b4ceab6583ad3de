"""How `fab run` shows its results: folded blocks per host group, streamed lines, a summary."""

from __future__ import annotations

import threading
import zlib

from rich.rule import Rule
from rich.text import Text

from ..folding import fold
from ..inventory import Host
from ..results import HostResult, tally
from .console import out, print_json

STATUS_STYLE = {"ok": "green", "failed": "red", "unreachable": "magenta"}
_PALETTE = ("cyan", "magenta", "yellow", "blue", "green", "bright_cyan", "bright_magenta",
            "bright_yellow", "bright_blue", "bright_green")
_stream_lock = threading.Lock()


def stream_line(host: Host, stream: str, line: str) -> None:
    """--stream: one output line as it comes, prefixed with its host (stable colour per host)."""
    colour = _PALETTE[zlib.crc32(host.name.encode()) % len(_PALETTE)]
    text = Text(f"{host.name} ", style=colour)
    text.append("| " if stream == "stdout" else "! ", style="dim" if stream == "stdout" else "red")
    text.append(line)
    with _stream_lock:
        out.print(text)


def report(results: list[HostResult], seconds: float | None, *, show_output: bool = True) -> None:
    """Blocks of identical output (hosts folded into ranges), then the summary line."""
    if show_output:
        for b in fold(results):
            style = STATUS_STYLE[b.status]
            title = Text(b.label, style="bold")
            title.append(f"  {b.status}", style=style)
            if b.exit_code not in (None, 0):
                title.append(f" (exit {b.exit_code})", style=style)
            out.print(Rule(title, align="left", style=style))
            if b.stdout:
                out.print(Text(b.stdout.rstrip("\n")))
            if b.stderr:
                out.print(Text(b.stderr.rstrip("\n"), style="red"))
            if b.error and (b.status != "failed" or b.exit_code is None):
                out.print(Text(b.error, style=style))
    else:
        # Output was streamed already; still say why each host that is not ok is not.
        for r in results:
            if not r.ok:
                line = Text(f"{r.host.name}: ", style="bold")
                line.append(f"{r.status}: {r.error}", style=STATUS_STYLE[r.status])
                out.print(line)
    summary(results, seconds)


def summary(results: list[HostResult], seconds: float | None) -> None:
    """'28 ok, 1 failed, 1 unreachable in 0.84 s'."""
    counts = tally(results)
    text = Text()
    for i, (status, n) in enumerate(counts.items()):
        if i:
            text.append(", ")
        text.append(f"{n} {status}", style=STATUS_STYLE[status] if n else "dim")
    if seconds is not None:
        text.append(f" in {seconds:.2f} s")
    out.print(text)


def report_json(results: list[HostResult]) -> None:
    """--json: one record per host, in host order."""
    print_json([r.as_record() for r in results])
