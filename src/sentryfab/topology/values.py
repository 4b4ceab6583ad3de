"""PostgreSQL's text forms <-> Python values: WAL positions (pg_lsn), integers, booleans. Pure."""

from __future__ import annotations

import re

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
#: An LSN inside a message (pg_waldump's errors and records).
LSN_IN_TEXT = r"([0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8})"


def lsn_text(lsn: int | None) -> str:
    """16/B374D848 form of a WAL position (PostgreSQL's pg_lsn text)."""
    if lsn is None:
        return "?"
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int | None:
    """'16/B374D848' -> an int comparable and subtractable in bytes; None if empty/invalid."""
    m = _LSN.match(text.strip())
    if not m:
        return None
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def to_int(text: str) -> int | None:
    """An integer, or None if the text is not one (an empty column)."""
    try:
        return int(text)
    except ValueError:
        return None


def to_float(text: str) -> float | None:
    """A number, or None if the text is not one (an empty column)."""
    try:
        return float(text)
    except ValueError:
        return None


def to_bool(text: str) -> bool | None:
    """PostgreSQL's boolean text (t/f, true/false), or None."""
    return {"t": True, "true": True, "f": False, "false": False}.get(text.strip())
