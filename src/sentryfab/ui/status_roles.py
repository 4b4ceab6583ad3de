"""The detailed views of `fab <role>.status`: the same round, every figure of one role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..roles import expand_role
from ..status import ingestion
from ..status.facts.db import DbFacts
from ..status.facts.ingestion import IngestFacts, PayloadFacts
from ..status.facts.pgbouncer import PgbouncerFacts
from ..status.facts.redis import RedisFacts
from ..status.facts.web import Probe
from ..status.metrics import Key
from ..status.model import HostStatus, StatusReport
from ..status.thresholds import duration, fmt, human_bytes, rate
from .status import SHORT, STYLE, host_cells


def detail(report: StatusReport, word: str) -> RenderableType:
    """The tables of one role word ('redis' shows both Redis roles)."""
    parts: list[RenderableType] = []
    for role in expand_role(word):
        hosts = [st for st in report.hosts if st.host.has(role)]
        if hosts:
            parts.append(VIEWS.get(role, _containers_view)(hosts, role))
    parts.append(_hosts_view(report.hosts))
    return Group(*parts)


def _table(title: str, *cols: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for index, column in enumerate(cols):
        table.add_column(column, no_wrap=index == 0)
    return table


def _kv(title: str, hosts: list[HostStatus],
        rows: list[tuple[str, Callable[[HostStatus], str | Text]]]) -> Table:
    """One column per host, one row per figure: a role's few hosts side by side."""
    table = _table(title, "", *(st.host.name for st in hosts))
    table.add_row("state", *(_state(st) for st in hosts))
    for label, get in rows:
        table.add_row(label, *(get(st) if st.reachable else "" for st in hosts))
    bad = [st for st in hosts if not st.reachable]
    if bad:
        table.add_row("error", *((st.error or "unreachable") if not st.reachable else ""
                                 for st in hosts))
    return table


def _state(st: HostStatus) -> Text:
    return Text(SHORT[st.severity], style=STYLE[st.severity])


def _hosts_view(hosts: list[HostStatus]) -> Table:
    table = _table("hosts", "host", "state", "load/cpu", "mem", "disk", "ssh", "connect",
                   "fds")
    for st in hosts:
        metrics = st.metrics.get("host", {})
        table.add_row(st.host.name, _state(st), *host_cells(st),
                      fmt(metrics.get(Key.CONNECT_MS), "ms"), fmt(metrics.get(Key.FDS_PCT), "pct"))
    return table


def _containers_view(hosts: list[HostStatus], role: str) -> Table:
    """worker and cron (and the container half of every role): what runs, restarts."""
    table = _table(f"{role}: containers", "host", "container", "status", "version",
                   "restarts", "started")
    for st in hosts:
        if not st.reachable:
            table.add_row(st.host.name, Text(st.error or "unreachable", style="red"), "", "",
                          "", "")
            continue
        mine = [container for container in st.facts.get("containers", [])
                if container.role == role]
        if not mine:
            table.add_row(st.host.name, "-", Text("none", style="red"), "", "", "")
        for index, container in enumerate(mine):
            table.add_row(st.host.name if index == 0 else "", container.name,
                          Text(container.state, style="green" if container.running else "red"),
                          container.version, str(container.restarts),
                          container.started_at[:19].replace("T", " "))
    return table


def _web_view(hosts: list[HostStatus], role: str) -> Group:
    table = _table("web: processes", "host", "port", "container", "status", "version",
                   "/_health/", "time")
    for st in hosts:
        if not st.reachable:
            table.add_row(st.host.name, Text(st.error or "unreachable", style="red"),
                          *[""] * 5)
            continue
        by_name = {container.name: container for container in st.facts.get("containers", [])}
        probes: dict[int, Probe] = st.facts.get("web", {})
        for index, (port, probe) in enumerate(sorted(probes.items())):
            name = f"sentry-web-{index + 1}"
            container = by_name.get(name)
            table.add_row(st.host.name if index == 0 else "", str(port), name,
                          Text(container.state if container else "missing",
                               style="green" if container and container.running else "red"),
                          container.version if container else "",
                          Text(probe.describe(), style="green" if probe.ok else "red"),
                          fmt(probe.seconds * 1000, "ms") if probe.ok else "")
    return Group(table, _containers_view(hosts, role))


