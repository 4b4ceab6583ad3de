"""Per-host evaluation and cluster findings, from real outputs captured on the lab."""

from __future__ import annotations

import functools
from pathlib import Path

from sentryfab import inventory
from sentryfab.inventory import Host
from sentryfab.status import cluster, thresholds
from sentryfab.status.checks import Answer, evaluate_host, unreachable
from sentryfab.status.facts.docker import Docker
from sentryfab.status.model import HostStatus
from sentryfab.status.script import split

DATA = Path(__file__).parent / "data" / "status"
BASE = (DATA / "hosts.yaml").read_text()
# The outputs were captured while the lab's machine (2 CPUs, shared by 40 lab hosts and the
# test runner) was at a load of 8-16: without this every host would be critical for it.
QUIET = "thresholds: {load_per_cpu: [null, null]}\n"
HEALTHY = {"nginx-1": "nginx-1", "web-1": "web-1", "web-2": "web-2", "worker-1": "worker-1",
           "worker-2": "worker-2", "redis-cache-1": "redis-cache-1",
           "redis-queue-1": "redis-queue-1", "db-1": "db-1", "db-2": "db-2",
           "pgbouncer-1": "pgbouncer-1", "scale-1": "scale-1"}


@functools.cache
def inv(extra: str = QUIET, **role_thresholds: str) -> inventory.Inventory:
    """The captured lab's inventory, plus top-level YAML and per-role `thresholds` (flow).
    Parsed once per set of arguments: an Inventory is frozen, and nothing here changes one."""
    text = BASE
    for role, levels in role_thresholds.items():
        role = role.replace("_", "-")
        start = text.index(f"  {role}: {{")
        end = text.index("}\n", start)
        text = text[:end] + f", thresholds: {levels}" + text[end:]
    return inventory.parse(text + extra, DATA / "hosts.yaml")


def text(name: str) -> str:
    return (DATA / f"{name}.out").read_text()


def answer(stdout: str, extra_ms: float = 5.0) -> Answer:
    remote = split(stdout).remote_seconds or 0.0
    return Answer(stdout, 0, None, remote + extra_ms / 1000, 0.030)


def check(i, host: str, stdout: str, prev=None, now=1000.0) -> HostStatus:
    st, _ = evaluate_host(i, i.host(host), answer(stdout), prev, now)
    return st


def messages(st: HostStatus) -> list[tuple[str, str]]:
    return [(p.severity, p.message) for p in st.problems]


def cluster_of(i, outputs: dict[str, str]) -> tuple[dict[str, HostStatus], object]:
    statuses = [check(i, host, text(name)) for host, name in outputs.items()]
    view = cluster.analyse(i, statuses)
    return {s.host.name: s for s in statuses}, view


# -- one host ------------------------------------------------------------------------------------

def test_every_healthy_host_has_no_problem():
    i = inv()
    for host, name in HEALTHY.items():
        assert messages(check(i, host, text(name))) == [], host


def test_host_metrics():
    st = check(inv(), "scale-1", text("scale-1"))
    m = st.metrics["host"]
    assert (m["load1"], m["load5"], m["cpus"], m["load_per_cpu"]) == (6.62, 9.79, 2, 4.89)
    assert m["mem_pct"] == 6.5 and m["fds_open"] == 3822 and m["fds_pct"] == 0.15
    assert m["data_disk_pct"] == 34.2 and m["log_disk_pct"] == 34.2
    assert m["ssh_ms"] == 5.0 and m["connect_ms"] == 30.0 and m["reachable"] == 1
    assert "containers" not in st.facts  # no roles: no Docker check


def test_load_with_the_default_levels():
    st = check(inv(""), "scale-1", text("scale-1"))
    assert messages(st) == [("critical", "load per CPU (5 min, 2 CPUs) 4.89 (critical > 4.00)")]


def test_disk_on_one_filesystem_is_one_problem():
    st = check(inv("thresholds: {load_per_cpu: [null, null], disk_pct: [20, 30]}\n"),
               "scale-1", text("scale-1"))
    assert messages(st) == [("critical", "disk use of /var/lib/sentryfab and /var/log/sentryfab "
                                         "34% (critical > 30%), 72 GB free")]


