"""Parsers against real check-script outputs captured on the lab (tests/unit/data/status)."""

from __future__ import annotations

import base64
import json
import pickle
import struct
from pathlib import Path

import pytest

from sentryfab.status import parsers, pipeline

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
        ("sentry-cleanup-1", "running", 0, "cron", "1"),
        ("sentry-worker-2", "running", 0, "worker", "1"),
        ("sentry-worker-1", "running", 0, "worker", "1"),
    ]
    assert cs[2].id.startswith("f1f7bb93") and not cs[1].oom_killed


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
    assert f.heartbeats is None and f.oldest == {}


# -- Celery messages on the queue Redis: when was the oldest task's event accepted --------------

def envelope(body: object, pickled: bytes | None = None, **changes: object) -> str:
    """A task message as kombu 3.0's Redis transport pushes it: JSON, the body base64."""
    raw = pickled if pickled is not None else pickle.dumps(body, protocol=2)
    env = {"body": base64.b64encode(raw).decode(), "headers": {},
           "content-type": "application/x-python-serialize", "content-encoding": "binary",
           "properties": {"body_encoding": "base64", "delivery_mode": 2,
                          "delivery_info": {"priority": 0, "exchange": "events.save_event",
                                            "routing_key": "events.save_event"},
                          "delivery_tag": "2c2f4a8e-94a7-4a2b-9a8a-0b6c4d3e2f10"}}
    env.update(changes)
    return json.dumps(env)


TASK = {"task": "sentry.tasks.store.preprocess_event",
        "id": "6f1f3c1e-5d0c-4a51-9c6b-2f1e0f7d9a01", "args": [], "eta": None,
        "kwargs": {"cache_key": "e:4f2d8b0c:1", "start_time": 1764445000.12,
                   "event_id": "4f2d8b0c"}}

#: TASK as Python 2.7.18's cPickle.dumps(TASK, 2) writes it (str keys are SHORT_BINSTRING,
#: the unicode values BINUNICODE, every object memoized with BINPUT), printed there by repr().
PY2_TASK = (
    b"\x80\x02}q\x01(U\x06kwargsq\x02}q\x03(U\x08event_idq\x04X\x08\x00\x00\x004f2d8b0cq\x05"
    b"U\nstart_timeq\x06GA\xdaJ\xd2\xd2\x07\xae\x14U\tcache_keyq\x07X\x0c\x00\x00\x00"
    b"e:4f2d8b0c:1q\x08uU\x04taskq\tU#sentry.tasks.store.preprocess_eventq\nU\x02idq\x0bU$"
    b"6f1f3c1e-5d0c-4a51-9c6b-2f1e0f7d9a01q\x0cU\x04argsq\r]U\x03etaq\x0eNu."
)


def py2_pickle() -> bytes:
    """PY2_TASK built opcode by opcode, in the order cPickle walks Python 2's dicts."""
    memo = iter(range(1, 100))

    def put() -> bytes:
        return pickle.BINPUT + bytes([next(memo)])

    def s(text: str) -> bytes:   # a Python 2 str
        return pickle.SHORT_BINSTRING + bytes([len(text)]) + text.encode() + put()

    def u(text: str) -> bytes:   # a Python 2 unicode
        return pickle.BINUNICODE + struct.pack("<I", len(text)) + text.encode() + put()

    return b"".join([
        pickle.PROTO, b"\x02", pickle.EMPTY_DICT, put(), pickle.MARK,
        s("kwargs"), pickle.EMPTY_DICT, put(), pickle.MARK,
        s("event_id"), u("4f2d8b0c"),
        s("start_time"), pickle.BINFLOAT, struct.pack(">d", 1764445000.12),
        s("cache_key"), u("e:4f2d8b0c:1"), pickle.SETITEMS,
        s("task"), s("sentry.tasks.store.preprocess_event"),
        s("id"), s("6f1f3c1e-5d0c-4a51-9c6b-2f1e0f7d9a01"),
        s("args"), pickle.EMPTY_LIST, s("eta"), pickle.NONE, pickle.SETITEMS, pickle.STOP])


