"""capacity.probe: ramp the lab's event rate step by step until it breaks; say what saturated.

Each step sends events through nginx at a fixed rate (lab.load) while every host is sampled
over its already-open SSH connection: CPU of the web hosts, PgBouncer's waiting clients,
PostgreSQL's connections, Redis' clients and memory, and the queue's length (its growth is
the workers falling behind). A step fails when more than `max_error_pct` of its requests
fail or its p99 latency passes `max_p99_ms`; the probe stops at the first failed step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..configs.context import settings
from ..inventory import Host, Inventory
from ..lab import load
from ..remote import Runner, Session
from ..secrets import Secrets
from ..shell import join

#: A metric counts as saturated at this fraction of its limit.
SATURATED = 0.9


@dataclass
class Step:
    """One rate held for a while, and what the cluster looked like under it."""

    rate: float
    sent: int
    accepted: int
    failed: int
    p99_ms: float
    achieved: float
    metrics: dict[str, float] = field(default_factory=dict)  # name -> fraction of its limit
    ok: bool = True


@dataclass
class ProbeReport:
    """The ramp, the sustained rate, the breaking point and the first thing to saturate."""

    steps: list[Step] = field(default_factory=list)
    first_saturated: str | None = None
    first_saturated_at: float | None = None

    @property
    def sustained(self) -> float:
        """The best achieved rate of a step that passed."""
        return max((s.achieved for s in self.steps if s.ok), default=0.0)

    @property
    def breaking_point(self) -> float | None:
        """The rate of the first failed step, if one failed."""
        return next((s.rate for s in self.steps if not s.ok), None)


def cpu_command() -> str:
    """Busy and total jiffies of all CPUs (first line of /proc/stat)."""
    return "head -n 1 /proc/stat"


def parse_cpu(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from a /proc/stat 'cpu' line."""
    fields = [int(x) for x in text.split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _sample(s: Session, inv: Inventory, secrets: Secrets) -> dict[str, float]:
    """Raw numbers of one host (absolute values; fractions are made by the caller)."""
    h = s.host
    out: dict[str, float] = {}
    if h.has("pgbouncer"):
        port = int(settings(inv, "pgbouncer", h)["port"])
        sql = (f"PGPASSWORD=$(cat) psql -h {h.address} -p {port} -U pgbouncer -d pgbouncer "
               "-At -F ' ' -c 'SHOW POOLS'")
        r = s.run(join(["docker", "exec", "-i", "sentry-pgbouncer-1", "sh", "-c", sql]),
                  stdin=secrets.get("pgbouncer_admin_password").encode())
        waiting = [int(line.split()[4]) for line in r.stdout.splitlines()
                   if len(line.split()) > 4 and line.split()[4].isdigit()]
        out["pgbouncer_cl_waiting"] = float(sum(waiting))
    if h.has("db"):
        r = s.run(join(["docker", "exec", "--user", "postgres", "sentry-db-1", "psql", "-Atc",
                        "select count(*), current_setting('max_connections') from "
                        "pg_stat_activity where not pg_is_in_recovery()"]))
        parts = r.stdout.strip().split("|")
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) > 0:
            out["pg_connections"] = float(parts[0])
            out["pg_max_connections"] = float(parts[1])
    for role in ("redis-cache", "redis-queue"):
        if h.has(role):
            rs = settings(inv, role, h)
            cli = f"redis-cli --no-auth-warning -h {h.address} -p {int(rs['port'])}"
            keys = rs.get("queue_keys") or ["sentry-lab:queue"] if role == "redis-queue" else []
            script = (f'REDISCLI_AUTH="$(cat)"; export REDISCLI_AUTH; {cli} INFO clients; '
                      f"{cli} INFO memory; " + "".join(f"{cli} LLEN {k}; " for k in keys))
            r = s.run(join(["docker", "exec", "-i", f"sentry-{role}-1", "sh", "-c", script]),
                      stdin=secrets.get("redis_password").encode())
            info = dict(line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)
            tag = role.replace("-", "_")
            out[f"{tag}_clients"] = float(info.get("connected_clients", "0").strip() or 0)
            out[f"{tag}_maxclients"] = float(rs["maxclients"])
            out[f"{tag}_used_memory"] = float(info.get("used_memory", "0").strip() or 0)
            out[f"{tag}_maxmemory"] = float(info.get("maxmemory", "0").strip() or 0)
            lengths = [int(x) for x in r.stdout.split() if x.isdigit()][-len(keys):] if keys \
                else []
            if role == "redis-queue":
                out["queue_length"] = float(sum(lengths))
    return out


