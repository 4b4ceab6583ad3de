"""Inventory loading and validation: every problem at once, each with its place and a hint."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from sentryfab import inventory
from sentryfab.errors import InventoryError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """\
cluster: t
ssh: {user: root, key_file: id_ed25519, known_hosts: kh}
hosts:
  web-1: {address: 10.0.0.1, roles: [web]}
  worker-1: {address: 10.0.0.2, roles: [worker, cron]}
  redis-1: {address: 10.0.0.3, roles: [redis-cache, redis-queue]}
  db-1: {address: db1.example.net, port: 2222, user: ops, roles: [db, pgbouncer]}
"""


#: Appended to inventories without a `sentry:` section: most tests here are about other
#: rules, and an inventory with two Sentry hosts must declare shared files (last, so the
#: line numbers in the expected messages stay).
SHARED_FILES = "sentry: {filestore: {shared: true}}\n"


def _parses(text: str) -> bool:
    try:
        return isinstance(yaml.safe_load(text), dict)
    except yaml.YAMLError:
        return False


@pytest.fixture
def write_inventory(write_inventory):
    def write(text: str, name: str = "hosts.yaml"):
        text = textwrap.dedent(text)
        if not re.search(r"^sentry:", text, re.M) and _parses(text):
            text = text.rstrip("\n") + "\n" + SHARED_FILES
        return write_inventory(text, name)

    return write


def problems(write_inventory, text: str) -> list[str]:
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(text))
    return e.value.problems


def test_minimal_inventory_loads_with_types_and_resolved_paths(write_inventory):
    path = write_inventory(MINIMAL)
    inv = inventory.load(path)
    assert inv.cluster == "t"
    assert [h.name for h in inv.hosts] == ["web-1", "worker-1", "redis-1", "db-1"]
    db = inv.host("db-1")
    assert (db.address, db.port, db.user, db.roles) == ("db1.example.net", 2222, "ops",
                                                         ("db", "pgbouncer"))
    assert inv.ssh.key_file == path.parent / "id_ed25519"
    assert inv.ssh.known_hosts == path.parent / "kh"
    assert inv.ssh.connect_timeout == 10.0
    assert [h.name for h in inv.with_role("cron")] == ["worker-1"]


def test_unknown_role_names_path_line_and_suggestion(write_inventory):
    text = MINIMAL + "  web-3: {address: 10.0.0.9, roles: [wbe]}\n"
    assert problems(write_inventory, text) == [
        "hosts.yaml:8: hosts/web-3/roles/0: unknown role 'wbe' (did you mean 'web'?)",
    ]


def test_every_problem_is_reported_at_once(write_inventory):
    text = """\
    sssh: {user: root}
    roles:
      web: {tag: 24.1, processes: 0}
    hosts:
      web-1: {address: 10.0.0.1, roles: [web]}
      web-2: {address: 10.0.0.1, roles: [web, web], port: 70000}
      web-3: {roles: [web]}
      worker-1: {address: "not an address!", roles: [worker, cron], adress: x}
      worker-2: {address: 10.0.0.5, roles: [worker, cron]}
    """
    assert problems(write_inventory, text) == [
        "hosts.yaml:1: sssh: unknown key (did you mean 'ssh'?)",
        "hosts.yaml:3: roles/web/tag: must be str, got float "
        "(write tag: \"24.1\" so YAML keeps it a string)",
        "hosts.yaml:3: roles/web/processes: must be at least 1",
        "hosts.yaml:6: hosts/web-2/port: must be a port number 1-65535, got 70000",
        "hosts.yaml:6: hosts/web-2/roles/1: role 'web' is listed twice",
        "hosts.yaml:6: hosts/web-2/address: '10.0.0.1' is also the address of 'web-1'",
        "hosts.yaml:7: hosts/web-3: missing 'address:' (a DNS name or an IP address)",
        "hosts.yaml:8: hosts/worker-1/adress: unknown key (did you mean 'address'?)",
        "hosts.yaml:8: hosts/worker-1/address: 'not an address!' is neither an IP address "
        "nor a valid host name",
        "hosts.yaml:4: hosts: role 'pgbouncer' has no host, but 'web' needs it "
        "(used by web-1, web-2): add 'pgbouncer' to a host's roles",
        "hosts.yaml:4: hosts: role 'redis-cache' has no host, but 'web' needs it "
        "(used by web-1, web-2): add 'redis-cache' to a host's roles",
        "hosts.yaml:4: hosts: role 'redis-queue' has no host, but 'web' needs it "
        "(used by web-1, web-2): add 'redis-queue' to a host's roles",
        "hosts.yaml:4: hosts: role 'pgbouncer' has no host, but 'worker' needs it "
        "(used by worker-1, worker-2): add 'pgbouncer' to a host's roles",
        "hosts.yaml:4: hosts: role 'redis-queue' has no host, but 'worker' needs it "
        "(used by worker-1, worker-2): add 'redis-queue' to a host's roles",
        "hosts.yaml:4: hosts: role 'pgbouncer' has no host, but 'cron' needs it "
        "(used by worker-1, worker-2): add 'pgbouncer' to a host's roles",
        "hosts.yaml:4: hosts: role 'redis-queue' has no host, but 'cron' needs it "
        "(used by worker-1, worker-2): add 'redis-queue' to a host's roles",
        "hosts.yaml:4: hosts: role 'cron' must run on exactly one host, found 2: "
        "worker-1, worker-2 (two crons run every job twice)",
    ]


def test_duplicate_host_name_is_caught_although_yaml_would_keep_the_last(write_inventory):
    text = MINIMAL + "  web-1: {address: 10.0.0.8, roles: [web]}\n"
    assert problems(write_inventory, text) == [
        "hosts.yaml:8: hosts/web-1: defined twice (the second one would silently win)",
    ]


def test_no_cron_with_sentry_roles(write_inventory):
    text = MINIMAL.replace("[worker, cron]", "[worker]")
    assert problems(write_inventory, text) == [
        "hosts.yaml:3: hosts: role 'cron' must run on exactly one host, found none: "
        "add 'cron' to one worker's roles",
    ]


def test_yaml_syntax_error_names_the_line(write_inventory):
    [problem] = problems(write_inventory, "hosts:\n  web-1: {address: [\n")
    # The wording is libyaml's or PyYAML's; the place is ours.
    assert problem.startswith("hosts.yaml:3: not valid YAML: ")
    assert "node content" in problem


def test_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(InventoryError) as e:
        inventory.load(tmp_path / "nope.yaml")
    assert e.value.problems == [
        f"{tmp_path}/nope.yaml: no such inventory file (set $SENTRYFAB_INVENTORY or run "
        "from the folder that holds hosts.yaml)"
    ]
    assert e.value.exit_code == 2


def test_inventory_path_prefers_the_environment(tmp_path):
    assert inventory.inventory_path({}, tmp_path) == tmp_path / "hosts.yaml"
    assert inventory.inventory_path({"SENTRYFAB_INVENTORY": "/x/lab.yaml"}, tmp_path) == \
        Path("/x/lab.yaml")


def test_scale_hosts_without_roles_are_fine(write_inventory):
    inv = inventory.load(write_inventory("hosts:\n  scale-1: {address: 10.0.0.1}\n"))
    assert inv.hosts[0].roles == ()


def test_reference_inventory_is_the_design_deployment():
    inv = inventory.load(REPO / "hosts.yaml")
    count = {r: len(inv.with_role(r)) for r in ("web", "worker", "cron", "redis-cache",
                                                 "redis-queue", "db", "pgbouncer", "nginx")}
    assert count == {"web": 30, "worker": 12, "cron": 1, "redis-cache": 5, "redis-queue": 1,
                     "db": 2, "pgbouncer": 2, "nginx": 2}
    assert inv.role_vars("web")["processes"] == 8
    assert inv.role_vars("worker")["processes"] == 4
    assert inv.ssh.jump == "ops@bastion.sentry.example.net"


# --- which Sentry ---------------------------------------------------------------------------

SENTRY_ROLES_AT = """\
roles:
  web: {image: sentry, tag: "%s"}
  worker: {image: getsentry/sentry, tag: "%s"}
  cron: {image: sentry, tag: "9.1.2"}
