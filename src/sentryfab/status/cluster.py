"""Findings only the whole cluster shows: one primary, one cron, replicas in step, PgBouncer
on the primary, one version per role, nginx's failing upstreams explained or not.

Pure: the checked hosts' statuses in, problems added to the host they concern (a lagging
replica, a PgBouncer pointing elsewhere) or to the cluster view (split-brain, cron count).
"""

from __future__ import annotations

import time
from dataclasses import replace

from ..configs.context import SENTRY_DB, web_ports
from ..containers import cleanup
from ..folding import fold_names
from ..inventory import Inventory
from . import ingestion
from .facts.db import DbFacts
from .facts.nginx import Upstream
from .facts.web import Probe
from .metrics import Key
from .model import ClusterView, HostStatus, Problem
from .thresholds import evaluate, levels


def analyse(inv: Inventory, statuses: list[HostStatus]) -> ClusterView:
    """Cluster-level findings over every checked host (adds host problems in place)."""
    view = ClusterView()
    _primary(view, statuses)
    _replicas(inv, view, statuses)
    _pgbouncer(view, statuses)
    _cron(view, statuses)
    _versions(view, statuses)
    _upstreams(inv, statuses)
    _web_capacity(inv, view, statuses)
    _queue(view, statuses)
    _ingestion(view, statuses)
    _permissions(view, statuses)
    return view


def _db_facts(statuses: list[HostStatus]) -> list[tuple[HostStatus, DbFacts]]:
    return [(st, st.facts["db"]) for st in statuses if "db" in st.facts]


# -- the database --------------------------------------------------------------------------------

def _primary(view: ClusterView, statuses: list[HostStatus]) -> None:
    dbs = [st for st in statuses if st.host.has("db")]
    if not dbs:
        return
    answered = _db_facts(statuses)
    view.primaries = [st.host.name for st, facts in answered if facts.in_recovery is False]
    view.replicas = [st.host.name for st, facts in answered if facts.in_recovery]
    silent = [st.host.name for st in dbs if "db" not in st.facts]
    if len(view.primaries) == 1:
        view.primary = view.primaries[0]
    elif len(view.primaries) > 1:
        names = " and ".join(view.primaries)
        view.problems.append(Problem(
            "critical", f"split-brain: {names} are all primaries, each accepting its own "
                        "writes (stop all but one now; fab db.status shows their timelines)",
            scope="cluster", hosts=tuple(view.primaries), roles=("db",)))
    elif silent and set(silent) <= _denied(statuses):
        pass  # not seen for want of rights: that finding is the one to act on
    elif not silent:
        view.problems.append(Problem(
            "critical", f"no primary: every database ({', '.join(view.replicas)}) is a "
                        "replica, nothing accepts writes", scope="cluster",
            hosts=tuple(view.replicas), roles=("db",)))
    else:
        replicas = (f"; {', '.join(view.replicas)} "
                    f"{'is a replica' if len(view.replicas) == 1 else 'are replicas'}"
                    if view.replicas else "")
        view.problems.append(Problem(
            "critical", f"no primary found: {', '.join(silent)} did not answer{replicas}",
            scope="cluster", hosts=tuple(silent), roles=("db",)))