def test_a_stopped_web_process_is_reported_once_by_name():
    st = check(inv(), "web-1", text("web-1-web2-stopped"))
    assert messages(st) == [("critical", "sentry-web-2 exited (exit code 0)")]
    assert st.metrics["web"] == {"processes": 2, "processes_up": 1, "health_ms": 7.3,
                                 "containers": 2, "containers_running": 1, "restarts": None}


def test_a_failing_health_check_on_a_running_process():
    broken = text("web-1").replace("9001/_health/ 200", "9001/_health/ 503")
    st = check(inv(), "web-1", broken)
    assert messages(st) == [("critical", "web process :9001 (sentry-web-2) /_health/ failed: "
                                         "HTTP 503")]


def test_restarts_since_the_last_sample():
    i = inv()
    first, sample = evaluate_host(i, i.host("worker-2"), answer(text("worker-2")), None, 1000)
    assert first.metrics["worker"]["restarts"] is None  # nothing to compare with yet
    bumped = text("worker-2").replace('"RestartCount":0', '"RestartCount":3', 1)
    st, _ = evaluate_host(i, i.host("worker-2"), answer(bumped), sample, 1010)
    name = Docker.parse(split(bumped).get(Docker.name).lines)[0].name
    assert messages(st) == [("critical", f"{name} restarts since last check 3 "
                                         "(critical > 2)")]
    assert st.metrics["worker"]["restarts"] == 3
    # A replaced container (new id) starts counting again: its own restarts only.
    sample["containers"][name][0] = "some-older-container-id"
    st, _ = evaluate_host(i, i.host("worker-2"), answer(text("worker-2")), sample, 1020)
    assert messages(st) == [] and st.metrics["worker"]["restarts"] == 0


def test_unexpected_cron_is_critical_on_the_host_running_it():
    st = check(inv(), "worker-2", text("worker-2-second-cron"))
    assert messages(st) == [("critical", "unexpected container sentry-cron-1 running (role cron "
                                         "is not assigned to worker-2)")]


def test_docker_engine_down():
    i = inv()
    host = Host("worker-9", "10.231.0.100", roles=("worker",))
    st, _ = evaluate_host(i, host, answer(text("worker-nodocker")), None, 1000)
    assert messages(st) == [("critical", "Docker engine not answering: Cannot connect to the "
                             "Docker daemon at unix:///var/run/docker.sock. Is the docker daemon "
                             "running?")]


def test_redis_wrong_password():
    st = check(inv(), "redis-queue-1", text("redis-queue-1-wrong-password"))
    assert messages(st) == [("critical", "Redis not answering: AUTH failed: WRONGPASS invalid "
                                         "username-password pair or user is disabled.")]


def test_redis_queue_memory_against_a_lowered_level():
    i = inv(redis_queue="{memory_pct: [0.01, 50]}")
    st = check(i, "redis-queue-1", text("redis-queue-1"))
    m = st.metrics["redis-queue"]
    assert m["maxmemory"] == 2147483648 and m["memory_pct"] == 0.08 and m["holds_payloads"] == 1
    assert messages(st) == [("warning", "payload memory (1.6 MB of maxmemory 2.1 GB) 0.08% "
                                        "(warning > 0.01%): when full, web refuses new events")]


def with_memory(name: str, used: int) -> str:
    return text(name).replace("used_memory:1641000", f"used_memory:{used}")


def test_payload_memory_levels():
    # 2 GiB maxmemory: 70% and 85% of it are the default levels on a payload Redis.
    gib2 = 2147483648
    for used, expected in [
        (int(gib2 * 0.69), []),
        (int(gib2 * 0.75), [("warning", "payload memory (1.6 GB of maxmemory 2.1 GB) 75% "
                                        "(warning > 70%): when full, web refuses new events")]),
        (int(gib2 * 0.90), [("critical", "payload memory (1.9 GB of maxmemory 2.1 GB) 90% "
                                         "(critical > 85%): when full, web refuses new events")]),
    ]:
        assert messages(check(inv(), "redis-queue-1", with_memory("redis-queue-1", used))) \
            == expected, used
    # The cache is full by design: no level on its memory.
    cache = text("redis-cache-1")
    used = next(ln for ln in cache.splitlines() if ln.startswith("used_memory:"))
    full = cache.replace(used, "used_memory:1073741824")
    st = check(inv(), "redis-cache-1", full)
    assert st.metrics["redis-cache"]["memory_pct"] == 100.0 and messages(st) == []
    assert st.metrics["redis-cache"]["holds_payloads"] == 0


