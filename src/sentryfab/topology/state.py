"""Where the primary is, from what the db hosts said: the ClusterState templates render with
(which host PgBouncer and the replicas point at, whether synchronous replication is off).
Pure: procedures/discover.py asks the hosts."""

from __future__ import annotations

from ..configs.context import ClusterState, initial_state
from ..errors import SentryfabError
from ..inventory import Inventory
from .model import Topology


class UnknownPrimary(SentryfabError):
    """The db hosts have data but none can be told to be the primary."""


def state_of(topo: Topology, inv: Inventory) -> ClusterState:
    """Where the primary is, from what the db hosts said: the one answering as a primary
    (not fenced; the newest timeline), else a stopped one that would start as a primary,
    else, on a cluster with no data anywhere yet, the inventory's initial primary."""
    primary = topo.primary
    if primary is not None:
        return ClusterState(primary.name,
                            degraded=topo.synchronous and primary.degraded is not None)
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
