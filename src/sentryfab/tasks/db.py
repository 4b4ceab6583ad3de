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


_BACKUP_COMMON = {k: _COMMON[k] for k in ("dry-run", "message", "wait", "json")}


@task(name="backup", auto_shortflags=False, help={
    **_BACKUP_COMMON, "type": "full, diff (changes since the last full) or incr (since the "
                              "last backup of any type); default diff"})
@handled
def backup(c, type="diff", dry_run=False, message="", wait=0, json=False):  # noqa: A002
    """Back up the primary now into the pgBackRest repository on the backup host."""
    from ..procedures import backups as procedure
    from ..ui import backups as ui

    inv = load_inventory()
    run = procedure.backup(inv, load_secrets(inv), str(type), message=message,
                           wait=float(wait), dry_run=bool(dry_run))
    ui.show_backup(run, as_json=json)
    if not run.ok:
        raise Exit(code=1)


@task(name="backups", auto_shortflags=False, help=helps(json="print JSON"))
@handled
def backups(c, json=False):
    """What the repository holds: each backup's time, size and WAL range, and the oldest
    point a restore can reach."""
    from ..procedures import backups as procedure
    from ..ui import backups as ui

    ui.show_repository(procedure.repository(load_inventory()), as_json=json)


@task(name="restore", auto_shortflags=False, help={
    **_COMMON, "time": "restore to this time (ISO 8601; UTC unless an offset is given)",
    "latest": "restore everything archived (to the end of the WAL)",
    "into": "restore a scratch copy on this host (a db or backup host), leaving the "
            "cluster alone",
    "to": "the db host the cluster is restored into (default: the primary, else the "
          "first reachable unfenced db host)",
    "force": "restore even with a db host unreachable, or --into the live primary's host",
    "discard": "with --into: remove the scratch copy"})
@handled
def restore(c, time=None, latest=False, into=None, to=None, force=False, discard=False,
            dry_run=False, yes=False, message="", wait=0, json=False):
    """Restore the cluster (or a scratch copy) from the repository: to a time, or latest."""
    from ..procedures import backups as procedure
    from ..ui import backups as ui

    inv = load_inventory()
    opts = procedure.RestoreOptions(time=time, latest=bool(latest), into=into, to=to,
                                    force=bool(force), discard=bool(discard), message=message,
                                    wait=float(wait))
    report = procedure.restore(inv, load_secrets(inv), opts, dry_run=bool(dry_run),
                               confirm=None if yes or json else ui.confirm)
    ui.show_restore(report, as_json=json, dry_run=bool(dry_run))
    if not (report.done or dry_run):
        raise Exit(code=1)


@task(name="drill", auto_shortflags=False, help=_BACKUP_COMMON)
@handled
def drill(c, dry_run=False, message="", wait=0, json=False):
    """Restore the latest backup into a scratch container on the backup host, check it and
    compare its events per project with the primary's; says how long it took."""
    from ..procedures import backups as procedure
    from ..ui import backups as ui

    inv = load_inventory()
    report = procedure.drill(inv, load_secrets(inv), message=message, wait=float(wait),
                             dry_run=bool(dry_run))
    ui.show_drill(report, as_json=json)
    if not isinstance(report, str) and not report.result.ok:
        raise Exit(code=1)


ns = Collection("db", status, topology, switchover, failover, rejoin, degrade, backup,
                backups, restore, drill)
