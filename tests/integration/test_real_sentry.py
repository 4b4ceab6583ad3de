"""The real Sentry 9.1.2 on the lab: its clients, its config, its uid, and no event lost when
the cache Redis fills up.

Everything real: the Sentry image built from PyPI (lab/sentry:9.1.2), deployed by `fab deploy`
with the configs sentryfab renders; events through nginx into Sentry's web processes, the queue
Redis, Sentry's Celery workers, PgBouncer and PostgreSQL; the real `raven` client from PyPI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab import secrets as secrets_mod
from sentryfab.lab import load, sentry_project
from sentryfab.remote import Runner
from sentryfab.shell import join

from .conftest import LAB_INVENTORY, fab, project_key, send_load

WORKER_HOSTS = ("worker-1", "worker-2")


def run_on(inv, host: str, command: str, stdin: bytes | None = None,
           timeout: float = 180) -> str:
    with Runner(inv) as r:
        out = r.session(inv.host(host)).run(command, stdin=stdin, timeout=timeout)
    assert out.ok, f"{host}: {command}: {out.exit_code} {out.stderr} {out.error}"
    return out.stdout


def verify(inv, ids: Path, wait: float = 240) -> load.VerifyReport:
    from sentryfab.failover.discover import cluster_state

    with Runner(inv) as r:
        return load.verify(r, inv.host(cluster_state(r, inv).primary), ids, wait=wait)


def redis_info(inv, role: str, field: str) -> int:
    """One INFO field of a Redis role's container (password on stdin)."""
    password = secrets_mod.load(LAB_INVENTORY.parent / "secrets.yaml").get("redis_password")
    host = inv.with_role(role)[0]
    script = (f'REDISCLI_AUTH="$(cat)" redis-cli --no-auth-warning -h {host.address} INFO '
              f"| tr -d '\\r' | sed -n 's/^{field}://p'")
    out = run_on(inv, host.name, join(["docker", "exec", "-i", f"sentry-{role}-1", "sh", "-c",
                                       script]), stdin=password.encode())
    return int(out.strip() or 0)


def workers(inv, action: str) -> None:
    """docker stop/start every worker container (stop is kept across Docker's restarts)."""
    names = "$(docker ps -aq --filter label=sentryfab.role=worker)"
    for host in WORKER_HOSTS:
        run_on(inv, host, f"docker {action} {names} >/dev/null")


@pytest.fixture(scope="module")
def inv(lab):
    inv = inventory.load(LAB_INVENTORY)
    with Runner(inv) as r:
        up = r.run(inv.with_role("web"), "docker inspect sentry-web-1 >/dev/null")
    if not all(x.ok for x in up):
        done = fab("deploy", timeout=1800)  # an empty lab: build the cluster first
        assert done.returncode == 0, done.stdout + done.stderr
    dsn = fab("lab.dsn")
    assert dsn.returncode == 0, dsn.stderr
    return inv


def test_the_rendered_config_loads_in_the_real_sentry_with_big_ints(inv):
    out = run_on(inv, "web-1", join([
        "docker", "exec", "--user", "999", "sentry-web-1", "sentry", "--config",
        "/etc/sentryfab/web", "exec", "-c",
        "from django.conf import settings; from sentry import options; "
        "print(settings.SENTRY_USE_BIG_INTS, settings.SENTRY_CACHE_OPTIONS, "
        "bool(options.get('system.secret-key')))"]))
    assert out.strip().splitlines()[-1] == "True {'cluster': 'queue'} True"


def test_sentry_runs_as_its_own_uid_not_root(inv):
    for host, name in (("web-1", "sentry-web-1"), ("worker-1", "sentry-worker-1")):
        pid = run_on(inv, host, f"docker inspect --format '{{{{.State.Pid}}}}' {name}").strip()
        # The container's process tree: tini, then Sentry as uid 999 (uWSGI or Celery).
        uids = run_on(inv, host, f"ps -o uid= --ppid {pid} -p {pid}; "
                                 f"for c in $(pgrep -P {pid}); do ps -o uid= --ppid $c; done")
        assert set(uids.split()) == {"999"}, (name, uids)


