"""Logging in as `deploy`, not root, on the lab: `become: sudo` runs every change and check
as root through sudo -n; without it, the missing rights are named once per host with the fix.

The lab keeps logging in as root; lab.up gives every lab host a `deploy` user with
passwordless sudo and the lab's key (lab/deploy_user.py). These tests use copies of the lab
inventory with `ssh: {user: deploy, become: sudo}` (or without become), through the real
`fab` CLI. The lab is shared: a change that finds another deploy's lock waits and retries.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.remote import Runner

from .conftest import LAB_INVENTORY, fab, inventory_copy

DOCKER = ("deploy may not use Docker: set `become: sudo` or add deploy to the docker group "
          "(permission denied on /var/run/docker.sock)")
ROLE_HOSTS = ("nginx-1", "web-1", "web-2", "worker-1", "worker-2", "redis-cache-1",
              "redis-queue-1", "db-1", "db-2", "pgbouncer-1", "backup-1")
#: How long a change waits, in all, for another deploy's lock (the lab is shared).
LOCK_PATIENCE = 600


@pytest.fixture(scope="module")
def invs(lab, tmp_path_factory) -> dict[str, Path]:
    """'sudo': deploy with become: sudo; 'plain': deploy without; on a deployed cluster."""
    tmp = tmp_path_factory.mktemp("become")
    root = inventory.load(LAB_INVENTORY)
    with Runner(root) as r:
        up = r.run(root.with_role("db"), "docker inspect sentry-db-1 >/dev/null")
    if not all(x.ok for x in up):  # an empty lab: build the cluster first (as deploy)
        ok(change("deploy", inv=inventory_copy(tmp, _deploy_sudo), timeout=900))
    return {"sudo": inventory_copy(tmp, _deploy_sudo),
            "plain": inventory_copy(tmp, lambda d: d["ssh"].update(user="deploy"))}


def _deploy_sudo(d: dict) -> None:
    d["ssh"].update(user="deploy", become="sudo")


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def change(*args: str, inv: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """A fab command that takes the deploy lock, retried while another deploy holds it."""
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        proc = fab(*args, inv=inv, timeout=timeout)
        if "another deploy is running" not in proc.stderr or time.monotonic() > deadline:
            return proc
        time.sleep(5)


def status(inv: Path) -> tuple[int, dict, str]:
    """fab status: exit code, its --json, and its text (the table and findings)."""
    proc = fab("status", "--json", inv=inv)
    text = fab("status", inv=inv).stdout
    return proc.returncode, json.loads(proc.stdout), text


def problems(rep: dict) -> dict[str, list[str]]:
    """host -> its findings, leaving out the load per CPU (every lab host shares two cores,
    loaded by whatever else runs: not what these tests are about)."""
    return {h["host"]: [p["message"] for p in h["problems"]
                        if not p["message"].startswith("load per CPU")] for h in rep["hosts"]}


def run_on(inv: Path, hosts: str, command: str, *opts: str) -> dict[str, str]:
    """host -> stdout of `fab run` (every host must succeed)."""
    proc = ok(fab("run", "--json", f"--hosts={hosts}", *opts, command, inv=inv))
    return {r["host"]: r["stdout"].strip() for r in json.loads(proc.stdout)}


# -- how commands run --------------------------------------------------------------------------

SUDOS_ABOVE = ('p=$$; n=0; while [ "$p" -gt 1 ]; do [ "$(ps -o comm= -p "$p")" = sudo ] && '
               'n=$((n+1)); p=$(ps -o ppid= -p "$p" | tr -d " "); done; echo "$(id -un) $n"')


def test_commands_run_as_root_through_one_sudo(invs):
    """become: sudo makes every command root's, once: `fab run --sudo` is not wrapped twice;
    without become the login user runs it, and `--sudo` still works."""
    assert set(run_on(invs["sudo"], "nginx-1,db-1", SUDOS_ABOVE).values()) == {"root 1"}
    assert run_on(invs["sudo"], "nginx-1", SUDOS_ABOVE, "--sudo") == {"nginx-1": "root 1"}
    assert run_on(invs["plain"], "nginx-1", SUDOS_ABOVE) == {"nginx-1": "deploy 0"}
    assert run_on(invs["plain"], "nginx-1", SUDOS_ABOVE, "--sudo") == {"nginx-1": "root 1"}
    # sudo -H: root's home, as a root login has it (each lab host has its own /root).
    assert run_on(invs["sudo"], "web-1", 'echo "$HOME"') == {"web-1": "/root"}


# -- status --------------------------------------------------------------------------------------

def running(rep: dict) -> dict[str, dict[str, int]]:
    """host -> role -> containers running, as status counted them."""
    return {h["host"]: {r: m["containers_running"] for r, m in h["metrics"].items()
                        if "containers_running" in m} for h in rep["hosts"] if h["roles"]}


def test_status_through_sudo_sees_what_root_sees(invs):
    """The same exit code as root's round (0, or 1 for a warning such as the load of two
    shared cores), the same containers, primary and versions; no permission problem."""
    for _ in range(5):  # a deploy by the lab's other user may land between the two rounds
        code, rep, text = status(invs["sudo"])
        root_code, root_rep, _ = status(LAB_INVENTORY)
        if running(rep) == running(root_rep) and code == root_code:
            break
        time.sleep(5)
    assert running(rep) == running(root_rep)
    assert code == root_code, text
    for said in ("permission denied", "may not", "no primary", "no cron", "not answering"):
        assert said not in text, text
    found, root_found = rep["cluster_findings"], root_rep["cluster_findings"]
    assert found["primary"] == root_found["primary"] and found["primary"] is not None
    assert found["cron_count"] == 1 and found["versions"] == root_found["versions"]


def test_status_without_become_names_the_missing_rights_once_per_host(invs):
    code, rep, text = status(invs["plain"])
    assert code == 2
    assert problems(rep) == {h: [DOCKER] for h in ROLE_HOSTS}
    assert [p["message"] for p in rep["cluster_findings"]["problems"]] == [
        f"deploy may not use Docker on {len(ROLE_HOSTS)} hosts: set `become: sudo` or add "
        "deploy to the docker group"]
    for said in ("no primary", "no cron running", "not answering", "missing (no such"):
        assert said not in text, text


# -- changes -------------------------------------------------------------------------------------

def test_changes_without_become_stop_at_the_lock_with_the_fix(invs):
    lock_said = ("cannot take the deploy lock on nginx-1: deploy may not use /var/lib/sentryfab:"
                 " set `become: sudo` (/var/lib/sentryfab is root's)")
    for args in (("deploy.nginx",), ("config.push", "--roles=nginx")):
        proc = change(*args, inv=invs["plain"])  # a held lock is still readable: wait
        assert proc.returncode == 1 and lock_said in proc.stderr, proc.stderr
        assert "None" not in proc.stderr
    topo = fab("db.topology", inv=invs["plain"])
    assert topo.returncode == 1 and (
        "cannot read the database topology: deploy may not use Docker on 3 hosts "
        "(db-[1-2], pgbouncer-1): set `become: sudo`") in topo.stderr, topo.stdout + topo.stderr
    assert "no primary" not in topo.stdout


def web_release(inv: Path) -> str:
    """The one release the web hosts run (waiting out another test's rollout)."""
    command = ("docker ps --filter label=sentryfab.role=web "
               "--format '{{.Label \"sentryfab.version\"}}'")
    found: set[str] = set()
    for _ in range(30):
        proc = fab("run", "--json", "--hosts=web-1,web-2", command, inv=inv)
        found = {v for r in json.loads(proc.stdout or "[]") for v in r["stdout"].split()}
        if proc.returncode == 0 and len(found) == 1:
            return found.pop()
        time.sleep(5)
    raise AssertionError(f"web runs several releases, or no web host answers: {found}")


def _nginx_conf(count: int) -> str:
    return f"grep -c 'worker_connections {count};' /etc/sentryfab/nginx/nginx.conf; " \
           "stat -c '%U %a' /etc/sentryfab/nginx/nginx.conf"


def test_deploy_and_config_push_through_sudo(invs, tmp_path):
    """A real change through sudo: nginx's worker_connections rendered, uploaded, checked
    with nginx -t, activated and reloaded by deploy.nginx, then put back by config.push;
    deploy.web finds its hosts up to date. The lock and the audit lines are root's files."""
    edited = inventory_copy(tmp_path, lambda d: (_deploy_sudo(d), d["roles"]["nginx"].update(
        worker_connections=4095)))
    proc = ok(change("deploy.nginx", "--json", inv=edited))
    assert {h["host"]: h["state"] for r in json.loads(proc.stdout) for h in r["hosts"]} == \
        {"nginx-1": "reloaded"}
    assert run_on(invs["sudo"], "nginx-1", _nginx_conf(4095)) == {"nginx-1": "1\nroot 644"}
    # At the release web runs now, so as not to undo another test's: up to date, or (on a
    # lab another test just left with a container down) replaced and healthy again.
    web = ok(change("deploy.web", "--json", f"--tag={web_release(invs['sudo'])}",
                    inv=invs["sudo"], timeout=600))
    states = {h["host"]: h["state"] for r in json.loads(web.stdout) if r["role"] == "web"
              for h in r["hosts"]}
    assert set(states) == {"web-1", "web-2"} and set(states.values()) <= {"unchanged",
                                                                          "updated"}, states
    push = ok(change("config.push", "--roles=nginx", "--json", inv=invs["sudo"]))
    assert {r["host"]: r["updated"] for r in json.loads(push.stdout)} == \
        {"nginx-1": ["/etc/sentryfab/nginx/nginx.conf"]}
    assert run_on(invs["sudo"], "nginx-1", _nginx_conf(4096)) == {"nginx-1": "1\nroot 644"}
    audit = run_on(invs["sudo"], "nginx-1", "tail -n 20 /var/log/sentryfab/audit.log; "
                                            "stat -c '%U' /var/log/sentryfab/audit.log")
    assert '"action": "deploy.nginx"' in audit["nginx-1"] and audit["nginx-1"].endswith("root")
    assert json.loads(ok(fab("lock.status", "--json", inv=invs["sudo"])).stdout)["held"] is False


# -- failover --------------------------------------------------------------------------------------

def topology(inv: Path) -> dict:
    proc = fab("db.topology", "--json", inv=inv)
    assert proc.returncode in (0, 1) and proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def node(t: dict, name: str) -> dict:
    return next(n for n in t["nodes"] if n["host"] == name)


def db_op(inv: Path, *args: str) -> dict:
    proc = change(*args, "--yes", "--json", inv=inv, timeout=600)
    rep = json.loads(proc.stdout) if proc.stdout.strip() else {}
    assert proc.returncode == 0 and rep.get("ok"), proc.stdout + proc.stderr
    return rep


def test_switchover_and_back_through_sudo(invs):
    """db.switchover to db-2, rejoin db-1, switchover back, rejoin db-2: the lab's baseline
    again (db-1 primary, db-2 a synchronous replica, PgBouncer at db-1), all as deploy."""
    inv = invs["sudo"]
    t = topology(inv)
    if t["primary"] != "db-1" or t["fenced"] or t["degraded"]:
        pytest.skip(f"the lab is not at its baseline (another test's failover?): {t['primary']}")
    there = db_op(inv, "db.switchover", "--to", "db-2")
    t = topology(inv)
    assert t["primary"] == "db-2" and node(t, "db-1")["fenced"]["new_primary"] == "db-2"
    assert all(b["points_to"] == "db-2" and not b["paused"] for b in t["pgbouncers"])
    db_op(inv, "db.rejoin", "--node=db-1")
    back = db_op(inv, "db.switchover", "--to", "db-1")
    db_op(inv, "db.rejoin", "--node=db-2")
    t = topology(inv)
    assert t["primary"] == "db-1" and node(t, "db-2")["streaming_from"] == "db-1"
    assert node(t, "db-2")["sync_state"] in ("sync", "quorum") and not t["fenced"]
    assert all(b["points_to"] == "db-1" and not b["paused"] for b in t["pgbouncers"])
    print(f"\nswitchover paused clients {there['paused_seconds']:.2f} s there, "
          f"{back['paused_seconds']:.2f} s back")


# -- the lab's user ------------------------------------------------------------------------------

def test_the_lab_s_user_is_made_once_and_removed_without_a_trace(lab):
    """What lab.up does for `deploy`, and lab.down undoes, on a user of this test's own."""
    import pwd

    from sentryfab.lab import deploy_user

    user = "sfb-become-test"
    pubkey = (LAB_INVENTORY.parent / "id_ed25519.pub").read_text()
    try:
        made = deploy_user.ensure(pubkey, user)
        assert made == [f"created user {user} (sudo without a password)",
                        f"authorized the lab key for {user}",
                        f"wrote /etc/sudoers.d/sentryfab-lab-{user}"]
        assert deploy_user.ensure(pubkey, user) == []  # lab.up again changes nothing
        home = Path(pwd.getpwnam(user).pw_dir)
        keys = home / ".ssh" / "authorized_keys"
        assert keys.read_text() == pubkey and oct(keys.stat().st_mode & 0o777) == "0o600"
        assert keys.stat().st_uid == pwd.getpwnam(user).pw_uid
    finally:
        removed = deploy_user.remove(user)
    assert removed == [f"removed /etc/sudoers.d/sentryfab-lab-{user}", f"removed user {user}"]
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert not home.exists() and not deploy_user.sudoers_path(user).exists()
    assert deploy_user.remove(user) == []
