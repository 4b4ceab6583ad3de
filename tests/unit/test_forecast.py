"""The disk forecast and the throughput per tier, with exact figures; the reference's verdict."""

from __future__ import annotations

import dataclasses
import datetime as dt
import textwrap
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.errors import InventoryError
from sentryfab.plans.capacity import GB, MB, plan
from sentryfab.plans.forecast import (
    PER_PROCESS,
    TB,
    DbFacts,
    TierFigure,
    declared_db_facts,
    disk_forecast,
    outlook,
    retention_days,
    throughput,
    wal_kept,
)
from sentryfab.ui.capacity import verdicts, when

REPO = Path(__file__).resolve().parents[2]
TODAY = dt.date(2025, 3, 1)

# Nothing over in plan(): every line below is the forecast's.
CLUSTER = """\
sentry: {filestore: {shared: true}, retention_days: 30}
roles:
  web: {processes: 4, threads: 2, events_per_second_per_process: 25}
  worker: {processes: 2, concurrency: 3, events_per_second_per_process: 40}
  redis-queue: {maxmemory: 2gb, events_per_second: 10, event_size: 16kb, backlog_minutes: 10}
  db: {wal_keep_size: 2GB, max_slot_wal_keep_size: 20GB}
hosts:
  web-1: {address: 10.0.0.1, roles: [web]}
  web-2: {address: 10.0.0.2, roles: [web]}
  worker-1: {address: 10.0.0.3, roles: [worker, cron]}
  redis-1: {address: 10.0.0.4, roles: [redis-cache]}
  redis-2: {address: 10.0.0.5, roles: [redis-queue]}
  db-1: {address: 10.0.0.6, roles: [db, pgbouncer]}
  db-2: {address: 10.0.0.7, roles: [db]}
"""

#: A database of a million events at 8,000 bytes each plus 2 GB of the rest, its WAL at the
#: 20 GiB it may keep, 69.12 GB free; 1,000 events and 12 MB of WAL in a 10 s window.
MEASURED = DbFacts(disk_free=69_120_000_000, db_size=10_000_000_000,
                   event_bytes=8_000_000_000, events=1_000_000, wal_size=20 * GB,
                   window_seconds=10.0, window_events=1000, window_wal=12_000_000, source="ssh")


def load(tmp_path: Path, text: str = CLUSTER, **replace: str) -> inventory.Inventory:
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    p = tmp_path / "hosts.yaml"
    p.write_text(textwrap.dedent(text))
    return inventory.load(p)


def reference() -> inventory.Inventory:
    """hosts.yaml with the per-process rates the reference deployment ran at its peak (21
    events/s per web process, 100 per worker), unless it declares its own."""
    ref = inventory.load(REPO / "hosts.yaml")
    roles = {r: dict(ref.role_vars(r)) for r in ref.roles}
    roles["web"].setdefault(PER_PROCESS, 21)
    roles["worker"].setdefault(PER_PROCESS, 100)
    return dataclasses.replace(ref, roles=roles)


@pytest.fixture
def inv(tmp_path):
    return load(tmp_path)


def test_the_cluster_has_nothing_over_before_the_forecast(inv):
    assert plan(inv, {}).over == []


# --- bytes per event, steady state, the day the disk fills -----------------------------------

def test_a_measured_database_fills_its_disk_on_day_ten(inv):
    d = disk_forecast(inv, inv.host("db-1"), MEASURED, rate=10, retention=30)
    assert (d.bytes_per_event, d.bytes_source) == (8000, "1,000,000 events")
    assert (d.wal_per_event, d.wal_source) == (12_000, "1,000 events in 10 s")
    assert d.fixed == 2_000_000_000  # the database minus its event tables
    # 10 events/s x 86,400 s x 8,000 bytes a day, for 30 + 1 days, on top of the fixed part.
    assert d.growth_per_day == 6_912_000_000
    assert d.days == 31
    assert d.steady == 2_000_000_000 + 31 * 6_912_000_000 == 216_272_000_000
    # WAL kept: the largest of max_wal_size 1 GiB, wal_keep_size 2 GiB, the slot's 20 GiB.
    assert (d.wal_kept, d.wal_note) == (20 * GB, "max_slot_wal_keep_size")
    assert d.need == 216_272_000_000 + 20 * GB
    assert d.room == 69_120_000_000 + 10_000_000_000 + 20 * GB  # free + database + pg_wal
    # What is free (the WAL already at its cap) lasts 69.12 GB / 6.912 GB a day.
    assert d.runs_out_day == 10.0
    assert d.days_to_steady == pytest.approx((216_272_000_000 - 10_000_000_000) / 6_912_000_000)
    assert d.wal_per_second == 120_000
    assert d.slot_covers_seconds == 20 * GB / 120_000
    line = d.line()
    assert (line.tier, line.component, line.unit, line.over) == ("disk", "db-1 data disk",
                                                                 "bytes", True)
    assert line.note == ("31 days x 10 events/s x 7.8 KiB/event (1,000,000 events) + fixed "
                         "1.9 GiB + WAL kept 20.0 GiB")


