"""The lab's command builders, generated texts and parsers: pure, exact."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from sentryfab.lab import commands as cmd
from sentryfab.lab.image import cache_key, parse_mirror
from sentryfab.lab.topology import GATEWAY_CIDR, find_host

WEB1 = find_host("web-1")
SCALE1 = find_host("scale-1")
H = "/var/lib/sentryfab-lab/hosts/web-1"


def test_ip_builders():
    assert cmd.bridge_add("sfblab0", "02:00:0a:e7:00:01") == [
        "ip", "link", "add", "sfblab0", "address", "02:00:0a:e7:00:01", "type", "bridge"]
    assert cmd.veth_add(WEB1) == [
        "ip", "link", "add", "sfb-11", "type", "veth", "peer", "name", "eth0",
        "address", "02:00:0a:e7:00:0b", "netns", "sfblab-web-1"]
    assert cmd.veth_attach(WEB1, "sfblab0") == [
        "ip", "link", "set", "sfb-11", "master", "sfblab0", "up"]
    assert cmd.addr_add(WEB1.cidr, "eth0", "sfblab-web-1") == [
        "ip", "-n", "sfblab-web-1", "addr", "add", "10.231.0.11/23", "dev", "eth0"]
    assert cmd.addr_add(GATEWAY_CIDR, "sfblab0") == [
        "ip", "addr", "add", "10.231.0.1/23", "dev", "sfblab0"]
    assert cmd.addr_del("10.231.0.11/24", "eth0", "sfblab-web-1") == [
        "ip", "-n", "sfblab-web-1", "addr", "del", "10.231.0.11/24", "dev", "eth0"]
    assert cmd.addr_del("10.231.0.1/24", "sfblab0") == [
        "ip", "addr", "del", "10.231.0.1/24", "dev", "sfblab0"]
    assert cmd.link_up("lo", "sfblab-web-1") == ["ip", "-n", "sfblab-web-1", "link", "set",
                                                 "lo", "up"]
    assert cmd.addr_show(None, "sfblab-web-1") == ["ip", "-n", "sfblab-web-1", "-j", "addr",
                                                   "show"]
    assert cmd.addr_show("sfblab0") == ["ip", "-j", "addr", "show", "dev", "sfblab0"]
    assert cmd.netns_add("sfblab-web-1") == ["ip", "netns", "add", "sfblab-web-1"]
    assert cmd.netns_del("sfblab-web-1") == ["ip", "netns", "del", "sfblab-web-1"]
    assert cmd.link_del("sfb-11") == ["ip", "link", "del", "sfb-11"]
    scale = find_host("scale-151")
    assert cmd.veth_add(scale) == [
        "ip", "link", "add", "sfb-356", "type", "veth", "peer", "name", "eth0",
        "address", "02:00:0a:e7:01:64", "netns", "sfblab-scale-151"]
    assert cmd.addr_add(scale.cidr, "eth0", scale.netns) == [
        "ip", "-n", "sfblab-scale-151", "addr", "add", "10.231.1.100/23", "dev", "eth0"]


def test_addresses_a_lab_of_another_prefix_length_left():
    # A lab brought up when the subnet was a /24: its /24 addresses go, nothing else does.
    left = frozenset({"10.231.0.1/24", "10.231.0.1/23", "192.0.2.1/24"})
    assert cmd.other_prefix_lengths(left, "10.231.0.1/23") == ["10.231.0.1/24"]
    assert cmd.other_prefix_lengths(frozenset({"10.231.0.11/24"}), "10.231.0.11/23") == [
        "10.231.0.11/24"]
    assert cmd.other_prefix_lengths(frozenset({"10.231.0.110/23"}), "10.231.0.11/23") == []
    assert cmd.other_prefix_lengths(frozenset(), "10.231.0.11/23") == []


def test_iptables_forward():
    assert cmd.iptables_forward("-C", "sfblab0") == [
        "iptables", "-w", "-C", "FORWARD", "-i", "sfblab0", "-o", "sfblab0", "-j", "ACCEPT"]
    with pytest.raises(ValueError):
        cmd.iptables_forward("-F", "sfblab0")


def test_init_command_uses_nsenter_not_ip_netns_exec():
    assert cmd.init_command(WEB1) == [
        "nsenter", "--net=/var/run/netns/sfblab-web-1", "--",
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        "sh", f"{H}/init.sh"]


def test_enter_command_joins_a_running_host():
    assert cmd.enter_command(WEB1, 4242, ["docker", "info"]) == [
        "nsenter", "--net=/var/run/netns/sfblab-web-1", "--mount=/proc/4242/ns/mnt",
        "--uts=/proc/4242/ns/uts", "--", "docker", "info"]


def test_daemons():
    assert cmd.sshd_command(WEB1.paths) == [
        "/usr/sbin/sshd", "-D", "-f", f"{H}/sshd_config", "-E", f"{H}/sshd.log"]
    assert cmd.dockerd_command(WEB1.paths) == [
        "dockerd", "--data-root", f"{H}/docker", "--iptables=false", "--bridge=none",
        "--storage-driver=overlay2"]


def test_keys_and_ssh():
    assert cmd.ssh_keygen(Path("/r/lab/id_ed25519"), "sentryfab-lab") == [
        "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sentryfab-lab", "-f",
        "/r/lab/id_ed25519"]
    assert cmd.ssh_command(Path("/r/lab/id_ed25519"), Path("/r/lab/known_hosts"),
                           "10.231.0.11", "uptime") == [
        "ssh", "-i", "/r/lab/id_ed25519", "-o", "IdentitiesOnly=yes",
        "-o", "UserKnownHostsFile=/r/lab/known_hosts", "-o", "StrictHostKeyChecking=yes",
        "root@10.231.0.11", "uptime"]
    assert cmd.ssh_command(Path("k"), Path("kh"), "10.231.0.11")[-1] == "root@10.231.0.11"


def test_docker_builders():
    assert cmd.docker_version() == ["docker", "version", "--format", "{{.Server.Version}}"]
    assert cmd.docker_image_label("lab/base:1") == [
        "docker", "image", "inspect", "--format",
        '{{index .Config.Labels "org.sentryfab.lab.base"}}', "lab/base:1"]
    assert cmd.docker_import("lab/base:1", "abc123") == [
        "docker", "import",
        "--change", "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:"
                    "/usr/sbin:/usr/bin:/sbin:/bin",
        "--change", "LABEL org.sentryfab.lab.base=abc123", "-", "lab/base:1"]


def test_image_build_builders():
    assert cmd.debootstrap("bookworm", ["redis-server", "curl"], Path("/c/build"),
                           "http://deb.debian.org/debian") == [
        "debootstrap", "--variant=minbase", "--include=redis-server,curl", "bookworm",
        "/c/build", "http://deb.debian.org/debian"]
    assert cmd.tar_rootfs(Path("/c/build"), Path("/c/base.tar")) == [
        "tar", "--numeric-owner", "-C", "/c/build", "-cf", "/c/base.tar", "."]


def test_sshd_config_text():
    assert cmd.sshd_config_text(WEB1) == f"""\
