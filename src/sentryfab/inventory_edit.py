"""Changing one number in hosts.yaml in place, keeping every comment and the layout."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import SentryfabError
from .inventory import _compose_and_load, _line_map


def set_role_var(path: Path, role: str, key: str, value: int) -> None:
    """Set roles.<role>.<key> to an integer in the file, on the line that holds it now.

    Only an existing `key: <number>` is rewritten (block or flow style): anything else is
    refused with a message, rather than reformatting a file people maintain by hand.
    """
    text = path.read_text()
    node, _ = _compose_and_load(text)
    lines_map = _line_map(node)
    where = f"roles/{role}/{key}"
    line_no = lines_map.get(where)
    if not isinstance(line_no, int):
        raise SentryfabError(f"{path}: no '{where}' to change; add `{key}: {value}` under "
                             f"roles: {role}: and run again")
    lines = text.splitlines(keepends=True)
    pattern = re.compile(rf"(\b{re.escape(key)}:\s*)(\d+)")
    new, n = pattern.subn(lambda m: f"{m.group(1)}{value}", lines[line_no - 1], count=1)
    if n != 1:
        raise SentryfabError(f"{path}:{line_no}: '{where}' is not a plain number; edit it by "
                             "hand")
    lines[line_no - 1] = new
    updated = "".join(lines)
    check = yaml.safe_load(updated)
    if check["roles"][role][key] != value:  # the edit must mean exactly what we intended
        raise SentryfabError(f"{path}:{line_no}: could not change '{where}' safely")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(updated)
    tmp.replace(path)
