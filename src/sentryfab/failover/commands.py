"""Remote commands that find the cluster's state and act on it: pure builders, exact strings.

Every value reaches a shell as a quoted token or as a positional argument ("$1") of a fixed
script; secrets arrive on stdin. SQL here never holds a value from outside: LSNs and names
are formatted from parsed, typed values (an int, a slot name of [a-z0-9_]).
"""

from __future__ import annotations

from ..containers.postgres import (
    DATA_DIR,
    DEGRADED_FILE,
    FENCE_FILE,
    OLD_FENCE_FILE,
    controldata,
    read_marker,
)
from ..shell import join
from .model import lsn_text

#: Section markers in a probe's output (a line of its own each).
MARK = "@@sentryfab "

#: How long one PostgreSQL or PgBouncer question may take before the host counts as not
#: answering (a hung server must not hang a failover).
SQL_TIMEOUT = 10

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


def psql(container: str, *sql: str, timeout: int = SQL_TIMEOUT) -> str:
    """psql as the local superuser (unix socket, trust) in the db container: one -c each,
    unaligned, tuples only; gives up after `timeout` seconds."""
    argv = ["timeout", str(timeout), "docker", "exec", "--user", "postgres", container,
            "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
    for s in sql:
        argv += ["-c", s]
    return join(argv)


def db_probe(container: str, image: str) -> str:
    """Everything discovery needs from one db host, in one round trip, in marked sections:
    container state, data files, fence and degrade markers, PostgreSQL's answers (if it
    runs) or pg_controldata (if it does not)."""
    state = join(["docker", "inspect", "--format", "{{.State.Status}}", container])
    files = join([f"{DATA_DIR}/PG_VERSION", f"{DATA_DIR}/standby.signal"])
    return (
        # docker's complaint goes to stderr: "No such object" is a missing container, but
        # "permission denied" must not read as one (discover.py names it).
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
        f"timeout 30 {controldata(image)} 2>&1; fi; true"
    )


def bouncer_admin(container: str, address: str, port: int, *command: str,
                  timeout: int = SQL_TIMEOUT) -> str:
    """Admin-console commands (SHOW DATABASES, PAUSE db, RELOAD, RESUME db), in order, in
    one psql session in the PgBouncer container; stdin: the admin password. Each result
    has a header row."""
    script = ('PGPASSWORD=$(cat) exec psql -X -A -F "|" -h "$1" -p "$2" -U pgbouncer '
              '-d pgbouncer' + "".join(f' -c "${i}"' for i in range(3, 3 + len(command))))
    return join(["timeout", str(timeout), "docker", "exec", "-i", container, "sh", "-c",
                 script, "sh", address, str(port), *command])


def write_probe(container: str, address: str, port: int, database: str, user: str,
                timeout: int = SQL_TIMEOUT) -> str:
    """A write through PgBouncer as Sentry's user: txid_current() needs a read-write
    primary and its commit waits for a synchronous replica; prints the server's address.
    stdin: the user's password."""
    sql = "select 'write|' || txid_current() || '|' || host(inet_server_addr())"
    script = ('PGPASSWORD=$(cat) PGCONNECT_TIMEOUT=5 exec psql -X -A -t -h "$1" -p "$2" '
              '-U "$3" -d "$4" -c "$5"')
    return join(["timeout", str(timeout), "docker", "exec", "-i", container, "sh", "-c",
                 script, "sh", address, str(port), user, database, sql])


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


def container_health(container: str, lines: int = 5) -> str:
    """'running restarts' of the container, then its last FATAL/PANIC lines (why a server
    that should stream does not)."""
    fmt = "{{.State.Status}} {{.RestartCount}}"
    return (f"{join(['docker', 'inspect', '--format', fmt, container])} 2>/dev/null || "
            f"echo missing 0; {join(['docker', 'logs', '--tail', '200', container])} 2>&1 | "
            f"grep -E 'FATAL|PANIC' | tail -n {int(lines)}; true")


def container_exists(container: str) -> str:
    """Exit 0 if the container exists, running or not."""
    return f"{join(['docker', 'inspect', '--format', '{{.Id}}', container])} >/dev/null 2>&1"
