"""The backup role's places, ports and settings: one table the templates, the container
specs and the backup commands all read (decision record 0007).

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from ..inventory import Inventory
from .catalog import CONFIG_ROOT

#: The client identity every pgBackRest server authorises for the stanza (configs/pki.py
#: writes it into the client certificate; here so that the inventory's checks, which read
#: this module, do not load the X.509 machinery).
CLIENT_CN = "sentryfab-backup"

#: pgBackRest's name for the cluster's backups.
STANZA = "sentry"
DATA_ROOT = "/var/lib/sentryfab"
#: On the repository host: the repository, pgBackRest's logs, the drill's scratch cluster
#: and its record of runs.
BACKUP_ROOT = f"{DATA_ROOT}/backup"
REPO_PATH = f"{BACKUP_ROOT}/repo"
SCRATCH_ROOT = f"{BACKUP_ROOT}/scratch"
SCRATCH_DATA = f"{SCRATCH_ROOT}/data"
RUNS_DIR = f"{BACKUP_ROOT}/runs"
#: On a database host: the data directory pgBackRest backs up and restores, and the unix
#: socket folder PostgreSQL and the pgBackRest server beside it share (root-owned parent:
#: root never creates or chowns anything inside the folder the postgres uid owns).
PG_DATA = f"{DATA_ROOT}/db/data"
SOCKET_DIR = "/var/run/postgresql"
SOCKET_HOST_DIR = f"{DATA_ROOT}/db-socket"
#: A scratch restore (`fab db.restore --into HOST`): its folder and container on HOST.
RESTORE_ROOT = f"{DATA_ROOT}/restore"
RESTORE_DATA = f"{RESTORE_ROOT}/data"
RESTORE_CONTAINER = "sentry-restore-1"
BACKUP_CONFIG_DIR = f"{CONFIG_ROOT}/backup"
DB_CONFIG_DIR = f"{CONFIG_ROOT}/db"
#: The pgBackRest server beside PostgreSQL on each database host (decision record 0007).
AGENT_CONTAINER = "sentry-pgbackrest-1"
AGENT_PORT = 8433

#: The backup role's settings and their defaults (`roles: backup:` and host vars win).
#: port: the repository host's TLS server (pgBackRest's default). archive_timeout (seconds)
#: is the recovery point objective with events flowing. The schedule is UTC; full_on is a
#: weekday (0 Monday). drill_at: when the daily restore drill runs.
DEFAULTS: dict[str, Any] = {
    "image": "postgres", "tag": "15", "uid": 101, "port": 8432,
    "retention_full": 2, "retention_diff": 6, "process_max": 2, "archive_timeout": 60,
    "full_on": 6, "backup_at": "01:00", "drill_at": "05:00",
}


def backup_host(inv: Inventory):
    """The repository host, or None in a cluster without backups."""
    hosts = inv.with_role("backup")
    return hosts[0] if hosts else None


def context(inv: Inventory, settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the templates see as `backup` (None without a backup host). `settings`: the
    backup role's settings on its host (configs.context.settings)."""
    host = backup_host(inv)
    if host is None or settings is None:
        return None
    return {
        "host": host.name, "address": host.address, "port": int(settings["port"]),
        "agent_port": AGENT_PORT, "stanza": STANZA, "client_cn": CLIENT_CN,
        "archive_timeout": int(settings["archive_timeout"]),
        "data_root": BACKUP_ROOT, "repo_path": REPO_PATH, "scratch_data": SCRATCH_DATA,
        "config_dir": BACKUP_CONFIG_DIR, "db_config_dir": DB_CONFIG_DIR,
        "pg_data": PG_DATA, "socket_dir": SOCKET_DIR,
    }
