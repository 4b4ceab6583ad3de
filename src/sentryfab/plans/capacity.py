"""Capacity math: which limit each tier of the cluster runs into first. Pure.

The reference deployment learned these by breaking them: more web processes choked
PostgreSQL's connections (PgBouncer fixed that), then Redis choked on connections under
spikes. Every number here comes from the inventory's settings (the same ones the configs
are rendered from) and from host facts (RAM, open-file limit, somaxconn), read over SSH
or declared in the inventory for --offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..configs.context import pgbouncer_for, settings
from ..inventory import Host, Inventory

GB = 1024 ** 3
MB = 1024 ** 2

#: Used when neither the host nor the inventory says (the --offline fallbacks).
DEFAULT_FACTS = {"ram": 16 * GB, "nofile": 1024 * 1024, "somaxconn": 4096}

#: Connections a Sentry process keeps besides one per thread (its own pools: the Redis
#: buffers, the nodestore, the caches); and memory per process.
SENTRY_EXTRA_DB_CONNS = 1
SENTRY_PROCESS_MEMORY = {"web": 600 * MB, "worker": 800 * MB, "cron": 300 * MB}
#: PostgreSQL's own memory per connection beyond work_mem (catalog caches, buffers).
PG_CONN_OVERHEAD = 10 * MB
#: Connections kept free on PostgreSQL for people (psql at 3 a.m.) and sentryfab's checks.
ADMIN_MARGIN = 10
#: Besides its payload, each waiting event costs the queue Redis its Celery task message: a
#: kombu JSON envelope around the pickled task, whose arguments are the cache key, event id
#: and accept time. About 1 KiB: an estimate from its fields, not a measurement.
TASK_MESSAGE_SIZE = 1024
#: Sentry 9 stores a payload for a worker with a one-hour expiry (coreapi.py, cache_timeout):
#: an event still waiting after that is gone, however much memory there is.
PAYLOAD_TTL_MINUTES = 60


@dataclass(frozen=True)
class HostFacts:
    """What limits a host: memory, open files per process, the kernel's listen queue cap."""

    ram: int
    nofile: int
    somaxconn: int
    source: str = "declared"  # "ssh" when read from the host


@dataclass(frozen=True)
class Line:
    """One limit of one component: what it allows, what the cluster would use."""

    tier: str
    component: str
    limit: float
    planned: float
    unit: str
    note: str = ""
    what_if: bool = False  # a road not taken (no PgBouncer): shown, never counted as over

    @property
    def headroom(self) -> float:
        """What is left; negative when over."""
        return self.limit - self.planned

    @property
    def used_pct(self) -> float:
        """Planned use as a percentage of the limit."""
        return 100.0 * self.planned / self.limit if self.limit else float("inf")

    @property
    def over(self) -> bool:
        """True when the plan does not fit."""
        return self.planned > self.limit


@dataclass
class CapacityReport:
    """Every line, and which runs out first."""

    lines: list[Line] = field(default_factory=list)

    @property
    def over(self) -> list[Line]:
        """The lines over their limit (what-if lines excluded)."""
        return [line for line in self.lines if line.over and not line.what_if]

    @property
    def first_to_run_out(self) -> Line | None:
        """The real component with the least headroom relative to its limit."""
        return max((x for x in self.lines if not x.what_if), key=lambda x: x.used_pct,
                   default=None)


