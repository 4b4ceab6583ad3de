"""The command that checks a candidate config file with the real software before it goes live.

Pure: one shell command per (validator, role, candidate, image). It runs the role's own image
in a throwaway container with no network, the role's config folder mounted read-only at the
same path (so files the candidate names, like PgBouncer's auth_file, resolve as they will),
and exits 0 only if the software accepts the file; otherwise the software's own message is
on stderr. Values reach the check scripts as arguments ("$1"), never pasted into them.
"""

from __future__ import annotations

from collections.abc import Callable

from ..shell import join
from .backup import STANZA
from .catalog import CONFIG_ROOT
from .py27 import PY27_CHECK

#: Redis, PgBouncer and a postmaster have no "check this config" flag: they are started for
#: this long, and one still running then (timeout's exit code 124) accepted its config.
STAY_UP_SECONDS = 2

#: The Sentry settings and options a candidate must define (besides compiling and running).
SENTRY_SETTINGS = ("DATABASES", "BROKER_URL", "SENTRY_WEB_OPTIONS")
SENTRY_OPTIONS = ("system.secret-key", "redis.clusters")

# The Python that runs the Sentry checks: the image's 2.7, Sentry's own (the official image
# and the lab's have python2.7 on PATH), else whatever Python it has. The script is "$1".
PYTHON_RUN = ('py=$(command -v python2.7 || command -v python || command -v python3) || '
              '{ echo "no python in the image" >&2; exit 1; }; '
              'script=$1; shift; exec "$py" -c "$script" "$@"')

# Debian's images keep PostgreSQL's programs out of PATH; the official image has them on it.
_PG_PATH = "for d in /usr/lib/postgresql/*/bin; do PATH=$PATH:$d; done; "


def _stays_up(command: str) -> str:
    """sh text: run a server for STAY_UP_SECONDS; still up is success, else show its output."""
    return (f"out=$(timeout {STAY_UP_SECONDS} {command} 2>&1); rc=$?; "
            '[ "$rc" -eq 124 ] && exit 0; '
            f'printf "%s\\nexited with code %s within {STAY_UP_SECONDS} s\\n" "$out" "$rc" >&2; '
            "exit 1")


# sentry.conf.py must first be a file Sentry 9's Python 2.7 can load (configs/py27.py: no
# Python-3-only construct, each named with its line). It runs `from sentry.conf.server
# import *`: a stub stands in for Sentry (the real one would make the check depend on
# Sentry's import-time environment). Then the file must compile, run, and define the
# settings given as arguments. The script runs on Python 2.7 or 3, whichever the image has.
SENTRY_CONF_CHECK = PY27_CHECK + """
path = sys.argv[1]
source = open(path, "rb").read()
problems = py27_problems(path, source)
if problems:
    sys.exit("\\n".join(problems))
import types
for name in ("sentry", "sentry.conf", "sentry.conf.server"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["sentry.conf.server"].__dict__.update(SENTRY_OPTIONS={}, SENTRY_FEATURES={})
ns = {"__name__": "sentry_conf", "__file__": path}
exec(compile(source, path, "exec"), ns)
missing = [k for k in sys.argv[2:] if not ns.get(k)]
if missing:
    sys.exit(path + ": missing or empty: " + ", ".join(missing))
"""

# config.yml must parse as YAML into a mapping holding the options given as arguments.
YAML_CHECK = """\
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
if not isinstance(doc, dict):
    sys.exit(path + ": not a YAML mapping of option: value")
missing = [k for k in sys.argv[2:] if not doc.get(k)]
if missing:
    sys.exit(path + ": missing or empty: " + ", ".join(missing))
"""

# Redis parses `dir` as it reads it (chdir), so the data folder must exist in the container.
# Then no TCP port, no snapshots, no AOF: the test server writes nothing. It needs something
# to listen on (Redis 7 exits "Configured to not listen anywhere"): a socket in its /tmp.
REDIS_CHECK = 'mkdir -p "$2" && ' + _stays_up(
    'redis-server "$1" --port 0 --unixsocket /tmp/redis.sock --daemonize no --dir /tmp'
    ' --save "" --appendonly no')

