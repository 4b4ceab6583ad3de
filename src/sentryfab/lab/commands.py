"""Pure builders of the lab's commands (argv lists) and of its generated config texts.

Nothing here runs anything: hosts.py, image.py and lab.py execute these, and the
unit tests compare them as exact strings.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from sentryfab.lab.topology import Host, HostPaths

# A fixed PATH for everything the lab starts: sudo or a login shell may leave out the
# sbin directories where ip, sshd and dockerd live.
SANE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The base image's PATH puts PostgreSQL's server tools (initdb, postgres) first.
IMAGE_PATH = "/usr/lib/postgresql/15/bin:" + SANE_PATH
# Label on the imported image naming the cached tar it came from, so a changed
# package list re-imports instead of silently keeping a stale image.
BASE_LABEL = "org.sentryfab.lab.base"
SSHD = "/usr/sbin/sshd"


# --- ip: bridge, namespaces, veths ------------------------------------------------------

def _ip(netns: str | None, *args: str) -> list[str]:
    return ["ip", *(["-n", netns] if netns else []), *args]


def bridge_add(bridge: str, mac: str) -> list[str]:
    """Create the lab bridge with a fixed MAC (else it takes its ports' lowest, which changes)."""
    return _ip(None, "link", "add", bridge, "address", mac, "type", "bridge")


def addr_add(cidr: str, dev: str, netns: str | None = None) -> list[str]:
    """Give `dev` an address (inside `netns` when given)."""
    return _ip(netns, "addr", "add", cidr, "dev", dev)


def addr_del(cidr: str, dev: str, netns: str | None = None) -> list[str]:
    """Take an address off `dev` (inside `netns` when given)."""
    return _ip(netns, "addr", "del", cidr, "dev", dev)


def link_up(dev: str, netns: str | None = None) -> list[str]:
    """Bring `dev` up (inside `netns` when given)."""
    return _ip(netns, "link", "set", dev, "up")


def link_del(dev: str) -> list[str]:
    """Delete a link of the machine (a veth takes its peer with it)."""
    return _ip(None, "link", "del", dev)


def addr_show(dev: str | None, netns: str | None = None) -> list[str]:
    """JSON description of `dev` (or of every link): flags and addresses."""
    return _ip(netns, "-j", "addr", "show", *(["dev", dev] if dev else []))


def parse_addr_show(text: str) -> dict[str, tuple[bool, frozenset[str]]]:
    """{device: (administratively up, IPv4 CIDRs)} from `ip -j addr show` output."""
    links: dict[str, tuple[bool, frozenset[str]]] = {}
    for link in json.loads(text or "[]"):
        cidrs = frozenset(
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("family") == "inet"
        )
        links[link["ifname"]] = ("UP" in link.get("flags", []), cidrs)
    return links


def other_prefix_lengths(cidrs: frozenset[str], wanted: str) -> list[str]:
    """The CIDRs among `cidrs` with the address of `wanted` and another prefix length: what a
    lab made with an older subnet left on a link (they add routes of their own)."""
    address = wanted.split("/", 1)[0]
    return sorted(c for c in cidrs if c != wanted and c.split("/", 1)[0] == address)


def netns_add(netns: str) -> list[str]:
    """Create a named network namespace (bind-mounted under /var/run/netns)."""
    return _ip(None, "netns", "add", netns)


def netns_del(netns: str) -> list[str]:
    """Remove a named network namespace."""
    return _ip(None, "netns", "del", netns)


def netns_list() -> list[str]:
    """Names of the machine's network namespaces, one per line."""
    return _ip(None, "netns", "list")


def veth_add(host: Host) -> list[str]:
    """The host's veth pair: our end on the machine, `eth0` inside the host's netns."""
    return _ip(None, "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
               "address", host.mac, "netns", host.netns)


def veth_attach(host: Host, bridge: str) -> list[str]:
    """Plug the host's veth into the bridge and bring it up."""
    return _ip(None, "link", "set", host.veth, "master", bridge, "up")


def iptables_forward(op: str, bridge: str) -> list[str]:
    """Check (-C), insert (-I) or delete (-D) an ACCEPT for traffic between bridge ports.

    Needed only where br_netfilter sends bridged frames through a FORWARD chain whose
    policy is DROP (as a system Docker engine sets it).
    """
    if op not in ("-C", "-I", "-D"):
        raise ValueError(f"unknown iptables operation {op!r}")
    return ["iptables", "-w", op, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]


# --- entering a host ---------------------------------------------------------------------

def init_command(host: Host) -> list[str]:
    """Start a fresh host: join its netns, take a new mount + UTS namespace, run init.sh.

    nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup mounts
    dockerd needs ("Devices cgroup isn't mounted").
    """
    return [
        "nsenter", f"--net={host.netns_path}", "--",
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        "sh", str(host.paths.init_script),
    ]


def enter_command(host: Host, pid: int, argv: Sequence[str]) -> list[str]:
    """Run `argv` inside a running host, in the namespaces of its process `pid`."""
    return [
        "nsenter", f"--net={host.netns_path}", f"--mount=/proc/{pid}/ns/mnt",
        f"--uts=/proc/{pid}/ns/uts", "--", *argv,
    ]


def sshd_command(paths: HostPaths) -> list[str]:
    """The host's sshd, in the foreground, logging to its own file."""
    return [SSHD, "-D", "-f", str(paths.sshd_config), "-E", str(paths.sshd_log)]


def dockerd_command(paths: HostPaths) -> list[str]:
    """The host's Docker engine: own data root; no iptables or bridge (host networking)."""
    return [
        "dockerd", "--data-root", str(paths.docker), "--iptables=false", "--bridge=none",
        "--storage-driver=overlay2",
    ]


def ssh_keygen(path: Path, comment: str) -> list[str]:
    """A new passphrase-less ed25519 key at `path` (+ .pub)."""
    return ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]


