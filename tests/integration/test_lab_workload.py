"""The lab's Sentry stand-in on a real lab host, no mocks.

On web-2: the release image built with lab.release, a throwaway PostgreSQL and Redis
(containers named labtest-*, removed at the end with the image and the config folder), the
config files rendered from the real templates and pointed at them, then migrate, web,
worker and cron as production runs them. Events go in over HTTP from this machine and are
counted in PostgreSQL by the verifier.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from sentryfab.configs.context import initial_state
from sentryfab.configs.render import render_all
from sentryfab.inventory import Host, Inventory
from sentryfab.lab import load, release
from sentryfab.lab.workload import sentry_lab as app
from sentryfab.remote import HostSession, Runner
from sentryfab.secrets import Secrets
from sentryfab.shell import join

HOST = "web-2"
PREFIX = "labtest-"
TAG = "labtest"
BROKEN_TAG = "labtest-broken"
PG_PORT, REDIS_PORT, WEB_PORT, BROKEN_PORT = 15432, 16379, 19000, 19001
CFG = "/tmp/labtest-cfg"          # on the lab host (its own /tmp)
MOUNT = "/etc/sentryfab/web"      # where production mounts the web role's config
# Characters that need quoting in BROKER_URL and in YAML: the files must carry them right.
DB_PASSWORD = "labtest-db/p@ss:w%rd"
REDIS_PASSWORD = "labtest-redis/p@ss:w%rd"


@dataclass(repr=False)
class Stack:
    """The test's services on the lab host and how to reach them."""

    inv: Inventory
    runner: Runner
    host: Host
    session: HostSession

    @property
    def url(self) -> str:
        return f"http://{self.host.address}:{WEB_PORT}/api/1/store/"

    def sh(self, command: str, stdin: bytes | None = None, check: bool = True) -> str:
        return self.session.run(command, stdin=stdin, check=check, timeout=120).stdout

    def psql(self, sql: str) -> str:
        argv = ["docker", "exec", "-i", f"{PREFIX}pg", "psql", "-p", PG_PORT, "-U", "postgres",
                "-d", "sentry", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        return self.sh(join(argv), stdin=sql.encode()).strip()

    def redis(self, *args: str | bytes) -> str:
        # The password travels on stdin, never in argv.
        script = ('port=$1; shift; REDISCLI_AUTH=$(cat) exec redis-cli --no-auth-warning '
                  '-h "$0" -p "$port" "$@"')
        argv = ["docker", "exec", "-i", f"{PREFIX}redis", "sh", "-c", script,
                self.host.address, REDIS_PORT, *args]
        return self.sh(join(argv), stdin=REDIS_PASSWORD.encode()).strip()

    def run_container(self, name: str, command: list[str], image: str = TAG,
                      detach: bool = True) -> str:
        argv = ["docker", "run", "--name", PREFIX + name, "--network", "host",
                "--volume", f"{CFG}:{MOUNT}:ro", *(["--detach"] if detach else ["--rm"]),
                f"{release.REPOSITORY}:{image}", *command]
        return self.sh(join(argv))

    def exit_code(self, name: str) -> str:
        return self.sh(join(["docker", "inspect", "--format", "{{.State.ExitCode}}",
                             PREFIX + name])).strip()

    def stored(self, event_id: str) -> int:
        return int(self.psql(f"SELECT count(*) FROM events WHERE event_id = '{event_id}'"))

    def wait_stored(self, event_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stored(event_id):
                return True
            time.sleep(0.5)
        return False

    def verify(self, report: load.LoadReport, wait: float) -> load.VerifyReport:
        assert report.ids_file is not None
        return load.verify(self.runner, self.host, report.ids_file, container=f"{PREFIX}pg",
                           port=PG_PORT, wait=wait, poll=1.0)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _cleanup(s: HostSession) -> None:
    s.run(f"docker ps -aq --filter name=^{PREFIX} | xargs -r docker rm -f >/dev/null; "
          + join(["docker", "rmi", "-f", f"{release.REPOSITORY}:{TAG}",
                  f"{release.REPOSITORY}:{BROKEN_TAG}"]) + " >/dev/null 2>&1; "
          + join(["rm", "-rf", CFG]), timeout=120)


def _configs(inv: Inventory, host: Host) -> dict[str, str]:
    """web-2's sentry.conf.py and config.yml from the real templates, re-pointed at the
    test's PostgreSQL and Redis (which stand where PgBouncer and the two Redis roles are)."""
    names = ("db_password", "redis_password", "sentry_secret_key")
    secrets = Secrets({"db_password": DB_PASSWORD, "redis_password": REDIS_PASSWORD,
                       "sentry_secret_key": "labtest-secret-key"}, "test")
    assert set(names) <= set(secrets.names())
    files = render_all(inv, [host], secrets, initial_state(inv), roles=("web",))[host.name]
    pgbouncer = inv.with_role("pgbouncer")[0].address
    redis = [h.address for h in inv.with_role("redis-cache") + inv.with_role("redis-queue")]
    out = {}
    for f in files:
        text = f.content.replace(f'"{pgbouncer}"', f'"{host.address}"')
        text = text.replace('"6432"', f'"{PG_PORT}"').replace("6379", str(REDIS_PORT))
        for address in redis:
            text = text.replace(f'"{address}"', f'"{host.address}"')
        out[f.file.name] = text
    assert pgbouncer not in out["sentry.conf.py"] and f'"{PG_PORT}"' in out["sentry.conf.py"]
    return out


def _start_services(st: Stack) -> None:
    a = st.host.address
    # Initialized once: a `docker start` after a stop finds its data and just starts.
    init = (f"[ -d /tmp/pg ] || {{ initdb -D /tmp/pg -A trust --auth-host=scram-sha-256 "
            f"-U postgres --no-sync >/dev/null && echo 'host all all {a}/32 scram-sha-256' "
            f">> /tmp/pg/pg_hba.conf; }} && "
            f"exec postgres -D /tmp/pg -c listen_addresses={a} -c port={PG_PORT}")
    st.sh(join(["docker", "run", "--detach", "--name", f"{PREFIX}pg", "--network", "host",
                "--user", "postgres", "lab/base:1", "sh", "-c", init]))
    st.sh(join(["docker", "run", "--detach", "--name", f"{PREFIX}redis", "--network", "host",
                "--user", "redis", "lab/base:1", "redis-server", "--bind", a, "--port",
                REDIS_PORT, "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly",
                "no"]))
    ready = join(["docker", "exec", f"{PREFIX}pg", "pg_isready", "-q", "-p", PG_PORT])
    st.sh(f"for i in $(seq 100); do {ready} && exit 0; sleep 0.1; done; exit 1")
    st.sh(join(["docker", "exec", "-i", f"{PREFIX}pg", "psql", "-q", "-p", PG_PORT, "-U",
                "postgres", "-v", "ON_ERROR_STOP=1"]),
          stdin=(f"CREATE ROLE sentry LOGIN PASSWORD {_sql_literal(DB_PASSWORD)};\n"
                 "CREATE DATABASE sentry OWNER sentry;\n").encode())


def _http(method: str, url: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp
    finally:
        conn.close()


def _wait_healthy(address: str, port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _http("GET", f"http://{address}:{port}/_health/")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"web on {address}:{port} never became healthy"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(lab):
    inv = lab
    host = inv.host(HOST)
    runner = Runner(inv)
    st = Stack(inv, runner, host, runner.session(host))
    _cleanup(st.session)
    try:
        built = release.release(runner, inv, TAG, hosts=[host])
        assert built[0].ok, built[0].error
        _start_services(st)
        for name, text in _configs(inv, host).items():
            st.sh(join(["mkdir", "-p", CFG]) + " && " + join(["cat"]) + " > "
                  + join([f"{CFG}/{name}"]), stdin=text.encode())
        for _ in range(2):  # migrate is idempotent: a second run changes nothing
            st.run_container("migrate", ["sentry", "--config", MOUNT, "upgrade", "--noinput"],
                             detach=False)
        # Sentry's own command lines, as production runs them (with --config).
        st.run_container("web", ["sentry", "--config", MOUNT, "run", "web", "--bind",
                                 f"{host.address}:{WEB_PORT}"])
        st.run_container("worker", ["sentry", "--config", MOUNT, "run", "worker"])
        _wait_healthy(host.address, WEB_PORT)
        yield st
    finally:
        _cleanup(st.session)
        runner.close()


def _auth() -> dict[str, str]:
    return {"X-Sentry-Auth": load.auth_header(), "Content-Type": "application/json"}


def test_health_and_every_answer_name_the_release(stack):
    status, body, resp = _http("GET", f"http://{stack.host.address}:{WEB_PORT}/_health/")
    assert (status, body) == (200, b"ok\n")
    assert resp.getheader("X-Lab-Version") == TAG
    assert "stand-in" in resp.getheader("Server")
    status, body, resp = _http("POST", stack.url, b'{"message": "no auth"}')
    assert status == 401 and resp.getheader("X-Lab-Version") == TAG
    assert _http("POST", stack.url, b"{not json", _auth())[0] == 400
    assert _http("POST", stack.url, b'{"event_id": "nope"}', _auth())[0] == 400


def test_accepted_events_are_stored_exactly_once(stack, tmp_path):
    report = load.run_load(stack.url, 150, 2, ids_dir=tmp_path)
    assert (report.sent, report.accepted, report.failed) == (300, 300, {})
    # The same event sent three times (a client retry, nginx retrying on another process)
    # is one row.
    event_id = uuid.uuid4().hex
    body = json.dumps({"event_id": event_id, "message": "sent three times"}).encode()
    for _ in range(3):
        status, answer, _ = _http("POST", stack.url, body, _auth())
        assert (status, json.loads(answer)) == (200, {"id": event_id})
    assert stack.wait_stored(event_id, 10)
    result = stack.verify(report, wait=15)
    assert result.ok, result.as_record()
    assert (result.counts.accepted, result.counts.stored) == (300, 300)
    assert stack.stored(event_id) == 1


def test_worker_killed_mid_load_loses_nothing(stack, tmp_path):
    box: dict[str, load.LoadReport] = {}
    sender = threading.Thread(target=lambda: box.setdefault(
        "report", load.run_load(stack.url, 200, 4, ids_dir=tmp_path)))
    sender.start()
    time.sleep(1.5)
    stack.sh(join(["docker", "kill", "--signal", "KILL", f"{PREFIX}worker"]))
    time.sleep(1.0)
    stack.sh(join(["docker", "start", f"{PREFIX}worker"]))  # same container: same worker id
    sender.join()
    report = box["report"]
    assert report.accepted == report.sent == 800, report.failed
    result = stack.verify(report, wait=20)
    assert result.ok, result.as_record()


def test_a_restarted_worker_first_stores_what_it_held(stack):
    container_id = stack.sh(join(["docker", "inspect", "--format", "{{.Id}}",
                                  f"{PREFIX}worker"])).strip()
    worker_id = f"{HOST}:{container_id[:12]}"
    stack.sh(join(["docker", "stop", f"{PREFIX}worker"]))
    assert stack.exit_code("worker") == "0"  # SIGTERM: finish the batch, exit cleanly
    # As if it had been killed holding this event: in its processing list, not the queue.
    event = {"event_id": uuid.uuid4().hex, "message": "held by a killed worker"}
    message = app.queue_message(event, 1, app.now_utc())
    stack.redis("LPUSH", app.PROCESSING_PREFIX + worker_id, message.decode())
    stack.sh(join(["docker", "start", f"{PREFIX}worker"]))
    assert stack.wait_stored(event["event_id"], 10)
    assert stack.redis("LLEN", app.PROCESSING_PREFIX + worker_id) == "0"


def test_cron_requeues_the_events_of_a_worker_that_never_came_back(stack):
    ghost = app.PROCESSING_PREFIX + "labtest-ghost"  # no heartbeat key: dead for good
    event = {"event_id": uuid.uuid4().hex, "message": "held by a dead worker"}
    stack.redis("LPUSH", ghost, app.queue_message(event, 1, app.now_utc()).decode())
    stack.run_container("cron", ["sentry", "--config", MOUNT, "run", "cron"])
    assert stack.wait_stored(event["event_id"], 15)
    assert stack.redis("EXISTS", ghost) == "0"
    assert int(stack.psql(f"SELECT count(*) FROM cron_heartbeats WHERE host = '{HOST}'")) >= 1


def test_sigterm_finishes_accepted_requests_and_exits_0(stack, tmp_path):
    box: dict[str, load.LoadReport] = {}
    sender = threading.Thread(target=lambda: box.setdefault(
        "report", load.run_load(stack.url, 100, 3, ids_dir=tmp_path)))
    sender.start()
    time.sleep(1.0)
    stack.sh(join(["docker", "stop", f"{PREFIX}web"]))
    sender.join()
    assert stack.exit_code("web") == "0"
    report = box["report"]
    # Once it stopped accepting, connections are refused (nginx moves those to another
    # process); no request it had accepted was cut off or answered with an error.
    assert set(report.failed) <= {"connection refused"}, report.failed
    assert report.accepted >= 90
    result = stack.verify(report, wait=15)
    assert result.ok, result.as_record()
    stack.sh(join(["docker", "start", f"{PREFIX}web"]))
    _wait_healthy(stack.host.address, WEB_PORT)


def test_a_broken_release_fails_its_health_check(stack):
    built = release.release(stack.runner, stack.inv, BROKEN_TAG, broken=True,
                            hosts=[stack.host])
    assert built[0].ok, built[0].error
    bind = f"{stack.host.address}:{BROKEN_PORT}"
    stack.run_container("web-broken", ["sentry", "--config", MOUNT, "run", "web", "--bind",
                                       bind], image=BROKEN_TAG)
    deadline = time.monotonic() + 10
    while True:
        try:
            status, body, resp = _http("GET", f"http://{bind}/_health/")
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert status == 503 and b"broken release" in body
    assert resp.getheader("X-Lab-Version") == BROKEN_TAG
