"""Capacity: host facts read over SSH (or declared, --offline), then the pure plan."""

from __future__ import annotations

from ..errors import SentryfabError
from ..inventory import Inventory
from ..plans.capacity import CapacityReport, HostFacts, declared_facts, plan
from ..remote import Runner

# MemTotal, the open-file limit a service really gets (a running sentryfab container's main
# process, whose limit comes from dockerd, not the login shell), and the listen-queue cap.
FACTS_COMMAND = (
    "awk '/^MemTotal:/ {printf \"%.0f\\n\", $2 * 1024}' /proc/meminfo; "
    "pid=$(docker ps -q --filter label=sentryfab.role 2>/dev/null | head -n 1 "
    "| xargs -r docker inspect --format '{{.State.Pid}}' 2>/dev/null); "
    "if [ -n \"$pid\" ] && [ -r /proc/$pid/limits ]; then "
    "awk '/^Max open files/ {print $4}' /proc/$pid/limits; else ulimit -n; fi; "
    "cat /proc/sys/net/core/somaxconn"
)


class OverCapacity(SentryfabError):
    """A change would overcommit a limit; the message names which and by how much."""


def parse_facts(stdout: str) -> HostFacts:
    """HostFacts from FACTS_COMMAND's three lines."""
    ram, nofile, somaxconn = (line.strip() for line in stdout.strip().splitlines()[:3])
    return HostFacts(int(float(ram)), int(nofile) if nofile.isdigit() else 1 << 20, int(somaxconn),
                     source="ssh")


def host_facts(runner: Runner, inv: Inventory) -> dict[str, HostFacts]:
    """Facts of every host with a role; a host that does not answer uses declared facts."""
    hosts = [h for h in inv.hosts if h.roles]
    out: dict[str, HostFacts] = {}
    for r in runner.run(hosts, FACTS_COMMAND):
        out[r.host.name] = parse_facts(r.stdout) if r.ok else declared_facts(inv, r.host)
    return out


def check(inv: Inventory, runner: Runner | None) -> CapacityReport:
    """The capacity report, with live facts when a runner is given (else --offline)."""
    return plan(inv, host_facts(runner, inv) if runner is not None else {})


def preflight(inv: Inventory, runner: Runner | None, what: str) -> CapacityReport:
    """Refuse a change whose would-be state overcommits a limit (OverCapacity says which)."""
    report = check(inv, runner)
    if report.over:
        worst = ", ".join(f"{x.component}: {_amount(x.planned, x.unit)} > "
                          f"{_amount(x.limit, x.unit)} (over by {_amount(-x.headroom, x.unit)};"
                          f" {x.note})" for x in report.over)
        raise OverCapacity(f"{what} would overcommit: {worst}. Fix the plan, or pass "
                           "--ignore-capacity (recorded in the audit log)")
    return report


def _amount(value: float, unit: str) -> str:
    return f"{value / (1024 ** 3):,.1f} GiB" if unit == "bytes" else f"{value:,.0f} {unit}"
