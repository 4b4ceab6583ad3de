"""One host's facts -> its metrics and problems, plus the sample kept for the next round.

Pure: the facts, the inventory and the previous sample in; no I/O. Problems that need other
hosts' facts (which database is the primary, whether nginx's failing upstream is a web
process already reported down) are cluster.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .. import become
from ..configs.context import SENTRY_DB, settings, web_ports
from ..containers import cleanup
from ..containers.spec import specs_for
from ..inventory import Host, Inventory
from ..lockinfo import parse_info
from . import ingestion, parsers
from .model import HostStatus, Problem, Severity, Value
from .pipeline import PAYLOAD_POLICY, PAYLOAD_TTL_S, holds_payloads
from .script import (
    CLEANUP_FACT,
    DATA_PATHS,
    FACT_TIMEOUT,
    INGEST_FACT,
    LOCK_FACT,
    NGINX_CHANGED_FACT,
    PAYLOADS_FACT,
)
from .thresholds import Levels, duration, evaluate, fmt, human_bytes, levels, severity_of

#: A sample: what the next round compares with (restart counts, counters, queue length).
Sample = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """What the host sent back for its check script, and how long the exchange took."""

    stdout: str
    exit_code: int | None
    error: str | None
    round_trip: float               # seconds, measured here
    connect_seconds: float | None   # when this round opened the connection
    stderr: str = ""                # what the script said outside its facts (sudo's refusal)


def _scoped(p: Problem | None, scope: str) -> Problem | None:
    return None if p is None else replace(p, scope=scope)


def evaluate_host(inv: Inventory, host: Host, answer: Answer, prev: Sample | None,
                  now: float) -> tuple[HostStatus, Sample]:
    """The host's status from its check script's answer; and the sample to keep."""
    st = HostStatus(host, reachable=True, seconds=answer.round_trip)
    out = parsers.split(answer.stdout)
    prev = prev or {}
    sample: Sample = {"t": now}
    user = become.login_user(inv, host)
    refused = None if out.complete else become.denial(answer.stderr, user)
    if refused is not None:  # sudo said no: nothing of the script ran
        _denied(st, refused)
        return st, sample
    if not out.complete:
        why = answer.error or f"exit code {answer.exit_code}"
        st.add(Problem("critical", f"status check did not finish: {why}"))
    _host(st, out, answer, levels(inv, host, "host"))
    if host.roles:
        _containers(st, inv, out, prev, sample)
    for role in host.roles:
        lv = levels(inv, host, role)
        if role == "web":
            _web(st, inv, out, lv)
        elif role == "nginx":
            _nginx(st, out, prev, sample, now)
            _ingest(st, out, lv)
        elif role == "worker":
            _payloads(st, out, lv)
        elif role == "cron":
            _cleanup(st, inv, out, lv, now)
        elif role in ("redis-cache", "redis-queue"):
            _redis(st, inv, role, out, lv, prev, sample, now)
        elif role == "db":
            _db(st, out, lv)
        elif role == "pgbouncer":
            _pgbouncer(st, out, lv, prev, sample, now)
    _lock(st, out)
    _permission(st, out, user)
    return st, sample


def _lock(st: HostStatus, out: parsers.Output) -> None:
    """On the lock host: the deploy lock's holder, or None when free (absent: not read)."""
    sec = out.get(LOCK_FACT)
    if sec is not None and sec.ok:
        st.facts["lock"] = parse_info("\n".join(sec.lines))


def unreachable(host: Host, error: str, seconds: float) -> HostStatus:
    """A host that could not be checked at all."""
    return HostStatus(host, reachable=False, error=error, seconds=seconds,
                      problems=[Problem("critical", f"unreachable: {error}")])


def failed(host: Host, error: str, seconds: float) -> HostStatus:
    """A host that answered but whose check could not run (the reason says why)."""
    return HostStatus(host, reachable=True, error=error, seconds=seconds,
                      problems=[Problem("critical", f"status check failed: {error}")])


# -- permissions -----------------------------------------------------------------------------

_DENIAL_ORDER = ("sudo-password", "sudo-tty", "sudo-missing", "docker", "files")


