"""`fab status` on the lab: healthy, then one fault at a time (each repaired before the next).

Every fault is reported on the host it is on, with its severity and exit code, and every other
host stays green. The lab's 40 hosts and this test runner share one machine's CPUs: the
inventory copy the tests use turns off the machine-wide load, SSH latency and /_health/ time
levels, which measure that machine, not the cluster.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from sentryfab import inventory
from sentryfab.containers import docker
from sentryfab.containers.spec import specs_for
from sentryfab.remote import Runner
from sentryfab.shell import join
from sentryfab.tasks._common import load_secrets

from .conftest import FAB, LAB_INVENTORY, REPO, fab

pytestmark = pytest.mark.lab

SHARED_MACHINE = {"load_per_cpu": [None, None], "ssh_ms": [None, None],
                  "health_ms": [None, None]}
BALLAST = "sentryfab-status-test:ballast"
PROBE_TABLE = "sentryfab_status_probe"


# -- helpers ---------------------------------------------------------------------------------

def write_copy(path: Path, edit=None) -> Path:
    """The lab inventory with absolute paths and the shared-machine levels off (plus `edit`)."""
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    lab_dir = LAB_INVENTORY.parent
    for key in ("key_file", "known_hosts"):
        data["ssh"][key] = str(lab_dir / data["ssh"][key])
    data["secrets"] = str(lab_dir / data["secrets"])
    data["thresholds"] = dict(SHARED_MACHINE)
    if edit:
        edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def copy(lab, tmp_path_factory) -> Path:
    return write_copy(tmp_path_factory.mktemp("status") / "hosts.yaml")


@pytest.fixture(scope="module")
def inv(copy) -> inventory.Inventory:
    return inventory.load(copy)


def status(copy: Path, *args: str) -> tuple[int, dict]:
    """`fab status --json` (or a role's status): exit code and the document."""
    r = fab(*(args or ("status",)), "--json", inv=copy)
    assert r.stdout.strip(), r.stderr
    return r.returncode, json.loads(r.stdout)


def by_host(doc: dict) -> dict[str, dict]:
    return {h["host"]: h for h in doc["hosts"]}


def problems(record: dict) -> list[tuple[str, str]]:
    return [(p["severity"], p["message"]) for p in record["problems"]]


def others_green(doc: dict, *faulty: str) -> None:
    bad = {h: problems(r) for h, r in by_host(doc).items() if h not in faulty and r["problems"]}
    assert bad == {}


def wait_healthy(copy: Path, timeout: float = 120) -> dict:
    """Poll until a round is all green (after a repair); fail with the last round if never."""
    deadline = time.monotonic() + timeout
    while True:
        code, doc = status(copy)
        if code == 0 or time.monotonic() > deadline:
            assert code == 0, [(h, problems(r)) for h, r in by_host(doc).items() if r["problems"]] \
                + [doc["cluster_findings"]["problems"]]
            return doc
        time.sleep(2)


def run_on(inv: inventory.Inventory, host: str, command: str, stdin: bytes | None = None,
           timeout: float = 120) -> str:
    with Runner(inv) as runner:
        out = runner.session(inv.host(host)).run(command, stdin=stdin, timeout=timeout)
    assert out.ok, f"{host}: {command}: {out.exit_code} {out.stderr} {out.error}"
    return out.stdout


def psql(inv: inventory.Inventory, host: str, sql: str) -> str:
    return run_on(inv, host, join(["docker", "exec", "--user", "postgres", "sentry-db-1", "psql",
                                   "-X", "-Atq", "-d", "postgres", "-c", sql]))


@pytest.fixture(scope="module", autouse=True)
def healthy_first(copy):
    """Start from a healthy cluster (waiting a while for another test's repair to finish).

    Never repaired from here: after someone else's failover, `fab deploy` could start the
    fenced old primary next to the new one; `fab db.rejoin` is the repair for that.
    """
    wait_healthy(copy, timeout=300)


# -- the healthy cluster ---------------------------------------------------------------------

def test_healthy_cluster_exits_0_with_one_record_per_host(copy, inv):
    code, doc = status(copy)
    assert code == 0 and doc["severity"] == "ok" and doc["exit_code"] == 0
    assert [h["host"] for h in doc["hosts"]] == [h.name for h in inv.hosts]
    found = doc["cluster_findings"]
    assert found["primary"] in ("db-1", "db-2") and not found["split_brain"]
    assert found["cron_count"] == 1 and found["problems"] == []
    hosts = by_host(doc)
    assert set(hosts["scale-1"]["metrics"]) == {"host"}
    assert {"load1", "mem_pct", "data_disk_pct", "log_disk_pct", "fds_pct", "ssh_ms"} \
        <= set(hosts["scale-1"]["metrics"]["host"])
    assert hosts["web-1"]["metrics"]["web"]["processes_up"] == 2
    queue = hosts["redis-queue-1"]["metrics"]["redis-queue"]
    assert queue["holds_payloads"] == 1 and queue["evicted_keys"] == 0
    assert hosts["nginx-1"]["metrics"]["nginx"]["upstreams_down"] == 0
    replica = next(h for h in ("db-1", "db-2") if h != found["primary"])
    assert hosts[replica]["metrics"]["db"]["is_primary"] == 0
    assert hosts["pgbouncer-1"]["metrics"]["pgbouncer"]["points_at_primary"] == 1


def test_table_groups_by_role_and_ends_with_a_summary(copy):
    r = fab("status", inv=copy)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "lab: status"
    for role in ("db", "pgbouncer", "redis-queue", "web", "worker", "cron", "nginx", "no role"):
        assert any(line.strip() == role for line in lines), role
    assert any(line.split()[:1] == ["scale-[1-30]"] and "30 hosts, all ok" in line
               for line in lines)
    assert lines[-1].startswith("lab: 41 hosts, 41 ok; primary db-")


def test_role_status_shows_only_that_role_with_details(copy):
    code, doc = status(copy, "db.status")
    assert code == 0 and [h["host"] for h in doc["hosts"]] == ["db-1", "db-2"]
    roles = {h["host"]: h["details"]["db"]["node"]["recovery"] for h in doc["hosts"]}
    assert sorted(roles.values()) == ["false", "true"]
    primary = next(h for h, rec in roles.items() if rec == "false")
    topo = doc["topology"]  # discovered, with where each PgBouncer points
    assert topo["primary"] == primary
    assert [(b["host"], b["points_to"]) for b in topo["pgbouncers"]] == [("pgbouncer-1", primary)]
    shown = fab("db.status", inv=copy)
    assert shown.returncode == 0 and "database topology" in shown.stdout
    for task in ("redis.status", "pgbouncer.status", "web.status", "worker.status",
                 "nginx.status", "cron.status"):
        r = fab(task, inv=copy)
        assert r.returncode == 0, (task, r.stdout, r.stderr)


def test_selection_narrows_the_round(copy):
    code, doc = status(copy, "status", "--roles=pgbouncer")
    assert code == 0 and [h["host"] for h in doc["hosts"]] == ["pgbouncer-1"]
    # The databases were asked too (to know the primary), but are not shown.
    assert doc["cluster_findings"]["primary"] in ("db-1", "db-2")


# -- one fault at a time -------------------------------------------------------------------

def test_a_stopped_web_process(copy, inv):
    run_on(inv, "web-1", docker.stop("sentry-web-2", 5))
    try:
        code, doc = status(copy)
        hosts = by_host(doc)
        assert code == 2
        assert problems(hosts["web-1"]) == [("critical", "sentry-web-2 exited (exit code 0)")]
        assert hosts["web-1"]["metrics"]["web"]["processes_up"] == 1
        # nginx cannot reach it either, but that is web-1's problem, already reported there.
        assert hosts["nginx-1"]["notes"] == ["upstream 10.231.0.11:9001 (web-1) down, reported "
                                             "on web-1"]
        others_green(doc, "web-1")
        table = fab("status", inv=copy)
        assert "web-1: sentry-web-2 exited (exit code 0)" in table.stdout
        assert table.returncode == 2
    finally:
        run_on(inv, "web-1", join(["docker", "start", "sentry-web-2"]))
    wait_healthy(copy)


def test_the_queue_redis_past_its_memory_warning(copy, inv, tmp_path):
    _, doc = status(copy, "redis.status")
    m = by_host(doc)["redis-queue-1"]["metrics"]["redis-queue"]
    # A warning level 4 MB above what it holds now, then 8 MB written: past it, for real.
    warn = round(100 * (m["used_memory"] + 4_000_000) / m["maxmemory"], 3)

    def lowered(data: dict) -> None:
        data["roles"]["redis-queue"]["thresholds"] = {"memory_pct": [warn, 50]}

    low = write_copy(tmp_path / "hosts.yaml", lowered)
    code, doc = status(low)
    assert code == 0, "the lowered level must not be crossed before the queue fills"
    host = inv.host("redis-queue-1")
    password = load_secrets(inv).get("redis_password").encode()
    cli = join(["redis-cli", "--no-auth-warning", "-h", host.address, "-p", "6379"])

    def redis(*args: str) -> str:
        inner = f'REDISCLI_AUTH="$(cat)"; export REDISCLI_AUTH; {cli} {join(args)}'
        return run_on(inv, "redis-queue-1", join(["docker", "exec", "-i", "sentry-redis-queue-1",
                                                  "sh", "-c", inner]), stdin=password)

    redis("SETRANGE", BALLAST, "8000000", "x")
    try:
        code, doc = status(low)
        hosts = by_host(doc)
        assert code == 1 and doc["severity"] == "warning"
        [(severity, message)] = problems(hosts["redis-queue-1"])
        assert severity == "warning"
        assert message.startswith("payload memory (") and f"(warning > {warn:.2f}%)" in message
        others_green(doc, "redis-queue-1")
    finally:
        redis("DEL", BALLAST)
    assert status(low)[0] == 0


def test_replication_stopped_on_the_replica(copy, inv):
    _, doc = status(copy, "db.status")
    primary = doc["cluster_findings"]["primary"]
    replica = next(h for h in ("db-1", "db-2") if h != primary)
    psql(inv, replica, "select pg_wal_replay_pause()")
    try:
        # About 25 MB of WAL the replica receives but does not replay.
        psql(inv, primary, f"create table {PROBE_TABLE} as select g, repeat('x', 500) as pad "
                           "from generate_series(1, 45000) g")
        time.sleep(1)
        code, doc = status(copy)
        hosts = by_host(doc)
        assert code == 2
        found = problems(hosts[replica])
        assert found[0] == ("warning", "WAL replay is paused (SELECT pg_wal_replay_resume() "
                                       "resumes it)")
        assert found[1][0] == "critical" and found[1][1].startswith("replication lag ")
        assert found[1][1].endswith("MB (critical > 16 MB)")
        assert hosts[replica]["metrics"]["db"]["replication_lag_bytes"] > 16_000_000
        others_green(doc, replica)
    finally:
        psql(inv, primary, f"drop table if exists {PROBE_TABLE}")
        psql(inv, replica, "select pg_wal_replay_resume()")
    wait_healthy(copy)


def test_pgbouncer_pointed_at_the_replica(copy, inv):
    from sentryfab.configs.context import ClusterState
    from sentryfab.configs.render import render_all
    from sentryfab.procedures import configs as config_push

    _, doc = status(copy, "db.status")
    primary = doc["cluster_findings"]["primary"]
    replica = next(h for h in ("db-1", "db-2") if h != primary)
    secrets = load_secrets(inv)
    bouncer = inv.host("pgbouncer-1")

    def push(state: ClusterState) -> None:
        files = render_all(inv, [bouncer], secrets, state, roles=("pgbouncer",))[bouncer.name]
        with Runner(inv) as runner:
            config_push.push_host(runner.session(bouncer), inv, files, secrets,
                                  config_push.stamp())

    # A pgbouncer.ini rendered as if the replica were the primary, pushed and reloaded.
    push(ClusterState(primary=replica))
    try:
        code, doc = status(copy)
        hosts = by_host(doc)
        assert code == 2
        addr = inv.host(replica).address
        assert problems(hosts["pgbouncer-1"]) == [
            ("critical", f"points sentry at {replica} ({addr}), a replica; the primary is "
                         f"{primary} (writes fail)")]
        others_green(doc, "pgbouncer-1")
        code, doc = status(copy, "pgbouncer.status")
        assert code == 2 and [h["host"] for h in doc["hosts"]] == ["pgbouncer-1"]
    finally:
        push(ClusterState(primary=primary))
    wait_healthy(copy)


@contextmanager
def second_cron(inv: inventory.Inventory, where: str) -> Iterator[None]:
    """A copy of the cron container, labelled like it, running on a host without the role."""
    spec = specs_for(inv, inv.with_role("cron")[0], "cron")[0]  # the cron, not its cleanup
    # That host's worker config is the same Sentry config: mounted where cron reads it.
    spec = replace(spec, mounts=(("/etc/sentryfab/worker", "/etc/sentryfab/cron", True),),
                   restart="no")
    run_on(inv, where, docker.remove(spec.name) + "; " + docker.run(spec))
    try:
        yield
    finally:
        run_on(inv, where, docker.remove(spec.name))


def test_a_second_cron(copy, inv):
    cron_host = inv.with_role("cron")[0].name
    other = next(h.name for h in inv.with_role("worker") if not h.has("cron"))
    with second_cron(inv, other):
        time.sleep(1)
        code, doc = status(copy)
        hosts = by_host(doc)
        assert code == 2
        assert doc["cluster_findings"]["cron_count"] == 2
        assert [(p["severity"], p["message"]) for p in doc["cluster_findings"]["problems"]] == [
            ("critical", f"2 crons running: {cron_host} (sentry-cron-1), {other} "
                         "(sentry-cron-1); exactly one must run (every scheduled job now runs "
                         "2 times)")]
        assert problems(hosts[other]) == [
            ("critical", f"unexpected container sentry-cron-1 running (role cron is not "
                         f"assigned to {other})")]
        others_green(doc, other)
        code, doc = status(copy, "cron.status")
        assert code == 2 and doc["cluster_findings"]["cron_count"] == 2
    wait_healthy(copy)


def test_a_host_with_sshd_stopped(copy, inv):
    from sentryfab.lab import lab as lab_mod

    lab_mod.stop_sshd("scale-3")
    try:  # direct: a held connection outlives sshd's listener (README, held connections)
        code, doc = status(copy, "status", "--no-persist")
        hosts = by_host(doc)
        assert code == 2
        scale3 = hosts["scale-3"]
        assert not scale3["reachable"] and scale3["severity"] == "critical"
        assert problems(scale3) == [("critical", "unreachable: connection to 10.231.0.102:22 "
                                                 "refused (is sshd running on that port?)")]
        others_green(doc, "scale-3")
    finally:
        lab_mod.start_host("scale-3")
    wait_healthy(copy)


# -- statsd and --watch --------------------------------------------------------------------

def test_figures_go_to_statsd(copy):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]
        r = fab("status", f"--statsd=127.0.0.1:{port}", inv=copy)
        assert r.returncode == 0, r.stderr
        packets = []
        listener.settimeout(0.5)
        try:
            while True:
                packets.append(listener.recv(65535))
        except TimeoutError:
            pass
    assert packets and all(len(p) <= 1400 for p in packets)
    lines = b"\n".join(packets).decode().splitlines()
    names = {line.split(":")[0] for line in lines}
    assert {"sentryfab.host.scale-30.load1", "sentryfab.web.web-2.processes_up",
            "sentryfab.redis-queue.redis-queue-1.queue_length",
            "sentryfab.pgbouncer.pgbouncer-1.cl_waiting", "sentryfab.db.db-1.connections",
            "sentryfab.cluster.lab.primaries"} <= names
    assert "sentryfab.cluster.lab.crons:1|g" in lines
    assert f"statsd: {len(lines)} gauges in {len(packets)} packet(s) to 127.0.0.1:{port}" \
        in r.stderr


def test_watch_redraws_over_the_same_connections(copy):
    proc = subprocess.Popen([FAB, "status", "--watch=1", "--json", "--hosts=scale-*,web-1"],
                            cwd=REPO, env={**__import__("os").environ,
                                           "SENTRYFAB_INVENTORY": str(copy)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rounds = []
        deadline = time.monotonic() + 60
        while len(rounds) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip():
                rounds.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert len(rounds) == 3 and proc.returncode == 0
    first, later = rounds[0], rounds[1:]
    # The first round connects to every host; the later ones reuse those connections.
    assert all("connect_ms" in h["metrics"]["host"] for h in first["hosts"])
    assert all("connect_ms" not in h["metrics"]["host"] for r in later for h in r["hosts"])
    assert rounds[2]["checked_at"] - rounds[1]["checked_at"] == pytest.approx(1, abs=0.9)
