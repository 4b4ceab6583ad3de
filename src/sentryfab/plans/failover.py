"""Switchover, failover, rejoin and degrade plans: ordered steps from the topology found. Pure.

A plan is computed from what discovery found, never from what the inventory says, and holds
only the steps still needed: a run interrupted at any step is re-run, rediscovers, and the
new plan starts where the cluster is (or refuses, saying what it found). Refusals come in
two kinds: those --force may override (lag, timeline, another primary still answering) and
those it may not (nothing to promote, an unreachable target).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from ..topology.model import DbNode, Topology
from ..topology.values import lsn_text

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


class Action(StrEnum):
    """What a step does. Each has its executor in procedures/failover.py's ACTIONS (checked
    when that module is imported); the values appear in --json output and audit lines."""

    # PgBouncer
    STAGE_BOUNCER = "stage_bouncer"
    COMMIT_BOUNCER = "commit_bouncer"
    PAUSE = "pause"
    RESUME = "resume"
    VERIFY_WRITE = "verify_write"
    # PostgreSQL
    STOP = "stop"
    FENCE = "fence"
    WAIT_REPLAY = "wait_replay"
    PROMOTE = "promote"
    AFTER_PROMOTE = "after_promote"
    REPOINT_REPLICA = "repoint_replica"
    DEGRADE = "degrade"
    RESTORE_SYNC = "restore_sync"
    WAIT_SYNC = "wait_sync"
    ENSURE_SLOT = "ensure_slot"
    REWIND = "rewind"
    CLONE = "clone"
    STANDBY_CONFIG = "standby_config"
    START = "start"
    WAIT_STREAMING = "wait_streaming"
    UNFENCE = "unfence"


@dataclass(frozen=True)
class Step:
    """One action on one host, said in words for --dry-run, the log and the audit."""

    action: Action
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

    def step(self, action: Action, host: str, text: str) -> None:
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


def size(count: int | None) -> str:
    """Bytes for people: '0 B', '12.0 KiB', '3.5 MiB'."""
    if count is None:
        return "unknown"
    amount: float = count
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(amount) < 1024 or unit == "GiB":
            return f"{amount} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount} B"


def describe(topo: Topology) -> list[str]:
    """The topology found, one line per db host and PgBouncer."""
    out = []
    primary = topo.primary
    for node in topo.nodes:
        line = f"{node.name}: {node.state}"
        if node.running:
            line += f", timeline {node.timeline}, WAL {lsn_text(node.position)}"
        elif node.control is not None:
            line += (f" ({node.control.state}), last checkpoint "
                     f"{lsn_text(node.control.checkpoint_lsn)} on timeline "
                     f"{node.control.timeline}")
        if node.is_replica and primary is not None:
            lag = topo.lag(node)
            src = "streaming from " + primary.name if node.streams_from(primary) \
                else "NOT streaming"
            secs = f", {lag.seconds:.1f} s" if lag.seconds is not None else ""
            line += f", {src}, lag {size(lag.bytes)}{secs}"
        if node.fenced is not None:
            line += f", FENCED {node.fenced.describe()}"
        if node.degraded is not None and node.is_primary:
            line += ", synchronous replication DEGRADED to async"
        if node.error:
            line += f": {node.error}"
        out.append(line)
    for bouncer in topo.bouncers:
        if not bouncer.reachable:
            out.append(f"{bouncer.name}: unreachable: {bouncer.error}")
            continue
        paused = any(d.paused for d in bouncer.databases)
        out.append(f"{bouncer.name}: {topo.database} -> {topo.points_to(bouncer) or 'nothing'}"
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


def _pick_target(topo: Topology, name: str | None, draft: _Draft) -> DbNode | None:
    if name is None:
        best = _best_replica(topo)
        if best is None:
            draft.hard("no replica answers: there is nothing to promote")
        return best
    try:
        return topo.node(name)
    except KeyError:
        draft.hard(f"--to {name}: not a db host of the inventory "
                   f"(db hosts: {', '.join(n.name for n in topo.nodes)})")
        return None


def _stays_replica(topo: Topology, node: DbNode, target: DbNode) -> bool:
    """A node that keeps replicating after the move (followed to the new primary)."""
    return node is not target and node.is_replica and node.fenced is None


def _needs_degrade(topo: Topology, target: DbNode, keep: list[DbNode]) -> bool:
    return topo.synchronous and not keep and target.degraded is None


def _to_repoint(draft: _Draft, topo: Topology, target: DbNode) -> list[str]:
    """The PgBouncers that do not point at the target yet (unreachable ones noted)."""
    out = []
    for bouncer in topo.bouncers:
        if not bouncer.reachable:
            draft.notes.append(f"{bouncer.name} is unreachable and still points at the old "
                               f"primary: `fab config.push --hosts {bouncer.name}` once it is "
                               "back")
        elif topo.points_to(bouncer) != target.name:
            out.append(bouncer.name)
    return out


def _stage_bouncers(draft: _Draft, topo: Topology, target: DbNode, names: list[str]) -> None:
    """The slow half of a PgBouncer change: the new file checked, not live yet."""
    for name in names:
        draft.step(Action.STAGE_BOUNCER, name, f"upload pgbouncer.ini with {topo.database} -> "
                   f"{target.name} and check it with a throwaway PgBouncer (not live yet)")


def _commit_bouncers(draft: _Draft, topo: Topology, target: DbNode, names: list[str]) -> None:
    """The live half of a PgBouncer change: the staged file swapped in and confirmed."""
    for name in names:
        draft.step(Action.COMMIT_BOUNCER, name, "swap the new pgbouncer.ini in, reload "
                   f"(SIGHUP), confirm with SHOW DATABASES that {topo.database} -> "
                   f"{target.name}")


def _after_promote(draft: _Draft, target: DbNode) -> None:
    """The new primary's housekeeping once it takes writes."""
    draft.step(Action.AFTER_PROMOTE, target.name, f"replication slots on {target.name} for the "
               "other db hosts; forget the primary_conninfo it streamed with; checkpoint")


