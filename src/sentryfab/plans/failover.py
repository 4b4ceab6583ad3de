"""Switchover, failover, rejoin and degrade plans: ordered steps from the topology found. Pure.

A plan is computed from what discovery found, never from what the inventory says, and holds
only the steps still needed: a run interrupted at any step is re-run, rediscovers, and the
new plan starts where the cluster is (or refuses, saying what it found). Refusals come in
two kinds: those --force may override (lag, timeline, another primary still answering) and
those it may not (nothing to promote, an unreachable target).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..failover.model import DbNode, Topology, lsn_text

#: Patroni's default maximum_lag_on_failover: a replica further behind is not promoted.
DEFAULT_MAX_LAG = 1024 * 1024
PAUSE_TIMEOUT = 30.0     # seconds PAUSE may wait for running transactions to finish
REPLAY_TIMEOUT = 60.0    # seconds the target may take to replay the old primary's last WAL
STREAM_TIMEOUT = 120.0   # seconds a rejoined replica may take to stream


@dataclass(frozen=True)
class Options:
    """What the operator asked for."""

    target: str | None = None
    force: bool = False
    max_lag: int = DEFAULT_MAX_LAG
    rebuild: bool = False  # rejoin: a fresh pg_basebackup even where pg_rewind would do
    pause_timeout: float = PAUSE_TIMEOUT
    replay_timeout: float = REPLAY_TIMEOUT


@dataclass(frozen=True)
class Step:
    """One action on one host, said in words for --dry-run, the log and the audit."""

    action: str
    host: str
    text: str


@dataclass(frozen=True)
class Plan:
    """What will be done, or why not; what was found; what is left for later."""

    kind: str
    target: str
    steps: tuple[Step, ...] = ()
    refusals: tuple[str, ...] = ()
    overridden: tuple[str, ...] = ()  # refusals --force set aside
    found: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    lag_bytes: int | None = None  # failover: the WAL the target lacked when planned

    @property
    def refused(self) -> bool:
        """True if the plan must not run."""
        return bool(self.refusals)

    def actions(self) -> list[tuple[str, str]]:
        """(action, host) pairs: the plan's shape, for tests and the audit."""
        return [(s.action, s.host) for s in self.steps]


@dataclass
class _Draft:
    kind: str
    target: str
    force: bool
    steps: list[Step] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lag_bytes: int | None = None

    def step(self, action: str, host: str, text: str) -> None:
        self.steps.append(Step(action, host, text))

    def hard(self, reason: str) -> None:
        self.refusals.append(reason)

    def soft(self, reason: str) -> None:
        (self.overridden if self.force else self.refusals).append(
            reason if self.force else f"{reason} (--force to go ahead anyway)")

    def done(self, topo: Topology) -> Plan:
        return Plan(self.kind, self.target, tuple(self.steps), tuple(self.refusals),
                    tuple(self.overridden), tuple(describe(topo)), tuple(self.notes),
                    self.lag_bytes)


def command(kind: str) -> str:
    """The fab task a plan kind comes from: 'db.failover', 'db.degrade --restore'."""
    return "db.degrade --restore" if kind == "restore" else f"db.{kind}"


def size(n: int | None) -> str:
    """Bytes for people: '0 B', '12.0 KiB', '3.5 MiB'."""
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def describe(topo: Topology) -> list[str]:
    """The topology found, one line per db host and PgBouncer."""
    out = []
    p = topo.primary
    for n in topo.nodes:
        line = f"{n.name}: {n.state}"
        if n.running:
            line += f", timeline {n.timeline}, WAL {lsn_text(n.position)}"
        elif n.control is not None:
            line += (f" ({n.control.state}), last checkpoint {lsn_text(n.control.checkpoint_lsn)}"
                     f" on timeline {n.control.timeline}")
        if n.is_replica and p is not None:
            lag = topo.lag(n)
            src = "streaming from " + p.name if n.streams_from(p) else "NOT streaming"
            secs = f", {lag.seconds:.1f} s" if lag.seconds is not None else ""
            line += f", {src}, lag {size(lag.bytes)}{secs}"
        if n.fenced is not None:
            line += f", FENCED {n.fenced.describe()}"
        if n.degraded is not None and n.is_primary:
            line += ", synchronous replication DEGRADED to async"
        if n.error:
            line += f": {n.error}"
        out.append(line)
    for b in topo.bouncers:
        if not b.reachable:
            out.append(f"{b.name}: unreachable: {b.error}")
            continue
        paused = any(d.paused for d in b.databases)
        out.append(f"{b.name}: {topo.database} -> {topo.points_to(b) or 'nothing'}"
                   + (" (PAUSED)" if paused else ""))
    return out


