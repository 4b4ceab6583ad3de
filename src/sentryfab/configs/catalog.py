"""Which files each role gets: template, place on the host, mode, validator, how it is applied.

One table, so "what does a pgbouncer host receive?" has one answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..roles import ROLES

CONFIG_ROOT = "/etc/sentryfab"


@dataclass(frozen=True)
class ConfigFile:
    """One file a role needs on its hosts."""

    name: str           # file name under /etc/sentryfab/<role>/
    template: str       # path under templates/
    secret: bool        # holds a secret: written 0600, masked everywhere
    validator: str      # key into configs.validate.VALIDATORS
    apply: str          # how a change takes effect: "reload" or "restart"
    #: For a reloaded file: the settings in it that the program still reads only at start.
    restart_keys: tuple[str, ...] = ()
    #: Rendered only when the inventory has a host of this role (the db hosts' pgBackRest
    #: files exist only in a cluster with a backup host).
    only_with: str | None = None

    @property
    def mode(self) -> int:
        """0600 for files holding secrets, 0644 otherwise."""
        return 0o600 if self.secret else 0o644


_SENTRY = (
    ConfigFile("sentry.conf.py", "sentry/sentry.conf.py", True, "python", "restart"),
    ConfigFile("config.yml", "sentry/config.yml", True, "yaml", "restart"),
)

#: The settings of our postgresql.conf that PostgreSQL reads only at server start
#: (pg_settings.context = 'postmaster'); everything else in it takes effect on reload.
PG_START_ONLY = (
    "hba_file", "ident_file", "listen_addresses", "port", "max_connections",
    "superuser_reserved_connections", "shared_buffers", "wal_level", "wal_log_hints",
    "max_wal_senders", "max_replication_slots", "hot_standby", "logging_collector",
    "shared_preload_libraries", "max_worker_processes", "max_prepared_transactions",
    "max_locks_per_transaction", "huge_pages", "wal_buffers", "track_commit_timestamp",
    "archive_mode",
)


def _tls(*, server: bool, only_with: str | None = None) -> tuple[ConfigFile, ...]:
    """pgBackRest's TLS files (configs/pki.py): the CA, the client identity, and on a host
    that runs a pgBackRest server its own certificate. Clients read them on every run; a
    pgBackRest server reads them again on SIGHUP (a reload)."""
    names = ("ca.crt", "client.crt", "client.key") + (("server.crt", "server.key") if server
                                                       else ())
    return tuple(ConfigFile(n, f"pgbackrest/{n}", n.endswith(".key"), "none", "reload",
                            only_with=only_with) for n in names)

#: Files per inventory role. The three Sentry roles run one image with one configuration.
ROLE_FILES: dict[str, tuple[ConfigFile, ...]] = {
    "web": _SENTRY,
    "worker": _SENTRY,
    "cron": _SENTRY,
    "nginx": (ConfigFile("nginx.conf", "nginx/nginx.conf", False, "nginx", "reload"),),
    "pgbouncer": (
        ConfigFile("pgbouncer.ini", "pgbouncer/pgbouncer.ini", False, "pgbouncer", "reload"),
        ConfigFile("userlist.txt", "pgbouncer/userlist.txt", True, "none", "reload"),
    ),
    # redis.conf holds requirepass: private like any file with a secret.
    "redis-cache": (ConfigFile("redis.conf", "redis/redis.conf", True, "redis", "restart"),),
    "redis-queue": (ConfigFile("redis.conf", "redis/redis.conf", True, "redis", "restart"),),
    "db": (
        ConfigFile("postgresql.conf", "db/postgresql.conf", False, "postgres", "reload",
                   restart_keys=PG_START_ONLY),
        ConfigFile("pg_hba.conf", "db/pg_hba.conf", False, "pg_hba", "reload"),
        ConfigFile("pg_ident.conf", "db/pg_ident.conf", False, "none", "reload"),
        # archive-push and archive-get run a new pgbackrest per WAL file and read this on
        # every call; the pgBackRest server beside PostgreSQL reads it again on SIGHUP.
        ConfigFile("pgbackrest.conf", "db/pgbackrest.conf", True, "pgbackrest", "reload",
                   only_with="backup"),
        *_tls(server=True, only_with="backup"),
    ),
    "backup": (
        # The server reads it again on SIGHUP; backups and drills read it when they run.
        ConfigFile("pgbackrest.conf", "backup/pgbackrest.conf", True, "pgbackrest", "reload"),
        ConfigFile("drill.conf", "backup/drill.conf", True, "pgbackrest", "reload"),
        # libpq's password file: the drill reads the primary's event counts as postgres.
        ConfigFile("pgpass", "backup/pgpass", True, "none", "reload"),
        *_tls(server=True),
    ),
}

assert set(ROLE_FILES) == set(ROLES)


def files_for(role: str, roles_present: frozenset[str] | set[str]) -> tuple[ConfigFile, ...]:
    """The files `role` gets in a cluster whose hosts have `roles_present`."""
    return tuple(f for f in ROLE_FILES[role] if f.only_with is None or f.only_with in
                 roles_present)


def remote_path(role: str, f: ConfigFile) -> str:
    """Where a role's file lives on its host."""
    return f"{CONFIG_ROOT}/{role}/{f.name}"
