"""`fab status`: every selected host runs its one check script, once, all hosts at once.

A round: build each host's script (pure), run it over the host's one connection (opened on
the first round, reused by --watch's later rounds), evaluate each host's answer against the
previous sample, add the cluster-level findings, keep the new samples. Hosts outside the
selection that a finding needs (the databases, for PgBouncer's target) are checked too but
not shown.

`rounds(...)` is the whole of `fab status` short of showing it: it selects the hosts,
connects, and yields Rounds whose every `check()` is one round sent to statsd; `--watch`
asks it for a round every N seconds, `fab db.status` also for the db topology.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..lockinfo import lock_host
from ..remote import DEFAULT_PARALLEL, Runner, Session
from ..results import HostResult
from ..roles import ROLES
from ..secrets import Secrets
from ..selection import Selection, select
from ..status import checks, cluster, script, state, statsd
from ..status.checks import Answer
from ..status.model import HostStatus, Problem, StatusReport

if TYPE_CHECKING:
    from ..topology.model import Topology

#: A finding about these roles needs those roles' hosts checked as well.
CONTEXT_ROLES: dict[str, tuple[str, ...]] = {
    "pgbouncer": ("db",),            # is it pointing at the primary?
    "worker": ("redis-queue",),      # is the queue being consumed?
    "nginx": ("web",),               # is a failing upstream a web process known down?
    "cron": ROLES,                   # a second cron may run on any host with containers
}

#: Seconds the whole script may take on a host (each fact gives up after FACT_TIMEOUT).
ROUND_TIMEOUT = script.FACT_TIMEOUT + 10


def with_context(inv: Inventory, shown: list[Host]) -> list[Host]:
    """The shown hosts plus the hosts their cluster findings need, in inventory order."""
    need = {r for h in shown for role in h.roles for r in CONTEXT_ROLES.get(role, ())}
    names = {h.name for h in shown} | {h.name for h in inv.hosts if need & set(h.roles)}
    if any(h.has("nginx") for h in shown):  # is a drained upstream a deploy at work?
        names.add(lock_host(inv).name)
    return [h for h in inv.hosts if h.name in names]


@dataclass
class StatusChecker:
    """Runs rounds over one Runner (so --watch reuses the connections) and keeps samples."""

    runner: Runner
    inv: Inventory
    secrets: Secrets
    shown: list[Host]
    state_file: Path | None = None
    timeout: float = ROUND_TIMEOUT
    checked: list[Host] = field(default_factory=list)
    previous: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..status import thresholds

        thresholds.validate(self.inv)
        if not self.checked:
            self.checked = with_context(self.inv, self.shown)
        if self.state_file is not None:
            self.previous = state.load(self.state_file)
        needed = {n for h in self.checked for n in script.secrets_needed(h)}
        # A missing secret costs only the facts that need it: the rest of the round still
        # runs, and those hosts say which secret is missing and where it should come from.
        self._missing: dict[str, str] = {}
        values: dict[str, str] = {}
        for name in sorted(needed):
            try:
                values[name] = self.secrets.get(name)
            except SentryfabError as e:
                self._missing[name] = str(e)
                values[name] = ""
        self._scripts = {h.name: script.build(self.inv, h, values) for h in self.checked}
        # Every session (Fabric Connection) made here, in one thread, before any connects:
        # building a Connection writes to the Fabric config all of them share (its
        # inline_ssh_env, which re-merges that config), and a thread opening another
        # connection at that moment reads an empty config ("No attribute or config key found
        # for 'authentication'"). Runner.session() is otherwise lazy, inside the fan-out.
        for h in self.checked:
            self.runner.session(h)

    def round(self, on_done: Callable[[HostResult], None] | None = None) -> StatusReport:
        """Check every host once; the report holds the shown hosts and relevant findings."""
        start = time.monotonic()
        results = self.runner.each(self.checked, self._step, on_done=on_done)
        now = time.time()
        statuses: list[HostStatus] = []
        samples: dict[str, dict] = {}
        for r in results:
            st, sample = self._evaluate(r, now)
            statuses.append(st)
            if sample is not None:
                samples[r.host.name] = sample
        view = cluster.analyse(self.inv, statuses)
        self.previous.update(samples)
        if self.state_file is not None:
            try:
                state.save(self.state_file, samples)
            except OSError:
                pass  # deltas are a nicety: a read-only home must not fail the check
        shown_names = {h.name for h in self.shown}
        shown_roles = {r for h in self.shown for r in h.roles}
        view.problems = [p for p in view.problems if _concerns(p, shown_names, shown_roles)]
        return StatusReport(self.inv.cluster, [s for s in statuses if s.host.name in
                                               shown_names], view,
                            seconds=time.monotonic() - start, checked_at=now)

    def _step(self, s: Session) -> Answer:
        cs = self._scripts[s.host.name]
        t0 = time.monotonic()
        fresh = not s.connected
        s.ensure_open()
        connected = time.monotonic()
        out = s.run(cs.command, stdin=cs.stdin, timeout=self.timeout)
        if out.exit_code == 0 and f"{script.MARK} end " not in out.stdout:
            # Exit status in, last line missing: sshd may send exit-status before the
            # output's tail (the read stops at the status, not at EOF); ask once more.
            out = s.run(cs.command, stdin=cs.stdin, timeout=self.timeout)
        return Answer(out.stdout, out.exit_code, out.error, time.monotonic() - connected,
                      connected - t0 if fresh else None, stderr=out.stderr)

    def _evaluate(self, r: HostResult, now: float) -> tuple[HostStatus, dict | None]:
        if r.status == "unreachable":
            return checks.unreachable(r.host, r.error or "unreachable", r.seconds), None
        if not isinstance(r.value, Answer):
            return checks.failed(r.host, r.error or r.status, r.seconds), None
        st, sample = checks.evaluate_host(self.inv, r.host, r.value,
                                          self.previous.get(r.host.name), now)
        for name in self._scripts[r.host.name].secrets:
            if name in self._missing:
                st.add(Problem("critical", f"cannot check all of it: {self._missing[name]}"))
        return st, sample


def _concerns(p: Problem, hosts: set[str], roles: set[str]) -> bool:
    return bool(set(p.hosts) & hosts or set(p.roles) & roles) or not (p.hosts or p.roles)


@dataclass(frozen=True)
class StatusOptions:
    """Which hosts `fab status` checks, how, and where its figures go."""

    roles: str | None = None
    hosts: str | None = None
    exclude: str | None = None
    parallel: int = DEFAULT_PARALLEL
    accept_new: bool = False
    statsd: str | None = None  # HOST:PORT; None: the inventory's statsd, if it names one


@dataclass
class Round:
    """One round's report, and how sending its figures to statsd went."""

    report: StatusReport
    statsd: tuple[str, int] | None = None  # where the gauges went; None: nowhere
    gauges: int = 0
    packets: int = 0
    statsd_problem: str = ""  # why they could not be sent (the round itself still counts)


