"""Warning and critical levels: one table of defaults, overridable per role and per host.

    roles:
      redis-queue:
        thresholds: {memory_pct: [70, 90]}      # [warning, critical]; null turns one off
    hosts:
      db-2: {address: ..., roles: [db], vars: {thresholds: {replication_lag_s: [10, 60]}}}
    thresholds: {disk_pct: [75, 90]}            # top level: every host and role

A value strictly above a level has that severity. Metric names are unique across scopes, so
a flat mapping is never ambiguous. Precedence: defaults (every role's, the role's own, then
the payload ones if the role holds event payloads) < top-level < the role's < the host's
vars (host metrics such as disk_pct take every role of the host, in order).
"""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import InventoryError
from ..inventory import Host, Inventory
from .metrics import LEVELLED, METRICS
from .model import Problem, Severity
from .pipeline import PAYLOAD_ROLES, PAYLOAD_TTL_S

#: (warning, critical); None means no such level.
Levels = tuple[float | None, float | None]

#: The defaults, by scope: 'host' for every machine, '*' for every role, then each role, then
#: 'payload' for the roles that hold event payloads (pipeline.PAYLOAD_ROLES).
DEFAULTS: dict[str, dict[str, Levels]] = {
    "host": {
        # Beyond the connect, a command costs about a millisecond on a LAN: 300 ms means a
        # loaded sshd or a congested network, 2 s means the host is barely usable.
        "ssh_ms": (300, 2000),
        "load_per_cpu": (2.0, 4.0),
        "mem_pct": (90, 97),
        "disk_pct": (80, 90),
        "fds_pct": (70, 90),
    },
    # Any restart is worth a look; several between two checks is a crash loop.
    "*": {"restarts": (0, 2)},
    "web": {"health_ms": (1000, 3000), "web_down_pct": (30, 50)},
    "nginx": {
        "upstreams_down_pct": (0, 50),
        # Share of ingestion requests (last minute) not answered 2xx: each one an event the
        # SDK did not deliver.
        "ingest_error_pct": (1, 10),
        # Any: some client loses every event it sends, silently (its own finding).
        "ingest_missing_endpoint_per_s": (0, None),
    },
    # A worker that finds no payload under a task's key has lost an accepted event.
    "worker": {"payloads_missing": (None, 0)},
    # The daily `sentry cleanup`: a day missed is a warning (the database grows a day's
    # events); failing two days in a row is critical (it will not catch up by itself).
    "cron": {"cleanup_hours_since_run": (26, None), "cleanup_failed_in_a_row": (0, 1)},
    # A day without a good backup is a warning, two are critical; a drill that failed is
    # critical (the backups may not restore); none for two days is a warning.
    "backup": {"backup_hours_since_good": (26, 50), "drill_hours_since_run": (50, None),
               "drill_failed": (None, 0)},
    # The cache evicts by design (allkeys-lru): full memory is normal there. Evicting at all
    # means it is smaller than what Sentry keeps in it for its TTLs, and loses events if
    # payloads are still stored there (an old sentry.conf.py): worth a look, not a page.
    "redis-cache": {"clients_pct": (70, 90), "rejected_connections": (0, 100),
                    "evicted_since_last": (0, None)},
    "redis-queue": {
        # The queue must fit in memory (noeviction: a full queue refuses events).
        "memory_pct": (70, 90),
        "clients_pct": (70, 90),
        "rejected_connections": (0, 100),
        # An eviction on the queue is a lost event, whatever the count.
        "evicted_keys": (None, 0),
        "queue_length": (10_000, 100_000),
        "queue_growth_per_s": (100, 1000),
        # Workers take an event within seconds: one accepted 5 minutes ago and still queued
        # means they have not kept up for 5 minutes, not a blip. Critical at half the
        # payload's TTL (3600 s): past the TTL the payload is gone even on a Redis that never
        # evicts, and half an hour is still time to add workers.
        "backlog_age_s": (300, PAYLOAD_TTL_S / 2),
    },
    "db": {
        # Every WAL segment waiting for the archive is a window a restore cannot reach: five
        # minutes is critical (archive_timeout is one minute by default).
        "archive_lag_s": (None, 300),
        "connections_pct": (70, 90),
        # 16 MB is one WAL segment; failing over past that loses a segment of writes.
        "replication_lag_bytes": (1_000_000, 16_000_000),
        "replication_lag_s": (30, 300),
    },
    "pgbouncer": {"cl_waiting": (10, 100), "maxwait_s": (1, 5)},
    # Wherever event payloads wait for a worker (they win over the role's own defaults).
    "payload": {
        # A payload Redis runs noeviction: when full, it refuses writes and web answers new
        # events with errors (SDKs drop them). Payloads are deleted once saved, so memory in
        # use is the backlog: 70% means it is eating the headroom, 85% leaves only the last
        # 15% (less fork copy-on-write and fragmentation, which maxmemory does not count).
        "memory_pct": (70, 85),
        # Any eviction here is an accepted event's payload dropped: an event lost.
        "evicted_keys": (None, 0),
    },
}


