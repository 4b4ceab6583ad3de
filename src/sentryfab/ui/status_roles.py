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
from ..status import ingestion, parsers
from ..status.model import HostStatus, StatusReport
from ..status.thresholds import duration, fmt, human_bytes, rate
from .status import SHORT, STYLE, host_cells


def detail(report: StatusReport, word: str) -> RenderableType:
    """The tables of one role word ('redis' shows both Redis roles)."""
    parts: list[RenderableType] = []
    for role in expand_role(word):
        hosts = [h for h in report.hosts if h.host.has(role)]
        if hosts:
            parts.append(VIEWS.get(role, _containers_view)(hosts, role))
    parts.append(_hosts_view(report.hosts))
    return Group(*parts)


def _table(title: str, *cols: str) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, c in enumerate(cols):
        t.add_column(c, no_wrap=i == 0)
    return t


def _kv(title: str, hosts: list[HostStatus],
        rows: list[tuple[str, Callable[[HostStatus], str | Text]]]) -> Table:
    """One column per host, one row per figure: a role's few hosts side by side."""
    t = _table(title, "", *(h.host.name for h in hosts))
    t.add_row("state", *(_state(h) for h in hosts))
    for label, get in rows:
        t.add_row(label, *(get(h) if h.reachable else "" for h in hosts))
    bad = [h for h in hosts if not h.reachable]
    if bad:
        t.add_row("error", *((h.error or "unreachable") if not h.reachable else ""
                             for h in hosts))
    return t


def _state(st: HostStatus) -> Text:
    return Text(SHORT[st.severity], style=STYLE[st.severity])


def _hosts_view(hosts: list[HostStatus]) -> Table:
    t = _table("hosts", "host", "state", "load/cpu", "mem", "disk", "ssh", "connect",
               "fds")
    for st in hosts:
        m = st.metrics.get("host", {})
        t.add_row(st.host.name, _state(st), *host_cells(st), fmt(m.get("connect_ms"), "ms"),
                  fmt(m.get("fds_pct"), "pct"))
    return t


def _containers_view(hosts: list[HostStatus], role: str) -> Table:
    """worker and cron (and the container half of every role): what runs, restarts."""
    t = _table(f"{role}: containers", "host", "container", "status", "version", "restarts",
               "started")
    for st in hosts:
        if not st.reachable:
            t.add_row(st.host.name, Text(st.error or "unreachable", style="red"), "", "", "",
                      "")
            continue
        mine = [c for c in st.facts.get("containers", []) if c.role == role]
        if not mine:
            t.add_row(st.host.name, "-", Text("none", style="red"), "", "", "")
        for i, c in enumerate(mine):
            t.add_row(st.host.name if i == 0 else "", c.name,
                      Text(c.state, style="green" if c.running else "red"), c.version,
                      str(c.restarts), c.started_at[:19].replace("T", " "))
    return t


def _web_view(hosts: list[HostStatus], role: str) -> Group:
    t = _table("web: processes", "host", "port", "container", "status", "version",
               "/_health/", "time")
    for st in hosts:
        if not st.reachable:
            t.add_row(st.host.name, Text(st.error or "unreachable", style="red"),
                      *[""] * 5)
            continue
        by_name = {c.name: c for c in st.facts.get("containers", [])}
        probes: dict[int, parsers.Probe] = st.facts.get("web", {})
        for i, (port, p) in enumerate(sorted(probes.items())):
            name = f"sentry-web-{i + 1}"
            c = by_name.get(name)
            t.add_row(st.host.name if i == 0 else "", str(port), name,
                      Text(c.state if c else "missing",
                           style="green" if c and c.running else "red"),
                      c.version if c else "",
                      Text(p.describe(), style="green" if p.ok else "red"),
                      fmt(p.seconds * 1000, "ms") if p.ok else "")
    return Group(t, _containers_view(hosts, role))


