"""The deploy lock's pure parts: where it lives, who holds it, and the shell that takes,
shows and frees it (procedures/lock.py runs them; status reads the holder too)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .inventory import Host, Inventory
from .shell import chain, join, quiet

LOCK_DIR = "/var/lib/sentryfab/deploy.lock"
HELD = 3  # exit code of acquire() when someone else holds the lock


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock and why, and which process on which machine (for staleness)."""

    who: str
    since: str
    action: str
    message: str
    token: str
    machine: str = ""
    pid: int = 0

    def describe(self) -> str:
        """'alice (Alice <a@x>) since 2026-11-27T03:00:00Z: deploy.web "hotfix"'."""
        msg = f' "{self.message}"' if self.message else ""
        return f"{self.who} since {self.since}: {self.action}{msg}"

    def stale(self, here: str | None = None, alive: Callable[[int], bool] | None = None
              ) -> str | None:
        """Why the holder is gone, when that can be told from this machine; else None."""
        here = here if here is not None else socket.gethostname()
        alive = alive or _pid_alive
        if self.machine and self.machine == here and self.pid and not alive(self.pid):
            return (f"its process {self.pid} on {self.machine} is gone: the deploy died "
                    "without releasing it; `fab lock.release` frees it")
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_host(inv: Inventory) -> Host:
    """The host holding the lock: inventory 'lock_host', else the first host with roles."""
    name = inv.extra.get("lock_host")
    if name:
        return inv.host(str(name))
    return next((h for h in inv.hosts if h.roles), inv.hosts[0])


def acquire_command(info: LockInfo) -> str:
    """The lock folder appears with its info already in it: it is written in a folder of
    its own, then renamed into place. A rename onto a folder that exists (and is never
    empty) fails, so exactly one of two racing deploys gets it, and a racer never sees a
    lock without its holder (the old mkdir-then-write said "held by None")."""
    body = json.dumps(info.__dict__)
    return (f"mkdir -p {join(['/var/lib/sentryfab'])} && "
            f"d=$(mktemp -d {join([LOCK_DIR + '.new.XXXXXX'])}) && "
            f"printf '%s\\n' {join([body])} > \"$d/info\" && chmod 755 \"$d\" && "
            f"if mv -T \"$d\" {join([LOCK_DIR])} 2>/dev/null; then exit 0; fi; "
            f"rm -rf \"$d\"; cat {join([LOCK_DIR + '/info'])} 2>/dev/null; exit {HELD}")


def release_command(token: str) -> str:
    """Remove the lock only if `token`'s holder still has it (never a newer holder's)."""
    return (f"if {quiet(join(['grep', '-qF', token, LOCK_DIR + '/info']))}; "
            f"then {join(['rm', '-rf', LOCK_DIR])}; fi")


def force_release_command(token: str) -> str:
    """release_command(), then exit 0 only if no lock is left (lock.release's answer)."""
    return chain(release_command(token), f"[ ! -e {join([LOCK_DIR])} ]")


def status_command() -> str:
    """The holder's details, or nothing when the lock is free."""
    return chain(quiet(join(["cat", LOCK_DIR + "/info"])), "true")


def parse_info(text: str) -> LockInfo | None:
    """LockInfo from the info file's JSON (None if empty or unreadable)."""
    try:
        data = json.loads(text.strip() or "null")
        if data:  # fields a newer sentryfab added are ignored, missing ones defaulted
            known = LockInfo.__dataclass_fields__
            return LockInfo(**{k: v for k, v in data.items() if k in known})
        return None
    except (ValueError, TypeError):
        return LockInfo("unknown", "unknown", "unknown", "unreadable lock info", "") \
            if text.strip() else None
