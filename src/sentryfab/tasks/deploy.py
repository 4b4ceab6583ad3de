"""`fab deploy` (the whole cluster, in dependency order) and `fab deploy.<role>`."""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import DEFAULT_PARALLEL, handled, helps, load_inventory, load_secrets, selected

_HELP = helps(
    "hosts", "exclude", "parallel", "accept-new", "json",
    roles="ignored (the task names the role); accepted so `deploy.web --roles=web` reads well",
    tag="image tag to roll out (default: the inventory's)",
    batch="hosts per batch: a number or a percentage (default 25%)",
    max_fail="hosts of a batch that may fail before the rollout stops (default 0)",
    message="a note for the lock and the audit log",
    wait="seconds to wait for another deploy's lock (default: fail at once)",
    ignore_capacity="deploy even if the capacity check says it overcommits (audited)",
)


def _deploy(roles: tuple[str, ...], *, hosts=None, exclude=None, tag=None, batch=None,
            max_fail=0, parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="",
            wait=0, action="deploy", ignore_capacity=False) -> None:
    import time

    from ..failover.discover import state_for
    from ..procedures import audit
    from ..procedures.deploy import Deployer
    from ..procedures.guard import guarded
    from ..remote import Runner
    from ..ui import deploy as deploy_ui

    inv = load_inventory()
    if tag:
        from ..errors import UsageError
        from ..inventory import redis_release_problem, sentry_release_problem
        from ..roles import REDIS_ROLES

        # The same rules as the inventory's tags: --tag must not smuggle in Sentry 10+,
        # nor a Redis 7+ that Sentry 9's digests cannot run on.
        rules = [(("web", "worker", "cron", "migrate"), sentry_release_problem),
                 (REDIS_ROLES, redis_release_problem)]
        for named, problem_of in rules:
            if set(roles) & set(named) and (why := problem_of(str(tag))):
                raise UsageError(f"--tag {tag}: {why}")
    secrets = load_secrets(inv)
    start = time.monotonic()
    involved = [h for h in selected(inv, None, hosts, exclude) if set(h.roles) & set(roles)]
    with Runner(inv, parallel=int(parallel), accept_new=accept_new) as runner, \
            guarded(runner, inv, action, hosts=involved, message=message, wait=float(wait),
                    preflight=action, ignore_capacity=ignore_capacity,
                    version=tag or "") as change:
        # The primary is where the db hosts say it is (after a failover, not the inventory's).
        change.at("discovering the primary")
        state = state_for(runner, inv, [h for h in inv.hosts if set(h.roles) & set(roles)])
        d = Deployer(runner, inv, secrets, state, on_event=deploy_ui.event, change=change)
        reports = []
        def migrate() -> None:
            deploy_ui.event("migrate", f"schema migrated on {d.migrate(tag)}")

        for role in roles:
            if role == "migrate":  # run by the web rollout, once, before its first batch
                continue
            targets = [h for h in selected(inv, None, hosts, exclude) if h.has(role)]
            if not targets:
                continue
            report = d.deploy_role(role, targets, version=tag, batch=batch,
                                   max_fail=int(max_fail),
                                   before_rollout=migrate if role == "web" else None)
            reports.append(report)
            touched = [inv.host(o.host) for o in report.outcomes
                       if o.state not in ("unchanged", "not reached")]
            audit.record(runner, touched, audit.entry(
                f"{action}.{role}", "ok" if report.ok else "failed", version=report.version,
                hosts=[h.name for h in touched], message=message))
            if touched:  # sentryfab.deploy.<role>:1|c, a marker on the dashboards
                _count(inv, f"{action}.{role}", report.ok)
            if not report.ok:
                change.result = f"failed: {role}: {report.stopped or 'hosts failed'}"
                break
        deploy_ui.show(reports, time.monotonic() - start, as_json=json)
    if not all(r.ok for r in reports):
        raise Exit(code=1)


def _count(inv, name: str, ok: bool) -> None:
    """Count a deploy event to the inventory's statsd; a statsd problem is only a warning."""
    from ..status import statsd
    from ..ui import deploy as deploy_ui

    why = statsd.count_for(inv.extra.get("statsd"), name, ok)
    if why:
        deploy_ui.event(name, f"warning: {why}")


def _role_task(role_names: tuple[str, ...], name: str, doc: str):
    @task(name=name, auto_shortflags=False, help=_HELP)
    @handled
    def deploy_one(c, roles=None, hosts=None, exclude=None, tag=None, batch=None, max_fail=0,
                   parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="",
                   wait=0, ignore_capacity=False):
        _deploy(role_names, hosts=hosts, exclude=exclude, tag=tag, batch=batch,
                max_fail=max_fail, parallel=parallel, accept_new=accept_new, json=json,
                message=message, wait=wait, action="deploy", ignore_capacity=ignore_capacity)

    deploy_one.__doc__ = doc
    deploy_one.body.__doc__ = doc
    return deploy_one


