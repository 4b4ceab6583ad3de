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
from ..containers import cleanup, pgbackrest
from ..containers.spec import ContainerSpec, specs_for
from ..inventory import Host, Inventory
from . import ingestion
from .facts.backup import ArchiveStatus, BackupRecord
from .facts.base import FACT_TIMEOUT
from .facts.cleanup import Cleanup
from .facts.db import Db
from .facts.docker import Container, Docker
from .facts.host import DATA_PATHS, Df, Disk, FileNr, Loadavg, Meminfo, Nproc
from .facts.ingestion import NginxIngest, WorkerPayloads
from .facts.lock import DeployLock
from .facts.nginx import NginxChanged, NginxStatus, NginxUpstreams
from .facts.pgbouncer import Pgbouncer
from .facts.redis import Redis, RedisFacts, backlog_ages
from .facts.web import Probe, WebHealth, health_url
from .metrics import Key, ingest_cause_key, ingest_class_key
from .model import HostStatus, Problem, Severity, Value
from .pipeline import PAYLOAD_POLICY, PAYLOAD_TTL_S, holds_payloads
from .script import Output, Section, split
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


def _scoped(problem: Problem | None, scope: str) -> Problem | None:
    return None if problem is None else replace(problem, scope=scope)


def evaluate_host(inv: Inventory, host: Host, answer: Answer, prev: Sample | None,
                  now: float) -> tuple[HostStatus, Sample]:
    """The host's status from its check script's answer; and the sample to keep."""
    st = HostStatus(host, reachable=True, seconds=answer.round_trip)
    out = split(answer.stdout)
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
            _archive(st, out, lv)
        elif role == "backup":
            _backup(st, out, lv, now)
        elif role == "pgbouncer":
            _pgbouncer(st, out, lv, prev, sample, now)
    _lock(st, out)
    _permission(st, out, user)
    return st, sample


def _lock(st: HostStatus, out: Output) -> None:
    """On the lock host: the deploy lock's holder, or None when free (absent: not read)."""
    sec = out.get(DeployLock.name)
    if sec is not None and sec.ok:
        st.facts["lock"] = DeployLock.parse(sec.lines)


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


def _permission(st: HostStatus, out: Output, user: str) -> None:
    """Facts refused for want of rights make one finding with its fix; the dead services
    and unreadable logs they would otherwise claim are dropped."""
    found = [denial for sec in out.sections.values() if not sec.ok
             for denial in [become.denial("\n".join(sec.lines), user)] if denial is not None]
    if not found:
        return
    first = min(found, key=lambda denial: _DENIAL_ORDER.index(denial.kind))
    st.problems = [problem for problem in st.problems
                   if become.denial(problem.message, user) is None]
    if first.kind == "docker":
        st.notes = [note for note in st.notes if "docker" not in note]
    _denied(st, first)


def _denied(st: HostStatus, denial: become.Denial) -> None:
    st.add(Problem("critical", denial.message()))
    st.facts["denied"] = denial


# -- host ------------------------------------------------------------------------------------

#: The watched paths' figures: data path, log path.
_DISK_KEYS = {DATA_PATHS[0]: (Key.DATA_DISK_PCT, Key.DATA_DISK_FREE),
              DATA_PATHS[1]: (Key.LOG_DISK_PCT, Key.LOG_DISK_FREE)}


def _host(st: HostStatus, out: Output, answer: Answer, lv: dict[str, Levels]) -> None:
    """The machine itself: the exchange's timings, load, memory, open files, disks."""
    metrics: dict[str, Value] = st.metrics.setdefault("host", {})
    metrics[Key.REACHABLE] = 1
    _timings(st, metrics, out, answer, lv)
    _load(st, metrics, out, lv)
    _memory(st, metrics, out, lv)
    _open_files(st, metrics, out, lv)
    _disks(st, metrics, out, lv)
    missing = [kind.name for kind in (Loadavg, Meminfo, FileNr, Df) if out.get(kind.name) is None]
    if missing and out.complete:
        st.add(Problem("warning", f"no answer for {', '.join(missing)}"))


def _timings(st: HostStatus, metrics: dict[str, Value], out: Output, answer: Answer,
             lv: dict[str, Levels]) -> None:
    """SSH's share of the round trip (what the script did not spend), the script's, and
    the connection's when this round opened it."""
    remote = out.remote_seconds
    if remote is not None:
        metrics[Key.SSH_MS] = round(max(answer.round_trip - remote, 0.0) * 1000, 1)
        metrics[Key.CHECK_MS] = round(remote * 1000, 1)
        st.add(evaluate(Key.SSH_MS, metrics[Key.SSH_MS], lv))
    if answer.connect_seconds is not None:
        metrics[Key.CONNECT_MS] = round(answer.connect_seconds * 1000, 1)


