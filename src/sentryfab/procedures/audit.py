"""The audit trail: every deploy, rollback, failover and push, on each host it touched and here."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from ..auditlog import (  # noqa: F401 - the trail's pure parts, re-exported for callers
    REMOTE_LOG,
    append_command,
    make_entry,
    parse_lines,
    tail_command,
)
from ..inventory import Host
from ..remote import Runner
from ..results import HostResult

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
    return make_entry(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), identity(),
                      action, result, details)


def record(runner: Runner, hosts: list[Host], rec: dict[str, Any]) -> list[HostResult]:
    """Write the record on every host touched (best effort: an audit line never fails a
    deploy) and to the local log."""
    LOCAL_LOG.parent.mkdir(parents=True, exist_ok=True)
    with LOCAL_LOG.open("a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    if not hosts:
        return []
    return runner.each(hosts, lambda s: s.run(append_command(rec), check=True))
