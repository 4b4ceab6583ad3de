"""Remote output -> facts: the probe of a db host, pg_controldata, pg_waldump's end, PgBouncer's
SHOW DATABASES, a write probe. Pure, tested with captured outputs."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from .commands import MARK
from .model import BouncerDb, Control, DbNode, Marker, Receiver, Slot, Standby

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_LSN_IN_TEXT = r"([0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8})"


def parse_lsn(text: str) -> int | None:
    """'16/B374D848' -> an int comparable and subtractable in bytes; None if empty/invalid."""
    m = _LSN.match(text.strip())
    if not m:
        return None
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _bool(text: str) -> bool | None:
    return {"t": True, "true": True, "f": False, "false": False}.get(text.strip())


def sections(stdout: str) -> dict[str, list[str]]:
    """Split a probe's output at its '@@sentryfab <name>' lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK):
            current = out.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return out


def parse_marker(lines: list[str]) -> Marker | None:
    """A FENCED/DEGRADED file's JSON; a file that is there but unreadable still counts."""
    text = "\n".join(lines).strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return Marker(reason=text[:200])
    if not isinstance(data, dict):
        return Marker(reason=text[:200])
    return Marker(**{k: str(data.get(k, "")) for k in ("at", "who", "action", "new_primary",
                                                         "reason")})


def parse_controldata(text: str) -> Control | None:
    """pg_controldata's 'Name: value' lines -> how the cluster stopped and where."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    state = fields.get("Database cluster state")
    if state is None:
        return None
    return Control(
        state=state,
        checkpoint_lsn=parse_lsn(fields.get("Latest checkpoint location", "")),
        timeline=_int(fields.get("Latest checkpoint's TimeLineID", "")),
        min_recovery_lsn=parse_lsn(fields.get("Minimum recovery ending location", "")),
        segment_size=_int(fields.get("Bytes per WAL segment", "")) or 16 * 1024 * 1024,
    )


def _sql_facts(lines: list[str], node: DbNode) -> DbNode:
    """The 'kind|...' lines of the probe's psql part; anything else is an error message."""
    standbys, slots, errors = [], [], []
    for line in lines:
        kind, _, rest = line.partition("|")
        f = rest.split("|")
        if kind == "node" and len(f) >= 9:
            node = replace(
                node, in_recovery=_bool(f[0]),
                timeline=_int(f[1]) or _int(f[2]), current_lsn=parse_lsn(f[3]),
                receive_lsn=parse_lsn(f[4]), replay_lsn=parse_lsn(f[5]),
                replay_age=_float(f[6]), replay_paused=f[7], sync_names="|".join(f[8:]))
        elif kind == "receiver" and len(f) >= 6:
            node = replace(node, receiver=Receiver(
                status=f[0], sender_host=f[1], sender_port=_int(f[2]),
                latest_end_lsn=parse_lsn(f[3]), last_msg_age=_float(f[4]), slot=f[5]))
        elif kind == "standby" and len(f) >= 8:
            standbys.append(Standby(f[0], f[1], f[2], f[3], parse_lsn(f[4]), parse_lsn(f[5]),
                                    parse_lsn(f[6]), _float(f[7])))
        elif kind == "slot" and len(f) >= 5:
            slots.append(Slot(f[0], f[1], _bool(f[2]) is True, parse_lsn(f[3]), f[4]))
        elif line.strip():
            errors.append(line.strip())
    node = replace(node, standbys=tuple(standbys), slots=tuple(slots))
    if node.in_recovery is None:
        node = replace(node, sql_error="; ".join(errors)[-300:] or "no answer")
    return node


def parse_probe(node: DbNode, stdout: str) -> DbNode:
    """Fill a node (name, address, port already set) from the output of db_probe()."""
    sec = sections(stdout)
    files = {x.strip() for x in sec.get("files", [])}
    node = replace(
        node,
        container=(sec.get("container") or ["missing"])[0].strip() or "missing",
        has_data="PG_VERSION" in files,
        standby_signal="standby.signal" in files,
        fenced=parse_marker(sec.get("fenced", [])),
        degraded=parse_marker(sec.get("degraded", [])),
    )
    if node.container == "running":
        node = _sql_facts(sec.get("sql", []), node)
    elif node.has_data:
        node = replace(node, control=parse_controldata("\n".join(sec.get("control", []))))
    return node


def parse_wal_end(text: str, start: int) -> int | None:
    """Where a stopped cluster's WAL ends, from the tail of wal_end()'s pg_waldump output.

    pg_waldump reads records until one is invalid: 'invalid record length at X' names the
    end; 'could not find a valid record after S' means nothing follows the start; otherwise
    the last record read (its lsn and total length) ends it. None: it could not tell (a
    missing segment, another error).
    """
    m = re.search(r"invalid record length at " + _LSN_IN_TEXT, text)
    if m:
        return parse_lsn(m.group(1))
    if re.search(r"could not find a valid record after " + _LSN_IN_TEXT, text):
        return start
    last = None
    for m in re.finditer(r"len \(rec/tot\):\s*\d+/\s*(\d+), .*?lsn: " + _LSN_IN_TEXT, text):
        at = parse_lsn(m.group(2))
        if at is not None:
            last = at + int(m.group(1))
    if last is not None and re.search(r"error in WAL record at", text):
        return last
    return None


def parse_show(text: str, first: str = "name") -> list[dict[str, str]]:
    """psql's unaligned '|' output -> one dict per row, from the last header row whose
    first column is `first` (earlier commands of the session print their tags above)."""
    lines = [x for x in text.splitlines() if x and not re.match(r"^\(\d+ rows?\)$", x)]
    starts = [i for i, x in enumerate(lines) if x.split("|")[0] == first and "|" in x]
    if not starts:
        return []
    head = lines[starts[-1]].split("|")
    return [dict(zip(head, r.split("|"), strict=False)) for r in lines[starts[-1] + 1:]
            if "|" in r]


def parse_databases(text: str) -> tuple[BouncerDb, ...]:
    """SHOW DATABASES -> the [databases] entries (PgBouncer's own admin db left out)."""
    out = []
    for row in parse_show(text):
        if row.get("name") == "pgbouncer" or "host" not in row:
            continue
        out.append(BouncerDb(name=row.get("name", ""), host=row.get("host", ""),
                             port=_int(row.get("port", "")),
                             database=row.get("database", ""),
                             paused=row.get("paused", "0") not in ("0", ""),
                             disabled=row.get("disabled", "0") not in ("0", "")))
    return tuple(out)


def parse_write(text: str) -> tuple[int, str] | None:
    """The write probe's 'write|<txid>|<server address>' line."""
    for line in text.splitlines():
        kind, _, rest = line.partition("|")
        if kind == "write":
            txid, _, addr = rest.partition("|")
            if _int(txid) is not None:
                return int(txid), addr.strip()
    return None
