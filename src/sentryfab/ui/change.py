"""How an interrupted change is reported: where it stopped, what was put back, what each
host it touched runs now, and that the lock is free."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..errors import ChangeInterrupted
from .console import err


def interrupted(e: ChangeInterrupted) -> None:
    """On stderr (stdout may be a --json consumer): the whole state in one screen."""
    err.print(Text(f"interrupted: {e.action} stopped during {e.step}", style="bold red"))
    for r in e.results:
        why = f": {r.error}" if r.error else ""
        err.print(f"  {r.host.name}: {r.status}{why}", markup=False)
    for line in e.undone:
        err.print(f"  put back: {line}", markup=False)
    if e.left:
        table = Table(title="what each host it touched runs now", title_justify="left")
        table.add_column("host")
        table.add_column("containers")
        for host, state in e.left.items():
            table.add_row(host, state)
        err.print(table)
    err.print("the deploy lock is released (unless a warning above says otherwise); "
              "re-running the same command continues from this state", markup=False)
