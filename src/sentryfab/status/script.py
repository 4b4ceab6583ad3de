"""The one check script a host runs per round: every fact of every role it has, in parallel.

pyinfra's fact pattern: a fact is a command whose output a pure parser turns into data. Here
each fact prints '@@ <name>' then its raw output then '@@rc <exit code>'; facts that may
take a while (docker, curl, redis-cli, psql) run as background jobs of the one script, so a
host answers in about the time of its slowest fact, not their sum. Secrets are read from
stdin, one per line, into shell variables and handed to `docker exec -i` by printf (a shell
builtin): they never appear in any argv.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..configs.catalog import CONFIG_ROOT
from ..configs.context import settings, web_ports
from ..containers import cleanup
from ..containers.spec import specs_for
from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..lockinfo import lock_host, status_command
from ..shell import join, script
from . import ingestion

MARK = "@@"
DATA_PATHS = ("/var/lib/sentryfab", "/var/log/sentryfab")
#: Seconds any one docker/psql/redis-cli call may take before it is cut off.
FACT_TIMEOUT = 10
HTTP_TIMEOUT = 3

#: Celery's Redis transport keeps each queue as a list named after it. These are the queues
#: whose tasks carry an event's payload key in Sentry 9.1.2 (sentry/tasks/store.py), plus
#: `default`; an inventory sets `queue_keys` on redis-queue to watch others (the lab's
#: stand-in uses one list).
SENTRY_QUEUES = ("default", "events.preprocess_event", "events.process_event",
                 "events.save_event", "events.reprocessing.preprocess_event",
                 "events.reprocessing.process_event")
#: The most of a queue's oldest message read: Sentry's task messages carry the payload's key,
#: not the payload (well under 1 kB); a bigger one is cut (its age then reads 'unknown').
OLDEST_MAX_BYTES = 65536

#: Which secret each role's facts need on stdin.
ROLE_SECRETS = {"redis-cache": "redis_password", "redis-queue": "redis_password",
                "pgbouncer": "pgbouncer_admin_password"}

#: docker inspect, one tab-separated line per container of ours.
INSPECT_FORMAT = "\t".join([
    "{{.Name}}", "{{.Id}}", "{{.State.Status}}", "{{.RestartCount}}", "{{.State.StartedAt}}",
    "{{.State.OOMKilled}}", "{{.State.ExitCode}}",
    '{{index .Config.Labels "sentryfab.role"}}', '{{index .Config.Labels "sentryfab.version"}}',
])

#: Upstream servers of the rendered nginx.conf: 'address:port up|down name'.
UPSTREAMS_AWK = (
    '$1 == "server" && $2 ~ /^[^:]+:[0-9]+$/ { name = "-"; '
    'if (match($0, /# [^ ]+/)) name = substr($0, RSTART + 2, RLENGTH - 2); '
    'print $2, ($0 ~ / down;/ ? "down" : "up"), name }'
)

#: One line per URL probed: 'url http_code seconds curl_exit_code' (7: refused, 28: timeout).
CURL_FORMAT = "%{url_effective} %{http_code} %{time_total} %{exitcode}\\n"

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

PGBOUNCER_SHOW = ("POOLS", "STATS", "DATABASES")


@dataclass(frozen=True)
class Fact:
    """One named piece of output: '@@ name', what `command` prints, '@@rc N'."""

    name: str
    command: str

    def text(self) -> str:
        """The fact as shell text (its exit code is printed, never lost)."""
        return f"{join(['echo', f'{MARK} {self.name}'])}; {self.command}; echo \"{MARK}rc $?\""


@dataclass(frozen=True)
class CheckScript:
    """A host's whole round: the command, what to send on stdin, and the facts it prints."""

    command: str
    stdin: bytes | None
    facts: tuple[str, ...]
    secrets: tuple[str, ...]


def _secret_var(i: int) -> str:
    return f"SFB_SECRET_{i}"


def _timed(argv: list[str]) -> str:
    """A command that gives up after FACT_TIMEOUT (a hung Docker engine must not hang us)."""
    return join(["timeout", str(FACT_TIMEOUT), *argv])


# -- facts every host has -------------------------------------------------------------------

