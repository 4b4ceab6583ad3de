"""The variables a template sees: the host, its role's settings, and the cluster around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..inventory import Host, Inventory
from . import backup

#: Settings every role starts from; `roles:` in the inventory, then a host's `vars:`, win.
ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    # The official image of the last Sentry release sentryfab runs (inventory.py refuses 10+).
    # max_body_mb: the largest request nginx and uWSGI take. Sentry's chunk-upload endpoint
    # tells sentry-cli it may send 32 MiB per request; the rest is room for multipart framing.
    "web": {"image": "sentry", "tag": "9.1.2", "processes": 8, "threads": 4, "base_port": 9000,
            "uid": 999, "max_body_mb": 40},
    # db_outage_seconds: how long a worker retries saving an event while the database is
    # unreachable (a failover) before the event is given up (sentry.conf.py).
    "worker": {"image": "sentry", "tag": "9.1.2", "processes": 4, "concurrency": 4, "uid": 999,
               "visibility_timeout": 300, "db_outage_seconds": 120},
    "cron": {"image": "sentry", "tag": "9.1.2", "uid": 999},
    "nginx": {"port": 80, "worker_processes": "auto", "worker_connections": 4096,
              "max_fails": 2, "fail_timeout": 10, "uid": 0},
    "pgbouncer": {"port": 6432, "pool_mode": "transaction", "max_client_conn": 2000,
                  "default_pool_size": 20, "reserve_pool_size": 5, "max_db_connections": 0,
                  "uid": 101},
    "redis-cache": {"port": 6379, "maxmemory": "1gb", "maxclients": 10000,
                    "tcp_backlog": 4096, "timeout": 300, "tcp_keepalive": 60, "uid": 100},
    # backlog_minutes and event_size size it for events waiting for a worker, at the
    # inventory's events_per_second (plans/capacity.py).
    "redis-queue": {"port": 6379, "maxmemory": "2gb", "maxclients": 10000,
                    "tcp_backlog": 4096, "timeout": 0, "tcp_keepalive": 60, "uid": 100,
                    "backlog_minutes": 30, "event_size": "16kb"},
    # bytes_per_event and wal_bytes_per_event are what `fab capacity --offline` forecasts the
    # disk with (measured on the db hosts otherwise): estimates from Sentry 9's schema, not
    # measurements (plans/forecast.py says how they were made).
    "db": {"port": 5432, "max_connections": 200, "superuser_reserved_connections": 3,
           "shared_buffers": "256MB", "work_mem": "4MB", "max_wal_senders": 10,
           "max_replication_slots": 10, "wal_keep_size": "1GB", "max_slot_wal_keep_size": "10GB",
           "synchronous": False, "uid": 101,
           "bytes_per_event": "8kb", "wal_bytes_per_event": "16kb"},
    "backup": backup.DEFAULTS,
}

SENTRY_DB = {"name": "sentry", "user": "sentry"}

#: The SMTP port when the inventory names a mail host but no port: submission with STARTTLS
#: if use_tls, else plain SMTP.
MAIL_PORTS = {True: 587, False: 25}


def site(inv: Inventory) -> dict[str, Any]:
    """The cluster-wide Sentry settings of the inventory's `sentry:` section, with defaults."""
    raw = dict(inv.extra.get("sentry") or {})
    url = str(raw.get("url") or "")
    mail = dict(raw.get("mail") or {})
    use_tls = bool(mail.get("use_tls", False))
    return {
        "url": url,
        "https": url.startswith("https://"),
        "admin_email": str(raw.get("admin_email") or ""),
        "single_organization": bool(raw.get("single_organization", True)),
        "sample_data": bool(raw.get("sample_data", True)),
        "mail": {
            "host": str(mail.get("host") or ""),
            "port": int(mail.get("port") or MAIL_PORTS[use_tls]),
            "use_tls": use_tls,
            "username": str(mail.get("username") or ""),
            "from": str(mail.get("from") or f"sentry@{_domain(url) or 'localhost'}"),
        },
        "filestore": filestore(inv),
    }


#: Where Sentry's files (release artifacts, source maps, debug files) live on a host when the
#: inventory does not say, and where the official image keeps them inside its containers.
FILESTORE_PATH = "/var/lib/sentryfab/files"
FILESTORE_MOUNT = "/var/lib/sentry/files"


def filestore(inv: Inventory) -> dict[str, Any]:
    """The inventory's `sentry: filestore:` with defaults: backend, the host path mounted into
    every Sentry container (filesystem), whether that path is shared storage, and the
    options Sentry's filestore backend gets."""
    raw = dict((inv.extra.get("sentry") or {}).get("filestore") or {})
    backend = str(raw.get("backend") or "filesystem")
    path = str(raw.get("path") or FILESTORE_PATH)
    options = dict(raw.get("options") or {})
    if backend == "filesystem":
        options = {"location": FILESTORE_MOUNT}
    return {"backend": backend, "path": path, "shared": bool(raw.get("shared", False)),
            "options": options}


