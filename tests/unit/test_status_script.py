"""The check-script builder: exact scripts for a small inventory (a shell runs them in
tests/cli/test_status_commands_in_a_real_shell.py)."""

from __future__ import annotations

import shlex

import pytest

from sentryfab import inventory
from sentryfab.errors import SentryfabError
from sentryfab.status import script
from sentryfab.status.facts import db, nginx
from sentryfab.status.facts.db import Db
from sentryfab.status.facts.pgbouncer import Pgbouncer
from sentryfab.status.facts.redis import Redis, queue_keys

TINY = """\
cluster: tiny
sentry: {filestore: {shared: true}}
roles:
  web: {image: sentry, tag: "1", processes: 2}
  worker: {image: sentry, tag: "1", processes: 1}
  cron: {image: sentry, tag: "1"}
  redis-queue: {queue_keys: [q1, "odd key"], heartbeat_pattern: "hb:*"}
hosts:
  lb-1: {address: 10.0.0.10, roles: [nginx]}
  web-1: {address: 10.0.0.11, roles: [web]}
  worker-1: {address: 10.0.0.12, roles: [worker, cron]}
  cache-1: {address: 10.0.0.13, roles: [redis-cache]}
  queue-1: {address: 10.0.0.14, roles: [redis-queue]}
  db-1: {address: 10.0.0.15, roles: [db]}
  pgb-1: {address: 10.0.0.16, roles: [pgbouncer]}
  plain-1: {address: 10.0.0.17}
"""
SECRETS = {"redis_password": "s3cret 'r$", "pgbouncer_admin_password": "p@ss"}

HOST_FACTS = (
    r"""echo '@@ loadavg'; read -r l < /proc/loadavg && echo "$l"; echo "@@rc $?"; """
    r"""echo '@@ nproc'; nproc; echo "@@rc $?"; """
    r"""echo '@@ meminfo'; while read -r k v u; do case $k in MemTotal:|MemAvailable:) """
    r"""echo "$k $v $u";; esac; done < /proc/meminfo; echo "@@rc $?"; """
    r"""echo '@@ file-nr'; cat /proc/sys/fs/file-nr; echo "@@rc $?"; """
    r"""echo '@@ df'; m=; for p in /var/lib/sentryfab /var/log/sentryfab; do q=$p; """
    r"""while [ ! -e "$q" ]; do q=${q%/*}; q=${q:-/}; done; echo "path $p $q"; m="$m $q"; """
    'done; df -Pk $m; echo "@@rc $?"'
)
DOCKER = (
    r"""echo '@@ docker'; if [ -z "$DOCKER_HOST" ] && [ -S /var/run/docker.sock ] """
    r"""&& [ -w /var/run/docker.sock ]; then """
    r"""ids=$(timeout 10 curl -sS --unix-socket /var/run/docker.sock -f """
    r"""'http://docker/containers/json?all=1&filters=%7B%22label%22%3A%5B%22sentryfab.role"""
    r"""%22%5D%7D' | grep -o '"Id":"[0-9a-f]*') && set -- && for i in $ids; do i=${i#*:}; """
    r"""set -- "$@" "http://docker/containers/${i#?}/json"; done && { [ $# -eq 0 ] || """
    r"""timeout 10 curl -sS --unix-socket /var/run/docker.sock "$@"; }; """
    r"""else ids=$(timeout 10 docker ps --all --quiet --no-trunc --filter """
    r"""label=sentryfab.role) && { [ -z "$ids" ] || timeout 10 docker inspect --format """
    "'{{.Name}}\t{{.Id}}\t{{.State.Status}}\t{{.RestartCount}}\t{{.State.StartedAt}}\t"
    "{{.State.OOMKilled}}\t{{.State.ExitCode}}\t"
    '{{index .Config.Labels "sentryfab.role"}}\t{{index .Config.Labels "sentryfab.version"}}'
    '\' $ids; }; fi; echo "@@rc $?"'
)


