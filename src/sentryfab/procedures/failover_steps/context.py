"""What the steps of one run share: the runner, the plan, the topology found, what earlier
steps learned (the old primary's last LSN, staged files), and the undo stack."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from ...configs.context import ClusterState, settings
from ...configs.render import Rendered
from ...errors import RemoteError
from ...inventory import Host, Inventory
from ...plans.failover import Action, Options, Plan
from ...remote import Runner, Session
from ...remote.session import CommandOutput
from ...results import stderr_tail
from ...secrets import Secrets
from ...topology.model import Marker, Topology


class StepFailed(RemoteError):
    """A step could not do its job; the message says where, what it found, what next."""


@dataclass
class Undo:
    """Something to put back if a later step fails (before the point of no return)."""

    what: str
    host: str
    action: Callable[[], None]
    kind: str = ""  # "resume" undos survive promotion: clients must never stay paused


@dataclass
class Run:
    """One execution of a plan."""

    runner: Runner
    inv: Inventory
    secrets: Secrets
    topo: Topology
    plan: Plan
    opts: Options
    marker: Marker
    stamp: str
    final_lsn: dict[str, int] = field(default_factory=dict)
    staged: dict[str, list[Rendered]] = field(default_factory=dict)
    undo: list[Undo] = field(default_factory=list)

    def host(self, name: str) -> Host:
        """The inventory host called `name`."""
        return self.inv.host(name)

    def session(self, name: str) -> Session:
        """The (reused) SSH session to `name`."""
        return self.runner.session(self.inv.host(name))

    def sh(self, name: str, command: str, what: str, *, stdin: bytes | None = None,
           timeout: float = 120, check: bool = True) -> CommandOutput:
        """Run a command on a host; with `check`, StepFailed saying `what` failed and why."""
        out = self.session(name).run(command, stdin=stdin, timeout=timeout)
        if check and not out.ok:
            why = out.error or stderr_tail(out.stderr or out.stdout, 3) or \
                f"exit code {out.exit_code}"
            raise StepFailed(f"{name}: {what}: {self.secrets.mask(why)}")
        return out

    @property
    def primary(self) -> str:
        """The primary once the plan is done: its target, except for a rejoin (which follows
        the primary found)."""
        if self.plan.kind == "rejoin":
            return self.topo.primary.name if self.topo.primary else ""
        return self.plan.target

    def state(self, degraded: bool = False) -> ClusterState:
        """The cluster state templates render with once the plan is done."""
        return ClusterState(primary=self.primary, degraded=degraded)

    def marker_json(self) -> str:
        """The FENCED/DEGRADED file's content for this run."""
        return json.dumps(self.marker.as_record(), sort_keys=True)

    def db_port(self, name: str) -> int:
        """PostgreSQL's port on a db host."""
        return int(settings(self.inv, "db", self.host(name))["port"])

    def old_primary(self) -> str | None:
        """The host the plan stops (a switchover's old primary)."""
        return next((s.host for s in self.plan.steps if s.action == Action.STOP), None)