def _nginx_view(hosts: list[HostStatus], role: str) -> Group:
    def m(key: str) -> Callable[[HostStatus], str]:
        return lambda st: str(st.metrics.get("nginx", {}).get(key, "-"))

    t = _kv("nginx", hosts, [
        ("active connections", m("active_connections")), ("reading", m("reading")),
        ("writing", m("writing")), ("waiting", m("waiting")),
        ("requests/s", lambda st: fmt(st.metrics.get("nginx", {}).get("requests_per_s"),
                                      "ratio")),
        ("ingestion (last minute)", _ingest_cell),
    ])
    u = _table("nginx: upstreams (probed from the nginx host)", "host", "upstream",
               "web host", "config", "/_health/", "time")
    for st in hosts:
        for i, up in enumerate(st.facts.get("upstreams", [])):
            u.add_row(st.host.name if i == 0 else "", up.endpoint, up.name,
                      Text("drained" if up.drained else "in rotation",
                           style="yellow" if up.drained else ""),
                      Text(up.probe.describe(), style="green" if up.probe.ok else "red"),
                      fmt(up.probe.seconds * 1000, "ms") if up.probe.ok else "")
    return Group(t, u, _ingest_view(hosts), _causes_view(hosts),
                 _containers_view(hosts, role))


def _ingest_cell(st: HostStatus) -> str:
    """'48/s, 0.4% errors' over the last minute ('-': not measured this round)."""
    ing: ingestion.Ingestion | None = st.facts.get("ingestion")
    if ing is None:
        return "-"
    return f"{rate(ing.total / ingestion.WINDOW_S)}, {fmt(ing.error_pct or 0.0, 'pct')} errors"


def _ingest_view(hosts: list[HostStatus]) -> Table:
    """Per endpoint: requests per second and responses per status class, the codes seen."""
    t = _table(f"nginx: ingestion endpoints (last {ingestion.WINDOW_S} s)", "host", "endpoint",
               "Sentry 9.1.2", "requests/s", *ingestion.CLASSES, "status codes")
    for st in hosts:
        facts: ingestion.IngestFacts | None = st.facts.get("ingest")
        if facts is None:
            continue
        for i, e in enumerate(e for e in ingestion.ENDPOINTS if e.name in facts.counts):
            by_status = facts.counts[e.name]
            classes = {c: sum(n for s, n in by_status.items() if f"{s // 100}xx" == c)
                       for c in ingestion.CLASSES}
            t.add_row(st.host.name if i == 0 else "", e.shown,
                      "has it" if e.served else Text("lacks it", style="red"),
                      rate(sum(by_status.values()) / ingestion.WINDOW_S),
                      *(str(classes[c]) for c in ingestion.CLASSES),
                      ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())))
    return t


def _causes_view(hosts: list[HostStatus]) -> Table:
    """Why ingestion requests were not accepted, per host, most frequent first."""
    t = _table(f"nginx: ingestion errors by cause (last {ingestion.WINDOW_S} s)", "host",
               "cause", "requests", "per second")
    for st in hosts:
        ing: ingestion.Ingestion | None = st.facts.get("ingestion")
        if ing is None:
            continue
        seen = sorted((c for c, n in ing.causes.items() if n), key=lambda c: -ing.causes[c])
        for i, cause in enumerate(seen):
            t.add_row(st.host.name if i == 0 else "", ingestion.CAUSES[cause],
                      str(ing.causes[cause]), rate(ing.causes[cause] / ingestion.WINDOW_S))
    return t


def _worker_view(hosts: list[HostStatus], role: str) -> Group:
    """The worker containers, and the payloads they found missing in the last minute."""
    t = _table(f"worker: payloads found missing (last {ingestion.WINDOW_S} s)", "host",
               "container", *ingestion.MISSING_PAYLOAD)
    for st in hosts:
        facts: ingestion.PayloadFacts | None = st.facts.get("payloads")
        if facts is None:
            continue
        names = sorted(set(facts.rcs) | set(facts.counts))
        for i, name in enumerate(names):
            per = facts.counts.get(name, {})
            t.add_row(st.host.name if i == 0 else "", name,
                      *(Text(str(per.get(m, 0)), style="red" if per.get(m) else "")
                        for m in ingestion.MISSING_PAYLOAD))
    return Group(t, _containers_view(hosts, role))