def _nginx_view(hosts: list[HostStatus], role: str) -> Group:
    def nginx_metric(key: Key) -> Callable[[HostStatus], str]:
        return lambda st: str(st.metrics.get("nginx", {}).get(key, "-"))

    figures = _kv("nginx", hosts, [
        ("active connections", nginx_metric(Key.ACTIVE_CONNECTIONS)),
        ("reading", nginx_metric(Key.READING)), ("writing", nginx_metric(Key.WRITING)),
        ("waiting", nginx_metric(Key.WAITING)),
        ("requests/s", lambda st: fmt(st.metrics.get("nginx", {}).get(Key.REQUESTS_PER_S),
                                      "ratio")),
        ("ingestion (last minute)", _ingest_cell),
    ])
    upstreams = _table("nginx: upstreams (probed from the nginx host)", "host", "upstream",
                       "web host", "config", "/_health/", "time")
    for st in hosts:
        for index, up in enumerate(st.facts.get("upstreams", [])):
            upstreams.add_row(st.host.name if index == 0 else "", up.endpoint, up.name,
                              Text("drained" if up.drained else "in rotation",
                                   style="yellow" if up.drained else ""),
                              Text(up.probe.describe(),
                                   style="green" if up.probe.ok else "red"),
                              fmt(up.probe.seconds * 1000, "ms") if up.probe.ok else "")
    return Group(figures, upstreams, _ingest_view(hosts), _causes_view(hosts),
                 _containers_view(hosts, role))


def _ingest_cell(st: HostStatus) -> str:
    """'48/s, 0.4% errors' over the last minute ('-': not measured this round)."""
    ing: ingestion.Ingestion | None = st.facts.get("ingestion")
    if ing is None:
        return "-"
    return f"{rate(ing.total / ingestion.WINDOW_S)}, {fmt(ing.error_pct or 0.0, 'pct')} errors"


def _ingest_view(hosts: list[HostStatus]) -> Table:
    """Per endpoint: requests per second and responses per status class, the codes seen."""
    table = _table(f"nginx: ingestion endpoints (last {ingestion.WINDOW_S} s)", "host",
                   "endpoint", "Sentry 9.1.2", "requests/s", *ingestion.CLASSES,
                   "status codes")
    for st in hosts:
        facts: IngestFacts | None = st.facts.get("ingest")
        if facts is None:
            continue
        seen = [endpoint for endpoint in ingestion.ENDPOINTS if endpoint.name in facts.counts]
        for index, endpoint in enumerate(seen):
            by_status = facts.counts[endpoint.name]
            classes = {status_class: sum(count for status, count in by_status.items()
                                         if f"{status // 100}xx" == status_class)
                       for status_class in ingestion.CLASSES}
            table.add_row(st.host.name if index == 0 else "", endpoint.shown,
                          "has it" if endpoint.served else Text("lacks it", style="red"),
                          rate(sum(by_status.values()) / ingestion.WINDOW_S),
                          *(str(classes[status_class]) for status_class in ingestion.CLASSES),
                          ", ".join(f"{status}: {count}"
                                    for status, count in sorted(by_status.items())))
    return table


def _causes_view(hosts: list[HostStatus]) -> Table:
    """Why ingestion requests were not accepted, per host, most frequent first."""
    table = _table(f"nginx: ingestion errors by cause (last {ingestion.WINDOW_S} s)", "host",
                   "cause", "requests", "per second")
    for st in hosts:
        ing: ingestion.Ingestion | None = st.facts.get("ingestion")
        if ing is None:
            continue
        seen = sorted((cause for cause, count in ing.causes.items() if count),
                      key=lambda cause: -ing.causes[cause])
        for index, cause in enumerate(seen):
            table.add_row(st.host.name if index == 0 else "", ingestion.CAUSES[cause],
                          str(ing.causes[cause]), rate(ing.causes[cause] / ingestion.WINDOW_S))
    return table


def _worker_view(hosts: list[HostStatus], role: str) -> Group:
    """The worker containers, and the payloads they found missing in the last minute."""
    table = _table(f"worker: payloads found missing (last {ingestion.WINDOW_S} s)", "host",
                   "container", *ingestion.MISSING_PAYLOAD)
    for st in hosts:
        facts: PayloadFacts | None = st.facts.get("payloads")
        if facts is None:
            continue
        names = sorted(set(facts.rcs) | set(facts.counts))
        for index, name in enumerate(names):
            per = facts.counts.get(name, {})
            table.add_row(st.host.name if index == 0 else "", name,
                          *(Text(str(per.get(message, 0)), style="red" if per.get(message)
                                 else "")
                            for message in ingestion.MISSING_PAYLOAD))
    return Group(table, _containers_view(hosts, role))