@pytest.fixture
def tiny(write_inventory):
    return inventory.load(write_inventory(TINY))


def unwrap(command: str) -> str:
    """The script inside `sh -c '...'`."""
    argv = shlex.split(command)
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3
    return argv[2]


def test_a_host_without_roles_runs_the_host_facts_inline(tiny):
    cs = script.build(tiny, tiny.host("plain-1"), SECRETS)
    assert unwrap(cs.command) == (
        "SFB_T0=$(date +%s%N)\n"
        + HOST_FACTS + "\n"
        + 'echo "@@ end $SFB_T0 $(date +%s%N)"'
    )
    assert cs.stdin is None and cs.secrets == ()
    assert cs.facts == ("loadavg", "nproc", "meminfo", "file-nr", "df")


def test_a_web_host_runs_its_jobs_in_parallel_and_prints_them_in_order(tiny):
    cs = script.build(tiny, tiny.host("web-1"), SECRETS)
    assert unwrap(cs.command) == (
        "SFB_T0=$(date +%s%N)\n"
        "SFB_D=$(mktemp -d /tmp/sentryfab-status.XXXXXX) || exit 97\n"
        """trap 'rm -rf "$SFB_D"' EXIT\n"""
        "{ " + HOST_FACTS + """; } >"$SFB_D/0" 2>&1 &\n"""
        "{ " + DOCKER + """; } >"$SFB_D/1" 2>&1 &\n"""
        "{ echo '@@ web'; curl -s --no-progress-meter -Z --max-time 3 -w "
        r"""'%{url_effective} %{http_code} %{time_total} %{exitcode}\n' """
        "-o /dev/null http://10.0.0.11:9000/_health/ "
        "-o /dev/null http://10.0.0.11:9001/_health/; "
        """echo "@@rc $?"; } >"$SFB_D/2" 2>&1 &\n"""
        "wait\n"
        'cat "$SFB_D/0" "$SFB_D/1" "$SFB_D/2"\n'
        'echo "@@ end $SFB_T0 $(date +%s%N)"'
    )


def test_worker_is_its_containers_and_their_logs_cron_its_container(tiny):
    cs = script.build(tiny, tiny.host("worker-1"), SECRETS)
    # The worker logs' missing payloads: test_status_ingestion.py; the cron's retention
    # cleanup record: test_cleanup.py.
    assert cs.facts == ("loadavg", "nproc", "meminfo", "file-nr", "df", "docker",
                        "worker-payloads", "cron-cleanup")


def test_the_redis_password_goes_on_stdin_never_in_the_command(tiny):
    cs = script.build(tiny, tiny.host("queue-1"), SECRETS)
    assert cs.secrets == ("redis_password",)
    assert cs.stdin == b"s3cret 'r$\n"
    assert "s3cret" not in cs.command
    assert unwrap(cs.command).startswith("IFS= read -r SFB_SECRET_0\nSFB_T0=")


def test_redis_queue_fact(tiny):
    fact = Redis.fact(tiny, tiny.host("queue-1"), "redis-queue", "sentry-redis-queue-1",
                             "SFB_SECRET_0")
    cli = "redis-cli --no-auth-warning -h 10.0.0.14 -p 6379"
    inner = (f'REDISCLI_AUTH="$(cat)"; export REDISCLI_AUTH; {cli} INFO; '
             f"""echo '@llen q1'; n=$({cli} LLEN q1); echo "$n"; if [ "$n" != 0 ]; then """
             f"echo '@oldest q1'; {cli} LINDEX q1 -1 | head -c 65536; echo; fi; "
             f"""echo '@llen odd key'; n=$({cli} LLEN 'odd key'); echo "$n"; """
             f"""if [ "$n" != 0 ]; then echo '@oldest odd key'; {cli} LINDEX 'odd key' -1 | """
             "head -c 65536; echo; fi; "
             f"echo '@scan hb:*'; {cli} --scan --pattern 'hb:*' | wc -l")
    assert fact.text() == (
        "echo '@@ redis redis-queue'; "
        'printf %s "$SFB_SECRET_0" | timeout 10 docker exec -i sentry-redis-queue-1 sh -c '
        + shlex.quote(inner) + '; echo "@@rc $?"'
    )


