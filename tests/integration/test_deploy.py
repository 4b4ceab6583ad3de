"""Deploys on the lab: from nothing, rolling under load, a broken release, rollback, lock, audit.

Everything real: the real Sentry 9.1.2 runs in containers on the lab hosts' own Docker engines,
events go through nginx, Sentry's web, the Redis queue, Sentry's workers, PgBouncer and
PostgreSQL, and are found in Sentry's own tables by lab.verify.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.lab import load, release
from sentryfab.procedures import lock
from sentryfab.remote import Runner

from .conftest import LAB_INVENTORY, REPO, fab, inventory_copy, load_in_background, send_load

IDS_DIR = REPO / "lab" / "load"
FIRST = "9.1.2"  # the real Sentry the lab inventory names
LAB2 = "9.1.2-lab2"  # the same Sentry under another release name
BROKEN = "9.1.2-lab3-broken"  # its entrypoint exits at once
# Events/s through nginx under load. The real Sentry's four lab workers store about 15-25
# events/s on two cores shared with everything else: a backlog builds during a run and
# drains within DRAIN seconds after it.
RATE = 30
DRAIN = 300


def deploy(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return fab(*args, "--json", timeout=timeout)


def reports(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    return {r["role"]: r for r in json.loads(proc.stdout)}


def versions(inv, role: str) -> dict[str, set[str]]:
    """host -> versions of the role's running containers, read from docker on the hosts."""
    fmt = '{{.Label "sentryfab.version"}}'
    with Runner(inv) as r:
        results = r.run(inv.with_role(role), f"docker ps --filter label=sentryfab.role={role} "
                                             f"--format '{fmt}'")
    return {x.host.name: set(x.stdout.split()) for x in results}


def verify(inv, ids: Path, wait: float = DRAIN) -> load.VerifyReport:
    with Runner(inv) as r:
        return load.verify(r, inv.host("db-1"), ids, wait=wait)


OLD = "9.1.1"  # the real release the cluster is first deployed at, then upgraded from


def on_old_release(data: dict) -> None:
    """The lab inventory with every Sentry role at the older real release."""
    for role in ("web", "worker", "cron"):
        data["roles"][role]["tag"] = OLD


@pytest.fixture(scope="module")
def cluster(lab, tmp_path_factory):
    """A lab wiped to nothing, then `fab deploy` of Sentry 9.1.1: the first test's subject;
    the upgrade test takes it to 9.1.2, the others' base."""
    inv = inventory.load(LAB_INVENTORY)
    role_hosts = [h for h in inv.hosts if h.roles]
    with Runner(inv) as r:
        wiped = r.run(role_hosts, "docker rm -f $(docker ps -aq) >/dev/null 2>&1; "
                                  "rm -rf /etc/sentryfab/* /var/lib/sentryfab/* "
                                  "/etc/sentryfab/.[!.]* /var/lib/sentryfab/.[!.]*; true")
    assert all(x.ok for x in wiped)
    old = inventory_copy(tmp_path_factory.mktemp("old"), on_old_release)
    start = time.monotonic()
    first = fab("deploy", "--json", inv=old, timeout=1800)
    took = time.monotonic() - start
    assert first.returncode == 0, first.stdout + first.stderr
    assert fab("lab.dsn").returncode == 0  # the organization's owner, as an operator makes it
    return inv, first, took, old


def sentry_versions(inv, role: str) -> dict[str, set[str]]:
    """host -> what `sentry --version` says inside the role's running containers."""
    with Runner(inv) as r:
        results = r.run(inv.with_role(role), f"for c in $(docker ps -q --filter "
                                             f"label=sentryfab.role={role}); do docker exec $c "
                                             "sentry --version; done")
    return {x.host.name: {line.split()[-1] for line in x.stdout.splitlines()} for x in results}


