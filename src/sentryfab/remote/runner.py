"""Bounded parallel fan-out over hosts, one reused connection per host, one result per host.

Fabric's ThreadingGroup starts a thread per host without bound and collapses duplicate
entries in its GroupResult; this keeps a fixed pool and returns results in input order.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..errors import Interrupted, SentryfabError
from ..inventory import Host, Inventory
from ..results import HostResult, stderr_tail
from ..shell import script, sudo
from . import held_client
from .connect import ConnectOptions, Unreachable
from .opener import Opener
from .session import (
    CommandFailed,
    CommandOutput,
    HostSession,
    LineCallback,
    Session,
    StoppedAnswering,
)

DEFAULT_PARALLEL = 32

#: Called as each host finishes (for progress displays).
DoneCallback = Callable[[HostResult], None]


class Runner:
    """Owns this invocation's connections and runs work on many hosts at once.

    With `persist` seconds above 0 (the inventory's ssh: persist:, unless --no-persist), the
    connections are held by this user's connection holder (held_client.py) and outlive the
    invocation; otherwise they are this process's own and closed at the end.
    """

    def __init__(self, inv: Inventory, *, parallel: int = DEFAULT_PARALLEL,
                 accept_new: bool = False, connect_timeout: float | None = None,
                 persist: float | None = None):
        if parallel < 1:
            raise SentryfabError(f"--parallel must be at least 1, got {parallel}")
        self.inv = inv
        self.parallel = parallel
        self.opts = ConnectOptions(
            connect_timeout=connect_timeout or inv.ssh.connect_timeout,
            accept_new=accept_new,
            keepalive_interval=inv.ssh.keepalive_interval,
            keepalive_count_max=inv.ssh.keepalive_count_max,
        )
        self._holder = held_client.holder(inv, self.opts, persist)
        self._opener: Opener | None = None
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def held(self) -> bool:
        """True if the connections are the connection holder's (they outlive this run)."""
        return self._holder is not None

    # -- connections -------------------------------------------------------------------------

    def session(self, host: Host) -> Session:
        """The session for `host`, created once per invocation and then reused."""
        with self._lock:
            s = self._sessions.get(host.name)
            if s is None:
                s = self._new_session(host)
                self._sessions[host.name] = s
            return s

    def _new_session(self, host: Host) -> Session:
        # Caller holds self._lock.
        if self._holder is not None:
            return self._holder.session(host)
        if self._opener is None:
            self._opener = Opener(self.inv, self.opts)
            for warning in self._opener.warnings:
                print(f"warning: {warning}", file=sys.stderr)
        return HostSession(host, self._opener.build(host), self._opener.open,
                           channel_timeout=self.opts.connect_timeout)

    def close(self) -> None:
        """Close every connection this runner opened (held ones stay with their holder;
        a command running on one is cut off all the same)."""
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.close()
        if self._opener is not None:
            self._opener.close()

    def revive(self) -> None:
        """After Ctrl-C closed every connection: let what must still run (releasing the
        lock, putting hosts back in rotation, reporting their state) open fresh ones."""
        with self._lock:
            self._stop.clear()
            self._sessions = {n: s for n, s in self._sessions.items() if not s.cut}

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fan-out -----------------------------------------------------------------------------

    def each(self, hosts: Sequence[Host], step: Callable[[Session], Any], *,
             on_done: DoneCallback | None = None, what: str = "") -> list[HostResult]:
        """Run `step(session)` on every host, at most `parallel` at once; results in host order.

        The step returns a value (kept in result.value) or raises: CommandFailed makes the
        host 'failed' with the command's exit code and stderr, Unreachable makes it
        'unreachable' (a host that stopped answering: "stopped answering during <what>"),
        a SentryfabError makes it 'failed' with its message.
        """
        results: list[HostResult | None] = [None] * len(hosts)
        started: set[int] = set()

        def work(i: int) -> HostResult:
            if self._stop.is_set():
                raise _NotStarted()
            started.add(i)
            return self._one(hosts[i], step, what)

        pool = ThreadPoolExecutor(max_workers=min(self.parallel, max(len(hosts), 1)),
                                  thread_name_prefix="sentryfab")
        futures: dict[Future, int] = {}
        try:
            futures = {pool.submit(work, i): i for i in range(len(hosts))}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for f in done:
                    r = f.result()
                    results[futures[f]] = r
                    if on_done:
                        on_done(r)
        except KeyboardInterrupt:
            self._stop.set()
            self.close()  # running commands end now, with an error on their channel
            pool.shutdown(wait=True, cancel_futures=True)
            for f, i in futures.items():
                if results[i] is None:
                    results[i] = _interrupted(hosts[i], f, i in started)
            raise Interrupted([r for r in results if r is not None]) from None
        finally:
            pool.shutdown(wait=True)
        return [r for r in results if r is not None]

    def run(self, hosts: Sequence[Host], command: str | Callable[[Host], str], *,
            timeout: float | None = None, use_sudo: bool = False,
            on_line: Callable[[Host, str, str], None] | None = None,
            on_done: DoneCallback | None = None) -> list[HostResult]:
        """Run a shell command (or one built per host) everywhere; non-zero exit = failed."""

        def step(s: Session) -> CommandOutput:
            text = command(s.host) if callable(command) else command
            text = sudo(text) if use_sudo else script(text)
            cb: LineCallback | None = None
            if on_line:
                def cb(stream: str, line: str, h: Host = s.host) -> None:
                    on_line(h, stream, line)
            out = s.run(text, timeout=timeout, on_line=cb)
            if not out.ok:
                raise CommandFailed(out)
            return out

        return self.each(hosts, step, on_done=on_done)

    def _one(self, host: Host, step: Callable[[Session], Any], what: str = ""
             ) -> HostResult:
        start = time.monotonic()
        try:
            value = step(self.session(host))
        except Unreachable as e:
            if self._stop.is_set():
                return HostResult(host, "failed", error="interrupted while running",
                                  seconds=time.monotonic() - start)
            why = str(e)
            if isinstance(e, StoppedAnswering):
                why = f"stopped answering during {what or 'a command'} ({e})"
            return HostResult(host, "unreachable", error=why, seconds=time.monotonic() - start)
        except CommandFailed as e:
            o = e.output
            if self._stop.is_set() and o.exit_code is None:
                return HostResult(host, "failed", stdout=o.stdout, stderr=o.stderr,
                                  error="interrupted while running",
                                  seconds=time.monotonic() - start)
            return HostResult(host, "failed", exit_code=o.exit_code, stdout=o.stdout,
                              stderr=o.stderr, error=o.error or _exit_reason(o),
                              seconds=time.monotonic() - start)
        except SentryfabError as e:
            return HostResult(host, "failed", error=str(e), seconds=time.monotonic() - start)
        except Exception as e:  # noqa: BLE001 - one broken host must not sink the fan-out
            if self._stop.is_set():
                return HostResult(host, "failed", error="interrupted while running",
                                  seconds=time.monotonic() - start)
            return HostResult(host, "failed", error=f"{type(e).__name__}: {e}",
                              seconds=time.monotonic() - start)
        if isinstance(value, CommandOutput):
            return HostResult(host, "ok", exit_code=value.exit_code, stdout=value.stdout,
                              stderr=value.stderr, seconds=time.monotonic() - start,
                              value=value)
        return HostResult(host, "ok", seconds=time.monotonic() - start, value=value)


class _NotStarted(Exception):
    """Raised inside a worker that found the stop flag set before touching its host."""


def _interrupted(host: Host, fut: Future, started: bool) -> HostResult:
    if fut.done() and not fut.cancelled():
        exc = fut.exception()
        if exc is None:
            return fut.result()
        if not isinstance(exc, _NotStarted):
            return HostResult(host, "failed", error=f"interrupted: {exc}")
    why = "interrupted while running" if started else "not run: interrupted before it started"
    return HostResult(host, "failed", error=why)


def _exit_reason(o: CommandOutput) -> str:
    tail = stderr_tail(o.stderr, 1)
    return f"exit code {o.exit_code}" + (f": {tail}" if tail else "")
