"""Input that is odd but valid: everything downstream of the inventory still works with it.

(Bad input through the real CLI, each ending in exit 2: tests/cli/test_bad_input_exits.py.)"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REF_TEXT = (REPO / "hosts.yaml").read_text()


def test_owners_keyed_by_numbers_still_render(tmp_path):
    """Odd but valid: the runbook sorted `1:` beside `db:` and raised TypeError."""
    from sentryfab import inventory, runbook

    path = tmp_path / "hosts.yaml"
    path.write_text(REF_TEXT + "owners: {db: dba, 1: ops}\n")
    text = runbook.render(inventory.load(path), runbook.Live(), None, [], None)
    assert "- 1: ops\n- db: dba\n" in text
