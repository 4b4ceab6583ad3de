"""What the runbook needs from outside the inventory: from the live cluster the primary,
replicas and recent audit lines; from the repository the decision records."""

from __future__ import annotations

import json
from pathlib import Path

from ..containers import postgres
from ..inventory import Inventory
from ..remote import Runner
from ..runbook import Live
from . import audit

AUDIT_LINES = 20


def gather(runner: Runner, inv: Inventory) -> Live:
    """Ask the db hosts who is primary and every host for its recent audit lines."""
    live = Live(source="read over SSH")
    dbs = inv.with_role("db")
    for r in runner.run(dbs, postgres.is_primary("sentry-db-1")):
        answer = r.stdout.strip() if r.ok else ""
        if answer == "t":
            live.primary = r.host.name if live.primary is None else \
                f"{live.primary} and {r.host.name} (split brain!)"
        elif answer == "f":
            live.replicas.append(r.host.name)
    seen: dict[str, dict] = {}
    for r in runner.run([h for h in inv.hosts if h.roles], audit.tail_command(AUDIT_LINES)):
        for rec in audit.parse_lines(r.stdout) if r.ok else []:
            seen[json.dumps({k: rec.get(k) for k in ("at", "action", "who", "result")},
                            sort_keys=True)] = rec
    live.audit = sorted(seen.values(), key=lambda a: (a.get("at", ""), a.get("action", "")))
    live.audit = live.audit[-AUDIT_LINES:]
    return live


def read_decisions(folder: Path) -> list[tuple[str, str]]:
    """The decision records (file name, text), in file-name order; none if no folder."""
    if not folder.is_dir():
        return []
    return [(p.name, p.read_text()) for p in sorted(folder.glob("*.md"))]
