"""PostgreSQL's one-time steps: initdb on the primary, users and slots, cloning a replica.

Passwords travel on stdin of the remote command, never in argv or in a file left behind.
"""

from __future__ import annotations

from ..shell import join
from .spec import DATA_ROOT

DATA_DIR = f"{DATA_ROOT}/db/data"
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


def initdb(image: str) -> str:
    """Create the primary's cluster; the superuser password is read from stdin."""
    return _throwaway(image, (
        f"initdb -D {DATA_DIR} --username=postgres --pwfile=/dev/stdin "
        "--auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 "
        "--data-checksums >/dev/null"))


def clone_replica(image: str, primary_address: str, port: int, me: str) -> str:
    """pg_basebackup from the primary through this replica's slot, then set it up to stream.

    stdin: the replicator's password. application_name is this host's name, which is what
    synchronous_standby_names lists.
    """
    slot = slot_name(me)
    conninfo_tail = f"port={port} user=replicator application_name={me}"
    return _throwaway(image, (
        "PW=$(cat); export PGPASSWORD=\"$PW\"; "
        f"rm -rf {DATA_DIR}.clone && "
        f"pg_basebackup -h {primary_address} -p {port} -U replicator -D {DATA_DIR}.clone "
        f"-X stream -S {slot} -c fast && "
        f"printf \"primary_conninfo = 'host={primary_address} {conninfo_tail} "
        f"password=%s'\\nprimary_slot_name = '{slot}'\\n\" \"$PW\" "
        f">> {DATA_DIR}.clone/postgresql.auto.conf && "
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
