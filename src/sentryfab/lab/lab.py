"""The local lab of real hosts: bring it up, take it down, report its state.

Every function returns data and never prints; progress goes to an optional
`on_step(host, message)` callback ("lab" for lab-wide steps).
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from sentryfab.errors import LabError, SentryfabError
from sentryfab.lab import (
    client,
    deploy_user,
    hosts,
    image,
    network,
    procs,
    redis_image,
    sentry_image,
)
from sentryfab.lab import commands as cmd
from sentryfab.lab.hosts import HostState
from sentryfab.lab.image import BaseImage
from sentryfab.lab.sentry_image import SentryImage
from sentryfab.lab.system import remove_tree, write_if_changed
from sentryfab.lab.topology import (
    HOSTS_ROOT,
    MAX_SCALE_HOSTS,
    SHARED_FILES_SOURCE,
    STATE_FILE,
    STATE_ROOT,
    Host,
    find_host,
    lab_hosts,
)

Step = Callable[[str, str], None]
T = TypeVar("T")

LAB = "lab"  # the `host` of lab-wide progress steps
LOCK_FILE = Path("/run/sentryfab-lab.lock")  # outside STATE_ROOT, which `down` deletes
HOST_WORKERS = 16
IMPORT_WORKERS = 3  # two cores: more concurrent imports only queue on CPU and disk
REMOVE_WORKERS = 4
REQUIRED = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux",
            "ssh-keygen": "openssh-client", "sshd": "openssh-server", "dockerd": "docker.io",
            "docker": "docker.io", "tar": "tar"}


@dataclass(frozen=True)
class HostReport:
    """What `up` did to one host (no actions: it was already fine)."""

    name: str
    address: str
    roles: tuple[str, ...]
    actions: tuple[str, ...]


@dataclass(frozen=True)
class LabReport:
    """The result of `up` or `down`."""

    action: str  # "up" or "down"
    hosts: tuple[HostReport, ...]
    lab_actions: tuple[str, ...]
    seconds: float
    lab_dir: Path | None = None
    image: BaseImage | None = None
    sentry_images: tuple[SentryImage, ...] = ()
    redis_image: BaseImage | None = None

    @property
    def changed(self) -> bool:
        return bool(self.lab_actions) or any(h.actions for h in self.hosts)

    @property
    def inventory(self) -> Path | None:
        return self.lab_dir / "hosts.yaml" if self.lab_dir else None


# --- guards, lock, state ---------------------------------------------------------------

def require_lab_machine() -> None:
    """Raise LabError unless this is Linux and we are root: the lab needs namespaces."""
    if platform.system() != "Linux":
        raise LabError(f"the lab needs Linux network namespaces; this is {platform.system()}.")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, a bridge, sshd and dockerd): "
                       "run it as root, e.g. `sudo .venv/bin/fab lab.up`.")


def _require_tools() -> None:
    missing = [f"{tool} ({package})" for tool, package in REQUIRED.items()
               if shutil.which(tool, path=cmd.SANE_PATH) is None]
    if missing:
        raise LabError(f"missing commands: {', '.join(missing)}; install them with "
                       "`apt-get install -y openssh-server docker.io debootstrap iproute2`.")


@contextmanager
def _locked() -> Iterator[None]:
    """One lab operation at a time on this machine."""
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LabError(f"{STATE_FILE} is not valid JSON ({exc}); run `fab lab.down`, which "
                       "also finds the lab's namespaces and links by name.") from exc


def _save_state(state: dict) -> None:
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    write_if_changed(STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644)


def _recorded_hosts(state: dict) -> list[Host]:
    """Hosts named in the state file or with a state folder, in address order."""
    names = set(state.get("hosts", []))
    if HOSTS_ROOT.is_dir():
        names |= {p.name for p in HOSTS_ROOT.iterdir()}
    found = [h for h in map(find_host, names) if h is not None]
    return sorted(found, key=lambda h: h.number)


def _parallel(items: Sequence[Host], fn: Callable[[Host], T], workers: int) -> list[T]:
    """fn over hosts in threads; every failure is collected into one LabError."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [(h, pool.submit(fn, h)) for h in items]
    results, errors = [], []
    for host, future in futures:
        exc = future.exception()
        if exc is None:
            results.append(future.result())
        elif isinstance(exc, LabError):
            errors.append(str(exc))
        else:
            errors.append(f"{host.name}: unexpected {type(exc).__name__}: {exc}")
    if errors:
        raise LabError(f"{len(errors)} of {len(items)} hosts failed:\n\n" + "\n\n".join(errors))
    return results


