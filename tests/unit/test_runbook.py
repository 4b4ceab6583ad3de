"""The runbook: deterministic, complete, and free of secret values."""

from __future__ import annotations

from pathlib import Path

from sentryfab import inventory, runbook
from sentryfab.plans.forecast import outlook
from sentryfab.procedures.docs import read_decisions

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-secret-9d2f7"


def make(live=None):
    inv = inventory.load(REPO / "hosts.yaml")
    decisions = read_decisions(REPO / "docs" / "decisions")
    # What `fab docs --offline` passes: the capacity lines with the disk forecast and the
    # tiers' throughput (declared figures only).
    report = outlook(inv, {}, {}, {}).report
    return inv, runbook.render(inv, live or runbook.Live(), report, decisions,
                               "~/.config/sentryfab/sentry-prod.secrets.yaml")


def test_same_inputs_same_bytes_and_every_host_is_there():
    inv, first = make()
    _, second = make()
    assert first == second
    for h in inv.hosts:
        assert f"| {h.name} | {h.address} |" in first
    assert "```mermaid" in first and "pgbouncer -->|SQL to the primary| db" in first
    assert "| db_password | `SENTRYFAB_SECRET_DB_PASSWORD` |" in first
    assert "First to run out:" in first
    assert "### PgBouncer in front of PostgreSQL, transaction pooling" in first


def test_live_facts_are_shown_and_secrets_never(monkeypatch):
    monkeypatch.setenv("SENTRYFAB_SECRET_DB_PASSWORD", CANARY)
    live = runbook.Live(primary="db-2", replicas=["db-1"], source="read over SSH",
                        audit=[{"at": "2026-11-27T01:00:00Z", "who": "alice (A <a@x>)",
                                "action": "deploy.web", "version": "24.1.1", "result": "ok"}])
    _, text = make(live)
    assert "- primary: **db-2**" in text and "- replicas: db-1" in text
    assert "| 2026-11-27T01:00:00Z | alice | deploy.web | 24.1.1 | ok |" in text
    assert CANARY not in text


def test_the_committed_runbook_is_up_to_date():
    # docs/runbook.md is `fab docs --offline` of the reference inventory: regenerate it
    # when the inventory, templates' settings or decisions change.
    _, text = make()
    assert (REPO / "docs" / "runbook.md").read_text() == text


def test_the_runbook_says_how_sentry_is_run_for_the_long_haul():
    _, text = make()
    assert ("- Retention: `sentry cleanup --days 90` daily at 03:00 UTC in `sentry-cleanup-1` "
            "on the cron host;") in text
    assert ("- Files (release files, source maps, debug files): `/srv/sentry-files` on every "
            "Sentry host, mounted at `/var/lib/sentry/files` (shared storage: one NFS share "
            "everywhere).") in text
    assert "- Mail: `smtp.example.net:25` from `sentry@example.net`." in text
    assert "`/api/<id>/store/`" in text and "Not there (sentry-sdk" in text
    assert "| throughput | worker tier | 4,800 | 5,000 | 104% |" in text
    assert "| disk | db-1 data disk | 1024.0 GiB |" in text


def test_the_page_is_its_sections_in_order():
    inv, text = make()
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads[:10] == ["## Architecture", "## Current database topology",
                          "## Reaching the hosts", "## Where things live on the hosts",
                          "## Running Sentry", "## Secrets", "## Backups and restore",
                          "## Owners", "## Dashboards", "## Alert targets"]
    assert heads[10:12] == ["## Capacity", "## Recent changes (audit log)"]
    assert heads[-2:] == ["## Decisions", "## Everyday commands"]
    assert runbook._topology(runbook.Live(primary="db-1")) == [
        "", "## Current database topology", "", "- primary: **db-1**", "- replicas: none",
        "", "`fab db.status` shows it live (lag, timelines, where PgBouncer points)."]
    assert runbook._capacity(None) == []
    assert runbook._decisions([("0001-x.md", "# X\n\n## Why\nbecause\n")]) == [
        "", "## Decisions", "", "<!-- docs/decisions/0001-x.md -->",
        "### X\n\n#### Why\nbecause", ""]


def test_decision_records_are_read_in_name_order_and_the_old_name_still_answers(tmp_path):
    (tmp_path / "b.md").write_text("B")
    (tmp_path / "a.md").write_text("A")
    (tmp_path / "notes.txt").write_text("not a record")
    assert read_decisions(tmp_path) == [("a.md", "A"), ("b.md", "B")]
    assert read_decisions(tmp_path / "missing") == []
