"""The lab's hosts, addresses, names and inventory: pure, exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sentryfab.lab.topology import (
    BRIDGE_MAC,
    GATEWAY,
    GATEWAY_CIDR,
    MAX_SCALE_HOSTS,
    PREFIX_LEN,
    SUBNET,
    address_of,
    find_host,
    inventory,
    inventory_yaml,
    known_hosts_text,
    lab_hosts,
    mac_of,
    number_of,
    role_hosts,
    scale_hosts,
)


def test_role_hosts_in_address_order():
    assert [(h.name, h.address, h.roles) for h in role_hosts()] == [
        ("nginx-1", "10.231.0.10", ("nginx",)),
        ("web-1", "10.231.0.11", ("web",)),
        ("web-2", "10.231.0.12", ("web",)),
        ("worker-1", "10.231.0.13", ("worker", "cron")),
        ("worker-2", "10.231.0.14", ("worker",)),
        ("redis-cache-1", "10.231.0.15", ("redis-cache",)),
        ("redis-queue-1", "10.231.0.16", ("redis-queue",)),
        ("db-1", "10.231.0.17", ("db",)),
        ("db-2", "10.231.0.18", ("db",)),
        ("pgbouncer-1", "10.231.0.19", ("pgbouncer",)),
        ("backup-1", "10.231.0.20", ("backup",)),
    ]
    assert all(h.has_docker for h in role_hosts())


def test_scale_hosts_from_100_without_docker():
    hosts = scale_hosts(3)
    assert [(h.name, h.address, h.roles, h.has_docker) for h in hosts] == [
        ("scale-1", "10.231.0.100", (), False),
        ("scale-2", "10.231.0.101", (), False),
        ("scale-3", "10.231.0.102", (), False),
    ]
    assert scale_hosts(MAX_SCALE_HOSTS)[-1].address == "10.231.1.199"


def test_the_lab_subnet_and_the_bridge():
    assert (str(SUBNET), PREFIX_LEN) == ("10.231.0.0/23", 23)
    assert (GATEWAY, GATEWAY_CIDR, BRIDGE_MAC) == (
        "10.231.0.1", "10.231.0.1/23", "02:00:0a:e7:00:01")


@pytest.mark.parametrize(("i", "address", "mac", "veth"), [
    (1, "10.231.0.100", "02:00:0a:e7:00:64", "sfb-100"),
    (150, "10.231.0.249", "02:00:0a:e7:00:f9", "sfb-249"),
    (151, "10.231.1.100", "02:00:0a:e7:01:64", "sfb-356"),
    (250, "10.231.1.199", "02:00:0a:e7:01:c7", "sfb-455"),
])
def test_scale_host_names(i, address, mac, veth):
    host = scale_hosts(MAX_SCALE_HOSTS)[i - 1]
    assert (host.name, host.address, host.mac, host.veth, host.cidr, host.netns) == (
        f"scale-{i}", address, mac, veth, f"{address}/23", f"sfblab-scale-{i}")
    assert find_host(f"scale-{i}") == host


def test_numbers_addresses_and_macs():
    assert (address_of(1), address_of(255), address_of(256), address_of(510)) == (
        "10.231.0.1", "10.231.0.255", "10.231.1.0", "10.231.1.254")
    assert (number_of("10.231.0.16"), number_of("10.231.1.199")) == (16, 455)
    for bad in (0, 511, -1):
        with pytest.raises(ValueError, match="10.231.0.0/23"):
            address_of(bad)
    for bad in ("10.231.0.0", "10.231.1.255", "10.231.2.1", "10.230.0.16"):
        with pytest.raises(ValueError, match="10.231.0.0/23"):
            number_of(bad)
    assert mac_of("10.231.1.200") == "02:00:0a:e7:01:c8"


@pytest.mark.parametrize("count", [-1, MAX_SCALE_HOSTS + 1])
def test_scale_count_is_bounded(count):
    assert MAX_SCALE_HOSTS == 250
    with pytest.raises(ValueError, match="between 0 and 250, got"):
        scale_hosts(count)


def test_names_of_a_host():
    host = find_host("redis-queue-1")
    assert host is not None
    assert (host.netns, host.netns_path, host.veth, host.cidr, host.mac) == (
        "sfblab-redis-queue-1", "/var/run/netns/sfblab-redis-queue-1", "sfb-16",
        "10.231.0.16/23", "02:00:0a:e7:00:10")
    assert host.paths.root == Path("/var/lib/sentryfab-lab/hosts/redis-queue-1")
    assert host.paths.authorized_keys == Path(
        "/var/lib/sentryfab-lab/hosts/redis-queue-1/root/.ssh/authorized_keys")


def test_link_names_fit_the_kernel_and_everything_is_unique():
    hosts = lab_hosts(MAX_SCALE_HOSTS)
    assert len(hosts) == 11 + 250
    assert all(len(h.veth) <= 15 for h in hosts)
    for attribute in ("name", "address", "veth", "netns", "mac", "number"):
        values = [getattr(h, attribute) for h in hosts]
        assert len(set(values)) == len(values), attribute
    # Every host in the subnet, none on the bridge's address or the blackhole a test uses.
    assert all(h.address in {str(a) for a in SUBNET.hosts()} for h in hosts)
    assert not {GATEWAY, "10.231.0.250"} & {h.address for h in hosts}
    assert BRIDGE_MAC not in {h.mac for h in hosts}
    # Each MAC spells its host's address: locally administered, unicast.
    for h in hosts:
        first, second, *rest = h.mac.split(":")
        assert (first, second) == ("02", "00")
        assert ".".join(str(int(b, 16)) for b in rest) == h.address


def test_find_host():
    assert find_host("scale-150").address == "10.231.0.249"
    assert find_host("scale-250").address == "10.231.1.199"
    assert find_host("scale-251") is None
    assert find_host("web-9") is None


def test_bind_mounts_give_each_host_its_own_dirs():
    paths = find_host("web-1").paths
    assert [(str(src), dst) for src, dst in paths.binds()] == [
        ("/var/lib/sentryfab-lab/hosts/web-1/root", "/root"),
        ("/var/lib/sentryfab-lab/hosts/web-1/etc", "/etc/sentryfab"),
        ("/var/lib/sentryfab-lab/hosts/web-1/varlib", "/var/lib/sentryfab"),
        ("/var/lib/sentryfab-lab/hosts/web-1/varlog", "/var/log/sentryfab"),
        ("/var/lib/sentryfab-lab/hosts/web-1/tmp", "/tmp"),
    ]


EXPECTED_INVENTORY = """\
# Generated by `fab lab.up` — the local lab. Do not edit; re-run lab.up.
# key_file and known_hosts are relative to this file's folder.
cluster: lab
ssh:
  user: root
  port: 22
  key_file: id_ed25519
  known_hosts: known_hosts
  connect_timeout: 5
