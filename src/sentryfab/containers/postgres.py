"""PostgreSQL's data-directory steps: initdb, users and slots, cloning a replica, and for
switchover/failover: pg_controldata, the end of the WAL, the fence, pg_rewind, standby setup.

Passwords travel on stdin of the remote command, never in argv or in a file left behind.
"""

from __future__ import annotations

from ..configs.escape import conninfo_string, pg_conf_string
from ..errors import SentryfabError
from ..shell import join
from .spec import DATA_ROOT

DATA_DIR = f"{DATA_ROOT}/db/data"
#: Markers root writes live in a folder only root may write to: the db folder belongs to
#: the container's postgres uid, and anything running as that uid could plant a symlink
#: there for root to write or chown through (seen: a root-owned file became 101:101).
STATE_DIR = f"{DATA_ROOT}/db-state"
#: A fenced host must not run as a primary: who fenced it, when, for which new primary.
#: Outside the data directory, so pg_rewind and pg_basebackup leave it alone.
FENCE_FILE = f"{STATE_DIR}/FENCED"
#: Where sentryfab before 0.x kept it (inside the postgres-owned folder): still honoured
#: when it is a plain file, never followed as a link.
OLD_FENCE_FILE = f"{DATA_ROOT}/db/FENCED"
#: On the primary: synchronous replication was turned off on purpose (by whom, why).
DEGRADED_FILE = f"{STATE_DIR}/DEGRADED"
#: Where a rejoin that must re-clone keeps the old data directory (never deleted for you).
ASIDE_DIR = f"{DATA_DIR}.before-rejoin"
PG_PATH = "for d in /usr/lib/postgresql/*/bin; do PATH=$PATH:$d; done; "


def slot_name(host: str) -> str:
    """Replication slot names allow [a-z0-9_] only: 'db-2' -> 'db_2'."""
    return "".join(c if c.isalnum() else "_" for c in host.lower())


def has_data() -> str:
    """Exit 0 if the host already has a database cluster (never initdb over one)."""
    return join(["test", "-f", f"{DATA_DIR}/PG_VERSION"])


def prepare_data_root(uid: int) -> str:
    """The data folder's parent, owned by the postgres user of the image."""
    root = f"{DATA_ROOT}/db"
    return f"mkdir -p {join([root])} && chown {uid} {join([root])} && chmod 700 {join([root])}"


def _throwaway(image: str, script: str) -> str:
    """Run a script as postgres in a one-off container that sees the host's data folder."""
    return join(["docker", "run", "--rm", "-i", "--network", "host", "--user", "postgres",
                 "--entrypoint", "", "--volume", f"{DATA_ROOT}/db:{DATA_ROOT}/db", image,
                 "sh", "-c", PG_PATH + script])


def _throwaway_args(image: str, script: str, args: list[str]) -> str:
    """Like _throwaway, with values passed as positional arguments ($1, $2...)."""
    return join(["docker", "run", "--rm", "-i", "--network", "host", "--user", "postgres",
                 "--entrypoint", "", "--volume", f"{DATA_ROOT}/db:{DATA_ROOT}/db", image,
                 "sh", "-c", PG_PATH + script, "sh", *args])


def initdb(image: str) -> str:
    """Create the primary's cluster; the superuser password is read from stdin."""
    return _throwaway(image, (
        f"initdb -D {DATA_DIR} --username=postgres --pwfile=/dev/stdin "
        "--auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 "
        "--data-checksums >/dev/null"))


def clone_replica(image: str, primary_address: str, port: int, me: str) -> str:
    """pg_basebackup from the primary through this replica's slot, then set it up to stream.

    stdin: replica_stdin(...): the replicator's password on its first line, then the
    standby settings (standby_lines). application_name is this host's name, which is what
    synchronous_standby_names lists.
    """
    slot = slot_name(me)
    return _throwaway(image, (
        "IFS= read -r PW; CONF=$(cat); export PGPASSWORD=\"$PW\"; "
        f"rm -rf {DATA_DIR}.clone && "
        f"pg_basebackup -h {primary_address} -p {port} -U replicator -D {DATA_DIR}.clone "
        f"-X stream -S {slot} -c fast </dev/null && "
        f"printf '%s\\n' \"$CONF\" >> {DATA_DIR}.clone/postgresql.auto.conf && "
        f"touch {DATA_DIR}.clone/standby.signal && "
        # Renamed into place only when complete: an interrupted clone leaves no half cluster.
        f"mv {DATA_DIR}.clone {DATA_DIR}"))


