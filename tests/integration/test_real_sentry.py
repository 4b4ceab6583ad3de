"""The real Sentry 9.1.2 on the lab: its clients, its config, its uid, and no event lost when
the cache Redis fills up.

Everything real: the Sentry image built from PyPI (lab/sentry:9.1.2), deployed by `fab deploy`
with the configs sentryfab renders; events through nginx into Sentry's web processes, the queue
Redis, Sentry's Celery workers, PgBouncer and PostgreSQL; the real `raven` client from PyPI.
"""

from __future__ import annotations

import json
import re
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
    from sentryfab.procedures.discover import cluster_state

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
        from sentryfab.procedures.discover import cluster_state

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


# --- files shared by every Sentry host, and large uploads ---------------------------------

ORG, PROJECT = "sentry", "internal"  # what Sentry's first `upgrade` makes


def api_token(inv) -> str:
    """A Sentry API token of the organization's owner, made with Sentry's own models."""
    from sentryfab.procedures.discover import cluster_state

    with Runner(inv) as r:
        sentry_project.ensure_owner(r, inv, inv.host(cluster_state(r, inv).primary))
    script = ("from sentry.models import ApiToken, User\n"
              "u = User.objects.filter(is_superuser=True).order_by('id')[0]\n"
              "t = ApiToken.objects.create(user=u, scope_list=['project:releases', "
              "'project:write', 'project:read', 'org:read'])\n"
              "print('TOKEN=' + t.token)\n")
    out = run_on(inv, "web-1", join(["docker", "exec", "--user", "999", "sentry-web-1",
                                     "sentry", "--config", "/etc/sentryfab/web", "exec",
                                     "-c", script]))
    [token] = [x[6:] for x in out.splitlines() if x.startswith("TOKEN=")]
    return token


def api(base: str, token: str, method: str, path: str, body: bytes | None = None,
        content_type: str = "application/json", timeout: float = 120) -> tuple[int, bytes]:
    """One request to Sentry's web API at `base` (a web process or nginx)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(base + path, data=body, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body with one file, as sentry-cli sends a release file."""
    boundary = "sentryfab" + "".join(f"{b:02x}" for b in __import__("os").urandom(8))
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name.rsplit('/', 1)[-1]}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def new_release(base: str, token: str) -> str:
    version = f"sentryfab-{int(time.time() * 1000)}"
    status, out = api(base, token, "POST", f"/api/0/organizations/{ORG}/releases/",
                      json.dumps({"version": version, "projects": [PROJECT]}).encode())
    assert status == 201, (status, out[:300])
    return version


def upload(base: str, token: str, version: str, name: str, data: bytes) -> tuple[int, dict]:
    body, ctype = multipart(name, data)
    status, out = api(base, token, "POST",
                      f"/api/0/organizations/{ORG}/releases/{version}/files/", body, ctype)
    return status, (json.loads(out) if status == 201 else {"raw": out[:300]})


def download(base: str, token: str, version: str, file_id: str) -> tuple[int, bytes]:
    return api(base, token, "GET", f"/api/0/organizations/{ORG}/releases/{version}/files/"
                                   f"{file_id}/?download=1")


def test_a_release_file_uploaded_through_web_1_is_read_through_web_2(inv):
    """Sentry's release-files API, straight at one web process of each host: what web-1
    stored is served by web-2, from the shared filestore, and again after web-2's
    containers are replaced by a redeploy."""
    token = api_token(inv)
    web1, web2 = (f"http://{inv.host(h).address}:9000" for h in ("web-1", "web-2"))
    version = new_release(web1, token)
    data = b"//# sourceMappingURL=app.js.map\n" + __import__("os").urandom(64 * 1024)
    status, meta = upload(web1, token, version, "~/static/app.js", data)
    assert status == 201, meta
    assert download(web2, token, version, meta["id"]) == (200, data)
    # The blob is a file in the shared folder, owned by Sentry's uid, not in a container.
    listing = run_on(inv, "worker-1", "find /srv/sentry-files -type f -size +60k "
                                      "-printf '%u %s\\n'")
    assert any(line.split()[0] in ("999", "sentry") for line in listing.splitlines()), listing
    # New containers on web-2 (removed, then deployed again): the file is still served.
    run_on(inv, "web-2", "docker rm -f $(docker ps -aq --filter label=sentryfab.role=web) "
                         ">/dev/null")
    redeploy = fab("deploy.web", "--hosts", "web-2", timeout=600)
    assert redeploy.returncode == 0, redeploy.stdout + redeploy.stderr
    assert download(web2, token, version, meta["id"]) == (200, data)