def candidate(topo: Topology, name: str | None) -> DbNode | None:
    """The node a failover would promote: the one named, else the best replica."""
    if name is None:
        return _best_replica(topo)
    try:
        return topo.node(name)
    except KeyError:
        return None


def _best_replica(topo: Topology) -> DbNode | None:
    """The replica to promote when none is named: the newest timeline, then the most WAL."""
    fit = [n for n in topo.replicas if n.fenced is None]
    return max(fit, key=lambda n: (n.timeline or 0, n.position or 0), default=None)


def _target(topo: Topology, name: str | None, d: _Draft) -> DbNode | None:
    if name is None:
        best = _best_replica(topo)
        if best is None:
            d.hard("no replica answers: there is nothing to promote")
        return best
    try:
        return topo.node(name)
    except KeyError:
        d.hard(f"--to {name}: not a db host of the inventory "
               f"(db hosts: {', '.join(n.name for n in topo.nodes)})")
        return None


def _stays_replica(topo: Topology, n: DbNode, target: DbNode) -> bool:
    """A node that keeps replicating after the move (followed to the new primary)."""
    return n is not target and n.is_replica and n.fenced is None


def _needs_degrade(topo: Topology, target: DbNode, keep: list[DbNode]) -> bool:
    return topo.synchronous and not keep and target.degraded is None


def _to_repoint(d: _Draft, topo: Topology, target: DbNode) -> list[str]:
    """The PgBouncers that do not point at the target yet (unreachable ones noted)."""
    out = []
    for b in topo.bouncers:
        if not b.reachable:
            d.notes.append(f"{b.name} is unreachable and still points at the old primary: "
                           f"`fab config.push --hosts {b.name}` once it is back")
        elif topo.points_to(b) != target.name:
            out.append(b.name)
    return out


def plan_failover(topo: Topology, opts: Options, kind: str = "failover") -> Plan:
    """Promote a replica while the primary is down or unreachable: fence what could still
    act as a primary, promote, repoint PgBouncer, verify a write."""
    d = _Draft(kind, opts.target or "", opts.force)
    t = _target(topo, opts.target, d)
    if t is None:
        return d.done(topo)
    d.target = t.name
    if not t.reachable:
        d.hard(f"{t.name} is unreachable: {t.error}")
    elif t.fenced is not None and not t.is_primary:
        d.hard(f"{t.name} is fenced ({t.fenced.describe()}): it was an old primary and may "
               f"lack what the current one wrote; `fab db.rejoin {t.name}` first")
    elif not t.running:
        d.hard(f"{t.name} is {t.state}, not a running replica: start it or choose another --to")
    elif t.is_replica:
        _failover_checks(topo, t, opts, d)
    else:
        d.notes.append(f"{t.name} is already the primary (timeline {t.timeline}): finishing "
                       "the steps that are still needed")
        for other in topo.primaries:
            if other is not t:
                d.soft(f"{other.name} also answers as a primary (timeline {other.timeline}): "
                       "split brain; it will be fenced")
    if d.refusals:
        return d.done(topo)
    keep = [n for n in topo.nodes if _stays_replica(topo, n, t)]
    repoint = _to_repoint(d, topo, t)
    # The slow half of the PgBouncer change (a throwaway PgBouncer checks the file for 2 s)
    # goes first: nothing is live until commit, and the old primary is down anyway.
    for b in repoint:
        d.step("stage_bouncer", b, f"upload pgbouncer.ini with {topo.database} -> {t.name} "
               "and check it with a throwaway PgBouncer (not live yet)")
    for n in topo.nodes:
        if n is t or n in keep:
            continue
        if not n.reachable:
            d.notes.append(f"{n.name} is unreachable and cannot be fenced now: if it comes back "
                           f"as a primary, `fab db.rejoin {n.name}` (PgBouncer no longer points "
                           "at it)")
        elif n.fenced is not None and not n.running and (n.standby_signal or not n.has_data):
            d.notes.append(f"{n.name} is already fenced and stopped")
        elif n.could_be_primary or n.running or n.container == "running":
            d.step("fence", n.name, f"stop {n.name}'s PostgreSQL if it runs, write the FENCED "
                   "marker and standby.signal: restarted by anyone, it comes up read-only")
        else:
            d.notes.append(f"{n.name} is a stopped replica: `fab db.rejoin {n.name}` later")
    if _needs_degrade(topo, t, keep):
        d.step("degrade", t.name, f"synchronous replication off on {t.name} (postgresql.conf "
               "pushed and reloaded, DEGRADED marker): no replica is left to wait for")
    if not t.is_primary:
        d.step("promote", t.name, f"pg_promote() on {t.name}: it leaves recovery and takes "
               "writes on a new timeline")
    for b in repoint:
        d.step("commit_bouncer", b, f"swap the new pgbouncer.ini in, reload (SIGHUP), "
               f"confirm with SHOW DATABASES that {topo.database} -> {t.name}")
    d.step("after_promote", t.name, f"replication slots on {t.name} for the other db hosts; "
           "forget the primary_conninfo it streamed with; checkpoint")
    for n in keep:
        if not n.streams_from(t):
            d.step("repoint_replica", n.name, f"primary_conninfo of {n.name} -> {t.name}, "
                   "reload: it follows the new timeline")
    for b in topo.bouncers:
        if b.reachable and any(x.paused for x in b.databases):
            d.step("resume", b.name, "RESUME: it was left paused (an interrupted switchover)")
    for b in topo.bouncers:
        if b.reachable:
            d.step("verify_write", b.name, f"a write through {b.name} as "
                   f"{topo.database} lands on {t.name}")
    _next_steps(d, topo, t, keep)
    return d.done(topo)