def bootstrap_sql(sentry_verifier: str, replicator_verifier: str, replicas: list[str]) -> str:
    """SQL (sent on stdin to psql) creating users, the database and one slot per replica.

    Verifiers are SCRAM strings, not passwords: PgBouncer's userlist holds the same one for
    'sentry', which is what lets it pass SCRAM authentication through to PostgreSQL.
    """

    def lit(v: str) -> str:
        return "'" + v.replace("'", "''") + "'"

    lines = [
        "\\set ON_ERROR_STOP on",
        # With synchronous replication on, a commit waits for a replica that, on a new
        # cluster, is only cloned after this runs: these commits must not wait for it.
        "SET synchronous_commit TO local;",
        "SELECT 'CREATE ROLE sentry LOGIN' WHERE NOT EXISTS "
        "(SELECT FROM pg_roles WHERE rolname = 'sentry')\\gexec",
        "SELECT 'CREATE ROLE replicator REPLICATION LOGIN' WHERE NOT EXISTS "
        "(SELECT FROM pg_roles WHERE rolname = 'replicator')\\gexec",
        f"ALTER ROLE sentry PASSWORD {lit(sentry_verifier)};",
        f"ALTER ROLE replicator PASSWORD {lit(replicator_verifier)};",
        "SELECT 'CREATE DATABASE sentry OWNER sentry' WHERE NOT EXISTS "
        "(SELECT FROM pg_database WHERE datname = 'sentry')\\gexec",
    ]
    for r in replicas:
        slot = slot_name(r)
        lines.append(f"SELECT pg_create_physical_replication_slot({lit(slot)}) WHERE NOT EXISTS "
                     f"(SELECT FROM pg_replication_slots WHERE slot_name = {lit(slot)});")
    return "\n".join(lines) + "\n"


def psql_stdin(container: str) -> str:
    """psql as the local superuser (unix socket, trust) reading SQL from stdin."""
    return join(["docker", "exec", "-i", "--user", "postgres", container, "psql", "-q",
                 "-v", "ON_ERROR_STOP=1", "-d", "postgres"])


def is_primary(container: str) -> str:
    """Prints 't' on a primary, 'f' on a replica."""
    return join(["docker", "exec", "--user", "postgres", container, "psql", "-Atc",
                 "select not pg_is_in_recovery()"])


# -- switchover, failover, rejoin ------------------------------------------------------------

def controldata(image: str) -> str:
    """pg_controldata of the (stopped) cluster: how it stopped, its last checkpoint."""
    return _throwaway(image, f"pg_controldata -D {DATA_DIR}")


def wal_file_name(timeline: int, lsn: int, segment_size: int) -> str:
    """The name of the WAL segment file holding `lsn` on `timeline` (as PostgreSQL's
    XLogFileName: timeline, then the segment number split at 4 GiB, 8 hex digits each)."""
    segno = lsn // segment_size
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def wal_end(image: str, start_lsn: str, segment_file: str) -> str:
    """Read the stopped cluster's WAL from `start_lsn` (inside `segment_file`) to its end:
    the last records and the error that ends it are printed (what a replica at `start_lsn`
    would be missing).

    The segment file is named, not left for pg_waldump to find: without it, pg_waldump
    learns the segment size from whichever file readdir() returns first, and a segment
    PostgreSQL had just created and not yet written (header all zeros) makes it fail
    ("WAL file ... header specifies 0 bytes"), now and then.
    """
    return _throwaway_args(image, (
        f"pg_waldump -p {DATA_DIR}/pg_wal -s \"$1\" \"$2\" 2>&1 | tail -n 5"),
        [start_lsn, segment_file])


def _write_marker(path: str, record: str) -> str:
    """Written by root in root's own folder (STATE_DIR, made root-owned 0755 each time),
    to a fresh temporary name, then renamed: no link is ever followed."""
    state = join([STATE_DIR])
    return (f"mkdir -p {state} && chown 0:0 {state} && chmod 755 {state} && "
            f"t=$(mktemp {join([path + '.XXXXXX'])}) && "
            f"printf '%s\\n' {join([record])} > \"$t\" && chmod 644 \"$t\" && "
            f"mv -f \"$t\" {join([path])}")


def as_data_owner(command: str) -> str:
    """`command` run with the uid and gid that own the data directory (the container's
    postgres), not root: a link planted in the folder leads only where that uid may write."""
    d = join([DATA_DIR])
    return (f"setpriv --reuid=\"$(stat -c %u {d})\" --regid=\"$(stat -c %g {d})\" "
            f"--clear-groups -- {command}")


