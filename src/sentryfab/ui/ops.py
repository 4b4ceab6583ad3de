"""Output of the everyday operations: lock, audit, confirmations."""

from __future__ import annotations

from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from ..procedures.audit import parse_lines
from ..procedures.lock import LockInfo
from ..results import HostResult
from .console import out, print_json


def say(message: str) -> None:
    """One plain line."""
    out.print(message, markup=False)


def confirm(question: str) -> bool:
    """Ask on the terminal; no terminal means no."""
    if not out.is_terminal:
        out.print("not a terminal: pass --yes to confirm", markup=False)
        return False
    return Confirm.ask(question, console=out)


def show_lock(info: LockInfo | None, host: str, as_json: bool = False) -> None:
    """Who holds the deploy lock."""
    if as_json:
        print_json({"host": host, "held": info is not None,
                    **({k: v for k, v in info.__dict__.items() if k != "token"} if info else {})})
        return
    say(f"deploy lock on {host}: " + (f"held by {info.describe()}" if info else "free"))
    gone = info.stale() if info else None
    if gone:
        say(f"stale: {gone}")


def show_audit(results: list[HostResult], as_json: bool = False) -> None:
    """The recent audit records of each host, newest last."""
    if as_json:
        print_json({r.host.name: parse_lines(r.stdout) if r.ok else {"error": r.error}
                    for r in results})
        return
    for r in results:
        if not r.ok:
            out.print(Text(f"{r.host.name}: {r.status}: {r.error}", style="red"))
            continue
        records = parse_lines(r.stdout)
        table = Table(title=f"{r.host.name}: {len(records)} recent", title_justify="left")
        for col in ("at", "who", "action", "version", "result", "message"):
            table.add_column(col)
        for rec in records:
            row = {k: str(rec.get(k, "")) for k in ("at", "who", "action", "version", "result",
                                                    "message")}
            row["who"] = row["who"].split(" (")[0]  # the git identity is in --json
            row["action"] = row["action"] or rec.get("raw", "")
            table.add_row(*row.values())
        out.print(table)