def _load(st: HostStatus, metrics: dict[str, Value], out: Output,
          lv: dict[str, Levels]) -> None:
    """Load averages and CPUs; the 5-minute load per CPU against its levels."""
    sec = out.get(Loadavg.name)
    load = Loadavg.parse(sec.lines) if sec else None
    sec = out.get(Nproc.name)
    cpus = Nproc.parse(sec.lines) if sec else None
    if load:
        metrics[Key.LOAD1], metrics[Key.LOAD5], metrics[Key.LOAD15] = load
    if cpus:
        metrics[Key.CPUS] = cpus
    if load and cpus:
        # The 5-minute figure: a one-minute spike is not a problem worth waking anyone for.
        metrics[Key.LOAD_PER_CPU] = round(load[1] / cpus, 2)
        st.add(evaluate(Key.LOAD_PER_CPU, metrics[Key.LOAD_PER_CPU], lv,
                        f"load per CPU (5 min, {cpus} CPUs)"))


def _memory(st: HostStatus, metrics: dict[str, Value], out: Output,
            lv: dict[str, Levels]) -> None:
    """Memory in use (total less available) against its levels."""
    sec = out.get(Meminfo.name)
    mem = Meminfo.parse(sec.lines) if sec else None
    if mem:
        total, avail = mem
        metrics[Key.MEM_TOTAL], metrics[Key.MEM_AVAILABLE] = total, avail
        metrics[Key.MEM_PCT] = round(100.0 * (total - avail) / total, 1) if total else None
        st.add(evaluate(Key.MEM_PCT, metrics[Key.MEM_PCT], lv))


def _open_files(st: HostStatus, metrics: dict[str, Value], out: Output,
                lv: dict[str, Levels]) -> None:
    """System-wide open files against the kernel's limit."""
    sec = out.get(FileNr.name)
    fds = FileNr.parse(sec.lines) if sec else None
    if fds:
        metrics[Key.FDS_OPEN], metrics[Key.FDS_MAX] = fds
        metrics[Key.FDS_PCT] = round(100.0 * fds[0] / fds[1], 2) if fds[1] else None
        st.add(evaluate(Key.FDS_PCT, metrics[Key.FDS_PCT], lv, "open files (system-wide)"))


def _disks(st: HostStatus, metrics: dict[str, Value], out: Output,
           lv: dict[str, Levels]) -> None:
    """The watched paths' use as metrics; one problem per filesystem."""
    sec = out.get(Df.name)
    disks = Df.parse(sec.lines) if sec else []
    for disk in disks:
        keys = _DISK_KEYS.get(disk.path)  # Df's command asks for these paths only
        if keys is not None:
            metrics[keys[0]] = round(disk.pct, 1)
            metrics[keys[1]] = disk.available
    st.facts["disks"] = disks
    seen: dict[tuple[str, int], list[Disk]] = {}
    for disk in disks:  # two paths on one filesystem (even bind-mounted) make one problem
        seen.setdefault((disk.device, disk.size), []).append(disk)
    for group in seen.values():
        label = "disk use of " + " and ".join(disk.path for disk in group)
        problem = evaluate(Key.DISK_PCT, group[0].pct, lv, label)
        if problem is not None:
            st.add(replace(problem, message=f"{problem.message}, "
                                            f"{human_bytes(group[0].available)} free"))


# -- containers --------------------------------------------------------------------------------

def _containers(st: HostStatus, inv: Inventory, out: Output, prev: Sample,
                sample: Sample) -> None:
    """The containers the host's roles should run, against those Docker lists."""
    sec = out.get(Docker.name)
    if sec is None or not sec.ok:
        st.add(Problem("critical", f"Docker engine not answering: {_docker_error(sec)}"))
        return
    found = Docker.parse(sec.lines)
    st.facts["containers"] = found
    by_name = {container.name: container for container in found}
    before: dict[str, list] = prev.get("containers", {})
    sample["containers"] = {container.name: [container.id, container.restarts]
                            for container in found}
    expected: set[str] = set()
    versions: dict[str, list[str]] = {}
    for role in st.host.roles:
        specs = specs_for(inv, st.host, role)
        expected.update(spec.name for spec in specs)
        _role_containers(st, inv, role, specs, by_name, before)
        versions[role] = sorted({container.version for container in found
                                 if container.role == role and container.running})
    st.facts["versions"] = versions
    _unexpected_containers(st, found, expected)


def _docker_error(sec: Section | None) -> str:
    """Why Docker's API gave no container list, in words an operator acts on."""
    why = sec.error() if sec else "no answer"
    if why.startswith("curl: (7)"):  # the API's socket is there, nothing listens on it
        why = "cannot connect to /var/run/docker.sock (is dockerd running?)"
    return why


