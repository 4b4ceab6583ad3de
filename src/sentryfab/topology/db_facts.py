"""What discovery asks a db host, each question beside the parser of its answer (a fact:
`command()` builds it, `parse()` reads its output). Pure; tested with captured outputs.

DbProbe      everything about one db host in one round trip -> a DbNode
ControlData  pg_controldata of a stopped cluster -> Control
WalEnd       where a stopped cluster's WAL ends (pg_waldump) -> an LSN
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from ..containers.postgres import (
    DATA_DIR,
    DEGRADED_FILE,
    FENCE_FILE,
    OLD_FENCE_FILE,
    controldata,
    read_marker,
    wal_end,
)
from ..shell import join
from .db_commands import psql
from .model import Control, DbNode, Marker, Receiver, Slot, Standby
from .values import LSN_IN_TEXT, lsn_text, parse_lsn, to_bool, to_float, to_int

#: Section markers in a probe's output (a line of its own each).
MARK = "@@sentryfab "

#: One line per fact, 'kind|field|field...': everything a node knows about itself.
NODE_SQL = (
    "select 'node|' || pg_is_in_recovery() || '|' || "
    # A replica's timeline: its WAL receiver's, else (receiver down: the primary died) the
    # newest timeline of a WAL segment it holds; its last restartpoint's may be older.
    "coalesce(case when pg_is_in_recovery() then greatest("
    "(select received_tli from pg_stat_wal_receiver), (select max(('x' || substr(name, 1, 8))"
    "::bit(32)::int) from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$'))::text else "
    "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text end, "
    "'') || '|' || (pg_control_checkpoint()).timeline_id || '|' || "
    "coalesce(case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end, '')"
    " || '|' || coalesce(pg_last_wal_receive_lsn()::text, '') || '|' || "
    "coalesce(pg_last_wal_replay_lsn()::text, '') || '|' || "
    # Seconds behind only while something received is not replayed yet: an idle primary
    # sends nothing, and the last replayed commit's age would look like lag.
    "coalesce(case when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then '0' else "
    "extract(epoch from now() - pg_last_xact_replay_timestamp())::text end, '') || '|' || "
    "case when pg_is_in_recovery() then pg_get_wal_replay_pause_state() else '' end || '|' || "
    "current_setting('synchronous_standby_names')"
)
RECEIVER_SQL = (
    "select 'receiver|' || status || '|' || coalesce(sender_host, '') || '|' || "
    "coalesce(sender_port::text, '') || '|' || coalesce(latest_end_lsn::text, '') || '|' || "
    "coalesce(extract(epoch from now() - last_msg_receipt_time)::text, '') || '|' || "
    "coalesce(slot_name, '') from pg_stat_wal_receiver"
)
STANDBYS_SQL = (
    "select 'standby|' || application_name || '|' || coalesce(host(client_addr), '') || '|' "
    "|| coalesce(state, '') || '|' || coalesce(sync_state, '') || '|' || "
    "coalesce(sent_lsn::text, '') || '|' || coalesce(flush_lsn::text, '') || '|' || "
    "coalesce(replay_lsn::text, '') || '|' || "
    "coalesce(extract(epoch from replay_lag)::text, '') from pg_stat_replication"
)
SLOTS_SQL = (
    "select 'slot|' || slot_name || '|' || slot_type || '|' || active || '|' || "
    "coalesce(restart_lsn::text, '') || '|' || coalesce(wal_status, '') "
    "from pg_replication_slots"
)
PROBE_SQL = (NODE_SQL, RECEIVER_SQL, STANDBYS_SQL, SLOTS_SQL)


class ControlData:
    """pg_controldata of a stopped cluster: how it stopped and where its last checkpoint is."""

    @staticmethod
    def command(image: str) -> str:
        """pg_controldata in a throwaway container of the db image."""
        return controldata(image)

    @staticmethod
    def parse(text: str) -> Control | None:
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
            timeline=to_int(fields.get("Latest checkpoint's TimeLineID", "")),
            min_recovery_lsn=parse_lsn(fields.get("Minimum recovery ending location", "")),
            segment_size=to_int(fields.get("Bytes per WAL segment", "")) or 16 * 1024 * 1024,
        )


class DbProbe:
    """Everything discovery needs from one db host, in one round trip, in marked sections:
    container state, data files, fence and degrade markers, PostgreSQL's answers (if it
    runs) or pg_controldata (if it does not)."""

    @staticmethod
    def command(container: str, image: str) -> str:
        """The probe: one shell line, its sections each after a '@@sentryfab <name>' line."""
        state = join(["docker", "inspect", "--format", "{{.State.Status}}", container])
        files = join([f"{DATA_DIR}/PG_VERSION", f"{DATA_DIR}/standby.signal"])
        return (
            # docker's complaint goes to stderr: "No such object" is a missing container, but
            # "permission denied" must not read as one (procedures/discover.py names it).
            f"st=$({state} || echo missing); "
            f"echo {join([MARK + 'container'])}; echo \"$st\"; "
            f"echo {join([MARK + 'files'])}; "
            f"for f in {files}; do [ -e \"$f\" ] && echo \"${{f##*/}}\"; done; "
            f"echo {join([MARK + 'fenced'])}; {read_marker(FENCE_FILE, OLD_FENCE_FILE)}; "
            f"echo {join([MARK + 'degraded'])}; {read_marker(DEGRADED_FILE)}; "
            f"echo {join([MARK + 'sql'])}; "
            f"if [ \"$st\" = running ]; then {psql(container, *PROBE_SQL)} 2>&1; fi; "
            f"echo {join([MARK + 'control'])}; "
            f"if [ \"$st\" != running ] && [ -e {join([DATA_DIR + '/PG_VERSION'])} ]; then "
            f"timeout 30 {ControlData.command(image)} 2>&1; fi; true"
        )

    @staticmethod
    def parse(node: DbNode, stdout: str) -> DbNode:
        """Fill a node (name, address, port already set) from the probe's output."""
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
            node = replace(node, control=ControlData.parse("\n".join(sec.get("control", []))))
        return node


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


