"""The lab's hosts, their roles, addresses and state paths, and the inventory built from them.

Pure: no I/O. Everything here is a function of the host list, so the lab can be
described, tested and torn down without touching the machine.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

BRIDGE = "sfblab0"  # kernel link names are at most 15 characters
#: The lab's one subnet: the bridge, every host's eth0 and their routes use its prefix length.
#: Role hosts and the bridge sit in its first /24 as they always have; scale hosts take
#: .100-.249 of each /24 in turn (scale_number), so 10.231.0.250 and up stay free: a test
#: uses 10.231.0.250 as an address on the bridge that nobody answers.
SUBNET = ipaddress.IPv4Network("10.231.0.0/23")
PREFIX_LEN = SUBNET.prefixlen
NETNS_PREFIX = "sfblab-"  # our own prefix, so `down` can find leftovers without a state file
VETH_PREFIX = "sfb-"
STATE_ROOT = Path("/var/lib/sentryfab-lab")
STATE_FILE = STATE_ROOT / "lab.json"
HOSTS_ROOT = STATE_ROOT / "hosts"

GATEWAY_NUMBER = 1  # the machine's own address on the bridge
ROLE_BASE_NUMBER = 10
SCALE_BASE_OCTET = 100  # scale hosts use last bytes .100 .. .249 of each /24
SCALE_PER_BLOCK = 150
MAX_SCALE_HOSTS = 250  # 10.231.0.100-249, then 10.231.1.100-199


def address_of(number: int) -> str:
    """The lab address `number` places after the subnet's own address (1: the bridge)."""
    if not 0 < number < SUBNET.num_addresses - 1:
        raise ValueError(f"{number} is not a host number of the lab subnet {SUBNET}")
    return str(SUBNET.network_address + number)


def number_of(address: str) -> int:
    """Where `address` is in the lab subnet: the inverse of address_of."""
    number = int(ipaddress.IPv4Address(address)) - int(SUBNET.network_address)
    if not 0 < number < SUBNET.num_addresses - 1:
        raise ValueError(f"{address} is not a host address of the lab subnet {SUBNET}")
    return number