def _permission(st: HostStatus, out: parsers.Output, user: str) -> None:
    """Facts refused for want of rights make one finding with its fix; the dead services
    and unreadable logs they would otherwise claim are dropped."""
    found = [d for sec in out.sections.values() if not sec.ok
             for d in [become.denial("\n".join(sec.lines), user)] if d is not None]
    if not found:
        return
    d = min(found, key=lambda x: _DENIAL_ORDER.index(x.kind))
    st.problems = [p for p in st.problems if become.denial(p.message, user) is None]
    if d.kind == "docker":
        st.notes = [n for n in st.notes if "docker" not in n]
    _denied(st, d)


def _denied(st: HostStatus, d: become.Denial) -> None:
    st.add(Problem("critical", d.message()))
    st.facts["denied"] = d


# -- host ------------------------------------------------------------------------------------

def _host(st: HostStatus, out: parsers.Output, answer: Answer, lv: dict[str, Levels]) -> None:
    m: dict[str, Value] = st.metrics.setdefault("host", {})
    m["reachable"] = 1
    remote = out.remote_seconds
    if remote is not None:
        m["ssh_ms"] = round(max(answer.round_trip - remote, 0.0) * 1000, 1)
        m["check_ms"] = round(remote * 1000, 1)
        st.add(evaluate("ssh_ms", m["ssh_ms"], lv))
    if answer.connect_seconds is not None:
        m["connect_ms"] = round(answer.connect_seconds * 1000, 1)
    sec = out.get("loadavg")
    load = parsers.loadavg(sec.lines) if sec else None
    cpus = parsers.nproc(out.get("nproc").lines) if out.get("nproc") else None
    if load:
        m["load1"], m["load5"], m["load15"] = load
    if cpus:
        m["cpus"] = cpus
    if load and cpus:
        # The 5-minute figure: a one-minute spike is not a problem worth waking anyone for.
        m["load_per_cpu"] = round(load[1] / cpus, 2)
        st.add(evaluate("load_per_cpu", m["load_per_cpu"], lv,
                        f"load per CPU (5 min, {cpus} CPUs)"))
    mem = parsers.meminfo(out.get("meminfo").lines) if out.get("meminfo") else None
    if mem:
        total, avail = mem
        m["mem_total"], m["mem_available"] = total, avail
        m["mem_pct"] = round(100.0 * (total - avail) / total, 1) if total else None
        st.add(evaluate("mem_pct", m["mem_pct"], lv))
    fds = parsers.file_nr(out.get("file-nr").lines) if out.get("file-nr") else None
    if fds:
        m["fds_open"], m["fds_max"] = fds
        m["fds_pct"] = round(100.0 * fds[0] / fds[1], 2) if fds[1] else None
        st.add(evaluate("fds_pct", m["fds_pct"], lv, "open files (system-wide)"))
    sec = out.get("df")
    disks = parsers.df(sec.lines) if sec else []
    for d in disks:
        key = {DATA_PATHS[0]: "data", DATA_PATHS[1]: "log"}.get(d.path, d.path)
        m[f"{key}_disk_pct"] = round(d.pct, 1)
        m[f"{key}_disk_free"] = d.available
    st.facts["disks"] = disks
    seen: dict[tuple[str, int], list[parsers.Disk]] = {}
    for d in disks:  # two paths on one filesystem (even bind-mounted) make one problem
        seen.setdefault((d.device, d.size), []).append(d)
    for group in seen.values():
        label = "disk use of " + " and ".join(d.path for d in group)
        p = evaluate("disk_pct", group[0].pct, lv, label)
        if p is not None:
            st.add(replace(p, message=f"{p.message}, {human_bytes(group[0].available)} free"))
    missing = [n for n in ("loadavg", "meminfo", "file-nr", "df") if out.get(n) is None]
    if missing and out.complete:
        st.add(Problem("warning", f"no answer for {', '.join(missing)}"))


# -- containers --------------------------------------------------------------------------------

