"""The two consoles (stdout for results, stderr for progress and errors) and plain output."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from ..errors import InventoryError, SentryfabError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def error(e: SentryfabError) -> None:
    """Print an error the way people read it: what, where, what next. No traceback."""
    if isinstance(e, InventoryError):
        n = len(e.problems)
        err.print(f"[bold red]error:[/] the inventory has {n} problem{'s' * (n != 1)}:")
        for p in e.problems:
            err.print(f"  {p}", markup=False)
        return
    err.print("[bold red]error:[/] ", end="")
    err.print(str(e), markup=False)


def error_list(what: str, problems: list[str]) -> None:
    """An error made of several problems, one per line."""
    err.print(f"[bold red]error:[/] {what}:")
    for p in problems:
        err.print(f"  {p}", markup=False)


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else on that stream."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