def _redis_view(hosts: list[HostStatus], role: str) -> Group:
    def info(key: str) -> Callable[[HostStatus], str]:
        return lambda st: st.facts[role].info.get(key, "?") if role in st.facts else "-"

    def met(fn: Callable[[dict[str, Any]], str]) -> Callable[[HostStatus], str]:
        return lambda st: fn(st.metrics.get(role, {})) if role in st.facts else "-"

    rows: list[tuple[str, Callable[[HostStatus], str | Text]]] = [
        ("role", info("role")), ("version", info("redis_version")),
        ("holds event payloads", met(lambda m: "yes" if m.get("holds_payloads") else "no")),
        ("memory", met(_memory)), ("policy", info("maxmemory_policy")),
        ("clients", met(lambda m: f"{m.get('connected_clients') or 0:.0f} of "
                                  f"{m.get('maxclients') or 0:.0f}")),
        ("blocked clients", met(lambda m: f"{m.get('blocked_clients') or 0:.0f}")),
        ("rejected connections", met(lambda m: _with_delta(m, "rejected"))),
        ("evicted keys", met(lambda m: f"{m.get('evicted_keys') or 0:.0f}")),
        ("ops/s", met(lambda m: f"{m.get('ops_per_s') or 0:.0f}")),
        ("persistence", lambda st: _persistence(st.facts.get(role))),
    ]
    if role == "redis-queue":
        rows.append(("queue", met(_queue)))
        rows.append(("backlog age", met(lambda m: "-" if m.get("backlog_age_s") is None
                                        else duration(m["backlog_age_s"]))))
        keys = sorted({k for st in hosts if role in st.facts for k in st.facts[role].lengths})
        for key in keys:
            rows.append((f"  {key}", lambda st, k=key: _queue_key(st, role, k)))
        rows.append(("worker heartbeats", lambda st: str(st.facts[role].heartbeats)
                     if role in st.facts and st.facts[role].heartbeats is not None else "-"))
    return Group(_kv(role, hosts, rows), _containers_view(hosts, role))


def _memory(m: dict[str, Any]) -> str:
    text = human_bytes(m.get("used_memory") or 0)
    if m.get("maxmemory"):
        text += f" of {human_bytes(m['maxmemory'])} ({fmt(m.get('memory_pct'), 'pct')})"
    return text