def _containers(st: HostStatus, inv: Inventory, out: parsers.Output, prev: Sample,
                sample: Sample) -> None:
    sec = out.get("docker")
    if sec is None or not sec.ok:
        why = sec.error() if sec else "no answer"
        if why.startswith("curl: (7)"):  # the API's socket is there, nothing listens on it
            why = "cannot connect to /var/run/docker.sock (is dockerd running?)"
        st.add(Problem("critical", f"Docker engine not answering: {why}"))
        return
    found = parsers.containers(sec.lines)
    st.facts["containers"] = found
    by_name = {c.name: c for c in found}
    before: dict[str, list] = prev.get("containers", {})
    sample["containers"] = {c.name: [c.id, c.restarts] for c in found}
    expected: set[str] = set()
    versions: dict[str, list[str]] = {}
    for role in st.host.roles:
        specs = specs_for(inv, st.host, role)
        lv = levels(inv, st.host, role)
        m = st.metrics.setdefault(role, {})
        running = 0
        restarts: int | None = None
        for spec in specs:
            expected.add(spec.name)
            c = by_name.get(spec.name)
            if c is None:
                st.add(Problem("critical", f"{spec.name} missing (no such container)",
                               scope=role))
                continue
            if not c.running:
                why = f"exit code {c.exit_code}" + (", out of memory" if c.oom_killed else "")
                st.add(Problem("critical", f"{c.name} {c.state} ({why})", scope=role))
            else:
                running += 1
            delta = _restarts_since(c, before.get(c.name))
            if delta is not None:
                restarts = (restarts or 0) + delta
                label = f"{c.name} restarts since last check"
                p = evaluate("restarts", delta, lv, label)
                if p is not None and c.oom_killed:
                    p = replace(p, message=p.message + ", last one out of memory")
                st.add(_scoped(p, role))
        m["containers"] = len(specs)
        m["containers_running"] = running
        m["restarts"] = restarts
        versions[role] = sorted({c.version for c in found if c.role == role and c.running})
    st.facts["versions"] = versions
    for c in found:
        if c.name in expected:
            continue
        if not c.running:
            st.notes.append(f"{c.name} left over ({c.state})")
            continue
        assigned = c.role in st.host.roles
        why = (f"more {c.role} containers than the inventory says" if assigned
               else f"role {c.role} is not assigned to {st.host.name}")
        # A cron where none belongs runs every scheduled job a second time.
        sev: Severity = "critical" if c.role == "cron" and not assigned else "warning"
        st.add(Problem(sev, f"unexpected container {c.name} running ({why})",
                       scope=c.role if c.role in st.host.roles else "host"))


def _restarts_since(c: parsers.Container, before: list | None) -> int | None:
    """Restarts since the last sample: None on the first sample, all of them if replaced."""
    if not before:
        return None
    old_id, old_count = before
    return c.restarts - int(old_count) if old_id == c.id else c.restarts


def _container_for_port(st: HostStatus, inv: Inventory, port: int) -> parsers.Container | None:
    names = {sp.port: sp.name for sp in specs_for(inv, st.host, "web")}
    return next((c for c in st.facts.get("containers", []) if c.name == names.get(port)), None)


# -- web ---------------------------------------------------------------------------------------

def _web(st: HostStatus, inv: Inventory, out: parsers.Output, lv: dict[str, Levels]) -> None:
    m = st.metrics.setdefault("web", {})
    sec = out.get("web")
    found = parsers.probes(sec.lines) if sec else {}
    probes: dict[int, parsers.Probe] = {}
    slowest = None
    for port in web_ports(inv, st.host):
        p = found.get(f"http://{st.host.address}:{port}/_health/",
                      parsers.Probe(0, 0.0, "no answer"))
        probes[port] = p
        c = _container_for_port(st, inv, port)
        if not p.ok:
            if c is not None and not c.running:
                continue  # the container being down is the problem, reported already
            who = f" ({c.name})" if c else ""
            st.add(Problem("critical", f"web process :{port}{who} /_health/ failed: "
                                       f"{p.describe()}", scope="web"))
            continue
        ms = round(p.seconds * 1000, 1)
        slowest = ms if slowest is None else max(slowest, ms)
        st.add(_scoped(evaluate("health_ms", ms, lv, f"/_health/ on :{port}"), "web"))
    st.facts["web"] = probes
    m["processes"] = len(probes)
    m["processes_up"] = sum(p.ok for p in probes.values())
    m["health_ms"] = slowest