def _ensure_mountpoints(wanted: list[Host]) -> list[str]:
    """Create on the machine the folders hosts mount over; returns those it created."""
    created = []
    for source, target in {b for h in wanted for b in h.binds()}:
        if source == SHARED_FILES_SOURCE:
            source.mkdir(parents=True, exist_ok=True)
        if not os.path.exists(target):
            os.makedirs(target)
            created.append(target)
    return sorted(created)


# --- up ----------------------------------------------------------------------------------

def _bring_up(wanted: list[Host], pubkey: str, base: BaseImage,
              sentry_tars: Sequence[SentryImage], redis: BaseImage, on_step: Step | None
              ) -> list[HostReport]:
    """Network, files, daemons and images of each host; only what is missing is done."""
    actions: dict[str, list[str]] = {h.name: [] for h in wanted}

    def net(h: Host) -> None:
        actions[h.name] += network.ensure_host_network(h)

    # The first `ip netns add` of a machine sets up /run/netns; concurrent first uses race.
    _parallel(wanted[:1], net, 1)
    _parallel(wanted[1:], net, HOST_WORKERS)
    snap = procs.snapshot()

    def start(h: Host) -> None:
        done, changed = hosts.prepare(h, pubkey)
        done += hosts.ensure_running(h, changed, snap)
        actions[h.name] += done
        if on_step and actions[h.name]:
            on_step(h.name, ", ".join(actions[h.name]))
        hosts.wait_sshd(h)
        if h.has_docker:
            hosts.wait_dockerd(h)

    _parallel(wanted, start, HOST_WORKERS)
    snap = procs.snapshot()

    def load(h: Host) -> None:
        anchor = hosts.anchor_pid(h, snap)
        if anchor is None:
            raise LabError(f"{h.name} has no sshd or dockerd left after start. {hosts.RETRY_HINT}")
        if image.ensure_image(h, anchor, base, on_step):
            actions[h.name].append(f"imported {hosts.IMAGE_REF}")
        # Redis 6 on the Redis hosts (Sentry 9's digests need a Redis before 7).
        if redis_image.redis_hosts([h]) and redis_image.ensure_image(h, anchor, redis, on_step):
            actions[h.name].append(f"imported {redis_image.REF}")

    _parallel([h for h in wanted if h.has_docker], load, IMPORT_WORKERS)
    # The real Sentry images on web, worker and cron hosts, one import per host and image.
    imported = sentry_image.ensure_sentry_images(wanted, on_step, sentry_tars, IMPORT_WORKERS)
    for name, done in imported.items():
        actions[name] += done
    return [HostReport(h.name, h.address, h.roles, tuple(actions[h.name])) for h in wanted]