def host_facts() -> list[Fact]:
    """Load, CPUs, memory, file descriptors, disk use of the data and log paths.

    Shell builtins where they do (read, case): on hosts that only get these facts, the
    script then costs one `nproc` and one `df` more than `true`.
    """
    meminfo = ('while read -r k v u; do case $k in MemTotal:|MemAvailable:) '
               'echo "$k $v $u";; esac; done < /proc/meminfo')
    # A path not created yet is on its nearest existing parent's filesystem.
    df = (f"m=; for p in {join(DATA_PATHS)}; do q=$p; while [ ! -e \"$q\" ]; do q=${{q%/*}}; "
          'q=${q:-/}; done; echo "path $p $q"; m="$m $q"; done; df -Pk $m')
    return [
        Fact("loadavg", 'read -r l < /proc/loadavg && echo "$l"'),
        Fact("nproc", "nproc"),
        Fact("meminfo", meminfo),
        # Not `read`: sysctl files answer a one-byte read (dash's) with one byte only.
        Fact("file-nr", "cat /proc/sys/fs/file-nr"),
        Fact("df", df),
    ]


DOCKER_SOCKET = "/var/run/docker.sock"
#: Engine API: our containers, running or not (filters={"label":["sentryfab.role"]}).
LIST_URL = ("http://docker/containers/json?all=1&filters="
            "%7B%22label%22%3A%5B%22sentryfab.role%22%5D%7D")
#: Each container's '"Id":"<hex>' in that list (the quote left is stripped by the shell).
ID_PATTERN = '"Id":"[0-9a-f]*'


def docker_fact() -> Fact:
    """Every container of ours (any role, running or not) with its restart count and labels.

    Through the Engine API with curl when the local socket is there: two curls cost about a
    third of the CPU of two docker CLI runs (a Go program's start-up), which on a busy host
    (or the lab, where every host shares one machine) is most of a round. The docker CLI
    (restricted to the same fields) when DOCKER_HOST points elsewhere or there is no socket.
    """
    sock = join([DOCKER_SOCKET])
    curl = ["timeout", str(FACT_TIMEOUT), "curl", "-sS", "--unix-socket", DOCKER_SOCKET]
    # The ids are hex: split on purpose, one inspect URL each, all in one curl.
    ids = f"{join([*curl, '-f', LIST_URL])} | grep -o {join([ID_PATTERN])}"
    api = (f"ids=$({ids}) && set -- && for i in $ids; do i=${{i#*:}}; "
           'set -- "$@" "http://docker/containers/${i#?}/json"; done && '
           f'{{ [ $# -eq 0 ] || {join(curl)} "$@"; }}')
    ps = _timed(["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter",
                 "label=sentryfab.role"])
    inspect = _timed(["docker", "inspect", "--format", INSPECT_FORMAT])
    cli = f"ids=$({ps}) && {{ [ -z \"$ids\" ] || {inspect} $ids; }}"
    # Not writable (a login without Docker's rights): the CLI, which says "permission denied"
    # where curl would only say it could not connect.
    return Fact("docker", f'if [ -z "$DOCKER_HOST" ] && [ -S {sock} ] && [ -w {sock} ]; '
                          f"then {api}; else {cli}; fi")


# -- facts per role ----------------------------------------------------------------------------

def probe_urls(urls: list[str]) -> str:
    """One curl fetching every URL at once (-Z), a CURL_FORMAT line per URL."""
    argv = ["curl", "-s", "--no-progress-meter", "-Z", "--max-time", str(HTTP_TIMEOUT),
            "-w", CURL_FORMAT]
    for url in urls:
        argv += ["-o", "/dev/null", url]
    return join(argv)


def web_facts(inv: Inventory, host: Host) -> list[Fact]:
    """/_health/ of every web process, asked from the host itself, all at once."""
    urls = [f"http://{host.address}:{port}/_health/" for port in web_ports(inv, host)]
    return [Fact("web", probe_urls(urls))]


