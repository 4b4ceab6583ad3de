"""A PostgreSQL node's view of itself, its standbys and its slots, through the local socket
inside its container (no password)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import FactBase, Lines, timed

#: The database's view of itself, one 'key|value' row each (CASE guards the functions that
#: only work on a primary or only on a replica).
DB_NODE_SQL = " union all ".join([
    "select 'recovery|' || pg_is_in_recovery()",
    "select 'max_connections|' || current_setting('max_connections')",
    "select 'reserved_connections|' || current_setting('superuser_reserved_connections')",
    "select 'connections|' || count(*) from pg_stat_activity "
    "where backend_type = 'client backend'",
    "select 'timeline|' || coalesce(case when pg_is_in_recovery() then "
    "(select received_tli from pg_stat_wal_receiver) else "
    "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end, "
    "(pg_control_checkpoint()).timeline_id)",
    "select 'lsn|' || case when pg_is_in_recovery() then pg_last_wal_replay_lsn() "
    "else pg_current_wal_lsn() end",
    "select 'receive_lsn|' || coalesce(pg_last_wal_receive_lsn()::text, '')",
    "select 'replay_lag_bytes|' || coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
    "pg_last_wal_replay_lsn())::bigint::text, '')",
    # Seconds behind: only while something received is not replayed yet (otherwise an idle
    # primary would look like a lagging replica).
    "select 'replay_age_s|' || coalesce(case when pg_last_wal_receive_lsn() = "
    "pg_last_wal_replay_lsn() then 0 else extract(epoch from now() - "
    "pg_last_xact_replay_timestamp()) end::text, '')",
    "select 'replay_paused|' || case when pg_is_in_recovery() then "
    "pg_get_wal_replay_pause_state() else '' end",
    "select 'wal_receiver|' || coalesce((select status || ' ' || coalesce(sender_host, '') "
    "from pg_stat_wal_receiver), '')",
])
#: The standbys streaming from this node: name, address, state, sync, lag bytes, lag seconds.
DB_STANDBYS_SQL = (
    "select 'standby|' || application_name || '|' || coalesce(host(client_addr), '') || '|' "
    "|| coalesce(state, '') || '|' || coalesce(sync_state, '') || '|' || "
    "coalesce(pg_wal_lsn_diff(case when pg_is_in_recovery() then pg_last_wal_receive_lsn() "
    "else pg_current_wal_lsn() end, replay_lsn)::bigint::text, '') || '|' || "
    "coalesce(extract(epoch from replay_lag)::text, '') from pg_stat_replication"
)
#: Replication slots and the WAL each holds back.
DB_SLOTS_SQL = (
    "select 'slot|' || slot_name || '|' || active || '|' || coalesce(pg_wal_lsn_diff("
    "case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() "
    "end, restart_lsn)::bigint::text, '') from pg_replication_slots"
)


@dataclass(frozen=True)
class Standby:
    """A standby streaming from this node (pg_stat_replication)."""

    name: str
    address: str
    state: str
    sync_state: str
    lag_bytes: int | None
    lag_seconds: float | None


@dataclass(frozen=True)
class Slot:
    """A replication slot and the WAL it holds back."""

    name: str
    active: bool
    retained_bytes: int | None


@dataclass(frozen=True)
class DbFacts:
    """A PostgreSQL node's view of itself."""

    node: dict[str, str]
    standbys: tuple[Standby, ...] = ()
    slots: tuple[Slot, ...] = ()

    @property
    def in_recovery(self) -> bool | None:
        """True on a replica, False on a primary, None if unknown."""
        recovery = self.node.get("recovery")
        return None if recovery is None else recovery in ("true", "t")

    def num(self, key: str) -> float | None:
        """A node field as a number (None if empty or absent)."""
        try:
            return float(self.node[key])
        except (KeyError, ValueError):
            return None


def _opt_int(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() else None


def _opt_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class Db(FactBase):
    """The node's state, its standbys and its slots."""

    name = "db"

    @staticmethod
    def command(container: str) -> str:
        """psql as postgres inside the container, the three queries in one run."""
        argv = ["docker", "exec", "--user", "postgres", container, "psql", "-X", "-A", "-t",
                "-d", "postgres"]
        for sql in (DB_NODE_SQL, DB_STANDBYS_SQL, DB_SLOTS_SQL):
            argv += ["-c", sql]
        return timed(argv)

    @staticmethod
    def parse(lines: Lines) -> DbFacts:
        """'key|value' rows, 'standby|...' rows and 'slot|...' rows."""
        node: dict[str, str] = {}
        standbys, slots = [], []
        for line in lines:
            parts = line.split("|")
            if parts[0] == "standby" and len(parts) == 7:
                standbys.append(Standby(parts[1], parts[2], parts[3], parts[4],
                                        _opt_int(parts[5]), _opt_float(parts[6])))
            elif parts[0] == "slot" and len(parts) == 4:
                slots.append(Slot(parts[1], parts[2] in ("true", "t"), _opt_int(parts[3])))
            elif len(parts) == 2:
                node[parts[0]] = parts[1]
        return DbFacts(node, tuple(standbys), tuple(slots))