def up(scale_hosts: int = 0, repo_dir: Path | str = ".", on_step: Step | None = None
       ) -> LabReport:
    """Bring the lab up (role hosts + `scale_hosts` scale hosts); idempotent and fast when up."""
    started = time.monotonic()
    require_lab_machine()
    if not 0 <= scale_hosts <= MAX_SCALE_HOSTS:
        raise LabError(f"--hosts must be between 0 and {MAX_SCALE_HOSTS}, got {scale_hosts}.")
    _require_tools()
    wanted = lab_hosts(scale_hosts)
    lab_dir = Path(repo_dir).resolve() / "lab"
    with _locked():
        state = _load_state()
        pubkey, lab_actions = client.ensure_key(lab_dir)
        lab_actions += client.ensure_secrets(lab_dir)
        if state.get("lab_dir") and Path(state["lab_dir"]) != lab_dir:
            # The repo moved or another checkout took over: its old files are stale.
            lab_actions += client.remove_files(Path(state["lab_dir"]))
        base = image.ensure_base_tar(on_step)
        if base.built:
            lab_actions.append(f"built {base.path} in {base.seconds:.0f} s")
        sentry_tars = sentry_image.ensure_sentry_tars(on_step)
        lab_actions += [f"built {t.path} in {t.seconds:.0f} s" for t in sentry_tars if t.built]
        redis = redis_image.ensure_redis_tar(on_step)
        if redis.built:
            lab_actions.append(f"built {redis.path} in {redis.seconds:.0f} s")
        # Recorded before anything is created, so `down` can undo a failed `up`.
        previous = _recorded_hosts(state)
        state["hosts"] = sorted({h.name for h in previous} | {h.name for h in wanted})
        state["lab_dir"] = str(lab_dir)
        state["created_dirs"] = sorted(set(state.get("created_dirs", []))
                                       | set(_ensure_mountpoints(wanted)))
        _save_state(state)
        for extra in [h for h in previous if h not in wanted]:
            _remove_host(extra)
            lab_actions.append(f"removed {extra.name}")
        state["hosts"] = [h.name for h in wanted]
        _save_state(state)
        lab_actions += network.ensure_bridge()
        if network.forward_rule_needed() and network.ensure_forward_rule():
            state["forward_rule"] = True
            _save_state(state)
            lab_actions.append("allowed bridge traffic in iptables FORWARD")
        reports = _bring_up(wanted, pubkey, base, sentry_tars, redis, on_step)
        lab_actions += client.write_files(lab_dir, wanted)
        lab_actions += deploy_user.ensure(pubkey)  # the non-root login, for `become: sudo`
    return LabReport("up", tuple(reports), tuple(lab_actions), time.monotonic() - started,
                     lab_dir, base, sentry_tars, redis)


def _remove_host(host: Host) -> None:
    """Stop a host and delete its namespace, veth and state folder."""
    hosts.stop(host)
    if os.path.ismount(host.netns_path):
        network.remove_netns(host.netns)
    network.remove_link(host.veth)
    remove_tree(host.paths.root, what=f"removing the state of {host.name}")


# --- down --------------------------------------------------------------------------------

def _close_held_connections() -> int:
    """Stop this user's connection holders: their hosts are about to vanish, and nothing
    the lab started may outlive it."""
    from ..remote import held_client

    try:
        return held_client.close_every_holder()
    except SentryfabError:
        return 0  # an unsafe folder holds no holder of ours


def down(repo_dir: Path | str | None = None, on_step: Step | None = None) -> LabReport:
    """Remove everything `up` made (the cached base tar and the lab key stay)."""
    started = time.monotonic()
    require_lab_machine()
    with _locked():
        state = _load_state()
        known = _recorded_hosts(state)
        # Namespaces are also found by our prefix: a lost state file leaves nothing behind.
        netns_names = sorted(set(network.lab_netns()) | {h.netns for h in known
                                                          if os.path.ismount(h.netns_path)})
        lab_actions = []
        held = _close_held_connections()
        if held:
            lab_actions.append(f"closed {held} held SSH connections")
        if on_step:
            on_step(LAB, f"stopping the processes of {len(netns_names)} hosts")
        stopped = _stop_everything(known, netns_names)
        if stopped:
            lab_actions.append(f"stopped {stopped} processes")
        lab_actions += deploy_user.remove()  # its sessions were stopped with the hosts
        for name in netns_names:
            network.remove_netns(name)
        if netns_names:
            lab_actions.append(f"deleted {len(netns_names)} network namespaces")
        links = network.lab_links()
        for link in links:
            network.remove_link(link)
        if links:
            lab_actions.append(f"deleted {len(links)} links")
        if state.get("forward_rule"):
            network.remove_forward_rule()
            lab_actions.append("removed the iptables FORWARD rule")
        if STATE_ROOT.exists():
            if on_step:
                on_step(LAB, f"removing {STATE_ROOT}")
            # Host by host in parallel first: the Docker data roots are many small files.
            _parallel(known, lambda h: remove_tree(h.paths.root, what="removing the lab state"),
                      REMOVE_WORKERS)
            remove_tree(STATE_ROOT, what="removing the lab state")
            lab_actions.append(f"removed {STATE_ROOT}")
        lab_dirs = {Path(state["lab_dir"])} if state.get("lab_dir") else set()
        if repo_dir is not None:
            lab_dirs.add(Path(repo_dir).resolve() / "lab")
        for lab_dir in sorted(lab_dirs):
            lab_actions += client.remove_files(lab_dir)
        for folder in state.get("created_dirs", []):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
    reports = tuple(HostReport(h.name, h.address, h.roles, ("removed",)) for h in known)
    return LabReport("down", reports, tuple(lab_actions), time.monotonic() - started)