def _replicas(inv: Inventory, view: ClusterView, statuses: list[HostStatus]) -> None:
    by_host = {st.host.name: facts for st, facts in _db_facts(statuses)}
    primary = by_host.get(view.primary) if view.primary else None
    for st, facts in _db_facts(statuses):
        if not facts.in_recovery:
            continue
        metrics = st.metrics.setdefault("db", {})
        lv = levels(inv, st.host, "db")
        receiver = facts.node.get("wal_receiver", "").split()
        row = None
        if primary is not None:
            row = next((standby for standby in primary.standbys
                        if standby.name == st.host.name or standby.address == st.host.address),
                       None)
        if not receiver or receiver[0] != "streaming":
            state = receiver[0] if receiver else "not running"
            st.add(Problem("critical", f"not streaming from the primary (WAL receiver: {state})",
                           scope="db"))
        elif primary is not None and row is None:
            st.add(Problem("critical", f"the primary {view.primary} lists no stream to this "
                                       "replica", scope="db"))
        if facts.node.get("replay_paused") in ("paused", "pause requested"):
            st.add(Problem("warning", "WAL replay is paused (SELECT pg_wal_replay_resume() "
                                      "resumes it)", scope="db"))
        lag_bytes = _max(row.lag_bytes if row else None, facts.num("replay_lag_bytes"))
        lag_s = _max(row.lag_seconds if row else None, facts.num("replay_age_s"))
        metrics[Key.REPLICATION_LAG_BYTES] = lag_bytes
        metrics[Key.REPLICATION_LAG_S] = round(lag_s, 3) if lag_s is not None else None
        st.add(_db(evaluate(Key.REPLICATION_LAG_BYTES, lag_bytes, lv)))
        st.add(_db(evaluate(Key.REPLICATION_LAG_S, lag_s, lv)))
        mine, theirs = facts.num("timeline"), primary.num("timeline") if primary else None
        if mine is not None and theirs is not None and mine != theirs:
            st.add(Problem("warning", f"on timeline {mine:.0f}, the primary {view.primary} on "
                                      f"{theirs:.0f}", scope="db"))


def _db(problem: Problem | None) -> Problem | None:
    return None if problem is None else replace(problem, scope="db")


def _max(*values: float | None) -> float | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


def _pgbouncer(view: ClusterView, statuses: list[HostStatus]) -> None:
    dbs = {st.host.address: st.host.name for st in statuses if st.host.has("db")}
    dbs.update({st.host.name: st.host.name for st in statuses if st.host.has("db")})
    name = SENTRY_DB["name"]
    for st in statuses:
        target = st.facts.get("pgb_targets", {}).get(name)
        if target is None:
            continue
        where = dbs.get(target[0])
        label = f"{where} ({target[0]})" if where else target[0]
        st.metrics.setdefault("pgbouncer", {})[Key.POINTS_AT_PRIMARY] = None
        st.facts["pgb_target_host"] = where or target[0]
        if view.split_brain or not dbs:
            continue
        if view.primary is None:
            st.add(Problem("warning", f"points {name} at {label}; no primary was found to "
                                      "compare with", scope="pgbouncer"))
            continue
        ok = where == view.primary
        st.metrics["pgbouncer"][Key.POINTS_AT_PRIMARY] = int(ok)
        if not ok:
            what = "a replica" if where in view.replicas else \
                "not a database host" if where is None else "a database that did not answer"
            st.add(Problem("critical", f"points {name} at {label}, {what}; the primary is "
                                       f"{view.primary} (writes fail)", scope="pgbouncer"))


# -- containers across hosts ---------------------------------------------------------------------

def _cron(view: ClusterView, statuses: list[HostStatus]) -> None:
    if not any(st.host.has("cron") for st in statuses):
        return
    running = [(st.host.name, container.name) for st in statuses
               for container in st.facts.get("containers", [])
               if container.role == "cron" and container.running
               and container.name != cleanup.CONTAINER]
    view.cron_hosts = [host for host, _ in running]
    blind = [st.host.name for st in statuses if st.host.roles and "containers" not in st.facts]
    unseen = f" ({fold_names(blind)} could not be checked)" if blind else ""
    where = ", ".join(f"{host} ({container})" for host, container in running)
    if not running and set(blind) & _denied(statuses):
        pass  # a host that may hold the cron could not be seen for want of rights
    elif not running:
        view.problems.append(Problem(
            "critical", f"no cron running: scheduled jobs (and requeueing dead workers' events)"
                        f" have stopped{unseen}", scope="cluster",
            hosts=tuple(st.host.name for st in statuses if st.host.has("cron")),
            roles=("cron",)))
    elif len(running) > 1:
        view.problems.append(Problem(
            "critical", f"{len(running)} crons running: {where}; exactly one must run (every "
                        f"scheduled job now runs {len(running)} times)", scope="cluster",
            hosts=tuple(dict.fromkeys(view.cron_hosts)), roles=("cron",)))