# -- nginx -------------------------------------------------------------------------------------

def _nginx(st: HostStatus, out: parsers.Output, prev: Sample, sample: Sample,
           now: float) -> None:
    m = st.metrics.setdefault("nginx", {})
    sec = out.get("nginx-status")
    stub = parsers.stub_status(sec.lines) if sec and sec.ok else None
    if stub is None:
        why = sec.error() if sec else "no answer"
        st.add(Problem("critical", f"nginx_status not answering: {why}", scope="nginx"))
    else:
        m["active_connections"] = stub["active"]
        for key in ("reading", "writing", "waiting"):
            m[key] = stub.get(key)
        m["requests"] = stub.get("requests")
        sample["nginx_requests"] = stub.get("requests")
        m["requests_per_s"] = _rate(stub.get("requests"), prev.get("nginx_requests"),
                                    prev.get("t"), now, counter=True)
    sec = out.get("nginx-upstreams")
    ups = parsers.upstreams(sec.lines) if sec else []
    if sec is None or (not ups and not sec.ok):
        st.add(Problem("warning", "cannot list nginx's upstreams: "
                                  f"{sec.error() if sec else 'no answer'}", scope="nginx"))
    st.facts["upstreams"] = ups
    sec = out.get(NGINX_CHANGED_FACT)
    st.facts["nginx_changed"] = parsers.first_int(sec.lines) if sec and sec.ok else None
    m["upstreams"] = len(ups)
    m["upstreams_drained"] = sum(u.drained for u in ups)
    m["upstreams_down"] = sum(not u.drained and not u.probe.ok for u in ups)


def _ingest(st: HostStatus, out: parsers.Output, lv: dict[str, Levels]) -> None:
    """nginx's answers to ingestion requests in the last minute: rates per status class and
    per cause, the error rate against its levels, and each endpoint 9.1.2 lacks named."""
    sec = out.get(INGEST_FACT)
    if sec is None:
        return  # a script without the fact (an older capture); a cut-off one is reported
    facts = ingestion.ingest(sec.lines)
    if facts.rc not in (0, None, 124):
        why = facts.error or f"docker logs exit code {facts.rc}"
        st.add(Problem("warning", f"cannot read nginx's log for ingestion figures: {why}",
                       scope="nginx"))
        return
    if facts.cut_off:
        st.add(Problem("warning", "reading nginx's log of the last minute was cut off after "
                                  f"{FACT_TIMEOUT} s: ingestion figures are partial",
                       scope="nginx"))
    ing = ingestion.classify(facts)
    st.facts["ingest"] = facts
    st.facts["ingestion"] = ing
    m = st.metrics.setdefault("nginx", {})
    per_s = 1.0 / ingestion.WINDOW_S
    m["ingest_per_s"] = round(ing.total * per_s, 3)
    for cls, n in ing.classes.items():
        m[f"ingest_{cls}_per_s"] = round(n * per_s, 3)
    for cause, n in ing.causes.items():
        m[f"ingest_{cause}_per_s"] = round(n * per_s, 3)
    m["ingest_error_pct"] = ing.error_pct
    _ingest_errors(st, ing, lv)
    # Each route 9.1.2 lacks is its own finding: it names who sends there and what is lost.
    for name, by_status in ing.lacking.items():
        n = sum(by_status.values())
        sev, limit = severity_of(n * per_s, lv.get("ingest_missing_endpoint_per_s",
                                                    (None, None)))
        if sev == "ok":
            continue
        e = ingestion.BY_NAME[name]
        st.add(Problem(sev, f"{n} request{'s' * (n != 1)} to {e.shown} in the last minute, "
                            f"answered {ingestion.statuses_text(by_status)}: {e.why}",
                       metric="ingest_missing_endpoint_per_s", value=round(n * per_s, 3),
                       limit=limit, scope="nginx"))