def test_a_disk_that_holds_the_steady_state_never_fills(inv):
    big = dataclasses.replace(MEASURED, disk_free=300_000_000_000)
    d = disk_forecast(inv, inv.host("db-1"), big, rate=10, retention=30)
    assert d.need == 216_272_000_000 + 20 * GB < d.room == 310_000_000_000 + 20 * GB
    assert d.runs_out_day is None and not d.line().over


def test_too_few_events_to_measure_use_the_declared_figures(inv):
    young = dataclasses.replace(MEASURED, events=999, window_events=99)
    d = disk_forecast(inv, inv.host("db-1"), young, rate=10, retention=30)
    assert (d.bytes_per_event, d.bytes_source) == (8 * 1024, "declared")
    assert (d.wal_per_event, d.wal_source) == (16 * 1024, "declared")


def test_a_database_bigger_than_its_steady_state_does_not_shrink(inv):
    d = disk_forecast(inv, inv.host("db-1"), MEASURED, rate=0.1, retention=30)
    # 0.1/s x 86,400 x 8,000 x 31 + 2 GB = 4.14 GB: less than the 10 GB there now.
    assert d.steady == 10_000_000_000 and d.days_to_steady == 0.0


def test_without_growth_a_disk_too_small_for_the_wal_kept_is_full_on_day_zero(inv):
    """The lab test's case: an idle cluster (no rate), one db host's data directory on a small
    filesystem: the WAL a lagging replica may hold back does not fit."""
    small = DbFacts(disk_free=2 * GB, db_size=100 * MB, wal_size=64 * MB, source="ssh")
    d = disk_forecast(inv, inv.host("db-2"), small, rate=0, retention=30)
    assert (d.need, d.room) == (100 * MB + 20 * GB, 2 * GB + 164 * MB)
    assert d.runs_out_day == 0.0


def test_wal_kept_with_one_db_host_has_no_slot_and_unbounded_slots_keep_a_day(tmp_path):
    alone = load(tmp_path, CLUSTER.replace("  db-2: {address: 10.0.0.7, roles: [db]}\n", ""))
    assert wal_kept(alone, alone.host("db-1"), 1000.0) == (2 * GB, "wal_keep_size")
    unbounded = load(tmp_path, **{"max_slot_wal_keep_size: 20GB": "max_slot_wal_keep_size: -1"})
    assert wal_kept(unbounded, unbounded.host("db-1"), 1_000_000.0) == (
        86_400_000_000, "a day of WAL (max_slot_wal_keep_size -1: unbounded)")
    d = disk_forecast(unbounded, unbounded.host("db-1"), MEASURED, rate=10, retention=30)
    assert d.slot_covers_seconds is None


def test_declared_facts_are_an_empty_database_on_data_disk(tmp_path):
    inv = load(tmp_path, **{"db-2: {address: 10.0.0.7, roles: [db]}":
                            "db-2: {address: 10.0.0.7, roles: [db], vars: {data_disk: 4tb}}"})
    assert declared_db_facts(inv, inv.host("db-2")) == DbFacts(disk_free=4 * TB)
    assert declared_db_facts(inv, inv.host("db-1")) == DbFacts(disk_free=TB)  # the default


def test_bad_figures_are_inventory_errors(tmp_path):
    with pytest.raises(InventoryError, match="sentry/retention_days: must be a whole number"):
        load(tmp_path, **{"sentry: {filestore: {shared: true}, retention_days: 30}":
                          "sentry: {filestore: {shared: true}, retention_days: 0}"})
    inv = load(tmp_path, **{"wal_keep_size: 2GB": "wal_keep_size: lots"})
    with pytest.raises(InventoryError, match="wal_keep_size: must be a size like 8kb or 2tb, "
                                             "got 'lots'"):
        outlook(inv, {}, {}, {})


def test_retention_defaults_to_ninety_days(tmp_path):
    inv = load(tmp_path, **{", retention_days: 30": ""})
    assert retention_days(inv) == 90


# --- throughput per tier -----------------------------------------------------------------------

def test_each_tier_carries_processes_times_its_per_process_rate(inv):
    lines, missing = throughput(inv, 10, {})
    assert [(x.component, x.limit, x.planned, x.note) for x in lines] == [
        ("web tier", 200, 10, "8 processes x 25/s, declared"),
        ("worker tier", 80, 10, "2 processes x 40/s, declared")]
    assert missing == []


