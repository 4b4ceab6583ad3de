"""Ask every db host and PgBouncer what it is, at once: the Topology; and from it the
ClusterState that templates render with (where the primary is, whether degraded)."""

from __future__ import annotations

from collections.abc import Iterable

from .. import become
from ..configs.context import ClusterState, initial_state, settings
from ..containers.postgres import wal_end, wal_file_name
from ..containers.spec import container_name, image_ref
from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..remote import HostSession, Runner
from ..secrets import Secrets
from . import commands, parse
from .model import Bouncer, DbNode, Topology, lsn_text

DB_CONTAINER = container_name("db", 1)
BOUNCER_CONTAINER = container_name("pgbouncer", 1)
#: Roles whose rendered files depend on where the primary is.
STATEFUL_ROLES = ("db", "pgbouncer")


class UnknownPrimary(SentryfabError):
    """The db hosts have data but none can be told to be the primary."""


def _node(inv: Inventory, h: Host) -> DbNode:
    return DbNode(h.name, h.address, int(settings(inv, "db", h)["port"]))


def _bouncer(inv: Inventory, h: Host) -> Bouncer:
    return Bouncer(h.name, h.address, int(settings(inv, "pgbouncer", h)["port"]))


def probe_db(s: HostSession, inv: Inventory) -> DbNode:
    """One db host's node, from one round trip."""
    out = s.run(commands.db_probe(DB_CONTAINER, image_ref(inv, "db", s.host)),
                timeout=commands.SQL_TIMEOUT + 40)
    become.refuse(out.stderr, become.login_user(inv, s.host))  # not an empty node: no rights
    if out.exit_code is None:
        return DbNode(**{**_node(inv, s.host).__dict__, "error": out.error})
    return parse.parse_probe(_node(inv, s.host), out.stdout)


def probe_bouncer(s: HostSession, inv: Inventory, password: str) -> Bouncer:
    """One PgBouncer's databases (SHOW DATABASES on its admin console)."""
    b = _bouncer(inv, s.host)
    out = s.run(commands.bouncer_admin(BOUNCER_CONTAINER, b.address, b.port, "SHOW DATABASES"),
                stdin=password.encode(), timeout=commands.SQL_TIMEOUT + 5)
    if not out.ok:
        become.refuse(out.stderr, become.login_user(inv, s.host))
        why = (out.stderr.strip() or out.error or f"exit code {out.exit_code}").splitlines()
        return Bouncer(b.name, b.address, b.port, True, f"admin console: {why[-1]}")
    return Bouncer(b.name, b.address, b.port, True, None, parse.parse_databases(out.stdout))


def discover(runner: Runner, inv: Inventory, secrets: Secrets | None = None) -> Topology:
    """The cluster as it is: every db host (pg_is_in_recovery(), timelines, WAL positions,
    replicas, slots, fence and degrade markers) and, given the secrets, every PgBouncer
    (SHOW DATABASES on its admin console); all hosts asked at once."""
    want_bouncers = secrets is not None
    password = secrets.get("pgbouncer_admin_password") if secrets is not None else ""
    hosts = [h for h in inv.hosts if h.has("db") or (want_bouncers and h.has("pgbouncer"))]

    refused: dict[str, become.Denial] = {}

    def step(s: HostSession) -> list[DbNode | Bouncer]:
        found: list[DbNode | Bouncer] = []
        try:
            if s.host.has("db"):
                found.append(probe_db(s, inv))
            if want_bouncers and s.host.has("pgbouncer"):
                found.append(probe_bouncer(s, inv, password))
        except become.PermissionRefused as e:
            refused[s.host.name] = e.denial
            raise
        return found

    nodes: list[DbNode] = []
    bouncers: list[Bouncer] = []
    for r in runner.each(hosts, step):
        if r.ok:
            found = r.value
        else:
            # Not reached (or the probe broke): the host is there, what it runs is unknown.
            reachable = r.status != "unreachable"
            found = []
            if r.host.has("db"):
                found.append(DbNode(**{**_node(inv, r.host).__dict__, "reachable": reachable,
                                       "error": r.error}))
            if want_bouncers and r.host.has("pgbouncer"):
                b = _bouncer(inv, r.host)
                found.append(Bouncer(b.name, b.address, b.port, reachable, r.error))
        nodes += [x for x in found if isinstance(x, DbNode)]
        bouncers += [x for x in found if isinstance(x, Bouncer)]
    if refused:  # what such hosts run is unknown: no empty node, no missing primary
        raise SentryfabError("cannot read the database topology: "
                             + "; ".join(become.summaries(refused)))
    return Topology(tuple(nodes), tuple(bouncers),
                    bool(settings(inv, "db").get("synchronous")), database="sentry")