def test_the_real_raven_client_sends_and_every_event_is_stored(inv, tmp_path):
    raven = pytest.importorskip("raven")
    from raven.transport.http import HTTPTransport

    with Runner(inv) as r:
        from sentryfab.failover.discover import cluster_state

        dsn = sentry_project.dsn(r, inv, inv.host(cluster_state(r, inv).primary))
    # Synchronous transport: the threaded default drops what is queued when a sender exits.
    client = raven.Client(str(dsn), transport=HTTPTransport, raise_send_errors=True,
                          install_sys_hook=False, install_logging_hook=False,
                          enable_breadcrumbs=False)
    ids, alive = [], []
    for i in range(60):
        try:
            raise ValueError(f"sentryfab raven test #{i}")
        except ValueError as e:
            # raven skips an exception it has seen, keyed by id(): keep each one alive, or
            # the next one may reuse its id and be skipped as a repeat.
            alive.append(e)
            ids.append(client.captureException())
        ids.append(client.captureMessage(f"sentryfab raven message #{i}", level="warning"))
    assert len(set(ids)) == 120 and all(len(e) == 32 for e in ids)
    path = tmp_path / "raven.ids"
    path.write_text(load.ids_text([(e, time.time()) for e in ids]))
    v = verify(inv, path)
    assert (v.counts.accepted, v.counts.stored, v.counts.missing, v.counts.duplicated) == \
        (120, 120, 0, 0), v.as_record()


def test_a_wrong_key_is_refused_by_sentry_and_nothing_is_accepted(inv):
    report = load.run_load(load.default_url(inv), 5, 1, key="0" * 32)
    assert report.accepted == 0, report.as_record()
    assert sum(report.failed.values()) == 5 and set(report.failed) <= {"HTTP 401", "HTTP 403"}, \
        report.failed
    assert len(project_key(inv)) == 32


def test_no_accepted_event_is_lost_when_the_cache_redis_fills_up(inv, tmp_path):
    """Workers stopped, N events accepted (a backlog, as in any spike), then twice the cache
    Redis's maxmemory written into it as other keys: it evicts. Workers started: every accepted
    event is stored, because payloads waiting for a worker live on the queue Redis, which never
    evicts (with payloads on the cache Redis, 166 of 200 were lost here)."""
    maxmemory = redis_info(inv, "redis-cache", "maxmemory")
    evicted_before = redis_info(inv, "redis-cache", "evicted_keys")
    queue_evicted_before = redis_info(inv, "redis-queue", "evicted_keys")
    assert maxmemory > 0
    workers(inv, "stop")
    try:
        report = send_load(inv, 20, 10, tmp_path)
        assert report.accepted == report.sent == 200, report.as_record()
        fill = 2 * maxmemory
        password = secrets_mod.load(LAB_INVENTORY.parent / "secrets.yaml").get("redis_password")
        host = inv.with_role("redis-cache")[0]
        program = (
            "import sys, redis\n"
            f"r = redis.Redis(host={host.address!r}, password=sys.stdin.readline().strip())\n"
            "value = b'x' * 65536\n"
            f"for i in range({fill // 65536 + 1}):\n"
            "    r.set('sentryfab:fill:%d' % i, value)\n")
        run_on(inv, host.name, join(["docker", "exec", "-i", "sentry-redis-cache-1", "python3",
                                     "-c", program]), stdin=password.encode() + b"\n",
               timeout=300)
        evicted = redis_info(inv, "redis-cache", "evicted_keys") - evicted_before
        assert evicted > 0, "the fill did not make the cache Redis evict"
        # fab status sees the backlog waiting on the queue Redis: its length, its age, the
        # payload memory, and no payload evicted.
        doc = json.loads(fab("status", "--roles=redis-queue", "--json").stdout)
        queue = doc["hosts"][0]["metrics"]["redis-queue"]
        assert queue["holds_payloads"] == 1 and queue["evicted_keys"] == 0
        assert queue["queue_length"] >= 200, queue
        assert queue["backlog_age_s"] >= 10, queue  # the first event waits since the load began
        assert queue["used_memory"] > 0 and queue["memory_pct"] is not None
    finally:
        workers(inv, "start")
    v = verify(inv, report.ids_file, wait=300)
    assert (v.counts.stored, v.counts.missing, v.counts.duplicated) == (200, 0, 0), \
        v.as_record()
    assert redis_info(inv, "redis-queue", "evicted_keys") == queue_evicted_before
    print(f"\ncache fill: {fill} bytes written, {evicted} keys evicted, 200 of 200 stored")
