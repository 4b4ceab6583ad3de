"""The deploy lock: one deploy at a time per cluster, an atomic mkdir on a designated host."""

from __future__ import annotations

import json
import secrets as _random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..remote import Runner
from ..shell import join
from .audit import identity

LOCK_DIR = "/var/lib/sentryfab/deploy.lock"
HELD = 3  # exit code of acquire() when someone else holds the lock


class LockHeld(SentryfabError):
    """Another deploy holds the lock; the message says who, since when, doing what."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock and why."""

    who: str
    since: str
    action: str
    message: str
    token: str

    def describe(self) -> str:
        """'alice (Alice <a@x>) since 2026-11-27T03:00:00Z: deploy.web "hotfix"'."""
        msg = f' "{self.message}"' if self.message else ""
        return f"{self.who} since {self.since}: {self.action}{msg}"


def lock_host(inv: Inventory) -> Host:
    """The host holding the lock: inventory 'lock_host', else the first host with roles."""
    name = inv.extra.get("lock_host")
    if name:
        return inv.host(str(name))
    return next((h for h in inv.hosts if h.roles), inv.hosts[0])


def acquire_command(info: LockInfo) -> str:
    """mkdir is atomic: exactly one of two racing deploys creates the folder."""
    body = json.dumps(info.__dict__)
    return (f"mkdir -p {join(['/var/lib/sentryfab'])} && "
            f"if mkdir {join([LOCK_DIR])} 2>/dev/null; then "
            f"printf '%s\\n' {join([body])} > {join([LOCK_DIR + '/info'])}; "
            f"else cat {join([LOCK_DIR + '/info'])} 2>/dev/null; exit {HELD}; fi")


def release_command(token: str | None) -> str:
    """Remove the lock if it is ours (token given) or whoever's (None: lock.release)."""
    if token is None:
        return f"rm -rf {join([LOCK_DIR])}"
    return (f"if grep -qF {join([token])} {join([LOCK_DIR + '/info'])} 2>/dev/null; "
            f"then rm -rf {join([LOCK_DIR])}; fi")


def status_command() -> str:
    """The holder's details, or nothing when the lock is free."""
    return f"cat {join([LOCK_DIR + '/info'])} 2>/dev/null; true"


def parse_info(text: str) -> LockInfo | None:
    """LockInfo from the info file's JSON (None if empty or unreadable)."""
    try:
        data = json.loads(text.strip() or "null")
        return LockInfo(**data) if data else None
    except (ValueError, TypeError):
        return LockInfo("unknown", "unknown", "unknown", "unreadable lock info", "") \
            if text.strip() else None


def status(runner: Runner, inv: Inventory) -> LockInfo | None:
    """Who holds the lock now, if anyone."""
    out = runner.session(lock_host(inv)).run(status_command(), check=True)
    return parse_info(out.stdout)


def release(runner: Runner, inv: Inventory) -> LockInfo | None:
    """Force the lock free (after a crash); returns who held it."""
    held = status(runner, inv)
    runner.session(lock_host(inv)).run(release_command(None), check=True)
    return held


@contextmanager
def deploy_lock(runner: Runner, inv: Inventory, action: str, message: str = "",
                wait: float = 0) -> Iterator[LockInfo]:
    """Hold the lock for the block; released on success, failure and Ctrl-C alike."""
    me = LockInfo(identity(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), action,
                  message, _random.token_hex(8))
    session = runner.session(lock_host(inv))
    deadline = time.monotonic() + wait
    while True:
        out = session.run(acquire_command(me))
        if out.exit_code == 0:
            break
        holder = parse_info(out.stdout) if out.exit_code == HELD else None
        if holder is None:
            raise SentryfabError(f"cannot take the deploy lock on {session.host.name}: "
                                 f"{out.stderr.strip() or out.error}")
        if time.monotonic() >= deadline:
            raise LockHeld(f"another deploy is running: {holder.describe()} (lock on "
                           f"{session.host.name}:{LOCK_DIR}; wait with --wait S, or if it is "
                           f"stale: fab lock.release)")
        time.sleep(2)
    try:
        yield me
    finally:
        session.run(release_command(me.token))
