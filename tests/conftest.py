"""Shared fixtures: the repo root and a quick way to write an inventory file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def write_inventory(tmp_path: Path):
    """Write dedented YAML to tmp/hosts.yaml and return its path."""

    def write(text: str, name: str = "hosts.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return write