@dataclass
class Rounds:
    """Status rounds over one set of connections (--watch reuses them)."""

    runner: Runner
    inv: Inventory
    checker: StatusChecker
    target: tuple[str, int] | None
    load_secrets: Callable[[], Secrets]

    @property
    def checked(self) -> list[Host]:
        """Every host a round checks: the selected ones and those their findings need."""
        return self.checker.checked

    def check(self, on_done: Callable[[HostResult], None] | None = None) -> Round:
        """One round over every host, its figures sent as statsd gauges."""
        done = Round(self.checker.round(on_done))
        if self.target is not None:
            lines = statsd.gauge_lines(done.report)
            try:
                done.packets = statsd.send(self.target, lines)
                done.statsd, done.gauges = self.target, len(lines)
            except OSError as e:
                done.statsd_problem = (f"statsd {self.target[0]}:{self.target[1]}: "
                                       f"{e.strerror or e}")
        return done

    def topology(self) -> Topology:
        """The db cluster as its hosts and PgBouncers report it (who is primary, lag,
        timelines, where each PgBouncer points): the same as `fab db.topology`."""
        from . import failover

        return failover.topology(self.runner, self.inv, self.load_secrets())


@contextmanager
def rounds(inv: Inventory, opts: StatusOptions, load_secrets: Callable[[], Secrets], *,
           connect: Callable[..., Runner] = Runner) -> Iterator[Rounds]:
    """Select the hosts, read the statsd target, connect; yields what runs the rounds."""
    shown = select(inv, Selection(roles=opts.roles, hosts=opts.hosts, exclude=opts.exclude))
    target = (statsd.parse_target(opts.statsd) if opts.statsd
              else statsd.inventory_target(inv.extra.get("statsd")))
    with connect(inv, parallel=opts.parallel, accept_new=opts.accept_new) as runner:
        checker = StatusChecker(runner, inv, load_secrets(), shown,
                                state_file=state.state_path(inv.cluster))
        yield Rounds(runner, inv, checker, target, load_secrets)
