"""`fab docs`: the runbook, written from the inventory and the live cluster."""

from __future__ import annotations

from pathlib import Path

from invoke import task

from ._common import handled, helps, load_inventory


@task(name="docs", auto_shortflags=False, help=helps(
    "accept-new",
    output="where to write it (default: docs/runbook.md beside the inventory)",
    offline="only what the inventory says (no primary, capacity facts or audit from hosts)"))
@handled
def docs(c, output=None, offline=False, accept_new=False):
    """Write the runbook (Markdown): architecture, hosts, access, secrets' sources, capacity."""
    from .. import runbook
    from ..procedures import capacity
    from ..procedures import docs as gather
    from ..remote import Runner
    from ..ui import console

    inv = load_inventory()
    decisions = gather.read_decisions(Path(__file__).resolve().parents[3] / "docs"
                                      / "decisions")
    # As written in the inventory (not expanded): the runbook must not depend on who ran it.
    secrets_file = str(inv.extra["secrets"]) if inv.extra.get("secrets") else None
    # The capacity lines with the disk forecast and tier throughput (no WAL sample: window 0).
    if offline:
        live, report = runbook.Live(), capacity.outlook(inv, None, window=0).report
    else:
        with Runner(inv, accept_new=accept_new) as runner:
            live = gather.gather(runner, inv)
            report = capacity.outlook(inv, runner, window=0).report
    text = runbook.render(inv, live, report, decisions, secrets_file)
    target = Path(output) if output else inv.path.parent / "docs" / "runbook.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    changed = not target.exists() or target.read_text() != text
    target.write_text(text)
    console.out.print(f"{'wrote' if changed else 'unchanged:'} {target} "
                      f"({len(text.splitlines())} lines)", markup=False)