def mac_of(address: str) -> str:
    """A fixed, locally administered MAC (02:00) followed by the four bytes of the address."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def veth_of(number: int) -> str:
    """The machine's end of a host's veth, named by its host number (at most 15 characters)."""
    return f"{VETH_PREFIX}{number}"


def scale_number(i: int) -> int:
    """Host number of scale-i (1-based): .100-.249 of the first /24, then of the next."""
    block, offset = divmod(i - 1, SCALE_PER_BLOCK)
    return 256 * block + SCALE_BASE_OCTET + offset


GATEWAY = address_of(GATEWAY_NUMBER)
GATEWAY_CIDR = f"{GATEWAY}/{PREFIX_LEN}"
BRIDGE_MAC = mac_of(GATEWAY)

IMAGE = "lab/base"
IMAGE_TAG = "1"
#: The real Sentry, built from PyPI into lab/sentry:<version> (lab/sentry_image.py).
SENTRY_IMAGE = "lab/sentry"
SENTRY_TAG = "9.1.2"
SENTRY_ROLES = ("web", "worker", "cron")
#: Redis 6 for Sentry's Redis roles (lab/redis_image.py): Sentry 9's digest scripts assign
#: Lua globals, which Redis 7 (bookworm's, in lab/base:1) refuses.
REDIS_IMAGE = "lab/redis"
REDIS_TAG = "6"
REDIS_ROLES = ("redis-cache", "redis-queue")

# Role hosts in address order: name, roles. The order is the contract for addresses.
ROLE_HOSTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nginx-1", ("nginx",)),
    ("web-1", ("web",)),
    ("web-2", ("web",)),
    ("worker-1", ("worker", "cron")),
    ("worker-2", ("worker",)),
    ("redis-cache-1", ("redis-cache",)),
    ("redis-queue-1", ("redis-queue",)),
    ("db-1", ("db",)),
    ("db-2", ("db",)),
    ("pgbouncer-1", ("pgbouncer",)),
    ("backup-1", ("backup",)),
)

# Role settings of the lab inventory, in the order the inventory lists them.
ROLE_SETTINGS: tuple[tuple[str, dict[str, object]], ...] = (
    # A real Sentry web process answers /_health/ about 10 s after it starts, longer while
    # its neighbours start on the same two cores.
    # Every release made in the lab derives from the real images lab.up imported
    # (lab/sentry:9.1.1, 9.1.2): keep them all rather than prune the base of the next one.
    ("web", {"processes": 2, "threads": 4, "health_timeout": 120, "keep_images": 20}),
    # One Celery process each: a lab worker drains about 15 events/s.
    # A killed worker's event is handed to another after 60 s (production: 300 s).
    ("worker", {"processes": 2, "concurrency": 1, "keep_images": 20, "visibility_timeout": 60}),
    ("cron", {"keep_images": 20}),
    # Small, so that a test can fill it past maxmemory in seconds and watch it evict.
    ("redis-cache", {"maxmemory": "64mb"}),
    ("redis-queue", {}),
    # A commit returns once the replica has it: a failover loses nothing acknowledged.
    ("db", {"synchronous": True}),
    ("pgbouncer", {}),
    ("nginx", {}),
    # A WAL segment reaches the repository at most 10 s after its first write: the disaster
    # test's loss window stays short.
    ("backup", {"archive_timeout": 10, "process_max": 1}),
)

#: One folder of the machine bind-mounted at SHARED_FILES into every host with a Sentry role:
#: the lab's stand-in for the NFS share a production cluster mounts there.
SHARED_FILES_SOURCE = STATE_ROOT / "shared-files"
SHARED_FILES = "/srv/sentry-files"

SENTRY_SETTINGS: dict[str, object] = {
    "sample_data": False,
    "filestore": {"path": SHARED_FILES, "shared": True},
}

SSH_SETTINGS: dict[str, object] = {
    "user": "root",
    "port": 22,
    "key_file": "id_ed25519",
    "known_hosts": "known_hosts",
    "connect_timeout": 5,
}

INVENTORY_HEADER = (
    "# Generated by `fab lab.up` — the local lab. Do not edit; re-run lab.up.\n"
    "# key_file and known_hosts are relative to this file's folder.\n"
)


@dataclass(frozen=True)
class HostPaths:
    """Where one host's state lives on the machine."""

    root: Path

    @property
    def hostkey(self) -> Path:
        return self.root / "hostkey"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def init_script(self) -> Path:
        return self.root / "init.sh"

    @property
    def home(self) -> Path:
        return self.root / "root"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "root" / ".ssh" / "authorized_keys"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def varlib(self) -> Path:
        return self.root / "varlib"

    @property
    def varlog(self) -> Path:
        return self.root / "varlog"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def docker(self) -> Path:
        return self.root / "docker"

    def binds(self) -> list[tuple[Path, str]]:
        """(state folder, path inside the host) pairs that init.sh bind-mounts.

        A host gets its own home (so the machine's ~/.bashrc does not slow every SSH
        command), its own sentryfab config, data and audit log, and its own /tmp.
        """
        return [
            (self.home, "/root"),
            (self.etc, "/etc/sentryfab"),
            (self.varlib, "/var/lib/sentryfab"),
            (self.varlog, "/var/log/sentryfab"),
            (self.tmp, "/tmp"),
        ]

    @property
    def init_log(self) -> Path:
        return self.root / "init.log"

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def dockerd_log(self) -> Path:
        return self.root / "dockerd.log"