def _verify_commits(draft: _Draft, topo: Topology) -> None:
    """A write through every reachable PgBouncer (rejoin, degrade, restore)."""
    for bouncer in topo.bouncers:
        if bouncer.reachable:
            draft.step(Action.VERIFY_WRITE, bouncer.name, f"a write through {bouncer.name} "
                       "commits")


def plan_failover(topo: Topology, opts: Options, kind: str = "failover") -> Plan:
    """Promote a replica while the primary is down or unreachable: fence what could still
    act as a primary, promote, repoint PgBouncer, verify a write."""
    draft = _Draft(kind, opts.target or "", opts.force)
    target = _pick_target(topo, opts.target, draft)
    if target is None:
        return draft.done(topo)
    draft.target = target.name
    _check_failover_target(topo, target, opts, draft)
    if draft.refusals:
        return draft.done(topo)
    keep = [n for n in topo.nodes if _stays_replica(topo, n, target)]
    repoint = _to_repoint(draft, topo, target)
    # The slow half of the PgBouncer change (a throwaway PgBouncer checks the file for 2 s)
    # goes first: nothing is live until commit, and the old primary is down anyway.
    _stage_bouncers(draft, topo, target, repoint)
    for node in topo.nodes:
        if node is not target and node not in keep:
            _fence_or_note(draft, node)
    if _needs_degrade(topo, target, keep):
        draft.step(Action.DEGRADE, target.name, f"synchronous replication off on {target.name} "
                   "(postgresql.conf pushed and reloaded, DEGRADED marker): no replica is left "
                   "to wait for")
    if not target.is_primary:
        draft.step(Action.PROMOTE, target.name, f"pg_promote() on {target.name}: it leaves "
                   "recovery and takes writes on a new timeline")
    _commit_bouncers(draft, topo, target, repoint)
    _after_promote(draft, target)
    for node in keep:
        if not node.streams_from(target):
            draft.step(Action.REPOINT_REPLICA, node.name, f"primary_conninfo of {node.name} -> "
                       f"{target.name}, reload: it follows the new timeline")
    _resume_and_verify(draft, topo, target)
    _next_steps(draft, topo, target, keep)
    return draft.done(topo)


