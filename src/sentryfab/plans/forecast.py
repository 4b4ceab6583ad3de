"""What runs out as events keep coming: each db host's disk, and each tier's events/s. Pure.

Disk. Every stored event writes rows that Sentry's daily `sentry cleanup --days N` deletes
again once they are N days old (runner/commands/cleanup.py and the legacy tagstore's
cleanup hooks, Sentry 9.1.2):

- sentry_message: the event itself (models/event.py);
- nodestore_node: its payload (Sentry 9's default nodestore, DjangoNodeStorage), by far the
  largest;
- sentry_eventtag: one row per tag of the event (the legacy tagstore, 9's default);
- sentry_eventmapping: event id -> issue.

Bytes per event = the size of those four tables (heap, TOAST and indexes) over the events
stored (rows of sentry_message). What grows with issues, users, tag values or projects
rather than with events (sentry_groupedmessage, sentry_eventuser, sentry_filtervalue,
sentry_messagefiltervalue, ...) is the fixed part: the rest of the database, at today's size.

At steady state the database holds retention_days + 1 days of events (cleanup runs once a
day: just before it does, the oldest day is still there). PostgreSQL reuses the space
cleanup frees (autovacuum) and does not give it back to the filesystem, so the data
directory grows until then and stays there:

    steady = max(database now, fixed + rate x 86400 x (retention_days + 1) x bytes/event)
    need   = steady + WAL kept
    room   = free on the data directory's filesystem + database now + pg_wal now
    fills on day (room - database now - WAL kept) / (rate x 86400 x bytes/event), if need > room

WAL kept: PostgreSQL keeps the WAL since the last checkpoint (about max_wal_size), at least
wal_keep_size, and what a replication slot still needs up to max_slot_wal_keep_size. All
three are counted back from the same current position, so the largest wins (slots do not
add up). It is planned at that largest from day 0: a replica may go down on any day. Every
db host is planned as the primary: after a failover any of them is.

Throughput. A tier carries its processes (per host, summed over its hosts) times what one
process sustains: the last `fab capacity.probe` figures kept for this cluster, else
`events_per_second_per_process` declared in the inventory. For the workers that is the rate
above which the queue grows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..configs.context import retention, settings
from ..errors import InventoryError
from ..inventory import Host, Inventory
from .capacity import (
    GB,
    PAYLOAD_TTL_MINUTES,
    CapacityReport,
    HostFacts,
    Line,
    backlog_bytes,
    parse_size,
    plan,
    planned_rate,
)

DAY = 86400
TB = 1024 ** 4
#: The tables whose rows come and go with events (see the module's docstring).
EVENT_TABLES = ("sentry_message", "nodestore_node", "sentry_eventtag", "sentry_eventmapping")
#: `sentry: retention_days` when the inventory does not say (self-hosted Sentry's default).
#: The data directory's filesystem when neither the host nor the inventory says (--offline).
DEFAULT_DATA_DISK = TB
#: PostgreSQL's own default: the template does not set max_wal_size.
PG_MAX_WAL_SIZE = GB
#: Below this many stored events, the tables' empty pages and index roots outweigh the
#: events: bytes per event is then the declared figure.
MIN_EVENTS = 1000
#: Below this many events stored during the window, WAL of anything else (checkpoints,
#: autovacuum, Sentry's other writes) outweighs them: WAL per event is the declared figure.
MIN_WINDOW_EVENTS = 100
#: What one process sustains, in the inventory (roles.web / roles.worker or a host's vars).
PER_PROCESS = "events_per_second_per_process"
#: The setting a per-process figure depends on, per tier (threads of a web process, Celery
#: concurrency of a worker): a figure measured with another value is flagged.
TIER_SETTING = {"web": "threads", "worker": "concurrency"}


@dataclass(frozen=True)
class DbFacts:
    """A db host's disk and database, read over SSH, or declared for --offline."""

    disk_free: int          # bytes available on the data directory's filesystem
    db_size: int = 0        # Sentry's database now
    event_bytes: int = 0    # the EVENT_TABLES now: heap, TOAST and indexes
    events: int = 0         # events stored now
    wal_size: int = 0       # pg_wal now
    window_seconds: float = 0.0  # a short sample: how long it lasted,
    window_events: int = 0       # the events stored during it,
    window_wal: int = 0          # and the WAL written during it
    source: str = "declared"  # "ssh" when read from the host