secrets: secrets.yaml
sentry:
  sample_data: false
  filestore:
    path: /srv/sentry-files
    shared: true
roles:
  web: {image: lab/sentry, tag: 9.1.2, processes: 2, threads: 4, health_timeout: 120, \
keep_images: 20}
  worker: {image: lab/sentry, tag: 9.1.2, processes: 2, concurrency: 1, keep_images: 20, \
visibility_timeout: 60}
  cron: {image: lab/sentry, tag: 9.1.2, keep_images: 20}
  redis-cache: {image: lab/redis, tag: '6', maxmemory: 64mb}
  redis-queue: {image: lab/redis, tag: '6'}
  db: {image: lab/base, tag: '1', synchronous: true}
  pgbouncer: {image: lab/base, tag: '1'}
  nginx: {image: lab/base, tag: '1'}
  backup: {image: lab/base, tag: '1', archive_timeout: 10, process_max: 1}
hosts:
  nginx-1: {address: 10.231.0.10, roles: [nginx]}
  web-1: {address: 10.231.0.11, roles: [web]}
  web-2: {address: 10.231.0.12, roles: [web]}
  worker-1: {address: 10.231.0.13, roles: [worker, cron]}
  worker-2: {address: 10.231.0.14, roles: [worker]}
  redis-cache-1: {address: 10.231.0.15, roles: [redis-cache]}
  redis-queue-1: {address: 10.231.0.16, roles: [redis-queue]}
  db-1: {address: 10.231.0.17, roles: [db]}
  db-2: {address: 10.231.0.18, roles: [db]}
  pgbouncer-1: {address: 10.231.0.19, roles: [pgbouncer]}
  backup-1: {address: 10.231.0.20, roles: [backup]}
  scale-1: {address: 10.231.0.100, roles: []}
"""


def test_inventory_yaml_exact():
    assert inventory_yaml(lab_hosts(1)) == EXPECTED_INVENTORY


def test_inventory_yaml_loads_back_to_the_data():
    hosts = lab_hosts(5)
    data = yaml.safe_load(inventory_yaml(hosts))
    assert data == inventory(hosts)
    assert data["roles"]["db"]["tag"] == "1"  # a string, not the integer 1
    assert data["roles"]["web"]["tag"] == "9.1.2"  # the real Sentry
    assert list(data["hosts"])[-1] == "scale-5"


def test_known_hosts_drops_key_comments():
    text = known_hosts_text({
        "10.231.0.10": "ssh-ed25519 AAAAC3Nza1 root@nginx-1\n",
        "10.231.0.100": "ssh-ed25519 AAAAC3Nza2",
    })
    assert text == "10.231.0.10 ssh-ed25519 AAAAC3Nza1\n10.231.0.100 ssh-ed25519 AAAAC3Nza2\n"