def _ingest_errors(st: HostStatus, ing: ingestion.Ingestion, lv: dict[str, Levels]) -> None:
    """The error rate against its levels, its causes listed; below them (or on too few
    requests to judge), the causes as a note."""
    if not ing.errors:
        return
    of = (f"{ing.errors} of {ing.total} request{'s' * (ing.total != 1)} in the last minute: "
          f"{ingestion.causes_text(ing)}")
    p = evaluate("ingest_error_pct", ing.error_pct, lv) \
        if ing.total >= ingestion.MIN_REQUESTS else None
    if p is None:
        st.notes.append(f"ingestion errors {fmt(ing.error_pct, 'pct')}, {of}")
        return
    st.add(replace(p, message=f"{p.message}, {of}", scope="nginx"))


def _rate(value: float | None, before: float | None, t_before: float | None, now: float,
          counter: bool = False) -> float | None:
    """Change per second since the last sample (None without one; a reset counter too)."""
    if value is None or before is None or t_before is None or now - t_before < 1:
        return None
    if counter and value < before:
        return None
    return round((value - before) / (now - t_before), 2)


# -- worker ------------------------------------------------------------------------------------

def _payloads(st: HostStatus, out: parsers.Output, lv: dict[str, Levels]) -> None:
    """Payloads the worker processes found missing in the last minute: each one an accepted
    event lost."""
    sec = out.get(PAYLOADS_FACT)
    if sec is None:
        return  # a script without the fact (an older capture); a cut-off one is reported
    facts = ingestion.payloads(sec.lines)
    st.facts["payloads"] = facts
    m = st.metrics.setdefault("worker", {})
    for message in ingestion.MISSING_PAYLOAD:
        m[ingestion.metric_name(message)] = facts.total(message)
    m["payloads_missing"] = facts.total()
    if facts.cut_off:
        st.add(Problem("warning", "reading the worker logs of the last minute was cut off after "
                                  f"{FACT_TIMEOUT} s: the count of missing payloads is partial",
                       scope="worker"))
    for name, rc in sorted(facts.rcs.items()):
        if rc:  # a missing container is reported by the container check already
            st.notes.append(f"could not read {name}'s log (docker logs exit code {rc})")
    p = evaluate("payloads_missing", m["payloads_missing"], lv)
    if p is not None:
        where = ", ".join(f"{msg} {n} on {c if c != '-' else 'a worker (read cut off)'}"
                          for c, per in sorted(facts.counts.items())
                          for msg, n in sorted(per.items(), key=lambda e: -e[1]))
        st.add(replace(p, scope="worker", message=(
            f"{p.message}: {where}; accepted events lost: their payloads were gone from the "
            "payload Redis when a worker came for them (evicted, or older than "
            f"{duration(PAYLOAD_TTL_S)})")))


def _cleanup(st: HostStatus, inv: Inventory, out: parsers.Output, lv: dict[str, Levels],
             now: float) -> None:
    """The daily retention cleanup: its schedule, its last run, and runs failed in a row."""
    from ..configs.context import retention

    sec = out.get(CLEANUP_FACT)
    if sec is None:
        return
    facts = cleanup.parse_facts(sec.lines)
    keep = retention(inv)
    st.facts["cleanup"] = facts
    m = st.metrics.setdefault("cron", {})
    hours = facts.hours_without_a_run(now)
    m["cleanup_hours_since_run"] = round(hours, 1) if hours is not None else None
    m["cleanup_failed_in_a_row"] = facts.failed_in_a_row()
    last = facts.last
    how = ("never ran yet" if last is None else
           f"last ran {fmt((now - last.started) / 3600, 'hours_ago')}, "
           f"{'ok' if last.ok else f'failed (exit {last.exit_code})'} in "
           f"{duration(last.ended - last.started)}")
    st.notes.append(f"retention: sentry cleanup --days {keep['days']} daily at {keep['at']} UTC;"
                    f" {how}")
    if facts.scheduled_since is None:
        st.add(Problem("warning", "the retention cleanup is not scheduled (no record of its "
                                  "container starting): the database keeps every event",
                       scope="cron"))
        return
    for metric in ("cleanup_hours_since_run", "cleanup_failed_in_a_row"):
        p = evaluate(metric, m[metric], lv)
        if p is not None:
            st.add(replace(p, scope="cron", message=(
                f"{p.message}: see {cleanup.LAST_LOG} on {st.host.name}, or run "
                "'fab cron.cleanup'")))


