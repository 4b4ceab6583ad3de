"""The audit trail: every deploy, rollback, failover and push, on each host it touched and here."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from ..inventory import Host
from ..remote import Runner
from ..results import HostResult
from ..shell import join

REMOTE_LOG = "/var/log/sentryfab/audit.log"
LOCAL_LOG = Path(os.environ.get("XDG_STATE_HOME", "~/.local/state")).expanduser() / \
    "sentryfab" / "audit.log"


def identity() -> str:
    """'alice (Alice Doe <alice@example.com>)': the local user and the git identity."""
    user = getpass.getuser()
    git = []
    for key in ("user.name", "user.email"):
        try:
            out = subprocess.run(["git", "config", key], capture_output=True, text=True,
                                 timeout=2).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        git.append(out)
    name, email = git
    ident = " ".join(x for x in (name, f"<{email}>" if email else "") if x)
    return f"{user} ({ident})" if ident else user


def entry(action: str, result: str, **details: Any) -> dict[str, Any]:
    """One audit record: when, who, what, with which version, and how it ended."""
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "who": identity(),
            "action": action, "result": result, **details}


def append_command(record: dict[str, Any]) -> str:
    """Append one JSON line to the host's audit log."""
    line = json.dumps(record, sort_keys=True)
    return (f"mkdir -p {join(['/var/log/sentryfab'])} && "
            f"printf '%s\\n' {join([line])} >> {join([REMOTE_LOG])}")


def tail_command(lines: int) -> str:
    """The host's last audit lines."""
    return f"tail -n {int(lines)} {join([REMOTE_LOG])} 2>/dev/null; true"


def record(runner: Runner, hosts: list[Host], rec: dict[str, Any]) -> list[HostResult]:
    """Write the record on every host touched (best effort: an audit line never fails a
    deploy) and to the local log."""
    LOCAL_LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOCAL_LOG.open("a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    if not hosts:
        return []
    return runner.each(hosts, lambda s: s.run(append_command(rec), check=True))


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