def _role_containers(st: HostStatus, inv: Inventory, role: str, specs: list[ContainerSpec],
                     by_name: dict[str, Container], before: dict[str, list]) -> None:
    """One role's containers: each missing or stopped one a problem, restarts since the
    last sample against the levels; how many there are, run and restarted as metrics."""
    lv = levels(inv, st.host, role)
    metrics = st.metrics.setdefault(role, {})
    running = 0
    restarts: int | None = None
    for spec in specs:
        container = by_name.get(spec.name)
        if container is None:
            st.add(Problem("critical", f"{spec.name} missing (no such container)",
                           scope=role))
            continue
        if not container.running:
            why = f"exit code {container.exit_code}" + (
                ", out of memory" if container.oom_killed else "")
            st.add(Problem("critical", f"{container.name} {container.state} ({why})",
                           scope=role))
        else:
            running += 1
        delta = _restarts_since(container, before.get(container.name))
        if delta is not None:
            restarts = (restarts or 0) + delta
            st.add(_scoped(_restart_problem(container, delta, lv), role))
    metrics[Key.CONTAINERS] = len(specs)
    metrics[Key.CONTAINERS_RUNNING] = running
    metrics[Key.RESTARTS] = restarts


def _restart_problem(container: Container, delta: int, lv: dict[str, Levels]
                     ) -> Problem | None:
    """Restarts since the last sample against the levels, saying so when the last one
    was the kernel's out-of-memory kill."""
    label = f"{container.name} restarts since last check"
    problem = evaluate(Key.RESTARTS, delta, lv, label)
    if problem is not None and container.oom_killed:
        problem = replace(problem, message=problem.message + ", last one out of memory")
    return problem


def _unexpected_containers(st: HostStatus, found: list[Container], expected: set[str]) -> None:
    """Containers no role of the host's inventory entry accounts for: a stopped one is a
    note, a running one a problem."""
    for container in found:
        if container.name in expected:
            continue
        if not container.running:
            st.notes.append(f"{container.name} left over ({container.state})")
            continue
        assigned = container.role in st.host.roles
        why = (f"more {container.role} containers than the inventory says" if assigned
               else f"role {container.role} is not assigned to {st.host.name}")
        # A cron where none belongs runs every scheduled job a second time.
        sev: Severity = "critical" if container.role == "cron" and not assigned else "warning"
        st.add(Problem(sev, f"unexpected container {container.name} running ({why})",
                       scope=container.role if container.role in st.host.roles else "host"))


def _restarts_since(container: Container, before: list | None) -> int | None:
    """Restarts since the last sample: None on the first sample, all of them if replaced."""
    if not before:
        return None
    old_id, old_count = before
    return container.restarts - int(old_count) if old_id == container.id \
        else container.restarts


def _container_for_port(st: HostStatus, inv: Inventory, port: int) -> Container | None:
    names = {spec.port: spec.name for spec in specs_for(inv, st.host, "web")}
    return next((container for container in st.facts.get("containers", [])
                 if container.name == names.get(port)), None)


# -- web ---------------------------------------------------------------------------------------

def _web(st: HostStatus, inv: Inventory, out: Output, lv: dict[str, Levels]) -> None:
    metrics = st.metrics.setdefault("web", {})
    sec = out.get(WebHealth.name)
    found = WebHealth.parse(sec.lines) if sec else {}
    probes: dict[int, Probe] = {}
    slowest = None
    for port in web_ports(inv, st.host):
        probe = found.get(health_url(st.host, port), Probe(0, 0.0, "no answer"))
        probes[port] = probe
        container = _container_for_port(st, inv, port)
        if not probe.ok:
            if container is not None and not container.running:
                continue  # the container being down is the problem, reported already
            who = f" ({container.name})" if container else ""
            st.add(Problem("critical", f"web process :{port}{who} /_health/ failed: "
                                       f"{probe.describe()}", scope="web"))
            continue
        ms = round(probe.seconds * 1000, 1)
        slowest = ms if slowest is None else max(slowest, ms)
        st.add(_scoped(evaluate(Key.HEALTH_MS, ms, lv, f"/_health/ on :{port}"), "web"))
    st.facts["web"] = probes
    metrics[Key.PROCESSES] = len(probes)
    metrics[Key.PROCESSES_UP] = sum(probe.ok for probe in probes.values())
    metrics[Key.HEALTH_MS] = slowest


# -- nginx -------------------------------------------------------------------------------------

