"""`fab db.*`: the PostgreSQL primary and its replicas: `db.status`, `db.topology`, and
moving the primary: `db.switchover`, `db.failover`, `db.rejoin`, `db.degrade`."""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import handled, helps, load_inventory, load_secrets
from .status import role_status_task

_COMMON = {
    "dry-run": "print what was found and the plan, step by step; change nothing",
    "yes": "do not ask before running the plan (for scripts)",
    "message": "a note for the lock, the fence marker and the audit log",
    "wait": "seconds to wait for another deploy's lock (default: fail at once)",
    "json": "print machine-readable JSON instead of tables",
}

status = role_status_task(
    "db",
    "PostgreSQL: primary or replica, timeline, replication lag (bytes and seconds), "
    "connections, slots; then the topology with where every PgBouncer points.",
)


def _run_operation(kind: str, *, node=None, dry_run=False, yes=False, message="", wait=0,
                   json=False, **opts) -> None:
    """Run one db operation with the ui's plan, confirmation and progress; exit 1 unless ok."""
    from ..procedures import failover as procedure
    from ..remote import Runner
    from ..ui import failover as ui

    inv = load_inventory()
    secrets = load_secrets(inv)
    with Runner(inv) as runner:
        report = procedure.run(
            runner, inv, secrets, kind, procedure.options(inv, **opts), node=node,
            dry_run=bool(dry_run), message=message, wait=float(wait),
            on_plan=None if json else ui.show_plan,
            confirm=None if yes else ui.confirm,
            on_step=None if json else ui.step_event)
    ui.show_report(report, as_json=json)
    if not report.ok:
        raise Exit(code=1)


@task(name="topology", auto_shortflags=False, help=helps("json"))
@handled
def topology(c, json=False):
    """The topology as it is: primary, replicas, lag, timelines, PgBouncer, fences."""
    from ..procedures import failover as procedure
    from ..remote import Runner
    from ..ui import failover as ui

    inv = load_inventory()
    with Runner(inv) as runner:
        topo = procedure.topology(runner, inv, load_secrets(inv))
    ui.show_topology(topo, as_json=json)
    if topo.primary is None:
        raise Exit(code=1)


@task(name="switchover", auto_shortflags=False, help={
    **_COMMON, "to": "the replica to promote (default: the most up-to-date one)"})
@handled
def switchover(c, to=None, dry_run=False, yes=False, message="", wait=0, json=False):
    """Planned move of the primary (old one healthy): PAUSE, clean stop, promote, RESUME."""
    _run_operation("switchover", target=to, dry_run=dry_run, yes=yes, message=message,
                   wait=wait, json=json)


@task(name="failover", auto_shortflags=False, help={
    **_COMMON, "to": "the replica to promote (default: the most up-to-date one)",
    "force": "promote even if the lag is unknown or too high, the timeline is behind, or "
             "another host still answers as primary (it is fenced)"})
@handled
def failover(c, to=None, force=False, dry_run=False, yes=False, message="", wait=0,
             json=False):
    """Emergency promotion (primary down): fence it, promote a replica, repoint PgBouncer."""
    _run_operation("failover", target=to, force=bool(force), dry_run=dry_run, yes=yes,
                   message=message, wait=wait, json=json)


@task(name="rejoin", auto_shortflags=False, help={
    **_COMMON, "node": "the db host to make a replica of the current primary",
    "rebuild": "a fresh pg_basebackup even where pg_rewind would do",
    "force": "rejoin even a host running as a primary (what it wrote alone is discarded)"})
@handled
def rejoin(c, node, rebuild=False, force=False, dry_run=False, yes=False, message="", wait=0,
           json=False):
    """Make an old primary a streaming replica again (pg_rewind or re-clone), lift its fence."""
    _run_operation("rejoin", node=node, rebuild=bool(rebuild), force=bool(force),
                   dry_run=dry_run, yes=yes, message=message, wait=wait, json=json)


@task(name="degrade", auto_shortflags=False, help={
    **_COMMON, "restore": "turn synchronous replication back on (a replica must stream)",
    "force": "with --restore: even with no replica streaming (commits will wait)"})
@handled
def degrade(c, restore=False, force=False, dry_run=False, yes=False, message="", wait=0,
            json=False):
    """Synchronous replication off on purpose (its only replica is gone), or back on."""
    _run_operation("restore" if restore else "degrade", force=bool(force), dry_run=dry_run,
                   yes=yes, message=message, wait=wait, json=json)


ns = Collection("db", status, topology, switchover, failover, rejoin, degrade)