def _redis_view(hosts: list[HostStatus], role: str) -> Group:
    def info(key: str) -> Callable[[HostStatus], str]:
        return lambda st: st.facts[role].info.get(key, "?") if role in st.facts else "-"

    def figure(fn: Callable[[dict[str, Any]], str]) -> Callable[[HostStatus], str]:
        return lambda st: fn(st.metrics.get(role, {})) if role in st.facts else "-"

    rows: list[tuple[str, Callable[[HostStatus], str | Text]]] = [
        ("role", info("role")), ("version", info("redis_version")),
        ("holds event payloads", figure(lambda metrics: "yes" if metrics.get(Key.HOLDS_PAYLOADS)
                                        else "no")),
        ("memory", figure(_memory)), ("policy", info("maxmemory_policy")),
        ("clients", figure(lambda metrics: f"{metrics.get(Key.CONNECTED_CLIENTS) or 0:.0f} of "
                                           f"{metrics.get(Key.MAXCLIENTS) or 0:.0f}")),
        ("blocked clients", figure(lambda metrics:
                                   f"{metrics.get(Key.BLOCKED_CLIENTS) or 0:.0f}")),
        ("rejected connections", figure(lambda metrics: _with_delta(
            metrics, Key.REJECTED_CONNECTIONS, Key.REJECTED_SINCE_LAST))),
        ("evicted keys", figure(lambda metrics: f"{metrics.get(Key.EVICTED_KEYS) or 0:.0f}")),
        ("ops/s", figure(lambda metrics: f"{metrics.get(Key.OPS_PER_S) or 0:.0f}")),
        ("persistence", lambda st: _persistence(st.facts.get(role))),
    ]
    if role == "redis-queue":
        rows.append(("queue", figure(_queue)))
        rows.append(("backlog age", figure(lambda metrics: "-"
                                           if metrics.get(Key.BACKLOG_AGE_S) is None
                                           else duration(metrics[Key.BACKLOG_AGE_S]))))
        keys = sorted({queue for st in hosts if role in st.facts
                       for queue in st.facts[role].lengths})
        for key in keys:
            rows.append((f"  {key}", lambda st, queue=key: _queue_key(st, role, queue)))
        rows.append(("worker heartbeats", lambda st: str(st.facts[role].heartbeats)
                     if role in st.facts and st.facts[role].heartbeats is not None else "-"))
    return Group(_kv(role, hosts, rows), _containers_view(hosts, role))


def _memory(metrics: dict[str, Any]) -> str:
    text = human_bytes(metrics.get(Key.USED_MEMORY) or 0)
    if metrics.get(Key.MAXMEMORY):
        text += (f" of {human_bytes(metrics[Key.MAXMEMORY])} "
                 f"({fmt(metrics.get(Key.MEMORY_PCT), 'pct')})")
    return text


def _queue(metrics: dict[str, Any]) -> str:
    growth = metrics.get(Key.QUEUE_GROWTH_PER_S)
    return f"{metrics.get(Key.QUEUE_LENGTH) or 0:.0f}" + (f" ({fmt(growth, 'per_s')})"
                                                          if growth is not None else "")


def _queue_key(st: HostStatus, role: str, key: str) -> str:
    """'120 (oldest 4 min)': a queue's length and how long its oldest task has waited."""
    if role not in st.facts:
        return "-"
    text = str(st.facts[role].lengths.get(key, "-"))
    ages = st.facts.get("backlog", {})
    if key in ages:
        age = ages[key]
        text += f" (oldest {'unknown' if age is None else duration(age)})"
    return text


def _persistence(facts: RedisFacts | None) -> Text | str:
    if facts is None:
        return "-"
    info = facts.info
    text = "aof + snapshots" if info.get("aof_enabled") == "1" else "none"
    if info.get("rdb_last_bgsave_status", "ok") != "ok" or \
            info.get("aof_last_write_status", "ok") != "ok":
        return Text(text + ", FAILING", style="red")
    return text


def _with_delta(metrics: dict[str, Any], total_key: Key, delta_key: Key) -> str:
    """'12 (+3)': a counter and what it grew by since the last check."""
    total = metrics.get(total_key)
    delta = metrics.get(delta_key)
    text = f"{total or 0:.0f}"
    return text + (f" (+{delta:.0f})" if delta else "")