def test_a_25_mib_upload_through_nginx_is_taken_and_a_larger_one_refused_by_nginx(inv):
    """client_max_body_size and uWSGI's limit-post at 40 MiB (at least the 32 MiB Sentry's
    chunk upload advertises): 25 MiB goes through nginx into Sentry and back out intact;
    48 MiB is refused by nginx with 413 before it reaches a web process."""
    import os

    token = api_token(inv)
    nginx = f"http://{inv.host('nginx-1').address}"
    version = new_release(nginx, token)
    data = os.urandom(25 * 1024 * 1024)
    status, meta = upload(nginx, token, version, "~/static/vendor.js.map", data)
    assert status == 201, meta
    assert download(nginx, token, version, meta["id"]) == (200, data)
    status, meta = upload(nginx, token, version, "~/static/huge.js.map",
                          os.urandom(48 * 1024 * 1024))
    assert status == 413, meta


# --- retention ----------------------------------------------------------------------------

def test_the_daily_cleanup_deletes_exactly_the_events_older_than_the_retention(inv, tmp_path):
    """30 events stored; 12 of them backdated past the lab's 90-day retention (their row and
    their body, as if received 100 days ago); `fab cron.cleanup` runs Sentry's own
    `cleanup --days 90`: exactly those 12 are gone, the other 18 are all there, and status
    shows the run."""
    from sentryfab.procedures.discover import cluster_state

    report = send_load(inv, 10, 3, tmp_path)
    assert report.accepted == 30, report.as_record()
    v = verify(inv, report.ids_file)
    assert v.counts.stored == 30
    ids = [eid for eid, _ in load.read_ids(report.ids_file)]
    old, kept = ids[:12], ids[12:]
    listed = ", ".join(f"'{e}'" for e in old)
    backdate = (
        f"UPDATE sentry_message SET datetime = now() - interval '100 days' "
        f"WHERE project_id = 1 AND message_id IN ({listed});\n"
        f"UPDATE nodestore_node SET timestamp = now() - interval '100 days' "
        f"WHERE id IN ({', '.join(f'md5({chr(39)}1:{e}{chr(39)})' for e in old)});\n")
    with Runner(inv) as r:
        primary = inv.host(cluster_state(r, inv).primary)
    run_on(inv, primary.name, load.psql_command(load.DB_CONTAINER), stdin=backdate.encode())

    done = fab("cron.cleanup", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    def present(event_ids: list[str]) -> int:
        listed = ", ".join(f"'{e}'" for e in event_ids)
        sql = (f"SELECT count(*) FROM sentry_message WHERE project_id = 1 "
               f"AND message_id IN ({listed});\n")
        return int(run_on(inv, primary.name, load.psql_command(load.DB_CONTAINER),
                          stdin=sql.encode()).strip())

    assert (present(old), present(kept)) == (0, 18)
    shown = fab("status", "--roles=cron", "--json")
    facts = json.loads(shown.stdout)
    [cron] = [h for h in facts["hosts"] if h["host"] == "worker-1"]
    assert cron["metrics"]["cron"]["cleanup_failed_in_a_row"] == 0, cron
    assert cron["metrics"]["cron"]["cleanup_hours_since_run"] < 1, cron
    assert any("retention: sentry cleanup --days 90 daily at 03:00 UTC; last ran 0 h ago, ok"
               in n for n in cron["notes"]), cron["notes"]


# --- ingestion errors in fab status -------------------------------------------------------

def oversized_store_post(inv, key: str, size: int) -> int:
    """A store request announcing `size` bytes: nginx answers 413 from the headers alone."""
    import socket

    addr = inv.host("nginx-1").address
    with socket.create_connection((addr, 80), timeout=30) as s:
        s.sendall((f"POST /api/1/store/ HTTP/1.1\r\nHost: {addr}\r\n"
                   f"X-Sentry-Auth: Sentry sentry_version=7, sentry_key={key}, "
                   f"sentry_client=sentryfab-test/1\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {size}\r\nConnection: close\r\n\r\n").encode())
        head = s.recv(4096).decode(errors="replace")
    return int(head.split()[1])


def test_status_names_each_ingestion_error_on_its_nginx_host(inv):
    """Real clients at nginx-1 within one minute: raven 6.10 (stored), sentry-sdk 2.x (its
    envelopes reach an endpoint Sentry 9.1.2 lacks), bodies over the 40 MiB limit (413).
    `fab status` names each cause on nginx-1 with the table's severities."""
    import raven
    import sentry_sdk
    from raven.transport.http import HTTPTransport

    key = project_key(inv)
    dsn = f"http://{key}@{inv.host('nginx-1').address}/1"
    client = raven.Client(dsn, transport=HTTPTransport, raise_send_errors=True)
    for i in range(20):
        client.captureMessage(f"ingestion test {i}")
    sentry_sdk.init(dsn=dsn, default_integrations=False)
    try:
        for i in range(5):
            sentry_sdk.capture_message(f"envelope test {i}")
        sentry_sdk.flush(timeout=30)
    finally:
        sentry_sdk.get_client().close(timeout=5)
    assert [oversized_store_post(inv, key, 48 * 1024 * 1024) for _ in range(5)] == [413] * 5

    shown = fab("status", "--roles=nginx", "--json")
    facts = json.loads(shown.stdout)
    [lb] = facts["hosts"]
    m = lb["metrics"]["nginx"]
    assert m["ingest_too_large_per_s"] > 0 and m["ingest_missing_endpoint_per_s"] > 0, m
    assert m["ingest_2xx_per_s"] > 0, m
    msgs = {p["message"]: p["severity"] for p in lb["problems"]}
    # sentry-sdk sends an envelope per event and may add its own (client reports): >= 5.
    # Sentry 9.1.2 answers them 403 (its catch-all API route, not CSRF-exempt), not 404.
    [envelope] = [t for t in msgs if re.match(r"\d+ requests to /api/<id>/envelope/ in the "
                                             r"last minute, answered 403: ", t)]
    assert int(envelope.split()[0]) >= 5 and "sentry-sdk" in envelope, envelope
    assert msgs[envelope] == "warning", msgs
    # The error rate over the last minute (earlier tests' traffic counts too) with the
    # table's severity: above 10% critical, above 1% warning; both causes named.
    [errors] = [t for t in msgs if t.startswith("ingestion errors ")]
    pct = float(errors.split()[2].rstrip("%"))
    assert msgs[errors] == ("critical" if pct > 10 else "warning"), msgs
    assert "too large (413) 5" in errors and "endpoint Sentry 9.1.2 lacks " in errors, errors
    assert shown.returncode == (2 if pct > 10 else 1), shown.stdout[-500:]


# --- counters and graphs ----------------------------------------------------------------

def test_the_project_stats_count_every_accepted_event(inv, tmp_path):
    """SENTRY_TSDB is Sentry's Redis TSDB: after a load, Sentry's own project stats API
    (what its graphs draw) counts exactly the events nginx accepted, in 10 s buckets."""
    time.sleep(10 - time.time() % 10 + 0.5)  # a fresh 10 s bucket: only this test's events
    since = int(time.time()) // 10 * 10
    report = send_load(inv, 10, 4, tmp_path)
    assert report.accepted == 40 and report.failures == 0, report.as_record()
    time.sleep(1)
    token = api_token(inv)
    nginx = f"http://{inv.host('nginx-1').address}"
    status, out = api(nginx, token, "GET", f"/api/0/projects/{ORG}/{PROJECT}/stats/"
                                           f"?stat=received&resolution=10s&since={since}"
                                           f"&until={int(time.time()) + 10}")
    assert status == 200, out[:300]
    points = json.loads(out)
    assert sum(n for at, n in points if at >= since) == report.accepted, points


# --- disk forecast --------------------------------------------------------------------

def test_a_small_data_disk_on_one_db_host_makes_capacity_exit_1_and_name_it(inv):
    """db-2's data directory gets a 256 MiB filesystem of its own, in db-2's mount namespace
    (its running PostgreSQL keeps the disk it was started on: Docker's mounts are private):
    `fab capacity` measures it over SSH, finds it cannot even hold the WAL kept for
    replicas, exits 1 and names db-2; with the filesystem gone, db-2 is no longer first."""
    from sentryfab.containers.postgres import DATA_DIR

    before = fab("capacity", "--json", timeout=300)
    run_on(inv, "db-2", f"mount -t tmpfs -o size=256m sentryfab-small-disk {DATA_DIR}")
    try:
        small = fab("capacity", "--json", timeout=300)
    finally:
        run_on(inv, "db-2", f"umount {DATA_DIR}")
    data = json.loads(small.stdout)
    assert small.returncode == 1, small.stdout[-2000:]
    disks = {d["host"]: d for d in data["forecast"]["disks"]}
    # room = what that filesystem has free + what the database and its WAL use now: db-2's
    # free part is the 256 MiB filesystem, db-1's the machine's disk. (The database and its
    # WAL are about the same on both; their size is not the test's business: with archiving
    # forcing a WAL segment every archive_timeout, pg_wal holds up to wal_keep_size.)
    assert disks["db-2"]["room"] + 1024 ** 3 < disks["db-1"]["room"], disks
    assert data["forecast"]["first_disk"]["host"] == "db-2", data["forecast"]
    assert data["forecast"]["runs_out_within_retention"] is True
    assert "db-2 data disk" in data["over"], data["over"]
    after = json.loads(fab("capacity", "--json", timeout=300).stdout)
    assert "db-2 data disk" not in after["over"] and before.returncode in (0, 1)


# --- throughput per tier ------------------------------------------------------------------

def test_capacity_tiers_measures_one_process_of_each_tier_and_capacity_uses_it(inv, tmp_path):
    """`fab capacity.tiers` on the real Sentry: events/s of one web process and of one worker
    process, kept; `fab capacity` then plans each tier with them and names the first to run
    out (the lab's workers: one process stores far fewer events/s than one web process
    accepts). Every worker container runs again afterwards."""
    env = {"XDG_STATE_HOME": str(tmp_path)}
    measured = fab("capacity.tiers", "--web-seconds", "2", "--backlog", "60", "--json",
                   env=env, timeout=900)
    assert measured.returncode == 0, measured.stdout[-2000:] + measured.stderr[-2000:]
    rates = json.loads(measured.stdout)
    assert rates["web"] > 5 and rates["worker"] > 1 and rates["worker_stored"] == 60, rates
    kept = json.loads((tmp_path / "sentryfab" / "probe" / "lab.json").read_text())
    assert kept["tiers"]["worker"]["how"] == "capacity.tiers"
    assert kept["tiers"]["worker"]["settings"] == {"concurrency": 1}
    running = run_on(inv, "worker-1", "docker ps -q --filter label=sentryfab.role=worker "
                                      "| wc -l") + run_on(inv, "worker-2", "docker ps -q "
                                      "--filter label=sentryfab.role=worker | wc -l")
    assert running.split() == ["2", "2"]
    shown = fab("capacity", "--json", "--window", "0", env=env, timeout=300)
    data = json.loads(shown.stdout)
    tiers = {x["component"]: x for x in data["lines"] if x["tier"] == "throughput"}
    assert tiers["worker tier"]["limit"] == pytest.approx(4 * rates["worker"], rel=0.01)
    assert tiers["web tier"]["limit"] == pytest.approx(4 * rates["web"], rel=0.01)
    assert data["forecast"]["first_tier"]["tier"] == "worker tier", data["forecast"]


def test_a_payload_gone_before_its_worker_came_is_critical_on_the_worker_host(inv, tmp_path):
    """Workers stopped, 3 events accepted, their payloads deleted from the payload Redis
    (what an eviction or a 60-min wait would do), workers started: the real workers log
    `preprocess.failed.empty` and `fab status` counts exactly 3 missing payloads, critical,
    on the worker hosts."""
    started = time.monotonic()
    try:
        password = secrets_mod.load(LAB_INVENTORY.parent / "secrets.yaml").get("redis_password")
        host = inv.with_role("redis-queue")[0]
        # Sentry's cache keys: prefix 'c', version 1, then 'e:<event_id>:<project>'.
        delete = (f'REDISCLI_AUTH="$(cat)" redis-cli --no-auth-warning -h {host.address} '
                  f"--scan --pattern 'c:1:e:*' | while read -r k; do REDISCLI_AUTH=\"$PW\" "
                  f"redis-cli --no-auth-warning -h {host.address} DEL \"$k\" >/dev/null; "
                  "echo deleted; done")
        delete = "PW=$(cat); " + delete.replace('REDISCLI_AUTH="$(cat)"', 'REDISCLI_AUTH="$PW"')
        workers(inv, "stop")
        try:
            report = send_load(inv, 3, 1, tmp_path)
            assert report.accepted == 3, report.as_record()
            out = run_on(inv, host.name, join(["docker", "exec", "-i", "sentry-redis-queue-1",
                                               "sh", "-c", delete]), stdin=password.encode())
            assert out.split().count("deleted") == 3, out
        finally:
            workers(inv, "start")
        deadline = time.monotonic() + 120
        while True:
            doc = json.loads(fab("status", "--roles=worker", "--json").stdout)
            counts = {h["host"]: h["metrics"]["worker"]["payloads_missing"] for h in doc["hosts"]}
            if sum(counts.values()) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert sum(counts.values()) == 3, counts
        for h in doc["hosts"]:
            if counts[h["host"]]:
                [p] = [p for p in h["problems"] if "payloads found missing" in p["message"]]
                assert p["severity"] == "critical" and "preprocess.failed.empty" in p["message"], p
    finally:
        # The workers logged the missing payloads: status counts them for 60 s. The next
        # tests (test_status) must not see them, whatever happened here.
        time.sleep(max(0.0, started + 75 - time.monotonic()))