def test_payload_levels_win_over_the_role_s_defaults_and_lose_to_the_inventory():
    i = inv()
    assert thresholds.levels(i, i.host("redis-queue-1"), "redis-queue")["memory_pct"] == (70, 85)
    assert thresholds.levels(i, i.host("redis-cache-1"), "redis-cache").get("memory_pct") is None
    i = inv(redis_queue="{memory_pct: [80, 95]}")
    assert thresholds.levels(i, i.host("redis-queue-1"), "redis-queue")["memory_pct"] == (80, 95)


def test_a_payload_redis_that_may_evict_is_critical():
    lru = text("redis-queue-1").replace("maxmemory_policy:noeviction",
                                        "maxmemory_policy:allkeys-lru")
    assert messages(check(inv(), "redis-queue-1", lru)) == [
        ("critical", "maxmemory-policy allkeys-lru on a Redis holding event payloads: when "
                     "full it evicts accepted events (set noeviction)")]
    volatile = lru.replace("allkeys-lru", "volatile-ttl")
    assert [s for s, _ in messages(check(inv(), "redis-queue-1", volatile))] == ["critical"]
    # The cache's allkeys-lru is its job.
    assert "maxmemory_policy:allkeys-lru" in text("redis-cache-1")
    assert messages(check(inv(), "redis-cache-1", text("redis-cache-1"))) == []


def test_a_payload_redis_without_maxmemory_grows_until_killed():
    unlimited = text("redis-queue-1").replace("maxmemory:2147483648", "maxmemory:0")
    st = check(inv(), "redis-queue-1", unlimited)
    assert st.metrics["redis-queue"]["memory_pct"] is None
    assert messages(st) == [("warning", "no maxmemory on a Redis holding event payloads: a "
                                        "backlog grows it until the kernel kills it")]


def test_queue_length_and_growth_since_the_last_sample():
    backlog = text("redis-queue-1").replace("@llen sentry-lab:queue\n0", "@llen "
                                            "sentry-lab:queue\n20000")
    prev = {"t": 990.0, "redis": {"redis-queue": {"queue": 0, "rejected": 0}}}
    st = check(inv(), "redis-queue-1", backlog, prev, now=1000.0)
    assert st.metrics["redis-queue"]["queue_length"] == 20000
    assert st.metrics["redis-queue"]["queue_growth_per_s"] == 2000.0
    assert st.metrics["redis-queue"]["worker_heartbeats"] == 4
    assert messages(st) == [("warning", "queue length 20000 (warning > 10000)"),
                            ("critical", "queue growth since last check +2000/s "
                                         "(critical > +1000/s)")]


def test_any_eviction_on_the_payload_redis_is_critical():
    evicted = text("redis-queue-1").replace("evicted_keys:0", "evicted_keys:3")
    assert messages(check(inv(), "redis-queue-1", evicted)) == [
        ("critical", "payloads evicted since Redis started 3 (critical > 0): accepted events "
                     "lost (preprocess.failed.empty)")]
    # Since the last check or not: the loss stays on screen until Redis is restarted.
    prev = {"t": 990.0, "redis": {"redis-queue": {"evicted": 3, "rejected": 0}}}
    st = check(inv(), "redis-queue-1", evicted, prev)
    assert [s for s, _ in messages(st)] == ["critical"]
    assert st.metrics["redis-queue"]["evicted_since_last"] == 0


def test_evictions_on_the_cache_are_a_warning_while_they_happen():
    cache = text("redis-cache-1")
    evicting = cache.replace("evicted_keys:0", "evicted_keys:424936")
    # A first look has nothing to compare with: evictions long ago are no news.
    st, sample = evaluate_host(inv(), inv().host("redis-cache-1"), answer(cache), None, 1000)
    assert messages(st) == [] and sample["redis"]["redis-cache"]["evicted"] == 0
    st = check(inv(), "redis-cache-1", evicting, sample, now=1010)
    assert st.metrics["redis-cache"]["evicted_since_last"] == 424936
    assert messages(st) == [
        ("warning", "keys evicted since last check 424936 (warning > 0): the cache is smaller "
                    "than what Sentry keeps in it; events are lost if payloads are still "
                    "stored here")]
    # The same count on the payload Redis is an event loss.
    queue = text("redis-queue-1").replace("evicted_keys:0", "evicted_keys:424936")
    assert messages(check(inv(), "redis-queue-1", queue)) == [
        ("critical", "payloads evicted since Redis started 424936 (critical > 0): accepted "
                     "events lost (preprocess.failed.empty)")]


