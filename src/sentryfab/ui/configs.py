"""How config diffs and pushes are shown: coloured unified diffs, a line per host."""

from __future__ import annotations

from rich.text import Text

from ..folding import fold_names
from ..procedures.configs import FileDiff, HostPush
from ..results import HostResult
from .console import out, print_json
from .run import STATUS_STYLE, summary


def _diff_text(diff: str) -> Text:
    text = Text()
    for line in diff.splitlines(keepends=True):
        style = ("bold" if line.startswith(("---", "+++")) else
                 "cyan" if line.startswith("@@") else
                 "green" if line.startswith("+") else
                 "red" if line.startswith("-") else "")
        text.append(line, style=style)
    return text


def _failed(r: HostResult) -> bool:
    """Print a host that is not ok; True if it was one."""
    if not r.ok:
        out.print(Text(f"{r.host.name}: {r.status}: {r.error}", style=STATUS_STYLE[r.status]))
    return not r.ok


def show_diff(results: list[HostResult], seconds: float, as_json: bool = False) -> None:
    """Every host's pending changes (already masked), then which hosts are up to date."""
    if as_json:
        print_json([{**r.as_record(), "changes": [
            {"path": d.path, "role": d.role, "state": d.state, "diff": d.diff}
            for d in (r.value or [])]} for r in results])
        return
    same: list[str] = []
    for r in results:
        if _failed(r):
            continue
        diffs: list[FileDiff] = r.value
        if not diffs:
            same.append(r.host.name)
            continue
        for d in diffs:
            out.print(Text(f"{r.host.name}: {d.path} ({d.state})", style="bold yellow"))
            out.print(_diff_text(d.diff))
    if same:
        out.print(Text(f"up to date: {fold_names(same)}", style="green"))
    summary(results, seconds)


def show_push(results: list[HostResult], seconds: float, as_json: bool = False) -> None:
    """One line per host that changed or failed; unchanged hosts folded into one line."""
    if as_json:
        print_json([{**r.as_record(), **({
            "updated": r.value.updated, "reloaded": r.value.reloaded,
            "restart_pending": r.value.restart_pending} if r.ok else {})} for r in results])
        return
    same: list[str] = []
    for r in results:
        if _failed(r):
            continue
        p: HostPush = r.value
        if not p.changed and not p.restart_pending:
            same.append(r.host.name)
            continue
        parts = []
        if p.updated:
            parts.append((f"updated {', '.join(p.updated)}", "yellow"))
        if p.reloaded:
            parts.append((f"reloaded {', '.join(p.reloaded)}", "green"))
        if p.restart_pending:
            parts.append((f"restart pending for {', '.join(p.restart_pending)} "
                          "(fab deploy restarts it)", "magenta"))
        line = Text(f"{r.host.name}: ", style="bold")
        for i, (words, style) in enumerate(parts):
            line.append(("; " if i else "") + words, style=style)
        out.print(line)
    if same:
        out.print(Text(f"unchanged: {fold_names(same)}", style="green"))
    summary(results, seconds)
