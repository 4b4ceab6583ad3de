"""`fab status`'s commands run by this machine's own `sh` (moved from tests/unit: a process
each): the check scripts parse as shell, the host facts run here, the queue fact against a
stand-in redis-cli (tests/unit/test_status_script.py); the ingestion awk on sample logs
through a stand-in docker (test_status_ingestion.py)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.status import ingestion, script
from sentryfab.status.facts.host import DATA_PATHS, Df, FileNr, Loadavg, Meminfo, Nproc
from sentryfab.status.facts.ingestion import (
    IngestFacts,
    NginxIngest,
    PayloadFacts,
    WorkerPayloads,
)
from sentryfab.status.facts.redis import Redis
from sentryfab.status.ingestion import Ingestion
from tests.unit.test_status_script import SECRETS, TINY, unwrap


@pytest.fixture
def tiny(write_inventory):
    return inventory.load(write_inventory(TINY))


# -- the check scripts (tests/unit/test_status_script.py) ------------------------------------

#: A stand-in redis-cli for the shell test below: INFO, LLEN and LINDEX of a fixed list
#: 'q1' (its oldest element a message), 'q2' empty, 'q3' said non-empty by LLEN but drained
#: before LINDEX (nil prints an empty line, as redis-cli does when not on a terminal).
FAKE_REDIS_CLI = r"""#!/bin/sh
[ "$REDISCLI_AUTH" = "s3cret" ] || { echo "AUTH failed: WRONGPASS" >&2; exit 1; }
echo "$*" >> "$CALLS"
shift 5
case "$1 $2" in
  "INFO ") printf 'role:master
maxmemory_policy:noeviction
' ;;
  "LLEN q1") echo 2 ;; "LLEN q2") echo 0 ;; "LLEN q3") echo 1 ;;
  "LINDEX q1") printf '%s
' "$OLDEST" ;;
  "LINDEX q3") echo ;;
