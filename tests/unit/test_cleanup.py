"""Retention: the daily `sentry cleanup`, its record, and how status judges it."""

from __future__ import annotations

from sentryfab import inventory
from sentryfab.containers import cleanup
from sentryfab.containers.spec import specs_for
from sentryfab.status.checks import Answer, evaluate_host

DAY = 86400
NOW = 1_800_000_000


def test_the_cron_host_runs_the_cleanup_beside_the_cron(write_inventory):
    inv = inventory.load(write_inventory("""\
        sentry: {retention_days: 14, cleanup_at: "02:15", filestore: {shared: true}}
        hosts:
          w: {address: 10.0.0.1, roles: [web, worker, cron, redis-cache, redis-queue, db,
                                         pgbouncer]}
        """))
    cron, clean = specs_for(inv, inv.host("w"), "cron")
    assert (cron.name, clean.name, clean.user, clean.index) == (
        "sentry-cron-1", "sentry-cleanup-1", "999", 2)
    assert clean.command[:2] == ("sh", "-c") and "cleanup --days 14" in clean.command[2]
    assert "02:15" in clean.command[2]
    assert clean.mounts[-1] == ("/var/lib/sentryfab/cleanup", "/var/lib/sentryfab/cleanup",
                                False)
    assert dict(clean.labels)["sentryfab.role"] == "cron"


def test_the_record_is_parsed_and_a_torn_line_skipped():
    facts = cleanup.parse_facts(["scheduled 1000", "1000 1060 0", "2000 2003 1",
                                 "3000 3010 1", "4000 40"])
    assert facts.scheduled_since == 1000
    assert [r.exit_code for r in facts.runs] == [0, 1, 1]
    assert facts.failed_in_a_row() == 2
    assert facts.hours_without_a_run(3000 + 7200) == 2.0
    never = cleanup.parse_facts(["scheduled "])
    assert never.scheduled_since is None and never.hours_without_a_run(5) is None


def _status(write_inventory, record: str):
    inv = inventory.load(write_inventory("""\
        sentry: {filestore: {shared: true}}
        thresholds: {load_per_cpu: [null, null]}
        hosts:
          w: {address: 10.0.0.1, roles: [cron, redis-queue, redis-cache, db, pgbouncer]}
        """))
    text = f"@@ cron-cleanup\n{record}@@rc 0\n@@ end 1 2\n"
    st, _ = evaluate_host(inv, inv.host("w"), Answer(text, 0, None, 0.01, None), None, NOW)
    return st


def problems(st):
    return [(p.severity, p.message) for p in st.problems if p.scope == "cron"]


def test_status_judges_the_cleanup(write_inventory):
    ok = _status(write_inventory, f"scheduled {NOW - 3 * DAY}\n{NOW - 3600} {NOW - 3540} 0\n")
    assert problems(ok) == []
    assert "retention: sentry cleanup --days 90 daily at 03:00 UTC; last ran 1 h ago, ok in " \
           "60 s" in ok.notes
    missed = _status(write_inventory, f"scheduled {NOW - 3 * DAY}\n{NOW - 30 * 3600} "
                                      f"{NOW - 30 * 3600 + 5} 0\n")
    assert problems(missed) == [(
        "warning", "retention cleanup last ran 30 h ago (warning > 26 h ago): see "
                   "/var/lib/sentryfab/cleanup/last.log on w, or run 'fab cron.cleanup'")]
    once = _status(write_inventory, f"scheduled {NOW - 3 * DAY}\n{NOW - 3600} {NOW - 3500} 1\n")
    assert [s for s, _ in problems(once)] == ["warning"]
    twice = _status(write_inventory, f"scheduled {NOW - 3 * DAY}\n{NOW - DAY - 3600} "
                                     f"{NOW - DAY - 3500} 1\n{NOW - 3600} {NOW - 3500} 1\n")
    assert problems(twice) == [(
        "critical", "retention cleanup runs failed in a row 2 (critical > 1): see "
                    "/var/lib/sentryfab/cleanup/last.log on w, or run 'fab cron.cleanup'")]
    young = _status(write_inventory, f"scheduled {NOW - 3600}\n")
    assert problems(young) == [] and any("never ran yet" in n for n in young.notes)
    unscheduled = _status(write_inventory, "scheduled \n")
    assert [s for s, _ in problems(unscheduled)] == ["warning"]


def test_retention_settings_are_checked(write_inventory):
    import pytest

    from sentryfab.errors import InventoryError

    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory("""\
            sentry: {retention_days: 0, cleanup_at: "3am"}
            hosts:
              w: {address: 10.0.0.1, roles: []}
            """))
    assert e.value.problems == [
        "hosts.yaml:1: sentry/retention_days: must be a whole number of days (1 or more; "
        "Sentry's default is 90), got 0",
        "hosts.yaml:1: sentry/cleanup_at: must be a time of day HH:MM in UTC, quoted "
        "(\"03:00\"), got '3am'",
    ]
