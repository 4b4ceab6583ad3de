"""`become: sudo`: how commands are wrapped, and permission problems named with their fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentryfab import become, inventory, shell
from sentryfab.errors import InventoryError
from sentryfab.inventory import Host

# -- wrap ------------------------------------------------------------------------------------------

def test_no_become_leaves_the_command_alone():
    assert become.wrap("docker ps", None) == "docker ps"
    assert become.wrap("docker ps", "none") == "docker ps"


def test_sudo_runs_the_whole_command_as_one_argument_of_sh():
    assert become.wrap("mkdir -p /etc/sentryfab && cat > x", "sudo") == \
        "sudo -n -H -- sh -c 'mkdir -p /etc/sentryfab && cat > x'"


def test_fab_run_sudo_and_become_are_one_thing_never_wrapped_twice():
    once = shell.sudo("id -u")
    assert once == become.wrap("id -u", "sudo")
    assert become.wrap(once, "sudo") == once
    # A user's text that merely mentions sudo is still wrapped.
    assert become.wrap(shell.script("sudo -n -H -- sh -c x"), "sudo").startswith(
        "sudo -n -H -- sh -c 'sh -c ")


def test_an_unknown_method_is_a_bug_not_a_silent_root_login():
    with pytest.raises(ValueError, match="unknown become method 'su'"):
        become.wrap("true", "su")


def test_the_status_script_keeps_its_secrets_on_stdin():
    from sentryfab.status import script

    text = (Path(__file__).parent / "data" / "status" / "hosts.yaml").read_text()
    inv = inventory.parse(text.replace("ssh:\n", "ssh:\n  become: sudo\n", 1),
                          Path("hosts.yaml"))
    host = inv.host("redis-queue-1")
    cs = script.build(inv, host, {"redis_password": "Pa55-w0rd"})
    wrapped = become.wrap(cs.command, host.become)
    assert wrapped.startswith("sudo -n -H -- sh -c ") and "Pa55-w0rd" not in wrapped
    assert cs.stdin == b"Pa55-w0rd\n"


# -- the inventory ---------------------------------------------------------------------------------

HOSTS = """
ssh: {user: deploy%s}
hosts:
  a: {address: 10.0.0.1%s}
  b: {address: 10.0.0.2%s}