# -- Redis -------------------------------------------------------------------------------------

def _redis(st: HostStatus, inv: Inventory, role: str, out: parsers.Output,
           lv: dict[str, Levels], prev: Sample, sample: Sample, now: float) -> None:
    m = st.metrics.setdefault(role, {})
    sec = out.get(f"redis {role}")
    facts = parsers.redis(sec.lines) if sec else None
    if facts is None or not facts.info:
        # The first complaint is the cause ('AUTH failed: WRONGPASS ...'), the rest follow.
        why = (facts.errors[0] if facts and facts.errors else sec.error()) if sec else \
            "no answer"
        st.add(Problem("critical", f"Redis not answering: {why}", scope=role))
        return
    st.facts[role] = facts
    info = facts.info
    payload = holds_payloads(role)
    m["holds_payloads"] = int(payload)
    if info.get("role") != "master":
        st.add(Problem("critical", f"Redis is a {info.get('role', '?')}, not a master "
                                   "(it refuses writes)", scope=role))
    used, maxmem = facts.num("used_memory"), facts.num("maxmemory")
    m["used_memory"], m["maxmemory"] = used, maxmem
    m["memory_pct"] = round(100 * used / maxmem, 2) if used is not None and maxmem else None
    if m["memory_pct"] is not None:
        what = "payload memory" if payload else "memory"
        p = evaluate("memory_pct", m["memory_pct"], lv,
                     f"{what} ({human_bytes(used or 0)} of maxmemory {human_bytes(maxmem or 0)})")
        if p is not None and payload:
            p = replace(p, message=p.message + ": when full, web refuses new events")
        st.add(_scoped(p, role))
    if payload:
        _payload_policy(st, role, info, maxmem)
    clients = facts.num("connected_clients")
    maxclients = facts.num("maxclients") or float(settings(inv, role, st.host)["maxclients"])
    m["connected_clients"], m["maxclients"] = clients, maxclients
    m["clients_pct"] = round(100 * clients / maxclients, 1) if clients is not None else None
    st.add(_scoped(evaluate("clients_pct", m["clients_pct"], lv,
                            f"clients ({clients:.0f} of maxclients {maxclients:.0f})"
                            if clients is not None else None), role))
    m["blocked_clients"] = facts.num("blocked_clients")
    m["ops_per_s"] = facts.num("instantaneous_ops_per_sec")
    before = prev.get("redis", {}).get(role, {})
    now_sample: dict[str, Any] = {}
    rejected = facts.num("rejected_connections")
    m["rejected_connections"] = rejected
    now_sample["rejected"] = rejected
    if rejected is not None and before.get("rejected") is not None:
        delta = max(rejected - before["rejected"], 0)
        m["rejected_since_last"] = delta
        st.add(_scoped(evaluate("rejected_connections", delta, lv), role))
    _evictions(st, role, facts, lv, m, before, now_sample, payload)
    for key, label in (("rdb_last_bgsave_status", "last snapshot"),
                       ("aof_last_write_status", "last append-only file write")):
        if info.get(key, "ok") != "ok":
            # The queue stops accepting writes when a snapshot fails (stop-writes-on-bgsave).
            sev: Severity = "critical" if role == "redis-queue" else "warning"
            st.add(Problem(sev, f"{label} failed ({key}:{info[key]})", scope=role))
    if info.get("loading") == "1":
        st.add(Problem("warning", "loading its data set from disk", scope=role))
    if role == "redis-queue":
        # Ages on the host's clock: start_time is a web host's, and the cluster's hosts
        # agree on the time more surely than they agree with the operator's laptop.
        host_now = out.ended_ns / 1e9 if out.ended_ns is not None else now
        _queue(st, facts, lv, m, before, now_sample, prev.get("t"), now, host_now)
    sample.setdefault("redis", {})[role] = now_sample


