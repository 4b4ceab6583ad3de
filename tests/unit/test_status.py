"""Thresholds, statsd (against a real UDP socket), the local samples, and the summary lines."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.errors import InventoryError, UsageError
from sentryfab.status import cluster, state, statsd, thresholds
from sentryfab.status.model import StatusReport
from sentryfab.status.thresholds import evaluate, fmt, levels, severity_of
from sentryfab.ui import status as status_ui

from .test_status_checks import HEALTHY, check, inv, text

# -- thresholds -----------------------------------------------------------------------------------


def test_the_message_says_what_how_much_and_against_which_level():
    lv = {"replication_lag_bytes": (1_000_000, 16_000_000)}
    p = evaluate("replication_lag_bytes", 48_000_000, lv)
    assert (p.severity, p.message, p.limit) == ("critical",
                                                "replication lag 48 MB (critical > 16 MB)",
                                                16_000_000)
    assert evaluate("replication_lag_bytes", 2_500_000, lv).message == \
        "replication lag 2.5 MB (warning > 1.0 MB)"
    assert evaluate("replication_lag_bytes", 1_000_000, lv) is None  # not above: ok
    assert evaluate("replication_lag_bytes", None, lv) is None       # not measured
    assert evaluate("memory_pct", 99, {}) is None                     # no level set


def test_levels_can_be_turned_off_one_at_a_time():
    assert severity_of(5, (None, 4)) == ("critical", 4)
    assert severity_of(3, (None, 4)) == ("ok", None)
    assert severity_of(9, (1, None)) == ("warning", 1)
    assert severity_of(0, (None, 0)) == ("ok", None)


def test_units():
    assert fmt(93.4, "pct") == "93%" and fmt(2.25, "pct") == "2.2%" and fmt(0.061, "pct") \
        == "0.06%"
    assert fmt(1_500_000_000, "bytes") == "1.5 GB" and fmt(999, "bytes") == "999 B"
    assert fmt(0.4, "s") == "0.4 s" and fmt(48, "s") == "48 s"
    assert fmt(250.4, "ms") == "250 ms" and fmt(-3.5, "per_s") == "-3.5/s"
    assert fmt(2000, "per_s") == "+2000/s" and fmt(None, "pct") == "-"
    assert [fmt(v, "duration") for v in (0, 12.2, 119, 754.5, 1800, 7199, 9000)] == [
        "0 s", "12 s", "119 s", "13 min", "30 min", "120 min", "2.5 h"]


def test_defaults_then_top_level_then_role_then_host():
    text_ = (Path(__file__).parent / "data" / "status" / "hosts.yaml").read_text()
    text_ = text_.replace("  db: {image: lab/base, tag: '1'}",
                          "  db: {image: lab/base, tag: '1', thresholds: "
                          "{replication_lag_s: [5, 10], disk_pct: [60, 70]}}")
    text_ = text_.replace("  db-2: {address: 10.231.0.18, roles: [db]}",
                          "  db-2: {address: 10.231.0.18, roles: [db], vars: "
                          "{thresholds: {replication_lag_s: [1, 2]}}}")
    text_ += "thresholds: {disk_pct: [50, 95], replication_lag_bytes: [1, 2]}\n"
    i = inventory.parse(text_, Path("hosts.yaml"))
    web = levels(i, i.host("web-1"), "host")
    assert web["disk_pct"] == (50, 95) and web["mem_pct"] == (90, 97)
    db1 = levels(i, i.host("db-1"), "db")
    assert db1["replication_lag_s"] == (5, 10) and db1["replication_lag_bytes"] == (1, 2)
    assert db1["restarts"] == (0, 2)  # every role's
    assert levels(i, i.host("db-1"), "host")["disk_pct"] == (60, 70)  # the host's roles' own
    assert levels(i, i.host("db-2"), "db")["replication_lag_s"] == (1, 2)


def test_bad_thresholds_are_all_reported_with_their_place():
    base = (Path(__file__).parent / "data" / "status" / "hosts.yaml").read_text()
    bad = base.replace(
        "  redis-queue: {image: lab/base, tag: '1',",
        "  redis-queue: {thresholds: {memory_pc: [1, 2], evicted_keys: 1, "
        "queue_length: [100, 10]}, image: lab/base, tag: '1',")
    with pytest.raises(InventoryError) as e:
        thresholds.validate(inventory.parse(bad + "thresholds: [1, 2]\n", Path("hosts.yaml")))
    assert e.value.problems == [
        "hosts.yaml: thresholds: must be a mapping of metric: [warning, critical]",
        "hosts.yaml: roles/redis-queue/thresholds/memory_pc: unknown metric 'memory_pc' "
        "(did you mean 'memory_pct'?)",
        "hosts.yaml: roles/redis-queue/thresholds/evicted_keys: must be [warning, critical], "
        "two numbers (null turns one off), got 1",
        "hosts.yaml: roles/redis-queue/thresholds/queue_length: the warning level 100 is above "
        "the critical level 10",
    ]


# -- statsd -----------------------------------------------------------------------------------


def test_lines():
    assert statsd.gauge("sentryfab.host.web-1.load1", 0.25) == ["sentryfab.host.web-1.load1:0.25|g"]
    assert statsd.gauge("a.b", 3.0) == ["a.b:3|g"]
    assert statsd.gauge("a.b", 1_500_000) == ["a.b:1500000|g"]
    # A leading '-' means "subtract" to statsd: a negative gauge is set through zero.
    assert statsd.gauge("a.growth", -12.5) == ["a.growth:0|g", "a.growth:-12.5|g"]
    assert statsd.counter("deploy.web") == "sentryfab.deploy.web:1|c"
    assert statsd.name_part("db.internal:5432") == "db_internal_5432"


def test_packets_stay_under_1400_bytes_and_split_between_lines():
    lines = [f"sentryfab.host.scale-{i}.load_per_cpu:{i}.125|g" for i in range(200)]
    packets = statsd.packets(lines)
    assert len(packets) > 1 and all(len(p) <= 1400 for p in packets)
    assert b"\n".join(packets).decode().split("\n") == lines
    assert len(packets) == len(statsd.packets(lines, 1400))
    # Every packet but the last is as full as the next line allows.
    for p, nxt in zip(packets, packets[1:], strict=False):
        assert len(p) + 1 + len(nxt.split(b"\n")[0]) > 1400
    assert statsd.packets(["x" * 1401, "ok:1|g"]) == [b"ok:1|g"]


def test_target():
    assert statsd.parse_target("statsd.internal:8125") == ("statsd.internal", 8125)
    assert statsd.parse_target("10.0.0.5") == ("10.0.0.5", 8125)
    assert statsd.parse_target("[::1]:9125") == ("::1", 9125)
    with pytest.raises(UsageError):
        statsd.parse_target("host:port")


def _report() -> StatusReport:
    i = inv()
    statuses = [check(i, h, text(n)) for h, n in HEALTHY.items()]
    return StatusReport("lab", statuses, cluster.analyse(i, statuses), 0.5, 1000.0)


def test_every_metric_becomes_a_gauge_named_role_host_metric():
    lines = statsd.gauge_lines(_report())
    assert "sentryfab.host.scale-1.load1:6.62|g" in lines
    assert "sentryfab.host.scale-1.cpus:2|g" in lines
    assert "sentryfab.redis-queue.redis-queue-1.maxmemory:2147483648|g" in lines
    assert "sentryfab.redis-queue.redis-queue-1.worker_heartbeats:4|g" in lines
    assert "sentryfab.db.db-2.replication_lag_bytes:0|g" in lines
    assert "sentryfab.pgbouncer.pgbouncer-1.points_at_primary:1|g" in lines
    assert "sentryfab.web.web-1.processes_up:2|g" in lines
    assert "sentryfab.cluster.lab.primaries:1|g" in lines
    assert "sentryfab.cluster.lab.crons:1|g" in lines
    assert all(line.count("|g") == 1 and line.startswith("sentryfab.") for line in lines)


def test_sent_to_a_real_udp_listener():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(2)
        target = listener.getsockname()
        lines = statsd.gauge_lines(_report())
        sent = statsd.send(target, lines)
        got = [listener.recv(65535) for _ in range(sent)]
        assert sent == len(statsd.packets(lines)) > 1
        assert all(len(p) <= 1400 for p in got)
        assert b"\n".join(got).decode().split("\n") == lines
        assert statsd.count(target, "deploy.web") is None
        assert listener.recv(65535) == b"sentryfab.deploy.web:1|c"


def test_a_counter_never_raises():
    assert statsd.count(None, "deploy.web") is None
    assert "statsd no-such-host.invalid:8125" in statsd.count(("no-such-host.invalid", 8125),
                                                              "deploy.web")


# -- samples kept between rounds ----------------------------------------------------------


def test_samples_are_merged_and_survive_a_garbled_file(tmp_path):
    path = tmp_path / "status" / "lab.json"
    assert state.load(path) == {}
    state.save(path, {"web-1": {"t": 1.0}})
    state.save(path, {"db-1": {"t": 2.0}})
    assert state.load(path) == {"web-1": {"t": 1.0}, "db-1": {"t": 2.0}}
    path.write_text("{not json")
    assert state.load(path) == {}


def test_state_path_is_per_cluster(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert state.state_path("sentry prod") == tmp_path / "sentryfab/status/sentry_prod.json"


# -- what is printed -----------------------------------------------------------------------


def test_one_line_per_problem_hosts_with_the_same_one_share_it():
    # The default load levels, on outputs captured from one busy machine: the same finding on
    # every host, said once.
    i = inventory.parse((Path(__file__).parent / "data" / "status" / "hosts.yaml").read_text(),
                        Path("hosts.yaml"))
    statuses = [check(i, h, text(n)) for h, n in HEALTHY.items()]
    report = StatusReport("lab", statuses, cluster.analyse(i, statuses), 0.5, 1000.0)
    assert status_ui.problem_lines(report).plain == (
        "db-[1-2], nginx-1, pgbouncer-1, redis-cache-1, redis-queue-1, scale-1, web-[1-2], "
        "worker-[1-2] (11 hosts): load per CPU (5 min, 2 CPUs) 4.89 (critical > 4.00)")
    assert status_ui.summary(report).plain == (
        "lab: 11 hosts, 0 ok, 11 critical; primary db-1; 1 cron (worker-1); queue 0; CRITICAL "
        "in 0.50 s")
    assert report.exit_code == 2


def _backlog_report() -> StatusReport:
    i = inv()
    outputs = {**HEALTHY, "redis-queue-1": "redis-queue-1-backlog"}
    statuses = [check(i, h, text(n)) for h, n in outputs.items()]
    return StatusReport("lab", statuses, cluster.analyse(i, statuses), 0.5, 1000.0)


def test_backlog_age_in_the_queue_line_the_summary_json_and_statsd():
    report = _backlog_report()
    queue = next(h for h in report.hosts if h.host.name == "redis-queue-1")
    assert status_ui.role_figures(queue, "redis-queue") == (
        "payloads 1.6 MB of 2.1 GB (0.07%), 22 clients, queue 7, backlog age 13 min")
    assert status_ui.summary(report).plain == (
        "lab: 11 hosts, 10 ok, 1 warning; primary db-1; 1 cron (worker-1); queue 7, backlog "
        "age 13 min; WARNING in 0.50 s")
    rec = report.as_record()
    assert rec["cluster_findings"]["backlog_age_s"] == 754.5
    [q] = [h for h in rec["hosts"] if h["host"] == "redis-queue-1"]
    assert (q["metrics"]["redis-queue"]["backlog_age_s"],
            q["metrics"]["redis-queue"]["holds_payloads"]) == (754.5, 1)
    assert q["problems"][0]["metric"] == "backlog_age_s" and q["problems"][0]["limit"] == 300
    lines = statsd.gauge_lines(report)
    assert "sentryfab.redis-queue.redis-queue-1.backlog_age_s:754.5|g" in lines
    assert "sentryfab.cluster.lab.backlog_age_s:754.5|g" in lines
    # An idle queue says nothing of it.
    healthy = next(h for h in _report().hosts if h.host.name == "redis-queue-1")
    assert status_ui.role_figures(healthy, "redis-queue") == (
        "payloads 1.6 MB of 2.1 GB (0.08%), 26 clients, queue 0")


def test_the_redis_queue_view_shows_each_queue_s_oldest_task():
    from rich.console import Console

    from sentryfab.ui import status_roles

    console = Console(width=200, record=True)
    console.print(status_roles.detail(_backlog_report(), "redis-queue"))
    shown = [" ".join(ln.split()) for ln in console.export_text().splitlines()]
    for row in ["holds event payloads yes", "policy noeviction", "backlog age 13 min",
                "events.preprocess_event 3 (oldest 13 min)",
                "events.process_event 1 (oldest unknown)", "events.save_event 2 (oldest 12 s)",
                "default 0", "events.reprocessing.process_event 1"]:
        assert row in shown, row


def test_summary_of_a_healthy_round():
    assert status_ui.summary(_report()).plain == (
        "lab: 11 hosts, 11 ok; primary db-1; 1 cron (worker-1); queue 0; OK in 0.50 s")


def test_deploys_count_to_the_inventory_s_statsd():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(2)
        host, port = listener.getsockname()
        assert statsd.count_for(f"{host}:{port}", "deploy.web") is None
        assert statsd.count_for(f"{host}:{port}", "rollback.db", ok=False) is None
        assert listener.recv(100) == b"sentryfab.deploy.web:1|c"
        assert listener.recv(100) == b"sentryfab.rollback.db.failed:1|c"
    assert statsd.count_for(None, "deploy.web") is None
    assert statsd.count_for("statsd:port", "deploy.web").startswith("--statsd 'statsd:port'")
