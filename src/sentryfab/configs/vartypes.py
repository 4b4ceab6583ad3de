"""The declared type of every var a template reads, checked before anything is rendered.

The inventory's validation checks most of this when it loads; this is the renderer's own
check, so that no file depends on it: a role or host var that reaches a config file is of
its declared type, and no string anywhere in the inventory holds a control character or a
line break (which would add lines to pgbouncer.ini, postgresql.conf or sentry.conf.py that
their own validators accept). Problems name the inventory path (roles/pgbouncer/pool_mode,
hosts/web-3/vars/threads), like the inventory's own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..inventory import Host, Inventory
from ..roles import SENTRY_ROLES
from .escape import CONTROL_RE, INT_RE, PG_SIZE_RE, REDIS_SIZE_RE

#: None if a value is fine, else what it must be.
Check = Callable[[Any], str | None]

_HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
_ZONE_RE = re.compile(r"[^%]+%[A-Za-z0-9_.-]{1,15}")


def whole(least: int, most: int | None = None) -> Check:
    """A whole number from `least` (to `most`): an int, or text of digits."""
    want = f"a whole number {least}-{most}" if most is not None else \
        f"a whole number ({least} or more)"

    def check(value: Any) -> str | None:
        ok = not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, str) and bool(INT_RE.fullmatch(value))))
        if ok and int(value) >= least and (most is None or int(value) <= most):
            return None
        return f"must be {want}"
    return check


def one_of(*choices: str) -> Check:
    """One of a few words."""
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _pg_size(value: Any) -> str | None:
    ok = not isinstance(value, bool) and PG_SIZE_RE.fullmatch(str(value))
    return None if ok else "must be a PostgreSQL size like 256MB (units B, kB, MB, GB, TB)"


def _redis_size(value: Any) -> str | None:
    ok = not isinstance(value, bool) and REDIS_SIZE_RE.fullmatch(str(value))
    return None if ok else "must be a Redis size like 2gb (b, k, kb, m, mb, g, gb)"


def _auto_or_whole(value: Any) -> str | None:
    return None if value == "auto" or whole(1)(value) is None else \
        "must be auto or a whole number (1 or more)"


def is_host(text: str) -> bool:
    """An IP address (IPv6 with an optional %zone) or a DNS name."""
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
        return "%" not in text or _ZONE_RE.fullmatch(text) is not None
    except ValueError:
        return bool(_HOSTNAME_RE.fullmatch(text))


def _hh_mm(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value)
    return None if ok else "must be a time of day HH:MM (UTC), quoted"


PORT = whole(1, 65535)

#: Every var a template reads, by name: the same name has the same type in every role.
VAR_TYPES: dict[str, Check] = {
    # every role
    "port": PORT, "uid": whole(0, 2**31 - 1),
    # Sentry: web, worker
    "processes": whole(1), "threads": whole(1), "concurrency": whole(1), "base_port": PORT,
    "max_body_mb": whole(1), "db_outage_seconds": whole(1), "visibility_timeout": whole(1),
    # nginx
    "worker_processes": _auto_or_whole, "worker_connections": whole(1), "max_fails": whole(0),
    "fail_timeout": whole(0),
    # PgBouncer
    "pool_mode": one_of("session", "transaction", "statement"), "max_client_conn": whole(1),
    "default_pool_size": whole(1), "reserve_pool_size": whole(0),
    "max_db_connections": whole(0),
    # Redis
    "maxmemory": _redis_size, "maxclients": whole(1), "tcp_backlog": whole(1),
    "timeout": whole(0), "tcp_keepalive": whole(0),
    # PostgreSQL
    "max_connections": whole(1), "superuser_reserved_connections": whole(0),
    "shared_buffers": _pg_size, "work_mem": _pg_size, "max_wal_senders": whole(0),
    "max_replication_slots": whole(0), "wal_keep_size": _pg_size,
    "max_slot_wal_keep_size": _pg_size, "synchronous": _bool,
    # pgBackRest (backup role): archive_timeout is seconds; full_on a weekday, 0 Monday
    "retention_full": whole(1, 9999), "retention_diff": whole(1, 9999),
    "process_max": whole(1, 999), "archive_timeout": whole(1, 86400), "full_on": whole(0, 6),
    "backup_at": _hh_mm, "drill_at": _hh_mm,
}


class _Found:
    """Problems in the order found, one per inventory path: the first says enough."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.out: list[str] = []
        self.seen: set[str] = set()

    def add(self, path: str, why: str, value: Any) -> None:
        """'<inventory>: <path>: why, got value', unless `path` has a problem already."""
        if path not in self.seen:
            self.seen.add(path)
            self.out.append(f"{self.inv.path.name}: {path}: {why}, got {value!r}")

    def check(self, path: str, var: str, value: Any) -> None:
        """`value` against the declared type of `var` (a var with none passes)."""
        why = VAR_TYPES[var](value) if var in VAR_TYPES else None
        if why:
            self.add(path, why, value)


