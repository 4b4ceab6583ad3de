"""Backups, their list, restores and the restore drill (decision record 0007).

Each change runs under the guard (lock, audit lines, a clean end): `backup`, `restore`
and `drill`. `repository` only reads. What is decided is in plans/restore.py (pure); the
commands are in containers/pgbackrest.py; nothing here prints.
"""

from __future__ import annotations

import json
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..configs import backup as b
from ..configs.context import ClusterState, settings
from ..containers import docker, pgbackrest, postgres
from ..containers.spec import image_ref
from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..plans.restore import (
    SCRATCH_CONTAINER,
    SCRATCH_DATA,
    SCRATCH_ROOT,
    RestorePlan,
    RestoreRefused,
    format_time,
    parse_time,
    plan_restore,
)
from ..remote import Runner, Session
from ..secrets import Secrets
from ..shell import join
from ..topology.model import Marker
from . import audit
from .deploy import Deployer
from .discover import discover
from .guard import guarded

Connect = Callable[..., Runner]
Event = Callable[[str], None]
#: The secrets every backup task needs before it touches anything: without the cipher
#: pass the repository cannot be read, without the seed no host can reach it.
BACKUP_SECRETS = ("backup_cipher_pass", "backup_tls_seed")
#: How long a restored primary may take to replay the archived WAL and promote.
RECOVERY_TIMEOUT = 1800.0


def _quiet(message: str) -> None:
    """No progress display."""


def backup_host(inv: Inventory) -> Host:
    """The repository host, or a clear error naming what to add."""
    host = b.backup_host(inv)
    if host is None:
        raise SentryfabError(f"{inv.path.name}: no host has the role 'backup': add one (a "
                             "host that is not a db host) to hold the pgBackRest repository")
    return host


def require_secrets(secrets: Secrets) -> None:
    """Stop before anything changes if a backup secret is missing (names it and where)."""
    for name in BACKUP_SECRETS:
        secrets.get(name)


def _one(runner: Runner, host: Host, step: Callable[[Session], object], what: str):
    [r] = runner.each([host], step, what=what)
    if not r.ok:
        raise SentryfabError(f"{host.name}: {what}: {r.error or r.stderr.strip() or 'failed'}")
    return r.value


# -- backups ------------------------------------------------------------------------------------

@dataclass
class BackupRun:
    """One `fab db.backup`."""

    kind: str
    host: str
    ok: bool
    seconds: float = 0.0
    output: str = ""
    repository: pgbackrest.Repository | None = None
    command: str = ""


def backup(inv: Inventory, secrets: Secrets, kind: str, *, message: str = "",
           wait: float = 0, dry_run: bool = False, connect: Connect = Runner) -> BackupRun:
    """A full, differential or incremental backup of the primary, taken by the repository
    host; then the repository as it is."""
    host = backup_host(inv)
    require_secrets(secrets)
    command = pgbackrest.run_backup(kind)
    if dry_run:
        return BackupRun(kind, host.name, True, command=command)
    with connect(inv) as runner, guarded(runner, inv, "db.backup", hosts=[host],
                                         message=message, wait=wait, type=kind) as change:
        change.at(f"{kind} backup on {host.name}")
        started = clock.monotonic()
        out = _one(runner, host, lambda s: s.run(command, timeout=24 * 3600), "backup")
        run = BackupRun(kind, host.name, out.ok, clock.monotonic() - started,
                        (out.stdout + out.stderr).strip())
        if not out.ok:
            change.result = "failed"
            return run
        run.repository = _read_repository(runner, host)
        return run


def repository(inv: Inventory, *, connect: Connect = Runner) -> pgbackrest.Repository:
    """What the repository holds: backups, WAL range, the oldest restorable point."""
    host = backup_host(inv)
    with connect(inv) as runner:
        return _read_repository(runner, host)


