"""The audit trail's pure parts: the record, and the shell that appends and reads it
(exact strings: the ones procedures/audit.py sent before they moved here)."""

from __future__ import annotations

import json

from sentryfab import auditlog
from sentryfab.procedures import audit

NASTY = {"at": "2026-01-01T00:00:00Z", "who": "a (A <a@x>)", "action": "deploy.web",
         "result": "ok", "message": "it's \"quoted\" $x `id`\nline2", "version": "9.1.2"}


def test_append_command_exact():
    assert auditlog.append_command(NASTY) == (
        "mkdir -p /var/log/sentryfab && printf '%s\\n' '{\"action\": \"deploy.web\", "
        "\"at\": \"2026-01-01T00:00:00Z\", \"message\": \"it'\"'\"'s \\\"quoted\\\" $x `id`"
        "\\nline2\", \"result\": \"ok\", \"version\": \"9.1.2\", \"who\": \"a (A <a@x>)\"}' "
        ">> /var/log/sentryfab/audit.log")


def test_tail_command_exact():
    assert auditlog.tail_command(20) == \
        "tail -n 20 /var/log/sentryfab/audit.log 2>/dev/null; true"
    assert auditlog.tail_command("2") == \
        "tail -n 2 /var/log/sentryfab/audit.log 2>/dev/null; true"


def test_parse_lines_keeps_what_is_not_json_as_raw():
    assert auditlog.parse_lines('{"a": 1}\nnot json\n\n  \n{"b": [1, 2]}\n') == [
        {"a": 1}, {"raw": "not json"}, {"b": [1, 2]}]


def test_an_entry_is_when_who_what_result_then_details_which_win():
    rec = auditlog.make_entry("2026-01-01T00:00:00Z", "alice", "deploy.web", "started",
                              {"version": "9.1.2", "result": "overridden"})
    assert list(rec) == ["at", "who", "action", "result", "version"]
    assert rec == {"at": "2026-01-01T00:00:00Z", "who": "alice", "action": "deploy.web",
                   "result": "overridden", "version": "9.1.2"}


def test_the_procedure_re_exports_the_pure_parts_and_stamps_entries(monkeypatch):
    assert audit.append_command is auditlog.append_command
    assert audit.tail_command is auditlog.tail_command
    assert audit.parse_lines is auditlog.parse_lines
    assert audit.REMOTE_LOG == auditlog.REMOTE_LOG == "/var/log/sentryfab/audit.log"
    monkeypatch.setattr(audit, "identity", lambda: "bob (Bob <b@x>)")
    rec = audit.entry("db.switchover", "ok", target="db-2")
    assert list(rec) == ["at", "who", "action", "result", "target"]
    assert rec["who"] == "bob (Bob <b@x>)" and rec["target"] == "db-2"
    assert json.loads(json.dumps(rec)) == rec
