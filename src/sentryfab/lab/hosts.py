"""One lab host: its state folder, its sshd and dockerd, and their health.

A host's processes live in its own network, mount and UTS namespaces. Starting a host
fresh runs init.sh in new namespaces; when only one daemon died, the other's
namespaces are joined to restart just the missing one, leaving the rest untouched.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import IO

from sentryfab.errors import LabError
from sentryfab.lab import commands as cmd
from sentryfab.lab import network, procs
from sentryfab.lab.system import ENV, run, tail, write_if_changed
from sentryfab.lab.topology import IMAGE, IMAGE_TAG, Host

SSHD_TIMEOUT = 20.0
DOCKERD_TIMEOUT = 90.0  # ten engines starting at once on two cores take a while
IMAGE_REF = f"{IMAGE}:{IMAGE_TAG}"
RETRY_HINT = "Run `fab lab.up` again; if it keeps failing, `fab lab.down` then `fab lab.up`."

# Popen objects of the daemons we started, by (host, "sshd" | "dockerd"): kept so they
# are reaped, and so a daemon that dies during start-up is noticed at once, not at the
# timeout. A fresh start runs init.sh, which becomes the host's sshd (exec).
_started: dict[tuple[str, str], subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class HostState:
    """What `status` sees of one host."""

    name: str
    address: str
    roles: tuple[str, ...]
    network: bool
    sshd_pid: int | None
    ssh: bool  # sshd sent its banner
    dockerd_pid: int | None = None
    docker: bool | None = None  # None: the host has no engine
    image: bool | None = None  # lab/base:1 (and lab/sentry, lab/redis where used) current

    @property
    def healthy(self) -> bool:
        return self.network and self.ssh and self.docker is not False and self.image is not False


# --- files -------------------------------------------------------------------------------

def prepare(host: Host, pubkey: str) -> tuple[list[str], bool]:
    """Write the host's state folder; returns (actions, whether sshd_config/init.sh changed)."""
    paths = host.paths
    actions = []
    for folder, mode in ((paths.root, 0o755), (paths.home, 0o700), (paths.home / ".ssh", 0o700),
                         (paths.etc, 0o755), (paths.varlib, 0o755), (paths.varlog, 0o755),
                         (paths.tmp, 0o1777)):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(mode)
    if not paths.hostkey.exists():
        run(cmd.ssh_keygen(paths.hostkey, f"root@{host.name}"), what="generating the host key",
            host=host.name)
        actions.append("generated host key")
    changed = write_if_changed(paths.sshd_config, cmd.sshd_config_text(host), 0o644)
    changed |= write_if_changed(paths.init_script, cmd.init_script_text(host), 0o755)
    write_if_changed(paths.authorized_keys, pubkey, 0o600)
    return actions, changed


def host_public_key(host: Host) -> str:
    """The host's sshd public key line."""
    return host.paths.hostkey.with_name("hostkey.pub").read_text()


# --- daemons -----------------------------------------------------------------------------

def _spawn(host: Host, daemon: str, argv: Sequence[str], log: IO[bytes]) -> None:
    _reap(host.name, daemon)
    # A new session: Ctrl-C on `fab` must not reach the lab's daemons.
    _started[(host.name, daemon)] = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=ENV, cwd="/",
        start_new_session=True)


def _reap(name: str, daemon: str) -> None:
    """Forget a daemon we started once it has exited (collecting its exit status)."""
    proc = _started.get((name, daemon))
    if proc is not None and proc.poll() is not None:
        del _started[(name, daemon)]


def ensure_running(host: Host, config_changed: bool, snap: dict[int, procs.Proc]) -> list[str]:
    """Start whatever of sshd/dockerd is missing; restart all if its config changed."""
    sshd = procs.sshd_pid(host, snap)
    dockerd = procs.dockerd_pid(host, snap) if host.has_docker else None
    actions = []
    if config_changed and (sshd or dockerd):
        stop(host, snap)
        sshd = dockerd = None
        actions.append("config changed: restarting")
    elif dockerd and not _docker_answers(host, dockerd, timeout=10):
        # A hung engine is worse than a dead one: nothing would restart it.
        stop(host, snap)
        sshd = dockerd = None
        actions.append("dockerd not answering: restarting")
    paths = host.paths
    if sshd is None and dockerd is None:
        stop(host, snap)  # leftovers of a half-dead host (sessions, an orphan containerd)
        with open(paths.init_log, "ab") as log:
            _spawn(host, "sshd", cmd.init_command(host), log)
        actions.append("started sshd + dockerd" if host.has_docker else "started sshd")
    elif sshd is None:
        assert dockerd is not None
        with open(paths.init_log, "ab") as log:
            _spawn(host, "sshd", cmd.enter_command(host, dockerd, cmd.sshd_command(paths)), log)
        actions.append("restarted sshd")
    elif host.has_docker and dockerd is None:
        with open(paths.dockerd_log, "ab") as log:
            _spawn(host, "dockerd", cmd.enter_command(host, sshd, cmd.dockerd_command(paths)),
                   log)
        actions.append("restarted dockerd")
    return actions