def _read_repository(runner: Runner, host: Host) -> pgbackrest.Repository:
    out = _one(runner, host, lambda s: s.run(pgbackrest.info(), timeout=120), "pgbackrest info")
    if not out.ok:
        said = (out.stderr.strip() or out.stdout.strip()).splitlines()
        raise SentryfabError(f"{host.name}: pgbackrest info failed: "
                             f"{said[-1] if said else out.error}")
    try:
        return pgbackrest.parse_info(out.stdout)
    except (ValueError, KeyError, TypeError) as e:
        raise SentryfabError(f"{host.name}: pgbackrest info: {e}") from None


# -- restores ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RestoreOptions:
    """`fab db.restore`'s options."""

    time: str | None = None
    latest: bool = False
    into: str | None = None
    to: str | None = None
    force: bool = False
    discard: bool = False
    message: str = ""
    wait: float = 0


@dataclass
class RestoreReport:
    """What a restore did (or, with --dry-run or a no at the question, would do)."""

    plan: RestorePlan | None
    done: bool = False
    seconds: float = 0.0
    data_until: str = ""
    next_steps: list[str] = field(default_factory=list)
    answered_no: bool = False


def _target_time(opts: RestoreOptions) -> datetime | None:
    if opts.latest == (opts.time is not None):
        raise RestoreRefused("say what to restore to: --time T or --latest (one of them)")
    return parse_time(opts.time) if opts.time is not None else None


def plan(runner: Runner, inv: Inventory, opts: RestoreOptions) -> RestorePlan:
    """The restore the options ask for, against the repository and the topology as they are
    now (RestoreRefused if it must not run)."""
    when = _target_time(opts)
    if opts.into is not None and opts.into not in {h.name for h in inv.hosts}:
        raise RestoreRefused(f"--into {opts.into}: no such host in {inv.path.name}")
    repo = _read_repository(runner, backup_host(inv))
    topo = discover(runner, inv)
    into_roles = inv.host(opts.into).roles if opts.into else ()
    return plan_restore(repo, topo, [h.name for h in inv.with_role("db")], time=when,
                        into=opts.into, into_roles=into_roles, to=opts.to, force=opts.force)


def restore(inv: Inventory, secrets: Secrets, opts: RestoreOptions, *,
            dry_run: bool = False, confirm: Callable[[RestorePlan], bool] | None = None,
            on_event: Event = _quiet, connect: Connect = Runner) -> RestoreReport:
    """Plan, ask (unless `confirm` is None), then restore under the guard."""
    require_secrets(secrets)
    if opts.discard:
        return _discard(inv, opts, connect)
    with connect(inv) as runner:
        chosen = plan(runner, inv, opts)
        if dry_run:
            return RestoreReport(chosen)
        if confirm is not None and not confirm(chosen):
            return RestoreReport(chosen, answered_no=True)
        touched = [inv.host(n) for n in dict.fromkeys(
            (chosen.target, *chosen.stop, *chosen.fence, backup_host(inv).name))]
        with guarded(runner, inv, "db.restore", hosts=touched, message=opts.message,
                     wait=opts.wait, target=chosen.target,
                     time=format_time(chosen.time) if chosen.time else "latest",
                     scratch=chosen.scratch) as change:
            if plan(runner, inv, opts) != chosen:  # the cluster moved while we asked
                raise SentryfabError("the cluster changed after the plan was shown; run "
                                     "db.restore again to see the new plan")
            started = clock.monotonic()
            change.at("archiving the WAL written up to now")
            _archive_now(runner, inv)
            if chosen.scratch:
                report = _restore_scratch(runner, inv, chosen, change, on_event)
            else:
                report = _restore_cluster(runner, inv, secrets, chosen, change, on_event)
            report.seconds = clock.monotonic() - started
            return report


def _archive_now(runner: Runner, inv: Inventory) -> bool:
    """Best effort: if a primary runs, switch its WAL and wait until the repository has it,
    so that a restore to a time just past can reach it (else recovery would end before its
    target). False when it could not (no primary: the archive is what it is)."""
    [r] = runner.each([backup_host(inv)], lambda s: s.run(pgbackrest.check(), timeout=180),
                      what="pgbackrest check")
    return r.ok and r.value.ok