hosts:
  web-1: {address: 10.0.0.1, roles: [web]}
  worker-1: {address: 10.0.0.2, roles: [worker, cron], vars: {tag: "%s"}}
  redis-1: {address: 10.0.0.3, roles: [redis-cache, redis-queue]}
  db-1: {address: 10.0.0.4, roles: [db, pgbouncer]}
"""
PIN = 'sentryfab runs Sentry up to 9.1.2: use tag: "9.1.2"'


@pytest.mark.parametrize("tag", ["9.1.2", "9.1.1", "9.1.2-lab2", "9", "8.22.0", "1"])
def test_sentry_up_to_9_passes(write_inventory, tag):
    inv = inventory.load(write_inventory(SENTRY_ROLES_AT % (tag, tag, tag)))
    assert inv.role_vars("web")["tag"] == tag


def test_sentry_10_or_later_is_refused_where_it_is_written(write_inventory):
    text = SENTRY_ROLES_AT % ("10.0.0", "24.1.0", "latest")
    assert problems(write_inventory, text) == [
        "hosts.yaml:2: roles/web/tag: Sentry 10.0.0 needs Kafka, Snuba, ClickHouse and "
        "Symbolicator, roles sentryfab does not manage. " + PIN,
        "hosts.yaml:3: roles/worker/tag: Sentry 24.1.0 needs Relay, Kafka, Snuba, ClickHouse "
        "and Symbolicator, roles sentryfab does not manage. " + PIN,
        "hosts.yaml:7: hosts/worker-1/vars/tag: Sentry image tag 'latest' names no release: it "
        "moves, and on getsentry/sentry it is the newest, which needs Relay, Kafka, Snuba, "
        "ClickHouse and Symbolicator, roles sentryfab does not manage. " + PIN,
    ]
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(text))
    assert e.value.exit_code == 2


def test_the_tag_rule_is_for_sentry_roles_only(write_inventory):
    inv = inventory.load(write_inventory(
        MINIMAL + "roles:\n  nginx: {image: nginx, tag: '24.1'}\n  db: {tag: latest}\n"))
    assert inv.role_vars("db")["tag"] == "latest"


@pytest.mark.parametrize(("tag", "refused"), [
    ("v10.1", True), ("10", True), ("20.6.0", True), ("NIGHTLY", True), ("9.1.2-onbuild", False),
    ("cc0f0ce", False), ("9.1", False),
])
def test_sentry_release_problem(tag, refused):
    assert (inventory.sentry_release_problem(tag) is not None) == refused


REDIS_ROLES_AT = """\
roles:
  redis-cache: {image: redis, tag: "%s"}
  redis-queue: {image: redis, tag: "%s"}
