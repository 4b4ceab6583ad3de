"""Config push on the lab: real files, real validators, real nginx; nothing mocked."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sentryfab import inventory, secrets
from sentryfab.configs.commands import candidate_path
from sentryfab.configs.context import initial_state
from sentryfab.configs.render import render_all
from sentryfab.containers import docker
from sentryfab.containers.spec import specs_for
from sentryfab.remote import Runner

from .conftest import FAB, REPO, fab, inventory_copy

CANARY = "canary-7f3a9c1e5b2d4f60a8e9"


def expected(inv_path: Path, env: dict | None = None) -> dict[str, dict[str, str]]:
    """host -> {path: sha256} as the renderer produces it for that inventory."""
    inv = inventory.load(inv_path)
    values = secrets.load(Path(inv.extra["secrets"]), environ=env or {})
    rendered = render_all(inv, [h for h in inv.hosts if h.roles], values, initial_state(inv))
    return {h: {f.path: f.sha256 for f in files} for h, files in rendered.items()}


def live_sums(inv_path: Path) -> dict[str, dict[str, str]]:
    """host -> {path: sha256} of the files on the hosts now."""
    inv = inventory.load(inv_path)
    paths = sorted({p for files in expected(inv_path).values() for p in files})
    with Runner(inv) as runner:
        results = runner.run([h for h in inv.hosts if h.roles],
                             f"sha256sum {' '.join(paths)} 2>/dev/null; true")
    out = {}
    for r in results:
        out[r.host.name] = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines()}
    return out


def push(inv: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return fab("config.push", "--json", *args, inv=inv, env=env, timeout=300)


def test_push_to_every_role_then_a_second_push_uploads_nothing(lab, tmp_path):
    inv = inventory_copy(tmp_path)
    first = push(inv)
    assert first.returncode == 0, first.stdout + first.stderr
    assert live_sums(inv) == expected(inv)
    second = push(inv)
    assert second.returncode == 0, second.stdout
    assert all(r["updated"] == [] for r in json.loads(second.stdout))


def test_changing_one_var_changes_only_the_files_it_affects(lab, tmp_path):
    base = inventory_copy(tmp_path)
    assert push(base).returncode == 0
    before = expected(base)
    inv = inventory_copy(tmp_path, lambda d: d["roles"]["nginx"].update(worker_connections=2048))
    proc = push(inv)
    assert proc.returncode == 0, proc.stdout
    updated = {r["host"]: r["updated"] for r in json.loads(proc.stdout)}
    assert updated == {h: (["/etc/sentryfab/nginx/nginx.conf"] if h == "nginx-1" else [])
                       for h in before}
    assert push(base).returncode == 0  # back to the lab's own settings


@pytest.fixture
def running_nginx(lab, tmp_path):
    """The lab's nginx, started from its spec with the pushed config, removed afterwards."""
    inv_path = inventory_copy(tmp_path)
    assert push(inv_path, "--roles=nginx").returncode == 0
    inv = inventory.load(inv_path)
    host = inv.host("nginx-1")
    [spec] = specs_for(inv, host, "nginx")
    with Runner(inv) as runner:
        s = runner.session(host)
        s.run(docker.replace(spec), check=True)
        for _ in range(50):
            if s.run("curl -s -o /dev/null -w '%{http_code}' http://10.231.0.10/nginx_status"
                     ).stdout.strip() == "200":
                break
            time.sleep(0.1)
        yield inv_path, s
        # Left running: it is the cluster's nginx (the next deploy relabels it if needed).


def test_config_rejected_by_nginx_t_is_not_activated_and_nginx_keeps_serving(running_nginx,
                                                                           tmp_path):
    good, s = running_nginx
    live_before = s.run("sha256sum /etc/sentryfab/nginx/nginx.conf").stdout
    # A value of the wrong type never gets that far: refused before rendering, exit 2.
    typo = inventory_copy(tmp_path, lambda d: d["roles"]["nginx"].update(max_fails="two"))
    refused = push(typo, "--roles=nginx")
    assert refused.returncode == 2 and "roles/nginx/max_fails" in refused.stderr, refused.stderr
    # A whole number past what nginx can hold (8.8e12 MiB) passes our types; nginx -t says no.
    bad = inventory_copy(tmp_path, lambda d: d["roles"]["web"].update(
        max_body_mb=9_000_000_000_000))
    proc = push(bad, "--roles=nginx")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [r] = json.loads(proc.stdout)
    assert r["status"] == "failed"
    assert "rejected by nginx check" in r["error"]
    assert '"client_max_body_size" directive invalid value' in r["error"], r["error"]
    assert "nothing activated on this host" in r["error"]
    assert s.run("sha256sum /etc/sentryfab/nginx/nginx.conf").stdout == live_before
    assert s.run(f"test -e {candidate_path('/etc/sentryfab/nginx/nginx.conf')}").exit_code == 1
    code = s.run("curl -s -o /dev/null -w '%{http_code}' http://10.231.0.10/nginx_status").stdout
    assert code == "200"


