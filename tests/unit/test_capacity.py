"""Capacity math on small inventories, with exact figures, and the reference's lesson."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.plans.capacity import (
    GB,
    MB,
    HostFacts,
    backlog_bytes,
    parse_size,
    plan,
    with_processes,
)

REPO = Path(__file__).resolve().parents[2]

SMALL = """\
sentry: {filestore: {shared: true}}
roles:
  web: {processes: 4, threads: 2}
  worker: {processes: 2, concurrency: 3}
  pgbouncer: {max_client_conn: 100, default_pool_size: 20, reserve_pool_size: 5}
  db: {max_connections: 50, superuser_reserved_connections: 3, shared_buffers: 1GB,
       work_mem: 4MB}
  redis-cache: {maxclients: 100, maxmemory: 1gb, tcp_backlog: 511}
  redis-queue: {maxclients: 100, maxmemory: 2gb, tcp_backlog: 8192}
hosts:
  web-1: {address: 10.0.0.1, roles: [web]}
  web-2: {address: 10.0.0.2, roles: [web]}
  worker-1: {address: 10.0.0.3, roles: [worker, cron]}
  redis-1: {address: 10.0.0.4, roles: [redis-cache]}
  redis-2: {address: 10.0.0.5, roles: [redis-queue], vars: {ram: 4GB, somaxconn: 4096}}
  db-1: {address: 10.0.0.6, roles: [db, pgbouncer], vars: {ram: 8GB}}