def _queue(m: dict[str, Any]) -> str:
    growth = m.get("queue_growth_per_s")
    return f"{m.get('queue_length') or 0:.0f}" + (f" ({fmt(growth, 'per_s')})"
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


def _persistence(f: parsers.RedisFacts | None) -> Text | str:
    if f is None:
        return "-"
    i = f.info
    text = "aof + snapshots" if i.get("aof_enabled") == "1" else "none"
    if i.get("rdb_last_bgsave_status", "ok") != "ok" or \
            i.get("aof_last_write_status", "ok") != "ok":
        return Text(text + ", FAILING", style="red")
    return text


def _with_delta(m: dict[str, Any], key: str) -> str:
    total = m.get(f"{key}_connections")
    delta = m.get(f"{key}_since_last")
    text = f"{total or 0:.0f}"
    return text + (f" (+{delta:.0f})" if delta else "")


def _db_view(hosts: list[HostStatus], role: str) -> Group:
    def node(key: str) -> Callable[[HostStatus], str]:
        return lambda st: (st.facts["db"].node.get(key) or "-") if "db" in st.facts else "-"

    def met(fn: Callable[[dict[str, Any]], str]) -> Callable[[HostStatus], str]:
        return lambda st: fn(st.metrics.get("db", {})) if "db" in st.facts else "-"

    t = _kv("db", hosts, [
        ("role", lambda st: ("replica" if st.facts["db"].in_recovery else "primary")
         if "db" in st.facts else "-"),
        ("timeline", node("timeline")), ("LSN (replayed)", node("lsn")),
        ("received", node("receive_lsn")),
        ("connections", met(lambda m: f"{m.get('connections') or 0:.0f} of "
                                      f"{m.get('max_connections') or 0:.0f}")),
        ("replication lag", met(lambda m: human_bytes(m["replication_lag_bytes"])
                                if m.get("replication_lag_bytes") is not None else "-")),
        ("lag seconds", met(lambda m: fmt(m.get("replication_lag_s"), "s"))),
        ("WAL receiver", node("wal_receiver")), ("replay", node("replay_paused")),
    ])
    s = _table("db: standbys and slots (as each node sees them)", "host", "kind", "name",
               "address / active", "state", "lag")
    for st in hosts:
        f: parsers.DbFacts | None = st.facts.get("db")
        if f is None:
            continue
        for sb in f.standbys:
            s.add_row(st.host.name, "standby", sb.name, sb.address, f"{sb.state} "
                      f"({sb.sync_state})", human_bytes(sb.lag_bytes) if sb.lag_bytes
                      is not None else "-")
        for sl in f.slots:
            s.add_row(st.host.name, "slot", sl.name, "active" if sl.active else
                      Text("inactive", style="yellow"), "", human_bytes(sl.retained_bytes)
                      if sl.retained_bytes is not None else "-")
    return Group(t, s, _containers_view(hosts, role))


def _pgbouncer_view(hosts: list[HostStatus], role: str) -> Group:
    p = _table("pgbouncer: pools", "host", "database/user", "clients active/waiting",
               "servers active/idle/used", "max wait", "mode")
    d = _table("pgbouncer: databases", "host", "database", "points at", "pool",
               "paused", "queries/s", "avg query", "avg wait")
    for st in hosts:
        if not st.reachable:
            p.add_row(st.host.name, Text(st.error or "unreachable", style="red"), *[""] * 4)
            continue
        f: parsers.PgbouncerFacts | None = st.facts.get("pgbouncer")
        if f is None:
            p.add_row(st.host.name, Text("no answer", style="red"), *[""] * 4)
            continue
        for i, row in enumerate(f.pools):
            wait = float(row.get("maxwait", 0) or 0) + float(row.get("maxwait_us", 0) or 0) / 1e6
            g = row.get
            p.add_row(st.host.name if i == 0 else "", f"{g('database')}/{g('user')}",
                      f"{g('cl_active')} / {g('cl_waiting')}",
                      f"{g('sv_active')} / {g('sv_idle')} / {g('sv_used')}",
                      fmt(wait, "s"), g("pool_mode", ""))
        stats = {r.get("database"): r for r in f.stats}
        m = st.metrics.get("pgbouncer", {})
        target = st.facts.get("pgb_target_host", "")
        for row in f.databases:
            name = row.get("name", "")
            if name == "pgbouncer":
                continue
            sr = stats.get(name, {})
            d.add_row(st.host.name, name, f"{target} ({row.get('host', '')}:"
                      f"{row.get('port', '')})", row.get("pool_size", ""),
                      row.get("paused", ""), fmt(m.get("queries_per_s"), "ratio"),
                      fmt(float(sr.get("avg_query_time", 0) or 0) / 1000, "ms"),
                      fmt(float(sr.get("avg_wait_time", 0) or 0) / 1000, "ms"))
    return Group(p, d, _containers_view(hosts, role))


VIEWS = {"web": _web_view, "nginx": _nginx_view, "worker": _worker_view,
         "redis-cache": _redis_view, "redis-queue": _redis_view, "db": _db_view,
         "pgbouncer": _pgbouncer_view}


def facts_record(st: HostStatus) -> dict[str, Any]:
    """A host's parsed facts in JSON-friendly form (for `fab <role>.status --json`)."""

    def plain(v: Any) -> Any:
        if is_dataclass(v) and not isinstance(v, type):
            return asdict(v)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return {k: plain(v) for k, v in st.facts.items()}
