"""Each fact's parser against the check script's output as data files (tests/unit/data/status):
captured on the lab, or, for the facts those captures lack, made by the fact's own command run
here against stand-ins (make_facts.py). Every fact kind has at least one such test."""

from __future__ import annotations

import base64
import json
import pickle
import struct
from pathlib import Path

import pytest

from sentryfab.status import pipeline, script
from sentryfab.status.facts import base
from sentryfab.status.facts.db import Db, Slot, Standby
from sentryfab.status.facts.docker import Container, Docker
from sentryfab.status.facts.host import Df, Disk, FileNr, Loadavg, Meminfo, Nproc
from sentryfab.status.facts.nginx import NginxStatus, NginxUpstreams
from sentryfab.status.facts.pgbouncer import Pgbouncer
from sentryfab.status.facts.redis import Redis, backlog_ages
from sentryfab.status.facts.web import Probe, WebHealth

DATA = Path(__file__).parent / "data" / "status"


def out(name: str) -> script.Output:
    return script.split((DATA / f"{name}.out").read_text())


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
    o = script.split("@@ docker\nCannot connect\n@@rc 1\n@@ web 9000\n200 0.1\n")
    assert o.get("docker").rc == 1 and o.get("docker").error() == "Cannot connect"
    assert o.get("web 9000").rc is None and not o.complete
    assert o.get("web 9000").error() == "cut off before it finished"
    assert script.Section("x", (), 124).error() == "timed out"


def test_host_facts():
    assert Loadavg.parse(lines("scale-1", "loadavg")) == (6.62, 9.79, 10.68)
    assert Nproc.parse(lines("scale-1", "nproc")) == 2
    assert Meminfo.parse(lines("scale-1", "meminfo")) == (24684092 * 1024, 23081620 * 1024)
    assert FileNr.parse(lines("scale-1", "file-nr")) == (3822, 2466177)
    [data, log] = Df.parse(lines("scale-1", "df"))
    assert data == Disk("/var/lib/sentryfab", "/var/lib/sentryfab", "/dev/vda",
                                264212084 * 1024, 36420752 * 1024, 69970160 * 1024,
                                "/var/lib/sentryfab")
    assert (log.path, log.device, log.mount) == ("/var/log/sentryfab", "/dev/vda",
                                                 "/var/log/sentryfab")
    assert round(data.pct, 1) == 34.2  # df rounds up to 35%: used / (used + available)


def test_df_of_a_path_not_created_yet_measures_its_parent():
    [d] = Df.parse(("path /var/lib/sentryfab /var/lib",
                      "Filesystem 1024-blocks Used Available Capacity Mounted on",
                      "/dev/sda1 1000 900 100 90% /"))
    assert (d.path, d.measured, d.mount, d.pct) == ("/var/lib/sentryfab", "/var/lib", "/", 90.0)


def test_containers_from_the_engine_api_with_labels_and_restart_counts():
    cs = Docker.parse(lines("worker-1", "docker"))
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
    assert Docker.parse((line, '{"message": "No such container: x"}')) == [
        Container("sentry-web-1", "ca91e8ff", "restarting", 4,
                          "2026-11-27T04:16:45.605662225Z", True, 137, "web", "2")]


def test_a_stopped_web_process_and_its_refused_health_check():
    [c2, c1] = Docker.parse(lines("web-1-web2-stopped", "docker"))
    assert (c2.name, c2.state, c2.running, c2.exit_code) == ("sentry-web-2", "exited", False, 0)
    assert c1.running
    found = WebHealth.parse(lines("web-1-web2-stopped", "web"))
    down = found["http://10.231.0.11:9001/_health/"]
    assert (down.code, down.ok, down.describe()) == (0, False, "connection refused")
    up = found["http://10.231.0.11:9000/_health/"]
    assert up == Probe(200, 0.007327, "")


def test_nginx_stub_status_and_upstreams():
    assert NginxStatus.parse(lines("nginx-1", "nginx-status")) == {
        "active": 1, "accepts": 1666, "handled": 1666, "requests": 91558, "reading": 0,
        "writing": 1, "waiting": 0}
    ups = NginxUpstreams.parse(lines("nginx-1-web2-stopped", "nginx-upstreams"))
    assert [(u.endpoint, u.name, u.drained, u.probe.ok) for u in ups] == [
        ("10.231.0.11:9000", "web-1", False, True),
        ("10.231.0.11:9001", "web-1", False, False),
        ("10.231.0.12:9000", "web-2", False, True),
        ("10.231.0.12:9001", "web-2", False, True),
    ]
    assert ups[1].probe.describe() == "connection refused"


