"""Discovery: ask every db host and PgBouncer what it is, at once: the Topology; and from it
the ClusterState that templates render with (where the primary is, whether degraded).

What is asked and how the answers read is in topology/ (pure); this module only asks.
Used by the failover procedures, and by deploy, config push and status (state_for,
cluster_state) to render files that point at the primary.
"""

from __future__ import annotations

from collections.abc import Iterable

from .. import become
from ..configs.context import ClusterState, initial_state, settings
from ..containers.postgres import wal_file_name
from ..containers.spec import container_name, image_ref
from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..remote import Runner, Session
from ..secrets import Secrets
from ..topology.db_commands import SQL_TIMEOUT
from ..topology.db_facts import DbProbe, WalEnd
from ..topology.model import Bouncer, DbNode, Topology
from ..topology.pgbouncer import ShowDatabases
from ..topology.state import state_of

DB_CONTAINER = container_name("db", 1)
BOUNCER_CONTAINER = container_name("pgbouncer", 1)
#: Roles whose rendered files depend on where the primary is.
STATEFUL_ROLES = ("db", "pgbouncer")


def _node(inv: Inventory, host: Host) -> DbNode:
    return DbNode(host.name, host.address, int(settings(inv, "db", host)["port"]))


def _bouncer(inv: Inventory, host: Host) -> Bouncer:
    return Bouncer(host.name, host.address, int(settings(inv, "pgbouncer", host)["port"]))


def probe_db(s: Session, inv: Inventory) -> DbNode:
    """One db host's node, from one round trip."""
    out = s.run(DbProbe.command(DB_CONTAINER, image_ref(inv, "db", s.host)),
                timeout=SQL_TIMEOUT + 40)
    become.refuse(out.stderr, become.login_user(inv, s.host))  # not an empty node: no rights
    if out.exit_code is None:
        return DbNode(**{**_node(inv, s.host).__dict__, "error": out.error})
    return DbProbe.parse(_node(inv, s.host), out.stdout)


def probe_bouncer(s: Session, inv: Inventory, password: str) -> Bouncer:
    """One PgBouncer's databases (SHOW DATABASES on its admin console)."""
    b = _bouncer(inv, s.host)
    out = s.run(ShowDatabases.command(BOUNCER_CONTAINER, b.address, b.port),
                stdin=password.encode(), timeout=SQL_TIMEOUT + 5)
    if not out.ok:
        become.refuse(out.stderr, become.login_user(inv, s.host))
        why = (out.stderr.strip() or out.error or f"exit code {out.exit_code}").splitlines()
        return Bouncer(b.name, b.address, b.port, True, f"admin console: {why[-1]}")
    return Bouncer(b.name, b.address, b.port, True, None, ShowDatabases.parse(out.stdout))


def discover(runner: Runner, inv: Inventory, secrets: Secrets | None = None) -> Topology:
    """The cluster as it is: every db host (pg_is_in_recovery(), timelines, WAL positions,
    replicas, slots, fence and degrade markers) and, given the secrets, every PgBouncer
    (SHOW DATABASES on its admin console); all hosts asked at once."""
    want_bouncers = secrets is not None
    password = secrets.get("pgbouncer_admin_password") if secrets is not None else ""
    hosts = [h for h in inv.hosts if h.has("db") or (want_bouncers and h.has("pgbouncer"))]

    refused: dict[str, become.Denial] = {}

    def step(s: Session) -> list[DbNode | Bouncer]:
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

    def step(s: Session) -> tuple[int | None, str | None]:
        control = topo.node(s.host.name).control
        segment = wal_file_name(control.timeline or 1, start, control.segment_size)
        out = s.run(WalEnd.command(image_ref(inv, "db", s.host), start, segment), timeout=300)
        end = WalEnd.parse(out.stdout, start)
        if end is not None:
            return end, None
        said = [x.strip() for x in (out.stdout + "\n" + out.stderr).splitlines() if x.strip()]
        return None, (said[-1][:300] if said else out.error or f"exit code {out.exit_code}")

    for r in runner.each([inv.host(n.name) for n in todo], step):
        end, why = r.value if r.ok else (None, r.error or "failed")
        topo = topo.with_node(DbNode(**{**topo.node(r.host.name).__dict__,
                                        "wal_end": end, "wal_end_error": why}))
    return topo


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
