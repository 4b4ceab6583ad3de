"""What `fab db.restore` will do, decided before anything is touched. Pure.

Two kinds of restore:
- the cluster: every db host's PostgreSQL stops, the target host's data directory is
  restored (to a time, or to the end of the archived WAL) and it starts as the primary;
  other db hosts that still hold data are fenced (they hold a history the restored
  primary does not share) until `fab db.rejoin` makes replicas of them; hosts without data
  are cloned by `fab deploy.db`.
- a scratch copy (`--into HOST`): restored into its own folder on HOST and started as the
  container `sentry-restore-1` on a unix socket only; the cluster is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..configs.backup import RESTORE_CONTAINER as SCRATCH_CONTAINER
from ..configs.backup import RESTORE_DATA as SCRATCH_DATA
from ..configs.backup import RESTORE_ROOT as SCRATCH_ROOT
from ..containers.pgbackrest import Repository
from ..errors import SentryfabError
from ..topology.model import Topology

__all__ = ["SCRATCH_CONTAINER", "SCRATCH_DATA", "SCRATCH_ROOT", "RestorePlan",
           "RestoreRefused", "format_time", "parse_time", "plan_restore"]


class RestoreRefused(SentryfabError):
    """The restore would not do what was asked; the message says why and what would."""

    exit_code = 2


@dataclass(frozen=True)
class RestorePlan:
    """The restore to run: where to, to when, what stops, what is fenced."""

    target: str
    time: datetime | None        # None: the end of the archived WAL (--latest)
    scratch: bool
    stop: tuple[str, ...] = ()   # db hosts whose PostgreSQL is stopped first
    fence: tuple[str, ...] = ()  # db hosts left fenced (their data is another history)
    clone: tuple[str, ...] = ()  # db hosts without data, for `fab deploy.db` to clone
    overwrites: tuple[str, ...] = field(default_factory=tuple)  # what will be replaced

    def steps(self) -> list[str]:
        """The plan in words, as --dry-run and the confirmation show it."""
        when = f"to {format_time(self.time)}" if self.time else "to the end of the archived WAL"
        if self.scratch:
            return [f"restore {when} into {SCRATCH_DATA} on {self.target}",
                    f"start it as {SCRATCH_CONTAINER} on {self.target} (unix socket only)"]
        out = [f"stop PostgreSQL on {', '.join(self.stop)}"] if self.stop else []
        out.append(f"restore {when} into {self.target}'s data directory")
        out.append(f"start {self.target} as the primary; replication slots and users again")
        out += [f"fence {h} (its data is another history: `fab db.rejoin --node {h}`)"
                for h in self.fence]
        if self.clone:
            out.append(f"then `fab deploy.db` clones {', '.join(self.clone)} from it")
        return out


def format_time(t: datetime) -> str:
    """A time as pgBackRest and PostgreSQL read it: UTC with its offset."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def parse_time(text: str) -> datetime:
    """--time: ISO 8601; without an offset it is UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RestoreRefused(f"--time {text!r} is not a time: write it as ISO 8601, e.g. "
                             "2026-12-07T14:30:00+00:00 (UTC when no offset is given)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def plan_restore(repo: Repository, topo: Topology, db_hosts: list[str], *,
                 time: datetime | None, into: str | None, into_roles: tuple[str, ...] = (),
                 to: str | None = None, force: bool = False,
                 now: datetime | None = None) -> RestorePlan:
    """The restore `time` (None: latest) into `into` (None: the cluster) asks for, or
    RestoreRefused naming what is wrong."""
    _check_time(repo, time, now or datetime.now(UTC))
    primary = topo.primary
    if into is not None:
        if not set(into_roles) & {"db", "backup"}:
            raise RestoreRefused(f"--into {into}: a scratch restore needs a db or backup host "
                                 "(the database image and pgBackRest)")
        if primary is not None and primary.name == into and not force:
            raise RestoreRefused(f"--into {into}: {into} runs the live primary; a scratch "
                                 "copy there would compete with it for memory, disk and I/O. "
                                 "Use the backup host or a replica, or --force")
        return RestorePlan(into, time, True)
    target = _cluster_target(topo, db_hosts, to)
    nodes = {n.name: n for n in topo.nodes}
    lost = [h for h in db_hosts if h not in nodes or not nodes[h].reachable]
    if lost and not force:
        raise RestoreRefused(f"{', '.join(lost)} cannot be reached: it could come back as a "
                             "second primary with the old history. Restore once it answers "
                             "(it is fenced then), or --force if it is gone for good")
    stop = tuple(h for h in db_hosts if h in nodes and nodes[h].container == "running")
    others = [h for h in db_hosts if h != target and h not in lost]
    fence = tuple(h for h in others if nodes[h].has_data)
    clone = tuple(h for h in others if h not in fence)
    overwrites = (f"{target}'s data directory",) if nodes[target].has_data else ()
    return RestorePlan(target, time, False, stop, fence, clone, overwrites)


def _check_time(repo: Repository, time: datetime | None, now: datetime) -> None:
    oldest = repo.oldest_restorable
    if oldest is None:
        raise RestoreRefused("the repository holds no backup yet: run `fab db.backup` first")
    if time is None:
        return
    if time < oldest:
        raise RestoreRefused(f"--time {format_time(time)} is before the oldest point a restore "
                             f"can reach, {format_time(oldest)} (the end of the oldest "
                             "backup kept): choose a later time")
    if time > now:
        raise RestoreRefused(f"--time {format_time(time)} is in the future (now "
                             f"{format_time(now)}): use --latest for everything archived")


def _cluster_target(topo: Topology, db_hosts: list[str], to: str | None) -> str:
    """--to, else the live primary, else an unfenced db host (the first in the inventory)."""
    if to is not None:
        if to not in db_hosts:
            raise RestoreRefused(f"--to {to} is not a db host (db hosts: {', '.join(db_hosts)})")
        return to
    if topo.primary is not None:
        return topo.primary.name
    nodes = {n.name: n for n in topo.nodes}
    free = [h for h in db_hosts
            if h in nodes and nodes[h].reachable and nodes[h].fenced is None]
    if not free:
        raise RestoreRefused("no reachable, unfenced db host to restore into: name one with --to")
    return free[0]