def parse_size(value: object) -> int:
    """'8gb', '256MB', '1GB', 1024 -> bytes (Redis and PostgreSQL spellings)."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip().lower().replace(" ", "")
    for suffix, mult in (("tb", 1024 ** 4), ("gb", GB), ("mb", MB), ("kb", 1024),
                         ("t", 1024 ** 4), ("g", GB), ("m", MB), ("k", 1024), ("b", 1)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    return int(float(text))


def declared_facts(inv: Inventory, host: Host) -> HostFacts:
    """Host facts from the inventory (host vars `ram`, `nofile`, `somaxconn`), or defaults."""
    v = host.vars
    return HostFacts(parse_size(v.get("ram", DEFAULT_FACTS["ram"])),
                     int(v.get("nofile", DEFAULT_FACTS["nofile"])),
                     int(v.get("somaxconn", DEFAULT_FACTS["somaxconn"])))


def sentry_db_clients(inv: Inventory, host: Host) -> int:
    """Database connections one Sentry host opens: per process, a thread each, plus pools."""
    total = 0
    if host.has("web"):
        s = settings(inv, "web", host)
        total += int(s["processes"]) * (int(s["threads"]) + SENTRY_EXTRA_DB_CONNS)
    if host.has("worker"):
        s = settings(inv, "worker", host)
        total += int(s["processes"]) * (int(s["concurrency"]) + SENTRY_EXTRA_DB_CONNS)
    if host.has("cron"):
        total += 1 + SENTRY_EXTRA_DB_CONNS
    return total


def sentry_hosts(inv: Inventory) -> list[Host]:
    """Hosts running any Sentry process."""
    return [h for h in inv.hosts if {"web", "worker", "cron"} & set(h.roles)]


def plan(inv: Inventory, facts: dict[str, HostFacts], rate: float | None = None
         ) -> CapacityReport:
    """Every capacity line of the cluster as the inventory describes it; `rate` (events/s)
    replaces the declared events_per_second when given (a measured one)."""
    report = CapacityReport()
    add = report.lines.append
    clients = {h.name: sentry_db_clients(inv, h) for h in sentry_hosts(inv)}
    total_clients = sum(clients.values())
    dbs = inv.with_role("db")
    bouncers = inv.with_role("pgbouncer")
    usable = _usable_db_connections(inv, dbs)

    # 1. Sentry straight to PostgreSQL: the lesson that PgBouncer was put in for.
    if dbs:
        add(Line("postgresql", "without pgbouncer" if bouncers else "sentry clients", usable,
                 total_clients, "connections",
                 "every Sentry thread holding its own server connection",
                 what_if=bool(bouncers)))

    # 2. Clients into each PgBouncer, and the server connections all of them open.
    server_conns = 0
    for b in bouncers:
        server_conns += _bouncer_lines(inv, facts, b, clients, add)
    if bouncers and dbs:
        add(Line("postgresql", "from pgbouncer", usable, server_conns, "connections",
                 "sum over bouncers of default_pool_size + reserve_pool_size"))

    # 3. Redis: every Sentry process keeps a pool to each Redis of a cluster.
    procs = _sentry_processes(inv)
    for role in ("redis-cache", "redis-queue"):
        for r in inv.with_role(role):
            _redis_lines(inv, facts, role, r, procs["threads"], add)

    # 4. The backlog: every accepted event waits on the queue Redis (SENTRY_CACHE and the
    # Celery broker) until a worker stores it, and that Redis never evicts: when workers
    # stop or fall behind, it must hold events_per_second x backlog of them.
    _backlog(inv, add, rate)

    # 5. Memory of the database and of the Sentry hosts.
    _memory_lines(inv, facts, dbs, add)
    return report


def _usable_db_connections(inv: Inventory, dbs: list[Host]) -> int:
    """PostgreSQL connections left for clients: max_connections less the superuser reserve
    and ADMIN_MARGIN, as the first db host is configured."""
    db_s = settings(inv, "db", dbs[0]) if dbs else {}
    return (int(db_s.get("max_connections", 0)) - int(db_s.get("superuser_reserved_connections",
                                                                3)) - ADMIN_MARGIN)


def _facts_of(inv: Inventory, facts: dict[str, HostFacts], host: Host) -> HostFacts:
    """The host's facts as read, else as declared (the declared ones are always parsed, so
    a malformed declaration fails the same way whether or not the host was read)."""
    return facts.get(host.name, declared_facts(inv, host))


def _bouncer_lines(inv: Inventory, facts: dict[str, HostFacts], b: Host,
                   clients: dict[str, int], add: Callable[[Line], None]) -> int:
    """One PgBouncer's client and file-descriptor lines; returns the server connections
    its pools may open on PostgreSQL."""
    bs = settings(inv, "pgbouncer", b)
    mine = sum(n for name, n in clients.items()
               if (pgbouncer_for(inv, inv.host(name)) or {}).get("name") == b.name)
    add(Line("pgbouncer", f"{b.name} clients", int(bs["max_client_conn"]), mine,
             "connections", "max_client_conn"))
    server_conns = int(bs["default_pool_size"]) + int(bs["reserve_pool_size"])
    fd = _facts_of(inv, facts, b).nofile
    add(Line("pgbouncer", f"{b.name} file descriptors", fd,
             int(bs["max_client_conn"]) + int(bs["default_pool_size"])
             + int(bs["reserve_pool_size"]) + 10, "fds", "max_client_conn + pool + 10"))
    return server_conns


def _redis_lines(inv: Inventory, facts: dict[str, HostFacts], role: str, r: Host,
                 threads: int, add: Callable[[Line], None]) -> None:
    """One Redis host's clients, file descriptors, listen backlog and memory."""
    rs = settings(inv, role, r)
    f = _facts_of(inv, facts, r)
    add(Line("redis", f"{r.name} clients", int(rs["maxclients"]), threads,
             "connections", "maxclients"))
    add(Line("redis", f"{r.name} file descriptors", f.nofile,
             int(rs["maxclients"]) + 32, "fds", "maxclients + 32 (Redis' own)"))
    add(Line("redis", f"{r.name} listen backlog", f.somaxconn, int(rs["tcp_backlog"]),
             "connections", "tcp-backlog is cut to net.core.somaxconn"))
    mem = parse_size(rs["maxmemory"])
    # The queue persists: a fork for RDB/AOF rewrite may copy every page it touches.
    need = mem * (2 if role == "redis-queue" else 1) + 256 * MB
    add(Line("memory", f"{r.name} redis", f.ram, need, "bytes",
             "maxmemory x2 (fork for persistence) + 256 MB"
             if role == "redis-queue" else "maxmemory + 256 MB"))