def _overrides(raw: Any) -> dict[str, Levels]:
    if not isinstance(raw, dict):
        return {}
    return {metric: (pair[0], pair[1]) for metric, pair in raw.items()
            if isinstance(pair, list | tuple) and len(pair) == 2}


def levels(inv: Inventory, host: Host, scope: str) -> dict[str, Levels]:
    """Every metric's levels for `scope` ('host' or a role) on `host`."""
    out: dict[str, Levels] = {}
    if scope != "host":
        out.update(DEFAULTS["*"])
    out.update(DEFAULTS.get(scope, {}))
    if scope in PAYLOAD_ROLES:
        out.update(DEFAULTS["payload"])
    out.update(_overrides(inv.extra.get("thresholds")))
    for role in (host.roles if scope == "host" else (scope,)):
        out.update(_overrides(inv.role_vars(role).get("thresholds")))
    out.update(_overrides(host.vars.get("thresholds")))
    return out


def severity_of(value: float | None, lv: Levels) -> tuple[Severity, float | None]:
    """('critical', level) if above critical, ('warning', level) if above warning, else ok."""
    warn, crit = lv
    if value is None:
        return "ok", None
    if crit is not None and value > crit:
        return "critical", crit
    if warn is not None and value > warn:
        return "warning", warn
    return "ok", None


def evaluate(metric: str, value: float | None, lv: dict[str, Levels],
             label: str | None = None) -> Problem | None:
    """A Problem if `value` is above a level: 'replication lag 48 MB (critical > 16 MB)'."""
    if metric not in lv:
        return None
    sev, limit = severity_of(value, lv[metric])
    if sev == "ok":
        return None
    described = METRICS[metric]
    text = (f"{label or described.label} {fmt(value, described.unit)} "
            f"({sev} > {fmt(limit, described.unit)})")
    return Problem(sev, text, metric=metric, value=value, limit=limit)


def fmt(value: float | None, unit: str) -> str:
    """A value in its unit, short: '48 MB', '93%', '1.2 s', '250 ms', '12/s'."""
    if value is None:
        return "-"
    if unit == "bytes":
        return human_bytes(value)
    if unit == "pct":
        if value >= 10 or value == 0:
            return f"{value:.0f}%"
        return f"{value:.1f}%" if value >= 1 else f"{value:.2f}%"
    if unit == "s":
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    if unit == "duration":
        return duration(value)
    if unit == "hours_ago":
        return f"{value:.0f} h ago"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "per_s":
        return f"{value:+.0f}/s" if abs(value) >= 10 else f"{value:+.1f}/s"
    if unit == "rate":
        return rate(value)
    if unit == "ratio":
        return f"{value:.2f}"
    return f"{value:.0f}"


def rate(per_s: float) -> str:
    """Events per second, unsigned: '4980/s', '2.5/s', '0.02/s' (one a minute), '0/s'."""
    if per_s >= 10 or per_s == 0:
        return f"{per_s:.0f}/s"
    return f"{per_s:.1f}/s" if per_s >= 1 else f"{per_s:.2f}/s"


def duration(seconds: float) -> str:
    """A wait as a person reads it: '45 s', '12 min', '1.5 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def human_bytes(n: float) -> str:
    """Decimal units as df -H and most dashboards show them: '48 MB', '1.5 GB'."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            v = n / size
            return f"{v:.1f} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return f"{n:.0f} B"


def validate(inv: Inventory) -> None:
    """Every `thresholds` mapping in the inventory well-formed; InventoryError listing all."""
    problems: list[str] = []
    places: list[tuple[str, Any]] = [("thresholds", inv.extra.get("thresholds"))]
    places += [(f"roles/{role}/thresholds", role_vars.get("thresholds"))
               for role, role_vars in inv.roles.items()]
    places += [(f"hosts/{host.name}/vars/thresholds", host.vars.get("thresholds"))
               for host in inv.hosts]
    for path, raw in places:
        if raw is None:
            continue
        if not isinstance(raw, dict):
            problems.append(f"{inv.path.name}: {path}: must be a mapping of metric: "
                            "[warning, critical]")
            continue
        for name, lv in raw.items():
            problems += _check_one(inv.path.name, f"{path}/{name}", str(name), lv)
    if problems:
        raise InventoryError(problems)


def _check_one(label: str, path: str, name: str, lv: Any) -> list[str]:
    where = f"{label}: {path}"
    if name not in LEVELLED:
        close = difflib.get_close_matches(name, list(LEVELLED), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(LEVELLED)})"
        return [f"{where}: unknown metric '{name}'{hint}"]
    if not isinstance(lv, list | tuple) or len(lv) != 2 or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in lv):
        return [f"{where}: must be [warning, critical], two numbers (null turns one off), "
                f"got {lv!r}"]
    if lv[0] is not None and lv[1] is not None and lv[0] > lv[1]:
        return [f"{where}: the warning level {lv[0]} is above the critical level {lv[1]}"]
    return []