def fence(record: str) -> str:
    """Mark the host fenced, and put standby.signal in its data directory: started by
    anyone (docker start, a reboot, a deploy), it comes up read-only, never as a primary.
    The signal is created as the data directory's owner (root never writes or chowns in
    a folder that uid controls)."""
    signal = join([f"{DATA_DIR}/standby.signal"])
    create = join(["sh", "-c", f"rm -f {signal} && touch {signal}"])
    return (f"{_write_marker(FENCE_FILE, record)} && "
            f"if [ -e {join([DATA_DIR + '/PG_VERSION'])} ]; then {as_data_owner(create)}; fi "
            "&& sync")


def read_marker(*paths: str) -> str:
    """Print the first of these markers that is a plain file (a link is never followed)."""
    return (f"for m in {' '.join(join([m]) for m in paths)}; do "
            "if [ -f \"$m\" ] && [ ! -L \"$m\" ]; then head -c 2000 \"$m\"; break; fi; done")


def unfence() -> str:
    """Lift the fence (the host is a replica again)."""
    return f"rm -f {join([FENCE_FILE])} {join([OLD_FENCE_FILE])}"


def not_fenced(host: str) -> str:
    """Exit 3, saying why, if the host is fenced: the deploy path refuses to start it."""
    fmt = ("%s is fenced (%s): it must not start as a primary; 'fab db.rejoin %s' makes it "
           "a replica of the current primary\\n")
    return (f"why=$({read_marker(FENCE_FILE, OLD_FENCE_FILE)}); if [ -n \"$why\" ]; then "
            f"printf {join([fmt])} {join([host])} \"$why\" {join([host])} >&2; exit 3; fi")


def mark_degraded(record: str) -> str:
    """Record on the primary that synchronous replication is off on purpose."""
    return _write_marker(DEGRADED_FILE, record)


def unmark_degraded() -> str:
    """Synchronous replication is wanted again."""
    return f"rm -f {join([DEGRADED_FILE])}"


def rewind(image: str, source_address: str, port: int) -> str:
    """pg_rewind the stopped cluster onto the current primary's timeline; stdin: the
    postgres password. standby.signal is lifted for the run (pg_rewind finishes a crashed
    cluster's recovery in single-user mode, which refuses standby mode) and always put
    back, whatever pg_rewind did."""
    return _throwaway_args(image, (
        f"PGPASSWORD=$(cat); export PGPASSWORD; rm -f {DATA_DIR}/standby.signal; "
        f"pg_rewind --target-pgdata={DATA_DIR} "
        "--source-server=\"host=$1 port=$2 user=postgres dbname=postgres\" 2>&1; rc=$?; "
        f"touch {DATA_DIR}/standby.signal; exit $rc"), [source_address, str(port)])


def standby_config(image: str) -> str:
    """Make the stopped cluster a replica: standby.signal, and the standby settings read
    from stdin (standby_lines) replacing whatever postgresql.auto.conf held (pg_rewind copies
    the source's); local slots removed (slots live on the primary)."""
    auto = f"{DATA_DIR}/postgresql.auto.conf"
    return _throwaway(image, (
        f"CONF=$(cat); {{ grep -v -E '^[[:space:]]*(primary_conninfo|primary_slot_name)"
        f"[[:space:]]*=' {auto} 2>/dev/null; true; }} > {auto}.new && "
        f"printf '%s\\n' \"$CONF\" >> {auto}.new && mv {auto}.new {auto} && "
        f"touch {DATA_DIR}/standby.signal && rm -rf {DATA_DIR}/pg_replslot/* && sync"))


def standby_lines(primary_address: str, port: int, me: str, password: str) -> str:
    """The postgresql.auto.conf lines that make `me` stream from the primary through its
    slot. Every value is quoted for libpq's conninfo, then the whole for the config file:
    a password with a quote, a backslash or a space reads back as itself."""
    info = conninfo_string(host=primary_address, port=port, user="replicator",
                           application_name=me, password=password)
    return (f"primary_conninfo = {pg_conf_string(info)}\n"
            f"primary_slot_name = {pg_conf_string(slot_name(me))}\n")


def replica_stdin(primary_address: str, port: int, me: str, password: str) -> bytes:
    """clone_replica's stdin: the password on its own line (for pg_basebackup), then the
    standby settings. A password with a line break cannot be sent that way: refused."""
    if "\n" in password or "\r" in password:
        raise SentryfabError("replication_password holds a line break: it cannot be used "
                             "for pg_basebackup; set one without")
    return (password + "\n" + standby_lines(primary_address, port, me, password)).encode()


def set_aside(image: str) -> str:
    """Move the data directory out of the way of a fresh clone (the previous set-aside copy
    goes: only the latest is kept)."""
    return _throwaway(image, (
        f"rm -rf {ASIDE_DIR} && if [ -e {DATA_DIR} ]; then mv {DATA_DIR} {ASIDE_DIR}; fi"))