@task(name="all", default=True, auto_shortflags=False, help=_HELP)
@handled
def all_(c, roles=None, hosts=None, exclude=None, tag=None, batch=None, max_fail=0,
         parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="", wait=0,
         ignore_capacity=False):
    """The whole cluster, from nothing or any state, in dependency order."""
    from ..plans.rollout import DEPLOY_ORDER

    _deploy(DEPLOY_ORDER, hosts=hosts, exclude=exclude, tag=tag, batch=batch,
            max_fail=max_fail, parallel=parallel, accept_new=accept_new, json=json,
            message=message, wait=wait, action="deploy", ignore_capacity=ignore_capacity)


@task(name="rollback", auto_shortflags=False, help={
    **{k: v for k, v in _HELP.items() if k != "ignore-capacity"},
    "roles": "the role(s) to roll back, e.g. web (redis means both Redis roles)"})
@handled
def rollback(c, roles=None, hosts=None, exclude=None, tag=None, batch=None, max_fail=0,
             parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="", wait=0):
    """Each host of the role back to its previous release (image and configs), in batches."""
    import time

    from ..errors import UsageError
    from ..failover.discover import state_for
    from ..procedures import audit
    from ..procedures.deploy import Deployer
    from ..procedures.guard import guarded
    from ..remote import Runner
    from ..roles import expand_role
    from ..selection import split_words
    from ..ui import deploy as deploy_ui

    if not roles:
        raise UsageError("deploy.rollback needs --roles (which role to roll back)")
    inv = load_inventory()
    targets = selected(inv, roles, hosts, exclude)
    wanted = [r for word in split_words(roles) for r in expand_role(word)]
    start = time.monotonic()
    reports = []
    with Runner(inv, parallel=int(parallel), accept_new=accept_new) as runner, \
            guarded(runner, inv, "rollback", hosts=targets, message=message,
                    wait=float(wait)) as change:
        d = Deployer(runner, inv, load_secrets(inv), state_for(runner, inv, targets),
                     on_event=deploy_ui.event, change=change)
        for role in wanted:
            group = [h for h in targets if h.has(role)]
            if not group:
                continue
            report = d.rollback_role(role, group, batch=batch, max_fail=int(max_fail))
            reports.append(report)
            audit.record(runner, group, audit.entry(
                f"rollback.{role}", "ok" if report.ok else "failed",
                hosts=[h.name for h in group], message=message,
                version=",".join(sorted({o.after or "?" for o in report.outcomes}))))
            _count(inv, f"rollback.{role}", report.ok)
            if not report.ok:
                change.result = f"failed: {role}: {report.stopped or 'hosts failed'}"
                break
    deploy_ui.show(reports, time.monotonic() - start, as_json=json)
    if not all(r.ok for r in reports):
        raise Exit(code=1)


@task(name="migrate", auto_shortflags=False, help={
    "tag": "image tag whose migrations to run (default: the inventory's)",
    "message": "a note for the lock and the audit log"})
@handled
def migrate(c, tag=None, message=""):
    """Run the schema migrations now, once, on the first web host (deploys do it themselves)."""
    from ..configs.context import initial_state
    from ..procedures.deploy import Deployer
    from ..procedures.guard import guarded
    from ..remote import Runner
    from ..ui import deploy as deploy_ui

    inv = load_inventory()
    with Runner(inv) as runner, guarded(runner, inv, "migrate", hosts=inv.with_role("web")[:1],
                                        message=message, version=tag or "") as change:
        where = Deployer(runner, inv, load_secrets(inv), initial_state(inv),
                         change=change).migrate(tag)
    deploy_ui.event("migrate", f"schema migrated on {where}")


ns = Collection("deploy")
ns.add_task(rollback)
ns.add_task(migrate)
ns.add_task(all_, default=True)
for _name, _roles, _doc in (
    ("web", ("migrate", "web"), "Migrations, then the web processes, batch by batch."),
    ("worker", ("worker",), "The workers, batch by batch."),
    ("cron", ("cron",), "The one cron."),
    ("redis", ("redis-cache", "redis-queue"), "Both Redis roles, one host at a time."),
    ("pgbouncer", ("pgbouncer",), "PgBouncer, one host at a time."),
    ("nginx", ("nginx",), "nginx, one host at a time."),
    ("db", ("db",), "PostgreSQL: primary (initdb once), then replicas (cloned once)."),
):
    ns.add_task(_role_task(_roles, _name, _doc))