def _nginx(st: HostStatus, out: Output, prev: Sample, sample: Sample, now: float) -> None:
    metrics = st.metrics.setdefault("nginx", {})
    sec = out.get(NginxStatus.name)
    stub = NginxStatus.parse(sec.lines) if sec and sec.ok else None
    if stub is None:
        why = sec.error() if sec else "no answer"
        st.add(Problem("critical", f"nginx_status not answering: {why}", scope="nginx"))
    else:
        metrics[Key.ACTIVE_CONNECTIONS] = stub["active"]
        for key in (Key.READING, Key.WRITING, Key.WAITING):
            metrics[key] = stub.get(key)
        metrics[Key.REQUESTS] = stub.get("requests")
        sample["nginx_requests"] = stub.get("requests")
        metrics[Key.REQUESTS_PER_S] = _rate(stub.get("requests"), prev.get("nginx_requests"),
                                            prev.get("t"), now, counter=True)
    sec = out.get(NginxUpstreams.name)
    ups = NginxUpstreams.parse(sec.lines) if sec else []
    if sec is None or (not ups and not sec.ok):
        st.add(Problem("warning", "cannot list nginx's upstreams: "
                                  f"{sec.error() if sec else 'no answer'}", scope="nginx"))
    st.facts["upstreams"] = ups
    sec = out.get(NginxChanged.name)
    st.facts["nginx_changed"] = NginxChanged.parse(sec.lines) if sec and sec.ok else None
    metrics[Key.UPSTREAMS] = len(ups)
    metrics[Key.UPSTREAMS_DRAINED] = sum(up.drained for up in ups)
    metrics[Key.UPSTREAMS_DOWN] = sum(not up.drained and not up.probe.ok for up in ups)


def _ingest(st: HostStatus, out: Output, lv: dict[str, Levels]) -> None:
    """nginx's answers to ingestion requests in the last minute: rates per status class and
    per cause, the error rate against its levels, and each endpoint 9.1.2 lacks named."""
    sec = out.get(NginxIngest.name)
    if sec is None:
        return  # a script without the fact (an older capture); a cut-off one is reported
    facts = NginxIngest.parse(sec.lines)
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
    metrics = st.metrics.setdefault("nginx", {})
    per_s = 1.0 / ingestion.WINDOW_S
    metrics[Key.INGEST_PER_S] = round(ing.total * per_s, 3)
    for status_class, count in ing.classes.items():
        metrics[ingest_class_key(status_class)] = round(count * per_s, 3)
    for cause, count in ing.causes.items():
        metrics[ingest_cause_key(cause)] = round(count * per_s, 3)
    metrics[Key.INGEST_ERROR_PCT] = ing.error_pct
    _ingest_errors(st, ing, lv)
    # Each route 9.1.2 lacks is its own finding: it names who sends there and what is lost.
    for name, by_status in ing.lacking.items():
        count = sum(by_status.values())
        sev, limit = severity_of(count * per_s, lv.get(Key.INGEST_MISSING_ENDPOINT_PER_S,
                                                        (None, None)))
        if sev == "ok":
            continue
        endpoint = ingestion.BY_NAME[name]
        st.add(Problem(sev, f"{count} request{'s' * (count != 1)} to {endpoint.shown} in the "
                            f"last minute, answered {ingestion.statuses_text(by_status)}: "
                            f"{endpoint.why}",
                       metric=Key.INGEST_MISSING_ENDPOINT_PER_S,
                       value=round(count * per_s, 3), limit=limit, scope="nginx"))


def _ingest_errors(st: HostStatus, ing: ingestion.Ingestion, lv: dict[str, Levels]) -> None:
    """The error rate against its levels, its causes listed; below them (or on too few
    requests to judge), the causes as a note."""
    if not ing.errors:
        return
    of = (f"{ing.errors} of {ing.total} request{'s' * (ing.total != 1)} in the last minute: "
          f"{ingestion.causes_text(ing)}")
    problem = evaluate(Key.INGEST_ERROR_PCT, ing.error_pct, lv) \
        if ing.total >= ingestion.MIN_REQUESTS else None
    if problem is None:
        st.notes.append(f"ingestion errors {fmt(ing.error_pct, 'pct')}, {of}")
        return
    st.add(replace(problem, message=f"{problem.message}, {of}", scope="nginx"))


def _rate(value: float | None, before: float | None, t_before: float | None, now: float,
          counter: bool = False) -> float | None:
    """Change per second since the last sample (None without one; a reset counter too)."""
    if value is None or before is None or t_before is None or now - t_before < 1:
        return None
    if counter and value < before:
        return None
    return round((value - before) / (now - t_before), 2)


# -- worker ------------------------------------------------------------------------------------

