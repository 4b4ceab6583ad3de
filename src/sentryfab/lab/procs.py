"""The lab's processes, read from /proc: which belong to a host, and stopping them.

A host's processes are those in its network namespace (what `ip netns pids` reports)
plus their descendants (a container's processes sit in their own namespaces, below
containerd-shim), plus any sshd/dockerd still naming the host's state folder after
its namespace was deleted under it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sentryfab.lab.commands import SSHD
from sentryfab.lab.topology import Host

NsId = tuple[int, int]


@dataclass(frozen=True)
class Proc:
    """One live process as /proc shows it."""

    pid: int
    ppid: int
    netns: NsId | None
    argv: tuple[str, ...]

    @property
    def line(self) -> str:
        return " ".join(self.argv)


def _stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name in parentheses may itself contain spaces or parentheses.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def snapshot() -> dict[int, Proc]:
    """Every live (non-zombie) process of the machine."""
    procs: dict[int, Proc] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            continue
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
            netns: NsId | None = (st.st_dev, st.st_ino)
        except OSError:
            netns = None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = tuple(a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a)
        except OSError:
            continue
        procs[pid] = Proc(pid, fields[1], netns, argv)
    return procs


def netns_id(path: str) -> NsId | None:
    """Identity of the named network namespace at `path`, or None when it does not exist."""
    if not os.path.ismount(path):
        return None
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def in_netns(path: str, procs: dict[int, Proc]) -> list[Proc]:
    """Processes inside the network namespace at `path` (like `ip netns pids`)."""
    ns = netns_id(path)
    return [p for p in procs.values() if ns is not None and p.netns == ns]


def sshd_pid(host: Host, procs: dict[int, Proc]) -> int | None:
    """The host's listening sshd (sessions are retitled and do not name the config)."""
    marker = f"-f {host.paths.sshd_config}"
    members = in_netns(host.netns_path, procs)
    return next((p.pid for p in members if SSHD in p.line and marker in p.line), None)


def dockerd_pid(host: Host, procs: dict[int, Proc]) -> int | None:
    """The host's Docker engine."""
    marker = str(host.paths.docker)
    members = in_netns(host.netns_path, procs)
    return next((p.pid for p in members if _is_dockerd(p) and marker in p.argv), None)


def _is_dockerd(proc: Proc) -> bool:
    return bool(proc.argv) and os.path.basename(proc.argv[0]) == "dockerd"


def descendants(procs: dict[int, Proc], roots: Iterable[int]) -> set[int]:
    """`roots` and every process below them."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def host_pids(host: Host, procs: dict[int, Proc]) -> set[int]:
    """Everything that must die for the host to be stopped."""
    # Daemons left in a namespace whose name was deleted: found by the folder they name.
    folder = f"{host.paths.root}/"
    orphans = [p.pid for p in procs.values()
               if folder in p.line and (SSHD in p.line or _is_dockerd(p))]
    return descendants(procs, [p.pid for p in in_netns(host.netns_path, procs)] + orphans)


def with_mounts_under(folder: str, procs: dict[int, Proc]) -> set[int]:
    """Processes whose mount table names `folder`: lab hosts and their containers.

    The safety net of `down`: catches a container whose shim died, which is then in no
    lab namespace and below no lab process, but still runs on a lab overlay.
    """
    found = set()
    for pid in procs:
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                if folder in f.read():
                    found.add(pid)
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while True:
        pids = {pid for pid in pids if alive(pid)}
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.05)


def stop(pids: set[int], grace: float = 3.0) -> set[int]:
    """TERM every process at once, KILL what is left after `grace` seconds.

    All at once, dockerd and its containers alike: waiting for dockerd to stop its
    containers one by one (10 s each that ignores TERM) buys nothing in a lab.
    Returns the pids that survived even SIGKILL (normally none).
    """
    _signal(pids, signal.SIGTERM)
    rest = _wait_gone(set(pids), grace)
    _signal(rest, signal.SIGKILL)
    return _wait_gone(rest, 3.0)