def test_backlog_age_of_the_oldest_task():
    st = check(inv(), "redis-queue-1", text("redis-queue-1-backlog"))
    m = st.metrics["redis-queue"]
    assert (m["queue_length"], m["backlog_age_s"]) == (7, 754.5)
    assert st.facts["backlog"] == {"events.preprocess_event": 754.5,
                                   "events.process_event": None, "events.save_event": 12.2}
    assert messages(st) == [
        ("warning", "backlog age of events.preprocess_event 13 min (warning > 5 min): workers "
                    "are behind; an event's payload expires 60 min after it was accepted")]
    assert st.notes == ["backlog age of events.process_event unknown: its oldest message is "
                        "not a Celery task with a start_time"]
    st = check(inv(redis_queue="{backlog_age_s: [60, 600]}"), "redis-queue-1",
               text("redis-queue-1-backlog"))
    assert [s for s, _ in messages(st)] == ["critical"]


def test_backlog_age_is_measured_on_the_queue_host_s_clock():
    # The operator's clock (`now`) is a day off: the age is the same.
    a = check(inv(), "redis-queue-1", text("redis-queue-1-backlog"), now=1000.0)
    b = check(inv(), "redis-queue-1", text("redis-queue-1-backlog"), now=1795841791.0)
    assert a.metrics["redis-queue"]["backlog_age_s"] == \
        b.metrics["redis-queue"]["backlog_age_s"] == 754.5


def test_backlog_age_of_empty_queues_is_0_and_of_unreadable_ones_unknown():
    st = check(inv(), "redis-queue-1", text("redis-queue-1-celery-keys"))
    assert st.metrics["redis-queue"]["backlog_age_s"] == 0.0 and st.facts["backlog"] == {}
    assert messages(st) == [] and st.notes == []
    only_unreadable = text("redis-queue-1-celery-keys").replace(
        "@llen events.process_event\n0\n",
        '@llen events.process_event\n1\n@oldest events.process_event\n{"body": "gAJ9\n\n')
    st = check(inv(), "redis-queue-1", only_unreadable)
    assert st.metrics["redis-queue"]["backlog_age_s"] is None
    assert st.facts["backlog"] == {"events.process_event": None}
    assert messages(st) == [] and len(st.notes) == 1


def test_rejected_connections_count_since_the_last_sample():
    prev = {"t": 990.0, "redis": {"redis-cache": {"rejected": 0}}}
    st = check(inv(), "redis-cache-1", text("redis-cache-1").replace(
        "rejected_connections:0", "rejected_connections:7"), prev)
    assert messages(st) == [("warning", "connections rejected since last check 7 "
                                        "(warning > 0)")]


def test_pgbouncer_pools_and_paused_database():
    st = check(inv(), "pgbouncer-1", text("pgbouncer-1"))
    m = st.metrics["pgbouncer"]
    assert (m["cl_active"], m["cl_waiting"], m["sv_idle"], m["maxwait_s"]) == (21, 0, 2, 0)
    assert st.facts["pgb_targets"] == {"sentry": ("10.231.0.17", "5432")}
    paused = text("pgbouncer-1").replace("|0|2|0|0\n", "|0|2|1|0\n")
    assert messages(check(inv(), "pgbouncer-1", paused)) == [
        ("warning", "database sentry is PAUSED (a switchover in progress, or one left paused: "
                    "RESUME it)")]


def test_pgbouncer_wrong_password():
    st = check(inv(), "pgbouncer-1", text("pgbouncer-1-wrong-password"))
    assert messages(st) == [("critical", 'PgBouncer admin console not answering: psql: error: '
                             'connection to server at "10.231.0.19", port 6432 failed: FATAL:  '
                             'SASL authentication failed')]


def test_db_missing_container_output():
    st = check(inv(), "db-2", text("db-2").replace(
        text("db-2")[text("db-2").index("@@ db\n"):text("db-2").index("@@ end")],
        text("db-missing-container")[:text("db-missing-container").index("@@ end")]))
    assert ("critical", "PostgreSQL not answering: Error response from daemon: No such "
                        "container: sentry-db-9") in messages(st)