def _restore_cluster(runner: Runner, inv: Inventory, secrets: Secrets, chosen: RestorePlan,
                     change, on_event: Event) -> RestoreReport:
    target = inv.host(chosen.target)
    _stop_and_fence(runner, inv, chosen, change, on_event)
    change.at(f"restoring into {target.name}")
    on_event(f"{target.name}: restoring "
             + (f"to {format_time(chosen.time)}" if chosen.time else "to the end of the WAL"))
    _one(runner, target, lambda s: _restore_data(s, inv, chosen), "restore")
    change.at(f"starting {target.name} as the primary")
    on_event(f"{target.name}: starting; replaying the archived WAL, then promoting")
    deployer = Deployer(runner, inv, secrets, ClusterState(primary=target.name), change=change)
    until = _one(runner, target, lambda s: _start_restored(s, deployer), "starting the primary")
    change.at("checking that archiving goes on")
    _one(runner, backup_host(inv), lambda s: s.run(pgbackrest.check(), check=True,
                                                     timeout=600), "pgbackrest check")
    steps = [f"fab deploy.db  (clones {', '.join(chosen.clone)} from {target.name})"] \
        if chosen.clone else []
    steps += [f"fab db.rejoin --node {h}" for h in chosen.fence]
    steps += ["fab db.backup --type full  (a new full backup of the new timeline)",
              "fab status"]
    return RestoreReport(chosen, True, data_until=until, next_steps=steps)


def _stop_and_fence(runner: Runner, inv: Inventory, chosen: RestorePlan, change,
                    on_event: Event) -> None:
    """Every running PostgreSQL stopped; the other db hosts with data fenced (what they hold
    is a history the restored primary does not share)."""
    for name in chosen.stop:
        change.at(f"stopping PostgreSQL on {name}")
        on_event(f"{name}: stopping PostgreSQL")
        _one(runner, inv.host(name), lambda s: s.run(
            docker.stop(postgres_container(), 120), check=True, timeout=180), "stopping")
    record = json.dumps(Marker(at=clock.strftime("%Y-%m-%dT%H:%M:%SZ", clock.gmtime()),
                               who=audit.identity(), action="db.restore",
                               new_primary=chosen.target,
                               reason="restored from backup").as_record(), sort_keys=True)
    for name in chosen.fence:
        change.at(f"fencing {name}")
        on_event(f"{name}: fenced (its data is another history)")
        _one(runner, inv.host(name), lambda s: s.run(postgres.fence(record), check=True),
             "fencing")


def _restore_data(s: Session, inv: Inventory, chosen: RestorePlan) -> None:
    """pgBackRest's restore into the host's data directory (delta over what is there), in a
    one-off container of the database image; the host's fence lifted: it is the primary."""
    s.run(postgres.prepare_data_root(int(settings(inv, "db", s.host).get("uid", 101))),
          check=True)
    has_data = s.run(postgres.has_data()).ok
    out = s.run(pgbackrest.restore(image_ref(inv, "db", s.host),
                                   format_time(chosen.time) if chosen.time else None,
                                   delta=has_data), timeout=24 * 3600)
    if not out.ok:
        said = (out.stderr.strip() or out.stdout.strip()).splitlines()[-3:]
        raise SentryfabError(f"pgbackrest restore failed: {' / '.join(said)}")
    s.run(postgres.unfence(), check=True)


def _start_restored(s: Session, deployer: Deployer) -> str:
    """The restored host up as the primary, the restore's recovery settings reset; returns
    the time of the last transaction it replayed."""
    [spec, *_] = deployer.start_primary(s, RECOVERY_TIMEOUT)
    s.run(postgres.psql_stdin(spec.name), stdin=pgbackrest.forget_recovery_sql().encode(),
          check=True)
    return _replayed_until(s, spec.name)


def _replayed_until(s: Session, container: str) -> str:
    """pg_last_xact_replay_timestamp() of a restored copy: how recent its data is."""
    return s.run(join(["docker", "exec", "--user", "postgres", container, "psql", "-XAtc",
                       "select pg_last_xact_replay_timestamp()"])).stdout.strip()


def postgres_container() -> str:
    """The PostgreSQL container's name on a db host."""
    return "sentry-db-1"