def _stop_everything(known: list[Host], netns_names: list[str]) -> int:
    """Stop every lab process at once; returns how many there were."""
    snap = procs.snapshot()
    pids: set[int] = set()
    for host in known:
        pids |= procs.host_pids(host, snap)
    for name in netns_names:
        members = procs.in_netns(f"/var/run/netns/{name}", snap)
        pids |= procs.descendants(snap, [p.pid for p in members])
    pids |= procs.with_mounts_under(f"{HOSTS_ROOT}/", snap)
    pids.discard(os.getpid())
    survivors = procs.stop(pids)
    if survivors:
        raise LabError(f"could not stop lab processes {sorted(survivors)}; look at them with "
                       "`ps -fp PID`, kill them, then run `fab lab.down` again.")
    return len(pids)


# --- status and single hosts -------------------------------------------------------------

def status() -> list[HostState]:
    """The state of every host of the lab (empty when the lab is down)."""
    require_lab_machine()
    recorded = _recorded_hosts(_load_state())
    key = image.current_key()
    sentry_keys = sentry_image.current_keys()
    redis_key = redis_image.current_key()
    snap = procs.snapshot()

    def check(h: Host) -> HostState:
        state = hosts.check(h, snap, key)
        anchor = hosts.anchor_pid(h, snap)
        # On Sentry and Redis hosts `image` also covers their own images being current.
        if state.image and anchor is not None and sentry_image.sentry_hosts([h]):
            state = replace(state, image=sentry_image.images_current(h, anchor, sentry_keys))
        if state.image and anchor is not None and redis_image.redis_hosts([h]):
            current = hosts.image_key_of(h, anchor, redis_image.REF) == redis_key
            state = replace(state, image=current)
        return state

    return _parallel(recorded, check, HOST_WORKERS)


def _lab_host(name: str, state: dict) -> Host:
    host = find_host(name)
    if host is None or host.name not in state.get("hosts", []):
        raise LabError(f"{name} is not a host of the lab; `fab lab.status` lists them.")
    return host


def start_host(name: str, on_step: Step | None = None) -> HostReport:
    """Bring one recorded host back up, fixing only what is missing."""
    require_lab_machine()
    with _locked():
        state = _load_state()
        host = _lab_host(name, state)
        if not state.get("lab_dir"):
            raise LabError(f"{STATE_FILE} does not say where the lab key is; run `fab lab.up`.")
        pubkey, _ = client.ensure_key(Path(state["lab_dir"]))
        network.ensure_bridge()
        base = image.ensure_base_tar(on_step)
        sentry_tars = sentry_image.ensure_sentry_tars(on_step)
        redis = redis_image.ensure_redis_tar(on_step)
        return _bring_up([host], pubkey, base, sentry_tars, redis, on_step)[0]


def stop_sshd(name: str) -> bool:
    """Stop only the listening sshd of one host (to test recovery); False if it was down."""
    require_lab_machine()
    with _locked():
        return hosts.stop_sshd(_lab_host(name, _load_state()))