def test_deploy_from_nothing_then_events_reach_postgresql_and_a_rerun_changes_nothing(cluster):
    inv, first, took, old = cluster
    rep = reports(first)
    assert set(rep) == {"db", "backup", "pgbouncer", "redis-cache", "redis-queue", "web",
                        "worker", "cron", "nginx"}
    assert all(r["ok"] for r in rep.values())
    assert all(h["state"] == "updated" for r in rep.values() for h in r["hosts"])
    assert sentry_versions(inv, "web") == {"web-1": {OLD}, "web-2": {OLD}}
    report = send_load(inv, 50, 4, IDS_DIR)
    assert report.accepted == report.sent == 200
    v = verify(inv, IDS_DIR / "latest.ids")
    assert (v.counts.stored, v.counts.missing, v.counts.duplicated) == (200, 0, 0)
    again = fab("deploy", "--json", inv=old, timeout=600)
    assert again.returncode == 0
    assert all(h["state"] == "unchanged" for r in reports(again).values() for h in r["hosts"])
    print(f"deploy from nothing: {took:.1f} s")


def test_upgrade_from_one_real_release_to_the_next_under_load(cluster):
    """9.1.1 -> 9.1.2 with `fab deploy` while events flow: Sentry's migrations run once,
    before the first web batch; web, worker and cron are replaced batch by batch; no request
    fails and no event is lost."""
    inv, *_ = cluster
    t, box = load_in_background(inv, RATE, 45, IDS_DIR)
    time.sleep(2)
    start = time.monotonic()
    proc = deploy("deploy", timeout=1200)
    took = time.monotonic() - start
    t.join(timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.count("schema migrated on") == 1, proc.stderr
    rep = reports(proc)
    for role in ("web", "worker", "cron"):
        assert {(h["before"], h["after"], h["state"]) for h in rep[role]["hosts"]} == \
            {(OLD, FIRST, "updated")}, rep[role]
        assert set().union(*sentry_versions(inv, role).values()) == {FIRST}
    assert all(h["state"] == "unchanged" for role in ("db", "pgbouncer", "redis-cache",
                                                      "redis-queue")
               for h in rep[role]["hosts"])
    lr = box["report"]
    assert dict(lr.failed) == {}, lr.as_record()
    v = verify(inv, IDS_DIR / "latest.ids")
    assert (v.counts.stored, v.counts.missing, v.counts.duplicated) == (lr.accepted, 0, 0)
    print(f"upgrade {OLD} -> {FIRST} under {RATE}/s: {took:.1f} s, {lr.accepted} accepted, "
          f"0 failed, 0 lost")


def test_rolling_web_deploy_under_load_fails_no_request_and_loses_no_event(cluster):
    inv, *_ = cluster
    with Runner(inv) as r:
        assert all(x.ok for x in release.release(r, inv, LAB2))
    t, box = load_in_background(inv, RATE, 30, IDS_DIR)
    time.sleep(2)
    proc = deploy("deploy.web", f"--tag={LAB2}", "--batch=1")
    t.join(timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lr = box["report"]
    assert lr.sent == RATE * 30
    assert dict(lr.failed) == {}, lr.as_record()
    assert versions(inv, "web") == {"web-1": {LAB2}, "web-2": {LAB2}}
    v = verify(inv, IDS_DIR / "latest.ids")
    assert (v.counts.missing, v.counts.duplicated) == (0, 0)
    assert v.counts.stored == lr.accepted


def test_broken_release_stops_after_the_first_batch_and_puts_it_back(cluster):
    inv, *_ = cluster
    assert versions(inv, "web") == {"web-1": {LAB2}, "web-2": {LAB2}}
    with Runner(inv) as r:
        assert all(x.ok for x in release.release(r, inv, BROKEN, broken=True))
    start = time.monotonic()
    proc = deploy("deploy.web", f"--tag={BROKEN}", "--batch=1")
    assert proc.returncode == 1
    web = reports(proc)["web"]
    assert not web["ok"] and "batch 1/2 failed" in web["stopped"]
    states = {h["host"]: (h["state"], h["before"], h["after"]) for h in web["hosts"]}
    assert states == {"web-1": ("rolled back", LAB2, LAB2), "web-2": ("not reached", None, None)}
    assert versions(inv, "web") == {"web-1": {LAB2}, "web-2": {LAB2}}
    print(f"broken release stopped and rolled back in {time.monotonic() - start:.1f} s")


def test_rollback_returns_every_web_host_to_the_previous_release(cluster):
    inv, *_ = cluster
    proc = deploy("deploy.rollback", "--roles=web", "--batch=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert versions(inv, "web") == {"web-1": {FIRST}, "web-2": {FIRST}}
    back = deploy("deploy.web", f"--tag={LAB2}")  # and forward again
    assert back.returncode == 0
    assert versions(inv, "web") == {"web-1": {LAB2}, "web-2": {LAB2}}


def test_a_change_a_reload_applies_is_reloaded_not_restarted(cluster, tmp_path):
    """nginx's worker_connections and PgBouncer's pool size: files pushed, SIGHUP, health
    checked; the containers keep running (same start time)."""
    inv = cluster[0]

    def started() -> dict[str, str]:
        with Runner(inv) as r:
            res = r.run([inv.host("nginx-1"), inv.host("pgbouncer-1")],
                        "docker inspect -f '{{.Name}} {{.State.StartedAt}}' "
                        "sentry-nginx-1 2>/dev/null || docker inspect -f "
                        "'{{.Name}} {{.State.StartedAt}}' sentry-pgbouncer-1")
        return {x.host.name: x.stdout.strip() for x in res}

    def edit(d: dict) -> None:
        d["roles"]["nginx"]["worker_connections"] = 2048
        d["roles"]["pgbouncer"]["default_pool_size"] = 17

    before = started()
    changed = inventory_copy(tmp_path, edit)
    for path, want in ((changed, "reloaded"), (inventory_copy(tmp_path), "reloaded")):
        proc = fab("deploy.nginx", "--json", inv=path, timeout=300)
        proc2 = fab("deploy.pgbouncer", "--json", inv=path, timeout=300)
        for p in (proc, proc2):
            assert p.returncode == 0, p.stdout + p.stderr
        states = {h["host"]: h["state"] for p in (proc, proc2) for r in json.loads(p.stdout)
                  for h in r["hosts"]}
        assert states == {"nginx-1": want, "pgbouncer-1": want}
    assert started() == before
    with Runner(inv) as r:
        [ini] = r.run([inv.host("pgbouncer-1")], "grep -c 'default_pool_size = 17' "
                                                   "/etc/sentryfab/pgbouncer/pgbouncer.ini; true")
    assert ini.stdout.strip() == "0"  # back to the lab's own settings


def test_a_worker_killed_mid_load_loses_no_event(cluster):
    inv, *_ = cluster
    t, box = load_in_background(inv, RATE, 10, IDS_DIR)
    time.sleep(3)
    with Runner(inv) as r:
        # SIGKILL the process itself (docker kill would count as a stop): Docker restarts it.
        [k] = r.run([inv.host("worker-1")],
                    "kill -9 $(docker inspect --format '{{.State.Pid}}' sentry-worker-1)")
    assert k.ok, k.stderr
    t.join(timeout=60)
    lr = box["report"]
    assert dict(lr.failed) == {}, lr.as_record()
    v = verify(inv, IDS_DIR / "latest.ids")
    assert (v.counts.stored, v.counts.missing, v.counts.duplicated) == (lr.accepted, 0, 0)


def test_a_second_deploy_is_refused_with_the_holders_details(cluster):
    inv, *_ = cluster
    with Runner(inv) as r, lock.deploy_lock(r, inv, "deploy.web", "canary-holder"):
        proc = fab("deploy.web", f"--tag={LAB2}")
        status = fab("lock.status", "--json")
    assert proc.returncode == 1
    assert "another deploy is running:" in proc.stderr
    assert "deploy.web \"canary-holder\"" in proc.stderr.replace("\n", " ")
    held = json.loads(status.stdout)
    assert held["held"] and held["message"] == "canary-holder"
    assert json.loads(fab("lock.status", "--json").stdout)["held"] is False


def test_the_audit_log_records_deploys_and_rollbacks_on_the_hosts(cluster):
    proc = fab("audit", "--roles=web", "--json", "--lines=50")
    assert proc.returncode == 0
    lines = json.loads(proc.stdout)["web-1"]
    actions = [(x["action"], x["result"], x.get("version")) for x in lines]
    assert ("deploy.web", "ok", LAB2) in actions
    assert ("deploy.web", "failed", BROKEN) in actions
    assert any(a == "rollback.web" and res == "ok" for a, res, _ in actions)
    assert all(x["who"] for x in lines)


def test_worker_scale_changes_the_containers_and_the_inventory(cluster):
    inv, *_ = cluster
    text = LAB_INVENTORY.read_text()
    try:
        proc = deploy("worker.scale", "--processes=1")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        names = fab("run", "--roles=worker", "--json",
                    "docker ps --filter label=sentryfab.role=worker --format '{{.Names}}'")
        assert {r["host"]: r["stdout"].split() for r in json.loads(names.stdout)} == \
            {"worker-1": ["sentry-worker-1"], "worker-2": ["sentry-worker-1"]}
        assert "worker: {image: lab/sentry, tag: 9.1.2, processes: 1," in LAB_INVENTORY.read_text()
    finally:
        assert deploy("worker.scale", "--processes=2").returncode == 0
    assert LAB_INVENTORY.read_text() == text


def test_web_scale_up_and_down_under_load_never_points_nginx_at_a_closed_port(cluster):
    """3 processes per web host, then 2 again, host by host, at RATE events/s: no request
    fails, no event is lost, and nginx never tried a port nothing listened on (hosts not
    reached yet stay listed with what they run; removed ports leave nginx before their
    containers stop)."""
    inv, *_ = cluster
    text = LAB_INVENTORY.read_text()
    since = int(time.time())
    t, box = load_in_background(inv, RATE, 40, IDS_DIR)
    time.sleep(2)
    try:
        up = deploy("web.scale", "--processes=3", "--batch=1")
        assert up.returncode == 0, up.stdout + up.stderr
        with Runner(inv) as r:
            ports = r.run(inv.with_role("web"), "ss -Hltn | awk '{print $4}' | "
                                                "grep -c ':900[0-9]$'")
        assert [x.stdout.strip() for x in ports] == ["3", "3"]
    finally:
        down = deploy("web.scale", "--processes=2", "--batch=1")
    t.join(timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    lr = box["report"]
    with Runner(inv) as r:
        [log] = r.run([inv.host("nginx-1")], f"docker logs --since {since} sentry-nginx-1 2>&1")
    # nginx's errors and every upstream answer that was not a 200 (ustatus=502, 504 ...)
    errors = [x for x in log.stdout.splitlines()
              if "[error]" in x or re.search(r"ustatus=[^ ]*\b[1-9]\d\d\b(?<!200)", x)]
    assert dict(lr.failed) == {}, (lr.latency, errors[:10])
    v = verify(inv, IDS_DIR / "latest.ids")
    assert (v.counts.missing, v.counts.duplicated) == (0, 0)
    refused = [x for x in log.stdout.splitlines() if "Connection refused" in x]
    assert refused == [], refused[:3]
    assert LAB_INVENTORY.read_text() == text


def test_logs_and_exec_reach_the_containers(cluster):
    logs = fab("logs", "db-1", "-n", "5")
    assert logs.returncode == 0 and "db-1 | " in logs.stdout
    ex = fab("exec", "pgbouncer-1", "id -un")
    assert ex.returncode == 0 and "postgres" in ex.stdout
    bad = fab("exec", "pgbouncer-1", "--role=web", "true")
    assert bad.returncode == 2 and "pgbouncer-1 has no role 'web'" in bad.stderr


def test_old_images_are_pruned_keeping_the_newest_and_any_in_use(lab):
    """deploy's prune on a real engine: five images of one repository, made a second apart;
    the oldest is in use by a container; keep 3 -> the three newest and the one in use."""
    from sentryfab.containers import docker

    host = lab.host("web-1")
    repo = "lab/prunetest"
    make = " && ".join(f"tar -cf - --files-from /dev/null | docker import - {repo}:{i} "
                       f">/dev/null && sleep 1.1" for i in range(1, 6))
    with Runner(lab) as r:
        s = r.session(host)
        s.run(f"docker rm -f prunetest >/dev/null 2>&1; docker rmi -f $(docker images -q {repo})"
              " >/dev/null 2>&1; true")
        try:
            assert s.run(make, timeout=60).ok
            assert s.run(f"docker create --name prunetest {repo}:1 true >/dev/null").ok
            assert s.run(docker.prune_images(repo, 3)).ok
            left = s.run(f"docker images {repo} --format '{{{{.Tag}}}}'").stdout.split()
        finally:
            s.run(f"docker rm -f prunetest >/dev/null 2>&1; "
                  f"docker rmi -f $(docker images -q {repo}) >/dev/null 2>&1; true")
    assert sorted(left) == ["1", "3", "4", "5"]
