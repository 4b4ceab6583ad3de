"""The lab workload's pure parts: the stand-in's config, auth and event handling, the release
image, the load schedule and statistics, the ids file and the verify SQL (exact strings)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.errors import RemoteError, UsageError
from sentryfab.lab import load, release, topology
from sentryfab.lab.workload import sentry_lab as app

GOLDEN = Path(__file__).resolve().parent / "golden" / "lab" / "web-1" / "web"
EID = "0123456789abcdef0123456789abcdef"
KEY = "5e1ab5e1ab5e1ab5e1ab5e1ab5e1ab00"


# --- the stand-in: configuration ------------------------------------------------------------

def test_config_comes_from_the_rendered_files_pgbouncer_and_both_redis():
    cfg = app.load_config(str(GOLDEN))
    db = cfg.database
    assert (db.host, db.port, db.name, db.user, db.password) == (
        "10.231.0.19", 6432, "sentry", "sentry", "fake-db-password")
    assert (db.connect_timeout, db.conn_max_age) == (5, 60.0)
    assert (cfg.queue.host, cfg.queue.port, cfg.queue.password, cfg.queue.db) == (
        "10.231.0.16", 6379, "fake-redis-password", 0)
    assert [(c.host, c.port, c.password) for c in cfg.cache] == [
        ("10.231.0.15", 6379, "fake-redis-password")]
    assert (cfg.web_host, cfg.web_port, cfg.web_threads, cfg.web_workers) == (
        "10.231.0.11", 9000, 4, 1)
    assert "fake-db-password" not in repr(cfg)  # passwords never reach a log line


def test_executing_sentry_conf_leaves_no_stub_modules_behind():
    app.load_settings(str(GOLDEN / "sentry.conf.py"))
    assert "sentry.conf.server" not in sys.modules


def test_broken_config_files_are_config_errors_naming_the_file(tmp_path):
    (tmp_path / "sentry.conf.py").write_text("DATABASES = {\n")
    (tmp_path / "config.yml").write_text("system.secret-key: x\n")
    with pytest.raises(app.ConfigError, match=r"sentry.conf.py: SyntaxError"):
        app.load_config(str(tmp_path))
    (tmp_path / "sentry.conf.py").write_text("DATABASES = {'default': {'NAME': 'x'}}\n")
    with pytest.raises(app.ConfigError, match=r"DATABASES\['default'\] is incomplete"):
        app.load_config(str(tmp_path))
    with pytest.raises(app.ConfigError, match="no such config folder"):
        app.load_config(str(tmp_path / "nope"))


def test_broker_url_password_is_unquoted_and_the_queue_cluster_is_the_fallback():
    ep = app.parse_redis_url("redis://:p%40ss%2Fw%3Ard@10.0.0.5:6380/2")
    assert (ep.host, ep.port, ep.password, ep.db) == ("10.0.0.5", 6380, "p@ss/w:rd", 2)
    options = {"redis.clusters": {
        "default": {"hosts": {1: {"host": "c2", "port": 1}, 0: {"host": "c1", "port": 2}}},
        "queue": {"hosts": {0: {"host": "q", "port": 3, "password": "pw"}}}}}
    settings = {"DATABASES": {"default": {"HOST": "h", "PORT": "1", "NAME": "n", "USER": "u"}}}
    cfg = app.parse_config(settings, options)
    assert (cfg.queue.host, cfg.queue.port, cfg.queue.password) == ("q", 3, "pw")
    assert [c.host for c in cfg.cache] == ["c1", "c2"]
    with pytest.raises(app.ConfigError, match="redis.clusters.default.hosts"):
        queue_only = {"redis.clusters": {"queue": options["redis.clusters"]["queue"]}}
        app.parse_config(settings, queue_only)


def test_bind_address():
    assert app.parse_bind("10.231.0.11:9001") == ("10.231.0.11", 9001)
    for bad in ("10.231.0.11", ":9000", "h:0", "h:x"):
        with pytest.raises(app.ConfigError):
            app.parse_bind(bad)


# --- the stand-in: the store endpoint -------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    (f"Sentry sentry_key={KEY}, sentry_version=7, sentry_client=raven-python/6.0",
     {"sentry_key": KEY, "sentry_version": "7", "sentry_client": "raven-python/6.0"}),
    (f"sentry sentry_version=7,sentry_key={KEY}", {"sentry_version": "7", "sentry_key": KEY}),
    (f"  Sentry   sentry_key = {KEY} ,  junk ,", {"sentry_key": KEY}),
    (f"Bearer sentry_key={KEY}", {}),
    (f"sentry_key={KEY}", {}),
    ("", {}),
    (None, {}),
])
def test_parse_auth(header, expected):
    assert app.parse_auth(header) == expected


def test_sentry_key_from_header_then_query_and_its_shape():
    assert app.sentry_key(f"Sentry sentry_key={KEY}") == KEY
    assert app.sentry_key(None, f"sentry_key={KEY}&sentry_version=7") == KEY
    assert app.sentry_key("Sentry sentry_version=7") is None
    assert app.valid_key(KEY)
    assert not app.valid_key("abc") and not app.valid_key(None)


def test_event_ids_are_normalized_or_refused():
    assert app.normalize_event_id(EID.upper()) == EID
    assert app.normalize_event_id("01234567-89ab-cdef-0123-456789abcdef") == EID
    for bad in ("zz", EID[:-1], "{" + EID + "}", 12, None, f"urn:uuid:{EID}"):
        with pytest.raises(app.BadEvent, match="event_id must be"):
            app.normalize_event_id(bad)


def test_parse_event():
    assert app.parse_event(json.dumps({"event_id": EID.upper(), "message": "m"}).encode()) == {
        "event_id": EID, "message": "m"}
    generated = app.parse_event(b'{"message": "no id"}')["event_id"]
    assert len(generated) == 32 and int(generated, 16) >= 0  # Sentry assigns one
    for body, why in ((b"{bad", "not valid JSON"), (b"[1]", "JSON object"),
                      (b'{"x": NaN}', "NaN is not a JSON value"), (b"\xff\xfe\x00", "JSON"),
                      (b'{"event_id": "nope"}', "event_id")):
        with pytest.raises(app.BadEvent, match=why):
            app.parse_event(body)


def test_decode_body():
    import gzip
    import zlib

    assert app.decode_body(gzip.compress(b"{}"), "gzip") == b"{}"
    assert app.decode_body(zlib.compress(b"{}"), "deflate") == b"{}"
    assert app.decode_body(b"{}", None) == b"{}"
    with pytest.raises(app.BadEvent, match="not valid gzip"):
        app.decode_body(b"{}", "gzip")
    with pytest.raises(app.BadEvent, match="unsupported"):
        app.decode_body(b"{}", "br")


def test_queue_message_round_trips_to_the_insert_row():
    at = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    event = {"event_id": EID, "message": "héllo \\u0000 is text here"}
    raw = app.queue_message(event, 42, at)
    assert json.loads(raw) == {"event_id": EID, "project_id": 42,
                               "received_at": "2024-05-01T12:00:00.123456+00:00", "event": event}
    eid, project, received, payload = app.event_row(raw)
    assert (eid, project, received) == (EID, 42, "2024-05-01T12:00:00.123456+00:00")
    assert json.loads(payload) == event


@pytest.mark.parametrize("body", [
    b'{"m": "nul \\u0000"}', b'{"m": "\\\\\\u0000"}', b'{"m": "\\ud800"}', b'{"m": 1e400}'])
def test_events_postgres_could_never_store_are_refused_up_front(body):
    with pytest.raises(app.BadEvent):
        app.queue_message(app.parse_event(body), 1, datetime.now(UTC))


def test_worker_ids():
    assert app.worker_ids("web-2:abc", 1) == ["web-2:abc"]
    assert app.worker_ids("w", 3) == ["w.0", "w.1", "w.2"]


# --- the stand-in: command lines ------------------------------------------------------------

def test_lab_command_line():
    cmd = app.parse_lab_cli(["web", "--config", "/etc/sentryfab/web", "--bind", "a:1",
                             "--threads", "8"])
    assert (cmd.role, cmd.config, cmd.bind, cmd.threads) == ("web", "/etc/sentryfab/web",
                                                              "a:1", 8)
    cmd = app.parse_lab_cli(["worker", "--config", "c", "--name", "w1", "--concurrency", "2"])
    assert (cmd.role, cmd.name, cmd.concurrency) == ("worker", "w1", 2)
    with pytest.raises(SystemExit):
        app.parse_lab_cli(["web"])  # --config is required


def test_sentrys_own_command_line():
    cmd = app.parse_sentry_cli(["--config", "/etc/sentryfab/web", "run", "web", "--bind",
                                "10.0.0.1:9000", "--workers", "1"])
    assert (cmd.role, cmd.config, cmd.bind, cmd.workers) == ("web", "/etc/sentryfab/web",
                                                              "10.0.0.1:9000", 1)
    assert app.parse_sentry_cli(["--config", "c", "run", "worker", "-c", "4"]).concurrency == 4
    assert app.parse_sentry_cli(["--config", "c", "run", "cron"]).role == "cron"
    assert app.parse_sentry_cli(["--config", "c", "upgrade", "--noinput"]).role == "migrate"
    assert app.parse_sentry_cli(["--config", "c", "run", "web", "--upgrade"]).upgrade


@pytest.mark.parametrize("argv", [
    ["run", "web"],                                             # no --config: ~/.sentry
    ["--config", "c", "run", "web", "--threads", "4"],          # not an option of Sentry's
])
def test_sentry_command_lines_real_sentry_would_not_run_right_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        app.parse_sentry_cli(argv)
    assert e.value.code == 2


# --- the release image ----------------------------------------------------------------------

def test_dockerfile():
    assert release.dockerfile("24.1.0-lab") == (
        "FROM lab/base:1\n"
        'LABEL sentryfab.lab-release="24.1.0-lab"\n'
        'ENV SENTRY_LAB_VERSION="24.1.0-lab"\n'
        "COPY sentry_lab.py /opt/sentry-lab/sentry_lab.py\n"
        "COPY sentry /usr/local/bin/sentry\n"
        'CMD ["sentry", "--help"]\n'
    )
    assert release.dockerfile("3", broken=True) == (
        "FROM lab/base:1\n"
        'LABEL sentryfab.lab-release="3"\n'
        'ENV SENTRY_LAB_VERSION="3"\n'
        "ENV SENTRY_LAB_BROKEN=1\n"
        "COPY sentry_lab.py /opt/sentry-lab/sentry_lab.py\n"
        "COPY sentry /usr/local/bin/sentry\n"
        'CMD ["sentry", "--help"]\n'
    )


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a b", 'a"b', "a:b", "x" * 129, "a\nFROM x"])
def test_tags_docker_would_refuse_never_reach_a_dockerfile(tag):
    with pytest.raises(UsageError, match="not a Docker tag"):
        release.dockerfile(tag)


def test_build_context_and_command():
    data = release.build_context("7", app=b"print('app')\n")
    assert data == release.build_context("7", app=b"print('app')\n")  # reproducible
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["Dockerfile", "sentry", "sentry_lab.py"]
        assert members["sentry"].mode == 0o755 and members["sentry_lab.py"].mode == 0o755
        digest = release.app_digest(b"print('app')\n")
        assert tar.extractfile("Dockerfile").read() == \
            release.dockerfile("7", digest=digest).encode()
        assert f'LABEL sentryfab.lab-app="{digest}"' in release.dockerfile("7", digest=digest)
        wrapper = tar.extractfile("sentry").read().decode()
    assert wrapper.endswith('exec python3 /opt/sentry-lab/sentry_lab.py sentry "$@"\n')
    assert release.build_command("7") == (
        "docker build --quiet --force-rm --tag lab/sentry:7 -")


def test_the_shipped_program_is_the_one_in_the_package():
    with tarfile.open(fileobj=io.BytesIO(release.build_context("1"))) as tar:
        assert tar.extractfile("sentry_lab.py").read() == Path(app.__file__).read_bytes()


# --- load: schedule and statistics ----------------------------------------------------------

def test_open_loop_schedule():
    assert load.schedule(4, 1) == [0.0, 0.25, 0.5, 0.75]
    assert load.schedule(2.5, 2) == [0.0, 0.4, 0.8, 1.2, 1.6]
    assert load.planned_requests(0.1, 1) == 1
    assert load.planned_requests(1000, 60) == 60000


@pytest.mark.parametrize("rate, duration, why", [
    (0, 10, "must be positive"), (10, -1, "must be positive"), (20000, 3600, "at most")])
def test_schedule_bounds(rate, duration, why):
    with pytest.raises(UsageError, match=why):
        load.schedule(rate, duration)


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [load.percentile(values, p) for p in (0, 1, 50, 90, 99, 100)] == [
        1.0, 1.0, 50.0, 90.0, 99.0, 100.0]
    assert load.percentile([0.2], 99) == 0.2
    assert load.percentile([], 50) == 0.0
    assert load.latency_summary([0.3, 0.1, 0.2, 0.4]) == {
        "p50": 0.2, "p90": 0.4, "p99": 0.4, "max": 0.4}
    assert load.latency_summary([]) == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}


def test_longest_gap_includes_the_edges_of_the_run():
    assert load.longest_gap([1.0, 1.5, 4.0, 4.2], 0.0, 5.0) == (2.5, 1.5, 4.0)
    assert load.longest_gap([0.1, 0.2], 0.0, 3.0) == (2.8, 0.2, 3.0)
    assert load.longest_gap([], 0.0, 3.0) == (3.0, 0.0, 3.0)


def test_failure_reasons():
    import http.client

    assert load.classify(TimeoutError()) == "timeout"
    assert load.classify(ConnectionRefusedError()) == "connection refused"
    assert load.classify(http.client.RemoteDisconnected()) == "connection reset"
    assert load.classify(http.client.BadStatusLine("x")) == "bad response"
    assert load.classify(OSError("no route")) == "connection error"


def test_ids_file_round_trip_and_errors():
    text = load.ids_text([(EID, 1714564800.5), ("f" * 32, 1714564801.25)], "run\nat 10/s")
    assert text == (f"# run\n# at 10/s\n{EID}\t1714564800.500000\n"
                    f"{'f' * 32}\t1714564801.250000\n")
    assert load.parse_ids(text) == [(EID, 1714564800.5), ("f" * 32, 1714564801.25)]
    with pytest.raises(UsageError, match="ids:3: expected"):
        load.parse_ids(f"{EID}\t1\n\n'; DROP TABLE events; --\t1\n", "ids")


def test_default_url_is_the_lab_nginx(tmp_path):
    text = topology.inventory_yaml(topology.role_hosts())
    inv = inventory.parse(text, tmp_path / "hosts.yaml")
    assert load.default_url(inv) == "http://10.231.0.10/api/1/store/"


# --- verify ---------------------------------------------------------------------------------

def test_verify_script():
    script = load.verify_script([(EID, 1.5), ("f" * 32, 2.0)], sample=3).decode()
    assert script == (
        "BEGIN;\n"
        "CREATE TEMP TABLE sentryfab_accepted (event_id uuid NOT NULL, accepted_at float8 "
        "NOT NULL)\n"
        "    ON COMMIT DROP;\n"
        "COPY sentryfab_accepted FROM STDIN;\n"
        f"{EID}\t1.500000\n"
        f"{'f' * 32}\t2.000000\n"
        "\\.\n"
        "ANALYZE sentryfab_accepted;\n"
        "CREATE TEMP TABLE sentryfab_verified ON COMMIT DROP AS\n"
        "SELECT a.event_id, a.accepted_at, count(e.event_id) AS stored,\n"
        "       max(e.stored_at - e.received_at) AS lag\n"
        "FROM (SELECT event_id, min(accepted_at) AS accepted_at\n"
        "      FROM sentryfab_accepted GROUP BY event_id) a\n"
        "LEFT JOIN events e ON e.event_id = a.event_id\n"
        "GROUP BY a.event_id, a.accepted_at;\n"
        "SELECT 'counts', count(*), count(*) FILTER (WHERE stored > 0),\n"
        "       count(*) FILTER (WHERE stored = 0), count(*) FILTER (WHERE stored > 1),\n"
        "       coalesce(extract(epoch FROM max(lag)), 0)\n"
        "FROM sentryfab_verified;\n"
        "SELECT 'missing', event_id, accepted_at FROM sentryfab_verified\n"
        "WHERE stored = 0 ORDER BY accepted_at LIMIT 3;\n"
        "COMMIT;\n"
    )


def test_psql_command():
    assert load.psql_command("sentry-db-1") == (
        "docker exec -i sentry-db-1 psql -U postgres -d sentry -X -q -A -t -F '|' "
        "-v ON_ERROR_STOP=1")
    assert load.psql_command("labtest-pg", port=15432).endswith(" -p 15432")


def test_parse_verify_output():
    c = load.parse_verify_output(
        "counts|3|1|2|0|0.25\n"
        f"missing|01234567-89ab-cdef-0123-456789abcdef|1714564800.5\n"
        f"missing|{'f' * 8}-ffff-ffff-ffff-{'f' * 12}|1714564801\n")
    assert (c.accepted, c.stored, c.missing, c.duplicated, c.max_lag) == (3, 1, 2, 0, 0.25)
    assert c.missing_sample == ((EID, 1714564800.5), ("f" * 32, 1714564801.0))
    with pytest.raises(RemoteError, match="unexpected output"):
        load.parse_verify_output("ERROR: relation events does not exist\n")


def test_backoff_doubles_is_cut_short_by_sigterm_and_says_how_long_it_failed():
    import threading

    stop = threading.Event()
    b = app.Backoff(stop, first=0.001, cap=0.004)
    assert b.reset() is None  # nothing had failed
    for _ in range(4):
        b.wait()
    assert b.delay == 0.004
    assert b.reset() > 0 and b.delay == 0.001
    stop.set()
    with pytest.raises(app.Stopping):
        b.wait()


def test_throttle_lets_one_line_through_and_counts_the_rest():
    t = app.Throttle(every=60)
    assert [t.ready(), t.ready(), t.ready()] == [0, None, None]
    t.last -= 61
    assert t.ready() == 2