def test_upstream_marked_down_in_the_config_is_drained():
    [u, v] = NginxUpstreams.parse(("10.0.0.1:9000 down web-9", "10.0.0.1:9001 up -",
                                "http://10.0.0.1:9000/_health/ 200 0.001 0",
                                "http://10.0.0.1:9001/_health/ 000 3.001 28"))
    assert u.drained and u.probe.ok and u.name == "web-9"
    assert not v.drained and v.probe.describe() == "timed out" and v.name == "-"


def test_redis_info_queue_lengths_and_heartbeats():
    f = Redis.parse(lines("redis-queue-1", "redis redis-queue"))
    assert f.info["role"] == "master" and f.info["maxmemory_policy"] == "noeviction"
    assert f.num("maxmemory") == 2147483648 and f.num("maxclients") == 10000
    assert f.num("evicted_keys") == 0 and f.num("rejected_connections") == 0
    assert f.lengths == {"sentry-lab:queue": 0}
    assert f.heartbeats == 4 and f.errors == ()


def test_redis_celery_queue_keys():
    f = Redis.parse(lines("redis-queue-1-celery-keys", "redis redis-queue"))
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
    f = Redis.parse(lines("redis-queue-1-backlog", "redis redis-queue"))
    assert f.lengths == {"default": 0, "events.preprocess_event": 3, "events.process_event": 1,
                         "events.save_event": 2, "events.reprocessing.preprocess_event": 0,
                         "events.reprocessing.process_event": 1}
    now = 1795755391.678142536  # the fixture's end, on the host's clock
    # Empty queues (and one drained between LLEN and LINDEX) have no oldest message.
    assert f.oldest == {"events.preprocess_event": pytest.approx(now - 754.5),
                        "events.process_event": None,
                        "events.save_event": pytest.approx(now - 12.25)}
    assert backlog_ages(f, now) == {"events.preprocess_event": 754.5,
                                            "events.process_event": None,
                                            "events.save_event": 12.2}
    assert f.errors == () and f.info["maxmemory_policy"] == "noeviction"
    # A host clock behind the web hosts' gives 0, not a negative age.
    assert backlog_ages(f, now - 3600)["events.save_event"] == 0.0


def test_redis_wrong_password_is_no_info_and_says_why():
    f = Redis.parse(lines("redis-queue-1-wrong-password", "redis redis-queue"))
    assert f.info == {} and f.lengths == {}
    assert f.errors[0] == ("AUTH failed: WRONGPASS invalid username-password pair or user is "
                           "disabled.")


def test_db_primary_with_its_standby_and_slot():
    f = Db.parse(lines("db-1", "db"))
    assert f.in_recovery is False
    assert f.num("connections") == 3 and f.num("max_connections") == 200
    assert f.num("timeline") == 29 and f.node["lsn"] == "0/1DC11728"
    assert f.standbys == (Standby("db-2", "10.231.0.18", "streaming", "quorum", 0,
                                          0.002504),)
    assert f.slots == (Slot("db_2", True, 0),)


def test_db_replica_with_replay_paused():
    f = Db.parse(lines("db-2-replay-paused", "db"))
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
    assert Db.parse(sec.lines).in_recovery is None


def test_pgbouncer_pools_stats_and_databases_by_column_name():
    f = Pgbouncer.parse(lines("pgbouncer-1", "pgbouncer"))
    sentry = next(p for p in f.pools if p["database"] == "sentry")
    assert (sentry["cl_active"], sentry["cl_waiting"], sentry["sv_idle"],
            sentry["pool_mode"]) == ("21", "0", "2", "transaction")
    assert [r["database"] for r in f.stats] == ["pgbouncer", "sentry"]
    assert {r["name"]: r["host"] for r in f.databases} == {"pgbouncer": "",
                                                          "sentry": "10.231.0.17"}
    replica = Pgbouncer.parse(lines("pgbouncer-1-points-at-replica", "pgbouncer"))
    assert {r["name"]: r["host"] for r in replica.databases}["sentry"] == "10.231.0.18"


def test_pgbouncer_wrong_password():
    sec = out("pgbouncer-1-wrong-password").get("pgbouncer")
    assert sec.rc == 2 and "SASL authentication failed" in sec.error()
    assert Pgbouncer.parse(sec.lines).pools == []


def test_docker_engine_down():
    sec = out("worker-nodocker").get("docker")
    assert sec.rc == 1 and sec.error().startswith("Cannot connect to the Docker daemon")


# -- the facts the lab captures lack (make_facts.py ran their commands against stand-ins) -----