def ssh_command(key: Path, known_hosts: Path, address: str, command: str | None = None
                ) -> list[str]:
    """An ssh into a lab host with the lab's key, checking its host key as in production."""
    return [
        "ssh", "-i", str(key), "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
        f"root@{address}", *([command] if command else []),
    ]


# --- docker (run through enter_command) ---------------------------------------------------

def docker_version() -> list[str]:
    """Asks the engine for its version: succeeds only once dockerd answers."""
    return ["docker", "version", "--format", "{{.Server.Version}}"]


def docker_image_label(ref: str) -> list[str]:
    """Prints the base-image label of `ref` (fails if the image is absent)."""
    return ["docker", "image", "inspect", "--format",
            '{{index .Config.Labels "' + BASE_LABEL + '"}}', ref]


def docker_import(ref: str, key: str, path: str = IMAGE_PATH) -> list[str]:
    """Import a root file system tar from stdin as image `ref`, labelled with its cache key."""
    return ["docker", "import", "--change", f"ENV PATH={path}",
            "--change", f"LABEL {BASE_LABEL}={key}", "-", ref]


# --- image build ---------------------------------------------------------------------------

def debootstrap(suite: str, packages: Sequence[str], rootfs: Path, mirror: str) -> list[str]:
    """A minimal Debian root file system with the lab's services in it."""
    return ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
            str(rootfs), mirror]


def tar_rootfs(rootfs: Path, out: Path) -> list[str]:
    """Pack a root file system; numeric owners, since its users are not the machine's."""
    return ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(out), "."]


# --- generated texts -----------------------------------------------------------------------

def sshd_config_text(host: Host) -> str:
    """sshd_config of one host: its own address, host key and log; key-only root login."""
    return "\n".join([
        f"# Generated by sentryfab lab for {host.name}. Do not edit; re-run lab.up.",
        f"ListenAddress {host.address}",
        "Port 22",
        f"HostKey {host.paths.hostkey}",
        # /run is the host's private tmpfs, so this pid file is the host's own.
        "PidFile /run/sentryfab-sshd.pid",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PrintMotd no",
        # Fan-out benchmarks open many connections and channels at once.
        "MaxStartups 100",
        "MaxSessions 64",
        # In-process SFTP: uploads work without the sftp-server package.
        "Subsystem sftp internal-sftp",
        "",
    ])


def init_script_text(host: Host) -> str:
    """init.sh, run in the host's fresh namespaces: name, private dirs, dockerd, then sshd."""
    q = shlex.quote
    paths = host.paths
    lines = [
        "#!/bin/sh",
        f"# Generated by sentryfab lab for {host.name}: runs inside its own network, mount",
        "# and UTS namespaces. Do not edit; re-run lab.up.",
        "set -e",
        f"PATH={SANE_PATH}",
        "export PATH",
        f"hostname {q(host.name)}",
    ]
    binds = host.binds()
    lines.append("mkdir -p " + " ".join(q(target) for _, target in binds))
    lines += [f"mount --bind {q(str(source))} {q(target)}" for source, target in binds]
    lines += [
        # A private /run: each host's docker.sock, sshd pid file and privsep dir.
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        "mkdir -p /run/sshd",
    ]
    if host.has_docker:
        lines.append(f"{shlex.join(dockerd_command(paths))} </dev/null "
                     f">>{q(str(paths.dockerd_log))} 2>&1 &")
    lines.append(f"exec {shlex.join(sshd_command(paths))}")
    return "\n".join(lines) + "\n"
