"""`fab deploy` (the whole cluster, in dependency order) and `fab deploy.<role>`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import DEFAULT_PARALLEL, handled, helps, load_inventory, load_secrets

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..procedures.deploy import RoleReport

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
            wait=0, ignore_capacity=False) -> None:
    """Roll `roles` out in order and show how each went; exit 1 unless all did."""
    from ..procedures import rollout
    from ..ui import deploy as deploy_ui

    inv = load_inventory()
    opts = rollout.DeployOptions(  # refuses a --tag the roles cannot run
        roles=roles, tag=tag, hosts=hosts, exclude=exclude, batch=batch,
        max_fail=int(max_fail), parallel=int(parallel), accept_new=accept_new,
        message=message, wait=float(wait), ignore_capacity=ignore_capacity)
    reports = rollout.deploy(inv, opts, lambda: load_secrets(inv), on_event=deploy_ui.event,
                             on_rolled_out=rollout_display(json))
    if not all(r.ok for r in reports):
        raise Exit(code=1)


def rollout_display(json: bool) -> Callable[[list[RoleReport]], None]:
    """A callback showing a rollout's reports (tables or JSON) and the seconds since now."""
    import time

    from ..ui import deploy as deploy_ui

    start = time.monotonic()
    return lambda reports: deploy_ui.show(reports, time.monotonic() - start, as_json=json)


def _role_task(role_names: tuple[str, ...], name: str, doc: str):
    @task(name=name, auto_shortflags=False, help=_HELP)
    @handled
    def deploy_one(c, roles=None, hosts=None, exclude=None, tag=None, batch=None, max_fail=0,
                   parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="",
                   wait=0, ignore_capacity=False):
        _deploy(role_names, hosts=hosts, exclude=exclude, tag=tag, batch=batch,
                max_fail=max_fail, parallel=parallel, accept_new=accept_new, json=json,
                message=message, wait=wait, ignore_capacity=ignore_capacity)

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
            message=message, wait=wait, ignore_capacity=ignore_capacity)


@task(name="rollback", auto_shortflags=False, help={
    **{k: v for k, v in _HELP.items() if k != "ignore-capacity"},
    "roles": "the role(s) to roll back, e.g. web (redis means both Redis roles)"})
@handled
def rollback(c, roles=None, hosts=None, exclude=None, tag=None, batch=None, max_fail=0,
             parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="", wait=0):
    """Each host of the role back to its previous release (image and configs), in batches."""
    from ..procedures import rollout
    from ..ui import deploy as deploy_ui

    opts = rollout.RollbackOptions(  # refuses a rollback without --roles
        roles=roles, hosts=hosts, exclude=exclude, batch=batch, max_fail=int(max_fail),
        parallel=int(parallel), accept_new=accept_new, message=message, wait=float(wait))
    inv = load_inventory()
    reports = rollout.rollback(inv, opts, lambda: load_secrets(inv), on_event=deploy_ui.event,
                               on_rolled_out=rollout_display(json))
    if not all(r.ok for r in reports):
        raise Exit(code=1)


@task(name="migrate", auto_shortflags=False, help={
    "tag": "image tag whose migrations to run (default: the inventory's)",
    "message": "a note for the lock and the audit log"})
@handled
def migrate(c, tag=None, message=""):
    """Run the schema migrations now, once, on the first web host (deploys do it themselves)."""
    from ..procedures import rollout
    from ..ui import deploy as deploy_ui

    inv = load_inventory()
    where = rollout.migrate(inv, lambda: load_secrets(inv), tag=tag, message=message)
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
    ("backup", ("backup",), "The pgBackRest repository host: its server, schedule, stanza."),
):
    ns.add_task(_role_task(_roles, _name, _doc))