def test_nginx_ingest_counts_per_endpoint_and_status():
    from sentryfab.status.facts.ingestion import IngestFacts, NginxIngest

    facts = NginxIngest.parse(lines("nginx-1-ingest", NginxIngest.name))
    assert facts == IngestFacts(
        {"store": {200: 6, 301: 1, 400: 1, 401: 1, 403: 1, 404: 1, 413: 1, 429: 1, 499: 1,
                   500: 1, 502: 1, 504: 1},
         "envelope": {403: 3, 502: 1}, "minidump": {200: 1}, "unreal": {200: 1},
         "security": {201: 1}, "csp-report": {201: 1}, "attachments": {403: 1},
         "other": {403: 1}}, lines=33, requests=31, rc=0, error="")
    assert not facts.cut_off


def test_worker_payloads_per_container():
    from sentryfab.status.facts.ingestion import WorkerPayloads

    facts = WorkerPayloads.parse(lines("worker-1-payloads", WorkerPayloads.name))
    assert facts.counts == {"sentry-worker-1": {"preprocess.failed.empty": 2},
                            "sentry-worker-2": {"process.failed.empty": 1,
                                                "process.failed_raw.empty": 1}}
    assert facts.rcs == {"sentry-worker-1": 0, "sentry-worker-2": 0, "sentry-worker-3": 1}
    assert facts.lines == {"sentry-worker-1": 5, "sentry-worker-2": 2, "sentry-worker-3": 1}
    assert (facts.rc, facts.total(), facts.cut_off) == (0, 4, False)


def test_the_cleanup_record():
    from sentryfab.status.facts.cleanup import Cleanup

    facts = Cleanup.parse(lines("worker-1-cleanup", Cleanup.name))
    assert facts.scheduled_since == 1795400000
    assert [(run.started, run.ended, run.exit_code) for run in facts.runs] == [
        (1795496400, 1795497012, 0), (1795582800, 1795583391, 0), (1795669200, 1795669206, 1)]
    assert facts.failed_in_a_row() == 1 and not facts.last.ok


def test_when_nginx_conf_last_changed():
    from sentryfab.status.facts.nginx import NginxChanged

    assert NginxChanged.parse(lines("nginx-1-changed", NginxChanged.name)) == 1795755300
    assert NginxChanged.parse(()) is None and NginxChanged.parse(("stat: cannot stat",)) is None


def test_the_deploy_lock_held_and_free():
    from sentryfab.lockinfo import LockInfo
    from sentryfab.status.facts.lock import DeployLock

    assert DeployLock.parse(lines("nginx-1-lock-held", DeployLock.name)) == LockInfo(
        "alice", "2026-11-27T03:00:00Z", "deploy.web", "hotfix 9.1.2-2", "3f9c2a",
        "ops-laptop", 4242)
    assert DeployLock.parse(lines("nginx-1-lock-free", DeployLock.name)) is None


# -- every fact kind is parsed from a data file --------------------------------------------------

#: Each fact kind and a data file holding its output (the exact tests are above).
ON_DATA = {
    "Loadavg": "scale-1", "Nproc": "scale-1", "Meminfo": "scale-1", "FileNr": "scale-1",
    "Df": "scale-1", "Docker": "worker-1", "WebHealth": "web-1", "NginxStatus": "nginx-1",
    "NginxUpstreams": "nginx-1-web2-stopped", "NginxChanged": "nginx-1-changed",
    "Redis": "redis-queue-1", "Db": "db-1", "Pgbouncer": "pgbouncer-1",
    "NginxIngest": "nginx-1-ingest", "WorkerPayloads": "worker-1-payloads",
    "Cleanup": "worker-1-cleanup", "DeployLock": "nginx-1-lock-held",
    "BackupRecord": "backup-1", "ArchiveStatus": "db-1-archive",
}


def _fact_kinds() -> dict[str, type[base.FactBase]]:
    """Every fact kind the facts package defines (each of its modules imported)."""
    import importlib
    import pkgutil

    from sentryfab.status import facts

    for module in pkgutil.iter_modules(facts.__path__):
        importlib.import_module(f"{facts.__name__}.{module.name}")
    return {kind.__name__: kind for kind in base.FactBase.__subclasses__()}


def test_every_fact_kind_has_a_data_file_its_parser_reads():
    kinds = _fact_kinds()
    assert sorted(kinds) == sorted(ON_DATA), "a fact kind without a data file test (ON_DATA)"
    for name, kind in kinds.items():
        output = out(ON_DATA[name])
        fact = next(n for n in output.sections
                    if n == kind.name or n.startswith(f"{kind.name} "))
        parsed = kind.parse(output.get(fact).lines)
        assert parsed not in (None, [], {}), (name, ON_DATA[name])