def nginx_facts(inv: Inventory, host: Host) -> list[Fact]:
    """stub_status, and each upstream of the deployed config probed from the nginx host."""
    port = int(settings(inv, "nginx", host)["port"])
    status = join(["curl", "-sS", "--max-time", str(HTTP_TIMEOUT),
                   f"http://{host.address}:{port}/nginx_status"])
    conf = f"{CONFIG_ROOT}/nginx/nginx.conf"
    to_args = join(["awk", '{ print "-o /dev/null http://" $1 "/_health/" }'])
    curl = join(["curl", "-s", "--no-progress-meter", "-Z", "--max-time", str(HTTP_TIMEOUT),
                 "-w", CURL_FORMAT])
    # The config's servers, then one parallel probe of them all ($u split on purpose).
    probe = (f"u=$({join(['awk', UPSTREAMS_AWK, conf])}) && echo \"$u\" && "
             f"{{ [ -z \"$u\" ] || {curl} $(echo \"$u\" | {to_args}); }}")
    # When the rotation last changed: drained upstreams with no deploy running say since when.
    changed = join(["stat", "-c", "%Y", conf])
    return [Fact("nginx-status", status), Fact("nginx-upstreams", probe),
            Fact(NGINX_CHANGED_FACT, changed)]


#: The facts that reduce a log of the last minute on the host (ingestion.py).
INGEST_FACT = "nginx-ingest"
PAYLOADS_FACT = "worker-payloads"
#: On the lock host: who holds the deploy lock (nothing when it is free).
LOCK_FACT = "deploy-lock"
NGINX_CHANGED_FACT = "nginx-changed"
CLEANUP_FACT = "cron-cleanup"


def ingest_fact(inv: Inventory, host: Host) -> Fact:
    """nginx's answers to ingestion requests in the last minute, counted on the host."""
    container = specs_for(inv, host, "nginx")[0].name
    return Fact(INGEST_FACT, ingestion.nginx_command(container, FACT_TIMEOUT))


def payloads_fact(inv: Inventory, host: Host) -> Fact:
    """The worker containers' 'payload missing' messages of the last minute, counted."""
    containers = [spec.name for spec in specs_for(inv, host, "worker")]
    return Fact(PAYLOADS_FACT, ingestion.worker_command(containers, FACT_TIMEOUT))


def queue_keys(inv: Inventory, host: Host | None = None) -> list[str]:
    """The queue Redis lists to measure (`queue_keys` on redis-queue, else Sentry's)."""
    raw = settings(inv, "redis-queue", host).get("queue_keys") or list(SENTRY_QUEUES)
    return [str(k) for k in ([raw] if isinstance(raw, str) else raw)]


def redis_fact(inv: Inventory, host: Host, role: str, container: str, secret_var: str) -> Fact:
    """INFO (and on the queue: each queue key's LLEN and, if not empty, its oldest message;
    heartbeat keys) inside the container."""
    s = settings(inv, role, host)
    cli = join(["redis-cli", "--no-auth-warning", "-h", host.address, "-p", int(s["port"])])
    inner = [f'REDISCLI_AUTH="$(cat)"; export REDISCLI_AUTH; {cli} INFO']
    if role == "redis-queue":
        for key in queue_keys(inv, host):
            k = join([key])
            # LPUSH in, BRPOP out: the oldest message is the last element. Only fetched when
            # there is a backlog, so an idle queue costs one call, as before.
            inner.append(f"{join(['echo', f'@llen {key}'])}; n=$({cli} LLEN {k}); "
                         f'echo "$n"; if [ "$n" != 0 ]; then '
                         f"{join(['echo', f'@oldest {key}'])}; {cli} LINDEX {k} -1 | "
                         f"head -c {OLDEST_MAX_BYTES}; echo; fi")
        pattern = s.get("heartbeat_pattern")
        if pattern:
            inner.append(f"{join(['echo', f'@scan {pattern}'])}; "
                         f"{cli} --scan --pattern {join([str(pattern)])} | wc -l")
    run = _timed(["docker", "exec", "-i", container, "sh", "-c", "; ".join(inner)])
    return Fact(f"redis {role}", f"printf %s \"${secret_var}\" | {run}")


def db_fact(container: str) -> Fact:
    """The node's state, its standbys and its slots, through the local socket (no password)."""
    argv = ["docker", "exec", "--user", "postgres", container, "psql", "-X", "-A", "-t",
            "-d", "postgres"]
    for sql in (DB_NODE_SQL, DB_STANDBYS_SQL, DB_SLOTS_SQL):
        argv += ["-c", sql]
    return Fact("db", _timed(argv))


