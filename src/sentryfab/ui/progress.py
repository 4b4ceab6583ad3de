"""A progress bar on stderr while hosts answer, only when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..results import HostResult
from .console import err


@contextmanager
def hosts_progress(what: str, total: int, enabled: bool = True) -> Iterator:
    """Yield an on_done(result) callback advancing a bar of `total` hosts."""
    if not enabled or not err.is_terminal:
        yield lambda result: None
        return
    # Imported only when a bar is drawn: it costs ~10 ms of every command's start-up.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("[red]{task.fields[bad]}"), TimeElapsedColumn(),
                   console=err, transient=True)
    bad = 0
    with bar:
        task = bar.add_task(what, total=total, bad="")

        def on_done(result: HostResult) -> None:
            nonlocal bad
            bad += not result.ok
            bar.update(task, advance=1, bad=f"{bad} not ok" if bad else "")

        yield on_done
