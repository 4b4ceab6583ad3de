"""The database cluster as discovered: nodes, PgBouncers, and what follows from them. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .values import lsn_text

#: A stopped node's pg_controldata state when it last ran as a primary (crashed or not).
PRIMARY_STATES = ("in production", "shut down", "in crash recovery", "shutting down")


#: PostgreSQL's default bytes per WAL segment (initdb --wal-segsize).
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024

@dataclass(frozen=True)
class Marker:
    """A FENCED or DEGRADED file on a db host: who, when, why (JSON on one line)."""

    at: str = ""
    who: str = ""
    action: str = ""
    new_primary: str = ""
    reason: str = ""

    def describe(self) -> str:
        """'by alice at 2026-11-27T03:00:00Z (failover, new primary db-2)': the local user
        only (the audit log has the full identity)."""
        who = self.who.split(" (")[0] or "?"
        extra = ", ".join(x for x in (self.action, self.new_primary and
                                      f"new primary {self.new_primary}", self.reason) if x)
        return f"by {who} at {self.at or '?'}" + (f" ({extra})" if extra else "")

    def as_record(self) -> dict[str, str]:
        """The JSON form, as written on the host."""
        return {"at": self.at, "who": self.who, "action": self.action,
                "new_primary": self.new_primary, "reason": self.reason}


@dataclass(frozen=True)
class Receiver:
    """A replica's WAL receiver (pg_stat_wal_receiver): whom it streams from."""

    status: str
    sender_host: str
    sender_port: int | None
    latest_end_lsn: int | None  # the primary's WAL end as the primary last reported it
    last_msg_age: float | None  # seconds since the primary was last heard from
    slot: str


@dataclass(frozen=True)
class Standby:
    """A replica as its primary sees it (pg_stat_replication)."""

    name: str  # application_name: the replica's host name
    address: str
    state: str
    sync_state: str
    sent_lsn: int | None
    flush_lsn: int | None
    replay_lsn: int | None
    replay_lag: float | None


@dataclass(frozen=True)
class Slot:
    """A replication slot (pg_replication_slots)."""

    name: str
    kind: str
    active: bool
    restart_lsn: int | None
    wal_status: str


@dataclass(frozen=True)
class Control:
    """pg_controldata of a stopped node: how it stopped, where its last checkpoint is."""

    state: str
    checkpoint_lsn: int | None
    timeline: int | None
    min_recovery_lsn: int | None = None
    segment_size: int = DEFAULT_SEGMENT_SIZE  # bytes per WAL segment (initdb --wal-segsize)


@dataclass(frozen=True)
class DbNode:
    """One db host as found: reachability, container, files, and PostgreSQL's own answers."""

    name: str
    address: str
    port: int
    reachable: bool = True
    error: str | None = None
    container: str = "missing"  # docker's State.Status, or "missing"
    has_data: bool = False
    standby_signal: bool = False
    fenced: Marker | None = None
    degraded: Marker | None = None
    in_recovery: bool | None = None  # None: PostgreSQL did not answer
    sql_error: str | None = None
    timeline: int | None = None
    current_lsn: int | None = None  # a primary's pg_current_wal_lsn()
    receive_lsn: int | None = None
    replay_lsn: int | None = None
    replay_age: float | None = None
    replay_paused: str = ""
    sync_names: str | None = None  # synchronous_standby_names in effect
    receiver: Receiver | None = None
    standbys: tuple[Standby, ...] = ()
    slots: tuple[Slot, ...] = ()
    control: Control | None = None
    wal_end: int | None = None  # end of a stopped node's WAL (measured by a failover)
    wal_end_error: str | None = None  # why that end could not be read, in pg_waldump's words

    @property
    def running(self) -> bool:
        """True if PostgreSQL answered."""
        return self.in_recovery is not None

    @property
    def is_primary(self) -> bool:
        """Running and not in recovery: it accepts writes."""
        return self.in_recovery is False

    @property
    def is_replica(self) -> bool:
        """Running in recovery."""
        return self.in_recovery is True

    @property
    def was_primary(self) -> bool:
        """Stopped, and last ran as a primary (pg_controldata's state)."""
        return (not self.running and self.control is not None
                and self.control.state in PRIMARY_STATES)

    @property
    def could_be_primary(self) -> bool:
        """Would come up accepting writes if started now (no standby.signal)."""
        if self.running:
            return self.is_primary
        return self.has_data and not self.standby_signal

    @property
    def position(self) -> int | None:
        """The WAL this node has: written (primary), received or replayed (replica)."""
        if self.is_primary:
            return self.current_lsn
        if self.is_replica:
            have = [x for x in (self.receive_lsn, self.replay_lsn) if x is not None]
            return max(have) if have else None
        return self.wal_end if self.wal_end is not None else (
            self.control.checkpoint_lsn if self.control else None)

    @property
    def known_timeline(self) -> int | None:
        """The timeline it is on (running), or of its last checkpoint (stopped)."""
        if self.running:
            return self.timeline
        return self.control.timeline if self.control else None

    def streams_from(self, primary: DbNode) -> bool:
        """True if this replica's WAL receiver is streaming from `primary`."""
        r = self.receiver
        return (self.is_replica and r is not None and r.status == "streaming"
                and r.sender_host == primary.address)

    @property
    def state(self) -> str:
        """One word: primary, replica, stopped, down (container up, no answer), unreachable,
        empty (no data)."""
        if not self.reachable:
            return "unreachable"
        if self.running:
            return "primary" if self.is_primary else "replica"
        if not self.has_data:
            return "empty"
        return "down" if self.container == "running" else "stopped"