def _scratch_config(host: Host) -> tuple[str, str]:
    """(config folder, pgbackrest.conf) a scratch restore on `host` reads the repository
    with: the repository host's own view, or a db host's (over TLS)."""
    if host.has("backup"):
        return b.BACKUP_CONFIG_DIR, pgbackrest.DRILL_CONF
    return b.DB_CONFIG_DIR, pgbackrest.DB_CONF


def _restore_scratch(runner: Runner, inv: Inventory, chosen: RestorePlan, change,
                     on_event: Event) -> RestoreReport:
    host = inv.host(chosen.target)
    role = "backup" if host.has("backup") else "db"
    image = image_ref(inv, role, host)
    uid = int(settings(inv, role, host).get("uid", 101))
    folder, conf = _scratch_config(host)
    target = format_time(chosen.time) if chosen.time else None
    change.at(f"restoring a scratch copy on {host.name}")
    on_event(f"{host.name}: restoring a scratch copy into {SCRATCH_DATA}")

    def step(s: Session) -> str:
        s.run(pgbackrest.scratch_reset(uid), check=True)
        out = s.run(pgbackrest.scratch_restore(image, folder, conf, target), timeout=24 * 3600)
        if not out.ok:
            said = (out.stderr.strip() or out.stdout.strip()).splitlines()[-3:]
            raise SentryfabError(f"pgbackrest restore failed: {' / '.join(said)}")
        s.run(pgbackrest.scratch_start(image, folder, conf), check=True)
        s.run(pgbackrest.scratch_promoted(RECOVERY_TIMEOUT), check=True,
              timeout=RECOVERY_TIMEOUT + 30)
        return _replayed_until(s, SCRATCH_CONTAINER)

    until = _one(runner, host, step, "scratch restore")
    return RestoreReport(chosen, True, data_until=until, next_steps=[
        f"on {host.name}: docker exec -it --user postgres {SCRATCH_CONTAINER} psql -d sentry",
        f"fab db.restore --into {host.name} --discard  (removes the copy)"])


def _discard(inv: Inventory, opts: RestoreOptions, connect: Connect) -> RestoreReport:
    if opts.into is None:
        raise RestoreRefused("--discard removes a scratch copy: name its host with --into")
    host = inv.host(opts.into)
    with connect(inv) as runner, guarded(runner, inv, "db.restore.discard", hosts=[host],
                                         message=opts.message, wait=opts.wait):
        _one(runner, host, lambda s: s.run(pgbackrest.scratch_discard(), check=True),
             "discarding the scratch copy")
    return RestoreReport(None, True, next_steps=[f"{SCRATCH_CONTAINER} and {SCRATCH_ROOT} "
                                                 f"removed on {host.name}"])


# -- the drill ----------------------------------------------------------------------------------

@dataclass
class DrillReport:
    """One `fab db.drill`: the result and how long the whole run took."""

    host: str
    result: pgbackrest.DrillResult
    seconds: float
    output: str = ""


def drill(inv: Inventory, secrets: Secrets, *, message: str = "", wait: float = 0,
          dry_run: bool = False, connect: Connect = Runner) -> DrillReport | str:
    """Restore the latest backup plus WAL into a scratch container on the repository host,
    check it, compare it with the primary (returns the command with `dry_run`)."""
    host = backup_host(inv)
    require_secrets(secrets)
    dbs = [(h.address, int(settings(inv, "db", h)["port"])) for h in inv.with_role("db")]
    command = pgbackrest.drill(image_ref(inv, "backup", host),
                               datetime.now().strftime("%Y%m%dT%H%M%S"), dbs)
    if dry_run:
        return command
    with connect(inv) as runner, guarded(runner, inv, "db.drill", hosts=[host],
                                         message=message, wait=wait) as change:
        change.at(f"restore drill on {host.name}")
        started = clock.monotonic()
        out = _one(runner, host, lambda s: s.run(
            command, timeout=pgbackrest.DRILL_WAIT_SECONDS + 24 * 3600), "drill")
        result = pgbackrest.parse_drill(out.stdout)
        if not result.ok:
            change.result = "failed"
        return DrillReport(host.name, result, clock.monotonic() - started,
                           (out.stdout + out.stderr).strip())