def _payloads(st: HostStatus, out: Output, lv: dict[str, Levels]) -> None:
    """Payloads the worker processes found missing in the last minute: each one an accepted
    event lost."""
    sec = out.get(WorkerPayloads.name)
    if sec is None:
        return  # a script without the fact (an older capture); a cut-off one is reported
    facts = WorkerPayloads.parse(sec.lines)
    st.facts["payloads"] = facts
    metrics = st.metrics.setdefault("worker", {})
    for message in ingestion.MISSING_PAYLOAD:
        metrics[Key(ingestion.metric_name(message))] = facts.total(message)
    metrics[Key.PAYLOADS_MISSING] = facts.total()
    if facts.cut_off:
        st.add(Problem("warning", "reading the worker logs of the last minute was cut off after "
                                  f"{FACT_TIMEOUT} s: the count of missing payloads is partial",
                       scope="worker"))
    for name, rc in sorted(facts.rcs.items()):
        if rc:  # a missing container is reported by the container check already
            st.notes.append(f"could not read {name}'s log (docker logs exit code {rc})")
    problem = evaluate(Key.PAYLOADS_MISSING, metrics[Key.PAYLOADS_MISSING], lv)
    if problem is not None:
        where = ", ".join(f"{message} {count} on "
                          f"{container if container != '-' else 'a worker (read cut off)'}"
                          for container, per in sorted(facts.counts.items())
                          for message, count in sorted(per.items(),
                                                       key=lambda entry: -entry[1]))
        st.add(replace(problem, scope="worker", message=(
            f"{problem.message}: {where}; accepted events lost: their payloads were gone from "
            "the payload Redis when a worker came for them (evicted, or older than "
            f"{duration(PAYLOAD_TTL_S)})")))


def _cleanup(st: HostStatus, inv: Inventory, out: Output, lv: dict[str, Levels],
             now: float) -> None:
    """The daily retention cleanup: its schedule, its last run, and runs failed in a row."""
    from ..configs.context import retention

    sec = out.get(Cleanup.name)
    if sec is None:
        return
    facts = Cleanup.parse(sec.lines)
    keep = retention(inv)
    st.facts["cleanup"] = facts
    metrics = st.metrics.setdefault("cron", {})
    hours = facts.hours_without_a_run(now)
    metrics[Key.CLEANUP_HOURS_SINCE_RUN] = round(hours, 1) if hours is not None else None
    metrics[Key.CLEANUP_FAILED_IN_A_ROW] = facts.failed_in_a_row()
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
    for metric in (Key.CLEANUP_HOURS_SINCE_RUN, Key.CLEANUP_FAILED_IN_A_ROW):
        problem = evaluate(metric, metrics[metric], lv)
        if problem is not None:
            st.add(replace(problem, scope="cron", message=(
                f"{problem.message}: see {cleanup.LAST_LOG} on {st.host.name}, or run "
                "'fab cron.cleanup'")))


# -- Redis -------------------------------------------------------------------------------------

def _redis(st: HostStatus, inv: Inventory, role: str, out: Output,
           lv: dict[str, Levels], prev: Sample, sample: Sample, now: float) -> None:
    """A Redis: master or not, memory, clients, rejected connections, evictions,
    persistence; and the queue's length and backlog on the queue Redis."""
    metrics = st.metrics.setdefault(role, {})
    sec = out.get(Redis.name_for(role))
    facts = Redis.parse(sec.lines) if sec else None
    if facts is None or not facts.info:
        # The first complaint is the cause ('AUTH failed: WRONGPASS ...'), the rest follow.
        why = (facts.errors[0] if facts and facts.errors else sec.error()) if sec else \
            "no answer"
        st.add(Problem("critical", f"Redis not answering: {why}", scope=role))
        return
    st.facts[role] = facts
    info = facts.info
    payload = holds_payloads(role)
    metrics[Key.HOLDS_PAYLOADS] = int(payload)
    if info.get("role") != "master":
        st.add(Problem("critical", f"Redis is a {info.get('role', '?')}, not a master "
                                   "(it refuses writes)", scope=role))
    _redis_memory(st, role, facts, lv, metrics, payload)
    _redis_clients(st, inv, role, facts, lv, metrics)
    metrics[Key.OPS_PER_S] = facts.num("instantaneous_ops_per_sec")
    before = prev.get("redis", {}).get(role, {})
    now_sample: dict[str, Any] = {}
    _rejected(st, role, facts, lv, metrics, before, now_sample)
    _evictions(st, role, facts, lv, metrics, before, now_sample, payload)
    _persistence(st, role, info)
    if role == "redis-queue":
        # Ages on the host's clock: start_time is a web host's, and the cluster's hosts
        # agree on the time more surely than they agree with the operator's laptop.
        host_now = out.ended_ns / 1e9 if out.ended_ns is not None else now
        _queue(st, facts, lv, metrics, before, now_sample, prev.get("t"), now, host_now)
    sample.setdefault("redis", {})[role] = now_sample