def _check_failover_target(topo: Topology, target: DbNode, opts: Options,
                           draft: _Draft) -> None:
    """Refuse a target that cannot take over; one that is already the primary is finished."""
    if not target.reachable:
        draft.hard(f"{target.name} is unreachable: {target.error}")
    elif target.fenced is not None and not target.is_primary:
        draft.hard(f"{target.name} is fenced ({target.fenced.describe()}): it was an old "
                   "primary and may lack what the current one wrote; "
                   f"`fab db.rejoin {target.name}` first")
    elif not target.running:
        draft.hard(f"{target.name} is {target.state}, not a running replica: start it or "
                   "choose another --to")
    elif target.is_replica:
        _failover_checks(topo, target, opts, draft)
    else:
        draft.notes.append(f"{target.name} is already the primary (timeline "
                           f"{target.timeline}): finishing the steps that are still needed")
        for other in topo.primaries:
            if other is not target:
                draft.soft(f"{other.name} also answers as a primary (timeline "
                           f"{other.timeline}): split brain; it will be fenced")


def _fence_or_note(draft: _Draft, node: DbNode) -> None:
    """A node that leaves the cluster: fenced if it could still act, else a note on it."""
    if not node.reachable:
        draft.notes.append(f"{node.name} is unreachable and cannot be fenced now: if it "
                           f"comes back as a primary, `fab db.rejoin {node.name}` "
                           "(PgBouncer no longer points at it)")
    elif node.fenced is not None and not node.running and (node.standby_signal
                                                            or not node.has_data):
        draft.notes.append(f"{node.name} is already fenced and stopped")
    elif node.could_be_primary or node.running or node.container == "running":
        draft.step(Action.FENCE, node.name, f"stop {node.name}'s PostgreSQL if it runs, "
                   "write the FENCED marker and standby.signal: restarted by anyone, it "
                   "comes up read-only")
    else:
        draft.notes.append(f"{node.name} is a stopped replica: `fab db.rejoin {node.name}` "
                           "later")


def _resume_and_verify(draft: _Draft, topo: Topology, target: DbNode) -> None:
    """After a failover: RESUME what an interrupted switchover left paused, then a write
    through every reachable PgBouncer."""
    for bouncer in topo.bouncers:
        if bouncer.reachable and any(x.paused for x in bouncer.databases):
            draft.step(Action.RESUME, bouncer.name, "RESUME: it was left paused (an "
                       "interrupted switchover)")
    for bouncer in topo.bouncers:
        if bouncer.reachable:
            draft.step(Action.VERIFY_WRITE, bouncer.name, f"a write through {bouncer.name} as "
                       f"{topo.database} lands on {target.name}")
def _failover_checks(topo: Topology, target: DbNode, opts: Options, draft: _Draft) -> None:
    for other in topo.primaries:
        draft.soft(f"{other.name} still reports itself primary (timeline {other.timeline}): "
                   "for a planned move use `fab db.switchover`")
    lag = topo.lag(target)
    if not lag.known:
        draft.soft(f"how much WAL {target.name} lacks is unknown ({lag.basis}): acknowledged "
                   "writes may be lost")
    elif (lag.bytes or 0) > opts.max_lag:
        draft.soft(f"{target.name} lacks {size(lag.bytes)} of WAL (against {lag.basis}), more "
                   f"than maximum_lag_on_failover ({size(opts.max_lag)})")
    elif lag.bytes:
        acked = not topo.synchronous or any(n.degraded is not None for n in topo.nodes)
        draft.notes.append(
            f"{target.name} lacks {size(lag.bytes)} of WAL (against {lag.basis}), within "
            f"maximum_lag_on_failover ({size(opts.max_lag)}): " + (
                "replication was asynchronous, so commits in it may have been acknowledged "
                "and are lost" if acked else "replication was synchronous, so no commit in it "
                "was acknowledged to a client"))
    draft.lag_bytes = lag.bytes
    if (target.known_timeline or 0) < topo.max_timeline:
        draft.soft(f"{target.name} is on timeline {target.known_timeline}, behind timeline "
                   f"{topo.max_timeline} of another host")


def _next_steps(draft: _Draft, topo: Topology, target: DbNode, keep: list[DbNode]) -> None:
    olds = [s.host for s in draft.steps if s.action in (Action.FENCE, Action.STOP)]
    olds += [n.name for n in topo.nodes if n.fenced is not None and n is not target]
    for name in dict.fromkeys(olds):
        draft.notes.append(f"{name} stays stopped and fenced: `fab db.rejoin {name}` makes it "
                           f"a replica of {target.name}")
    if topo.synchronous and not keep:
        draft.notes.append(f"synchronous replication stays off on {target.name} until a "
                           "replica streams again (`fab db.rejoin` turns it back on)")