def measure_wal_ends(runner: Runner, inv: Inventory, topo: Topology, start: int) -> Topology:
    """For every reachable stopped node with data: where its WAL ends, read from `start`
    (the candidate's position) with pg_waldump: what a failover to the candidate would
    lose. A node whose end cannot be read keeps wal_end None (lag unknown)."""
    todo = [n for n in topo.nodes if n.reachable and not n.running and n.has_data
            and n.control is not None and n.control.timeline is not None]
    if not todo:
        return topo

    def step(s: HostSession) -> tuple[int | None, str | None]:
        n = topo.node(s.host.name)
        c = n.control
        segment = wal_file_name(c.timeline or 1, start, c.segment_size)
        out = s.run(wal_end(image_ref(inv, "db", s.host), lsn_text(start), segment),
                    timeout=300)
        end = parse.parse_wal_end(out.stdout, start)
        if end is not None:
            return end, None
        said = [x.strip() for x in (out.stdout + "\n" + out.stderr).splitlines() if x.strip()]
        return None, (said[-1][:300] if said else out.error or f"exit code {out.exit_code}")

    for r in runner.each([inv.host(n.name) for n in todo], step):
        end, why = r.value if r.ok else (None, r.error or "failed")
        topo = topo.with_node(DbNode(**{**topo.node(r.host.name).__dict__,
                                        "wal_end": end, "wal_end_error": why}))
    return topo


def state_of(topo: Topology, inv: Inventory) -> ClusterState:
    """Where the primary is, from what the db hosts said: the one answering as a primary
    (not fenced; the newest timeline), else a stopped one that would start as a primary,
    else, on a cluster with no data anywhere yet, the inventory's initial primary."""
    p = topo.primary
    if p is not None:
        return ClusterState(p.name, degraded=topo.synchronous and p.degraded is not None)
    could = [n for n in topo.nodes if n.reachable and n.fenced is None and n.could_be_primary]
    if could:
        best = max(could, key=lambda n: n.known_timeline or 0)
        return ClusterState(best.name, degraded=topo.synchronous and best.degraded is not None)
    if all(n.reachable for n in topo.nodes) and not any(n.has_data for n in topo.nodes):
        return initial_state(inv)
    raise UnknownPrimary(
        "cannot tell which db host is the primary, so configs that point at it cannot be "
        "rendered: " + "; ".join(f"{n.name}: {n.state}" + (f" ({n.error})" if n.error else "")
                                 + (" FENCED" if n.fenced else "") for n in topo.nodes)
        + " (`fab db.topology` shows more; `fab db.failover` promotes a replica)")


def cluster_state(runner: Runner, inv: Inventory) -> ClusterState:
    """The ClusterState templates render with, discovered from the db hosts (falls back to
    the inventory's initial primary only while no db host has data yet)."""
    if not inv.with_role("db"):
        return initial_state(inv)
    return state_of(discover(runner, inv), inv)


def state_for(runner: Runner, inv: Inventory, hosts: Iterable[Host]) -> ClusterState:
    """cluster_state() if any of `hosts` renders files that depend on it (db, PgBouncer);
    otherwise the initial state, without asking the db hosts (nothing reads it)."""
    if any(h.has(r) for h in hosts for r in STATEFUL_ROLES):
        return cluster_state(runner, inv)
    return initial_state(inv)