"""


def load(ssh: str = "", a: str = "", b: str = "") -> inventory.Inventory:
    return inventory.parse(HOSTS % (ssh, a, b), Path("hosts.yaml"))


def test_become_in_the_ssh_block_applies_to_every_host():
    inv = load(", become: sudo")
    assert inv.ssh.become == "sudo"
    assert [h.become for h in inv.hosts] == ["sudo", "sudo"]


def test_a_host_may_differ_either_way():
    inv = load(", become: sudo", a=", become: none")
    assert [h.become for h in inv.hosts] == [None, "sudo"]
    inv = load(b=", become: sudo")
    assert inv.ssh.become is None and [h.become for h in inv.hosts] == [None, "sudo"]


def test_no_become_by_default():
    inv = load()
    assert inv.ssh.become is None and [h.become for h in inv.hosts] == [None, None]


@pytest.mark.parametrize(("value", "message"), [
    ("su", "hosts.yaml:2: ssh/become: must be sudo or none, got 'su'"),
    ("yes", "hosts.yaml:2: ssh/become: must be sudo or none, got True (write become: sudo)"),
    ("[sudo]", "hosts.yaml:2: ssh/become: must be sudo or none, got ['sudo']"),
])
def test_other_values_are_refused_with_their_place(value, message):
    with pytest.raises(InventoryError) as e:
        load(f", become: {value}")
    assert message in str(e.value)


def test_a_host_s_bad_value_names_the_host():
    with pytest.raises(InventoryError) as e:
        load(a=", become: root")
    assert "hosts.yaml:4: hosts/a/become: must be sudo or none, got 'root'" in str(e.value)


def test_login_user_for_messages():
    inv = load(", become: sudo", b=", user: ops")
    assert become.login_user(inv, inv.host("a")) == "deploy"
    assert become.login_user(inv, inv.host("b")) == "ops"
    bare = inventory.parse("hosts:\n  a: {address: 10.0.0.1}\n", Path("h.yaml"))
    assert become.login_user(bare, Host("a", "10.0.0.1")) == "the SSH user"


# -- permission problems, from the exact texts the tools print ---------------------------------

DOCKER_CLI = ('permission denied while trying to connect to the Docker daemon socket at '
              'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.41/'
              'containers/json?all=1&filters=...": dial unix /var/run/docker.sock: connect: '
              'permission denied')
DOCKER_OLD = ("Got permission denied while trying to connect to the Docker daemon socket at "
              "unix:///var/run/docker.sock: Post http://%2Fvar%2Frun%2Fdocker.sock/v1.24/"
              "containers/x/start: dial unix /var/run/docker.sock: connect: permission denied")
MKTEMP = ("mktemp: failed to create directory via template "
          "'/var/lib/sentryfab/deploy.lock.new.XXXXXX': Permission denied")


def test_docker_socket():
    assert become.permission_problem(DOCKER_CLI, "deploy") == (
        "deploy may not use Docker: set `become: sudo` or add deploy to the docker group "
        "(permission denied on /var/run/docker.sock)")
    d = become.denial("Error response...\n" + DOCKER_OLD, "deploy")
    assert d is not None and d.kind == "docker" and d.summary(10) == (
        "deploy may not use Docker on 10 hosts: set `become: sudo` or add deploy to the "
        "docker group")
    assert d.summary(1).startswith("deploy may not use Docker on 1 host: ")


def test_sentryfab_s_own_folders():
    assert become.permission_problem(MKTEMP, "deploy") == (
        "deploy may not use /var/lib/sentryfab: set `become: sudo` (/var/lib/sentryfab is "
        f"root's) ({MKTEMP})")
    for line, where in [
        ("sh: 1: cannot create /var/log/sentryfab/audit.log: Permission denied",
         "/var/log/sentryfab"),
        ("mkdir: cannot create directory '/etc/sentryfab': Permission denied", "/etc/sentryfab"),
        ("mkdir: cannot create directory \u2018/var/lib/sentryfab\u2019: Permission denied",
         "/var/lib/sentryfab"),  # quoted as in a UTF-8 locale
        ("chown: changing ownership of '/etc/sentryfab/web/sentry.conf.py': Operation not "
         "permitted", "/etc/sentryfab"),
    ]:
        d = become.denial(line, "deploy")
        assert d is not None and (d.kind, d.what) == ("files", f"use {where}"), line


def test_sudo_refusals_come_first_and_say_how_to_allow_it():
    text = "sudo: a password is required\n" + DOCKER_CLI
    assert become.permission_problem(text, "deploy") == (
        "deploy may not run sudo without a password: allow it in sudoers (`deploy ALL=(root) "
        "NOPASSWD: ALL` in a file under /etc/sudoers.d/), or log in as root with "
        "`become: none` (sudo: a password is required)")
    for line, kind in [
        ("deploy is not in the sudoers file.", "sudo-password"),
        ("sudo: a terminal is required to read the password; either use the -S option to "
         "read from standard input or configure an askpass helper", "sudo-password"),
        ("Sorry, user deploy is not allowed to execute '/bin/sh -c true' as root on web-1.",
         "sudo-password"),
        ("sudo: sorry, you must have a tty to run sudo", "sudo-tty"),
        ("sh: 1: sudo: not found", "sudo-missing"),
        ("bash: line 1: sudo: command not found", "sudo-missing"),
    ]:
        d = become.denial(line, "deploy")
        assert d is not None and d.kind == kind, line


@pytest.mark.parametrize("text", [
    "",
    "curl: (7) Failed to connect to docker port 80 after 0 ms: Couldn't connect to server",
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
    "daemon running?",
    "cat: /home/deploy/x: Permission denied",          # not ours: not guessed at
    "ERROR:  permission denied for table sentry_project",  # PostgreSQL's own rights
    "rm: cannot remove '/var/lib/sentryfab-lab/x': Permission denied",  # not ours
])
def test_other_failures_are_not_called_permission_problems(text):
    assert become.denial(text, "deploy") is None


# -- status: one finding per host, a summary, and no dead service claimed -----------------------

DATA = Path(__file__).parent / "data"
QUIET = "thresholds: {load_per_cpu: [null, null]}\n"


def deploy_inventory() -> inventory.Inventory:
    """The captured lab's inventory, logging in as deploy (without become)."""
    text = (DATA / "status" / "hosts.yaml").read_text().replace("user: root", "user: deploy")
    return inventory.parse(text + QUIET, DATA / "status" / "hosts.yaml")