def _failover_checks(topo: Topology, t: DbNode, opts: Options, d: _Draft) -> None:
    for other in topo.primaries:
        d.soft(f"{other.name} still reports itself primary (timeline {other.timeline}): for a "
               "planned move use `fab db.switchover`")
    lag = topo.lag(t)
    if not lag.known:
        d.soft(f"how much WAL {t.name} lacks is unknown ({lag.basis}): acknowledged writes "
               "may be lost")
    elif (lag.bytes or 0) > opts.max_lag:
        d.soft(f"{t.name} lacks {size(lag.bytes)} of WAL (against {lag.basis}), more than "
               f"maximum_lag_on_failover ({size(opts.max_lag)})")
    elif lag.bytes:
        acked = not topo.synchronous or any(n.degraded is not None for n in topo.nodes)
        d.notes.append(
            f"{t.name} lacks {size(lag.bytes)} of WAL (against {lag.basis}), within "
            f"maximum_lag_on_failover ({size(opts.max_lag)}): " + (
                "replication was asynchronous, so commits in it may have been acknowledged "
                "and are lost" if acked else "replication was synchronous, so no commit in it "
                "was acknowledged to a client"))
    d.lag_bytes = lag.bytes
    if (t.known_timeline or 0) < topo.max_timeline:
        d.soft(f"{t.name} is on timeline {t.known_timeline}, behind timeline "
               f"{topo.max_timeline} of another host")


def _next_steps(d: _Draft, topo: Topology, t: DbNode, keep: list[DbNode]) -> None:
    olds = [s.host for s in d.steps if s.action in ("fence", "stop")]
    olds += [n.name for n in topo.nodes if n.fenced is not None and n is not t]
    for name in dict.fromkeys(olds):
        d.notes.append(f"{name} stays stopped and fenced: `fab db.rejoin {name}` makes it a "
                       f"replica of {t.name}")
    if topo.synchronous and not keep:
        d.notes.append(f"synchronous replication stays off on {t.name} until a replica "
                       "streams again (`fab db.rejoin` turns it back on)")