def plan_switchover(topo: Topology, opts: Options) -> Plan:
    """A planned move off a healthy primary, losing nothing: PAUSE PgBouncer, stop the old
    primary cleanly, wait until the target replayed its last WAL, promote, repoint, RESUME."""
    primary = topo.primary
    draft = _Draft("switchover", opts.target or "", False)
    target = _pick_target(topo, opts.target, draft)
    if target is None:
        return draft.done(topo)
    draft.target = target.name
    if primary is None or primary is target:
        return _switchover_without_primary(topo, opts, primary, target, draft)
    _switchover_checks(topo, primary, target, opts, draft)
    if draft.refusals:
        return draft.done(topo)
    keep = [n for n in topo.nodes if _stays_replica(topo, n, target)]
    bouncers = [b.name for b in topo.bouncers]
    _stage_bouncers(draft, topo, target, bouncers)
    if _needs_degrade(topo, target, keep):
        draft.step(Action.DEGRADE, target.name, "synchronous replication off in "
                   f"{target.name}'s postgresql.conf (in effect once promoted: {primary.name} "
                   "will be stopped, no replica to wait for)")
    _hand_over(draft, topo, opts, primary, target)
    for node in keep:
        draft.step(Action.REPOINT_REPLICA, node.name, f"primary_conninfo of {node.name} -> "
                   f"{target.name}, reload")
    _commit_bouncers(draft, topo, target, bouncers)
    for bouncer in topo.bouncers:
        draft.step(Action.RESUME, bouncer.name, f"RESUME {topo.database}: the waiting queries "
                   f"run on {target.name}")
    _after_promote(draft, target)
    for bouncer in topo.bouncers:
        draft.step(Action.VERIFY_WRITE, bouncer.name, f"a write through {bouncer.name} lands "
                   f"on {target.name}")
    _next_steps(draft, topo, target, keep)
    return draft.done(topo)


def _interrupted_switchover(topo: Topology, target: DbNode) -> list[str]:
    """What a switchover to the target cut short left behind: fences naming it, PAUSEs."""
    found = [f"{n.name} fenced for it" for n in topo.nodes if n.fenced is not None
             and n.fenced.new_primary == target.name and n.fenced.action == "switchover"]
    # Only a switchover pauses PgBouncer: paused with no primary running is one cut short
    # between its stop and its fence.
    found += [f"{b.name} paused" for b in topo.bouncers
              if any(x.paused for x in b.databases)]
    return found


def _switchover_without_primary(topo: Topology, opts: Options, primary: DbNode | None,
                                target: DbNode, draft: _Draft) -> Plan:
    """No primary to move off, or the target is it: an interrupted switchover is finished
    as a failover would, anything else is refused."""
    resumed = _interrupted_switchover(topo, target)
    if resumed or (primary is target and target.is_primary):
        plan = plan_failover(topo, replace(opts, force=False), kind="switchover")
        return replace(plan, notes=(f"continuing an interrupted switchover to "
                                    f"{target.name} "
                                    f"({', '.join(resumed) or 'it is promoted'})",
                                    *plan.notes))
    draft.hard("no running primary: a switchover moves a healthy primary (found: "
               + "; ".join(describe(topo)) + "); `fab db.failover` promotes a replica "
               "when the primary is down")
    return draft.done(topo)


def _hand_over(draft: _Draft, topo: Topology, opts: Options, primary: DbNode,
               target: DbNode) -> None:
    """The switchover's core: PAUSE, stop and fence the old primary, replay, promote."""
    for bouncer in topo.bouncers:
        draft.step(Action.PAUSE, bouncer.name, f"PAUSE {topo.database}: new queries wait, "
                   f"running ones finish (at most {opts.pause_timeout:g} s; RESUME if "
                   "anything fails)")
    draft.step(Action.STOP, primary.name, f"stop {primary.name} with a fast shutdown (a "
               "shutdown checkpoint; every WAL record sent to the replicas); read its final "
               "checkpoint LSN")
    draft.step(Action.FENCE, primary.name, f"FENCED marker and standby.signal on "
               f"{primary.name}: restarted by anyone, it comes up read-only")
    draft.step(Action.WAIT_REPLAY, target.name, f"wait until {target.name} has replayed "
               f"{primary.name}'s final checkpoint (at most {opts.replay_timeout:g} s; before "
               f"this, anything that fails puts {primary.name} back as it was)")
    draft.step(Action.PROMOTE, target.name, f"pg_promote() on {target.name}")