esac
"""


def test_the_queue_fact_runs_in_a_shell_and_parses(tmp_path, write_inventory):
    from tests.unit.test_status_facts import envelope

    i = inventory.load(write_inventory(TINY.replace(
        'queue_keys: [q1, "odd key"], heartbeat_pattern: "hb:*"', "queue_keys: [q1, q2, q3]")))
    fact = Redis.fact(i, i.host("queue-1"), "redis-queue", "c", "SFB_SECRET_0")
    inner = shlex.split(fact.command.split(" | ", 1)[1])[-1]  # what runs inside the container
    fake = tmp_path / "redis-cli"
    fake.write_text(FAKE_REDIS_CLI)
    fake.chmod(0o755)
    oldest = envelope({"task": "t", "kwargs": {"start_time": 1764445000.25}})
    done = subprocess.run(["sh", "-c", inner], input="s3cret", capture_output=True, text=True,
                          check=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin",
                                           "CALLS": str(tmp_path / "calls"), "OLDEST": oldest})
    f = Redis.parse(tuple(done.stdout.splitlines()))
    assert f.info == {"role": "master", "maxmemory_policy": "noeviction"}
    assert f.lengths == {"q1": 2, "q2": 0, "q3": 1}
    assert f.oldest == {"q1": 1764445000.25} and f.errors == ()
    # One LLEN per queue; LINDEX only where LLEN saw a backlog.
    assert [c.split()[5:] for c in (tmp_path / "calls").read_text().splitlines()] == [
        ["INFO"], ["LLEN", "q1"], ["LINDEX", "q1", "-1"], ["LLEN", "q2"], ["LLEN", "q3"],
        ["LINDEX", "q3", "-1"]]


def test_every_script_is_valid_shell(tiny):
    for host in tiny.hosts:
        cs = script.build(tiny, host, SECRETS)
        subprocess.run(["sh", "-n", "-c", unwrap(cs.command)], check=True)


def test_the_host_facts_run_here_and_parse(tiny):
    # A real shell on this machine: the builder's output is what the parsers read.
    cs = script.build(tiny, tiny.host("plain-1"), SECRETS)
    done = subprocess.run(shlex.split(cs.command), capture_output=True, text=True, check=True)
    out = script.split(done.stdout)
    assert out.complete and 0 <= out.remote_seconds < 5
    assert Loadavg.parse(out.get("loadavg").lines) is not None
    assert Nproc.parse(out.get("nproc").lines) >= 1
    total, avail = Meminfo.parse(out.get("meminfo").lines)
    assert 0 < avail <= total
    assert FileNr.parse(out.get("file-nr").lines)[1] > 0
    assert [d.path for d in Df.parse(out.get("df").lines)] == list(DATA_PATHS)


# -- ingestion: the awk, run for real on sample logs (tests/unit/test_status_ingestion.py) ---

def _access(request: str, status: int, upstream: str = "10.231.0.11:9000",
            ustatus: str | None = None, agent: str = "raven-python/6.10.0") -> str:
    """One line of log_format sentryfab (templates/nginx/nginx.conf)."""
    ust = ustatus if ustatus is not None else str(status) if upstream != "-" else "-"
    return (f'10.231.0.1 [05/Dec/2025:08:04:01 +0000] "{request}" {status} 41 rt=0.012 '
            f"upstream={upstream} ustatus={ust} urt=0.012 "
            f'id=5b0c52f7e1a04f4c8bbf6f1e0c6e7a01 "{agent}"')


SDK2 = "sentry.python/2.19.2"


#: What `docker logs` of the nginx container prints on stdout (its access log) ...
NGINX_STDOUT = [
    *[_access("POST /api/2/store/ HTTP/1.1", 200)] * 3,
    _access("POST /api/2/store/?sentry_key=0a1b2c&sentry_version=7 HTTP/1.1", 200,
            agent="Mozilla/5.0"),
    _access("POST /api/store/ HTTP/1.1", 200),                      # legacy: no project
    _access("POST /api/2/store/ HTTP/1.1", 200, agent=r"my \x22quoted\x22 agent"),
    _access("POST /api/2/store HTTP/1.1", 301),                     # no trailing slash
    _access("POST /api/2/store/ HTTP/1.1", 413, upstream="-"),      # nginx refused the body
    _access("POST /api/2/store/ HTTP/1.1", 429),
    _access("POST /api/2/store/ HTTP/1.1", 502,
            upstream="10.231.0.11:9000, 10.231.0.12:9000, 10.231.0.11:9001",
            ustatus="502, 502, 502"),
    _access("POST /api/2/store/ HTTP/1.1", 504),
    _access("POST /api/2/store/ HTTP/1.1", 401),
    _access("POST /api/3/store/ HTTP/1.1", 403),
    _access("POST /api/2/store/ HTTP/1.1", 400),
    _access("POST /api/2/store/ HTTP/1.1", 404),
    _access("POST /api/2/store/ HTTP/1.1", 500),
    _access("POST /api/2/store/ HTTP/1.1", 499, upstream="10.231.0.12:9001", ustatus="-"),
    *[_access("POST /api/2/envelope/ HTTP/1.1", 403, agent=SDK2)] * 2,
    _access("POST /api/10/envelope/ HTTP/1.1", 403, agent=SDK2),
    _access("POST /api/2/envelope/ HTTP/1.1", 502, agent=SDK2),
    _access("POST /api/2/minidump/?sentry_key=0a1b2c HTTP/1.1", 200),
    _access("POST /api/2/unreal/0a1b2c/ HTTP/1.1", 200),
    _access("POST /api/2/security/?sentry_key=0a1b2c HTTP/1.1", 201),
    _access("POST /api/2/csp-report/?sentry_key=0a1b2c HTTP/1.1", 201),
    _access("POST /api/2/events/9f0c1d2e/attachments/ HTTP/1.1", 403, agent=SDK2),
    _access("POST /api/2/spans/ HTTP/1.1", 403, agent=SDK2),        # a route 9.1.2 lacks
    # Not ingestion: the web API, Flash's policy file, health checks, garbage.
    _access("GET /api/0/projects/ HTTP/1.1", 200, agent="Mozilla/5.0"),
    _access("GET /api/2/crossdomain.xml HTTP/1.1", 200),
    _access("GET /_health/ HTTP/1.1", 200, agent="curl/7.88.1"),
    _access(r"\x16\x03\x01\x02\x00\x01", 400, upstream="-", agent="-"),
]


#: ... and on stderr (its error log: lines with quotes that are not access lines).
NGINX_STDERR = [
    '2025/12/05 08:04:02 [error] 22#22: *9 upstream prematurely closed connection while '
    'reading response header from upstream, client: 10.231.0.1, server: _, request: "POST '
    '/api/2/store/ HTTP/1.1", upstream: "http://10.231.0.11:9000/api/2/store/", host: '
    '"10.231.0.10"',
    "2025/12/05 08:04:03 [error] 22#22: *12 client intended to send too large body: 21000000 "
    'bytes, client: 10.231.0.1, server: _, request: "POST /api/2/store/ HTTP/1.1", host: '
    '"10.231.0.10"',
]


#: Sentry 9.1.2's worker log: the human format (the default), then --logformat json.
WORKER_1_LOG = [
    "08:04:01 [INFO] sentry.plugins.github: apps-not-configured",
    "08:04:02 [ERROR] sentry.errors.events: preprocess.failed.empty "
    "(cache_key=u'e:0f1e2d3c4b5a69788796a5b4c3d2e1f0:2')",
    "08:04:02 [ERROR] sentry.errors.events: preprocess.failed.empty "
    "(cache_key=u'e:1a2b3c4d5e6f708192a3b4c5d6e7f809:2')",
    # Not a missing payload; and a task name that merely contains 'preprocess'.
    "08:04:03 [ERROR] sentry.errors.events: process.failed_delete_raw_event (project_id=2)",
    "08:04:04 [WARNING] celery.worker.job: Task sentry.tasks.store.preprocess_event"
    "[1f0e] raised unexpected: TimeLimitExceeded(65,)",
]


WORKER_2_LOG = [
    '{"cache_key":"e:3c4d:2","event":"process.failed.empty","level":"error",'
    '"name":"sentry.errors.events"}',
    '{"cache_key":"e:5e6f:2","event":"process.failed_raw.empty","level":"error",'
    '"name":"sentry.errors.events"}',
]


#: A stand-in `docker logs --since 60s NAME`: NAME.out on stdout, NAME.err on stderr, then
#: NAME.sleep seconds; no such files: docker's own error, exit 1.
FAKE_DOCKER = r"""#!/bin/sh
[ "$1 $2 $3" = "logs --since 60s" ] || { echo "unexpected: $*" >&2; exit 2; }
f="$LOGS/$4"
[ -e "$f.out" ] || { echo "Error response from daemon: No such container: $4" >&2; exit 1; }
cat "$f.out"; [ ! -e "$f.err" ] || cat "$f.err" >&2
[ ! -e "$f.sleep" ] || sleep "$(cat "$f.sleep")"
"""


#: The timeout of the reads cut off below: the stand-in has printed its lines long before it
#: (`timeout` takes fractions of a second), and it keeps the suite fast.
CUT_S = 0.3


@pytest.fixture
def logs(tmp_path: Path):
    """Write containers' logs for the fake docker; returns run(command) -> stdout lines."""
    (tmp_path / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "docker").chmod(0o755)

    def run(command: str, **files: list[str] | str) -> tuple[str, ...]:
        for name, content in files.items():
            name, _, ext = name.rpartition("_")
            body = content if isinstance(content, str) else "".join(ln + "\n" for ln in content)
            (tmp_path / f"{name.replace('_', '-')}.{ext}").write_text(body)
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True,
                              env={"PATH": f"{tmp_path}:/usr/bin:/bin", "LOGS": str(tmp_path)})
        assert done.stderr == ""
        return tuple(done.stdout.splitlines())

    return run


