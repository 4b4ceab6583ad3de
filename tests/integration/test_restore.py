"""Backups restored for real, on the lab, with the real Sentry and events flowing.

pgBackRest's repository on backup-1 (encrypted, TLS between hosts), WAL archived from the
primary every archive_timeout (10 s in the lab). Each scenario counts what survived against
lab.load's record of every accepted event: the cluster restored after both db hosts lost
their data, a deleted project's events brought back from a point in time into a scratch
copy, and archiving that goes on across a change of primary. Each test leaves the cluster
as the failover tests expect it (db-1 primary, db-2 synchronous replica).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import yaml

from sentryfab.lab import load
from sentryfab.remote import Runner

from .conftest import fab, inventory_copy, load_in_background, send_load, wait_queue_empty
from .test_failover import (  # noqa: F401 (fixtures)
    DB,
    IDS_DIR,
    cluster,
    inv,
    ok,
    psql,
    run_json,
    sh,
    topology,
)

#: The lab's archive_timeout (lab/topology.py): the most a restore may lose with events
#: flowing.
ARCHIVE_TIMEOUT = 10
RATE = 10
SCRATCH = "sentry-restore-1"


def _count(hosts, host: str, container: str, sql: str) -> int:
    return int(sh(hosts, host, psql(container, sql)).strip())


def _verify_scratch(hosts, ids) -> load.Counts:
    """lab.verify's query, run on the scratch copy on backup-1."""
    rows = load.read_ids(ids)
    with Runner(hosts) as r:
        out = r.session(hosts.host("backup-1")).run(load.psql_command(SCRATCH),
                                                    stdin=load.verify_script(rows), timeout=120)
    assert out.ok, out.stderr
    return load.parse_verify_output(out.stdout)


@pytest.fixture
def db(cluster):  # noqa: F811 (test_failover's fixture: the baseline before and after)
    return cluster


def _discard() -> None:
    ok(fab("db.restore", "--into", "backup-1", "--discard", timeout=120))


def test_both_db_hosts_lost_restore_latest_loses_less_than_the_archive_timeout(db):
    hosts = db
    loader, box = load_in_background(hosts, RATE, 40, IDS_DIR)
    time.sleep(3)
    ok(fab("db.backup", "--type", "full", timeout=600))  # under load
    time.sleep(15)  # events keep coming: from here on only the WAL archive has them
    destroyed = time.time()
    # Both machines gone at once: killed (a clean stop would archive the last WAL segment),
    # their data removed.
    for host in ("db-1", "db-2"):
        sh(hosts, host, f"docker kill {DB} >/dev/null && rm -rf /var/lib/sentryfab/db/data")
    restored = json.loads(ok(fab("db.restore", "--latest", "--yes", "--json",
                                 timeout=900)).stdout)
    ok(fab("deploy.db", timeout=900))  # db-2 cloned from the restored primary
    loader.join(300)
    report = box["report"]
    wait_queue_empty(600)
    with Runner(hosts) as r:
        v = load.verify(r, hosts.host("db-1"), report.ids_file, wait=120)
    until = datetime.fromisoformat(restored["data_until"]).timestamp()
    window = destroyed - until
    print(f"\nrestore {restored['seconds']} s; loss window {window:.1f} s; "
          f"{v.counts.missing} of {v.counts.accepted} accepted events missing")
    assert restored["done"] and restored["target"] == "db-1"
    # What was lost is what the primary committed after its last archived WAL: less than
    # archive_timeout before the data went, and only events stored in that window.
    assert -2 < window < ARCHIVE_TIMEOUT + 2, window
    assert v.counts.duplicated == 0
    assert all(at > until - 60 for _, at in v.counts.missing_sample), v.counts
    assert v.counts.missing <= RATE * (window + 2), v.counts
    t = topology()
    assert t["primary"] == "db-1" and t["nodes"][1]["streaming_from"] == "db-1", t
    # Web serves again, and the restored primary stores what it is sent.
    after = send_load(hosts, RATE, 5, IDS_DIR)
    wait_queue_empty(300)
    with Runner(hosts) as r:
        v2 = load.verify(r, hosts.host("db-1"), after.ids_file, wait=120)
    assert after.failures == 0 and v2.ok and v2.counts.accepted == after.accepted
    ok(fab("db.backup", "--type", "full", timeout=600))  # the new timeline's first backup


