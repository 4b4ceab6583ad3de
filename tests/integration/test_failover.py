"""Switchover, failover, refusal, rejoin on the lab under load: nothing acknowledged is lost.

Everything real: PostgreSQL 15 primary and synchronous replica, PgBouncer, the real Sentry
9.1.2's web processes and Celery workers, events sent through nginx by lab.load the whole
time, and a write probe (a txid through PgBouncer every 50 ms) that measures how long the
database could not be written to. Events are counted on the new primary by lab.verify. Each
test leaves the cluster as it found it: db-1 primary, db-2 synchronous replica streaming
(restored through the very tools under test). The figures these scenarios give (pauses,
gaps, events lost) are measured by bench/failover.py, not here: tests only assert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab import secrets as secrets_mod
from sentryfab.lab import load
from sentryfab.procedures import lock
from sentryfab.remote import Runner
from sentryfab.shell import join

from .conftest import LAB_INVENTORY, REPO, fab, load_in_background, wait_queue_empty

IDS_DIR = REPO / "lab" / "load"
DB = "sentry-db-1"
# Events/s through nginx during every scenario. The real Sentry's four lab workers store
# about 15-25 events/s on two cores shared with everything else: at 30/s a backlog builds
# during the run and drains within DRAIN seconds after it.
RATE = 30
DRAIN = 300

# The db tasks live in the `db` namespace (sentryfab.tasks.db); if the task tree does not
# hold it, they run through Fabric's own program with a namespace holding just it (the same
# code path as `fab`).
PROGRAM = ("from invoke import Collection; from fabric import Config, Executor; "
           "from fabric.main import Fab; from sentryfab.tasks import db; "
           "ns = Collection(); ns.add_collection(db.ns); "
           "Fab(name='fab', namespace=ns, executor_class=Executor, config_class=Config).run()")


def _wired() -> bool:
    from sentryfab.tasks import ns

    db = ns.collections.get("db")
    return db is not None and "switchover" in db.task_names


def dbops(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`fab db.<task> ...` against the lab."""
    if _wired():
        return fab(*args, timeout=timeout)
    env = {**os.environ, "SENTRYFAB_INVENTORY": str(LAB_INVENTORY)}
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_switchover(stdout: int) -> subprocess.Popen:
    """`fab db.switchover --to db-2 --yes` in the background, its progress on a pipe."""
    env = {**os.environ, "SENTRYFAB_INVENTORY": str(LAB_INVENTORY)}
    argv = ([str(Path(sys.executable).parent / "fab")] if _wired()
            else [sys.executable, "-c", PROGRAM]) + ["db.switchover", "--to", "db-2", "--yes"]
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.PIPE,
                            text=True)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def topology() -> dict:
    """db.topology --json (which exits 1 when no host is primary, and still prints it)."""
    proc = dbops("db.topology", "--json")
    assert proc.returncode in (0, 1) and proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def run_json(*args: str) -> dict:
    proc = dbops(*args, "--yes", "--json")
    rep = json.loads(proc.stdout)
    assert proc.returncode == 0 and rep["ok"], proc.stdout + proc.stderr
    return rep


def node(t: dict, name: str) -> dict:
    return next(n for n in t["nodes"] if n["host"] == name)


def sh(inv, host: str, command: str, stdin: bytes | None = None) -> str:
    with Runner(inv) as r:
        out = r.session(inv.host(host)).run(command, stdin=stdin, timeout=120)
    assert out.ok, f"{host}: {command}: {out.stderr or out.error}"
    return out.stdout


def psql(container: str, sql: str) -> str:
    return join(["docker", "exec", "-i", "--user", "postgres", container, "psql", "-X", "-At",
                 "-v", "ON_ERROR_STOP=1", "-d", "sentry", "-c", sql])


def is_baseline(t: dict) -> bool:
    """db-1 primary, db-2 a synchronous replica streaming from it, PgBouncer at db-1."""
    n1, n2 = node(t, "db-1"), node(t, "db-2")
    return (t["primary"] == "db-1" and n2["streaming_from"] == "db-1"
            and n2["sync_state"] in ("sync", "quorum") and not t["fenced"]
            and not t["degraded"] and n1["state"] == "primary"
            and all(b["points_to"] == "db-1" and not b["paused"] for b in t["pgbouncers"]))


