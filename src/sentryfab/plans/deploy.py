"""What a deploy does on each host of a role, decided from facts read beforehand. Pure.

A host that runs exactly the containers it should (names, up, version, start-time config)
and has every rendered file with no apply pending is left alone. One that runs what it
should but whose files differ, or whose last apply never finished, gets its files pushed
and reloaded: no restart. Any other host has its containers replaced, batch by batch. A
host that could not be inspected stops the role before anything changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ..containers.docker import Running
from ..containers.spec import ContainerSpec


class State(StrEnum):
    """Where one host of a role ended (the values are in --json output: never rename)."""

    UNCHANGED = "unchanged"
    UPDATED = "updated"
    RELOADED = "reloaded"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    NOT_REACHED = "not reached"


#: A host in one of these states makes the role's rollout fail.
LOST = frozenset({State.FAILED, State.UNREACHABLE})
#: A host in one of these states was not touched.
UNTOUCHED = frozenset({State.UNCHANGED, State.NOT_REACHED})


class Action(StrEnum):
    """What the rollout does to one host."""

    UNCHANGED = "unchanged"
    RELOAD = "reload"
    REPLACE = "replace"
    UNINSPECTED = "uninspected"  # its facts could not be read: the role stops


#: RolePlan.stopped when a host could not be inspected.
NOT_INSPECTED = "some hosts could not be inspected; nothing was changed"


@dataclass(frozen=True)
class RoleFacts:
    """What one host has for a role, read before the rollout."""

    running: tuple[Running, ...] = ()
    pending: bool = False  # the role's last apply (reload/restart) never finished
    sums: Mapping[str, str] = field(default_factory=dict)  # live file path -> sha256


@dataclass(frozen=True)
class HostPlan:
    """One host's action, the version it runs now, and why it is not left alone."""

    host: str
    action: Action
    version: str | None = None
    why: tuple[str, ...] = ()


@dataclass(frozen=True)
class RolePlan:
    """Every host's action in the order given; `order` is the replacement order."""

    role: str
    hosts: tuple[HostPlan, ...]
    order: tuple[str, ...] = ()

    def _named(self, action: Action) -> list[str]:
        return [p.host for p in self.hosts if p.action is action]

    @property
    def unchanged(self) -> list[str]:
        """Hosts left alone."""
        return self._named(Action.UNCHANGED)

    @property
    def reload(self) -> list[str]:
        """Hosts whose files are pushed and reloaded, containers kept, one at a time."""
        return self._named(Action.RELOAD)

    @property
    def replace(self) -> list[str]:
        """Hosts whose containers are replaced, in the order given (see `order`)."""
        return self._named(Action.REPLACE)

    @property
    def uninspected(self) -> list[str]:
        """Hosts whose facts could not be read."""
        return self._named(Action.UNINSPECTED)

    @property
    def stopped(self) -> str:
        """Why nothing may change ('' when the rollout may go on)."""
        return NOT_INSPECTED if self.uninspected else ""


def plan_role(role: str, facts: Mapping[str, RoleFacts | None],
              wanted: Mapping[str, Sequence[ContainerSpec]],
              files: Mapping[str, Mapping[str, str]], primary: str | None = None
              ) -> RolePlan:
    """Each host's action from its facts (None: not inspected), the containers it should run
    and its rendered files (path -> sha256); the database primary is replaced first
    (replicas clone from it)."""
    plans = []
    for host, seen in facts.items():
        if seen is None:
            plans.append(HostPlan(host, Action.UNINSPECTED))
            continue
        version = running_version(seen.running)
        why = differences(wanted[host], seen.running)
        if why:
            plans.append(HostPlan(host, Action.REPLACE, version, why))
            continue
        why = stale_files(seen.pending, seen.sums, files.get(host, {}))
        plans.append(HostPlan(host, Action.RELOAD if why else Action.UNCHANGED, version, why))
    todo = [p.host for p in plans if p.action is Action.REPLACE]
    if role == "db":
        todo.sort(key=lambda name: name != primary)
    return RolePlan(role, tuple(plans), tuple(todo))


def running_version(running: Sequence[Running]) -> str | None:
    """The version(s) a host's containers that are up run: '9.1.2', '9.1.1,9.1.2' or None."""
    versions = sorted({c.version for c in running if c.up})
    return ",".join(versions) if versions else None


def differences(want: Sequence[ContainerSpec], running: Sequence[Running]) -> tuple[str, ...]:
    """What keeps a host from running exactly `want` (names, up, version, start-time
    config); empty when it does."""
    have = {c.name: c for c in running}
    names = [sp.name for sp in want]
    if set(have) != set(names):
        return (tuple(f"{n} missing" for n in names if n not in have)
                + tuple(f"{n} not wanted" for n in sorted(set(have) - set(names))))
    why: list[str] = []
    for sp in want:
        c = have[sp.name]
        if not c.up:
            why.append(f"{sp.name} not running ({c.state or 'no state'})")
        if c.version != sp.label("version"):
            why.append(f"{sp.name} runs {c.version or '?'}, wants {sp.label('version')}")
        if c.config != sp.label("config"):
            why.append(f"{sp.name} was started with other settings")
    return tuple(why)


def stale_files(pending: bool, sums: Mapping[str, str], files: Mapping[str, str]
                ) -> tuple[str, ...]:
    """Why a host's config is not current: rendered files whose live checksum differs (or
    that are missing), and an apply left pending; empty when it is current."""
    why = tuple(f"{path} differs" for path, sha in files.items() if sums.get(path) != sha)
    return why + (("an apply is pending",) if pending else ())