def _payload_policy(st: HostStatus, role: str, info: dict[str, str],
                    maxmem: float | None) -> None:
    """A Redis holding payloads must never evict one, and must have a limit to refuse at."""
    policy = info.get("maxmemory_policy")
    if policy is not None and policy != PAYLOAD_POLICY:
        st.add(Problem("critical", f"maxmemory-policy {policy} on a Redis holding event "
                                   "payloads: when full it evicts accepted events "
                                   f"(set {PAYLOAD_POLICY})", scope=role))
    if maxmem == 0:
        st.add(Problem("warning", "no maxmemory on a Redis holding event payloads: a backlog "
                                  "grows it until the kernel kills it", scope=role))


def _evictions(st: HostStatus, role: str, facts: parsers.RedisFacts, lv: dict[str, Levels],
               m: dict[str, Value], before: dict, now_sample: dict, payload: bool) -> None:
    evicted = facts.num("evicted_keys")
    m["evicted_keys"] = evicted
    now_sample["evicted"] = evicted
    if evicted is not None and before.get("evicted") is not None:
        # A restarted Redis counts from 0 again.
        m["evicted_since_last"] = max(evicted - before["evicted"], 0)
    if payload:
        label, why = ("payloads evicted since Redis started",
                      "accepted events lost (preprocess.failed.empty)")
    elif role == "redis-queue":
        label, why = "evicted keys since Redis started", "queued tasks were dropped"
    else:
        label, why = None, ""
    p = evaluate("evicted_keys", evicted, lv, label)
    st.add(_scoped(replace(p, message=f"{p.message}: {why}") if p and why else p, role))
    p = evaluate("evicted_since_last", m.get("evicted_since_last"), lv)
    if p is not None and not payload:
        p = replace(p, message=p.message + ": the cache is smaller than what Sentry keeps in "
                                           "it; events are lost if payloads are still stored "
                                           "here")
    st.add(_scoped(p, role))


def _queue(st: HostStatus, facts: parsers.RedisFacts, lv: dict[str, Levels],
           m: dict[str, Value], before: dict, now_sample: dict, t_before: float | None,
           now: float, host_now: float) -> None:
    if not facts.lengths:
        st.add(Problem("warning", "queue length unknown: "
                                  f"{facts.errors[-1] if facts.errors else 'no LLEN answer'}",
                       scope="redis-queue"))
        return
    length = sum(facts.lengths.values())
    m["queue_length"] = length
    now_sample["queue"] = length
    m["queue_growth_per_s"] = _rate(length, before.get("queue"), t_before, now)
    st.add(_scoped(evaluate("queue_length", length, lv), "redis-queue"))
    st.add(_scoped(evaluate("queue_growth_per_s", m["queue_growth_per_s"], lv,
                            "queue growth since last check"), "redis-queue"))
    if facts.heartbeats is not None:
        m["worker_heartbeats"] = facts.heartbeats
    _backlog(st, facts, lv, m, host_now)


def _backlog(st: HostStatus, facts: parsers.RedisFacts, lv: dict[str, Levels],
             m: dict[str, Value], host_now: float) -> None:
    """How long the oldest queued task has waited since its event was accepted."""
    ages = parsers.backlog_ages(facts, host_now)
    st.facts["backlog"] = ages
    known = {q: a for q, a in ages.items() if a is not None}
    unknown = sorted(q for q, a in ages.items() if a is None)
    for q in unknown:
        st.notes.append(f"backlog age of {q} unknown: its oldest message is not a Celery task "
                        "with a start_time")
    if not known:
        # Nothing waiting (the queues are empty) is an age of 0; unreadable ones are unknown.
        m["backlog_age_s"] = None if unknown else 0.0
        return
    queue, age = max(known.items(), key=lambda e: e[1])
    m["backlog_age_s"] = age
    p = evaluate("backlog_age_s", age, lv, f"backlog age of {queue}")
    if p is not None:
        p = replace(p, message=f"{p.message}: workers are behind; an event's payload expires "
                               f"{duration(PAYLOAD_TTL_S)} after it was accepted")
    st.add(_scoped(p, "redis-queue"))