def test_script_cut_off():
    st, _ = evaluate_host(inv(), inv().host("scale-1"),
                          Answer("@@ loadavg\n1 1 1 1/1 1\n", None, "timed out after 20 s",
                                 20.0, None), None, 1000)
    assert ("critical", "status check did not finish: timed out after 20 s") in messages(st)


def test_unreachable_is_critical():
    st = unreachable(Host("scale-3", "10.231.0.102"), "connection to 10.231.0.102:22 refused "
                                                      "(is sshd running on that port?)", 0.01)
    assert st.severity == "critical" and not st.reachable
    assert messages(st) == [("critical", "unreachable: connection to 10.231.0.102:22 refused "
                                         "(is sshd running on that port?)")]


# -- the cluster ---------------------------------------------------------------------------------

def test_healthy_cluster():
    hosts, view = cluster_of(inv(), HEALTHY)
    assert view.primary == "db-1" and view.replicas == ["db-2"] and not view.split_brain
    assert view.cron_hosts == ["worker-1"] and view.queue_length == 0
    assert view.problems == [] and all(not h.problems for h in hosts.values())
    assert hosts["db-2"].metrics["db"]["replication_lag_bytes"] == 0
    assert hosts["pgbouncer-1"].metrics["pgbouncer"]["points_at_primary"] == 1


def test_replay_paused_replica_lags_and_says_so():
    hosts, view = cluster_of(inv(), {**HEALTHY, "db-1": "db-1-replay-paused",
                                     "db-2": "db-2-replay-paused"})
    assert messages(hosts["db-2"]) == [
        ("warning", "WAL replay is paused (SELECT pg_wal_replay_resume() resumes it)"),
        ("critical", "replication lag 23 MB (critical > 16 MB)"),
    ]
    assert hosts["db-2"].metrics["db"]["replication_lag_s"] == 3.524
    assert messages(hosts["db-1"]) == [] and view.problems == []


def test_pgbouncer_pointing_at_the_replica():
    hosts, view = cluster_of(inv(), {**HEALTHY, "pgbouncer-1": "pgbouncer-1-points-at-replica"})
    assert messages(hosts["pgbouncer-1"]) == [
        ("critical", "points sentry at db-2 (10.231.0.18), a replica; the primary is db-1 "
                     "(writes fail)")]
    assert hosts["pgbouncer-1"].metrics["pgbouncer"]["points_at_primary"] == 0
    assert [h for h, s in hosts.items() if s.problems] == ["pgbouncer-1"]


def test_two_primaries_are_split_brain():
    hosts, view = cluster_of(inv(), {**HEALTHY, "db-2": "db-1"})
    assert view.split_brain and view.primary is None
    assert [(p.severity, p.message, p.hosts) for p in view.problems] == [
        ("critical", "split-brain: db-1 and db-2 are all primaries, each accepting its own "
                     "writes (stop all but one now; fab db.status shows their timelines)",
         ("db-1", "db-2"))]


def test_no_primary():
    _, view = cluster_of(inv(), {**HEALTHY, "db-1": "db-2"})
    assert [p.message for p in view.problems] == [
        "no primary: every database (db-1, db-2) is a replica, nothing accepts writes"]


def test_second_cron():
    hosts, view = cluster_of(inv(), {**HEALTHY, "worker-2": "worker-2-second-cron"})
    assert view.cron_hosts == ["worker-1", "worker-2"]
    assert [(p.severity, p.message) for p in view.problems] == [
        ("critical", "2 crons running: worker-1 (sentry-cron-1), worker-2 (sentry-cron-1); "
                     "exactly one must run (every scheduled job now runs 2 times)")]
    assert messages(hosts["worker-1"]) == []
    assert [s for s, _ in messages(hosts["worker-2"])] == ["critical"]


def test_no_cron():
    no_cron = "\n".join(ln for ln in text("worker-1").splitlines() if "sentry-cron-1" not in ln)
    statuses = [check(inv(), h, no_cron if h == "worker-1" else text(n))
                for h, n in HEALTHY.items()]
    view = cluster.analyse(inv(), statuses)
    assert [p.message for p in view.problems] == [
        "no cron running: scheduled jobs (and requeueing dead workers' events) have stopped"]