def _db_view(hosts: list[HostStatus], role: str) -> Group:
    def node(key: str) -> Callable[[HostStatus], str]:
        return lambda st: (st.facts["db"].node.get(key) or "-") if "db" in st.facts else "-"

    def figure(fn: Callable[[dict[str, Any]], str]) -> Callable[[HostStatus], str]:
        return lambda st: fn(st.metrics.get("db", {})) if "db" in st.facts else "-"

    figures = _kv("db", hosts, [
        ("role", lambda st: ("replica" if st.facts["db"].in_recovery else "primary")
         if "db" in st.facts else "-"),
        ("timeline", node("timeline")), ("LSN (replayed)", node("lsn")),
        ("received", node("receive_lsn")),
        ("connections", figure(lambda metrics: f"{metrics.get(Key.CONNECTIONS) or 0:.0f} of "
                                               f"{metrics.get(Key.MAX_CONNECTIONS) or 0:.0f}")),
        ("replication lag", figure(lambda metrics: human_bytes(
            metrics[Key.REPLICATION_LAG_BYTES])
            if metrics.get(Key.REPLICATION_LAG_BYTES) is not None else "-")),
        ("lag seconds", figure(lambda metrics: fmt(metrics.get(Key.REPLICATION_LAG_S), "s"))),
        ("WAL receiver", node("wal_receiver")), ("replay", node("replay_paused")),
    ])
    streams = _table("db: standbys and slots (as each node sees them)", "host", "kind", "name",
                     "address / active", "state", "lag")
    for st in hosts:
        facts: DbFacts | None = st.facts.get("db")
        if facts is None:
            continue
        for standby in facts.standbys:
            streams.add_row(st.host.name, "standby", standby.name, standby.address,
                            f"{standby.state} ({standby.sync_state})",
                            human_bytes(standby.lag_bytes) if standby.lag_bytes is not None
                            else "-")
        for slot in facts.slots:
            streams.add_row(st.host.name, "slot", slot.name, "active" if slot.active else
                            Text("inactive", style="yellow"), "",
                            human_bytes(slot.retained_bytes) if slot.retained_bytes is not None
                            else "-")
    return Group(figures, streams, _containers_view(hosts, role))


def _pgbouncer_view(hosts: list[HostStatus], role: str) -> Group:
    pools = _table("pgbouncer: pools", "host", "database/user", "clients active/waiting",
                   "servers active/idle/used", "max wait", "mode")
    databases = _table("pgbouncer: databases", "host", "database", "points at", "pool",
                       "paused", "queries/s", "avg query", "avg wait")
    for st in hosts:
        if not st.reachable:
            pools.add_row(st.host.name, Text(st.error or "unreachable", style="red"),
                          *[""] * 4)
            continue
        facts: PgbouncerFacts | None = st.facts.get("pgbouncer")
        if facts is None:
            pools.add_row(st.host.name, Text("no answer", style="red"), *[""] * 4)
            continue
        for index, row in enumerate(facts.pools):
            wait = float(row.get("maxwait", 0) or 0) + float(row.get("maxwait_us", 0) or 0) / 1e6
            column = row.get
            pools.add_row(st.host.name if index == 0 else "",
                          f"{column('database')}/{column('user')}",
                          f"{column('cl_active')} / {column('cl_waiting')}",
                          f"{column('sv_active')} / {column('sv_idle')} / {column('sv_used')}",
                          fmt(wait, "s"), column("pool_mode", ""))
        stats = {row.get("database"): row for row in facts.stats}
        metrics = st.metrics.get("pgbouncer", {})
        target = st.facts.get("pgb_target_host", "")
        for row in facts.databases:
            name = row.get("name", "")
            if name == "pgbouncer":
                continue
            stats_row = stats.get(name, {})
            databases.add_row(st.host.name, name, f"{target} ({row.get('host', '')}:"
                              f"{row.get('port', '')})", row.get("pool_size", ""),
                              row.get("paused", ""),
                              fmt(metrics.get(Key.QUERIES_PER_S), "ratio"),
                              fmt(float(stats_row.get("avg_query_time", 0) or 0) / 1000, "ms"),
                              fmt(float(stats_row.get("avg_wait_time", 0) or 0) / 1000, "ms"))
    return Group(pools, databases, _containers_view(hosts, role))


VIEWS = {"web": _web_view, "nginx": _nginx_view, "worker": _worker_view,
         "redis-cache": _redis_view, "redis-queue": _redis_view, "db": _db_view,
         "pgbouncer": _pgbouncer_view}


def facts_record(st: HostStatus) -> dict[str, Any]:
    """A host's parsed facts in JSON-friendly form (for `fab <role>.status --json`)."""

    def plain(value: Any) -> Any:
        if is_dataclass(value) and not isinstance(value, type):
            return asdict(value)
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        return value

    return {name: plain(value) for name, value in st.facts.items()}