# Generated by sentryfab lab for web-1. Do not edit; re-run lab.up.
ListenAddress 10.231.0.11
Port 22
HostKey {H}/hostkey
PidFile /run/sentryfab-sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
MaxStartups 100
MaxSessions 64
Subsystem sftp internal-sftp
"""


def test_init_script_of_a_scale_host():
    s = "/var/lib/sentryfab-lab/hosts/scale-1"
    assert cmd.init_script_text(SCALE1) == f"""\
#!/bin/sh
# Generated by sentryfab lab for scale-1: runs inside its own network, mount
# and UTS namespaces. Do not edit; re-run lab.up.
set -e
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
hostname scale-1
mkdir -p /root /etc/sentryfab /var/lib/sentryfab /var/log/sentryfab /tmp
mount --bind {s}/root /root
mount --bind {s}/etc /etc/sentryfab
mount --bind {s}/varlib /var/lib/sentryfab
mount --bind {s}/varlog /var/log/sentryfab
mount --bind {s}/tmp /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -f {s}/sshd_config -E {s}/sshd.log
"""


def test_init_script_of_a_role_host_starts_dockerd_before_sshd():
    lines = cmd.init_script_text(WEB1).splitlines()
    assert lines[-2] == (
        f"dockerd --data-root {H}/docker --iptables=false --bridge=none "
        f"--storage-driver=overlay2 </dev/null >>{H}/dockerd.log 2>&1 &")
    assert lines[-1] == f"exec /usr/sbin/sshd -D -f {H}/sshd_config -E {H}/sshd.log"
    # The private /run comes before any daemon: else every dockerd shares docker.sock.
    assert lines.index("mount -t tmpfs -o mode=0755 tmpfs /run") < len(lines) - 2
    for line in lines:
        shlex.split(line, comments=True)  # every line is valid shell quoting


def test_parse_addr_show():
    text = json.dumps([
        {"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"],
         "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8},
                       {"family": "inet6", "local": "::1", "prefixlen": 128}]},
        {"ifname": "eth0", "flags": ["BROADCAST", "MULTICAST"], "addr_info": [{}]},
    ])
    assert cmd.parse_addr_show(text) == {
        "lo": (True, frozenset({"127.0.0.1/8"})),
        "eth0": (False, frozenset()),
    }
    assert cmd.parse_addr_show("") == {}


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_parse_mirror_deb822_takes_the_main_archive():
    assert parse_mirror([("debian.sources", DEB822)]) == "http://deb.debian.org/debian"


def test_parse_mirror_one_line_format_with_options_and_comments():
    text = """\
# deb http://old.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://security.example/debian-security bookworm-security main
deb [arch=amd64] http://mirror.example/debian bookworm main contrib
"""
    assert parse_mirror([("sources.list", text)]) == "http://mirror.example/debian"


def test_parse_mirror_skips_disabled_and_other_suites():
    disabled = "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n"
    other = "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
    assert parse_mirror([("a.sources", disabled), ("b.list", other)]) is None
    assert parse_mirror([("b.list", other), ("debian.sources", DEB822)]) == (
        "http://deb.debian.org/debian")


def test_cache_key_changes_with_what_goes_in():
    key = cache_key("bookworm", ["redis-server", "curl"], "http://deb.debian.org/debian")
    assert len(key) == 12
    assert key == cache_key("bookworm", ["curl", "redis-server"], "http://deb.debian.org/debian")
    assert key != cache_key("bookworm", ["curl"], "http://deb.debian.org/debian")
    assert key != cache_key("trixie", ["redis-server", "curl"], "http://deb.debian.org/debian")
    assert key != cache_key("bookworm", ["redis-server", "curl"], "http://mirror.example/debian")