def test_failing_upstream_explained_by_its_web_host():
    hosts, view = cluster_of(inv(), {**HEALTHY, "web-1": "web-1-web2-stopped",
                                     "nginx-1": "nginx-1-web2-stopped"})
    assert messages(hosts["nginx-1"]) == []
    assert hosts["nginx-1"].notes == ["upstream 10.231.0.11:9001 (web-1) down, reported on "
                                      "web-1"]
    assert messages(hosts["web-1"]) == [("critical", "sentry-web-2 exited (exit code 0)")]
    assert view.problems == []  # 1 of 4 web processes down: under the cluster's 30%


def test_failing_upstream_nobody_else_reports_is_nginx_s():
    i = inv()
    st = check(i, "nginx-1", text("nginx-1-web2-stopped"))
    cluster.analyse(i, [st])
    assert messages(st) == [("warning", "upstreams unreachable from nginx 25% (warning > 0%): "
                                        "10.231.0.11:9001 (web-1): connection refused")]


def test_half_finished_rollout_shows_as_version_skew():
    two = text("web-2").replace('"sentryfab.version":"1"', '"sentryfab.version":"2"')
    statuses = [check(inv(), h, two if h == "web-2" else text(n)) for h, n in HEALTHY.items()]
    view = cluster.analyse(inv(), statuses)
    assert [(p.severity, p.message) for p in view.problems] == [
        ("warning", "web runs 2 versions: 1 on web-1; 2 on web-2 (a rollout left half done? "
                    "fab deploy.web finishes it)")]


def test_heartbeats_short_of_running_workers():
    few = text("redis-queue-1").replace("@scan sentry-lab:worker:*\n4", "@scan "
                                        "sentry-lab:worker:*\n3")
    statuses = [check(inv(), h, few if h == "redis-queue-1" else text(n))
                for h, n in HEALTHY.items()]
    view = cluster.analyse(inv(), statuses)
    assert [p.message for p in view.problems] == [
        "3 worker heartbeats in the queue Redis for 4 running worker processes: some workers "
        "are stuck or cannot reach Redis"]


# -- a drain nobody is running -------------------------------------------------------------------

def _drained_nginx(lock: str | None) -> str:
    """nginx-1's captured answer with web-1's ports marked down, the config changed at a
    known time and, when `lock` is not None, the lock host's answer (empty = free)."""
    out = text("nginx-1").replace("10.231.0.11:9000 up web-1", "10.231.0.11:9000 down web-1")
    out = out.replace("10.231.0.11:9001 up web-1", "10.231.0.11:9001 down web-1")
    extra = "@@ nginx-changed\n1796000000\n@@rc 0\n"
    if lock is not None:
        extra += f"@@ deploy-lock\n{lock}\n@@rc 0\n" if lock else "@@ deploy-lock\n@@rc 0\n"
    return out.replace("@@ end ", extra + "@@ end ")


def _nginx_findings(lock: str | None) -> tuple[list[tuple[str, str]], list[str]]:
    i = inv()
    st = check(i, "nginx-1", _drained_nginx(lock))
    cluster.analyse(i, [st])
    return messages(st), st.notes


def test_a_drain_with_the_lock_free_is_a_warning_naming_since_when():
    problems, _ = _nginx_findings("")
    assert problems == [("warning", "2 upstream(s) out of nginx's rotation since "
                                    "2026-11-30 00:53:20Z with no deploy running: "
                                    "10.231.0.11:9000, 10.231.0.11:9001 (an interrupted deploy? "
                                    "`fab deploy.web` or `fab config.push --roles=nginx` puts "
                                    "them back)")]


def test_a_drain_while_a_deploy_holds_the_lock_is_a_note_naming_the_holder():
    holder = ('{"who": "alice", "since": "2026-11-29T08:53:00Z", "action": "deploy", '
              '"message": "", "token": "t"}')
    problems, notes = _nginx_findings(holder)
    assert problems == []
    assert notes == ["drained for a deploy (alice since 2026-11-29T08:53:00Z: deploy): "
                     "10.231.0.11:9000, 10.231.0.11:9001"]


def test_a_drain_when_the_lock_was_not_read_is_only_a_note():
    problems, notes = _nginx_findings(None)
    assert problems == [] and notes == ["drained for a deploy: 10.231.0.11:9000, "
                                        "10.231.0.11:9001"]