def _sql_facts(lines: list[str], node: DbNode) -> DbNode:
    """The 'kind|...' lines of the probe's psql part; anything else is an error message."""
    standbys, slots, errors = [], [], []
    for line in lines:
        kind, _, rest = line.partition("|")
        f = rest.split("|")
        if kind == "node" and len(f) >= 9:
            node = replace(
                node, in_recovery=to_bool(f[0]),
                timeline=to_int(f[1]) or to_int(f[2]), current_lsn=parse_lsn(f[3]),
                receive_lsn=parse_lsn(f[4]), replay_lsn=parse_lsn(f[5]),
                replay_age=to_float(f[6]), replay_paused=f[7], sync_names="|".join(f[8:]))
        elif kind == "receiver" and len(f) >= 6:
            node = replace(node, receiver=Receiver(
                status=f[0], sender_host=f[1], sender_port=to_int(f[2]),
                latest_end_lsn=parse_lsn(f[3]), last_msg_age=to_float(f[4]), slot=f[5]))
        elif kind == "standby" and len(f) >= 8:
            standbys.append(Standby(f[0], f[1], f[2], f[3], parse_lsn(f[4]), parse_lsn(f[5]),
                                    parse_lsn(f[6]), to_float(f[7])))
        elif kind == "slot" and len(f) >= 5:
            slots.append(Slot(f[0], f[1], to_bool(f[2]) is True, parse_lsn(f[3]), f[4]))
        elif line.strip():
            errors.append(line.strip())
    node = replace(node, standbys=tuple(standbys), slots=tuple(slots))
    if node.in_recovery is None:
        node = replace(node, sql_error="; ".join(errors)[-300:] or "no answer")
    return node


class WalEnd:
    """Where a stopped cluster's WAL ends, read with pg_waldump from a start position: what a
    failover to a replica at that position would lose."""

    @staticmethod
    def command(image: str, start: int, segment_file: str) -> str:
        """pg_waldump from `start`, in `segment_file` (the start's own segment), its tail."""
        return wal_end(image, lsn_text(start), segment_file)

    @staticmethod
    def parse(text: str, start: int) -> int | None:
        """Where the WAL ends, from the tail of pg_waldump's output.

        pg_waldump reads records until one is invalid: 'invalid record length at X' names
        the end; 'could not find a valid record after S' means nothing follows the start;
        otherwise the last record read (its lsn and total length) ends it. None: it could
        not tell (a missing segment, another error).
        """
        m = re.search(r"invalid record length at " + LSN_IN_TEXT, text)
        if m:
            return parse_lsn(m.group(1))
        if re.search(r"could not find a valid record after " + LSN_IN_TEXT, text):
            return start
        last = None
        for m in re.finditer(r"len \(rec/tot\):\s*\d+/\s*(\d+), .*?lsn: " + LSN_IN_TEXT, text):
            at = parse_lsn(m.group(2))
            if at is not None:
                last = at + int(m.group(1))
        if last is not None and re.search(r"error in WAL record at", text):
            return last
        return None