hosts:
  web-1: {address: 10.0.0.1, roles: [web]}
  worker-1: {address: 10.0.0.2, roles: [worker, cron]}
  redis-1: {address: 10.0.0.3, roles: [redis-cache, redis-queue], vars: {tag: "%s"}}
  db-1: {address: 10.0.0.4, roles: [db, pgbouncer]}
"""
DIGESTS = ("Sentry 9's digest scripts write Lua globals, which Redis 7 and later refuse "
           "('Attempt to modify a readonly table': no alert digest is ever sent): use a Redis "
           'before 7, like tag: "6.2"')


@pytest.mark.parametrize("tag", ["6.2", "6", "6.0.16", "5.0.14", "6.2-alpine", "1"])
def test_redis_before_7_passes(write_inventory, tag):
    inv = inventory.load(write_inventory(REDIS_ROLES_AT % (tag, tag, tag)))
    assert inv.role_vars("redis-queue")["tag"] == tag


def test_redis_7_or_later_is_refused_where_it_is_written(write_inventory):
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(REDIS_ROLES_AT % ("7.2", "8.0-alpine", "latest")))
    assert e.value.exit_code == 2 and e.value.problems == [
        "hosts.yaml:2: roles/redis-cache/tag: Redis 7.2: " + DIGESTS,
        "hosts.yaml:3: roles/redis-queue/tag: Redis 8.0-alpine: " + DIGESTS,
        "hosts.yaml:7: hosts/redis-1/vars/tag: Redis image tag 'latest' names no release: it "
        "moves, and on the official redis image it is the newest. " + DIGESTS,
    ]


@pytest.mark.parametrize(("tag", "refused"), [
    ("7", True), ("v7.0.15", True), ("7.2.4-bookworm", True), ("LATEST", True),
    ("6.2.14", False), ("6-alpine", False), ("alpine", False),
])
def test_redis_release_problem(tag, refused):
    assert (inventory.redis_release_problem(tag) is not None) == refused


def test_the_sentry_section_is_checked(write_inventory):
    text = MINIMAL + """\
sentry:
  url: https://sentry.example.net/
  single_organisation: true
  mail: {port: 99999, use_tls: "yes"}
  filestore: {shared: true}
