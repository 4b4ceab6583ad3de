"""What each role's containers are: image, command, mounts, ports, labels. Pure data.

Like Kamal's command builders: this module decides, `docker.py` turns a spec into argv, and
procedures only execute. A role's production command is its default below; an inventory
overrides it with `command:` (the lab does, to run its Sentry-shaped stand-in).
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..configs import backup
from ..configs.catalog import CONFIG_ROOT
from ..configs.context import (
    FILESTORE_MOUNT,
    ROLE_DEFAULTS,
    filestore,
    retention,
    settings,
    web_ports,
)
from ..errors import InventoryError
from ..inventory import Host, Inventory
from . import cleanup

DATA_ROOT = "/var/lib/sentryfab"
LABEL_PREFIX = "sentryfab"

#: Production commands per role ({address}, {port}, {role}, settings keys are filled in).
DEFAULT_COMMANDS: dict[str, str] = {
    # Threads per web process come from SENTRY_WEB_OPTIONS in the rendered sentry.conf.py.
    "web": "sentry --config /etc/sentryfab/web run web --bind {address}:{port} --workers 1",
    "worker": "sentry --config /etc/sentryfab/worker run worker --concurrency {concurrency}",
    "cron": "sentry --config /etc/sentryfab/cron run cron",
    "migrate": "sentry --config /etc/sentryfab/web upgrade --noinput",
    "redis-cache": "redis-server /etc/sentryfab/redis-cache/redis.conf",
    "redis-queue": "redis-server /etc/sentryfab/redis-queue/redis.conf",
    "db": "postgres -D /var/lib/sentryfab/db/data -c config_file=/etc/sentryfab/db/postgresql.conf",
    "pgbouncer": "pgbouncer /etc/sentryfab/pgbouncer/pgbouncer.ini",
    "nginx": "nginx -c /etc/sentryfab/nginx/nginx.conf -g 'daemon off;'",
    "backup": "pgbackrest --config=/etc/sentryfab/backup/pgbackrest.conf server",
}

#: The user a role's main process runs as inside its container (None: the image's default).
DEFAULT_USERS: dict[str, str | None] = {
    "db": "postgres", "pgbouncer": "postgres", "redis-cache": "redis", "redis-queue": "redis",
    "backup": "postgres",
}

#: Sentry's roles read the same config; web, worker and cron each mount their own copy.
SENTRY_ROLES = ("web", "worker", "cron", "migrate")


@dataclass(frozen=True)
class ContainerSpec:
    """One container as it should run on a host."""

    name: str
    role: str
    index: int
    image: str
    command: tuple[str, ...]
    mounts: tuple[tuple[str, str, bool], ...]  # (host path, container path, read-only)
    labels: tuple[tuple[str, str], ...]
    user: str | None = None
    port: int | None = None
    memory: str | None = None
    cpus: str | None = None
    restart: str = "unless-stopped"
    stop_timeout: int = 30
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    stop_signal: str | None = None

    def label(self, key: str) -> str | None:
        """The value of one of our labels."""
        return dict(self.labels).get(f"{LABEL_PREFIX}.{key}")


def image_ref(inv: Inventory, role: str, host: Host | None = None,
              tag: str | None = None) -> str:
    """'repo:tag' for a role (Sentry's helper roles use the web image)."""
    s = settings(inv, "web" if role == "migrate" else role, host)
    return f"{s.get('image', role)}:{tag or s.get('tag', 'latest')}"


def container_name(role: str, index: int) -> str:
    """Containers are named sentry-<role>-<n>."""
    return f"sentry-{role}-{index}"


#: The placeholders a command may use besides its role's settings (filled in per container).
COMMAND_FIELDS = ("address", "port", "role", "host", "name")


def command_problem(template: Any, known: Iterable[str]) -> str | None:
    """Why a role's `command:` cannot be filled in, or None: a placeholder that names no
    setting, anything but a plain {name}, a lone brace, an unclosed quote."""
    if not isinstance(template, str):
        return f"must be a string (a command line), got {type(template).__name__}"
    names = set(known)
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template)
                  if f is not None]
        shlex.split(template)
    except ValueError as e:
        return (f"{e} in {template!r} (write {{{{ and }}}} for a literal brace, and close "
                "every quote)")
    for f, spec, conv in fields:
        if not f.isidentifier() or spec or conv:
            text = "{" + f + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            return (f"placeholder {text} in {template!r}: only a plain {{name}} is filled in "
                    "(no index, attribute, conversion or format)")
        if f not in names:
            return (f"unknown placeholder {{{f}}} in {template!r}: known are "
                    f"{', '.join(sorted(names))} (write {{{{ and }}}} for a literal brace)")
    return None