def test_the_nginx_awk_counts_endpoint_and_status_and_nothing_else(logs):
    out = logs(NginxIngest.command("sentry-nginx-1", 5), sentry_nginx_1_out=NGINX_STDOUT,
               sentry_nginx_1_err=NGINX_STDERR)
    # Header and trailer in place; the pairs in whatever order awk keeps its array.
    assert out[:2] == ("lines 33", "requests 31") and out[-1] == "rc 0"
    assert sorted(out[2:-1]) == sorted([
        "store 200 6", "store 301 1", "store 400 1", "store 401 1", "store 403 1",
        "store 404 1", "store 413 1", "store 429 1", "store 499 1", "store 500 1",
        "store 502 1", "store 504 1", "envelope 403 3", "envelope 502 1", "minidump 200 1",
        "unreal 200 1", "security 201 1", "csp-report 201 1", "attachments 403 1",
        "other 403 1"])
    assert NginxIngest.parse(out) == IngestFacts(
        {"store": {200: 6, 301: 1, 400: 1, 401: 1, 403: 1, 404: 1, 413: 1, 429: 1, 499: 1,
                   500: 1, 502: 1, 504: 1},
         "envelope": {403: 3, 502: 1}, "minidump": {200: 1}, "unreal": {200: 1},
         "security": {201: 1}, "csp-report": {201: 1}, "attachments": {403: 1},
         "other": {403: 1}}, lines=33, requests=31, rc=0, error="")