@dataclass(frozen=True)
class TierFigure:
    """Events/s one process of a tier sustains, as a probe measured it."""

    per_process: float
    measured_at: str = ""   # UTC, ISO 8601
    how: str = ""           # what measured it: "capacity.probe", "bench/real_sentry.py"
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"concurrency": 1}


@dataclass(frozen=True)
class DiskForecast:
    """One db host's data directory from now to steady state."""

    host: str
    rate: float              # events/s
    days: int                # retention_days + 1: what the database holds at steady state
    bytes_per_event: float
    bytes_source: str
    wal_per_event: float
    wal_source: str
    db_now: int
    fixed: int               # the part of the database that does not grow with events
    wal_kept: float
    wal_note: str
    room: float              # what the database and its WAL may use on that filesystem
    slot_cap: float          # max_slot_wal_keep_size (0 without a replica, < 0 unbounded)

    @property
    def growth_per_day(self) -> float:
        """Bytes the event tables grow by each day until cleanup starts deleting."""
        return self.rate * DAY * self.bytes_per_event

    @property
    def steady(self) -> float:
        """The database at steady state (it never shrinks below its size now)."""
        return max(float(self.db_now), self.fixed + self.growth_per_day * self.days)

    @property
    def need(self) -> float:
        """Database and WAL at steady state."""
        return self.steady + self.wal_kept

    @property
    def days_to_steady(self) -> float:
        """How long the database keeps growing."""
        return (self.steady - self.db_now) / self.growth_per_day if self.growth_per_day else 0.0

    @property
    def runs_out_day(self) -> float | None:
        """The day (from now, fractional) the filesystem fills; None if steady state fits."""
        if self.need <= self.room:
            return None
        # Full already (day 0) when today's database and the WAL kept leave no room to grow.
        spare = self.room - self.db_now - self.wal_kept
        return spare / self.growth_per_day if spare > 0 and self.growth_per_day else 0.0

    @property
    def wal_per_second(self) -> float:
        """Bytes of WAL written per second at the planned rate."""
        return self.rate * self.wal_per_event

    @property
    def slot_covers_seconds(self) -> float | None:
        """How long a replica may be away before its slot is given up and it must be cloned
        again (None: no replica, or nothing written, or no cap)."""
        if self.slot_cap <= 0 or not self.wal_per_second:
            return None
        return self.slot_cap / self.wal_per_second

    def line(self) -> Line:
        """The forecast as a capacity line: steady-state need against the room it has."""
        return Line("disk", f"{self.host} data disk", self.room, self.need, "bytes",
                    f"{self.days} days x {self.rate:,.0f} events/s x "
                    f"{_kib(self.bytes_per_event)}/event ({self.bytes_source}) + fixed "
                    f"{_gib(self.fixed)} + WAL kept {_gib(self.wal_kept)}")


@dataclass
class Outlook:
    """`fab capacity`: every capacity line, plus how the disks and the tiers fare over time."""

    report: CapacityReport
    disks: list[DiskForecast]
    tiers: list[Line]
    rate: float
    rate_source: str            # "declared", "measured" or "none"
    measured_rate: float | None
    retention_days: int
    missing: list[str] = field(default_factory=list)  # figures it had to do without
    repository: Any = None  # plans.repository.RepoForecast with a backup host

    @property
    def first_disk(self) -> DiskForecast | None:
        """The db host whose filesystem fills first, if any does."""
        full = [d for d in self.disks if d.runs_out_day is not None]
        return min(full, key=lambda d: d.runs_out_day or 0.0, default=None)

    @property
    def first_tier(self) -> Line | None:
        """The tier that carries the fewest events/s: the first to run out as the rate grows."""
        return min(self.tiers, key=lambda x: x.limit, default=None)

    @property
    def runs_out_within_retention(self) -> bool:
        """True when a disk fills before the database stops growing (retention_days + 1)."""
        first = self.first_disk
        return first is not None and (first.runs_out_day or 0.0) <= self.retention_days + 1

    @property
    def exit_code(self) -> int:
        """1 when anything is over its limit or a disk fills within the retention window."""
        return 1 if self.report.over or self.runs_out_within_retention else 0


def retention_days(inv: Inventory) -> int:
    """`sentry: retention_days`: what `sentry cleanup --days` keeps (default 90; the
    inventory's validation checked it)."""
    return int(retention(inv)["days"])


