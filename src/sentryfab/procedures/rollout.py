"""Deploy, rollback, migrate and scale: each a whole rollout, one change under the guard.

Each function runs one command's steps in their order: refuse what cannot be right before
anything connects, connect, hold the guard (lock, capacity preflight, audit, a clean end on
every path), find where the primary is, roll the roles out one after another with the
Deployer, and write per role an audit line and a statsd count. They return the reports;
progress goes to `on_event`, and nothing here prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ..configs.context import initial_state, web_ports
from ..errors import UsageError
from ..inventory import Inventory, redis_release_problem, sentry_release_problem
from ..inventory_edit import set_role_var
from ..remote import DEFAULT_PARALLEL, Runner
from ..roles import REDIS_ROLES, expand_role
from ..secrets import Secrets
from ..selection import Selection, select, split_words
from . import audit
from .deploy import Deployer, Event, RoleReport
from .discover import state_for
from .guard import guarded

#: Loads the secrets when the rollout needs them (rollback, migrate and scale: under the lock).
SecretsLoader = Callable[[], Secrets]
#: Opens the connections: Runner(inv, parallel=..., accept_new=...).
Connect = Callable[..., Runner]
#: Told the reports once the roles are rolled out, to show them (see each function for when).
Shown = Callable[[list[RoleReport]], None]

#: The roles whose --tag is a Sentry release, and the rule each kind of tag follows.
_TAG_RULES = ((("web", "worker", "cron", "migrate"), sentry_release_problem),
              (REDIS_ROLES, redis_release_problem))


def _quiet(role: str, message: str) -> None:
    """No progress display."""


def _unshown(reports: list[RoleReport]) -> None:
    """No report display."""


@dataclass(frozen=True, kw_only=True)
class RolloutOptions:
    """Which hosts, how many at once, and the note for the lock and the audit log."""

    hosts: str | None = None
    exclude: str | None = None
    batch: str | None = None  # hosts per batch: a number or a percentage
    parallel: int = DEFAULT_PARALLEL
    accept_new: bool = False
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class DeployOptions(RolloutOptions):
    """`fab deploy[.<role>]`: the roles in their order, and the release to roll out."""

    roles: tuple[str, ...]
    tag: str | None = None
    max_fail: int = 0
    wait: float = 0
    ignore_capacity: bool = False

    def __post_init__(self) -> None:
        # The same rules as the inventory's tags: --tag must not smuggle in Sentry 10+,
        # nor a Redis 7+ that Sentry 9's digests cannot run on.
        if not self.tag:
            return
        for named, problem_of in _TAG_RULES:
            if set(self.roles) & set(named) and (why := problem_of(str(self.tag))):
                raise UsageError(f"--tag {self.tag}: {why}")


@dataclass(frozen=True, kw_only=True)
class RollbackOptions(RolloutOptions):
    """`fab deploy.rollback`: the role(s) to put back on their previous release."""

    roles: str | None
    max_fail: int = 0
    wait: float = 0

    def __post_init__(self) -> None:
        if not self.roles:
            raise UsageError("deploy.rollback needs --roles (which role to roll back)")


@dataclass(frozen=True, kw_only=True)
class ScaleOptions(RolloutOptions):
    """`fab <role>.scale`: the processes each host of the role runs afterwards."""

    role: str
    processes: int
    ignore_capacity: bool = False

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise UsageError(f"{self.role}.scale needs --processes N (at least 1)")


def deploy(inv: Inventory, opts: DeployOptions, load_secrets: SecretsLoader, *,
           on_event: Event = _quiet, on_rolled_out: Shown = _unshown,
           connect: Connect = Runner) -> list[RoleReport]:
    """Roll each role out in turn, under the guard; the first role that fails stops it.

    `on_rolled_out(reports)` is told while the lock is still held (a lock that cannot be
    released is then reported after the rollout, not instead of it)."""
    secrets = load_secrets()
    chosen = select(inv, Selection(hosts=opts.hosts, exclude=opts.exclude))
    involved = [h for h in chosen if set(h.roles) & set(opts.roles)]
    reports: list[RoleReport] = []
    with connect(inv, parallel=opts.parallel, accept_new=opts.accept_new) as runner, \
            guarded(runner, inv, "deploy", hosts=involved, message=opts.message,
                    wait=opts.wait, preflight="deploy", ignore_capacity=opts.ignore_capacity,
                    version=opts.tag or "") as change:
        # The primary is where the db hosts say it is (after a failover, not the inventory's).
        change.at("discovering the primary")
        state = state_for(runner, inv, [h for h in inv.hosts if set(h.roles) & set(opts.roles)])
        d = Deployer(runner, inv, secrets, state, on_event=on_event, change=change)

        def migrate() -> None:
            on_event("migrate", f"schema migrated on {d.migrate(opts.tag)}")

        for role in opts.roles:
            if role == "migrate":  # run by the web rollout, once, before its first batch
                continue
            targets = [h for h in chosen if h.has(role)]
            if not targets:
                continue
            report = d.deploy_role(role, targets, version=opts.tag, batch=opts.batch,
                                   max_fail=opts.max_fail,
                                   before_rollout=migrate if role == "web" else None)
            reports.append(report)
            touched = [inv.host(o.host) for o in report.outcomes
                       if o.state not in ("unchanged", "not reached")]
            audit.record(runner, touched, audit.entry(
                f"deploy.{role}", "ok" if report.ok else "failed", version=report.version,
                hosts=[h.name for h in touched], message=opts.message))
            if touched:  # sentryfab.deploy.<role>:1|c, a marker on the dashboards
                _count(inv, f"deploy.{role}", report.ok, on_event)
            if not report.ok:
                change.result = f"failed: {role}: {report.stopped or 'hosts failed'}"
                break
        on_rolled_out(reports)
    return reports


def rollback(inv: Inventory, opts: RollbackOptions, load_secrets: SecretsLoader, *,
             on_event: Event = _quiet, on_rolled_out: Shown = _unshown,
             connect: Connect = Runner) -> list[RoleReport]:
    """Each selected host of the role(s) back to its previous release, under the guard;
    `on_rolled_out(reports)` is told once the lock is released."""
    targets = select(inv, Selection(roles=opts.roles, hosts=opts.hosts, exclude=opts.exclude))
    wanted = [r for word in split_words(opts.roles) for r in expand_role(word)]
    reports: list[RoleReport] = []
    with connect(inv, parallel=opts.parallel, accept_new=opts.accept_new) as runner, \
            guarded(runner, inv, "rollback", hosts=targets, message=opts.message,
                    wait=opts.wait) as change:
        d = Deployer(runner, inv, load_secrets(), state_for(runner, inv, targets),
                     on_event=on_event, change=change)
        for role in wanted:
            group = [h for h in targets if h.has(role)]
            if not group:
                continue
            report = d.rollback_role(role, group, batch=opts.batch, max_fail=opts.max_fail)
            reports.append(report)
            audit.record(runner, group, audit.entry(
                f"rollback.{role}", "ok" if report.ok else "failed",
                hosts=[h.name for h in group], message=opts.message,
                version=",".join(sorted({o.after or "?" for o in report.outcomes}))))
            _count(inv, f"rollback.{role}", report.ok, on_event)
            if not report.ok:
                change.result = f"failed: {role}: {report.stopped or 'hosts failed'}"
                break
    on_rolled_out(reports)
    return reports


def migrate(inv: Inventory, load_secrets: SecretsLoader, *, tag: str | None = None,
            message: str = "", connect: Connect = Runner) -> str:
    """The schema migrations, once, on the first web host, under the guard; returns where."""
    with connect(inv) as runner, guarded(runner, inv, "migrate",
                                         hosts=inv.with_role("web")[:1], message=message,
                                         version=tag or "") as change:
        return Deployer(runner, inv, load_secrets(), initial_state(inv),
                        change=change).migrate(tag)


def scale(inv: Inventory, opts: ScaleOptions, load_secrets: SecretsLoader, *,
          on_event: Event = _quiet, on_rolled_out: Shown = _unshown,
          connect: Connect = Runner) -> RoleReport:
    """Run `opts.processes` processes on each host of the role, batch by batch, under the
    guard; then, if every host made it, write the new count into the inventory file.

    Refused before anything connects: a selection leaving out hosts of the role that follow
    the role's count. `on_rolled_out([report])` is told once the lock is released, before
    the file changes.
    """
    role, n = opts.role, opts.processes
    # The rollout sees the new count everywhere (containers, nginx's upstreams) before the
    # inventory file says so; the file is changed only once the rollout succeeded.
    scaled = dataclasses.replace(inv, roles={**inv.roles, role: {**inv.role_vars(role),
                                                                  "processes": n}})
    targets = [h for h in select(scaled, Selection(hosts=opts.hosts, exclude=opts.exclude))
               if h.has(role)]
    left_out = [h.name for h in inv.with_role(role) if h not in targets
                and "processes" not in h.vars]
    if left_out:
        raise UsageError(
            f"{role}.scale sets roles.{role}.processes, which every {role} host follows, but "
            f"the selection leaves out {', '.join(left_out)}: they would run a count the "
            f"inventory no longer says (scale the whole role, or give those hosts their own "
            f"'processes' in their vars first)")
    with connect(scaled, parallel=opts.parallel, accept_new=opts.accept_new) as runner, \
            guarded(runner, scaled, f"{role}.scale", hosts=targets, message=opts.message,
                    preflight=f"{role}.scale --processes {n}",
                    ignore_capacity=opts.ignore_capacity, processes=n) as change:
        d = Deployer(runner, scaled, load_secrets(), initial_state(inv), on_event=on_event,
                     scaling_from={h.name: len(web_ports(inv, h)) for h in targets}
                     if role == "web" else {}, change=change)
        report = d.deploy_role(role, targets, batch=opts.batch, count=n)
        if not report.ok:
            change.result = f"failed: {report.stopped or 'hosts failed'}"
        if report.ok and report.changed and role == "web":
            change.at("nginx: the new processes into rotation")
            d.push_nginx()  # nginx now lists exactly the new processes
    on_rolled_out([report])
    if report.ok:
        set_role_var(inv.path, role, "processes", n)
        on_event(role, f"{inv.path}: roles.{role}.processes is now {n}")
    return report


def _count(inv: Inventory, name: str, ok: bool, on_event: Event) -> None:
    """Count a rollout to the inventory's statsd; a statsd problem is only a warning."""
    from ..status import statsd

    why = statsd.count_for(inv.extra.get("statsd"), name, ok)
    if why:
        on_event(name, f"warning: {why}")