def test_a_missing_container_and_a_cut_off_read(logs):
    out = logs(NginxIngest.command("sentry-nginx-9", 5))
    assert out == ("lines 1", "requests 0", "rc 1",
                   "error Error response from daemon: No such container: sentry-nginx-9")
    facts = NginxIngest.parse(out)
    assert (facts.rc, facts.cut_off, facts.counts) == (1, False, {})
    out = logs(NginxIngest.command("sentry-nginx-1", CUT_S),
               sentry_nginx_1_out=NGINX_STDOUT[:2], sentry_nginx_1_sleep="5")
    assert out == ("lines 2", "requests 2", "store 200 2", "rc 124")
    assert NginxIngest.parse(out).cut_off


def test_the_worker_awk_counts_missing_payloads_per_container(logs):
    names = ["sentry-worker-1", "sentry-worker-2", "sentry-worker-3"]
    out = logs(WorkerPayloads.command(names, 5), sentry_worker_1_err=WORKER_1_LOG,
               sentry_worker_1_out="", sentry_worker_2_out=WORKER_2_LOG)
    assert out[0] == "sentry-worker-1 preprocess.failed.empty 2"
    assert out[1] == "rc sentry-worker-1 0 5"
    assert sorted(out[2:4]) == ["sentry-worker-2 process.failed.empty 1",
                                "sentry-worker-2 process.failed_raw.empty 1"]
    assert out[4:] == ("rc sentry-worker-2 0 2", "rc sentry-worker-3 1 1", "rc - 0 0")
    facts = WorkerPayloads.parse(out)
    assert facts == PayloadFacts(
        {"sentry-worker-1": {"preprocess.failed.empty": 2},
         "sentry-worker-2": {"process.failed.empty": 1, "process.failed_raw.empty": 1}},
        {"sentry-worker-1": 0, "sentry-worker-2": 0, "sentry-worker-3": 1},
        {"sentry-worker-1": 5, "sentry-worker-2": 2, "sentry-worker-3": 1}, rc=0)
    assert (facts.total(), facts.total("preprocess.failed.empty"), facts.cut_off) == \
        (4, 2, False)


def test_a_worker_read_cut_off_keeps_what_it_counted(logs):
    out = logs(WorkerPayloads.command(["sentry-worker-2", "sentry-worker-1"], CUT_S),
               sentry_worker_2_out=WORKER_2_LOG, sentry_worker_1_out=WORKER_1_LOG,
               sentry_worker_1_sleep="5")
    # sentry-worker-2 read whole; sentry-worker-1's lines up to the cut-off, under '-'.
    assert sorted(out[:2]) == ["sentry-worker-2 process.failed.empty 1",
                               "sentry-worker-2 process.failed_raw.empty 1"]
    assert out[2:] == ("rc sentry-worker-2 0 2", "- preprocess.failed.empty 2", "rc - 124 5")
    facts = WorkerPayloads.parse(out)
    assert facts.cut_off and facts.rc == 124 and facts.total() == 4
    assert facts.counts["-"] == {"preprocess.failed.empty": 2}


def test_classified_by_status_class_and_by_cause(logs):
    ing = ingestion.classify(NginxIngest.parse(logs(
        NginxIngest.command("sentry-nginx-1", 5), sentry_nginx_1_out=NGINX_STDOUT)))
    assert ing == Ingestion(
        total=27, classes={"2xx": 10, "3xx": 1, "4xx": 12, "5xx": 4},
        causes={"missing_endpoint": 5, "too_large": 1, "rate_limited": 1, "web_down": 3,
                "bad_key": 2, "bad_request": 1, "client_gone": 1, "redirected": 1,
                "other_4xx": 1, "other_5xx": 1},
        lacking={"envelope": {403: 3}, "attachments": {403: 1}, "other": {403: 1}})
    assert (ing.errors, ing.error_pct) == (17, 62.96)
    assert ingestion.causes_text(ing) == (
        "endpoint Sentry 9.1.2 lacks 5, web processes down (502/504) 3, bad or revoked key, "
        "or origin not allowed (401/403) 2, too large (413) 1, rate limited (429) 1, "
        "bad request (400) 1, client gave up waiting (499) 1, redirected (3xx) 1, other 4xx 1, "
        "other 5xx 1")
    assert ingestion.statuses_text({403: 3}) == "403"
    assert ingestion.statuses_text({404: 2, 403: 10}) == "403 (10), 404 (2)"
    empty = ingestion.classify(IngestFacts({}))
    assert (empty.total, empty.errors, empty.error_pct) == (0, 0, None)