def _switchover_checks(topo: Topology, primary: DbNode, target: DbNode, opts: Options,
                       draft: _Draft) -> None:
    if len(topo.primaries) > 1:
        draft.hard("more than one host answers as a primary: " + ", ".join(
            n.name for n in topo.primaries) + " (split brain: `fab db.failover --to "
            f"{primary.name} --force` fences the others)")
    if not target.reachable:
        draft.hard(f"{target.name} is unreachable: {target.error}")
        return
    if target.fenced is not None:
        draft.hard(f"{target.name} is fenced ({target.fenced.describe()}): "
                   f"`fab db.rejoin {target.name}` first")
    if not target.is_replica:
        draft.hard(f"{target.name} is {target.state}, not a running replica")
        return
    if not target.streams_from(primary):
        draft.hard(f"{target.name} is not streaming from {primary.name}"
                   + (f" (WAL receiver: {target.receiver.status} from "
                      f"{target.receiver.sender_host})" if target.receiver
                      else " (no WAL receiver)"))
    if target.replay_paused and target.replay_paused != "not paused":
        draft.hard(f"replay is {target.replay_paused} on {target.name}: select "
                   "pg_wal_replay_resume() there")
    lag = topo.lag(target)
    if not lag.known or (lag.bytes or 0) > opts.max_lag:
        draft.hard(f"{target.name} lags {size(lag.bytes)} behind {primary.name} (at most "
                   f"{size(opts.max_lag)} for a switchover): wait for it to catch up")
    if target.timeline != primary.timeline:
        draft.hard(f"{target.name} is on timeline {target.timeline}, {primary.name} on "
                   f"{primary.timeline}")
    for bouncer in topo.bouncers:
        if not bouncer.reachable:
            draft.hard(f"{bouncer.name} is unreachable: every PgBouncer must be paused and "
                       "repointed")
        elif bouncer.entry(topo.database) is None:
            draft.hard(f"{bouncer.name} has no [databases] entry for {topo.database}")


def plan_rejoin(topo: Topology, name: str, opts: Options) -> Plan:
    """Make a former primary (or any broken node) a streaming replica of the primary again:
    pg_rewind where it can, a fresh pg_basebackup where it cannot, then lift its fence."""
    draft = _Draft("rejoin", name, opts.force)
    found = _rejoin_node_and_primary(topo, name, draft)
    if found is None:
        return draft.done(topo)
    node, primary = found
    streaming = node.streams_from(primary) and node.known_timeline == primary.timeline
    if not streaming:
        _rebuild_replica(draft, node, primary, opts)
    else:
        draft.notes.append(f"{name} already streams from {primary.name}")
    if node.fenced is not None:
        draft.step(Action.UNFENCE, name, f"lift {name}'s fence (FENCED marker removed)")
    if topo.synchronous and (primary.degraded is not None or primary.sync_names == ""):
        draft.step(Action.RESTORE_SYNC, primary.name, "synchronous replication back on on "
                   f"{primary.name} (DEGRADED marker removed, postgresql.conf pushed and "
                   "reloaded)")
        draft.step(Action.WAIT_SYNC, primary.name, f"wait until {name} is a synchronous "
                   f"standby of {primary.name}")
    if draft.steps:
        _verify_commits(draft, topo)
    else:
        draft.notes.append("nothing to do")
    return draft.done(topo)