def retention(inv: Inventory) -> dict[str, Any]:
    """How long events are kept (`sentry: retention_days`, Sentry's default 90) and when the
    daily cleanup runs (`sentry: cleanup_at`, HH:MM UTC)."""
    from ..containers.cleanup import DEFAULT_AT, DEFAULT_DAYS

    raw = dict(inv.extra.get("sentry") or {})
    return {"days": int(raw.get("retention_days") or DEFAULT_DAYS),
            "at": str(raw.get("cleanup_at") or DEFAULT_AT)}


def _domain(url: str) -> str:
    return url.partition("://")[2].partition("/")[0].partition(":")[0]


@dataclass(frozen=True)
class ClusterState:
    """Facts that are state, not configuration: where the database primary is now, and
    whether synchronous replication was turned off on purpose (`fab db.degrade`, or a
    failover that left no replica to wait for)."""

    primary: str
    degraded: bool = False


def initial_state(inv: Inventory) -> ClusterState:
    """Before anything is discovered: the db host marked initial_primary, else the first."""
    dbs = inv.with_role("db")
    marked = [h for h in dbs if h.vars.get("initial_primary")]
    return ClusterState(primary=(marked or dbs)[0].name if dbs else "")


def settings(inv: Inventory, role: str, host: Host | None = None) -> dict[str, Any]:
    """A role's settings on a host: defaults < inventory roles.<role> < the host's vars."""
    out = dict(ROLE_DEFAULTS.get(role, {}))
    out.update(inv.role_vars(role))
    if host is not None:
        out.update(host.vars)
    return out


def _endpoint(h: Host, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": h.name, "address": h.address, "port": port, **extra}


def web_ports(inv: Inventory, host: Host) -> list[int]:
    """The ports of a web host's processes: base_port, base_port+1, ..."""
    s = settings(inv, "web", host)
    return [int(s["base_port"]) + i for i in range(int(s["processes"]))]


def topology(inv: Inventory, state: ClusterState) -> dict[str, Any]:
    """Every host other configs point at, by role (addresses and ports)."""

    def eps(role: str) -> list[dict[str, Any]]:
        return [_endpoint(h, int(settings(inv, role, h).get("port", 0))) for h in
                inv.with_role(role)]

    dbs = eps("db")
    primary = next((d for d in dbs if d["name"] == state.primary), dbs[0] if dbs else None)
    return {
        "web": [_endpoint(h, 0, ports=web_ports(inv, h)) for h in inv.with_role("web")],
        "worker": [_endpoint(h, 0) for h in inv.with_role("worker")],
        "cron": [_endpoint(h, 0) for h in inv.with_role("cron")],
        "redis_cache": eps("redis-cache"),
        "redis_queue": eps("redis-queue"),
        "db": dbs,
        "db_primary": primary,
        "db_replicas": [d for d in dbs if primary is None or d["name"] != primary["name"]],
        "db_degraded": state.degraded,
        "pgbouncer": eps("pgbouncer"),
        "nginx": eps("nginx"),
        "all_hosts": [_endpoint(h, 0) for h in inv.hosts],
    }


def pgbouncer_for(inv: Inventory, host: Host) -> dict[str, Any] | None:
    """The PgBouncer a Sentry host talks to: spread evenly, the same one every render."""
    bouncers = inv.with_role("pgbouncer")
    if not bouncers:
        return None
    if host.has("pgbouncer"):  # a bouncer beside the app is its natural choice
        b = host
    else:
        sentry_hosts = [h for h in inv.hosts if {"web", "worker", "cron"} & set(h.roles)]
        index = next((i for i, h in enumerate(sentry_hosts) if h.name == host.name), 0)
        b = bouncers[index % len(bouncers)]
    return _endpoint(b, int(settings(inv, "pgbouncer", b)["port"]))


def statsd(inv: Inventory) -> dict[str, Any] | None:
    """The statsd target from the inventory ('host:port', '[v6]:port' or 'host'), if any."""
    raw = inv.extra.get("statsd")
    if not raw:
        return None
    text = str(raw).strip()
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():  # 'host' alone
        host, port = text, ""
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return {"host": host, "port": int(port) if port else 8125}


def build(inv: Inventory, host: Host, role: str, state: ClusterState,
          drained: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Everything a role's templates may use on this host (secrets come separately).

    `drained` holds 'address:port' of web processes that nginx must not send requests to
    (taken out of rotation while a deploy replaces them).
    """
    return {
        "drained": drained,
        "cluster": inv.cluster,
        "host": {"name": host.name, "address": host.address, "roles": list(host.roles)},
        "role": role,
        "s": settings(inv, role, host),
        "sentry": {**SENTRY_DB, "web": settings(inv, "web", host),
                   "worker": settings(inv, "worker", host)},
        "topology": topology(inv, state),
        "pgbouncer": pgbouncer_for(inv, host),
        "statsd": statsd(inv),
        "site": site(inv),
        "web_ports": web_ports(inv, host) if host.has("web") else [],
        "backup": backup_settings(inv),
    }


def backup_settings(inv: Inventory) -> dict[str, Any] | None:
    """The backup role as the other roles' templates see it (None: no backup host)."""
    host = backup.backup_host(inv)
    return backup.context(inv, settings(inv, "backup", host) if host else None)