def test_queue_keys_default_to_sentry_s_celery_queues(tiny, write_inventory):
    assert queue_keys(tiny) == ["q1", "odd key"]
    bare = inventory.load(write_inventory(TINY.replace(
        '  redis-queue: {queue_keys: [q1, "odd key"], heartbeat_pattern: "hb:*"}\n', ""),
        "bare.yaml"))
    assert queue_keys(bare) == ["default", "events.preprocess_event",
                                       "events.process_event", "events.save_event",
                                       "events.reprocessing.preprocess_event",
                                       "events.reprocessing.process_event"]


def test_pgbouncer_fact(tiny):
    fact = Pgbouncer.fact(tiny, tiny.host("pgb-1"), "sentry-pgbouncer-1", "SFB_SECRET_0")
    inner = ('PGPASSWORD="$(cat)"; export PGPASSWORD; psql -X -A -F '"'|'"' -P footer=off '
             "-h 10.0.0.16 -p 6432 -U pgbouncer -d pgbouncer "
             r"-c '\echo @pools' -c 'SHOW POOLS' -c '\echo @stats' -c 'SHOW STATS' "
             r"-c '\echo @databases' -c 'SHOW DATABASES'")
    assert fact.text() == (
        "echo '@@ pgbouncer'; "
        'printf %s "$SFB_SECRET_0" | timeout 10 docker exec -i sentry-pgbouncer-1 sh -c '
        + shlex.quote(inner) + '; echo "@@rc $?"'
    )


def test_db_fact_uses_the_local_socket_and_no_secret(tiny):
    cs = script.build(tiny, tiny.host("db-1"), SECRETS)
    assert cs.stdin is None
    fact = Db.fact("sentry-db-1")
    argv = shlex.split(fact.command)
    assert argv[:12] == ["timeout", "10", "docker", "exec", "--user", "postgres",
                         "sentry-db-1", "psql", "-X", "-A", "-t", "-d"]
    assert argv[12:] == ["postgres", "-c", db.DB_NODE_SQL, "-c", db.DB_STANDBYS_SQL,
                         "-c", db.DB_SLOTS_SQL]


def test_nginx_facts(tiny):
    status, upstreams, changed = nginx.nginx_facts(tiny, tiny.host("lb-1"))
    assert changed.text() == ("echo '@@ nginx-changed'; stat -c %Y "
                              '/etc/sentryfab/nginx/nginx.conf; echo "@@rc $?"')
    assert status.text() == ("echo '@@ nginx-status'; curl -sS --max-time 3 "
                             'http://10.0.0.10:80/nginx_status; echo "@@rc $?"')
    assert upstreams.text() == (
        "echo '@@ nginx-upstreams'; u=$(awk " + shlex.quote(nginx.UPSTREAMS_AWK)
        + ' /etc/sentryfab/nginx/nginx.conf) && echo "$u" && { [ -z "$u" ] || curl -s '
        "--no-progress-meter -Z --max-time 3 -w "
        r"""'%{url_effective} %{http_code} %{time_total} %{exitcode}\n' """
        """$(echo "$u" | awk '{ print "-o /dev/null http://" $1 "/_health/" }'); }; """
        'echo "@@rc $?"'
    )


def test_a_secret_with_a_line_break_is_refused(tiny):
    with pytest.raises(SentryfabError, match="redis_password.*line break"):
        script.build(tiny, tiny.host("cache-1"), {**SECRETS, "redis_password": "a\nb"})