def status_round(inv, answers):
    from sentryfab.status import cluster
    from sentryfab.status.checks import evaluate_host

    statuses = [evaluate_host(inv, inv.host(name), a, None, 1000.0)[0]
                for name, a in answers.items()]
    return statuses, cluster.analyse(inv, statuses)


ROLE_HOSTS = ("nginx-1", "web-1", "web-2", "worker-1", "worker-2", "redis-cache-1",
              "redis-queue-1", "db-1", "db-2", "pgbouncer-1")


def test_no_rights_on_docker_is_one_finding_per_host_and_one_summary():
    """Outputs captured on the lab, logged in as deploy without become: every Docker fact
    refused (web's and nginx's own HTTP probes still answer)."""
    from sentryfab.status.checks import Answer

    inv = deploy_inventory()
    answers = {h: Answer((DATA / "become" / f"{h}.out").read_text(), 0, None, 0.05, None)
               for h in ROLE_HOSTS}
    statuses, view = status_round(inv, answers)
    for st in statuses:
        assert [(p.severity, p.message) for p in st.problems] == [(
            "critical", "deploy may not use Docker: set `become: sudo` or add deploy to the "
                        "docker group (permission denied on /var/run/docker.sock)")], st.host.name
        assert not any("docker" in n for n in st.notes), st.notes
    assert [(p.scope, p.message, p.hosts) for p in view.problems] == [(
        "cluster", "deploy may not use Docker on 10 hosts: set `become: sudo` or add deploy "
                   "to the docker group", ROLE_HOSTS)]
    assert view.primary is None  # unknown, and not called missing


def test_sudo_refusing_is_one_finding_per_host_and_no_missing_primary():
    from sentryfab.status.checks import Answer

    inv = deploy_inventory()
    refused = Answer("", 1, None, 0.05, None, stderr="sudo: a password is required\n")
    statuses, view = status_round(inv, {h: refused for h in ROLE_HOSTS})
    for st in statuses:
        assert [p.message for p in st.problems] == [
            "deploy may not run sudo without a password: allow it in sudoers (`deploy "
            "ALL=(root) NOPASSWD: ALL` in a file under /etc/sudoers.d/), or log in as root "
            "with `become: none` (sudo: a password is required)"]
    assert [p.message for p in view.problems] == [
        "deploy may not run sudo without a password on 10 hosts: allow it in sudoers (`deploy "
        "ALL=(root) NOPASSWD: ALL` in a file under /etc/sudoers.d/), or log in as root with "
        "`become: none`"]


def test_a_dead_database_is_still_called_so_when_the_rights_are_fine():
    """Only databases refused for want of rights are spared 'no primary found'."""
    from sentryfab.status.checks import Answer

    inv = deploy_inventory()
    answers = {h: Answer((DATA / "become" / f"{h}.out").read_text(), 0, None, 0.05, None)
               for h in ROLE_HOSTS}
    cut = Answer("", None, "timed out after 20 s", 20.0, None)
    answers.update({"db-1": cut, "db-2": cut, "worker-1": cut})
    _, view = status_round(inv, answers)
    said = [p.message for p in view.problems]
    assert any(m.startswith("no primary found: db-1, db-2 did not answer") for m in said)
    assert "deploy may not use Docker on 7 hosts: set `become: sudo` or add deploy to the " \
           "docker group" in said


def test_topology_refusals_are_summed_up_per_kind():
    d = become.denial(DOCKER_CLI, "deploy")
    f = become.denial(MKTEMP, "deploy")
    assert become.summaries({"db-1": d, "db-2": d, "pgbouncer-1": d, "nginx-1": f}) == [
        "deploy may not use Docker on 3 hosts (db-[1-2], pgbouncer-1): set `become: sudo` or "
        "add deploy to the docker group",
        "deploy may not use /var/lib/sentryfab on 1 host (nginx-1): set `become: sudo` "
        "(/var/lib/sentryfab is root's)"]


# -- the lab's deploy user ------------------------------------------------------------------------

def test_someone_else_s_user_of_that_name_is_not_taken_over():
    from sentryfab.errors import LabError
    from sentryfab.lab import deploy_user

    with pytest.raises(LabError, match="a user 'nobody' exists on this machine and is not the "
                                       "lab's"):
        deploy_user.ensure("ssh-ed25519 AAAA test", user="nobody")