def pgbouncer_fact(inv: Inventory, host: Host, container: str, secret_var: str) -> Fact:
    """SHOW POOLS, STATS and DATABASES on the admin console, with headers (columns vary)."""
    port = int(settings(inv, "pgbouncer", host)["port"])
    argv = ["psql", "-X", "-A", "-F", "|", "-P", "footer=off", "-h", host.address, "-p",
            str(port), "-U", "pgbouncer", "-d", "pgbouncer"]
    for what in PGBOUNCER_SHOW:
        argv += ["-c", f"\\echo @{what.lower()}", "-c", f"SHOW {what}"]
    inner = f'PGPASSWORD="$(cat)"; export PGPASSWORD; {join(argv)}'
    run = _timed(["docker", "exec", "-i", container, "sh", "-c", inner])
    return Fact("pgbouncer", f"printf %s \"${secret_var}\" | {run}")


# -- the script ----------------------------------------------------------------------------------

def secrets_needed(host: Host) -> tuple[str, ...]:
    """The secrets a host's facts read, in the order they are sent on stdin."""
    out: list[str] = []
    for role in host.roles:
        name = ROLE_SECRETS.get(role)
        if name and name not in out:
            out.append(name)
    return tuple(out)


def jobs_for(inv: Inventory, host: Host) -> list[list[Fact]]:
    """The host's facts grouped into jobs: facts of one job run in turn, jobs in parallel."""
    needed = secrets_needed(host)
    var = {name: _secret_var(i) for i, name in enumerate(needed)}
    jobs: list[list[Fact]] = [host_facts()]
    if not host.roles:
        return jobs
    jobs.append([docker_fact()])
    for role in host.roles:
        first = specs_for(inv, host, role)[0].name
        if role == "web":
            jobs.append(web_facts(inv, host))
        elif role == "nginx":
            jobs += [[f] for f in nginx_facts(inv, host)]
            jobs.append([ingest_fact(inv, host)])
        elif role == "worker":
            jobs.append([payloads_fact(inv, host)])
        elif role in ("redis-cache", "redis-queue"):
            jobs.append([redis_fact(inv, host, role, first, var[ROLE_SECRETS[role]])])
        elif role == "db":
            jobs.append([db_fact(first)])
        elif role == "pgbouncer":
            jobs.append([pgbouncer_fact(inv, host, first, var[ROLE_SECRETS[role]])])
        elif role == "cron":  # besides its containers (the docker fact): the cleanup's runs
            jobs.append([Fact(CLEANUP_FACT, cleanup.facts_command())])
    if host.name == lock_host(inv).name:
        jobs.append([Fact(LOCK_FACT, status_command())])
    return jobs


def build(inv: Inventory, host: Host, secret_values: dict[str, str]) -> CheckScript:
    """The host's one command and its stdin; `secret_values` maps secret name -> value."""
    needed = secrets_needed(host)
    for name in needed:
        if "\n" in secret_values[name] or "\r" in secret_values[name]:
            raise SentryfabError(f"secret '{name}' holds a line break: it cannot be sent to "
                                 f"{host.name}'s status check")
    jobs = jobs_for(inv, host)
    lines = [f"IFS= read -r {_secret_var(i)}" for i in range(len(needed))]
    lines.append("SFB_T0=$(date +%s%N)")
    if len(jobs) == 1:
        lines.append("; ".join(f.text() for f in jobs[0]))
    else:
        # Each job writes its own file; they are printed in a fixed order once all are done.
        lines += ["SFB_D=$(mktemp -d /tmp/sentryfab-status.XXXXXX) || exit 97",
                  "trap 'rm -rf \"$SFB_D\"' EXIT"]
        for i, job in enumerate(jobs):
            lines.append(f"{{ {'; '.join(f.text() for f in job)}; }} >\"$SFB_D/{i}\" 2>&1 &")
        lines += ["wait", "cat " + " ".join(f'"$SFB_D/{i}"' for i in range(len(jobs)))]
    lines.append(f'echo "{MARK} end $SFB_T0 $(date +%s%N)"')
    stdin = ("".join(secret_values[n] + "\n" for n in needed)).encode() if needed else None
    return CheckScript(command=script("\n".join(lines)), stdin=stdin,
                       facts=tuple(f.name for job in jobs for f in job), secrets=needed)