def fractions(raw: dict[str, float], queue_before: float, sent: int) -> dict[str, float]:
    """Each metric as a fraction of its limit (1.0 = saturated). Pure."""
    f: dict[str, float] = {}
    if "web_cpu" in raw:
        f["web CPU"] = raw["web_cpu"]
    if "pgbouncer_cl_waiting" in raw:
        # Any client waiting for a server connection means the pool is the bottleneck.
        f["pgbouncer waiting"] = 1.0 if raw["pgbouncer_cl_waiting"] > 0 else 0.0
    if raw.get("pg_max_connections"):
        f["pg connections"] = raw["pg_connections"] / raw["pg_max_connections"]
    for tag, name in (("redis_cache", "cache"), ("redis_queue", "queue")):
        if raw.get(f"{tag}_maxclients"):
            f[f"{name} clients"] = raw[f"{tag}_clients"] / raw[f"{tag}_maxclients"]
        if raw.get(f"{tag}_maxmemory"):
            f[f"{name} memory"] = raw[f"{tag}_used_memory"] / raw[f"{tag}_maxmemory"]
    if "queue_length" in raw and sent:
        # The queue grew by a tenth of what was sent in the step: workers fall behind.
        f["queue growth"] = max(0.0, raw["queue_length"] - queue_before) / (0.1 * sent)
    return f


def probe(runner: Runner, inv: Inventory, secrets: Secrets, *, key: str, start: float = 50,
          factor: float = 1.5, step_seconds: float = 10, max_rate: float = 5000,
          max_error_pct: float = 1.0, max_p99_ms: float = 2000,
          on_step: Callable[[Step], None] | None = None) -> ProbeReport:
    """Ramp from `start` events/s, times `factor` each step, until a step fails.

    `key` is the DSN public key the events are sent with (lab/sentry_project.py)."""
    report = ProbeReport()
    hosts = [h for h in inv.hosts if h.roles]
    web = [h for h in hosts if h.has("web")]
    url = load.default_url(inv)
    queue_before = _raw(runner, hosts, inv, secrets).get("queue_length", 0.0)
    rate = start
    while rate <= max_rate:
        cpu0 = _cpu(runner, web)
        box: dict = {}
        t = threading.Thread(target=_load_into, args=(box, url, rate, step_seconds, key),
                             daemon=True)
        t.start()
        time.sleep(step_seconds * 0.8)  # sample near the end: the step's steady state
        raw = _raw(runner, hosts, inv, secrets)
        t.join()
        busy = _cpu(runner, web)
        raw["web_cpu"] = _busy_fraction(cpu0, busy)
        lr: load.LoadReport = box["r"]
        step = Step(rate, lr.sent, lr.accepted, lr.failures, lr.latency.get("p99", 0) * 1000,
                    lr.accepted / lr.seconds if lr.seconds else 0.0,
                    fractions(raw, queue_before, lr.sent))
        queue_before = raw.get("queue_length", queue_before)
        errors = 100.0 * lr.failures / lr.sent if lr.sent else 100.0
        # Also failed: a step whose sender could not keep the rate (the client is saturated).
        step.ok = errors <= max_error_pct and step.p99_ms <= max_p99_ms and \
            lr.achieved_rate >= 0.9 * rate
        report.steps.append(step)
        if report.first_saturated is None:
            hot = [(v, k) for k, v in step.metrics.items() if v >= SATURATED]
            if hot:
                report.first_saturated, report.first_saturated_at = max(hot)[1], rate
        if on_step:
            on_step(step)
        if not step.ok:
            if report.first_saturated is None and step.metrics:
                report.first_saturated = max(step.metrics, key=step.metrics.get)
                report.first_saturated_at = rate
            break
        rate = round(rate * factor)
    return report


def _load_into(box: dict, url: str, rate: float, seconds: float, key: str) -> None:
    box["r"] = load.run_load(url, rate, seconds, key=key)


def _raw(runner: Runner, hosts: list[Host], inv: Inventory, secrets: Secrets
         ) -> dict[str, float]:
    merged: dict[str, float] = {}
    for r in runner.each(hosts, lambda s: _sample(s, inv, secrets)):
        if r.ok:
            for k, v in r.value.items():
                merged[k] = merged.get(k, 0.0) + v if k in ("pgbouncer_cl_waiting",) else v
    return merged


def _cpu(runner: Runner, hosts: list[Host]) -> list[tuple[int, int]]:
    return [parse_cpu(r.stdout) for r in runner.run(hosts, cpu_command()) if r.ok]


def _busy_fraction(before: list[tuple[int, int]], after: list[tuple[int, int]]) -> float:
    # Lab hosts share one machine's CPUs: any host's /proc/stat is the machine's.
    if not before or not after:
        return 0.0
    (b0, t0), (b1, t1) = before[0], after[0]
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