def test_a_canary_secret_never_appears_in_diff_or_push_output(lab, tmp_path):
    inv = inventory_copy(tmp_path)
    env = {"SENTRYFAB_SECRET_DB_PASSWORD": CANARY, "SENTRYFAB_SECRET_REDIS_PASSWORD": CANARY}
    try:
        diff = fab("config.diff", inv=inv, env=env, timeout=300)
        assert diff.returncode == 0, diff.stderr
        # The changed secret lines are there, masked, or the file is said to differ in
        # secret values only.
        assert "********" in diff.stdout or "only secret values differ" in diff.stdout
        pushed = fab("config.push", inv=inv, env=env, timeout=300)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        for out in (diff.stdout, diff.stderr, pushed.stdout, pushed.stderr):
            assert CANARY not in out
            assert "SCRAM-SHA-256$" not in out
    finally:
        assert push(inv).returncode == 0  # the lab's own secrets again


def test_secret_files_are_0600_and_owned_by_the_service_user(lab, tmp_path):
    inv = inventory_copy(tmp_path)
    assert push(inv).returncode == 0
    proc = fab("run", "--json", "--roles=web,pgbouncer,redis",
               "stat -c '%a %u %n' /etc/sentryfab/*/sentry.conf.py /etc/sentryfab/*/config.yml "
               "/etc/sentryfab/*/userlist.txt /etc/sentryfab/*/redis.conf 2>/dev/null; true",
               inv=inv)
    lines = [line for r in json.loads(proc.stdout) for line in r["stdout"].splitlines()]
    assert len(lines) >= 6
    for line in lines:
        mode, uid, path = line.split()
        assert mode == "600", line
        assert uid != "0", line


def test_a_push_killed_midway_leaves_whole_files_and_the_next_push_finishes(lab, tmp_path):
    base = inventory_copy(tmp_path)
    assert push(base).returncode == 0
    old = expected(base)
    inv = inventory_copy(tmp_path, lambda d: d.update(statsd="10.231.0.1:8125") or
                         d["roles"]["nginx"].update(worker_connections=3000) or
                         d["roles"]["db"].update(work_mem="8MB") or
                         d["roles"]["pgbouncer"].update(default_pool_size=21))
    new = expected(inv)
    proc = subprocess.Popen([FAB, "config.push", "--parallel=2"], cwd=REPO,
                            env={"SENTRYFAB_INVENTORY": str(inv), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    live = live_sums(inv)
    changed = 0
    for host, files in new.items():
        for path, digest in files.items():
            assert live[host].get(path) in (old[host][path], digest), (host, path)
            changed += live[host].get(path) == digest != old[host][path]
    assert 0 < changed  # it was really cut off midway ...
    assert live != new  # ... not after the end
    # SIGKILL runs no finally: the lock stays, and says its holder is gone and how to free it.
    held = push(inv)
    assert held.returncode == 1 and "stale: its process" in held.stderr, held.stderr
    assert fab("lock.release", "--yes", inv=inv).returncode == 0
    again = push(inv)
    assert again.returncode == 0, again.stdout
    assert live_sums(inv) == new
    reloaded = {r["host"] for r in json.loads(again.stdout) if r["reloaded"]}
    assert reloaded  # pending applies were finished by the second run
    assert push(base).returncode == 0


def test_rollback_restores_the_previous_version(lab, tmp_path):
    base = inventory_copy(tmp_path)
    assert push(base).returncode == 0
    inv = inventory_copy(tmp_path, lambda d: d["roles"]["nginx"].update(worker_connections=1234))
    assert push(inv, "--roles=nginx").returncode == 0
    assert live_sums(inv)["nginx-1"] == expected(inv)["nginx-1"]
    back = fab("config.rollback", "--roles=nginx", "--json", inv=inv)
    assert back.returncode == 0, back.stdout
    assert live_sums(inv)["nginx-1"] == expected(base)["nginx-1"]


def test_missing_secret_stops_before_any_host_is_touched(lab, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    empty.chmod(0o600)
    inv = inventory_copy(tmp_path, lambda d: d.update(secrets=str(empty)))
    proc = fab("config.push", inv=inv)
    assert proc.returncode == 2
    assert "secret 'db_password' is missing" in proc.stderr
    assert "SENTRYFAB_SECRET_DB_PASSWORD" in proc.stderr


def test_world_readable_secrets_file_is_refused(lab, tmp_path):
    loose = tmp_path / "loose.yaml"
    loose.write_text("db_password: x\n")
    loose.chmod(0o644)
    inv = inventory_copy(tmp_path, lambda d: d.update(secrets=str(loose)))
    proc = fab("config.diff", inv=inv)
    assert proc.returncode == 2
    assert f"{loose}: mode 0644 lets other users read the secrets; run: chmod 600 {loose}" \
        in proc.stderr.replace("\n", " ")
