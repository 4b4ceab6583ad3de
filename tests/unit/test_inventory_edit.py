"""Editing one role var in hosts.yaml keeps comments and layout."""

from __future__ import annotations

import pytest

from sentryfab.errors import SentryfabError
from sentryfab.inventory_edit import set_role_var

TEXT = """\
# the cluster
roles:
  web:
    processes: 8     # per host
    threads: 4
  worker: {image: x, processes: 2, concurrency: 1}
hosts: {}
"""


def test_block_and_flow_styles_are_edited_in_place(tmp_path):
    p = tmp_path / "hosts.yaml"
    p.write_text(TEXT)
    set_role_var(p, "web", "processes", 10)
    set_role_var(p, "worker", "processes", 3)
    assert p.read_text() == TEXT.replace("processes: 8", "processes: 10").replace(
        "processes: 2,", "processes: 3,")


def test_missing_key_is_refused_with_what_to_add(tmp_path):
    p = tmp_path / "hosts.yaml"
    p.write_text(TEXT)
    with pytest.raises(SentryfabError, match="no 'roles/worker/threads' to change; add "
                                             "`threads: 2` under roles: worker:"):
        set_role_var(p, "worker", "threads", 2)
    assert p.read_text() == TEXT
