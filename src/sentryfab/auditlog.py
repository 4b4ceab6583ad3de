"""The audit trail's pure parts: where it is kept on a host, what a record holds, and the
shell that appends and reads it (procedures/audit.py runs them; the runbook names the log)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .shell import and_then, append_to, chain, join, quiet

REMOTE_DIR = "/var/log/sentryfab"
REMOTE_LOG = "/var/log/sentryfab/audit.log"


def make_entry(at: str, who: str, action: str, result: str,
               details: Mapping[str, Any]) -> dict[str, Any]:
    """One audit record: when, who, what, and how it ended, then its details (which win)."""
    return {"at": at, "who": who, "action": action, "result": result, **details}


def append_command(record: dict[str, Any]) -> str:
    """Append one JSON line to the host's audit log."""
    line = json.dumps(record, sort_keys=True)
    return and_then(join(["mkdir", "-p", REMOTE_DIR]),
                    append_to(join(["printf", "%s\\n", line]), REMOTE_LOG))


def tail_command(lines: int) -> str:
    """The host's last audit lines (nothing if it has no log yet)."""
    return chain(quiet(join(["tail", "-n", int(lines), REMOTE_LOG])), "true")


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Audit records from log text (lines that are not JSON are kept as 'raw')."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            if line.strip():
                out.append({"raw": line})
    return out