def test_a_worker_tier_below_the_rate_says_what_the_queue_does(inv):
    lines, _ = throughput(inv, 100, {})
    worker = lines[1]
    assert (worker.limit, worker.over, worker.headroom) == (80, True, -20)
    # 20 events/s more than the workers store: 2 GiB / (20 x (16 KiB + 1 KiB)) = 1.7 h,
    # before an event waits past the payloads' hour (3,600 s x 80 / 20 = 4 h).
    assert worker.note == ("2 processes x 40/s, declared; the queue grows 20/s: its "
                           "maxmemory is full after 1.7 h")


def test_kept_probe_figures_win_over_declared_and_say_how_they_were_measured(inv):
    figures = {"worker": TierFigure(8.2, "2025-01-31T10:00:00Z", "bench/real_sentry.py",
                                    {"concurrency": 1})}
    lines, _ = throughput(inv, 10, figures)
    assert [(x.component, x.limit, x.note) for x in lines] == [
        ("web tier", 200, "8 processes x 25/s, declared"),
        ("worker tier", 16.4, "2 processes x 8.2/s, bench/real_sentry.py 2025-01-31; measured "
                              "at concurrency 1, the inventory runs 3")]


def test_a_tier_without_a_figure_is_named_not_guessed(tmp_path):
    inv = load(tmp_path, **{", events_per_second_per_process: 40": ""})
    lines, missing = throughput(inv, 10, {})
    assert [x.component for x in lines] == ["web tier"]
    assert missing == ["worker: no events/s per process: run `fab capacity.probe` on the lab "
                       "or declare roles.worker.events_per_second_per_process"]


# --- the outlook: rate, first to run out, exit code --------------------------------------------

def test_declared_rate_wins_and_the_first_disk_and_tier_are_named(inv):
    o = outlook(inv, {}, {"db-1": MEASURED}, {})
    assert (o.rate, o.rate_source, o.measured_rate, o.retention_days) == (10, "declared",
                                                                         100.0, 30)
    assert [d.runs_out_day for d in o.disks] == [10.0, None]  # db-2: declared 1 TiB, empty
    assert o.first_disk.host == "db-1" and o.runs_out_within_retention
    assert (o.first_tier.component, o.first_tier.limit) == ("worker tier", 80)
    assert [x.component for x in o.report.over] == ["db-1 data disk"]
    assert o.exit_code == 1
    assert verdicts(o, TODAY) == [
        ("rate: 10.0 events/s (declared); measured 100.0 events/s on the db hosts; retention "
         "30 days: the database holds 31 days of events at steady state (cleanup runs daily)",
         ""),
        ("disk: db-1 fills first, on day 10 (2025-03-11), inside the 30-day retention window: "
         "steady state needs 221.4 GiB, it has 93.7 GiB", "bold red"),
        # The shortest: db-2, whose 16 KiB/event is declared (db-1's 12,000 bytes: 49.7 h).
        ("WAL: 0.2 MiB/s on db-2 at this rate (16.0 KiB/event): a replica may be away 36.4 h "
         "before its slot is given up (max_slot_wal_keep_size 20.0 GiB) and it must be cloned "
         "again", ""),
        ("throughput: the worker tier runs out first, at 80.0 events/s (planned 10.0: 12%)",
         "bold")]


def test_a_forecast_that_fits_exits_zero(inv):
    roomy = dataclasses.replace(MEASURED, disk_free=300_000_000_000)
    o = outlook(inv, {}, {"db-1": roomy}, {})
    assert (o.first_disk, o.runs_out_within_retention, o.report.over, o.exit_code) == (
        None, False, [], 0)
    assert verdicts(o, TODAY)[1] == (
        "disk: every db host holds the steady state (fullest: db-1, 221.4 GiB of 308.7 GiB, "
        "reached in 30 days)", "green")


def test_without_a_declared_rate_the_measured_one_plans_disks_tiers_and_backlog(tmp_path):
    inv = load(tmp_path, **{"events_per_second: 10, ": ""})
    o = outlook(inv, {}, {"db-1": MEASURED}, {})
    assert (o.rate, o.rate_source) == (100.0, "measured")
    assert o.disks[0].rate == 100.0 and o.tiers[1].planned == 100.0
    payloads = next(x for x in o.report.lines if x.component == "redis-2 payloads")
    assert payloads.planned == 100 * 600 * 17 * 1024