def declared_db_facts(inv: Inventory, host: Host) -> DbFacts:
    """An empty Sentry database on a filesystem of `data_disk` (db settings or host vars)."""
    s = settings(inv, "db", host)
    return DbFacts(disk_free=_size(inv, host, s, "data_disk", DEFAULT_DATA_DISK))


def measured_rate(facts: Iterable[DbFacts]) -> float | None:
    """Events stored per second during the sample window (the fastest host: a replica shows
    them once replayed); None when no host was sampled."""
    rates = [f.window_events / f.window_seconds for f in facts if f.window_seconds > 0]
    return max(rates, default=None)


def wal_kept(inv: Inventory, host: Host, wal_per_second: float) -> tuple[float, str]:
    """(bytes, how) of WAL the host may have to keep: the largest of max_wal_size,
    wal_keep_size and, with replicas, max_slot_wal_keep_size (-1, unbounded: planned as a
    day of a replica's absence)."""
    s = settings(inv, "db", host)
    parts = {"max_wal_size": float(PG_MAX_WAL_SIZE),
             "wal_keep_size": float(_size(inv, host, s, "wal_keep_size", 0))}
    cap = slot_cap(inv, host)
    if cap > 0:
        parts["max_slot_wal_keep_size"] = cap
    elif cap < 0:
        parts["a day of WAL (max_slot_wal_keep_size -1: unbounded)"] = wal_per_second * DAY
    name, kept = max(parts.items(), key=lambda kv: kv[1])
    return kept, name


def slot_cap(inv: Inventory, host: Host) -> float:
    """max_slot_wal_keep_size when the host has replicas to keep WAL for (one slot per other
    db host, as bootstrap_sql creates them), else 0; -1 means unbounded."""
    if len(inv.with_role("db")) < 2:
        return 0.0
    return float(_size(inv, host, settings(inv, "db", host), "max_slot_wal_keep_size", 0))


def disk_forecast(inv: Inventory, host: Host, facts: DbFacts, rate: float, retention: int
                  ) -> DiskForecast:
    """One db host's forecast: measured figures where there were enough events, else the
    declared bytes_per_event and wal_bytes_per_event."""
    s = settings(inv, "db", host)
    if facts.events >= MIN_EVENTS:
        per_event, per_source = facts.event_bytes / facts.events, f"{facts.events:,} events"
    else:
        per_event, per_source = float(_size(inv, host, s, "bytes_per_event", 0)), "declared"
    if facts.window_events >= MIN_WINDOW_EVENTS:
        wal, wal_source = facts.window_wal / facts.window_events, \
            f"{facts.window_events:,} events in {facts.window_seconds:.0f} s"
    else:
        wal, wal_source = float(_size(inv, host, s, "wal_bytes_per_event", 0)), "declared"
    kept, why = wal_kept(inv, host, rate * wal)
    return DiskForecast(host.name, rate, retention + 1, per_event, per_source, wal, wal_source,
                        facts.db_size, max(0, facts.db_size - facts.event_bytes), kept, why,
                        float(facts.disk_free + facts.db_size + facts.wal_size),
                        slot_cap(inv, host))


def tier_capacity(inv: Inventory, role: str, recorded: TierFigure | None
                  ) -> tuple[float, int, str] | None:
    """(events/s, processes, per-process figure and where it comes from) of a tier; None when
    a host of it has no figure."""
    total, processes, pers = 0.0, 0, set()
    for h in inv.with_role(role):
        s = settings(inv, role, h)
        per = recorded.per_process if recorded else s.get(PER_PROCESS)
        if per is None:
            return None
        if isinstance(per, bool) or not isinstance(per, int | float) or per <= 0:
            raise _bad(inv, f"roles/{role} or hosts/{h.name}/vars: {PER_PROCESS}",
                       f"must be a positive number of events/s, got {per!r}")
        n = int(s["processes"])
        total, processes = total + n * float(per), processes + n
        pers.add(float(per))
    if not processes:
        return None
    each = "/".join(f"{p:g}" for p in sorted(pers))
    if recorded:
        how = f"{each}/s, {recorded.how or 'probe'} {recorded.measured_at[:10]}".rstrip()
        key = TIER_SETTING[role]
        ours = {settings(inv, role, h).get(key) for h in inv.with_role(role)}
        if key in recorded.settings and ours != {recorded.settings[key]}:
            how += (f"; measured at {key} {recorded.settings[key]}, the inventory runs "
                    f"{'/'.join(str(x) for x in sorted(ours, key=str))}")
    else:
        how = f"{each}/s, declared"
    return total, processes, how


