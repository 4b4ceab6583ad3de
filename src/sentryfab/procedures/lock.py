"""The deploy lock: one deploy at a time per cluster, an atomic mkdir on a designated host."""

from __future__ import annotations

import os
import secrets as _random
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..become import login_user, permission_problem
from ..errors import SentryfabError
from ..inventory import Inventory
from ..lockinfo import (  # noqa: F401 - the lock's pure parts, re-exported for callers
    HELD,
    LOCK_DIR,
    LockInfo,
    acquire_command,
    force_release_command,
    lock_host,
    parse_info,
    release_command,
    status_command,
)
from ..remote import Runner
from .audit import identity


class LockHeld(SentryfabError):
    """Another deploy holds the lock; the message says who, since when, doing what."""


def status(runner: Runner, inv: Inventory) -> LockInfo | None:
    """Who holds the lock now, if anyone."""
    out = runner.session(lock_host(inv)).run(status_command(), check=True)
    return parse_info(out.stdout)


def release(runner: Runner, inv: Inventory, held: LockInfo) -> bool:
    """Force free the lock `held` names (after a crash): only that holder's, not one that
    took it since it was shown and confirmed. True if it was released."""
    out = runner.session(lock_host(inv)).run(force_release_command(held.token))
    return out.exit_code == 0


@contextmanager
def deploy_lock(runner: Runner, inv: Inventory, action: str, message: str = "",
                wait: float = 0) -> Iterator[LockInfo]:
    """Hold the lock for the block; released on success, failure and Ctrl-C alike."""
    me = LockInfo(identity(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), action,
                  message, _random.token_hex(8), socket.gethostname(), os.getpid())
    session = runner.session(lock_host(inv))
    deadline = time.monotonic() + wait
    while True:
        out = session.run(acquire_command(me))
        if out.exit_code == 0:
            break
        holder = parse_info(out.stdout) if out.exit_code == HELD else None
        if holder is None:
            why = (permission_problem(out.stderr, login_user(inv, session.host))
                   or out.stderr.strip() or out.error or f"exit code {out.exit_code}")
            raise SentryfabError(f"cannot take the deploy lock on {session.host.name}: {why}")
        if time.monotonic() >= deadline:
            gone = holder.stale()
            raise LockHeld(f"another deploy is running: {holder.describe()} (lock on "
                           f"{session.host.name}:{LOCK_DIR}; " + (
                               f"stale: {gone})" if gone else
                               "wait with --wait S, or if it is stale: fab lock.release)"))
        time.sleep(2)
    try:
        yield me
    except BaseException:
        _release(runner, inv, me, in_flight=True)
        raise
    _release(runner, inv, me, in_flight=False)


class LockNotReleased(SentryfabError):
    """The change ended but its lock could not be removed (the lock host stopped answering)."""


def _release(runner: Runner, inv: Inventory, me: LockInfo, *, in_flight: bool) -> None:
    """Free our lock over the lock host's session, a fresh one if Ctrl-C closed it. When it
    cannot be freed, say how; raised only if no other error is already on its way out."""
    host = lock_host(inv)
    session = runner.session(host)
    if session.cut:
        runner.revive()
        session = runner.session(host)
    try:
        out = session.run(release_command(me.token), timeout=30)
        why = None if out.exit_code == 0 else (out.stderr.strip() or out.error)
    except SentryfabError as e:
        why = str(e)
    if why is None:
        return
    text = (f"the deploy lock on {host.name}:{LOCK_DIR} is still held by this run "
            f"({me.describe()}): {why}; once {host.name} answers, `fab lock.release` frees it")
    if not in_flight:
        raise LockNotReleased(text)
    print(f"warning: {text}", file=sys.stderr)