def _banner(address: str, timeout: float) -> bool:
    """True when an SSH server answers on address:22 with its version banner."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _died(host: Host) -> bool:
    proc = _started.get((host.name, "sshd"))
    return proc is not None and proc.poll() is not None


def wait_sshd(host: Host, timeout: float = SSHD_TIMEOUT) -> None:
    """Block until the host's sshd answers; raise LabError with its logs if it does not."""
    deadline = time.monotonic() + timeout
    while not _banner(host.address, 0.5):
        if _died(host) or time.monotonic() > deadline:
            state = "exited" if _died(host) else f"did not answer within {timeout:.0f} s"
            raise LabError(
                f"sshd on {host.name} ({host.address}) {state}.\n"
                f"{tail(host.paths.init_log)}\n{tail(host.paths.sshd_log)}\n{RETRY_HINT}")
        time.sleep(0.05)


def anchor_pid(host: Host, snap: dict[int, procs.Proc]) -> int | None:
    """A process inside the host's mount namespace, to run commands next to it."""
    return procs.sshd_pid(host, snap) or procs.dockerd_pid(host, snap)


def docker(host: Host, anchor: int, argv: Sequence[str], *, what: str,
           stdin: IO[bytes] | None = None, timeout: float = 60, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    """Run a docker CLI command against the host's own engine (its private /run)."""
    return run(cmd.enter_command(host, anchor, argv), what=what, host=host.name, stdin=stdin,
               timeout=timeout, check=check)


def _docker_answers(host: Host, anchor: int, timeout: float) -> bool:
    return docker(host, anchor, cmd.docker_version(), what="docker", timeout=timeout,
                  check=False).returncode == 0


def wait_dockerd(host: Host, timeout: float = DOCKERD_TIMEOUT) -> None:
    """Block until the host's Docker engine answers; raise LabError with dockerd.log if not."""
    start = time.monotonic()
    while True:
        snap = procs.snapshot()
        anchor = anchor_pid(host, snap)
        if anchor is not None and _docker_answers(host, anchor, timeout=10):
            return
        elapsed = time.monotonic() - start
        # init.sh starts dockerd detached from us, so look for it in /proc; give the
        # script a moment to get that far first.
        gone = elapsed > 3 and procs.dockerd_pid(host, snap) is None
        if gone or elapsed > timeout:
            state = "is not running" if gone else f"did not answer within {timeout:.0f} s"
            raise LabError(f"dockerd on {host.name} {state}.\n{tail(host.paths.dockerd_log)}\n"
                           f"{tail(host.paths.init_log)}\n{RETRY_HINT}")
        time.sleep(0.25)


def image_key_of(host: Host, anchor: int, ref: str = IMAGE_REF) -> str | None:
    """The tar key labelled on the host's image `ref` (lab/base:1), or None if it has none."""
    shown = docker(host, anchor, cmd.docker_image_label(ref), what="docker", timeout=20,
                   check=False)
    return shown.stdout.strip() if shown.returncode == 0 else None


def stop(host: Host, snap: dict[int, procs.Proc] | None = None) -> None:
    """Stop every process of the host, its containers included."""
    snap = snap if snap is not None else procs.snapshot()
    survivors = procs.stop(procs.host_pids(host, snap))
    for daemon in ("sshd", "dockerd"):
        _reap(host.name, daemon)
    if survivors:
        raise LabError(f"could not stop processes {sorted(survivors)} of {host.name}; "
                       "look at them with `ps -fp PID`.")


def stop_sshd(host: Host) -> bool:
    """Stop only the host's listening sshd; False if it was not running."""
    pid = procs.sshd_pid(host, procs.snapshot())
    if pid is None:
        return False
    procs.stop({pid})
    _reap(host.name, "sshd")
    return True


# --- health ------------------------------------------------------------------------------

def check(host: Host, snap: dict[int, procs.Proc], image_key: str | None) -> HostState:
    """The host's state; `image_key` is the current base tar's key (None: not checked)."""
    sshd = procs.sshd_pid(host, snap)
    state = HostState(host.name, host.address, host.roles, network.host_network_ok(host),
                      sshd, sshd is not None and _banner(host.address, 1.0))
    if not host.has_docker:
        return state
    dockerd = procs.dockerd_pid(host, snap)
    anchor = anchor_pid(host, snap)
    answers = (anchor is not None and dockerd is not None
               and _docker_answers(host, anchor, timeout=10))
    image: bool | None = False
    if answers and anchor is not None:
        image = None if image_key is None else image_key_of(host, anchor) == image_key
    return replace(state, dockerd_pid=dockerd, docker=answers, image=image)
