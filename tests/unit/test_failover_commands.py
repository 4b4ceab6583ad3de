"""Failover command builders (exact strings), cluster state from a topology, and how a plan is
executed: undo on failure, timings, audit (with fake steps: no hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.configs.context import ClusterState
from sentryfab.containers import postgres as pg
from sentryfab.plans.failover import Action, Options, Plan, Step
from sentryfab.procedures import failover as procedure
from sentryfab.procedures.failover_steps.context import Run, StepFailed, Undo
from sentryfab.secrets import Secrets
from sentryfab.topology import db_commands as c
from sentryfab.topology.model import DbNode, Marker, Topology
from sentryfab.topology.pgbouncer import ShowDatabases, WriteProbe, admin_console
from sentryfab.topology.state import UnknownPrimary, state_of

REPO = Path(__file__).resolve().parents[2]


def test_fast_stop_is_sigint_then_wait_never_dockers_smart_stop():
    assert c.stop_fast("sentry-db-1", 120) == (
        "st=$(docker inspect --format '{{.State.Status}}' sentry-db-1 2>/dev/null); "
        'if [ "$st" = running ]; then docker kill --signal INT sentry-db-1 >/dev/null && '
        "timeout 120 docker wait sentry-db-1 >/dev/null; "
        'elif [ "$st" = restarting ]; then docker stop --time 5 sentry-db-1 >/dev/null; fi')


def test_fence_writes_the_marker_as_root_in_root_s_folder_and_the_signal_as_postgres():
    assert pg.fence('{"who": "a b"}') == (
        "mkdir -p /var/lib/sentryfab/db-state && chown 0:0 /var/lib/sentryfab/db-state && "
        "chmod 755 /var/lib/sentryfab/db-state && "
        "t=$(mktemp /var/lib/sentryfab/db-state/FENCED.XXXXXX) && "
        "printf '%s\\n' '{\"who\": \"a b\"}' > \"$t\" && chmod 644 \"$t\" && "
        "mv -f \"$t\" /var/lib/sentryfab/db-state/FENCED && "
        "if [ -e /var/lib/sentryfab/db/data/PG_VERSION ]; then "
        "setpriv --reuid=\"$(stat -c %u /var/lib/sentryfab/db/data)\" "
        "--regid=\"$(stat -c %g /var/lib/sentryfab/db/data)\" --clear-groups -- sh -c "
        "'rm -f /var/lib/sentryfab/db/data/standby.signal && "
        "touch /var/lib/sentryfab/db/data/standby.signal'; fi && sync")


def test_deploy_refuses_a_fenced_host():
    assert pg.not_fenced("db-1") == (
        "why=$(for m in /var/lib/sentryfab/db-state/FENCED /var/lib/sentryfab/db/FENCED; do "
        "if [ -f \"$m\" ] && [ ! -L \"$m\" ]; then head -c 2000 \"$m\"; break; fi; done); "
        "if [ -n \"$why\" ]; then printf '%s is fenced (%s): it must not "
        "start as a primary; '\"'\"'fab db.rejoin %s'\"'\"' makes it a replica of the current "
        "primary\\n' db-1 \"$why\" db-1 >&2; exit 3; fi")


def test_admin_console_commands_are_arguments_and_the_password_is_stdin():
    assert admin_console("sentry-pgbouncer-1", "10.0.0.9", 6432, "RELOAD",
                         "SHOW DATABASES") == (
        "timeout 10 docker exec -i sentry-pgbouncer-1 sh -c 'PGPASSWORD=$(cat) exec psql -X -A "
        "-F \"|\" -h \"$1\" -p \"$2\" -U pgbouncer -d pgbouncer -c \"$3\" -c \"$4\"' sh 10.0.0.9 "
        "6432 RELOAD 'SHOW DATABASES'")


def test_write_probe_needs_a_writable_primary():
    cmd = WriteProbe.command("sentry-pgbouncer-1", "10.0.0.9", 6432, "sentry", "sentry")
    assert cmd.endswith("sh 10.0.0.9 6432 sentry sentry 'select '\"'\"'write|'\"'\"' || "
                        "txid_current() || '\"'\"'|'\"'\"' || host(inet_server_addr())'")
    assert "PGPASSWORD=$(cat)" in cmd


def test_show_databases_is_the_admin_console_s_last_command():
    assert ShowDatabases.command("sentry-pgbouncer-1", "10.0.0.9", 6432, "RELOAD") == \
        admin_console("sentry-pgbouncer-1", "10.0.0.9", 6432, "RELOAD", "SHOW DATABASES")


def test_promote_asks_both_questions_in_one_session_and_reads_both_answers():
    assert c.Promote.command("sentry-db-1") == (
        "timeout 10 docker exec --user postgres sentry-db-1 psql -X -A -t -q -v "
        "ON_ERROR_STOP=1 -d postgres -c 'select case when pg_is_in_recovery() then "
        "pg_promote(true, 60)::text else '\"'\"'already'\"'\"' end' -c 'select ('\"'\"'x'\"'\"' || "
        "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int'")
    assert c.Promote.parse("true\n4\n") == ("true", "4")
    assert c.Promote.parse("already\n3\n") == ("already", "3")
    assert c.Promote.parse("false\n") == ("false", "")


def test_container_health_reads_state_restarts_and_the_last_fatal_lines():
    assert c.ContainerHealth.command("sentry-db-1") == (
        "docker inspect --format '{{.State.Status}} {{.RestartCount}}' sentry-db-1 2>/dev/null "
        "|| echo missing 0; docker logs --tail 200 sentry-db-1 2>&1 | grep -E 'FATAL|PANIC' | "
        "tail -n 5; true")
    assert c.ContainerHealth.parse("running 0\n") == c.Health("running", "0", ())
    assert c.ContainerHealth.parse("restarting 4\nFATAL:  a\nFATAL:  b\n") == \
        c.Health("restarting", "4", ("FATAL:  a", "FATAL:  b"))
    assert c.ContainerHealth.parse("") == c.Health("missing", "0", ())


def test_sql_built_from_typed_values():
    assert c.replayed_sql(0x10CE26A0) == \
        "select pg_last_wal_replay_lsn() >= '0/10CE26A0'::pg_lsn"
    assert c.ensure_slots_sql(["db_1"]) == (
        "select pg_create_physical_replication_slot('db_1', true) where not exists "
        "(select from pg_replication_slots where slot_name = 'db_1')")
    assert c.streaming_sql("10.0.0.1") == (
        "select exists (select from pg_stat_wal_receiver where status = 'streaming' and "
        "sender_host = '10.0.0.1')")


def test_wal_file_names_as_postgresql_writes_them():
    mib16 = 16 * 1024 * 1024
    assert pg.wal_file_name(7, 0x3F3E180, mib16) == "000000070000000000000003"
    assert pg.wal_file_name(9, 0x16B374D848, mib16) == "0000000900000016000000B3"
    assert pg.wal_file_name(1, 0x1000000, mib16) == "000000010000000000000001"  # a boundary
    assert pg.wal_file_name(2, 0x16B374D848, 64 * 1024 * 1024) == "00000002000000160000002C"


def test_wal_end_names_the_segment_so_pg_waldump_never_guesses_its_size():
    """In CI pg_waldump once took its segment size from a just-created, all-zero segment
    ("header specifies 0 bytes"): it must be given the start's own file."""
    assert pg.wal_end("lab/base:1", "0/3F3E180", "000000070000000000000003") == (
        "docker run --rm -i --network host --user postgres --entrypoint '' --volume "
        "/var/lib/sentryfab/db:/var/lib/sentryfab/db lab/base:1 sh -c '"
        + pg.PG_PATH + "pg_waldump -p /var/lib/sentryfab/db/data/pg_wal -s \"$1\" \"$2\" "
        "2>&1 | tail -n 5' sh 0/3F3E180 000000070000000000000003")