def restore(inv) -> dict:
    """Back to the baseline with the tools under test (each step only if needed)."""
    t = topology()
    if t["primary"] is None and node(t, "db-1")["state"] == "stopped" \
            and not node(t, "db-1")["fenced"]:
        sh(inv, "db-1", f"docker start {DB}")  # killed but not failed over: start it again
        time.sleep(3)
        t = topology()
    if t["primary"] == "db-2":
        run_json("db.rejoin", "db-1")
        run_json("db.switchover", "--to", "db-1")
        t = topology()
    if node(t, "db-2")["streaming_from"] != "db-1" or node(t, "db-2")["fenced"]:
        run_json("db.rejoin", "db-2")
        t = topology()
    if t["degraded"]:
        run_json("db.degrade", "--restore")
        t = topology()
    assert is_baseline(t), t
    return t


class WriteProbe:
    """A txid through PgBouncer as Sentry's user every 50 ms, timed on the PgBouncer host."""

    def __init__(self, inv, duration: float, interval: float = 0.05):
        self.inv, self.duration, self.interval = inv, duration, interval
        self.rows: list[tuple[bool, float, float]] = []  # (ok, started, ended), epoch
        self.thread = threading.Thread(target=self._go, daemon=True)

    def start(self) -> WriteProbe:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(self.duration + 180)

    def _go(self) -> None:
        b = self.inv.host("pgbouncer-1")
        script = ('PGPASSWORD=$(cat); export PGPASSWORD PGCONNECT_TIMEOUT=3; '
                  'end=$(( $(date +%s) + $1 )); while [ "$(date +%s)" -lt "$end" ]; do '
                  's=$(date +%s.%N); if timeout 60 psql -X -At -h "$2" -p 6432 -U sentry '
                  '-d sentry -c "select txid_current()" >/dev/null 2>&1; '
                  'then echo "ok $s $(date +%s.%N)"; else echo "fail $s $(date +%s.%N)"; fi; '
                  'sleep "$3"; done')
        cmd = join(["docker", "exec", "-i", "sentry-pgbouncer-1", "sh", "-c", script, "sh",
                    str(int(self.duration)), b.address, str(self.interval)])
        secrets = secrets_mod.load(LAB_INVENTORY.parent / "secrets.yaml")

        def line(stream: str, text: str) -> None:
            parts = text.split()
            if stream == "stdout" and len(parts) == 3:
                self.rows.append((parts[0] == "ok", float(parts[1]), float(parts[2])))

        with Runner(self.inv) as r:
            r.session(b).run(cmd, stdin=secrets.get("db_password").encode(), on_line=line,
                             timeout=self.duration + 150)

    @property
    def failures(self) -> int:
        return sum(1 for good, _, _ in self.rows if not good)

    def longest_gap(self) -> float:
        """The longest time without a write completing (to the end of the probe)."""
        done = sorted(e for good, _, e in self.rows if good)
        end = max((e for _, _, e in self.rows), default=0.0)
        points = [*done, end]
        return max((b - a for a, b in zip(points, points[1:], strict=False)), default=0.0)

    def first_write_after(self, t: float) -> float | None:
        """Seconds from `t` to the first write started after it that committed."""
        done = [e for good, s, e in self.rows if good and s >= t]
        return min(done) - t if done else None


def verify_on(inv, host: str, ids: Path) -> load.VerifyReport:
    with Runner(inv) as r:
        return load.verify(r, inv.host(host), ids, wait=DRAIN)


@pytest.fixture(scope="module")
def inv(lab):
    inv = inventory.load(LAB_INVENTORY)
    with Runner(inv) as r:
        up = r.run(inv.with_role("db"), f"docker inspect {DB} >/dev/null")
    if not all(x.ok for x in up):
        ok(fab("deploy", timeout=900))  # an empty lab: build the cluster first
    restore(inv)
    return inv


@pytest.fixture
def cluster(inv):
    """The baseline before the test and again after it, whatever the test did."""
    yield inv
    restore(inv)


def test_topology_is_discovered_from_the_hosts(cluster):
    t = topology()
    assert is_baseline(t), t
    n2 = node(t, "db-2")
    assert n2["lag_bytes"] is not None and n2["timeline"] == node(t, "db-1")["timeline"]
    assert t["synchronous"] is True and t["problems"] == []
    shown = ok(dbops("db.topology")).stdout
    assert "database topology (synchronous replication)" in shown and "pgbouncer-1" in shown