def problems(inv: Inventory, rendered: Iterable[tuple[Host, str]]) -> list[str]:
    """'<inventory>: <path>: what is wrong' for every var of the wrong type and every string
    holding a control character that the files of `rendered` (host, role) read: their role
    and host vars, every host's name, address and ports (in other hosts' files), `cluster`,
    `statsd` and `sentry:`. A wrong var nothing rendered reads stops nothing (a failover
    renders PgBouncer's files whatever a web host's vars say)."""
    found = _Found(inv)
    read = _read_by(inv, rendered)
    for path, value in _strings(read):
        m = CONTROL_RE.search(value)
        if m:
            found.add(path, f"holds a control character or a line break (U+{ord(m.group()):04X}), "
                            "which would add lines to the rendered files", value)
    for base, vars_ in read.items():
        if base.startswith(("roles/", "hosts/")):
            for var, value in vars_.items():
                found.check(f"{base}/{var}", var, value)
    for h in inv.hosts:
        _check_host(found, inv, h)
    _check_statsd(found, inv.extra.get("statsd"))
    return found.out


def _read_by(inv: Inventory, rendered: Iterable[tuple[Host, str]]) -> dict[str, Any]:
    """What the files of `rendered` read, by inventory path: `cluster`, `statsd`, `sentry:`,
    their roles' vars (a Sentry role's files read web's and worker's too) and host vars."""
    read: dict[str, Any] = {"cluster": inv.cluster, "statsd": inv.extra.get("statsd"),
                            "sentry": inv.extra.get("sentry")}
    for host, role in rendered:
        for r in (role, *(("web", "worker") if role in SENTRY_ROLES else ())):
            read[f"roles/{r}"] = inv.roles.get(r) or {}
        read[f"hosts/{host.name}/vars"] = host.vars
    return read


def _check_host(found: _Found, inv: Inventory, h: Host) -> None:
    """What every rendered file may say about a host: its name, address and ports."""
    for path, value in ((f"hosts/{h.name}", h.name), (f"hosts/{h.name}/address", h.address)):
        m = CONTROL_RE.search(value)
        if m:
            found.add(path, f"holds a control character or a line break (U+{ord(m.group()):04X})",
                      value)
    if not is_host(h.address):
        found.add(f"hosts/{h.name}/address", "must be an IP address or a host name", h.address)
    # What other hosts' files say about this one: its ports.
    for role in h.roles:
        for var in ("port", "base_port", "processes") if role == "web" else ("port",):
            if var in h.vars:
                found.check(f"hosts/{h.name}/vars/{var}", var, h.vars[var])
            elif var in (inv.roles.get(role) or {}):
                found.check(f"roles/{role}/{var}", var, inv.roles[role][var])


def _check_statsd(found: _Found, raw: Any) -> None:
    """`statsd:` is host:port, or a host alone (port 8125)."""
    if raw:
        host, sep, port = str(raw).strip().rpartition(":")
        if not sep:
            host, port = str(raw).strip(), "8125"
        if not (is_host(host.removeprefix("[").removesuffix("]")) and PORT(port) is None):
            found.add("statsd", "must be host:port (an IP address or a host name, and a port)",
                      raw)


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(inventory path, text) of every string in `value`, keys included."""
    found: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            sub = f"{path}/{k}" if path else str(k)
            found.append((f"{sub} (a key)", str(k)))
            found += _strings(v, sub)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found += _strings(v, f"{path}/{i}")
    elif isinstance(value, str):
        found.append((path, value))
    return found