def plan_switchover(topo: Topology, opts: Options) -> Plan:
    """A planned move off a healthy primary, losing nothing: PAUSE PgBouncer, stop the old
    primary cleanly, wait until the target replayed its last WAL, promote, repoint, RESUME."""
    p = topo.primary
    d = _Draft("switchover", opts.target or "", False)
    t = _target(topo, opts.target, d)
    if t is None:
        return d.done(topo)
    d.target = t.name
    resumed = [f"{n.name} fenced for it" for n in topo.nodes if n.fenced is not None
               and n.fenced.new_primary == t.name and n.fenced.action == "switchover"]
    # Only a switchover pauses PgBouncer: paused with no primary running is one cut short
    # between its stop and its fence.
    resumed += [f"{b.name} paused" for b in topo.bouncers
                if any(x.paused for x in b.databases)]
    if p is None or p is t:
        if resumed or (p is t and t.is_primary):
            plan = plan_failover(topo, replace(opts, force=False), kind="switchover")
            return replace(plan, notes=(f"continuing an interrupted switchover to {t.name} "
                                        f"({', '.join(resumed) or 'it is promoted'})",
                                        *plan.notes))
        d.hard("no running primary: a switchover moves a healthy primary (found: "
               + "; ".join(describe(topo)) + "); `fab db.failover` promotes a replica "
               "when the primary is down")
        return d.done(topo)
    _switchover_checks(topo, p, t, opts, d)
    if d.refusals:
        return d.done(topo)
    keep = [n for n in topo.nodes if _stays_replica(topo, n, t)]
    for b in topo.bouncers:
        d.step("stage_bouncer", b.name, f"upload pgbouncer.ini with {topo.database} -> "
               f"{t.name} and check it with a throwaway PgBouncer (not live yet)")
    if _needs_degrade(topo, t, keep):
        d.step("degrade", t.name, f"synchronous replication off in {t.name}'s postgresql.conf"
               f" (in effect once promoted: {p.name} will be stopped, no replica to wait for)")
    for b in topo.bouncers:
        d.step("pause", b.name, f"PAUSE {topo.database}: new queries wait, running ones "
               f"finish (at most {opts.pause_timeout:g} s; RESUME if anything fails)")
    d.step("stop", p.name, f"stop {p.name} with a fast shutdown (a shutdown checkpoint; "
           "every WAL record sent to the replicas); read its final checkpoint LSN")
    d.step("fence", p.name, f"FENCED marker and standby.signal on {p.name}: restarted by "
           "anyone, it comes up read-only")
    d.step("wait_replay", t.name, f"wait until {t.name} has replayed {p.name}'s final "
           f"checkpoint (at most {opts.replay_timeout:g} s; before this, anything that "
           f"fails puts {p.name} back as it was)")
    d.step("promote", t.name, f"pg_promote() on {t.name}")
    for n in keep:
        d.step("repoint_replica", n.name, f"primary_conninfo of {n.name} -> {t.name}, reload")
    for b in topo.bouncers:
        d.step("commit_bouncer", b.name, f"swap the new pgbouncer.ini in, reload (SIGHUP), "
               f"confirm with SHOW DATABASES that {topo.database} -> {t.name}")
    for b in topo.bouncers:
        d.step("resume", b.name, f"RESUME {topo.database}: the waiting queries run on {t.name}")
    d.step("after_promote", t.name, f"replication slots on {t.name} for the other db hosts; "
           "forget the primary_conninfo it streamed with; checkpoint")
    for b in topo.bouncers:
        d.step("verify_write", b.name, f"a write through {b.name} lands on {t.name}")
    _next_steps(d, topo, t, keep)
    return d.done(topo)


def _switchover_checks(topo: Topology, p: DbNode, t: DbNode, opts: Options,
                       d: _Draft) -> None:
    if len(topo.primaries) > 1:
        d.hard("more than one host answers as a primary: " + ", ".join(
            n.name for n in topo.primaries) + " (split brain: `fab db.failover --to "
            f"{p.name} --force` fences the others)")
    if not t.reachable:
        d.hard(f"{t.name} is unreachable: {t.error}")
        return
    if t.fenced is not None:
        d.hard(f"{t.name} is fenced ({t.fenced.describe()}): `fab db.rejoin {t.name}` first")
    if not t.is_replica:
        d.hard(f"{t.name} is {t.state}, not a running replica")
        return
    if not t.streams_from(p):
        d.hard(f"{t.name} is not streaming from {p.name}"
               + (f" (WAL receiver: {t.receiver.status} from {t.receiver.sender_host})"
                  if t.receiver else " (no WAL receiver)"))
    if t.replay_paused and t.replay_paused != "not paused":
        d.hard(f"replay is {t.replay_paused} on {t.name}: select pg_wal_replay_resume() there")
    lag = topo.lag(t)
    if not lag.known or (lag.bytes or 0) > opts.max_lag:
        d.hard(f"{t.name} lags {size(lag.bytes)} behind {p.name} (at most "
               f"{size(opts.max_lag)} for a switchover): wait for it to catch up")
    if t.timeline != p.timeline:
        d.hard(f"{t.name} is on timeline {t.timeline}, {p.name} on {p.timeline}")
    for b in topo.bouncers:
        if not b.reachable:
            d.hard(f"{b.name} is unreachable: every PgBouncer must be paused and repointed")
        elif b.entry(topo.database) is None:
            d.hard(f"{b.name} has no [databases] entry for {topo.database}")