"""
    assert problems(write_inventory, text) == [
        "hosts.yaml:10: sentry/single_organisation: unknown key "
        "(did you mean 'single_organization'?)",
        "hosts.yaml:9: sentry/url: must be the address users reach Sentry at, like "
        "https://sentry.example.net (no trailing /), got 'https://sentry.example.net/'",
        "hosts.yaml:11: sentry/mail/port: must be a port number 1-65535, got 99999",
        "hosts.yaml:11: sentry/mail/use_tls: must be true or false",
        "hosts.yaml:11: sentry/mail: missing 'host:' (the SMTP server Sentry sends through)",
    ]


def test_the_reference_pins_sentry_9_1_2():
    inv = inventory.load(REPO / "hosts.yaml")
    assert {r: (inv.role_vars(r)["image"], inv.role_vars(r)["tag"])
            for r in ("web", "worker", "cron")} == {r: ("sentry", "9.1.2")
                                                     for r in ("web", "worker", "cron")}


def test_the_reference_pins_redis_6_2():
    inv = inventory.load(REPO / "hosts.yaml")
    assert {r: (inv.role_vars(r)["image"], inv.role_vars(r)["tag"])
            for r in ("redis-cache", "redis-queue")} == {r: ("redis", "6.2")
                                                         for r in ("redis-cache", "redis-queue")}


def test_the_backlog_plan_vars_are_checked(write_inventory):
    text = MINIMAL + ("roles:\n  redis-queue: {events_per_second: 5k, backlog_minutes: 0, "
                      "event_size: 16 kilobytes}\n")
    assert problems(write_inventory, text) == [
        "hosts.yaml:9: roles/redis-queue/events_per_second: must be a positive number, "
        "got '5k'",
        "hosts.yaml:9: roles/redis-queue/backlog_minutes: must be a positive number, got 0",
        "hosts.yaml:9: roles/redis-queue/event_size: must be a size like 16kb, "
        "got '16 kilobytes'",
    ]
    ok = MINIMAL + "roles:\n  redis-queue: {events_per_second: 2.5, event_size: 20KB}\n"
    assert inventory.load(write_inventory(ok)).role_vars("redis-queue")["event_size"] == "20KB"


def test_files_on_each_host_s_own_disk_are_refused_once_there_are_two_sentry_hosts(
        write_inventory):
    """A release file uploaded through web-1 must be readable by worker-1: a host-local
    folder is refused for two Sentry hosts, accepted declared shared or for a single one."""
    local = MINIMAL + "sentry:\n  filestore: {path: /srv/files}\n"
    assert problems(write_inventory, local) == [
        "hosts.yaml:9: sentry/filestore: 2 Sentry hosts (web-1, worker-1) but the filestore "
        "is a folder on each host's own disk: a release file or source map uploaded through "
        "one web host would be missing on the others. Mount shared storage (NFS) at "
        "/srv/files on every Sentry host and set 'shared: true', or use the s3 or gcs backend",
    ]
    inv = inventory.load(write_inventory(
        MINIMAL + "sentry:\n  filestore: {path: /srv/files, shared: true}\n"))
    assert inv.extra["sentry"]["filestore"] == {"path": "/srv/files", "shared": True}
    one = MINIMAL.replace("roles: [web]}", "roles: [web, worker, cron]}").replace(
        "roles: [worker, cron]}", "roles: [redis-cache]}") + "sentry: {url: https://s.example}\n"
    assert inventory.load(write_inventory(one)).with_role("web")[0].name == "web-1"


def test_the_filestore_section_is_checked(write_inventory):
    text = MINIMAL + """\
sentry:
  filestore: {backend: ftp, shared: yes please}
"""
    assert problems(write_inventory, text) == [
        "hosts.yaml:9: sentry/filestore/backend: must be one of filesystem, s3, gcs, "
        "got 'ftp'",
    ]
    text = MINIMAL + """\
sentry:
  filestore: {backend: s3, options: {}, pth: /x}
