"""Parsers against real check-script outputs captured on the lab (tests/unit/data/status)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentryfab.status import parsers

DATA = Path(__file__).parent / "data" / "status"


def out(name: str) -> parsers.Output:
    return parsers.split((DATA / f"{name}.out").read_text())


def lines(name: str, fact: str) -> tuple[str, ...]:
    sec = out(name).get(fact)
    assert sec is not None, f"{name} has no fact {fact!r}"
    return sec.lines


def test_split_finds_every_fact_its_exit_code_and_the_host_side_times():
    o = out("web-1")
    assert list(o.sections) == ["loadavg", "nproc", "meminfo", "file-nr", "df", "docker",
                                "web"]
    assert all(s.rc == 0 for s in o.sections.values())
    assert o.complete
    assert o.started_ns == 1795755373438374114
    assert o.remote_seconds == pytest.approx(0.318106247)


def test_split_keeps_a_failed_fact_and_a_cut_off_one():
    o = parsers.split("@@ docker\nCannot connect\n@@rc 1\n@@ web 9000\n200 0.1\n")
    assert o.get("docker").rc == 1 and o.get("docker").error() == "Cannot connect"
    assert o.get("web 9000").rc is None and not o.complete
    assert o.get("web 9000").error() == "cut off before it finished"
    assert parsers.Section("x", (), 124).error() == "timed out"


def test_host_facts():
    assert parsers.loadavg(lines("scale-1", "loadavg")) == (6.62, 9.79, 10.68)
    assert parsers.nproc(lines("scale-1", "nproc")) == 2
    assert parsers.meminfo(lines("scale-1", "meminfo")) == (24684092 * 1024, 23081620 * 1024)
    assert parsers.file_nr(lines("scale-1", "file-nr")) == (3822, 2466177)
    [data, log] = parsers.df(lines("scale-1", "df"))
    assert data == parsers.Disk("/var/lib/sentryfab", "/var/lib/sentryfab", "/dev/vda",
                                264212084 * 1024, 36420752 * 1024, 69970160 * 1024,
                                "/var/lib/sentryfab")
    assert (log.path, log.device, log.mount) == ("/var/log/sentryfab", "/dev/vda",
                                                 "/var/log/sentryfab")
    assert round(data.pct, 1) == 34.2  # df rounds up to 35%: used / (used + available)


def test_df_of_a_path_not_created_yet_measures_its_parent():
    [d] = parsers.df(("path /var/lib/sentryfab /var/lib",
                      "Filesystem 1024-blocks Used Available Capacity Mounted on",
                      "/dev/sda1 1000 900 100 90% /"))
    assert (d.path, d.measured, d.mount, d.pct) == ("/var/lib/sentryfab", "/var/lib", "/", 90.0)


def test_containers_from_the_engine_api_with_labels_and_restart_counts():
    cs = parsers.containers(lines("worker-1", "docker"))
    assert [(c.name, c.state, c.restarts, c.role, c.version) for c in cs] == [
        ("sentry-cron-1", "running", 0, "cron", "1"),
        ("sentry-worker-2", "running", 0, "worker", "1"),
        ("sentry-worker-1", "running", 0, "worker", "1"),
    ]
    assert cs[1].id.startswith("f1f7bb93") and not cs[1].oom_killed


def test_containers_from_the_docker_cli_format():
    # Where the API socket is not used (DOCKER_HOST set): the same fields, tab-separated.
    line = "\t".join(["/sentry-web-1", "ca91e8ff", "restarting", "4",
                      "2026-11-27T04:16:45.605662225Z", "true", "137", "web", "2"])
    assert parsers.containers((line, '{"message": "No such container: x"}')) == [
        parsers.Container("sentry-web-1", "ca91e8ff", "restarting", 4,
                          "2026-11-27T04:16:45.605662225Z", True, 137, "web", "2")]


def test_a_stopped_web_process_and_its_refused_health_check():
    [c2, c1] = parsers.containers(lines("web-1-web2-stopped", "docker"))
    assert (c2.name, c2.state, c2.running, c2.exit_code) == ("sentry-web-2", "exited", False, 0)
    assert c1.running
    found = parsers.probes(lines("web-1-web2-stopped", "web"))
    down = found["http://10.231.0.11:9001/_health/"]
    assert (down.code, down.ok, down.describe()) == (0, False, "connection refused")
    up = found["http://10.231.0.11:9000/_health/"]
    assert up == parsers.Probe(200, 0.007327, "")


def test_nginx_stub_status_and_upstreams():
    assert parsers.stub_status(lines("nginx-1", "nginx-status")) == {
        "active": 1, "accepts": 1666, "handled": 1666, "requests": 91558, "reading": 0,
        "writing": 1, "waiting": 0}
    ups = parsers.upstreams(lines("nginx-1-web2-stopped", "nginx-upstreams"))
    assert [(u.endpoint, u.name, u.drained, u.probe.ok) for u in ups] == [
        ("10.231.0.11:9000", "web-1", False, True),
        ("10.231.0.11:9001", "web-1", False, False),
        ("10.231.0.12:9000", "web-2", False, True),
        ("10.231.0.12:9001", "web-2", False, True),
    ]
    assert ups[1].probe.describe() == "connection refused"


def test_upstream_marked_down_in_the_config_is_drained():
    [u, v] = parsers.upstreams(("10.0.0.1:9000 down web-9", "10.0.0.1:9001 up -",
                                "http://10.0.0.1:9000/_health/ 200 0.001 0",
                                "http://10.0.0.1:9001/_health/ 000 3.001 28"))
    assert u.drained and u.probe.ok and u.name == "web-9"
    assert not v.drained and v.probe.describe() == "timed out" and v.name == "-"


def test_redis_info_queue_lengths_and_heartbeats():
    f = parsers.redis(lines("redis-queue-1", "redis redis-queue"))
    assert f.info["role"] == "master" and f.info["maxmemory_policy"] == "noeviction"
    assert f.num("maxmemory") == 2147483648 and f.num("maxclients") == 10000
    assert f.num("evicted_keys") == 0 and f.num("rejected_connections") == 0
    assert f.lengths == {"sentry-lab:queue": 0}
    assert f.heartbeats == 4 and f.errors == ()


def test_redis_celery_queue_keys():
    f = parsers.redis(lines("redis-queue-1-celery-keys", "redis redis-queue"))
    assert f.lengths == {"default": 0, "events.preprocess_event": 0, "events.process_event": 0,
                         "events.save_event": 0, "events.symbolicate_event": 0,
                         "post_process_errors": 0}
    assert f.heartbeats is None


def test_redis_wrong_password_is_no_info_and_says_why():
    f = parsers.redis(lines("redis-queue-1-wrong-password", "redis redis-queue"))
    assert f.info == {} and f.lengths == {}
    assert f.errors[0] == ("AUTH failed: WRONGPASS invalid username-password pair or user is "
                           "disabled.")


def test_db_primary_with_its_standby_and_slot():
    f = parsers.db(lines("db-1", "db"))
    assert f.in_recovery is False
    assert f.num("connections") == 3 and f.num("max_connections") == 200
    assert f.num("timeline") == 29 and f.node["lsn"] == "0/1DC11728"
    assert f.standbys == (parsers.Standby("db-2", "10.231.0.18", "streaming", "quorum", 0,
                                          0.002504),)
    assert f.slots == (parsers.Slot("db_2", True, 0),)


def test_db_replica_with_replay_paused():
    f = parsers.db(lines("db-2-replay-paused", "db"))
    assert f.in_recovery is True
    assert f.num("replay_lag_bytes") == 22819760
    assert f.num("replay_age_s") == 3.524284
    assert f.node["replay_paused"] == "paused"
    assert f.node["wal_receiver"] == "streaming 10.231.0.17"
    assert f.standbys == () and f.slots == ()


def test_db_container_missing():
    sec = out("db-missing-container").get("db")
    assert sec.rc == 1 and sec.error() == "Error response from daemon: No such container: " \
                                         "sentry-db-9"
    assert parsers.db(sec.lines).in_recovery is None


def test_pgbouncer_pools_stats_and_databases_by_column_name():
    f = parsers.pgbouncer(lines("pgbouncer-1", "pgbouncer"))
    sentry = next(p for p in f.pools if p["database"] == "sentry")
    assert (sentry["cl_active"], sentry["cl_waiting"], sentry["sv_idle"],
            sentry["pool_mode"]) == ("21", "0", "2", "transaction")
    assert [r["database"] for r in f.stats] == ["pgbouncer", "sentry"]
    assert {r["name"]: r["host"] for r in f.databases} == {"pgbouncer": "",
                                                          "sentry": "10.231.0.17"}
    replica = parsers.pgbouncer(lines("pgbouncer-1-points-at-replica", "pgbouncer"))
    assert {r["name"]: r["host"] for r in replica.databases}["sentry"] == "10.231.0.18"


def test_pgbouncer_wrong_password():
    sec = out("pgbouncer-1-wrong-password").get("pgbouncer")
    assert sec.rc == 2 and "SASL authentication failed" in sec.error()
    assert parsers.pgbouncer(sec.lines).pools == []


def test_docker_engine_down():
    sec = out("worker-nodocker").get("docker")
    assert sec.rc == 1 and sec.error().startswith("Cannot connect to the Docker daemon")