def _redis_memory(st: HostStatus, role: str, facts: RedisFacts, lv: dict[str, Levels],
                  metrics: dict[str, Value], payload: bool) -> None:
    """Memory against maxmemory; on a Redis holding payloads, its eviction policy too."""
    used, maxmem = facts.num("used_memory"), facts.num("maxmemory")
    metrics[Key.USED_MEMORY], metrics[Key.MAXMEMORY] = used, maxmem
    metrics[Key.MEMORY_PCT] = round(100 * used / maxmem, 2) \
        if used is not None and maxmem else None
    if metrics[Key.MEMORY_PCT] is not None:
        what = "payload memory" if payload else "memory"
        problem = evaluate(Key.MEMORY_PCT, metrics[Key.MEMORY_PCT], lv,
                           f"{what} ({human_bytes(used or 0)} of maxmemory "
                           f"{human_bytes(maxmem or 0)})")
        if problem is not None and payload:
            problem = replace(problem, message=problem.message
                              + ": when full, web refuses new events")
        st.add(_scoped(problem, role))
    if payload:
        _payload_policy(st, role, facts.info, maxmem)


def _redis_clients(st: HostStatus, inv: Inventory, role: str, facts: RedisFacts,
                   lv: dict[str, Levels], metrics: dict[str, Value]) -> None:
    """Connected clients against maxclients (the inventory's when Redis does not say)."""
    clients = facts.num("connected_clients")
    maxclients = facts.num("maxclients") or float(settings(inv, role, st.host)["maxclients"])
    metrics[Key.CONNECTED_CLIENTS], metrics[Key.MAXCLIENTS] = clients, maxclients
    metrics[Key.CLIENTS_PCT] = round(100 * clients / maxclients, 1) \
        if clients is not None else None
    st.add(_scoped(evaluate(Key.CLIENTS_PCT, metrics[Key.CLIENTS_PCT], lv,
                            f"clients ({clients:.0f} of maxclients {maxclients:.0f})"
                            if clients is not None else None), role))
    metrics[Key.BLOCKED_CLIENTS] = facts.num("blocked_clients")


def _rejected(st: HostStatus, role: str, facts: RedisFacts, lv: dict[str, Levels],
              metrics: dict[str, Value], before: dict, now_sample: dict) -> None:
    """Connections refused at maxclients: the count, and those since the last sample."""
    rejected = facts.num("rejected_connections")
    metrics[Key.REJECTED_CONNECTIONS] = rejected
    now_sample["rejected"] = rejected
    if rejected is not None and before.get("rejected") is not None:
        delta = max(rejected - before["rejected"], 0)
        metrics[Key.REJECTED_SINCE_LAST] = delta
        st.add(_scoped(evaluate(Key.REJECTED_CONNECTIONS, delta, lv), role))


def _persistence(st: HostStatus, role: str, info: dict[str, str]) -> None:
    """A failed snapshot or append-only write, and a data set still loading."""
    for key, label in (("rdb_last_bgsave_status", "last snapshot"),
                       ("aof_last_write_status", "last append-only file write")):
        if info.get(key, "ok") != "ok":
            # The queue stops accepting writes when a snapshot fails (stop-writes-on-bgsave).
            sev: Severity = "critical" if role == "redis-queue" else "warning"
            st.add(Problem(sev, f"{label} failed ({key}:{info[key]})", scope=role))
    if info.get("loading") == "1":
        st.add(Problem("warning", "loading its data set from disk", scope=role))


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


def _evictions(st: HostStatus, role: str, facts: RedisFacts, lv: dict[str, Levels],
               metrics: dict[str, Value], before: dict, now_sample: dict,
               payload: bool) -> None:
    evicted = facts.num("evicted_keys")
    metrics[Key.EVICTED_KEYS] = evicted
    now_sample["evicted"] = evicted
    if evicted is not None and before.get("evicted") is not None:
        # A restarted Redis counts from 0 again.
        metrics[Key.EVICTED_SINCE_LAST] = max(evicted - before["evicted"], 0)
    if payload:
        label, why = ("payloads evicted since Redis started",
                      "accepted events lost (preprocess.failed.empty)")
    elif role == "redis-queue":
        label, why = "evicted keys since Redis started", "queued tasks were dropped"
    else:
        label, why = None, ""
    problem = evaluate(Key.EVICTED_KEYS, evicted, lv, label)
    st.add(_scoped(replace(problem, message=f"{problem.message}: {why}")
                   if problem and why else problem, role))
    problem = evaluate(Key.EVICTED_SINCE_LAST, metrics.get(Key.EVICTED_SINCE_LAST), lv)
    if problem is not None and not payload:
        problem = replace(problem, message=problem.message + ": the cache is smaller than what "
                                                             "Sentry keeps in it; events are "
                                                             "lost if payloads are still "
                                                             "stored here")
    st.add(_scoped(problem, role))


