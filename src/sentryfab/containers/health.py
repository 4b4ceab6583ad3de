"""Health checks per role: one shell command each, run on the host, exit 0 when healthy.

A check is retried on the host itself until its deadline (one round trip, not one per try).
Secrets a check needs travel on stdin, never in argv (argv is visible in `ps`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..configs import backup as b
from ..configs.context import settings
from ..inventory import Host, Inventory
from ..shell import join
from .spec import ContainerSpec

#: A container must have run this long without restarting to count as up.
STABLE_SECONDS = 3


#: until_healthy's exit code when a container crashed: no use waiting for the deadline.
CRASHED_EXIT = 3


@dataclass(frozen=True)
class HealthCheck:
    """A check command, the secret it reads on stdin (if any), and what it proves; `crashed`
    succeeds as soon as one of the new containers has crashed (restarted or exited)."""

    command: str
    what: str
    stdin: bytes | None = None
    crashed: str = ""


def crashed_command(names: list[str]) -> str:
    """Succeeds if any of the containers restarted or stopped since it was started: a release
    that crash-loops is told apart from a slow start at once, not at the health deadline."""
    fmt = "{{.RestartCount}} {{.State.Status}}"
    return (f"{join(['docker', 'inspect', '--format', fmt, *names])} 2>/dev/null "
            f"| grep -qv '^0 running$'")


def failure(exit_code: int | None, hc: HealthCheck, timeout: float) -> str:
    """Why until_healthy failed, in words."""
    if exit_code == CRASHED_EXIT:
        return "a new container crashed (restarted or exited) before it was healthy"
    return f"not healthy within {timeout:g} s ({hc.what})"


def _running(name: str) -> str:
    # Running, never restarted, and up for STABLE_SECONDS: a crash-looping container fails.
    fmt = "{{.State.Running}} {{.RestartCount}}"
    return (f"[ \"$({join(['docker', 'inspect', '--format', fmt, name])} 2>/dev/null)\" "
            f"= 'true 0' ]")


def _server_ping(container: str, conf: str) -> str:
    return join(["docker", "exec", "--user", "postgres", container, "pgbackrest",
                 f"--config={conf}", "server-ping"])


def _http(url: str) -> str:
    return join(["curl", "-fsS", "--max-time", "3", "-o", "/dev/null", url])


def check(inv: Inventory, host: Host, role: str, specs: list[ContainerSpec],
          secret: str = "", primary: str | None = None) -> HealthCheck:
    """The health check of `role` on `host` once `specs` are started."""
    hc = _check(inv, host, role, specs, secret, primary)
    return HealthCheck(hc.command, hc.what, hc.stdin, crashed_command([sp.name for sp in specs]))


def _check(inv: Inventory, host: Host, role: str, specs: list[ContainerSpec],
           secret: str, primary: str | None) -> HealthCheck:
    s = settings(inv, role, host)
    names = [sp.name for sp in specs]
    running = " && ".join(_running(n) for n in names)
    extra = s.get("health_command")
    if role == "web":
        urls = [f"http://{host.address}:{sp.port}/_health/" for sp in specs]
        return HealthCheck(" && ".join(_http(u) for u in urls),
                           f"/_health/ answers 200 on {len(urls)} web process(es)")
    if role == "nginx":
        url = f"http://{host.address}:{int(s['port'])}/nginx_status"
        return HealthCheck(f"{running} && {_http(url)}", "nginx answers on /nginx_status")
    if role in ("redis-cache", "redis-queue"):
        cli = f"redis-cli --no-auth-warning -h {host.address} -p {int(s['port'])}"
        script = (f'REDISCLI_AUTH="$(cat)"; export REDISCLI_AUTH; '
                  f"{cli} PING | grep -qx PONG && {cli} ROLE | head -n 1 | grep -qx master")
        return HealthCheck(join(["docker", "exec", "-i", names[0], "sh", "-c", script]),
                           "redis answers PING as a master", secret.encode())
    if role == "pgbouncer":
        script = (f"PGPASSWORD=$(cat) psql -h {host.address} -p {int(s['port'])} -U pgbouncer "
                  "-d pgbouncer -Atc 'SHOW POOLS' >/dev/null")
        return HealthCheck(join(["docker", "exec", "-i", names[0], "sh", "-c", script]),
                           "PgBouncer answers SHOW POOLS on its admin console", secret.encode())
    if role == "db":
        psql = ["docker", "exec", "--user", "postgres", names[0], "psql", "-Atc"]
        if primary is None or primary == host.name:
            sql = "select not pg_is_in_recovery()"
            what = "PostgreSQL accepts connections as the primary"
        else:
            sql = "select status = 'streaming' from pg_stat_wal_receiver"
            what = "PostgreSQL replica is streaming from the primary"
        command = f"[ \"$({join(psql + [sql])} 2>/dev/null)\" = t ]"
        if len(names) > 1:  # pgBackRest's server beside it answers its own ping
            command += " && " + _server_ping(names[1], f"{b.DB_CONFIG_DIR}/pgbackrest.conf")
            what += ", its pgBackRest server answers"
        return HealthCheck(command, what)
    if role == "backup":
        return HealthCheck(f"{running} && " + _server_ping(
            names[0], f"{b.BACKUP_CONFIG_DIR}/pgbackrest.conf"),
            "the repository's pgBackRest server answers")
    command = running
    if extra:
        command += " && " + " && ".join(join(["docker", "exec", n, "sh", "-c", extra])
                                        for n in names)
    return HealthCheck(command, f"{len(names)} {role} container(s) up and stable"
                       + (" and their health command passes" if extra else ""))


def until_healthy(hc: HealthCheck, timeout: float, interval: float = 1.0) -> str:
    """Retry the check on the host until it passes or `timeout` seconds have gone by."""
    tries = max(1, int(timeout / interval))
    # The secret arrives once on stdin and is fed again to each try by printf, a shell
    # builtin: it never shows in a process list.
    head = "SECRET=$(cat); " if hc.stdin is not None else "SECRET=; "
    crashed = (f"if {hc.crashed}; then exit {CRASHED_EXIT}; fi; " if hc.crashed else "")
    return (f"{head}sleep {STABLE_SECONDS}; i=0; while [ $i -lt {tries} ]; do "
            f"if printf %s \"$SECRET\" | {{ {hc.command}; }} >/dev/null 2>&1; then exit 0; fi; "
            f"{crashed}i=$((i+1)); sleep {interval:g}; done; exit 1")


#: How long a drain waits for requests already sent to finish: nginx's proxy_read_timeout
#: (30 s) plus a margin; a request older than that has been given up on by nginx anyway.
DRAIN_TIMEOUT = 35.0


def until_no_requests(ports: list[int], timeout: float = DRAIN_TIMEOUT,
                      interval: float = 0.25) -> str:
    """Wait on a web host until no TCP connection to any of `ports` is open, seen twice in a
    row `interval` apart (the second look covers a request an old nginx worker accepted just
    before it learnt of the drain). nginx opens one connection per request to the web
    processes, so an open connection is a request in flight; exit 1 at the deadline."""
    if not ports:
        return "true"
    flt = "( " + " or ".join(f"sport = :{p}" for p in sorted(set(ports))) + " )"
    tries = max(2, int(timeout / interval))
    return (f"i=0; idle=0; while [ $i -lt {tries} ]; do "
            f"if [ -z \"$({join(['ss', '-Htn', 'state', 'established', flt])})\" ]; then "
            f"idle=$((idle+1)); [ $idle -ge 2 ] && exit 0; else idle=0; fi; "
            f"i=$((i+1)); sleep {interval:g}; done; exit 1")