def test_dry_runs_print_the_plan_and_change_nothing(cluster):
    before = topology()
    out = ok(dbops("db.switchover", "--to", "db-2", "--dry-run")).stdout
    for words in ("db.switchover -> db-2", "[pause] PAUSE sentry", "[stop] stop db-1",
                  "[promote] pg_promote() on db-2", "[resume] RESUME sentry",
                  "dry run: nothing was changed"):
        assert words in out, out
    refused = dbops("db.failover", "--dry-run")
    assert refused.returncode == 1
    assert "db-1 still reports itself primary" in refused.stdout
    after = topology()
    assert is_baseline(after) and after["primary"] == before["primary"]


def test_switchover_under_load_no_client_fails_nothing_is_lost(cluster):
    inv = cluster
    loader, box = load_in_background(inv, RATE, 30, IDS_DIR)
    probe = WriteProbe(inv, 40).start()
    time.sleep(8)
    run_json("db.switchover", "--to", "db-2")
    loader.join(120)
    probe.join()
    report = box["report"]
    v = verify_on(inv, "db-2", report.ids_file)
    t = topology()
    assert report.failures == 0, report.failed
    assert probe.failures == 0  # clients waited during the pause; none failed
    assert v.ok and v.counts.accepted == report.accepted
    assert t["primary"] == "db-2" and t["degraded"]
    assert node(t, "db-1")["state"] == "stopped" and node(t, "db-1")["fenced"]["new_primary"] \
        == "db-2"
    assert all(b["points_to"] == "db-2" and not b["paused"] for b in t["pgbouncers"])
    audit = sh(inv, "pgbouncer-1", "tail -n 30 /var/log/sentryfab/audit.log")
    assert '"action": "db.switchover.step"' in audit and '"step": "resume"' in audit


def test_rejoin_then_switchover_back_ends_as_it_began(cluster):
    inv = cluster
    if topology()["primary"] != "db-2":
        run_json("db.switchover", "--to", "db-2")
    loader, box = load_in_background(inv, RATE, 40, IDS_DIR)
    time.sleep(3)
    run_json("db.rejoin", "db-1")
    t = topology()
    assert node(t, "db-1")["streaming_from"] == "db-2" and not node(t, "db-1")["fenced"]
    assert node(t, "db-1")["sync_state"] in ("sync", "quorum") and not t["degraded"]
    run_json("db.switchover", "--to", "db-1")
    run_json("db.rejoin", "db-2")
    loader.join(120)
    report = box["report"]
    v = verify_on(inv, "db-1", report.ids_file)
    assert report.failures == 0 and v.ok
    assert is_baseline(topology())


def test_a_switchover_killed_while_clients_wait_is_finished_by_a_rerun(cluster):
    inv = cluster
    loader, box = load_in_background(inv, RATE, 30, IDS_DIR)
    probe = WriteProbe(inv, 40).start()
    time.sleep(6)
    proc = start_switchover(subprocess.DEVNULL)
    assert proc.stderr is not None
    for line in proc.stderr:  # its progress: cut it once the old primary is stopped
        if "[stop] " in line or line.startswith("[5/"):
            break
    proc.kill()  # SIGKILL: no finally, no RESUME, the deploy lock left behind
    proc.wait()
    t = topology()
    assert any(b["paused"] for b in t["pgbouncers"]), t  # clients are waiting
    held = dbops("db.switchover", "--to", "db-2", "--yes")
    assert held.returncode != 0 and "another deploy is running" in held.stdout + held.stderr
    ok(fab("lock.release", "--yes"))
    rep = run_json("db.switchover", "--to", "db-2")
    loader.join(120)
    probe.join()
    report = box["report"]
    v = verify_on(inv, "db-2", report.ids_file)
    assert rep["notes"][0].startswith("continuing an interrupted switchover to db-2")
    assert "resume" in [s["action"] for s in rep["steps"]]
    t = topology()
    assert t["primary"] == "db-2" and not any(b["paused"] for b in t["pgbouncers"])
    assert report.failures == 0 and probe.failures == 0 and v.ok




def switchover_plan(wait: float = 30) -> dict:
    """The dry-run plan of a switchover to db-2, once it is not refused. Right after the
    previous test put the baseline back, db-2 can still be catching up (CI once got a
    refused plan here, with no steps); the refusal is printed if it lasts."""
    deadline = time.monotonic() + wait
    while True:
        plan = json.loads(dbops("db.switchover", "--to", "db-2", "--dry-run", "--json").stdout)
        if not plan["refusals"] or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not plan["refusals"], plan
    return plan


# Ctrl-C at steps of a switchover: before clients wait, while they wait with the old primary
# stopped, right after the promotion, and once they are resumed.
SWITCHOVER_STOPS = ("pause", "stop", "promote", "resume")