# -- PostgreSQL --------------------------------------------------------------------------------

def _db(st: HostStatus, out: parsers.Output, lv: dict[str, Levels]) -> None:
    m = st.metrics.setdefault("db", {})
    sec = out.get("db")
    facts = parsers.db(sec.lines) if sec else None
    if facts is None or facts.in_recovery is None:
        st.add(Problem("critical", f"PostgreSQL not answering: "
                                   f"{sec.error() if sec else 'no answer'}", scope="db"))
        return
    st.facts["db"] = facts
    m["is_primary"] = 0 if facts.in_recovery else 1
    conns, maxc = facts.num("connections"), facts.num("max_connections")
    usable = (maxc or 0) - (facts.num("reserved_connections") or 0)
    m["connections"], m["max_connections"] = conns, maxc
    m["connections_pct"] = round(100 * conns / usable, 1) if conns is not None and usable > 0 \
        else None
    st.add(_scoped(evaluate("connections_pct", m["connections_pct"], lv,
                            f"connections ({conns:.0f} of {usable:.0f} for clients)"
                            if conns is not None else None), "db"))
    m["timeline"] = facts.num("timeline")
    m["standbys"] = len(facts.standbys)
    for slot in facts.slots:
        if not slot.active:
            held = f", holding {human_bytes(slot.retained_bytes)} of WAL" \
                if slot.retained_bytes is not None else ""
            st.notes.append(f"replication slot {slot.name} inactive{held}")


# -- PgBouncer ---------------------------------------------------------------------------------

def _num(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key, "0") or 0)
    except ValueError:
        return 0.0


def _pgbouncer(st: HostStatus, out: parsers.Output, lv: dict[str, Levels], prev: Sample,
               sample: Sample, now: float) -> None:
    m = st.metrics.setdefault("pgbouncer", {})
    sec = out.get("pgbouncer")
    facts = parsers.pgbouncer(sec.lines) if sec else None
    if facts is None or not facts.pools:
        why = sec.error() if sec else "no answer"
        st.add(Problem("critical", f"PgBouncer admin console not answering: {why}",
                       scope="pgbouncer"))
        return
    st.facts["pgbouncer"] = facts
    pools = [p for p in facts.pools if p.get("database") != "pgbouncer"]
    for key in ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used"):
        m[key] = sum(_num(p, key) for p in pools)
    m["maxwait_s"] = max((_num(p, "maxwait") + _num(p, "maxwait_us") / 1e6 for p in pools),
                         default=0.0)
    st.add(_scoped(evaluate("cl_waiting", m["cl_waiting"], lv), "pgbouncer"))
    st.add(_scoped(evaluate("maxwait_s", m["maxwait_s"], lv), "pgbouncer"))
    stats = [r for r in facts.stats if r.get("database") != "pgbouncer"]
    queries = sum(_num(r, "total_query_count") for r in stats)
    m["queries_per_s"] = _rate(queries, prev.get("pgb_queries"), prev.get("t"), now,
                               counter=True)
    sample["pgb_queries"] = queries
    m["avg_query_ms"] = max((_num(r, "avg_query_time") / 1000 for r in stats), default=None)
    m["avg_wait_ms"] = max((_num(r, "avg_wait_time") / 1000 for r in stats), default=None)
    targets = {}
    for row in facts.databases:
        name = row.get("name", "")
        if name == "pgbouncer":
            continue
        targets[name] = (row.get("host", ""), row.get("port", ""))
        if row.get("paused") == "1":
            st.add(Problem("warning", f"database {name} is PAUSED (a switchover in progress, "
                                      "or one left paused: RESUME it)", scope="pgbouncer"))
        if row.get("disabled") == "1":
            st.add(Problem("critical", f"database {name} is DISABLED (new clients are refused:"
                                       " ENABLE it)", scope="pgbouncer"))
    st.facts["pgb_targets"] = targets
    if SENTRY_DB["name"] not in targets:
        st.add(Problem("critical", f"no [databases] entry for {SENTRY_DB['name']}",
                       scope="pgbouncer"))