def test_a_python_2_pickle_built_by_hand_is_what_cpickle_writes():
    assert py2_pickle() == PY2_TASK
    assert pickle.loads(PY2_TASK) == TASK  # our own test data: safe to unpickle here


def test_start_time_of_a_python_2_task_message():
    assert pipeline.pickled_number(PY2_TASK, "start_time") == 1764445000.12
    assert pipeline.enqueued_at(envelope(None, PY2_TASK)) == 1764445000.12


def test_start_time_of_python_3_pickles_of_every_protocol():
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        raw = pickle.dumps(TASK, protocol=protocol)
        assert pipeline.pickled_number(raw, "start_time") == 1764445000.12, protocol
    assert pipeline.enqueued_at(envelope(TASK)) == 1764445000.12


def test_a_key_pickled_twice_is_found_through_the_memo():
    # The second 'start_time' is a BINGET of the first (pickle memoizes the one string); the
    # first one's value is None: not the time, look further.
    key = "start_time"
    body = {"a": {key: None}, "b": {key: 1764445000.5}}
    raw = pickle.dumps(body, protocol=2)
    assert raw.count(b"start_time") == 1 and pickle.BINGET in raw
    assert pipeline.pickled_number(raw, key) == 1764445000.5


def test_a_message_that_cannot_be_read_is_unknown_never_an_error():
    whole = envelope(TASK)
    cut = {**json.loads(whole), "body": base64.b64encode(pickle.dumps(TASK, 2)[:60]).decode()}
    for element in [
        whole[:80],                                         # cut by head -c
        json.dumps(cut),                                    # a pickle cut short
        envelope(None, b"\x80\x02\xff\xfe"),                # not a pickle
        json.dumps({**json.loads(whole), "body": "!!"}),    # not base64
        envelope({"kwargs": {"start_time": None}}),         # no time
        envelope({"kwargs": {"start_time": True}}),         # not a time
        envelope({"kwargs": {"start_time": "1764445000"}}), # a string, not a number
        envelope({"kwargs": {}}),
        envelope(TASK, **{"content-type": "application/x-msgpack"}),
        "sentry-lab:event:1234",                            # not a Celery message
        "AUTH failed: WRONGPASS invalid username-password pair",
        "[1, 2]", "null", "",
    ]:
        assert pipeline.enqueued_at(element) is None, element


def test_a_json_serialized_task_message():
    # Celery's json serializer, protocol 1 (a dict) and protocol 2 ([args, kwargs, embed]).
    for body in (TASK, [[], TASK["kwargs"], {}]):
        raw = json.dumps(body).encode()
        assert pipeline.enqueued_at(envelope(None, raw, **{"content-type":
                                                           "application/json"})) == \
            1764445000.12


def test_backlog_with_python_2_messages_an_unreadable_one_and_empty_queues():
    f = parsers.redis(lines("redis-queue-1-backlog", "redis redis-queue"))
    assert f.lengths == {"default": 0, "events.preprocess_event": 3, "events.process_event": 1,
                         "events.save_event": 2, "events.reprocessing.preprocess_event": 0,
                         "events.reprocessing.process_event": 1}
    now = 1795755391.678142536  # the fixture's end, on the host's clock
    # Empty queues (and one drained between LLEN and LINDEX) have no oldest message.
    assert f.oldest == {"events.preprocess_event": pytest.approx(now - 754.5),
                        "events.process_event": None,
                        "events.save_event": pytest.approx(now - 12.25)}
    assert parsers.backlog_ages(f, now) == {"events.preprocess_event": 754.5,
                                            "events.process_event": None,
                                            "events.save_event": 12.2}
    assert f.errors == () and f.info["maxmemory_policy"] == "noeviction"
    # A host clock behind the web hosts' gives 0, not a negative age.
    assert parsers.backlog_ages(f, now - 3600)["events.save_event"] == 0.0


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