def _versions(view: ClusterView, statuses: list[HostStatus]) -> None:
    per_role: dict[str, dict[str, list[str]]] = {}
    for st in statuses:
        for role, versions in st.facts.get("versions", {}).items():
            for version in versions:
                per_role.setdefault(role, {}).setdefault(version, []).append(st.host.name)
    view.versions = per_role
    for role, by_version in per_role.items():
        if len(by_version) > 1:
            spread = "; ".join(f"{version} on {fold_names(hosts)}" for version, hosts in
                               sorted(by_version.items()))
            view.problems.append(Problem(
                "warning", f"{role} runs {len(by_version)} versions: {spread} (a rollout left "
                           f"half done? fab deploy.{role.split('-')[0]} finishes it)",
                scope="cluster", roles=(role,)))


# -- web and nginx -------------------------------------------------------------------------------

def _upstreams(inv: Inventory, statuses: list[HostStatus]) -> None:
    """An upstream nginx cannot reach is nginx's problem only if its web host says it is fine."""
    reported: dict[str, str] = {}   # endpoint -> web host that reports that process down
    checked: set[str] = set()
    for st in statuses:
        probes: dict[int, Probe] = st.facts.get("web", {})
        for port, probe in probes.items():
            checked.add(f"{st.host.address}:{port}")
            if not probe.ok:
                reported[f"{st.host.address}:{port}"] = st.host.name
        if st.host.has("web") and not st.reachable:
            reported.update({ep: st.host.name for ep in _endpoints_of(st, statuses)})
    # The lock host's answer: {"lock": holder or None}; no such fact when it was not read.
    lock = next((other.facts for other in statuses if "lock" in other.facts), None)
    for st in statuses:
        ups: list[Upstream] = st.facts.get("upstreams", [])
        live = [up for up in ups if not up.drained]
        bad = [up for up in live if not up.probe.ok]
        lonely = [up for up in bad if up.endpoint not in reported]
        for up in bad:
            if up.endpoint in reported:
                st.notes.append(f"upstream {up.endpoint} ({up.name}) down, reported on "
                                f"{reported[up.endpoint]}")
        drained = [up.endpoint for up in ups if up.drained]
        if drained:
            _drained(st, drained, lock)
        if not lonely or not live:
            continue
        pct = 100.0 * len(lonely) / len(live)
        problem = evaluate(Key.UPSTREAMS_DOWN_PCT, pct, levels(inv, st.host, "nginx"))
        if problem is not None:
            which = ", ".join(f"{up.endpoint} ({up.name}): {up.probe.describe()}"
                              for up in lonely)
            st.add(Problem(problem.severity, f"{problem.message}: {which}",
                           metric=problem.metric, value=problem.value, limit=problem.limit,
                           scope="nginx"))


def _drained(st: HostStatus, drained: list[str], lock: dict | None) -> None:
    """Upstreams out of rotation are a deploy at work while it holds the lock; with the
    lock free they are what an interrupted one left behind: capacity lost, a warning."""
    holder = lock.get("lock") if lock is not None else None
    if lock is None or holder is not None:
        who = f" ({holder.describe()})" if holder is not None else ""
        st.notes.append(f"drained for a deploy{who}: {', '.join(drained)}")
        return
    changed = st.facts.get("nginx_changed")
    since = (" since " + time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(changed))
             if changed else "")
    st.add(Problem("warning", f"{len(drained)} upstream(s) out of nginx's rotation{since} "
                              f"with no deploy running: {', '.join(drained)} (an interrupted "
                              "deploy? `fab deploy.web` or `fab config.push --roles=nginx` "
                              "puts them back)", metric=Key.UPSTREAMS_DRAINED_IDLE,
                   value=len(drained), scope="nginx"))


def _endpoints_of(st: HostStatus, statuses: list[HostStatus]) -> list[str]:
    # An unreachable web host: every upstream pointing at its address is explained by that.
    return [up.endpoint for other in statuses for up in other.facts.get("upstreams", [])
            if up.endpoint.rsplit(":", 1)[0] == st.host.address]