@pytest.mark.parametrize("action", SWITCHOVER_STOPS)
def test_ctrl_c_at_a_switchover_step_resumes_clients_frees_the_lock_and_a_rerun_finishes(
        cluster, action):
    inv = cluster
    plan = switchover_plan()
    index = 1 + [s["action"] for s in plan["plan"]].index(action)
    proc = start_switchover(subprocess.PIPE)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"[{index}/"):
            break
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=120)
    text = "".join(seen) + rest
    assert proc.returncode == 130, text
    assert f"interrupted: db.switchover stopped during step {index}/" in text, text
    t = topology()
    assert not any(b["paused"] for b in t["pgbouncers"]), (t, text)  # clients never left waiting
    with Runner(inv) as r:
        assert lock.status(r, inv) is None, text
    # The state it left is one a re-run continues from (or the switchover already counted).
    if t["primary"] != "db-1" or any(b["points_to"] != t["primary"] for b in t["pgbouncers"]):
        run_json("db.switchover", "--to", "db-2")
    t = topology()
    assert t["primary"] == "db-2" or is_baseline(t), t
    # `cluster` puts the baseline back with the tools under test.


# Found on the real Sentry: the workers now ride out the outage (sentry.conf.py), which took
# the loss from 17-21 of ~900 to 0 in most lab runs; CI still saw 1 of 893 lost once, and an
# asynchronous failover losing 4 more than the old primary had committed alone. Open work.
PRIMARY_KILLED_MAY_LOSE_EVENTS = pytest.mark.xfail(
    reason="real Sentry: 0-1 of ~900 accepted events still lost in some runs", strict=False)


@PRIMARY_KILLED_MAY_LOSE_EVENTS
def test_failover_after_the_primary_is_killed_loses_nothing_and_fences_it(cluster):
    inv = cluster
    loader, box = load_in_background(inv, RATE, 35, IDS_DIR)
    probe = WriteProbe(inv, 45).start()
    time.sleep(8)
    sh(inv, "db-1", f"docker kill {DB} >/dev/null")
    started = time.time()
    run_json("db.failover", "--to", "db-2")
    loader.join(120)
    probe.join()
    report = box["report"]
    v = verify_on(inv, "db-2", report.ids_file)  # counted on the new primary
    first = probe.first_write_after(started)
    assert v.ok and v.counts.accepted == report.accepted  # synchronous: nothing lost
    assert first is not None
    t = topology()
    assert t["primary"] == "db-2" and node(t, "db-1")["fenced"]["action"] == "failover"

    # The deploy path refuses to start a fenced host, naming the way out.
    dep = fab("deploy.db", "--hosts", "db-1", "--json", timeout=300)
    assert dep.returncode == 1
    [db1] = [o for r in json.loads(dep.stdout) for o in r["hosts"] if o["host"] == "db-1"]
    assert db1["state"] == "failed" and "db-1 is fenced" in db1["detail"]
    assert "'fab db.rejoin db-1' makes it a replica of the current primary" in db1["detail"]

    # Started again by hand, the old primary comes up read-only and nothing writes to it.
    sh(inv, "db-1", f"docker start {DB} >/dev/null")
    with Runner(inv) as r:
        s = r.session(inv.host("db-1"))
        for _ in range(60):
            up = s.run(psql(DB, "select pg_is_in_recovery()"))
            if up.ok:
                break
            time.sleep(0.5)
        assert up.stdout.strip() == "t"
        write = s.run(psql(DB, "create table sentryfab_fence_test (i int)"))
        assert not write.ok and "read-only transaction" in write.stderr
    t = topology()
    assert t["primary"] == "db-2" and node(t, "db-1")["state"] == "replica"
    assert all(b["points_to"] == "db-2" for b in t["pgbouncers"])