def throughput(inv: Inventory, rate: float, figures: dict[str, TierFigure]
               ) -> tuple[list[Line], list[str]]:
    """One line per tier (what it carries against the rate), and the tiers left without a
    figure."""
    lines: list[Line] = []
    missing: list[str] = []
    for role in TIER_SETTING:
        if not inv.with_role(role):
            continue
        cap = tier_capacity(inv, role, figures.get(role))
        if cap is None:
            missing.append(f"{role}: no events/s per process: run `fab capacity.probe` on the "
                           f"lab or declare roles.{role}.{PER_PROCESS}")
            continue
        total, processes, how = cap
        note = f"{processes} processes x {how}"
        if role == "worker" and rate > total:
            note += f"; {queue_note(inv, rate - total, total)}"
        lines.append(Line("throughput", f"{role} tier", total, rate, "events/s", note))
    return lines, missing


def queue_note(inv: Inventory, deficit: float, capacity: float) -> str:
    """What a queue growing by `deficit` events/s does: it fills the queue Redis' maxmemory,
    or an event waits past the payloads' one-hour expiry, whichever comes first."""
    queues = inv.with_role("redis-queue")
    memory = sum(parse_size(settings(inv, "redis-queue", q)["maxmemory"]) for q in queues)
    size = parse_size(settings(inv, "redis-queue", queues[0] if queues else None)["event_size"])
    full = memory / backlog_bytes(deficit, size, 1 / 60) if memory else 0.0
    # The queue is deficit x t long at t; the newest event waits for capacity to drain it.
    expiry = PAYLOAD_TTL_MINUTES * 60 * capacity / deficit
    if full and full <= expiry:
        return f"the queue grows {deficit:,.0f}/s: its maxmemory is full after {_hours(full)}"
    return (f"the queue grows {deficit:,.0f}/s: after {_hours(expiry)} events wait past the "
            f"payloads' {PAYLOAD_TTL_MINUTES} min expiry")


def outlook(inv: Inventory, facts: dict[str, HostFacts], db: dict[str, DbFacts],
            figures: dict[str, TierFigure], missing: Iterable[str] = (),
            repo_facts: Any = None) -> Outlook:
    """Everything `fab capacity` shows. The rate is the declared events_per_second, else the
    one measured on the db hosts; a db host without facts is planned from declared ones."""
    declared, measured = planned_rate(inv), measured_rate(db.values())
    rate, source = ((declared, "declared") if declared else
                    (measured, "measured") if measured is not None else (0.0, "none"))
    report = plan(inv, facts, rate=rate if source == "measured" else None)
    retention = retention_days(inv)
    disks = [disk_forecast(inv, h, db.get(h.name) or declared_db_facts(inv, h), rate, retention)
             for h in inv.with_role("db")]
    tiers, lacking = throughput(inv, rate, figures)
    report.lines += [d.line() for d in disks] + tiers
    repo = _repository(inv, disks, repo_facts)
    if repo is not None:
        report.lines.append(repo.line())
    return Outlook(report, disks, tiers, rate, source, measured, retention,
                   [*missing, *lacking], repo)


def _repository(inv: Inventory, disks: list[DiskForecast], facts: Any):
    """The backup repository's forecast, from the largest db host's (None: no backup host)."""
    from . import repository

    hosts = inv.with_role("backup")
    if not hosts or not disks:
        return None
    return repository.forecast(inv, hosts[0], max(disks, key=lambda d: d.need), facts)


def _size(inv: Inventory, host: Host, s: dict[str, Any], key: str, default: int) -> int:
    value = s.get(key, default)
    try:
        return parse_size(value)
    except (TypeError, ValueError):
        raise _bad(inv, f"roles/db or hosts/{host.name}/vars: {key}",
                   f"must be a size like 8kb or 2tb, got {value!r}") from None


def _bad(inv: Inventory, where: str, what: str) -> InventoryError:
    return InventoryError([f"{inv.path.name}: {where}: {what}"])


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _gib(n: float) -> str:
    return f"{n / GB:,.1f} GiB"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"
