"""The lab workload's pure parts: the releases made from the real Sentry image, the store
requests as SDKs send them, the load schedule and statistics, the ids file, the verify SQL
against Sentry's own tables and the DSN (exact strings)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest

from sentryfab import inventory
from sentryfab.errors import RemoteError, UsageError
from sentryfab.lab import load, release, sentry_project, topology

EID = "0123456789abcdef0123456789abcdef"
KEY = "5e1ab5e1ab5e1ab5e1ab5e1ab5e1ab00"


# --- releases made from the real Sentry image -------------------------------------------------

def test_dockerfile():
    assert release.dockerfile("9.1.2-lab2") == (
        "FROM lab/sentry:9.1.2\n"
        'LABEL sentryfab.lab-release="9.1.2-lab2"\n'
    )
    assert release.dockerfile("9.1.1-lab2", base="9.1.1") == (
        "FROM lab/sentry:9.1.1\n"
        'LABEL sentryfab.lab-release="9.1.1-lab2"\n'
    )
    assert release.dockerfile("3", broken=True) == (
        "FROM lab/sentry:9.1.2\n"
        'LABEL sentryfab.lab-release="3"\n'
        "RUN mv /entrypoint.sh /entrypoint-real.sh && printf '%s\\n' '#!/bin/sh' "
        "'case \" $* \" in *\" run web \"*)' "
        "'    echo sentry: this lab release is broken on purpose >&2; exit 1;;' esac "
        "'exec /entrypoint-real.sh \"$@\"' > /entrypoint.sh && chmod 755 /entrypoint.sh\n"
    )


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a b", 'a"b', "a:b", "x" * 129, "a\nFROM x"])
def test_tags_docker_would_refuse_never_reach_a_dockerfile(tag):
    with pytest.raises(UsageError, match="not a Docker tag"):
        release.dockerfile(tag)
    with pytest.raises(UsageError, match="not a Docker tag"):
        release.dockerfile("ok", base=tag)


def test_build_context_and_command():
    data = release.build_context("7")
    assert data == release.build_context("7")  # reproducible
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["Dockerfile"]
        assert tar.extractfile("Dockerfile").read() == release.dockerfile("7").encode()
    assert release.build_command("7") == (
        "docker build --quiet --force-rm --tag lab/sentry:7 -")


def test_releases_are_built_only_where_sentry_runs(tmp_path):
    inv = inventory.parse(topology.inventory_yaml(topology.lab_hosts(2)), tmp_path / "h.yaml")
    assert [h.name for h in release.release_hosts(inv)] == [
        "web-1", "web-2", "worker-1", "worker-2"]


# --- store requests as SDKs send them ---------------------------------------------------------

def test_store_request_is_gzip_json_with_the_dsn_key():
    body = load.event_body(EID, 7, 1714564800.5)
    assert json.loads(gzip.decompress(load.encode_body(body))) == {
        "event_id": EID, "message": "sentryfab lab load event #7", "level": "error",
        "platform": "python", "timestamp": 1714564800.5, "logger": "sentryfab.lab.load",
        "tags": {"load.index": "7"}}
    assert load.encode_body(body) == load.encode_body(body)  # no timestamp in the gzip header
    assert load.auth_header(KEY) == (
        f"Sentry sentry_version=7, sentry_client=sentryfab-lab-load/1.0, sentry_key={KEY}")
    assert load.BODY_HEADERS == {"Content-Type": "application/json",
                                 "Content-Encoding": "gzip",
                                 "User-Agent": "sentryfab-lab-load/1.0"}


def test_dsn_and_owner_commands():
    d = sentry_project.Dsn(KEY, "10.231.0.10", 80, 1)
    assert str(d) == f"http://{KEY}@10.231.0.10/1"
    assert d.store_url == "http://10.231.0.10/api/1/store/"
    assert str(sentry_project.Dsn(KEY, "lb", 8080, 3)) == f"http://{KEY}@lb:8080/3"
    assert sentry_project.createuser_command() == (
        "docker exec --user 999 sentry-web-1 sentry --config /etc/sentryfab/web createuser "
        "--superuser --no-input --no-password --email owner@lab.sentryfab.invalid")
    assert sentry_project.KEY_SQL.format(project=1) == (
        "SELECT public_key FROM sentry_projectkey WHERE project_id = 1 AND status = 0 "
        "ORDER BY id LIMIT 1;\n")


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
        "CREATE TEMP TABLE sentryfab_accepted (event_id text NOT NULL, accepted_at float8 "
        "NOT NULL)\n"
        "    ON COMMIT DROP;\n"
        "COPY sentryfab_accepted FROM STDIN;\n"
        f"{EID}\t1.500000\n"
        f"{'f' * 32}\t2.000000\n"
        "\\.\n"
        "ANALYZE sentryfab_accepted;\n"
        "CREATE TEMP TABLE sentryfab_verified ON COMMIT DROP AS\n"
        "SELECT a.event_id, a.accepted_at, count(m.id) AS stored,\n"
        "       max(extract(epoch FROM n.timestamp) - a.accepted_at) AS lag\n"
        "FROM (SELECT event_id, min(accepted_at) AS accepted_at\n"
        "      FROM sentryfab_accepted GROUP BY event_id) a\n"
        "LEFT JOIN sentry_message m ON m.project_id = 1 AND m.message_id = a.event_id\n"
        "LEFT JOIN nodestore_node n ON n.id = md5('1:' || a.event_id)\n"
        "GROUP BY a.event_id, a.accepted_at;\n"
        "SELECT 'counts', count(*), count(*) FILTER (WHERE stored > 0),\n"
        "       count(*) FILTER (WHERE stored = 0), count(*) FILTER (WHERE stored > 1),\n"
        "       coalesce(greatest(max(lag), 0), 0)\n"
        "FROM sentryfab_verified;\n"
        "SELECT 'missing', event_id, accepted_at FROM sentryfab_verified\n"
        "WHERE stored = 0 ORDER BY accepted_at LIMIT 3;\n"
        "COMMIT;\n"
    )
    assert "project_id = 5 " in load.verify_script([], project_id=5).decode()


def test_psql_command():
    assert load.psql_command("sentry-db-1") == (
        "docker exec -i sentry-db-1 psql -U postgres -d sentry -X -q -A -t -F '|' "
        "-v ON_ERROR_STOP=1")
    assert load.psql_command("labtest-pg", port=15432).endswith(" -p 15432")


def test_parse_verify_output():
    c = load.parse_verify_output(
        "counts|3|1|2|0|0.25\n"
        f"missing|{EID}|1714564800.5\n"
        f"missing|{'f' * 32}|1714564801\n")
    assert (c.accepted, c.stored, c.missing, c.duplicated, c.max_lag) == (3, 1, 2, 0, 0.25)
    assert c.missing_sample == ((EID, 1714564800.5), ("f" * 32, 1714564801.0))
    with pytest.raises(RemoteError, match="unexpected output"):
        load.parse_verify_output("ERROR: relation sentry_message does not exist\n")