"""


@pytest.fixture
def small(tmp_path):
    p = tmp_path / "hosts.yaml"
    p.write_text(textwrap.dedent(SMALL))
    return inventory.load(p)


def lines(report):
    return {(x.tier, x.component): (x.limit, x.planned) for x in report.lines}


def test_exact_lines_of_a_small_cluster(small):
    r = plan(small, {})
    got = lines(r)
    # web: 2 hosts x 4 processes x (2 threads + 1); worker 2 x (3 + 1); cron 1 + 1.
    assert got[("postgresql", "without pgbouncer")] == (50 - 3 - 10, 24 + 8 + 2)
    assert got[("pgbouncer", "db-1 clients")] == (100, 34)
    assert got[("postgresql", "from pgbouncer")] == (37, 25)
    assert got[("redis", "redis-1 clients")] == (100, 34)
    assert got[("redis", "redis-2 listen backlog")] == (4096, 8192)
    assert got[("memory", "redis-2 redis")] == (4 * GB, 2 * 2 * GB + 256 * MB)
    assert got[("memory", "db-1 postgresql")] == (8 * GB, GB + 50 * (4 * MB + 10 * MB))
    assert [(x.component, x.headroom) for x in r.over] == [
        ("redis-2 listen backlog", 4096 - 8192), ("redis-2 redis", -256 * MB)]
    assert r.first_to_run_out.component == "redis-2 listen backlog"


def test_the_reference_lesson_pgbouncer_makes_it_fit():
    ref = inventory.load(REPO / "hosts.yaml")
    r = plan(ref, {})
    by = {x.component: x for x in r.lines}
    direct = by["without pgbouncer"]
    # 30 x 8 web processes x (4 threads + 1) + 12 x 4 workers x (4 + 1) + cron (2).
    assert direct.planned == 30 * 8 * 5 + 12 * 4 * 5 + 2 == 1442
    assert direct.limit == 400 - 3 - 10
    assert direct.over and direct.what_if  # far over max_connections ...
    pooled = by["from pgbouncer"]
    assert (pooled.planned, pooled.over) == (2 * (60 + 5), False)  # ... and with PgBouncer it fits
    assert not [x for x in r.over if x.tier in ("postgresql", "pgbouncer")]


def test_preflight_sees_an_overcommitting_scale(small):
    before = lines(plan(small, {}))[("pgbouncer", "db-1 clients")]
    after = plan(with_processes(small, "web", 20), {})
    line = next(x for x in after.lines if x.component == "db-1 clients")
    assert before == (100, 34)
    assert (line.planned, line.over) == (2 * 20 * 3 + 8 + 2, True)


def test_facts_read_from_hosts_win_over_declared(small):
    facts = {"redis-2": HostFacts(ram=64 * GB, nofile=65536, somaxconn=16384, source="ssh")}
    got = lines(plan(small, facts))
    assert got[("redis", "redis-2 listen backlog")] == (16384, 8192)
    assert got[("memory", "redis-2 redis")][0] == 64 * GB


@pytest.mark.parametrize("text, value", [("8gb", 8 * GB), ("256MB", 256 * MB), ("1GB", GB),
                                         ("512kb", 512 * 1024), (1024, 1024), ("100", 100)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_facts_from_a_real_output():
    from sentryfab.procedures.capacity import parse_facts

    f = parse_facts("25276522496\n1048576\n4096\n")
    assert (f.ram, f.nofile, f.somaxconn, f.source) == (25276522496, 1048576, 4096, "ssh")
    assert parse_facts("1000\nunlimited\n128\n").nofile == 1 << 20


# --- the backlog: events waiting on the queue Redis -------------------------------------------

def test_without_a_planned_rate_only_the_payload_expiry_is_checked(small):
    backlog = [x for x in plan(small, {}).lines if x.tier == "backlog"]
    assert [(x.component, x.limit, x.planned, x.unit) for x in backlog] == [
        ("redis-2 backlog age", 60, 30, "minutes")]


def _with_queue(tmp_path, queue: str, extra_hosts: str = ""):
    text = textwrap.dedent(SMALL).replace(
        "  redis-queue: {maxclients: 100, maxmemory: 2gb, tcp_backlog: 8192}",
        "  redis-queue: {maxclients: 100, maxmemory: 2gb, tcp_backlog: 8192, " + queue + "}")
    p = tmp_path / "hosts.yaml"
    p.write_text(text + extra_hosts)
    return inventory.load(p)


def test_the_queue_redis_is_sized_for_the_planned_backlog(tmp_path):
    inv = _with_queue(tmp_path, "events_per_second: 100, event_size: 20kb, backlog_minutes: 15")
    line = next(x for x in plan(inv, {}).lines if x.component == "redis-2 payloads")
    # 100 events/s x 900 s x (20 KiB payload + 1 KiB task message).
    assert (line.tier, line.limit, line.planned) == ("backlog", 2 * GB, 100 * 900 * 21 * 1024)
    assert line.planned == 1_935_360_000 and not line.over
    assert line.note == "100 events/s x (20kb + 1 KiB task) x 15 min backlog"
    longer = _with_queue(tmp_path, "events_per_second: 100, event_size: 20kb, "
                                   "backlog_minutes: 20")
    over = {x.component: x for x in plan(longer, {}).over}
    assert over["redis-2 payloads"].headroom == 2 * GB - 2_580_480_000


def test_a_backlog_beyond_sentrys_payload_expiry_is_over_whatever_the_memory(tmp_path):
    inv = _with_queue(tmp_path, "backlog_minutes: 90")
    assert [(x.component, x.planned, x.limit) for x in plan(inv, {}).over] == [
        ("redis-2 listen backlog", 8192, 4096), ("redis-2 redis", 2 * 2 * GB + 256 * MB, 4 * GB),
        ("redis-2 backlog age", 90, 60)]


def test_payloads_spread_over_queue_hosts_and_task_messages_stay_on_the_broker(tmp_path):
    inv = _with_queue(tmp_path, "events_per_second: 10, event_size: 15kb, backlog_minutes: 10",
                      "  redis-3: {address: 10.0.0.7, roles: [redis-queue]}\n")
    got = lines(plan(inv, {}))
    events = 10 * 600
    assert got[("backlog", "redis-2 payloads")] == (2 * GB, events * 15 * 1024 / 2 + events * 1024)
    assert got[("backlog", "redis-3 payloads")] == (2 * GB, events * 15 * 1024 / 2)


def test_the_reference_queue_holds_ten_minutes_of_peak_and_no_more():
    r = plan(inventory.load(REPO / "hosts.yaml"), {})
    by = {x.component: x for x in r.lines}
    payloads = by["redis-queue-1 payloads"]
    # 5,000 events/s x 600 s x (16 KiB + 1 KiB) = 48.6 GiB of maxmemory 56 GiB.
    assert (payloads.planned, payloads.limit) == (52_224_000_000, 56 * GB)
    assert round(payloads.used_pct, 1) == 86.9
    assert (by["redis-queue-1 backlog age"].planned, by["redis-queue-1 backlog age"].limit) == (
        10, 60)
    # The machine: 56 GiB twice (a persistence fork) + 256 MiB of its 128 GiB.
    assert (by["redis-queue-1 redis"].planned, by["redis-queue-1 redis"].limit) == (
        112 * GB + 256 * MB, 128 * GB)
    assert not r.over
    # Thirty minutes at peak, the default, would need 146 GiB: more than this machine holds.
    assert backlog_bytes(5000, 16 * 1024, 30) == 156_672_000_000


# --- the disk forecast's facts: command, parser, fan-out ---------------------------------------

#: db_facts_command's output, captured from PostgreSQL 15 with Sentry's four event tables
#: (5,000 events, 1,000 more stored during a 3 s window) and GNU df.
DB_FACTS_OUTPUT = """\
path /var/lib/sentryfab/db/data /var/lib/sentryfab/db/data
Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 36247232  70143680      35% /
sizes|19946855|12140544|50331648
events|5000
sample|1796459949.738852|51510480|5000