@dataclass(frozen=True)
class Host:
    """One lab host: a network + mount + UTS namespace with its own sshd (and dockerd)."""

    name: str
    address: str
    roles: tuple[str, ...]
    has_docker: bool

    @property
    def number(self) -> int:
        """Where the address is in the lab subnet; unique in the lab, so it names the veth."""
        return number_of(self.address)

    @property
    def mac(self) -> str:
        """A fixed MAC for eth0: a re-created veth keeps it, so no ARP cache goes stale."""
        return mac_of(self.address)

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.name

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"

    @property
    def veth(self) -> str:
        return veth_of(self.number)

    @property
    def cidr(self) -> str:
        return f"{self.address}/{PREFIX_LEN}"

    @property
    def paths(self) -> HostPaths:
        return HostPaths(HOSTS_ROOT / self.name)

    def binds(self) -> list[tuple[Path, str]]:
        """What init.sh bind-mounts: the host's own folders, and on a Sentry host the
        shared files folder."""
        shared = [(SHARED_FILES_SOURCE, SHARED_FILES)] if set(self.roles) & set(SENTRY_ROLES) \
            else []
        return self.paths.binds() + shared


def role_hosts() -> list[Host]:
    """The fixed Sentry-shaped hosts, each with sshd and a Docker engine."""
    return [
        Host(name, address_of(ROLE_BASE_NUMBER + i), roles, has_docker=True)
        for i, (name, roles) in enumerate(ROLE_HOSTS)
    ]


def scale_hosts(count: int) -> list[Host]:
    """`scale-1..scale-N`: sshd only, for fan-out benchmarks."""
    if not 0 <= count <= MAX_SCALE_HOSTS:
        raise ValueError(f"scale hosts must be between 0 and {MAX_SCALE_HOSTS}, got {count}")
    return [
        Host(f"scale-{i}", address_of(scale_number(i)), (), has_docker=False)
        for i in range(1, count + 1)
    ]


def lab_hosts(scale: int = 0) -> list[Host]:
    """Every host of a lab with `scale` scale hosts, role hosts first."""
    return role_hosts() + scale_hosts(scale)


SECRETS_FILE = "secrets.yaml"  # beside hosts.yaml, made once by `up`, kept by `down`


def find_host(name: str) -> Host | None:
    """The host called `name` in the largest possible lab, or None."""
    return next((h for h in lab_hosts(MAX_SCALE_HOSTS) if h.name == name), None)


def inventory(hosts: list[Host]) -> dict[str, object]:
    """The lab inventory as data, in the shape of hosts.yaml."""
    roles = {role: {**_image(role), **extra} for role, extra in ROLE_SETTINGS}
    return {
        "cluster": "lab",
        "ssh": dict(SSH_SETTINGS),
        "secrets": SECRETS_FILE,
        # Every accepted event stored, none sampled away: lab.verify counts them one by one.
        "sentry": dict(SENTRY_SETTINGS),
        "roles": roles,
        "hosts": {h.name: {"address": h.address, "roles": list(h.roles)} for h in hosts},
    }


def _image(role: str) -> dict[str, object]:
    """The lab image a role runs."""
    if role in SENTRY_ROLES:
        return {"image": SENTRY_IMAGE, "tag": SENTRY_TAG}
    if role in REDIS_ROLES:
        return {"image": REDIS_IMAGE, "tag": REDIS_TAG}
    return {"image": IMAGE, "tag": IMAGE_TAG}


def _flow(value: object) -> str:
    """One YAML value on one line (flow style)."""
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=math.inf).strip()


def inventory_yaml(hosts: list[Host]) -> str:
    """hosts.yaml text: block style for sections, one flow-style line per role and host."""
    data = inventory(hosts)
    head = {"cluster": data["cluster"], "ssh": data["ssh"], "secrets": data["secrets"],
            "sentry": data["sentry"]}
    lines = [INVENTORY_HEADER + yaml.safe_dump(head, sort_keys=False).rstrip("\n")]
    for section in ("roles", "hosts"):
        lines.append(f"{section}:")
        entries: dict[str, object] = data[section]  # type: ignore[assignment]
        lines.extend(f"  {name}: {_flow(value)}" for name, value in entries.items())
    return "\n".join(lines) + "\n"


def known_hosts_text(keys: dict[str, str]) -> str:
    """known_hosts lines `ADDRESS TYPE BASE64` from {address: public key line}."""
    # A .pub line ends with a comment; known_hosts wants only type and key.
    return "".join(f"{address} {' '.join(key.split()[:2])}\n" for address, key in keys.items())
