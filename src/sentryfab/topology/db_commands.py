"""What the failover steps run on a db host: psql, polls, the SQL of a promotion, stopping and
starting the container. Pure builders, exact strings; where a step reads the output, the
parser sits beside its command (Promote, ContainerHealth).

Every value reaches a shell as a quoted token or as a positional argument ("$1") of a fixed
script; secrets arrive on stdin. SQL here never holds a value from outside: LSNs and names
are formatted from parsed, typed values (an int, a slot name of [a-z0-9_]).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..shell import join
from .values import lsn_text

#: How long one PostgreSQL or PgBouncer question may take before the host counts as not
#: answering (a hung server must not hang a failover).
SQL_TIMEOUT = 10


def psql(container: str, *sql: str, timeout: int = SQL_TIMEOUT) -> str:
    """psql as the local superuser (unix socket, trust) in the db container: one -c each,
    unaligned, tuples only; gives up after `timeout` seconds."""
    argv = ["timeout", str(timeout), "docker", "exec", "--user", "postgres", container,
            "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
    for s in sql:
        argv += ["-c", s]
    return join(argv)


def poll_sql(container: str, sql: str, timeout: float, interval: float = 0.1) -> str:
    """Ask `sql` on the host until it prints 't' or `timeout` seconds pass (exit 1): one
    round trip however many tries."""
    tries = max(1, int(timeout / interval))
    return (f"i=0; while [ $i -lt {tries} ]; do "
            f"[ \"$({psql(container, sql)} 2>/dev/null)\" = t ] && exit 0; "
            f"i=$((i+1)); sleep {interval:g}; done; exit 1")


def replayed_sql(lsn: int) -> str:
    """'t' once this replica has replayed up to `lsn`."""
    return f"select pg_last_wal_replay_lsn() >= '{lsn_text(lsn)}'::pg_lsn"


def streaming_sql(sender: str) -> str:
    """'t' once this replica streams from `sender` (an address)."""
    quoted = sender.replace("'", "''")
    return ("select exists (select from pg_stat_wal_receiver where status = 'streaming' "
            f"and sender_host = '{quoted}')")


def sync_standby_sql(name: str) -> str:
    """'t' once `name` is a synchronous (or quorum) standby of this primary."""
    quoted = name.replace("'", "''")
    return ("select exists (select from pg_stat_replication where application_name = "
            f"'{quoted}' and state = 'streaming' and sync_state in ('sync', 'quorum'))")


#: Promotion, waiting for it to finish (PostgreSQL's own wait, 60 s); 'already' if it is
#: not in recovery. A paused replay does not stop it (PostgreSQL 14+ ends the pause).
PROMOTE_SQL = ("select case when pg_is_in_recovery() then pg_promote(true, 60)::text "
               "else 'already' end")
#: The timeline a primary writes on.
TIMELINE_SQL = "select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"

#: A promoted node keeps the primary_conninfo it streamed with in postgresql.auto.conf:
#: harmless on a primary, wrong once copied to a rejoining node by pg_rewind.
RESET_CONNINFO_SQL = ("alter system reset primary_conninfo", "alter system reset primary_slot_name")

#: 't' while the control file still names an older timeline than the one the primary
#: writes: right after a promotion, until its first checkpoint. pg_rewind reads the
#: source's timeline from there, and a rewind against it rewinds to the wrong history.
STALE_CONTROL_SQL = f"select (pg_control_checkpoint()).timeline_id < ({TIMELINE_SQL[7:]})"

#: The setting in effect (after a reload), to confirm a degrade or a restore.
SYNC_NAMES_SQL = "select current_setting('synchronous_standby_names')"


class Promote:
    """pg_promote() on a replica, then the timeline it writes on."""

    @staticmethod
    def command(container: str) -> str:
        """Both questions in one psql session."""
        return psql(container, PROMOTE_SQL, TIMELINE_SQL)

    @staticmethod
    def parse(stdout: str) -> tuple[str, str]:
        """(what pg_promote() said: 'true', 'false' or 'already'; the timeline)."""
        said, _, timeline = stdout.strip().partition("\n")
        return said, timeline


def ensure_slots_sql(slots: list[str]) -> str:
    """Create the physical slots that are missing, reserving WAL at once: a fenced old
    primary's slot keeps the WAL it will need to rejoin by streaming."""
    stmts = [f"select pg_create_physical_replication_slot('{s}', true) where not exists "
             f"(select from pg_replication_slots where slot_name = '{s}')" for s in slots]
    return "; ".join(stmts) if stmts else "select 1"


def stop_fast(container: str, timeout: int) -> str:
    """Stop PostgreSQL with a fast shutdown and wait for it to exit.

    `docker stop` sends SIGTERM, a *smart* shutdown, which waits for every client to leave:
    PgBouncer's pooled connections never do, and Docker SIGKILLs it after the timeout (a
    crash, not a clean stop). SIGINT is PostgreSQL's fast shutdown: clients are cut, a
    shutdown checkpoint is written and every WAL sender first sends all WAL to its replica.
    `docker kill` also marks the container stopped by hand, so its restart policy leaves it
    down. Fine if it is not running.
    """
    c = join([container])
    # A container in a restart loop (a server failing to start) is stopped for good.
    return (f"st=$(docker inspect --format '{{{{.State.Status}}}}' {c} 2>/dev/null); "
            f"if [ \"$st\" = running ]; then docker kill --signal INT {c} >/dev/null && "
            f"timeout {int(timeout)} docker wait {c} >/dev/null; "
            f"elif [ \"$st\" = restarting ]; then docker stop --time 5 {c} >/dev/null; fi")


def kill_container(container: str) -> str:
    """SIGKILL (a fence must hold even if the server hangs); fine if it is not running."""
    return f"{join(['docker', 'kill', container])} >/dev/null 2>&1; true"


def start_container(container: str) -> str:
    """Start an existing, stopped container (exit 1 if there is none)."""
    return f"{join(['docker', 'start', container])} >/dev/null"


def container_exists(container: str) -> str:
    """Exit 0 if the container exists, running or not."""
    return f"{join(['docker', 'inspect', '--format', '{{.Id}}', container])} >/dev/null 2>&1"


@dataclass(frozen=True)
class Health:
    """A container's state, restart count and last FATAL/PANIC lines."""

    status: str  # docker's State.Status, or "missing"
    restarts: str  # RestartCount as docker printed it ("" if it printed none)
    log: tuple[str, ...] = ()


class ContainerHealth:
    """Why a server that should stream does not: its container's state, how often it
    restarted, its last FATAL/PANIC lines."""

    @staticmethod
    def command(container: str, lines: int = 5) -> str:
        """'status restarts' of the container (or 'missing 0'), then its last log lines."""
        fmt = "{{.State.Status}} {{.RestartCount}}"
        return (f"{join(['docker', 'inspect', '--format', fmt, container])} 2>/dev/null || "
                f"echo missing 0; {join(['docker', 'logs', '--tail', '200', container])} 2>&1 | "
                f"grep -E 'FATAL|PANIC' | tail -n {int(lines)}; true")

    @staticmethod
    def parse(stdout: str) -> Health:
        """The first line's status and restart count; the lines after it (no output at all
        reads as a missing container)."""
        state, *log = stdout.splitlines() or ["missing 0"]
        status, _, restarts = state.partition(" ")
        return Health(status, restarts, tuple(log))