@PRIMARY_KILLED_MAY_LOSE_EVENTS
def test_asynchronous_failover_loses_only_what_the_precheck_allowed(cluster):
    """Replication asynchronous on purpose (db.degrade); the replica stops receiving for a
    moment while the primary goes on committing alone; the primary is killed. The failover
    measures what db-2 lacks (within the 1 MiB allowed) and says so; lab.verify reports the
    events lost, and there are no more of them than events the primary stored alone (the
    real workers save events well after nginx accepted them, so it is the time of the save
    that counts, not of the acceptance)."""
    inv = cluster
    run_json("db.degrade")
    loader, box = load_in_background(inv, RATE, 30, IDS_DIR)
    time.sleep(8)
    # primary_conninfo emptied: PostgreSQL ends the WAL receiver at once (nothing buffered
    # in a socket is read later, as it would be after SIGSTOP/SIGCONT).
    cut = psql(DB, "alter system set primary_conninfo = ''") + " && " + psql(
        DB, "select pg_reload_conf()")
    count = psql(DB, "select count(*) from sentry_message")
    sh(inv, "db-2", cut)
    time.sleep(1.5)  # the primary commits alone: acknowledged, on no replica
    # What db-2 has: all it received before the cut, replayed by now (a hot standby answers
    # queries). The primary was ahead of it already before the cut: it is the replica's
    # count that tells what the primary stored alone.
    stored_on_replica = int(sh(inv, "db-2", count))
    # Counted and killed in one command: only what a worker commits in those milliseconds
    # is stored after the count.
    stored_at_kill = int(sh(inv, "db-1", f"{count} && docker kill {DB} >/dev/null"))
    sh(inv, "db-2", psql(DB, "alter system reset primary_conninfo") + " && "
       + psql(DB, "select pg_reload_conf()"))
    rep = run_json("db.failover", "--to", "db-2")
    loader.join(120)
    report = box["report"]
    # The real workers are behind: what is still queued is not lost. Count once they have
    # taken everything, so that what is missing is only what the failover lost.
    wait_queue_empty(DRAIN)
    time.sleep(5)  # the last tasks taken are being saved
    shown = fab("lab.verify", "--ids", str(report.ids_file), "--db", "db-2", "--wait", "10",
                "--json", timeout=300)
    v = json.loads(shown.stdout)
    alone = stored_at_kill - stored_on_replica
    lagged = next(n for n in rep["notes"] if "db-2 lacks" in n)
    assert "within maximum_lag_on_failover (1.0 MiB)" in lagged and "are lost" in lagged
    assert 0 < rep["lag_bytes"] <= 1024 * 1024
    assert shown.returncode == 1 and v["missing"] > 0 and v["duplicated"] == 0  # reported
    # Nothing stored before the cut is lost: at most what the primary stored alone (and
    # the few a worker committed between the count and the kill).
    assert v["missing"] <= alone + 3, (v["missing"], alone)
    t = topology()
    assert t["primary"] == "db-2" and node(t, "db-1")["fenced"]["action"] == "failover"

    # A routine deploy afterwards restarts nothing: what the failover changed (PgBouncer's
    # target, synchronous_standby_names) is what a reload applies.
    def started_at() -> dict[str, str]:
        return {h: sh(inv, h, f"docker inspect -f '{{{{.State.StartedAt}}}}' {c}").strip()
                for h, c in (("pgbouncer-1", "sentry-pgbouncer-1"), ("db-2", DB))}

    before = started_at()
    states = {}
    for args in (("deploy.pgbouncer",), ("deploy.db", "--hosts", "db-2")):
        dep = fab(*args, "--json", timeout=300)
        assert dep.returncode == 0, dep.stdout + dep.stderr
        states.update({o["host"]: o["state"] for r in json.loads(dep.stdout)
                       for o in r["hosts"]})
    assert set(states.values()) <= {"unchanged", "reloaded"}, states
    assert started_at() == before


def test_a_lagging_replica_is_not_promoted_and_nothing_changes(cluster):
    inv = cluster
    run_json("db.degrade")  # on purpose: the replica is about to stop replicating
    sh(inv, "db-2", psql(DB, "alter system set primary_conninfo = ''") + " && "
       + psql(DB, "select pg_reload_conf()"))
    sh(inv, "db-1", psql(DB, "create table sentryfab_lag_test as select i, md5(i::text) "
                             "from generate_series(1, 60000) i") + " && "
       + psql(DB, "drop table sentryfab_lag_test"))
    sh(inv, "db-1", f"docker kill {DB} >/dev/null")
    before = topology()
    refused = dbops("db.failover", "--to", "db-2", "--yes")
    after = topology()
    out = refused.stdout + refused.stderr
    assert refused.returncode == 1, out
    assert "db-2 lacks" in out and "maximum_lag_on_failover (1.0 MiB)" in out
    assert "--force to go ahead anyway" in out and "nothing was changed" in out
    for n in ("db-1", "db-2"):
        assert node(after, n)["state"] == node(before, n)["state"]
        assert node(after, n)["fenced"] is None
    assert node(after, "db-2")["state"] == "replica" and after["primary"] is None
    assert after["pgbouncers"] == before["pgbouncers"]
    assert all(b["points_to"] == "db-1" for b in after["pgbouncers"])