def test_a_deleted_project_s_events_come_back_from_a_point_in_time(db):
    hosts = db
    sent = send_load(hosts, RATE, 5, IDS_DIR)
    wait_queue_empty(300)
    before = _count(hosts, "db-1", DB, "select count(*) from sentry_message where project_id = 1")
    assert before >= sent.accepted > 0
    time.sleep(1)
    at = datetime.now(UTC)
    time.sleep(1)
    sh(hosts, "db-1", psql(DB, "delete from sentry_message where project_id = 1"))  # bad data
    assert _count(hosts, "db-1", DB, "select count(*) from sentry_message") == 0
    try:
        ok(fab("db.restore", "--time", at.isoformat(), "--into", "backup-1", "--yes",
               timeout=900))
        back = _count(hosts, "backup-1", SCRATCH,
                      "select count(*) from sentry_message where project_id = 1")
        assert back == before  # exactly as at T, in a copy; the cluster left alone
        assert _count(hosts, "db-1", DB, "select count(*) from sentry_message") == 0
    finally:
        _discard()


def test_archiving_goes_on_across_a_change_of_primary_nothing_accepted_is_missing(db):
    hosts = db
    ok(fab("db.backup", "--type", "full", timeout=600))
    loader, box = load_in_background(hosts, RATE, 30, IDS_DIR)
    time.sleep(6)
    run_json("db.switchover", "--to", "db-2")  # a new primary, a new timeline
    time.sleep(6)
    ok(fab("db.backup", "--type", "diff", timeout=600))  # taken from db-2 now
    loader.join(300)
    report = box["report"]
    wait_queue_empty(600)
    info = json.loads(ok(fab("db.backups", "--json")).stdout)
    timelines = {name[:8] for b in info["backups"] for name in (b["wal_start"], b["wal_stop"])}
    assert len(timelines) >= 2, info  # backups on both sides of the switchover
    try:
        ok(fab("db.restore", "--latest", "--into", "backup-1", "--yes", timeout=900))
        counts = _verify_scratch(hosts, report.ids_file)
        print(f"\n{counts.accepted} accepted, {counts.stored} in the restored copy")
        assert counts.accepted == report.accepted > 0
        assert counts.missing == 0 and counts.duplicated == 0, counts
    finally:
        _discard()


def test_the_drill_restores_compares_and_is_recorded_for_status(db):
    hosts = db
    loader, box = load_in_background(hosts, RATE, 15, IDS_DIR)  # the drill runs under load
    drill = json.loads(ok(fab("db.drill", "--json", timeout=900)).stdout)
    loader.join(120)
    assert drill["ok"] and drill["primary"] == hosts.host("db-1").address, drill
    assert drill["copy_events"] == drill["primary_events"] != []
    assert drill["restore_seconds"] is not None and drill["data_age_seconds"] is not None
    status = json.loads(fab("status", "--roles=backup", "--json").stdout)
    notes = [n for h in status["hosts"] for n in h["notes"] if n.startswith("backups:")]
    assert notes and "drill: 0 h ago, ok" in notes[0], notes


def test_bad_restores_are_refused_and_a_missing_key_stops_before_anything(db, tmp_path):
    early = ok(fab("db.backups", "--json"))
    oldest = json.loads(early.stdout)["oldest_restorable"]
    before = fab("db.restore", "--time", "2000-01-01T00:00:00", "--yes")
    assert before.returncode == 2
    assert "is before the oldest point a restore can reach" in before.stderr
    assert datetime.fromisoformat(oldest).strftime("%Y-%m-%d %H:%M:%S") in before.stderr
    live = fab("db.restore", "--latest", "--into", "db-1", "--yes")
    assert live.returncode == 2 and "db-1 runs the live primary" in live.stderr
    # Without the repository's key nothing starts: no lock, no audit line, no command.
    src = yaml.safe_load(db.path.parent.joinpath("secrets.yaml").read_text())
    del src["backup_cipher_pass"]
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump(src))
    secrets.chmod(0o600)
    copy = inventory_copy(tmp_path, lambda d: d.update(secrets=str(secrets)))
    audit_before = sh(db, "backup-1", "wc -l < /var/log/sentryfab/audit.log || true")
    for args in (("db.backup", "--type", "full"), ("db.restore", "--latest", "--yes"),
                 ("db.drill",)):
        proc = fab(*args, inv=copy)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "secret 'backup_cipher_pass' is missing" in proc.stderr
    assert sh(db, "backup-1", "wc -l < /var/log/sentryfab/audit.log || true") == \
        audit_before
    assert "free" in ok(fab("lock.status")).stdout