sample|1796459952.743283|56559032|6000
"""


def test_the_db_facts_sql_is_exact():
    from sentryfab.procedures import capacity

    assert capacity.SIZES_SQL == (
        "select 'sizes|' || pg_database_size(current_database()) || '|' || (select "
        "coalesce(sum(pg_total_relation_size(oid)), 0) from pg_class where oid in ("
        "to_regclass('sentry_message'), to_regclass('nodestore_node'), "
        "to_regclass('sentry_eventtag'), to_regclass('sentry_eventmapping'))) || '|' || "
        "(select coalesce(sum(size), 0) from pg_ls_waldir())")
    assert capacity.EVENTS_SQL == (
        "select 'events|' || case when reltuples >= 1000000 then reltuples::bigint else "
        "(select count(*) from sentry_message) end from pg_class "
        "where oid = 'sentry_message'::regclass")
    assert capacity.SAMPLE_SQL == (
        "select 'sample|' || extract(epoch from clock_timestamp()) || '|' || "
        "pg_wal_lsn_diff(case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else "
        "pg_current_wal_lsn() end, '0/0')::bigint || '|' || "
        "coalesce((select max(id) from sentry_message), 0)")


def test_the_db_facts_command_is_exact():
    import shlex

    from sentryfab.procedures.capacity import EVENTS_SQL, SAMPLE_SQL, SIZES_SQL, db_facts_command

    path, df, psql = db_facts_command(2.5).split(" && ")
    assert path == "echo path /var/lib/sentryfab/db/data /var/lib/sentryfab/db/data"
    assert df == "df -Pk /var/lib/sentryfab/db/data"
    assert shlex.split(psql) == [
        "docker", "exec", "--user", "postgres", "sentry-db-1", "psql", "-X", "-At", "-v",
        "ON_ERROR_STOP=1", "-d", "sentry", "-c", SIZES_SQL, "-c", EVENTS_SQL, "-c", SAMPLE_SQL,
        "-c", "select pg_sleep(2.5)", "-c", SAMPLE_SQL]
    assert shlex.split(db_facts_command(0).split(" && ")[2])[-2:] == ["-c", SAMPLE_SQL]


def test_parse_db_facts_from_a_real_output():
    from sentryfab.plans.forecast import DbFacts
    from sentryfab.procedures.capacity import parse_db_facts

    f = parse_db_facts(DB_FACTS_OUTPUT)
    assert f == DbFacts(disk_free=70_143_680 * 1024, db_size=19_946_855, event_bytes=12_140_544,
                        events=5000, wal_size=50_331_648, window_seconds=f.window_seconds,
                        window_events=1000, window_wal=56_559_032 - 51_510_480, source="ssh")
    assert f.window_seconds == pytest.approx(3.004431, abs=1e-6)
    one = parse_db_facts(DB_FACTS_OUTPUT.split("\n\n")[0])  # --window 0: a single sample
    assert (one.window_seconds, one.window_events, one.window_wal) == (0.0, 0, 0)


def test_parse_db_facts_names_what_is_missing():
    from sentryfab.procedures.capacity import FactsError, parse_db_facts

    with pytest.raises(FactsError, match="^no sizes, event count, sample$"):
        parse_db_facts(DB_FACTS_OUTPUT.split("sizes|")[0])
    with pytest.raises(FactsError, match="^no df, sizes, event count, sample$"):
        parse_db_facts("")


class _Runner:
    """Answers runner.run with a canned HostResult per host name."""

    def __init__(self, answers):
        self.answers, self.commands = answers, []

    def run(self, hosts, command, timeout=None):
        from sentryfab.results import HostResult

        self.commands.append((command, timeout))
        return [HostResult(h, **self.answers[h.name]) for h in hosts]


def test_db_facts_falls_back_per_host_and_says_why(tmp_path):
    from sentryfab.procedures.capacity import db_facts, db_facts_command

    inv = inventory.load(_two_dbs(tmp_path))
    runner = _Runner({
        "db-1": {"status": "ok", "exit_code": 0, "stdout": DB_FACTS_OUTPUT},
        "db-2": {"status": "failed", "exit_code": 3,
                 "error": 'exit code 3: ERROR:  relation "sentry_message" does not exist'}})
    facts, problems = db_facts(runner, inv, window=5)
    assert runner.commands == [(db_facts_command(5), 65)]
    assert list(facts) == ["db-1"] and facts["db-1"].events == 5000
    assert problems == ['db-2: disk and database not read (exit code 3: ERROR:  relation '
                        '"sentry_message" does not exist): declared figures used']
    runner.answers["db-1"] = {"status": "ok", "exit_code": 0, "stdout": "events|3\n"}
    assert db_facts(runner, inv, window=5)[1][0] == (
        "db-1: disk and database not read (no df, sizes, sample): declared figures used")


def _two_dbs(tmp_path):
    p = tmp_path / "hosts.yaml"
    p.write_text(textwrap.dedent(SMALL) + "  db-2: {address: 10.0.0.7, roles: [db]}\n")
    return p


def test_the_outlook_offline_uses_the_figures_kept_for_this_cluster(small, tmp_path,
                                                                      monkeypatch):
    from sentryfab.procedures import capacity, probe_figures

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert capacity.outlook(small, None).tiers == []
    probe_figures.record("hosts", "web", 27.8, "bench/real_sentry.py", {"threads": 4},
                         at="2025-01-31T10:00:00Z")
    o = capacity.outlook(small, None)
    assert [(x.component, x.limit) for x in o.tiers] == [("web tier", 8 * 27.8)]
    assert o.missing == ["worker: no events/s per process: run `fab capacity.probe` on the "
                         "lab or declare roles.worker.events_per_second_per_process"]
    assert o.tiers[0].note == ("8 processes x 27.8/s, bench/real_sentry.py 2025-01-31; "
                               "measured at threads 4, the inventory runs 2")