"""
    assert problems(write_inventory, text) == [
        "hosts.yaml:9: sentry/filestore/pth: unknown key (did you mean 'path'?)",
        "hosts.yaml:9: sentry/filestore/options: the s3 backend needs 'bucket_name:' "
        "(and its credentials)",
    ]
    text = MINIMAL + "sentry:\n  filestore: {path: files, shared: 1}\n"
    assert problems(write_inventory, text) == [
        "hosts.yaml:9: sentry/filestore/shared: must be true or false",
        "hosts.yaml:9: sentry/filestore/path: must be an absolute path, got 'files'",
        "hosts.yaml:9: sentry/filestore: 2 Sentry hosts (web-1, worker-1) but the filestore "
        "is a folder on each host's own disk: a release file or source map uploaded through "
        "one web host would be missing on the others. Mount shared storage (NFS) at "
        "files on every Sentry host and set 'shared: true', or use the s3 or gcs backend",
    ]


def test_planning_figures_and_limits_are_checked_in_role_and_host_vars(write_inventory):
    text = MINIMAL.replace("roles: [db, pgbouncer]}", "roles: [db, pgbouncer], vars: "
                           "{data_disk: huge}}") + (
        "roles:\n  web: {max_body_mb: 20, events_per_second_per_process: 0}\n"
        "  worker: {db_outage_seconds: 0}\n")
    assert problems(write_inventory, text) == [
        "hosts.yaml:9: roles/web/events_per_second_per_process: must be a positive number, "
        "got 0",
        "hosts.yaml:9: roles/web/max_body_mb: must be at least 32, got 20 (Sentry's chunk "
        "upload tells sentry-cli to send 32 MiB)",
        "hosts.yaml:10: roles/worker/db_outage_seconds: must be at least 1, got 0",
        "hosts.yaml:7: hosts/db-1/vars/data_disk: must be a size like 16kb, got 'huge'",
    ]


# --- hardening (issue 13): hostile or broken inventories fail cleanly, located -----------

def test_yaml_aliases_are_refused_fast_even_a_bomb_or_a_loop(write_inventory):
    import time

    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "hosts: *i\n"
    t0 = time.monotonic()
    assert problems(write_inventory, bomb) == [
        "hosts.yaml:1: YAML anchors and aliases (&name, *name, <<) are not allowed in an "
        "inventory: write the value out"]
    assert time.monotonic() - t0 < 1.0
    loop = "hosts: &h\n  web-1: *h\n"
    assert problems(write_inventory, loop)[0].endswith("are not allowed in an inventory: "
                                                       "write the value out")


def test_a_file_that_is_not_utf8_is_a_located_error(write_inventory):
    path = write_inventory(MINIMAL)
    path.write_bytes(MINIMAL.encode() + b"  web-9: {address: caf\xe9}\n")
    with pytest.raises(InventoryError) as e:
        inventory.load(path)
    assert e.value.problems == ["hosts.yaml:8: not UTF-8 text (byte 0xe9 at offset 343)"]


def test_ipv6_zones_with_shell_syntax_are_refused(write_inventory):
    text = MINIMAL + ("  web-5: {address: \"fe80::1%$(id)\", roles: []}\n"
                      "  web-6: {address: \"fe80::1%eth0\", roles: []}\n")
    assert problems(write_inventory, text) == [
        "hosts.yaml:8: hosts/web-5/address: 'fe80::1%$(id)' is neither an IP address nor a "
        "valid host name"]


def test_control_characters_non_finite_numbers_and_odd_names_are_refused(write_inventory):
    text = (MINIMAL.replace("cluster: t", 'cluster: "t\\nx"') + (
        "  true: {address: 10.0.0.8, roles: []}\n"
        "roles:\n"
        "  pgbouncer: {pool_mode: \"transaction\\nauth_type = trust\"}\n"
        "  web: {image: \"-v/:/host\", threads: 0}\n")).replace(
        "ssh: {user: root, key_file: id_ed25519, known_hosts: kh}",
        "ssh: {user: root, key_file: id_ed25519, known_hosts: kh, connect_timeout: .nan}")
    got = problems(write_inventory, text)
    for wanted in (
            "hosts.yaml:8: hosts: host name true: YAML read it as a bool (True), not text "
            "(quote it: \"true\")",
            "hosts.yaml:10: roles/pgbouncer/pool_mode: holds a control character: "
            "'transaction\\nauth_type = trust'",
            "hosts.yaml:11: roles/web/threads: must be at least 1",
            "hosts.yaml:11: roles/web/image: must be an image name like sentry or "
            "registry.example.net/sentry, got '-v/:/host'",
            "hosts.yaml:1: cluster: holds a control character: 't\\nx'",
            "hosts.yaml:2: ssh/connect_timeout: must be a finite number, got nan"):
        assert wanted in got, (wanted, got)


def test_host_vars_get_the_type_checks_role_vars_get(write_inventory):
    text = MINIMAL.replace("roles: [web]}", "roles: [web], vars: {tag: 24.10, image: 5, "
                           "processes: \"2; id\", uid: root}}")
    assert problems(write_inventory, text) == [
        "hosts.yaml:4: hosts/web-1/vars/image: must be str, got int (write image: \"5\" so "
        "YAML keeps it a string)",
        "hosts.yaml:4: hosts/web-1/vars/tag: must be str, got float (write tag: \"24.10\" so "
        "YAML keeps it a string)",
        "hosts.yaml:4: hosts/web-1/vars/processes: must be int, got str",
        "hosts.yaml:4: hosts/web-1/vars/uid: must be int, got str",
    ]