@dataclass(frozen=True)
class BouncerDb:
    """One [databases] entry as PgBouncer runs it (SHOW DATABASES)."""

    name: str
    host: str
    port: int | None
    database: str
    paused: bool
    disabled: bool


@dataclass(frozen=True)
class Bouncer:
    """One PgBouncer: where its databases point now, and whether they are paused."""

    name: str
    address: str
    port: int
    reachable: bool = True
    error: str | None = None
    databases: tuple[BouncerDb, ...] = ()

    def entry(self, database: str) -> BouncerDb | None:
        """The [databases] entry called `database`."""
        return next((d for d in self.databases if d.name == database), None)


@dataclass(frozen=True)
class Lag:
    """How far a replica is behind: bytes of WAL it lacks and seconds, and against what."""

    bytes: int | None
    seconds: float | None
    basis: str  # what it was measured against, for messages

    @property
    def known(self) -> bool:
        """True if the byte lag could be measured."""
        return self.bytes is not None


@dataclass(frozen=True)
class Topology:
    """Every db host and PgBouncer as found, and the inventory's replication mode."""

    nodes: tuple[DbNode, ...]
    bouncers: tuple[Bouncer, ...] = ()
    synchronous: bool = False
    database: str = "sentry"
    extra: dict[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> DbNode:
        """The db node called `name` (KeyError if none)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def with_node(self, node: DbNode) -> Topology:
        """This topology with one node replaced (same name)."""
        return replace(self, nodes=tuple(node if n.name == node.name else n
                                         for n in self.nodes))

    @property
    def primaries(self) -> list[DbNode]:
        """Every node answering as a primary (more than one: split brain)."""
        return [n for n in self.nodes if n.is_primary]

    @property
    def primary(self) -> DbNode | None:
        """The primary: answering as one and not fenced; the newest timeline if several."""
        live = [n for n in self.primaries if n.fenced is None] or self.primaries
        return max(live, key=lambda n: n.timeline or 0, default=None)

    @property
    def replicas(self) -> list[DbNode]:
        """Every node answering in recovery."""
        return [n for n in self.nodes if n.is_replica]

    @property
    def max_timeline(self) -> int:
        """The newest timeline any node is on (or last checkpointed on)."""
        return max((n.known_timeline or 0 for n in self.nodes), default=0)

    @property
    def degraded(self) -> bool:
        """Synchronous in the inventory, turned off on purpose on the primary."""
        p = self.primary
        return self.synchronous and p is not None and p.degraded is not None

    def node_at(self, host: str, port: int | None) -> DbNode | None:
        """The node an address (and port) belongs to."""
        return next((n for n in self.nodes if n.address == host
                     and (port is None or n.port == port)), None)

    def points_to(self, bouncer: Bouncer) -> str | None:
        """The db node a PgBouncer sends Sentry's database to (its host, if not a node)."""
        e = bouncer.entry(self.database)
        if e is None:
            return None
        n = self.node_at(e.host, e.port)
        return n.name if n else e.host

    @staticmethod
    def _only_switch_padding(p: DbNode, node: DbNode, have: int) -> bool:
        """True when all `node` lacks is the rest of a segment a WAL switch closed: an idle
        primary after archive_timeout (or pg_switch_wal) reports the start of the next
        segment, while its replica, sent everything, stays at the end of the switch record
        (found on the lab: "lags 16.0 MiB" for ever, every switchover refused). Told apart
        from real lag by the primary's walsender: it has sent nothing past what the replica
        has, and it is streaming."""
        size = p.control.segment_size if p.control else DEFAULT_SEGMENT_SIZE
        current = p.current_lsn or 0
        if current % size or not current - size <= have < current:
            return False
        s = next((s for s in p.standbys if s.name == node.name), None)
        return s is not None and s.state == "streaming" and s.sent_lsn is not None \
            and s.sent_lsn <= have

    def lag(self, node: DbNode) -> Lag:
        """How much WAL `node` lacks: against the running primary, else against the end of
        the WAL of a stopped primary on its timeline (measured), else unknown."""
        p = self.primary
        have = node.position
        if p is not None and p is not node:
            seconds = next((s.replay_lag for s in p.standbys if s.name == node.name), None)
            if seconds is None and node.replay_age is not None:
                seconds = node.replay_age
            if p.current_lsn is None or have is None:
                return Lag(None, seconds, f"{p.name} (primary)")
            if self._only_switch_padding(p, node, have):
                return Lag(0, seconds, f"{p.name}'s current WAL position (past a segment "
                                       "switch, nothing left to send)")
            return Lag(max(0, p.current_lsn - have), seconds, f"{p.name}'s current WAL position")
        ends = [n for n in self.nodes if n is not node and n.wal_end is not None
                and n.known_timeline == node.known_timeline]
        if ends and have is not None:
            ref = max(ends, key=lambda n: n.wal_end or 0)
            return Lag(max(0, (ref.wal_end or 0) - have), None,
                       f"the end of {ref.name}'s WAL ({lsn_text(ref.wal_end)})")
        why = [f"the end of {n.name}'s WAL could not be read: {n.wal_end_error}"
               for n in self.nodes if n is not node and n.wal_end_error]
        why += [f"{n.name} does not answer and its container is {n.container} "
                f"({n.sql_error or 'no answer'})" for n in self.nodes
                if n is not node and n.reachable and n.has_data and not n.running
                and n.container == "running"]
        return Lag(None, None, "; ".join(["no primary to compare with", *why]))

    def problems(self) -> list[str]:
        """What is wrong, in words: split brain, stale PgBouncers, paused pools, ..."""
        out: list[str] = []
        prim = self.primaries
        if len(prim) > 1:
            out.append("more than one node accepts writes: " + ", ".join(
                f"{n.name} (timeline {n.timeline})" for n in prim) + " (split brain)")
        p = self.primary
        if p is None:
            out.append("no primary: no db host accepts writes")
        for n in self.nodes:
            if n.state == "unreachable":
                out.append(f"{n.name}: unreachable: {n.error}")
            elif n.fenced is not None and n.is_primary:
                out.append(f"{n.name}: fenced but running as a primary")
            elif n.is_replica and p is not None and not n.streams_from(p):
                out.append(f"{n.name}: replica not streaming from {p.name}")
            elif n.state == "down":
                out.append(f"{n.name}: container running but PostgreSQL does not answer"
                           + (f" ({n.sql_error})" if n.sql_error else ""))
        for b in self.bouncers:
            if not b.reachable:
                out.append(f"{b.name}: unreachable: {b.error}")
                continue
            e = b.entry(self.database)
            where = self.points_to(b)
            if e is None:
                out.append(f"{b.name}: no [databases] entry for {self.database}")
            elif p is not None and where != p.name:
                out.append(f"{b.name}: points at {where}, not at the primary {p.name}")
            if any(d.paused for d in b.databases):
                out.append(f"{b.name}: paused (clients wait): " + ", ".join(
                    d.name for d in b.databases if d.paused))
        if self.degraded and p is not None:
            out.append(f"{p.name}: synchronous replication degraded to async "
                       f"{p.degraded.describe() if p.degraded else ''}".rstrip())
        elif (self.synchronous and p is not None and p.sync_names is not None
              and p.sync_names and not any(s.sync_state in ("sync", "quorum")
                                           for s in p.standbys)):
            out.append(f"{p.name}: no synchronous replica connected: commits wait "
                       "(fab db.degrade turns synchronous replication off on purpose)")
        return out