def _memory_lines(inv: Inventory, facts: dict[str, HostFacts], dbs: list[Host],
                  add: Callable[[Line], None]) -> None:
    """Memory of each database host, then of each Sentry host."""
    for d in dbs:
        ds = settings(inv, "db", d)
        f = _facts_of(inv, facts, d)
        need = (parse_size(ds["shared_buffers"]) + int(ds["max_connections"])
                * (parse_size(ds["work_mem"]) + PG_CONN_OVERHEAD))
        add(Line("memory", f"{d.name} postgresql", f.ram, need, "bytes",
                 "shared_buffers + max_connections x (work_mem + 10 MB)"))
    for h in sentry_hosts(inv):
        f = _facts_of(inv, facts, h)
        need = sum(int(settings(inv, role, h).get("processes", 1))
                   * parse_size(settings(inv, role, h).get("process_memory",
                                                           SENTRY_PROCESS_MEMORY[role]))
                   for role in ("web", "worker", "cron") if h.has(role))
        add(Line("memory", f"{h.name} sentry", f.ram, need, "bytes",
                 "processes x process_memory"))


def backlog_bytes(events_per_second: float, event_size: float, minutes: float,
                  task_size: float = TASK_MESSAGE_SIZE) -> float:
    """Queue Redis memory for `minutes` of events no worker takes: payloads + task messages."""
    return events_per_second * minutes * 60 * (event_size + task_size)


def planned_rate(inv: Inventory) -> float:
    """The declared events/s the cluster is planned for (`events_per_second` of the queue
    Redis, where the backlog is sized with it); 0 when the inventory declares none."""
    queues = inv.with_role("redis-queue")
    return float(settings(inv, "redis-queue", queues[0] if queues else None)
                 .get("events_per_second") or 0)


def _backlog(inv: Inventory, add: Callable[[Line], None], measured: float | None) -> None:
    """Per redis-queue host: the planned backlog against maxmemory and against the payloads'
    expiry. Without a rate (declared `events_per_second`, or `measured`) there is nothing to
    plan with: only the expiry line."""
    queues = inv.with_role("redis-queue")
    for i, r in enumerate(queues):
        rs = settings(inv, "redis-queue", r)
        minutes = float(rs["backlog_minutes"])
        rate = measured if measured is not None else float(rs.get("events_per_second") or 0)
        if rate:
            # rb spreads payloads over the "queue" hosts; task messages all go to the broker,
            # the first of them.
            need = backlog_bytes(rate, parse_size(rs["event_size"]) / len(queues), minutes,
                                 TASK_MESSAGE_SIZE if i == 0 else 0)
            add(Line("backlog", f"{r.name} payloads", parse_size(rs["maxmemory"]), need,
                     "bytes", f"{rate:,.0f} events/s x ({rs['event_size']} + 1 KiB task) x "
                              f"{minutes:g} min backlog"))
        add(Line("backlog", f"{r.name} backlog age", PAYLOAD_TTL_MINUTES, minutes, "minutes",
                 "backlog_minutes; Sentry drops a payload waiting 60 min"))


def _sentry_processes(inv: Inventory) -> dict[str, int]:
    """Sentry processes and threads across the cluster (each thread may hold a connection)."""
    procs = threads = 0
    for h in sentry_hosts(inv):
        if h.has("web"):
            s = settings(inv, "web", h)
            procs += int(s["processes"])
            threads += int(s["processes"]) * (int(s["threads"]) + 1)
        if h.has("worker"):
            s = settings(inv, "worker", h)
            procs += int(s["processes"])
            threads += int(s["processes"]) * (int(s["concurrency"]) + 1)
        if h.has("cron"):
            procs += 1
            threads += 2
    return {"processes": procs, "threads": threads}


def with_processes(inv: Inventory, role: str, processes: int) -> Inventory:
    """The inventory as it would be after `role.scale --processes N` (for the preflight)."""
    import dataclasses

    return dataclasses.replace(inv, roles={**inv.roles, role: {**inv.role_vars(role),
                                                                "processes": processes}})