def _web_capacity(inv: Inventory, view: ClusterView, statuses: list[HostStatus]) -> None:
    # A host refused before its probes ran (sudo said no) has processes in an unknown state.
    webs = [st for st in statuses if st.host.has("web")
            and ("web" in st.facts or "denied" not in st.facts)]
    if not webs:
        return
    total = sum(len(web_ports(inv, st.host)) for st in webs)
    up = sum(int(st.metrics.get("web", {}).get(Key.PROCESSES_UP) or 0) for st in webs
             if st.reachable)
    if not total:
        return
    pct = 100.0 * (total - up) / total
    problem = evaluate(Key.WEB_DOWN_PCT, pct, levels(inv, webs[0].host, "web"),
                       f"web processes down across the cluster ({total - up} of {total})")
    if problem is not None:
        view.problems.append(Problem(problem.severity, problem.message, metric=problem.metric,
                                     value=problem.value, limit=problem.limit, scope="cluster",
                                     roles=("web",)))


# -- the queue -------------------------------------------------------------------------------------

def _queue(view: ClusterView, statuses: list[HostStatus]) -> None:
    queues = [st for st in statuses
              if Key.QUEUE_LENGTH in st.metrics.get("redis-queue", {})]
    if not queues:
        return
    metrics = queues[0].metrics["redis-queue"]
    view.queue_length = int(metrics[Key.QUEUE_LENGTH] or 0)
    growth = metrics.get(Key.QUEUE_GROWTH_PER_S)
    view.queue_growth_per_s = float(growth) if growth is not None else None
    age = metrics.get(Key.BACKLOG_AGE_S)
    view.backlog_age_s = float(age) if age is not None else None
    beats = metrics.get(Key.WORKER_HEARTBEATS)
    workers = [st for st in statuses if st.host.has("worker")]
    if beats is None or not workers or any("containers" not in st.facts for st in workers):
        return
    running = sum(1 for st in workers for container in st.facts["containers"]
                  if container.role == "worker" and container.running)
    if beats < running:
        view.problems.append(Problem(
            "warning", f"{beats:.0f} worker heartbeats in the queue Redis for {running} running "
                       "worker processes: some workers are stuck or cannot reach Redis",
            scope="cluster", roles=("worker",)))


# -- ingestion -------------------------------------------------------------------------------------

def _ingestion(view: ClusterView, statuses: list[HostStatus]) -> None:
    """The cluster's ingestion over the last minute: every nginx's requests and errors summed
    (the error rate of the whole, not an average of rates), every worker's missing payloads."""
    seen: list[ingestion.Ingestion] = [st.facts["ingestion"] for st in statuses
                                       if "ingestion" in st.facts]
    if seen:
        total = sum(ing.total for ing in seen)
        view.ingest_per_s = round(total / ingestion.WINDOW_S, 3)
        view.ingest_error_pct = round(100.0 * sum(ing.errors for ing in seen) / total, 2) \
            if total else None
    missing = [st.metrics["worker"][Key.PAYLOADS_MISSING] for st in statuses
               if Key.PAYLOADS_MISSING in st.metrics.get("worker", {})]
    if missing:
        view.payloads_missing = int(sum(count or 0 for count in missing))


# -- permissions -----------------------------------------------------------------------------------

def _denied(statuses: list[HostStatus]) -> set[str]:
    """Hosts whose facts the login may not read (checks.py found why, with the fix)."""
    return {st.host.name for st in statuses if "denied" in st.facts}


def _permissions(view: ClusterView, statuses: list[HostStatus]) -> None:
    """One line per kind of refusal: 'deploy may not use Docker on 10 hosts: <fix>'."""
    groups: dict[tuple[str, str, str], list[HostStatus]] = {}
    for st in statuses:
        denial = st.facts.get("denied")
        if denial is not None:
            groups.setdefault((denial.user, denial.what, denial.fix), []).append(st)
    for members in groups.values():
        denial = members[0].facts["denied"]
        view.problems.append(Problem(
            "critical", denial.summary(len(members)), scope="cluster",
            hosts=tuple(st.host.name for st in members)))