def _rejoin_node_and_primary(topo: Topology, name: str,
                             draft: _Draft) -> tuple[DbNode, DbNode] | None:
    """The node to rejoin and the primary it will follow; None once the rejoin is refused."""
    primary = topo.primary
    try:
        node = topo.node(name)
    except KeyError:
        draft.hard(f"{name}: not a db host of the inventory")
        return None
    if primary is None:
        draft.hard("no running primary to follow: promote one first (`fab db.failover`)")
        return None
    if primary is node:
        draft.hard(f"{name} is the primary; `fab db.switchover` moves it")
        return None
    if not node.reachable:
        draft.hard(f"{name} is unreachable: {node.error}")
        return None
    if node.is_primary:
        draft.soft(f"{name} runs as a primary (timeline {node.timeline}) beside {primary.name} "
                   f"(timeline {primary.timeline}): rejoining discards whatever it wrote on "
                   "its own")
        if draft.refusals:
            return None
    return node, primary


def _rebuild_replica(draft: _Draft, node: DbNode, primary: DbNode, opts: Options) -> None:
    """A node that does not stream from the primary: stopped, rewound (or cloned where it
    has no data or --rebuild asks), configured as a standby, started, waited for."""
    name = node.name
    if node.container != "missing":
        draft.step(Action.STOP, name, f"stop {name} (fast shutdown; also ends a restart "
                   "loop)")
    draft.step(Action.ENSURE_SLOT, primary.name, f"replication slot {_slot(name)} on "
               f"{primary.name}")
    if opts.rebuild or not node.has_data:
        draft.step(Action.CLONE, name, f"fresh copy of {primary.name} with pg_basebackup "
                   "(the old data directory is kept aside)")
    else:
        draft.step(Action.REWIND, name, f"pg_rewind {name} onto {primary.name}'s timeline "
                   "(a fresh pg_basebackup if pg_rewind cannot)")
    draft.step(Action.STANDBY_CONFIG, name, "standby.signal, primary_conninfo -> "
               f"{primary.name} (application_name={name}), slot {_slot(name)}")
    draft.step(Action.START, name, f"start {name}'s PostgreSQL")
    draft.step(Action.WAIT_STREAMING, name, f"wait until {name} streams from "
               f"{primary.name}")


def _slot(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())


def plan_degrade(topo: Topology, opts: Options, restore: bool = False) -> Plan:
    """Turn synchronous replication off on purpose (its only replica is gone and commits
    wait), or back on (`restore`) once a replica streams again."""
    draft = _Draft("restore" if restore else "degrade", "", opts.force)
    primary = topo.primary
    if primary is None:
        draft.hard("no running primary")
        return draft.done(topo)
    draft.target = primary.name
    if not topo.synchronous:
        draft.hard("the inventory has synchronous: false for db: there is nothing to degrade "
                   "or restore")
    elif restore:
        _restore_sync(draft, topo, primary)
    else:
        _degrade_sync(draft, topo, primary)
    return draft.done(topo)


def _degrade_sync(draft: _Draft, topo: Topology, primary: DbNode) -> None:
    """Synchronous replication off, unless the primary is degraded already."""
    if primary.degraded is not None and primary.sync_names == "":
        draft.notes.append(f"{primary.name} is already degraded to async "
                           f"{primary.degraded.describe()}")
        return
    draft.step(Action.DEGRADE, primary.name, f"DEGRADED marker on {primary.name}; its "
               "postgresql.conf with synchronous_standby_names = '' pushed and reloaded: "
               "commits stop waiting for a replica (and may be lost with the primary "
               "until one streams again)")
    _verify_commits(draft, topo)


def _restore_sync(draft: _Draft, topo: Topology, primary: DbNode) -> None:
    """Synchronous replication back on; with no replica streaming only under --force."""
    streaming = [n for n in topo.replicas if n.streams_from(primary)]
    if not streaming:
        draft.soft(f"no replica streams from {primary.name}: with synchronous replication on, "
                   "every commit would wait")
        if draft.refusals:
            return
    if primary.degraded is None and primary.sync_names:
        draft.notes.append(f"synchronous replication is already on on {primary.name} "
                           f"({primary.sync_names})")
        return
    draft.step(Action.RESTORE_SYNC, primary.name, "DEGRADED marker removed; postgresql.conf "
               "with synchronous replication pushed to the db hosts and reloaded")
    if streaming:
        draft.step(Action.WAIT_SYNC, primary.name, f"wait until {streaming[0].name} is a "
                   f"synchronous standby of {primary.name}")
    _verify_commits(draft, topo)
