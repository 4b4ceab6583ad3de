"""statsd over UDP, plain line protocol: gauges for every status metric, counters for events.

    sentryfab.<role>.<host>.<metric>:<value>|g      (role 'host' for the machine's own)
    sentryfab.deploy.web:1|c

Lines are packed into datagrams of at most 1400 bytes (under a 1500-byte Ethernet MTU with
IP and UDP headers), split only between lines. Sending never raises into a deploy: a metrics
server being down must not fail the work being counted.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable

from ..errors import UsageError
from .metrics import Key
from .model import StatusReport

PREFIX = "sentryfab"
MAX_PACKET = 1400
DEFAULT_PORT = 8125

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def parse_target(text: str) -> tuple[str, int]:
    """'host:port' (or 'host', port 8125) -> (host, port); UsageError if malformed."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), str(DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--statsd {text!r}: expected HOST:PORT, e.g. statsd.internal:8125")
    return host, int(port)


def name_part(text: str) -> str:
    """A path segment statsd will not split: dots and odd characters become '_'."""
    return _UNSAFE.sub("_", text) or "_"


def number(value: float | int | bool) -> str:
    """A value without exponent or trailing zeros: 3, 0.25, 1500000."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def gauge(name: str, value: float | int | bool) -> list[str]:
    """Lines setting a gauge; a negative value is set via 0 (a leading '-' means 'subtract')."""
    if not isinstance(value, bool) and value < 0:
        return [f"{name}:0|g", f"{name}:{number(value)}|g"]
    return [f"{name}:{number(value)}|g"]


def counter(name: str, value: int = 1) -> str:
    """A counter line: 'sentryfab.deploy.web:1|c'."""
    return f"{PREFIX}.{name}:{value}|c"


def gauge_lines(report: StatusReport) -> list[str]:
    """Every numeric metric of every host, plus the cluster's own figures."""
    lines: list[str] = []
    for st in report.hosts:
        host = name_part(st.host.name)
        if not st.reachable:
            lines += gauge(f"{PREFIX}.host.{host}.{Key.REACHABLE}", 0)
        for scope, metrics in st.metrics.items():
            for metric, value in metrics.items():
                if isinstance(value, int | float):
                    lines += gauge(f"{PREFIX}.{name_part(scope)}.{host}.{name_part(metric)}",
                                   value)
        sev = {"ok": 0, "warning": 1, "critical": 2}[st.severity]
        lines += gauge(f"{PREFIX}.host.{host}.{Key.SEVERITY}", sev)
    cluster = f"{PREFIX}.cluster.{name_part(report.cluster)}"
    view = report.view
    lines += gauge(f"{cluster}.{Key.SEVERITY}", report.exit_code)
    lines += gauge(f"{cluster}.{Key.PRIMARIES}", len(view.primaries))
    lines += gauge(f"{cluster}.{Key.CRONS}", len(view.cron_hosts))
    # The view's figures of these names (None: not measured this round).
    for key in (Key.QUEUE_LENGTH, Key.BACKLOG_AGE_S, Key.INGEST_PER_S, Key.INGEST_ERROR_PCT,
                Key.PAYLOADS_MISSING):
        value = getattr(view, key)
        if value is not None:
            lines += gauge(f"{cluster}.{key}", value)
    return lines


def packets(lines: Iterable[str], limit: int = MAX_PACKET) -> list[bytes]:
    """Newline-joined lines, as many per datagram as fit in `limit` bytes."""
    out: list[bytes] = []
    current = b""
    for line in lines:
        data = line.encode()
        if len(data) > limit:
            continue  # a single line that cannot fit anywhere is dropped, not truncated
        if current and len(current) + 1 + len(data) > limit:
            out.append(current)
            current = b""
        current = current + b"\n" + data if current else data
    if current:
        out.append(current)
    return out


def send(target: tuple[str, int], lines: Iterable[str]) -> int:
    """Send the lines in as few datagrams as fit; returns the number of datagrams sent."""
    chunks = packets(lines)
    infos = socket.getaddrinfo(target[0], target[1], type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for chunk in chunks:
            sock.sendto(chunk, addr)
    return len(chunks)


def count(target: tuple[str, int] | None, name: str, value: int = 1) -> str | None:
    """Send one counter, fire-and-forget; returns why it failed (None if sent or no target)."""
    if target is None:
        return None
    try:
        send(target, [counter(name, value)])
    except OSError as e:
        return f"statsd {target[0]}:{target[1]}: {e.strerror or e}"
    return None


def inventory_target(raw: object) -> tuple[str, int] | None:
    """The inventory's `statsd: host:port`, if set."""
    return parse_target(str(raw)) if raw else None


def count_for(raw_target: object, name: str, ok: bool = True) -> str | None:
    """Count an event ('deploy.web'; 'deploy.web.failed' if not ok) to the inventory's statsd.

    What deploys, rollbacks and failovers call: returns why it could not be sent (None when
    sent, or when the inventory names no statsd), never raises.
    """
    try:
        target = inventory_target(raw_target)
    except UsageError as e:
        return str(e)
    return count(target, name if ok else f"{name}.failed")