def test_rewind_always_puts_standby_signal_back():
    cmd = pg.rewind("lab/base:1", "10.0.0.2", 5432)
    assert "rm -f /var/lib/sentryfab/db/data/standby.signal; pg_rewind " in cmd
    assert cmd.endswith("rc=$?; touch /var/lib/sentryfab/db/data/standby.signal; exit $rc' "
                        "sh 10.0.0.2 5432")


# -- cluster state -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_inv():
    return inventory.load(REPO / "tests" / "unit" / "data" / "lab-hosts.yaml")


def _n(name: str, **kw) -> DbNode:
    return DbNode(name, "10.0.0." + name[-1], 5432, **kw)


def test_state_is_the_answering_primary(lab_inv):
    t = Topology((_n("db-1", in_recovery=True, has_data=True),
                  _n("db-2", in_recovery=False, has_data=True, timeline=2,
                     degraded=Marker(who="a"))), synchronous=True)
    assert state_of(t, lab_inv) == ClusterState("db-2", degraded=True)


def test_state_of_a_stopped_cluster_is_the_host_that_would_start_as_primary(lab_inv):
    t = Topology((_n("db-1", has_data=True, standby_signal=True, fenced=Marker()),
                  _n("db-2", has_data=True)))
    assert state_of(t, lab_inv) == ClusterState("db-2")


def test_state_of_an_empty_cluster_is_the_inventorys(lab_inv):
    t = Topology((_n("db-1"), _n("db-2")))
    assert state_of(t, lab_inv) == ClusterState("db-1")


def test_state_unknown_is_an_error_not_a_guess(lab_inv):
    t = Topology((_n("db-1", has_data=True, standby_signal=True, fenced=Marker()),
                  _n("db-2", reachable=False, error="timed out")))
    with pytest.raises(UnknownPrimary, match="cannot tell which db host is the primary"):
        state_of(t, lab_inv)


# -- execution ---------------------------------------------------------------------------------

def _run(plan: Plan) -> Run:
    return Run(runner=None, inv=None, secrets=Secrets({"x": "s3cret"}, "test"),  # type: ignore
               topo=Topology(()), plan=plan, opts=Options(), marker=Marker(), stamp="T")


