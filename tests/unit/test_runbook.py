"""The runbook: deterministic, complete, and free of secret values."""

from __future__ import annotations

from pathlib import Path

from sentryfab import inventory, runbook
from sentryfab.plans.capacity import plan

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-secret-9d2f7"


def make(live=None):
    inv = inventory.load(REPO / "hosts.yaml")
    decisions = runbook.read_decisions(REPO / "docs" / "decisions")
    return inv, runbook.render(inv, live or runbook.Live(), plan(inv, {}), decisions,
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