def test_with_no_rate_at_all_the_disk_is_planned_without_growth(tmp_path):
    inv = load(tmp_path, **{"events_per_second: 10, ": ""})
    o = outlook(inv, {}, {}, {}, missing=["db-1: disk and database not read (x)"])
    assert (o.rate, o.rate_source, o.measured_rate) == (0.0, "none", None)
    assert [d.runs_out_day for d in o.disks] == [None, None] and o.exit_code == 0
    assert o.missing == ["db-1: disk and database not read (x)"]
    assert verdicts(o, TODAY)[0][0].startswith("rate: none declared")
    assert verdicts(o, TODAY)[-1] == ("not known: db-1: disk and database not read (x)",
                                      "yellow")


def test_when():
    assert when(0.0, TODAY) == "now"
    assert when(0.3075, TODAY) == "in 7.4 h"
    assert when(12.4, TODAY) == "on day 12 (2025-03-13)"


# --- the reference inventory ---------------------------------------------------------------

def test_the_reference_forecast_5000_events_a_second_for_91_days_needs_293_tib_per_db_host():
    o = outlook(reference(), {}, {}, {})
    db1, db2 = o.disks
    assert (o.rate, o.retention_days) == (5000, 90)
    assert (db1.bytes_per_event, db1.wal_per_event) == (8 * 1024, 16 * 1024)  # declared
    assert db1.growth_per_day == 5000 * 86_400 * 8192 == 3_538_944_000_000  # 3.2 TiB a day
    assert db1.steady == 91 * 3_538_944_000_000 == 322_043_904_000_000       # 292.9 TiB
    assert (db1.wal_kept, db1.wal_note) == (10 * GB, "max_slot_wal_keep_size")
    assert db1.room == TB  # the default data_disk: hosts.yaml declares none
    assert db1.runs_out_day == pytest.approx(0.30766, abs=1e-5)  # 7.4 hours
    assert db1.wal_per_second == 81_920_000  # 78.1 MiB/s
    assert db1.slot_covers_seconds == pytest.approx(131.07, abs=0.01)
    assert db2 == dataclasses.replace(db1, host="db-2")
    assert (o.first_disk.host, o.runs_out_within_retention, o.exit_code) == ("db-1", True, 1)


def test_the_reference_throughput_web_5040_and_workers_4800_against_5000():
    o = outlook(reference(), {}, {}, {})
    web, worker = o.tiers
    assert (web.limit, web.planned, web.over) == (30 * 8 * 21, 5000, False)
    assert round(web.used_pct, 1) == 99.2
    assert (worker.limit, worker.over) == (12 * 4 * 100, True)
    assert o.first_tier is worker
    # 200 events/s more than 48 workers store: 56 GiB / (200 x 17 KiB) = 4.8 h; an event
    # would wait past the payloads' hour only after 24 h.
    assert worker.note == ("48 processes x 100/s, declared; the queue grows 200/s: its "
                           "maxmemory is full after 4.8 h")


def test_an_idle_cluster_with_one_small_data_disk_exits_one_naming_that_host(tmp_path):
    """What the lab test sees: no rate declared, none measured on an idle cluster, db-2's
    data directory on a 2 GiB filesystem."""
    inv = load(tmp_path, **{"events_per_second: 10, ": ""})
    idle = DbFacts(disk_free=200 * GB, db_size=100 * MB, wal_size=64 * MB, window_seconds=10.0,
                   source="ssh")
    small = dataclasses.replace(idle, disk_free=2 * GB)
    o = outlook(inv, {}, {"db-1": idle, "db-2": small}, {})
    assert (o.rate, o.rate_source, o.measured_rate) == (0.0, "measured", 0.0)
    assert (o.first_disk.host, o.first_disk.runs_out_day, o.exit_code) == ("db-2", 0.0, 1)
    assert [x.component for x in o.report.over] == ["db-2 data disk"]
    assert verdicts(o, TODAY)[1] == (
        "disk: db-2 fills first, now, inside the 30-day retention window: steady state needs "
        "20.1 GiB, it has 2.2 GiB", "bold red")


def test_the_json_lists_disk_and_tier_lines_over_as_the_exit_code_does(inv, capsys):
    import json

    from sentryfab.ui.capacity import show_outlook

    show_outlook(outlook(inv, {}, {"db-1": MEASURED}, {}), as_json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["over"] == ["db-1 data disk"]
    assert data["first_to_run_out"] == "db-1 data disk"
    f = data["forecast"]
    assert (f["rate"], f["rate_source"], f["retention_days"], f["exit_code"]) == (
        10, "declared", 30, 1)
    assert f["first_disk"] == {"host": "db-1", "day": 10.0}
    assert f["first_tier"] == {"tier": "worker tier", "at": 80}
    assert [(d["host"], d["runs_out_day"], d["need"]) for d in f["disks"]] == [
        ("db-1", 10.0, 216_272_000_000 + 20 * GB),
        ("db-2", None, 10 * 86_400 * 8192 * 31 + 20 * GB)]  # declared: empty, 8 KiB/event
