"""What a status round produces: problems with a severity, per-host results, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..inventory import Host

Severity = Literal["ok", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("ok", "warning", "critical")
EXIT_CODES: dict[Severity, int] = {"ok": 0, "warning": 1, "critical": 2}

#: A metric value as it goes to --json and statsd (None: not measured this round).
Value = float | int | None


def worst(severities: list[Severity] | tuple[Severity, ...]) -> Severity:
    """The most severe of `severities` ('ok' when there are none)."""
    return max(severities, key=SEVERITIES.index, default="ok")


@dataclass(frozen=True)
class Problem:
    """Something wrong, said so that the reader knows where and how bad."""

    severity: Severity
    message: str
    metric: str | None = None
    value: Any = None
    limit: float | None = None
    scope: str = "host"            # 'host', a role, or 'cluster'
    hosts: tuple[str, ...] = ()    # cluster findings: the hosts it concerns
    roles: tuple[str, ...] = ()    # cluster findings: the roles it concerns

    def as_record(self) -> dict[str, Any]:
        """The --json form."""
        rec: dict[str, Any] = {"severity": self.severity, "scope": self.scope,
                               "message": self.message}
        if self.metric:
            rec.update(metric=self.metric, value=self.value, limit=self.limit)
        if self.hosts:
            rec["hosts"] = list(self.hosts)
        if self.roles:
            rec["roles"] = list(self.roles)
        return rec


@dataclass
class HostStatus:
    """One host after a round: reachable or not, its metrics by scope, its problems."""

    host: Host
    reachable: bool
    error: str | None = None
    seconds: float = 0.0
    #: scope ('host' or a role) -> metric -> value; what --json and statsd carry.
    metrics: dict[str, dict[str, Value]] = field(default_factory=dict)
    #: parsed facts kept for the detailed role views (containers, upstreams, pools, ...).
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # worth a look, not a problem

    @property
    def severity(self) -> Severity:
        """The worst problem on this host; an unreachable host is critical."""
        if not self.reachable:
            return "critical"
        return worst([p.severity for p in self.problems])

    def add(self, problem: Problem | None) -> None:
        """Record a problem (None is ignored, so evaluators can return 'nothing')."""
        if problem is not None:
            self.problems.append(problem)

    def as_record(self) -> dict[str, Any]:
        """One --json record: identity, reachability, every metric and problem."""
        return {
            "host": self.host.name,
            "address": self.host.address,
            "roles": list(self.host.roles),
            "reachable": self.reachable,
            "severity": self.severity,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics,
            "problems": [p.as_record() for p in self.problems],
            "notes": self.notes,
        }


@dataclass
class ClusterView:
    """What only the whole cluster shows: the primary, the crons, versions per role."""

    primary: str | None = None
    primaries: list[str] = field(default_factory=list)
    replicas: list[str] = field(default_factory=list)
    cron_hosts: list[str] = field(default_factory=list)
    versions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    queue_length: int | None = None
    queue_growth_per_s: float | None = None
    #: seconds the oldest queued task has waited since its event was accepted (0: no backlog)
    backlog_age_s: float | None = None
    #: ingestion through every nginx in the last minute, and payloads the workers missed
    ingest_per_s: float | None = None
    ingest_error_pct: float | None = None
    payloads_missing: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def split_brain(self) -> bool:
        """Two or more databases accepting writes."""
        return len(self.primaries) > 1

    def as_record(self) -> dict[str, Any]:
        """The --json form of the cluster-level findings."""
        return {
            "primary": self.primary,
            "primaries": self.primaries,
            "replicas": self.replicas,
            "split_brain": self.split_brain,
            "cron_count": len(self.cron_hosts),
            "cron_hosts": self.cron_hosts,
            "versions": self.versions,
            "queue_length": self.queue_length,
            "queue_growth_per_s": self.queue_growth_per_s,
            "backlog_age_s": self.backlog_age_s,
            "ingest_per_s": self.ingest_per_s,
            "ingest_error_pct": self.ingest_error_pct,
            "payloads_missing": self.payloads_missing,
            "problems": [p.as_record() for p in self.problems],
        }


@dataclass
class StatusReport:
    """A round: the hosts shown, the cluster findings, how long it took."""

    cluster: str
    hosts: list[HostStatus]
    view: ClusterView
    seconds: float = 0.0
    checked_at: float = 0.0

    @property
    def severity(self) -> Severity:
        """The worst of every host and every cluster finding."""
        return worst([h.severity for h in self.hosts] + [p.severity for p in self.view.problems])

    @property
    def exit_code(self) -> int:
        """0 ok, 1 warning, 2 critical."""
        return EXIT_CODES[self.severity]

    def counts(self) -> dict[Severity, int]:
        """Hosts per severity, every severity present."""
        out: dict[Severity, int] = {s: 0 for s in SEVERITIES}
        for h in self.hosts:
            out[h.severity] += 1
        return out

    def as_record(self) -> dict[str, Any]:
        """The whole --json document."""
        return {
            "cluster": self.cluster,
            "severity": self.severity,
            "exit_code": self.exit_code,
            "checked_at": round(self.checked_at, 3),
            "seconds": round(self.seconds, 3),
            "hosts": [h.as_record() for h in self.hosts],
            "cluster_findings": self.view.as_record(),
        }
