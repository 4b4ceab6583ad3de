"""One guard around every change to the cluster.

Every task that changes a host runs its procedure inside `guarded(...)`, which holds, in
this one place:

- the deploy lock: one change at a time per cluster, whatever the command;
- the capacity preflight, or its audited skip (--ignore-capacity);
- an audit line when the change starts and one with its result, on the hosts it may touch
  and in the local log;
- a clean end on every exit path. On Ctrl-C the connections the fan-out closed are opened
  again, the undo actions the procedure registered run (put hosts back into nginx's
  rotation...), the state each touched host is left in is read, and the lock is released;
  then ChangeInterrupted (exit 130) carries all of that to the report. An exception or an
  unreachable lock host still releases the lock or says how to.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..containers import docker
from ..errors import ChangeInterrupted, Interrupted, SentryfabError
from ..inventory import Host, Inventory
from ..remote import Runner
from . import audit, lock


@dataclass
class Change:
    """The change under way: what it is doing now, whom it touched, what to undo on Ctrl-C."""

    runner: Runner
    inv: Inventory
    action: str
    message: str
    hosts: list[Host]
    step: str = "starting"
    result: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)
    touched: dict[str, Host] = field(default_factory=dict)
    _undo: dict[int, tuple[str, Callable[[], str]]] = field(default_factory=dict)
    _next: int = 0

    def at(self, step: str) -> None:
        """Name the step running now (the interrupt report and the audit say where)."""
        self.step = step

    def touch(self, hosts: list[Host]) -> None:
        """These hosts are being changed (their state is reported if interrupted)."""
        for h in hosts:
            self.touched.setdefault(h.name, h)

    def on_interrupt(self, what: str, action: Callable[[], str]) -> Callable[[], None]:
        """Run `action` (returning what it did) if Ctrl-C lands before the returned
        function is called, which says the procedure put things back itself."""
        key = self._next
        self._next += 1
        self._undo[key] = (what, action)
        return lambda: self._undo.pop(key, None)

    def undo(self) -> list[str]:
        """The registered undo actions, newest first; each is tried even if one fails."""
        done = []
        for key in sorted(self._undo, reverse=True):
            what, action = self._undo.pop(key)
            try:
                done.append(action() or what)
            except (SentryfabError, OSError) as e:
                done.append(f"{what}: FAILED: {e}")
        return done


@contextmanager
def guarded(runner: Runner, inv: Inventory, action: str, *, hosts: list[Host],
            message: str = "", wait: float = 0, preflight: str | None = None,
            ignore_capacity: bool = False, audit_lines: bool = True,
            **details: Any) -> Iterator[Change]:
    """Hold the lock, check capacity (when `preflight` names the change), audit, and end
    cleanly on every path. db.* operations audit each step themselves (audit_lines=False)."""
    change = Change(runner, inv, action, message, list(hosts), details=dict(details))

    def write(result: str, **more: Any) -> None:
        if audit_lines:
            _record(runner, change, audit.entry(action, result, message=message,
                                                **change.details, **more))

    with lock.deploy_lock(runner, inv, action, message, wait):
        try:
            write("started", hosts=[h.name for h in change.hosts])
            if preflight is not None:
                change.at("capacity check")
                if ignore_capacity:
                    write("capacity check skipped (--ignore-capacity)")
                else:
                    from . import capacity

                    capacity.preflight(inv, runner, preflight)
            yield change
        except (KeyboardInterrupt, Interrupted) as e:
            results = e.results if isinstance(e, Interrupted) else []
            with _sigint_deferred():
                runner.revive()
                undone = change.undo()
                left = host_states(runner, list(change.touched.values()))
                write("interrupted", step=change.step, undone=undone, left=left)
            raise ChangeInterrupted(action, change.step, undone, left, results) from None
        except BaseException as e:
            write("failed", step=change.step, error=str(e) or type(e).__name__)
            raise
        else:
            write(change.result)


def host_states(runner: Runner, hosts: list[Host]) -> dict[str, str]:
    """Each host's sentryfab containers as they are now: 'sentry-web-1 9.1.2 running, ...'
    (or why they could not be read), for the report of an interrupted change."""
    if not hosts:
        return {}
    results = runner.each(hosts, lambda s: s.run(docker.ps(), check=True, timeout=15),
                          what="reading the containers")
    out = {}
    for r in results:
        if not r.ok:
            out[r.host.name] = f"unknown: {r.error}"
            continue
        running = docker.parse_ps(r.value.stdout)
        out[r.host.name] = ", ".join(f"{c.name} {c.version or '?'} {c.state}"
                                     for c in running) or "no sentryfab containers"
    return out


def _record(runner: Runner, change: Change, rec: dict[str, Any]) -> None:
    """On the hosts the change may touch and those it touched, and locally; best effort."""
    hosts = list({h.name: h for h in [*change.hosts, *change.touched.values()]}.values())
    audit.record(runner, hosts, rec)


@dataclass
class CtrlC:
    """Whether Ctrl-C was pressed while steps_run_to_their_end held it back."""

    requested: bool = False


@contextmanager
def steps_run_to_their_end(current: Callable[[], str]) -> Iterator[CtrlC]:
    """Ctrl-C inside the block is noted, not raised: the caller checks `.requested` after
    each step and stops there. For steps whose remote command, once sent, runs on to its
    end whatever we do (so undoing it mid-way would race it)."""
    flag = CtrlC()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def note(signum: int, frame: object) -> None:
        import sys

        flag.requested = True
        print(f"Ctrl-C: {current()} runs to its end, then what ran is put back",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """While putting things back, a second Ctrl-C says to wait instead of leaving a half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def patient(signum: int, frame: object) -> None:
        import sys

        print("putting things back and releasing the lock; a moment", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, patient)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