def _queue(st: HostStatus, facts: RedisFacts, lv: dict[str, Levels],
           metrics: dict[str, Value], before: dict, now_sample: dict, t_before: float | None,
           now: float, host_now: float) -> None:
    if not facts.lengths:
        st.add(Problem("warning", "queue length unknown: "
                                  f"{facts.errors[-1] if facts.errors else 'no LLEN answer'}",
                       scope="redis-queue"))
        return
    length = sum(facts.lengths.values())
    metrics[Key.QUEUE_LENGTH] = length
    now_sample["queue"] = length
    metrics[Key.QUEUE_GROWTH_PER_S] = _rate(length, before.get("queue"), t_before, now)
    st.add(_scoped(evaluate(Key.QUEUE_LENGTH, length, lv), "redis-queue"))
    st.add(_scoped(evaluate(Key.QUEUE_GROWTH_PER_S, metrics[Key.QUEUE_GROWTH_PER_S], lv,
                            "queue growth since last check"), "redis-queue"))
    if facts.heartbeats is not None:
        metrics[Key.WORKER_HEARTBEATS] = facts.heartbeats
    _backlog(st, facts, lv, metrics, host_now)


def _backlog(st: HostStatus, facts: RedisFacts, lv: dict[str, Levels],
             metrics: dict[str, Value], host_now: float) -> None:
    """How long the oldest queued task has waited since its event was accepted."""
    ages = backlog_ages(facts, host_now)
    st.facts["backlog"] = ages
    known = {queue: age for queue, age in ages.items() if age is not None}
    unknown = sorted(queue for queue, age in ages.items() if age is None)
    for queue in unknown:
        st.notes.append(f"backlog age of {queue} unknown: its oldest message is not a Celery "
                        "task with a start_time")
    if not known:
        # Nothing waiting (the queues are empty) is an age of 0; unreadable ones are unknown.
        metrics[Key.BACKLOG_AGE_S] = None if unknown else 0.0
        return
    queue, age = max(known.items(), key=lambda entry: entry[1])
    metrics[Key.BACKLOG_AGE_S] = age
    problem = evaluate(Key.BACKLOG_AGE_S, age, lv, f"backlog age of {queue}")
    if problem is not None:
        problem = replace(problem, message=f"{problem.message}: workers are behind; an event's "
                                           f"payload expires {duration(PAYLOAD_TTL_S)} after it "
                                           "was accepted")
    st.add(_scoped(problem, "redis-queue"))


# -- PostgreSQL --------------------------------------------------------------------------------

def _db(st: HostStatus, out: Output, lv: dict[str, Levels]) -> None:
    metrics = st.metrics.setdefault("db", {})
    sec = out.get(Db.name)
    facts = Db.parse(sec.lines) if sec else None
    if facts is None or facts.in_recovery is None:
        st.add(Problem("critical", f"PostgreSQL not answering: "
                                   f"{sec.error() if sec else 'no answer'}", scope="db"))
        return
    st.facts["db"] = facts
    metrics[Key.IS_PRIMARY] = 0 if facts.in_recovery else 1
    conns, maxc = facts.num("connections"), facts.num("max_connections")
    usable = (maxc or 0) - (facts.num("reserved_connections") or 0)
    metrics[Key.CONNECTIONS], metrics[Key.MAX_CONNECTIONS] = conns, maxc
    metrics[Key.CONNECTIONS_PCT] = round(100 * conns / usable, 1) \
        if conns is not None and usable > 0 else None
    st.add(_scoped(evaluate(Key.CONNECTIONS_PCT, metrics[Key.CONNECTIONS_PCT], lv,
                            f"connections ({conns:.0f} of {usable:.0f} for clients)"
                            if conns is not None else None), "db"))
    metrics[Key.TIMELINE] = facts.num("timeline")
    metrics[Key.STANDBYS] = len(facts.standbys)
    for slot in facts.slots:
        if not slot.active:
            held = f", holding {human_bytes(slot.retained_bytes)} of WAL" \
                if slot.retained_bytes is not None else ""
            st.notes.append(f"replication slot {slot.name} inactive{held}")


def _archive(st: HostStatus, out: Output, lv: dict[str, Levels]) -> None:
    """WAL waiting for the archive (a cluster with a backup host): the oldest one's age is
    what a restore could not reach if this host were lost now."""
    sec = out.get(ArchiveStatus.name)
    found = ArchiveStatus.parse(sec.lines) if sec is not None else None
    if found is None:
        return
    waiting, lag = found
    metrics = st.metrics.setdefault("db", {})
    metrics[Key.ARCHIVE_WAITING], metrics[Key.ARCHIVE_LAG_S] = waiting, lag
    problem = evaluate(Key.ARCHIVE_LAG_S, lag if waiting else 0, lv)
    if problem is not None:
        st.add(replace(problem, scope="db", message=(
            f"{problem.message}: {waiting} WAL segment(s) not archived; a restore cannot "
            "reach past them (see the db container's log for archive-push errors)")))