# A copy listening on 127.0.0.1 of the container's empty network namespace; everything else,
# the auth_file included, as the candidate says.
PGBOUNCER_CHECK = (
    'cp "$1" /tmp/pgbouncer.ini && sed -i'
    ' -e "s/^[[:space:]]*listen_addr[[:space:]]*=.*/listen_addr = 127.0.0.1/"'
    ' -e "s/^[[:space:]]*listen_port[[:space:]]*=.*/listen_port = 6432/"'
    " /tmp/pgbouncer.ini && " + _stays_up("pgbouncer /tmp/pgbouncer.ini"))

# postgres -C parses the whole file (unknown names and bad values are fatal) and prints one
# setting; it needs an existing -D but starts nothing.
POSTGRES_CHECK = (_PG_PATH + 'data=$(mktemp -d) && '
                  'postgres -C wal_level -c config_file="$1" -D "$data"')

# PostgreSQL reads pg_hba.conf only when a server starts, and refuses to start on any bad
# line (naming it): start a throwaway cluster on the candidate, without TCP.
PG_HBA_CHECK = (
    _PG_PATH + 'data=$(mktemp -d) && '
    'initdb --no-sync --no-instructions -A trust -U postgres -E UTF8 --locale=C -D "$data"'
    " >/dev/null && " + _stays_up(
        'postgres -D "$data" -c hba_file="$1" -c listen_addresses='
        ' -c unix_socket_directories="$data"'))

# pgBackRest refuses a bad value of a known option (naming it) on any command, even `help`;
# an unknown option is only a warning, which this check refuses too. The stanza is named so
# that its section's options are read as well.
PGBACKREST_CHECK = (
    'err=$(pgbackrest --config="$1" --stanza="$2" --log-level-console=warn'
    ' --log-level-stderr=warn help backup 2>&1 >/dev/null); rc=$?; '
    '[ "$rc" -eq 0 ] && [ -z "$err" ] && exit 0; printf "%s\\n" "$err" >&2; exit 1')

#: Per validator: extra `docker run` options and the check command (role, candidate) -> argv.
Check = tuple[tuple[str, ...], Callable[[str, str], list[str]]]

VALIDATORS: dict[str, Check | None] = {
    # nginx -t binds the listen address: let it bind the host's address in the empty netns.
    "nginx": (("--sysctl", "net.ipv4.ip_nonlocal_bind=1"), lambda role, cand: [
        "nginx", "-t", "-e", "stderr", "-g", "pid /tmp/nginx.pid;", "-c", cand]),
    "redis": ((), lambda role, cand: [
        "sh", "-c", REDIS_CHECK, "sh", cand, f"/var/lib/sentryfab/{role}"]),
    # PgBouncer and PostgreSQL refuse to run as root.
    "pgbouncer": (("--user", "postgres"), lambda role, cand: [
        "sh", "-c", PGBOUNCER_CHECK, "sh", cand]),
    "postgres": (("--user", "postgres"), lambda role, cand: [
        "sh", "-c", POSTGRES_CHECK, "sh", cand]),
    "pg_hba": (("--user", "postgres"), lambda role, cand: [
        "sh", "-c", PG_HBA_CHECK, "sh", cand]),
    "pgbackrest": (("--user", "postgres"), lambda role, cand: [
        "sh", "-c", PGBACKREST_CHECK, "sh", cand, STANZA]),
    "python": ((), lambda role, cand: [
        "sh", "-c", PYTHON_RUN, "sh", SENTRY_CONF_CHECK, cand, *SENTRY_SETTINGS]),
    "yaml": ((), lambda role, cand: [
        "sh", "-c", PYTHON_RUN, "sh", YAML_CHECK, cand, *SENTRY_OPTIONS]),
    "none": None,
}


def validation_command(validator: str, role: str, candidate: str, image: str) -> str | None:
    """One shell command that exits 0 iff `image` accepts `candidate`; None for "none"."""
    if validator not in VALIDATORS:
        raise ValueError(f"unknown validator {validator!r} (known: {', '.join(VALIDATORS)})")
    check = VALIDATORS[validator]
    if check is None:
        return None
    folder = f"{CONFIG_ROOT}/{role}"
    if not candidate.startswith(folder + "/"):
        raise ValueError(f"candidate {candidate} is not in {folder}/, the folder the check mounts")
    options, command = check
    # --entrypoint= : the image's entrypoint (official images rewrite configs, drop privileges)
    # must not run; the check command runs as given.
    return join(["docker", "run", "--rm", "--network=none", "--entrypoint=", *options,
                 "-v", f"{folder}:{folder}:ro", image, *command(role, candidate)])