def command_problems(roles: Mapping[str, Mapping[str, Any]],
                     hosts: Iterable[Host]) -> list[tuple[str, str]]:
    """(inventory path, problem) for every `command:` / `migrate_command:` of the inventory
    that cannot be filled in for a host that runs it. Pure: inventory validation calls it."""
    out: list[tuple[str, str]] = []
    for h in hosts:
        runs = list(h.roles) + (["migrate"] if "web" in h.roles else [])
        for role in runs:
            cfg_role, key = ("web", "migrate_command") if role == "migrate" else (role, "command")
            s = {**ROLE_DEFAULTS.get(cfg_role, {}), **(roles.get(cfg_role) or {}), **h.vars}
            if s.get(key) is None:
                continue
            where = f"hosts/{h.name}/vars/{key}" if key in h.vars else f"roles/{cfg_role}/{key}"
            problem = command_problem(s[key], [*s, *COMMAND_FIELDS])
            if problem and (where, problem) not in out:
                out.append((where, problem))
    return out


def _command(inv: Inventory, role: str, host: Host, port: int | None,
             name: str) -> tuple[str, ...]:
    cfg_role = "web" if role == "migrate" else role
    s = settings(inv, cfg_role, host)
    key = "migrate_command" if role == "migrate" else "command"
    template = s.get(key) or DEFAULT_COMMANDS[role]
    values: dict[str, Any] = {**s, "address": host.address, "port": port or "", "role": role,
                              "host": host.name, "name": name}
    where = f"hosts/{host.name}/vars/{key}" if key in host.vars else f"roles/{cfg_role}/{key}"
    problem = command_problem(template, values)
    if problem:
        raise InventoryError([f"{inv.path.name}: {where}: {problem}"])
    # Split first, then fill in each word: a value holding a space or a quote stays one
    # argument instead of changing how the line splits.
    try:
        return tuple(word.format(**values) for word in shlex.split(template))
    except (ValueError, LookupError, AttributeError) as e:  # quotes that made a brace
        raise InventoryError([f"{inv.path.name}: {where}: cannot fill in {template!r}: "
                              f"{e}"]) from None


def _mounts(inv: Inventory, role: str) -> tuple[tuple[str, str, bool], ...]:
    cfg_role = "web" if role == "migrate" else role
    cfg = f"{CONFIG_ROOT}/{cfg_role}"
    mounts = [(cfg, cfg, True)]
    if role not in SENTRY_ROLES:
        data = f"{DATA_ROOT}/{role}"
        mounts.append((data, data, False))
    elif (fs := filestore(inv))["backend"] == "filesystem":
        # Uploaded files outlive the container (a redeploy replaces it) and, on shared
        # storage, are seen by every Sentry host.
        mounts.append((fs["path"], FILESTORE_MOUNT, False))
    return tuple(mounts)


def specs_for(inv: Inventory, host: Host, role: str, *, version: str | None = None,
              config_hash: str = "", count: int | None = None) -> list[ContainerSpec]:
    """Every container `role` runs on `host` (web: one per process, each on its own port)."""
    s = settings(inv, "web" if role == "migrate" else role, host)
    tag = version or str(s.get("tag", "latest"))
    if role == "web":
        ports: list[int | None] = list(web_ports(inv, host))
        if count is not None:
            base = ports[0] if ports else int(s.get("base_port", 9000))
            ports = [base + i for i in range(count)]
    elif role == "worker":
        ports = [None] * (count if count is not None else int(s.get("processes", 1)))
    else:
        ports = [int(s["port"]) if "port" in s else None]
    out = []
    for i, port in enumerate(ports, start=1):
        labels = (
            (f"{LABEL_PREFIX}.role", role),
            (f"{LABEL_PREFIX}.version", tag),
            (f"{LABEL_PREFIX}.config", config_hash),
            (f"{LABEL_PREFIX}.index", str(i)),
        )
        out.append(ContainerSpec(
            name=container_name(role, i), role=role, index=i,
            image=image_ref(inv, role, host, tag),
            command=_command(inv, role, host, port, container_name(role, i)),
            mounts=_mounts(inv, role), labels=labels,
            user=s.get("user", DEFAULT_USERS.get(role)), port=port,
            memory=s.get("memory"), cpus=str(s["cpus"]) if s.get("cpus") else None,
            restart="no" if role == "migrate" else "unless-stopped",
            # SIGTERM is PostgreSQL's "smart" shutdown: it waits for every client, and
            # PgBouncer's pooled connections never leave. SIGINT is the fast, clean one.
            stop_signal="SIGINT" if role == "db" else None,
        ))
    if role == "cron":
        out.append(_cleanup_spec(inv, out[0]))
    if role == "db" and backup.backup_host(inv) is not None:
        out = [replace(out[0], mounts=out[0].mounts + _SOCKET_MOUNT), _backup_agent_spec(out[0])]
    if role == "backup":
        out.append(_backup_schedule_spec(inv, host, out[0]))
    return out