def plan_rejoin(topo: Topology, name: str, opts: Options) -> Plan:
    """Make a former primary (or any broken node) a streaming replica of the primary again:
    pg_rewind where it can, a fresh pg_basebackup where it cannot, then lift its fence."""
    d = _Draft("rejoin", name, opts.force)
    p = topo.primary
    try:
        n = topo.node(name)
    except KeyError:
        d.hard(f"{name}: not a db host of the inventory")
        return d.done(topo)
    if p is None:
        d.hard("no running primary to follow: promote one first (`fab db.failover`)")
        return d.done(topo)
    if p is n:
        d.hard(f"{name} is the primary; `fab db.switchover` moves it")
        return d.done(topo)
    if not n.reachable:
        d.hard(f"{name} is unreachable: {n.error}")
        return d.done(topo)
    if n.is_primary:
        d.soft(f"{name} runs as a primary (timeline {n.timeline}) beside {p.name} (timeline "
               f"{p.timeline}): rejoining discards whatever it wrote on its own")
        if d.refusals:
            return d.done(topo)
    streaming = n.streams_from(p) and n.known_timeline == p.timeline
    if not streaming:
        if n.container != "missing":
            d.step("stop", name, f"stop {name} (fast shutdown; also ends a restart loop)")
        d.step("ensure_slot", p.name, f"replication slot {_slot(name)} on {p.name}")
        if opts.rebuild or not n.has_data:
            d.step("clone", name, f"fresh copy of {p.name} with pg_basebackup (the old data "
                   "directory is kept aside)")
        else:
            d.step("rewind", name, f"pg_rewind {name} onto {p.name}'s timeline (a fresh "
                   "pg_basebackup if pg_rewind cannot)")
        d.step("standby_config", name, f"standby.signal, primary_conninfo -> {p.name} "
               f"(application_name={name}), slot {_slot(name)}")
        d.step("start", name, f"start {name}'s PostgreSQL")
        d.step("wait_streaming", name, f"wait until {name} streams from {p.name}")
    else:
        d.notes.append(f"{name} already streams from {p.name}")
    if n.fenced is not None:
        d.step("unfence", name, f"lift {name}'s fence (FENCED marker removed)")
    if topo.synchronous and (p.degraded is not None or p.sync_names == ""):
        d.step("restore_sync", p.name, f"synchronous replication back on on {p.name} "
               "(DEGRADED marker removed, postgresql.conf pushed and reloaded)")
        d.step("wait_sync", p.name, f"wait until {name} is a synchronous standby of {p.name}")
    if d.steps:
        for b in topo.bouncers:
            if b.reachable:
                d.step("verify_write", b.name, f"a write through {b.name} commits")
    else:
        d.notes.append("nothing to do")
    return d.done(topo)


def _slot(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())


def plan_degrade(topo: Topology, opts: Options, restore: bool = False) -> Plan:
    """Turn synchronous replication off on purpose (its only replica is gone and commits
    wait), or back on (`restore`) once a replica streams again."""
    d = _Draft("restore" if restore else "degrade", "", opts.force)
    p = topo.primary
    if p is None:
        d.hard("no running primary")
        return d.done(topo)
    d.target = p.name
    if not topo.synchronous:
        d.hard("the inventory has synchronous: false for db: there is nothing to degrade "
               "or restore")
        return d.done(topo)
    if not restore:
        if p.degraded is not None and p.sync_names == "":
            d.notes.append(f"{p.name} is already degraded to async {p.degraded.describe()}")
            return d.done(topo)
        d.step("degrade", p.name, f"DEGRADED marker on {p.name}; its postgresql.conf with "
               "synchronous_standby_names = '' pushed and reloaded: commits stop waiting for "
               "a replica (and may be lost with the primary until one streams again)")
        for b in topo.bouncers:
            if b.reachable:
                d.step("verify_write", b.name, f"a write through {b.name} commits")
        return d.done(topo)
    streaming = [n for n in topo.replicas if n.streams_from(p)]
    if not streaming:
        d.soft(f"no replica streams from {p.name}: with synchronous replication on, every "
               "commit would wait")
        if d.refusals:
            return d.done(topo)
    if p.degraded is None and p.sync_names:
        d.notes.append(f"synchronous replication is already on on {p.name} "
                       f"({p.sync_names})")
        return d.done(topo)
    d.step("restore_sync", p.name, "DEGRADED marker removed; postgresql.conf with "
           "synchronous replication pushed to the db hosts and reloaded")
    if streaming:
        d.step("wait_sync", p.name, f"wait until {streaming[0].name} is a synchronous "
               f"standby of {p.name}")
    for b in topo.bouncers:
        if b.reachable:
            d.step("verify_write", b.name, f"a write through {b.name} commits")
    return d.done(topo)
