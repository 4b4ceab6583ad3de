"""Ctrl-C at each step of a rolling web deploy, a deploy killed outright, and a web host
whose link goes down mid-rollout: on the lab, with the real Sentry behind nginx.

What each must leave: exit 130 (Ctrl-C) or 1, the deploy lock free, every web host whose
processes all run back in nginx's rotation, a report of each host's state, audit lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from sentryfab import inventory
from sentryfab.lab import release, topology
from sentryfab.procedures import audit, lock
from sentryfab.remote import Runner

from .conftest import FAB, LAB_INVENTORY, REPO, fab

FIRST = "9.1.2"
OTHER = "9.1.2-lab2"  # the same Sentry under another release name (lab image)
NGINX_CONF = "/etc/sentryfab/nginx/nginx.conf"


@pytest.fixture(scope="module")
def inv(lab):
    inv = inventory.load(LAB_INVENTORY)
    with Runner(inv) as r:  # the second release name, built on the hosts that run Sentry
        assert all(x.ok for x in release.release(r, inv, OTHER))
    # The cluster as the deploy tests leave it: every web host on one release.
    proc = fab("deploy.web", "--tag", FIRST, "--json", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return inv


def start_deploy(*args: str) -> subprocess.Popen:
    env = {**os.environ, "SENTRYFAB_INVENTORY": str(LAB_INVENTORY)}
    return subprocess.Popen([FAB, "deploy.web", "--batch", "1", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 300) -> list[str]:
    """The progress lines up to and including the first that holds `marker`."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            return seen
        assert time.monotonic() < deadline, "".join(seen)
    raise AssertionError(f"{marker!r} never came:\n" + "".join(seen))


def drained_endpoints(inv) -> set[str]:
    """The web endpoints nginx-1's deployed config marks `down`."""
    with Runner(inv) as r:
        out = r.session(inv.host("nginx-1")).run(f"grep ' down;' {NGINX_CONF}; true",
                                                 check=True)
    return {line.split()[1] for line in out.stdout.splitlines() if line.strip()}


def all_up(inv) -> dict[str, bool]:
    """web host -> every web container it should run is running."""
    with Runner(inv) as r:
        res = r.run(inv.with_role("web"),
                    "docker ps --filter label=sentryfab.role=web --format '{{.State}}'")
    want = {h.name: int(h.vars.get("processes") or inv.role_vars("web")["processes"])
            for h in inv.with_role("web")}
    return {x.host.name: x.stdout.split().count("running") >= want[x.host.name] for x in res}


def lock_free(inv) -> bool:
    with Runner(inv) as r:
        return lock.status(r, inv) is None


# Where Ctrl-C lands: (the progress line, then how long to wait). Every one is a real step
# of batch 1 or 2: the drain of its requests, its containers being replaced and health-gated,
# the second batch's drain.
STEPS = {
    "batch 1: drain": ("out of nginx's rotation", 0.0),
    "batch 1: replace": ("out of nginx's rotation", 4.0),
    "batch 2: replace": ("batch 2/2", 5.0),
}