@pytest.fixture
def fake(monkeypatch):
    """Steps that record what ran; 'stop' and 'pause' register undos; 'wait_replay' fails."""
    ran: list[str] = []
    audited: list[dict] = []
    monkeypatch.setattr(procedure.audit, "record", lambda runner, hosts, rec: audited.append(rec))
    # Who ran it: audit.identity() asks `git config`, a process per line (as test_auditlog.py).
    monkeypatch.setattr(procedure.audit, "identity", lambda: "bob (Bob <b@x>)")

    def step(name, fail=False, undo=None):
        def action(run, st):
            ran.append(f"{name} {st.host}")
            if undo:
                run.undo.append(Undo(undo, st.host, lambda: ran.append(f"undo {undo}"),
                                     kind="resume" if name == "pause" else ""))
            if fail:
                raise StepFailed(f"{st.host}: it broke (password s3cret)")
            return f"{name} ok"
        return action

    actions = {a: step(a) for a in procedure.ACTIONS}
    actions.update(pause=step("pause", undo="RESUME"), stop=step("stop", undo="start db-1"),
                   wait_replay=step("wait_replay", fail=True),
                   promote=step("promote"))
    monkeypatch.setattr(procedure, "ACTIONS", actions)
    return ran, audited


def test_every_action_has_its_step_and_keeps_its_name():
    assert set(procedure.ACTIONS) == set(Action)
    # The names appear in --json output and audit lines.
    assert [a.value for a in Action] == [
        "stage_bouncer", "commit_bouncer", "pause", "resume", "verify_write", "stop", "fence",
        "wait_replay", "promote", "after_promote", "repoint_replica", "degrade", "restore_sync",
        "wait_sync", "ensure_slot", "rewind", "clone", "standby_config", "start",
        "wait_streaming", "unfence"]
    assert f"{Action.WAIT_REPLAY}" == "wait_replay" and Action.PAUSE == "pause"


def test_an_action_without_its_step_is_refused_at_import(monkeypatch):
    monkeypatch.delitem(procedure.ACTIONS, Action.PROMOTE)
    with pytest.raises(AssertionError, match="ACTIONS has no step for the plan action.* "
                                             "promote"):
        procedure._check_actions()


def _plan(*actions: str) -> Plan:
    hosts = {"pause": "pgbouncer-1", "resume": "pgbouncer-1", "stop": "db-1"}
    return Plan("switchover", "db-2", tuple(Step(a, hosts.get(a, "db-2"), a) for a in actions))


def test_a_failure_before_the_promotion_undoes_newest_first(fake):
    ran, audited = fake
    events = []
    report = procedure.execute(_run(_plan("pause", "stop", "wait_replay", "promote", "resume")),
                               [], "", lambda *e: events.append((e[0], e[3].action)))
    assert ran == ["pause pgbouncer-1", "stop db-1", "wait_replay db-2", "undo start db-1",
                   "undo RESUME"]
    assert report.undone == ["db-1: start db-1", "pgbouncer-1: RESUME"]
    assert report.error is not None and "s3cret" not in report.error
    assert report.error.startswith("step 3/5 (wait_replay on db-2) failed: db-2: it broke "
                                   "(password ********); put back: db-1: start db-1; "
                                   "pgbouncer-1: RESUME.")
    assert report.paused_seconds is not None and not report.ok
    assert ("failed", "wait_replay") in events and ("undo", "undo") in events
    assert [r["result"] for r in audited] == ["started", "ok", "ok", "failed", "failed"]


def test_after_the_promotion_only_resume_is_undone(fake, monkeypatch):
    ran, _ = fake
    fails = procedure.ACTIONS["wait_replay"]
    monkeypatch.setitem(procedure.ACTIONS, "wait_replay", procedure.ACTIONS["fence"])
    monkeypatch.setitem(procedure.ACTIONS, "commit_bouncer", fails)

    def promote(run, st):
        run.undo = [u for u in run.undo if u.kind == "resume"]
        ran.append("promote")
        return "promoted"

    monkeypatch.setitem(procedure.ACTIONS, "promote", promote)
    report = procedure.execute(_run(_plan("pause", "stop", "wait_replay", "promote",
                                          "commit_bouncer", "resume")), [], "",
                               lambda *e: None)
    assert ran[-1] == "undo RESUME" and "undo start db-1" not in ran
    assert report.undone == ["pgbouncer-1: RESUME"]


def test_a_clean_run_reports_pause_and_first_write(fake, monkeypatch):
    ran, audited = fake
    monkeypatch.setitem(procedure.ACTIONS, "wait_replay", procedure.ACTIONS["fence"])
    report = procedure.execute(_run(_plan("pause", "stop", "wait_replay", "promote", "resume",
                                          "verify_write")), [], "", lambda *e: None)
    assert report.ok and report.error is None
    assert [s.state for s in report.steps] == ["done"] * 6
    assert report.paused_seconds is not None and report.write_after is not None
    assert audited[-1]["action"] == "db.switchover" and audited[-1]["result"] == "ok"
    # Lines of steps run while paused are written after RESUME, in order.
    assert [r.get("step") for r in audited[1:-1]] == [
        "pause", "stop", "wait_replay", "promote", "resume", "verify_write"]