def _backup_schedule_spec(inv: Inventory, host: Host, server: ContainerSpec) -> ContainerSpec:
    """The daily backups and restore drill beside the repository's server (as the retention
    cleanup runs beside the cron): same image, user and folders."""
    from . import pgbackrest

    s = settings(inv, "backup", host)
    dbs = [(h.address, int(settings(inv, "db", h)["port"])) for h in inv.with_role("db")]
    script = pgbackrest.schedule_script(str(s["backup_at"]), str(s["drill_at"]),
                                        int(s["full_on"]), dbs)
    labels = tuple((k, "2" if k.endswith(".index") else v) for k, v in server.labels)
    return replace(server, name=pgbackrest.SCHEDULER_CONTAINER, index=2, labels=labels,
                   command=("sh", "-c", script))


#: PostgreSQL's unix socket folder, shared with the pgBackRest server beside it (a backup
#: connects as the local superuser through it).
_SOCKET_MOUNT = ((backup.SOCKET_HOST_DIR, backup.SOCKET_DIR, False),)


def _backup_agent_spec(db: ContainerSpec) -> ContainerSpec:
    """pgBackRest's TLS server beside PostgreSQL: what the repository host's backups and
    checks talk to (decision record 0007). Same image, same user, same data directory."""
    labels = tuple((k, "2" if k.endswith(".index") else v) for k, v in db.labels)
    conf = f"{backup.DB_CONFIG_DIR}/pgbackrest.conf"
    return replace(db, name=backup.AGENT_CONTAINER, index=2, labels=labels, port=None,
                   command=("pgbackrest", f"--config={conf}", "server"),
                   mounts=db.mounts + _SOCKET_MOUNT, stop_signal=None)


def _cleanup_spec(inv: Inventory, cron: ContainerSpec) -> ContainerSpec:
    """Retention beside the cron container: `sentry cleanup` once a day (cleanup.py)."""
    keep = retention(inv)
    script = cleanup.schedule_script(keep["days"], keep["at"], f"{CONFIG_ROOT}/cron")
    labels = tuple((k, "2" if k.endswith(".index") else v) for k, v in cron.labels)
    return replace(cron, name=cleanup.CONTAINER, index=2, command=("sh", "-c", script),
                   labels=labels, user="999",
                   mounts=cron.mounts + ((cleanup.STATE_DIR, cleanup.STATE_DIR, False),))


def prepare_dirs(inv: Inventory, host: Host, role: str) -> str:
    """The role's config folder traversable, its data folder owned by the service user."""
    cfg = f"{CONFIG_ROOT}/{'web' if role == 'migrate' else role}"
    cmd = f"mkdir -p {shlex.quote(cfg)} && chmod 755 {shlex.quote(cfg)}"
    if role not in SENTRY_ROLES:
        uid = int(settings(inv, role, host).get("uid", 0))
        data = f"{DATA_ROOT}/{role}"
        cmd += f" && mkdir -p {shlex.quote(data)} && chown {uid} {shlex.quote(data)}"
    if role == "db" and backup.backup_host(inv) is not None:
        uid = int(settings(inv, role, host).get("uid", 0))
        sock = shlex.quote(backup.SOCKET_HOST_DIR)
        cmd += f" && mkdir -p {sock} && chown {uid} {sock}"
    if role == "backup":
        uid = int(settings(inv, role, host).get("uid", 0))
        dirs = " ".join(shlex.quote(d) for d in (backup.REPO_PATH, f"{backup.BACKUP_ROOT}/log",
                                                   backup.SCRATCH_ROOT, backup.RUNS_DIR))
        repo = shlex.quote(backup.REPO_PATH)
        cmd += f" && mkdir -p {dirs} && chown {uid} {dirs} && chmod 700 {repo}"
    if role == "cron":  # the cleanup's record of its runs, written as Sentry's user
        uid = int(settings(inv, "cron", host).get("uid", 999))
        cmd += f" && mkdir -p {cleanup.STATE_DIR} && chown {uid} {cleanup.STATE_DIR}"
    if role in SENTRY_ROLES and (fs := filestore(inv))["backend"] == "filesystem":
        # Sentry writes its files as its own user. On shared storage the folder is usually
        # owned already (and root may not chown on NFS): chown only when it is not.
        uid = int(settings(inv, "web" if role == "migrate" else role, host).get("uid", 999))
        files = shlex.quote(fs["path"])
        cmd += (f" && mkdir -p {files} && {{ [ \"$(stat -c %u {files})\" = {uid} ] || "
                f"chown {uid} {files}; }}")
    return cmd
