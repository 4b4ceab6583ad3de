"""Parsers of PostgreSQL and PgBouncer output, tested with outputs captured on the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentryfab.topology.db_facts import ControlData, DbProbe, WalEnd, parse_marker, sections
from sentryfab.topology.model import DbNode, Marker
from sentryfab.topology.pgbouncer import ShowDatabases, WriteProbe
from sentryfab.topology.values import lsn_text, parse_lsn

DATA = Path(__file__).parent / "data" / "failover"


def node(name: str = "db-1", address: str = "10.231.0.17") -> DbNode:
    return DbNode(name, address, 5432)


def probe(file: str, name: str = "db-1", address: str = "10.231.0.17") -> DbNode:
    return DbProbe.parse(node(name, address), (DATA / file).read_text())


@pytest.mark.parametrize(("text", "value"), [
    ("0/0", 0), ("0/8D680C8", 0x8D680C8), ("16/B374D848", (0x16 << 32) | 0xB374D848),
    ("", None), ("x/1", None), ("0/1/2", None),
])
def test_lsn_round_trip(text, value):
    assert parse_lsn(text) == value
    if value is not None:
        assert lsn_text(value) == text


def test_probe_of_a_synchronous_primary():
    n = probe("probe-primary.txt")
    assert (n.container, n.has_data, n.standby_signal, n.fenced, n.degraded) == (
        "running", True, False, None, None)
    assert (n.in_recovery, n.timeline, n.current_lsn, n.sync_names) == (
        False, 3, 0x8D680C8, 'ANY 1 ("db-2")')
    assert n.state == "primary" and n.position == 0x8D680C8
    [s] = n.standbys
    assert (s.name, s.address, s.state, s.sync_state, s.replay_lsn) == (
        "db-2", "10.231.0.18", "streaming", "quorum", 0x8D680C8)
    assert s.replay_lag == pytest.approx(0.00046)
    [slot] = n.slots
    assert (slot.name, slot.kind, slot.active, slot.restart_lsn, slot.wal_status) == (
        "db_2", "physical", True, 0x8D680C8, "reserved")


def test_probe_of_a_streaming_replica():
    r = probe("probe-replica.txt", "db-2", "10.231.0.18")
    assert (r.in_recovery, r.standby_signal, r.timeline, r.current_lsn) == (True, True, 3, None)
    assert (r.receive_lsn, r.replay_lsn, r.replay_age, r.replay_paused) == (
        0x8D680C8, 0x8D680C8, 0.0, "not paused")
    rc = r.receiver
    assert rc is not None
    assert (rc.status, rc.sender_host, rc.sender_port, rc.latest_end_lsn, rc.slot) == (
        "streaming", "10.231.0.17", 5432, 0x8D680C8, "db_2")
    assert r.streams_from(probe("probe-primary.txt"))
    assert not r.streams_from(node("db-9", "10.0.0.9"))


def test_probe_of_a_killed_primary_reads_pg_controldata():
    n = probe("probe-killed.txt")
    assert (n.container, n.running, n.state, n.standby_signal) == ("exited", False,
                                                                   "stopped", False)
    assert n.control is not None
    assert (n.control.state, n.control.checkpoint_lsn, n.control.timeline) == (
        "in production", 0x108BF6F8, 9)
    assert n.control.segment_size == 16 * 1024 * 1024
    assert n.was_primary and n.could_be_primary and n.known_timeline == 9


def test_probe_of_a_fenced_old_primary():
    n = probe("probe-fenced.txt")
    assert n.fenced is not None and n.standby_signal and not n.could_be_primary
    assert (n.fenced.action, n.fenced.new_primary, n.fenced.at) == (
        "failover", "db-2", "2026-11-27T04:40:50Z")
    assert n.fenced.describe() == "by root at 2026-11-27T04:40:50Z (failover, new primary db-2)"


def test_psql_errors_are_kept_when_postgres_does_not_answer():
    text = ("@@sentryfab container\nrunning\n@@sentryfab files\nPG_VERSION\n@@sentryfab sql\n"
            "psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" "
            "failed: FATAL:  the database system is starting up\n@@sentryfab control\n")
    n = DbProbe.parse(node(), text)
    assert n.state == "down" and n.in_recovery is None
    assert n.sql_error is not None and "starting up" in n.sql_error


def test_missing_container_and_empty_host():
    n = DbProbe.parse(node(), "@@sentryfab container\nmissing\n@@sentryfab files\n")
    assert (n.container, n.has_data, n.state) == ("missing", False, "empty")


@pytest.mark.parametrize(("text", "marker"), [
    ([], None),
    (['{"at": "T", "who": "w (x)", "action": "failover", "new_primary": "db-2"}'],
     Marker("T", "w (x)", "failover", "db-2", "")),
    (["not json"], Marker(reason="not json")),
])
def test_markers(text, marker):
    assert parse_marker(text) == marker


def test_fence_marker_as_read_on_a_fenced_old_primary():
    lines = sections((DATA / "probe-fenced.txt").read_text())["fenced"]
    assert parse_marker(lines) == Marker("2026-11-27T04:40:50Z", "root (Ops <ops@example.com>)",
                                         "failover", "db-2", "")


@pytest.mark.parametrize("file", ["probe-killed.txt", "probe-fenced.txt"])
def test_controldata_of_a_stopped_cluster(file):
    """pg_controldata's own output (the probe's control section), parsed on its own as the
    stop and rewind steps read it."""
    control = ControlData.parse("\n".join(sections((DATA / file).read_text())["control"]))
    assert control is not None
    assert (control.state, control.checkpoint_lsn, control.timeline, control.min_recovery_lsn,
            control.segment_size) == ("in production", 0x108BF6F8, 9, 0, 16 * 1024 * 1024)


def test_controldata_without_a_cluster_state_is_none():
    assert ControlData.parse("pg_controldata: fatal: could not open file") is None


START = parse_lsn("0/10CE2574")


def test_wal_end_after_the_last_valid_record():
    out = ("rmgr: Transaction len (rec/tot):     34/    34, tx:      15977, lsn: 0/10CE2678, "
           "prev 0/10CE2648, desc: COMMIT 2026-11-27 04:40:47.971422 UTC\n"
           "pg_waldump: error: error in WAL record at 0/10CE2678: invalid record length at "
           "0/10CE26A0: wanted 24, got 0\n")
    assert WalEnd.parse(out, START) == 0x10CE26A0


def test_wal_end_when_nothing_follows_the_start():
    assert WalEnd.parse("pg_waldump: error: could not find a valid record after "
                        "0/487D790\n", 0x487D790) == 0x487D790


def test_wal_end_from_the_last_record_when_the_error_names_no_end():
    out = ("rmgr: Heap        len (rec/tot):     54/    54, tx:        735, lsn: 0/01699E58, "
           "prev 0/01699E20, desc: INSERT off 3\n"
           "pg_waldump: error: error in WAL record at 0/1699E58: invalid magic number 0000 in "
           "log segment 000000010000000000000001, offset 0\n")
    assert WalEnd.parse(out, 0x1000000) == 0x1699E58 + 54


def test_wal_end_unknown_when_a_segment_is_missing():
    assert WalEnd.parse('pg_waldump: error: could not find file '
                        '"000000010000000000000001": No such file or directory\n',
                        0x1000000) is None


def test_show_databases_after_reload_in_the_same_session():
    [db] = ShowDatabases.parse((DATA / "reload-show.txt").read_text())
    assert (db.name, db.host, db.port, db.database, db.paused, db.disabled) == (
        "sentry", "10.231.0.17", 5432, "sentry", False, False)


def test_show_databases_paused():
    text = ("name|host|port|database|force_user|pool_size|min_pool_size|reserve_pool|pool_mode|"
            "max_connections|current_connections|paused|disabled\n"
            "pgbouncer||6432|pgbouncer|pgbouncer|2|0|0|statement|0|0|0|0\n"
            "sentry|10.231.0.18|5432|sentry||20|0|5||0|4|1|0\n(2 rows)\n")
    [db] = ShowDatabases.parse(text)
    assert (db.host, db.paused) == ("10.231.0.18", True)


def test_write_probe():
    assert WriteProbe.parse("write|15411|10.231.0.17\n") == (15411, "10.231.0.17")
    assert WriteProbe.parse("ERROR:  cannot execute pg_current_xact_id() during recovery\n") \
        is None