@pytest.mark.parametrize("where", list(STEPS))
def test_ctrl_c_at_each_step_of_a_rollout_puts_hosts_back_and_frees_the_lock(inv, where):
    marker, delay = STEPS[where]
    web = {h.name: h for h in inv.with_role("web")}
    proc = start_deploy("--tag", OTHER)
    seen = wait_for_line(proc, marker)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=180)
    text = "".join(seen) + rest
    assert proc.returncode == 130, text
    assert "interrupted: deploy stopped during web batch" in text, text
    assert "what each host it touched runs now" in text, text
    assert lock_free(inv), text
    up = all_up(inv)
    drained = drained_endpoints(inv)
    for name, host in web.items():
        mine = {ep for ep in drained if ep.startswith(host.address + ":")}
        if up[name]:  # its processes all run: it must serve again
            assert not mine, (name, drained, text)
    # The audit says it was interrupted, and where.
    last = [json.loads(x) for x in audit.LOCAL_LOG.read_text().splitlines()[-5:]]
    assert any(r["action"] == "deploy" and r["result"] == "interrupted" for r in last), last
    # And a re-run finishes the rollout from there.
    again = fab("deploy.web", "--batch", "1", "--tag", FIRST, "--json", timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not drained_endpoints(inv)


def test_status_warns_about_hosts_left_out_of_rotation_with_no_deploy_running(inv):
    """A deploy SIGKILLed mid-drain (no finally runs) leaves web-1 out of nginx's rotation
    and its lock held; once the lock is freed, status calls the drain what it is."""
    assert fab("deploy.web", "--tag", FIRST, timeout=900).returncode == 0  # a known start
    proc = start_deploy("--tag", OTHER)
    wait_for_line(proc, "out of nginx's rotation")
    proc.kill()
    proc.wait()
    assert drained_endpoints(inv)
    status = fab("status", "--roles=nginx", "--json")
    assert "with no deploy running" not in status.stdout  # the lock is still held
    assert fab("lock.release", "--yes").returncode == 0
    status = fab("status", "--roles=nginx", "--json")
    found = [p for h in json.loads(status.stdout)["hosts"] for p in h["problems"]
             if "with no deploy running" in p["message"]]
    assert found and found[0]["severity"] == "warning", status.stdout
    assert "out of nginx's rotation since 20" in found[0]["message"]
    assert fab("config.push", "--roles=nginx").returncode == 0
    assert not drained_endpoints(inv)
    again = fab("deploy.web", "--tag", FIRST, "--json", timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_web_host_whose_link_goes_down_mid_rollout_is_unreachable_within_seconds(inv):
    """web-1's link down while its batch runs: the rollout stops within ~20 s, web-1 is
    reported unreachable ("stopped answering during ..."), stays out of nginx's rotation,
    the lock is free and the audit says so."""
    veth = next(h.veth for h in topology.role_hosts() if h.name == "web-1")
    assert fab("deploy.web", "--tag", FIRST, timeout=900).returncode == 0  # a known start
    proc = start_deploy("--tag", OTHER, "--json")
    try:
        wait_for_line(proc, "batch 1/2")
        time.sleep(3)
        subprocess.run(["ip", "link", "set", veth, "down"], check=True)
        cut = time.monotonic()
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - cut
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=True)
    assert proc.returncode == 1, out + err
    [report] = json.loads(out)
    host = {o["host"]: o for o in report["hosts"]}
    assert host["web-1"]["state"] == "unreachable", report
    assert "stopped answering during" in host["web-1"]["detail"], report
    assert host["web-2"]["state"] == "not reached", report
    assert took < 40, f"{took:.1f} s from the cut to the end of the deploy"
    assert lock_free(inv)
    last = [json.loads(x) for x in audit.LOCAL_LOG.read_text().splitlines()[-3:]]
    assert any(r["action"] == "deploy" and "stopped answering" in r["result"] for r in last), last
    time.sleep(2)  # the link is back: web-1 answers again and the rollout finishes
    again = fab("deploy.web", "--tag", FIRST, "--json", timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not drained_endpoints(inv)


# Every command that changes a host, each with options that would change something.
MUTATING = [
    ("deploy.nginx",), ("deploy.web", "--tag", OTHER), ("deploy.rollback", "--roles=web"),
    ("deploy.migrate",), ("web.scale", "--processes", "3"), ("worker.scale", "--processes", "1"),
    ("config.push", "--roles=nginx"), ("config.rollback", "--roles=nginx"), ("cron.cleanup",),
    ("db.switchover", "--to", "db-2", "--yes"), ("db.degrade", "--yes"),
]


def test_no_two_changes_of_any_kind_run_at_once(inv):
    """While one change holds the lock, every other mutating task is refused before it
    touches anything, naming the holder; none of them writes an audit line."""
    before = audit.LOCAL_LOG.read_text().count("\n") if audit.LOCAL_LOG.exists() else 0
    with Runner(inv) as r, lock.deploy_lock(r, inv, "deploy.web", "held by the guard test"):
        for args in MUTATING:
            proc = fab(*args)
            assert proc.returncode == 1, (args, proc.stdout + proc.stderr)
            assert "another deploy is running" in proc.stderr, (args, proc.stderr)
            assert "held by the guard test" in proc.stderr, (args, proc.stderr)
    after = audit.LOCAL_LOG.read_text().count("\n") if audit.LOCAL_LOG.exists() else 0
    assert after == before
    assert lock_free(inv)


def test_config_push_rollback_and_cleanup_write_their_audit_lines_here_and_on_the_host(inv):
    for args, action, host in ((("config.push", "--roles=nginx"), "config.push", "nginx-1"),
                               (("config.rollback", "--roles=nginx"), "config.rollback",
                                "nginx-1"),
                               (("cron.cleanup",), "cron.cleanup", "worker-1")):
        proc = fab(*args, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        local = [json.loads(x) for x in audit.LOCAL_LOG.read_text().splitlines()[-2:]]
        assert [(x["action"], x["result"]) for x in local] == [(action, "started"),
                                                                (action, "ok")], local
        with Runner(inv) as r:
            remote = r.session(inv.host(host)).run(audit.tail_command(2), check=True).stdout
        assert [(x["action"], x["result"]) for x in audit.parse_lines(remote)] == \
            [(action, "started"), (action, "ok")], remote
    assert fab("config.push", "--roles=nginx").returncode == 0  # the newest files again