# -- backups -----------------------------------------------------------------------------------

def _backup(st: HostStatus, out: Output, lv: dict[str, Levels], now: float) -> None:
    """The repository host: the last good backup's age, the last drill's result and age."""
    sec = out.get(BackupRecord.name)
    if sec is None:
        return
    facts = BackupRecord.parse(sec.lines)
    st.facts["backup"] = facts
    metrics = st.metrics.setdefault("backup", {})
    good, drill = facts.last_good_backup(), facts.last_drill()
    since = good.ended if good else facts.scheduled_since
    metrics[Key.BACKUP_HOURS_SINCE_GOOD] = round((now - since) / 3600, 1) if since else None
    drill_since = drill.started if drill else facts.scheduled_since
    metrics[Key.DRILL_HOURS_SINCE_RUN] = round((now - drill_since) / 3600, 1) \
        if drill_since else None
    metrics[Key.DRILL_FAILED] = None if drill is None else int(not drill.ok)
    st.notes.append("backups: " + (f"last good {good.kind[7:]} backup ended "
                                   f"{fmt((now - good.ended) / 3600, 'hours_ago')}"
                                   if good else "no good backup yet")
                    + "; drill: " + _drill_note(facts, now))
    if good is None and facts.scheduled_since is None:
        st.add(Problem("warning", "no backup has been taken and none is scheduled (no record "
                                  "of the scheduler starting): run 'fab db.backup --type full'",
                       scope="backup"))
    for metric, fix in ((Key.BACKUP_HOURS_SINCE_GOOD, "run 'fab db.backup'"),
                        (Key.DRILL_HOURS_SINCE_RUN, "run 'fab db.drill'"),
                        (Key.DRILL_FAILED, "see 'fab db.drill' and "
                                           f"{pgbackrest.DRILL_FILE} on {st.host.name}")):
        problem = evaluate(metric, metrics[metric], lv)
        if problem is not None:
            st.add(replace(problem, scope="backup", message=f"{problem.message}: {fix}"))


def _drill_note(facts: pgbackrest.BackupFacts, now: float) -> str:
    drill = facts.last_drill()
    if drill is None:
        return "none yet"
    result = facts.drill
    how = "ok" if drill.ok else f"FAILED ({result.problem if result else 'no record'})"
    extra = (f", restored in {result.restore_seconds} s" if result and result.ok and
             result.restore_seconds is not None else "")
    return f"{fmt((now - drill.started) / 3600, 'hours_ago')}, {how}{extra}"


# -- PgBouncer ---------------------------------------------------------------------------------

def _num(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key, "0") or 0)
    except ValueError:
        return 0.0


def _pgbouncer(st: HostStatus, out: Output, lv: dict[str, Levels], prev: Sample,
               sample: Sample, now: float) -> None:
    metrics = st.metrics.setdefault("pgbouncer", {})
    sec = out.get(Pgbouncer.name)
    facts = Pgbouncer.parse(sec.lines) if sec else None
    if facts is None or not facts.pools:
        why = sec.error() if sec else "no answer"
        st.add(Problem("critical", f"PgBouncer admin console not answering: {why}",
                       scope="pgbouncer"))
        return
    st.facts["pgbouncer"] = facts
    pools = [pool for pool in facts.pools if pool.get("database") != "pgbouncer"]
    # SHOW POOLS' columns of these names: the metric is their sum over the pools.
    for key in (Key.CL_ACTIVE, Key.CL_WAITING, Key.SV_ACTIVE, Key.SV_IDLE, Key.SV_USED):
        metrics[key] = sum(_num(pool, key) for pool in pools)
    metrics[Key.MAXWAIT_S] = max((_num(pool, "maxwait") + _num(pool, "maxwait_us") / 1e6
                                  for pool in pools), default=0.0)
    st.add(_scoped(evaluate(Key.CL_WAITING, metrics[Key.CL_WAITING], lv), "pgbouncer"))
    st.add(_scoped(evaluate(Key.MAXWAIT_S, metrics[Key.MAXWAIT_S], lv), "pgbouncer"))
    stats = [row for row in facts.stats if row.get("database") != "pgbouncer"]
    queries = sum(_num(row, "total_query_count") for row in stats)
    metrics[Key.QUERIES_PER_S] = _rate(queries, prev.get("pgb_queries"), prev.get("t"), now,
                                       counter=True)
    sample["pgb_queries"] = queries
    metrics[Key.AVG_QUERY_MS] = max((_num(row, "avg_query_time") / 1000 for row in stats),
                                    default=None)
    metrics[Key.AVG_WAIT_MS] = max((_num(row, "avg_wait_time") / 1000 for row in stats),
                                   default=None)
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
