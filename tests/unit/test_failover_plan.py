"""Switchover, failover, rejoin and degrade plans from topologies: exact step lists."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sentryfab.plans.failover import (
    Options,
    describe,
    plan_degrade,
    plan_failover,
    plan_rejoin,
    plan_switchover,
    size,
)
from sentryfab.topology.model import (
    Bouncer,
    BouncerDb,
    Control,
    DbNode,
    Marker,
    Receiver,
    Standby,
    Topology,
)

MiB = 1024 * 1024
A1, A2, A3 = "10.0.0.1", "10.0.0.2", "10.0.0.3"
FENCE = Marker("2026-11-27T03:00:00Z", "alice (Alice <a@x>)", "failover", "db-2")
SWITCH_FENCE = replace(FENCE, action="switchover")
DEGRADED = Marker("2026-11-27T03:00:00Z", "alice", "failover", "db-2")


def primary(name="db-1", address=A1, lsn=0x5000000, tli=1, standbys=(), **kw) -> DbNode:
    return DbNode(name, address, 5432, container="running", has_data=True, in_recovery=False,
                  timeline=tli, current_lsn=lsn, sync_names=kw.pop("sync_names", ""),
                  standbys=tuple(standbys), **kw)


def replica(name="db-2", address=A2, lsn=0x5000000, tli=1, source=A1, **kw) -> DbNode:
    rcv = Receiver("streaming", source, 5432, lsn, 0.1, name.replace("-", "_")) \
        if source else None
    kw.setdefault("replay_paused", "not paused")
    return DbNode(name, address, 5432, container="running", has_data=True,
                  standby_signal=True, in_recovery=True, timeline=tli, receive_lsn=lsn,
                  replay_lsn=lsn, replay_age=0.0, receiver=rcv, **kw)


def stopped(name="db-1", address=A1, state="in production", lsn=0x4F00000, tli=1,
            wal_end=None, **kw) -> DbNode:
    return DbNode(name, address, 5432, container="exited", has_data=True,
                  control=Control(state, lsn, tli), wal_end=wal_end, **kw)


def bouncer(points=A1, paused=False, name="pgbouncer-1") -> Bouncer:
    return Bouncer(name, "10.0.0.9", 6432, databases=(
        BouncerDb("sentry", points, 5432, "sentry", paused, False),))


def topo(*nodes, bouncers=None, synchronous=True) -> Topology:
    return Topology(tuple(nodes), tuple([bouncer()] if bouncers is None else bouncers),
                    synchronous)


def healthy(**kw) -> Topology:
    return topo(primary(standbys=[Standby("db-2", A2, "streaming", "quorum", 0x5000000,
                                          0x5000000, 0x5000000, 0.0)],
                        sync_names='ANY 1 ("db-2")'), replica(), **kw)


# -- switchover --------------------------------------------------------------------------------

def test_switchover_of_a_healthy_synchronous_pair():
    plan = plan_switchover(healthy(), Options(target="db-2"))
    assert not plan.refused
    assert plan.actions() == [
        ("stage_bouncer", "pgbouncer-1"),
        ("degrade", "db-2"),
        ("pause", "pgbouncer-1"),
        ("stop", "db-1"),
        ("fence", "db-1"),
        ("wait_replay", "db-2"),
        ("promote", "db-2"),
        ("commit_bouncer", "pgbouncer-1"),
        ("resume", "pgbouncer-1"),
        ("after_promote", "db-2"),
        ("verify_write", "pgbouncer-1"),
    ]
    assert plan.notes == (
        "db-1 stays stopped and fenced: `fab db.rejoin db-1` makes it a replica of db-2",
        "synchronous replication stays off on db-2 until a replica streams again "
        "(`fab db.rejoin` turns it back on)")
    assert plan.found == (
        "db-1: primary, timeline 1, WAL 0/5000000",
        "db-2: replica, timeline 1, WAL 0/5000000, streaming from db-1, lag 0 B, 0.0 s",
        "pgbouncer-1: sentry -> db-1")


def test_switchover_asynchronous_needs_no_degrade_and_picks_the_replica():
    plan = plan_switchover(healthy(synchronous=False), Options())
    assert plan.target == "db-2"
    assert "degrade" not in [a for a, _ in plan.actions()]


def test_switchover_with_a_third_node_repoints_it_instead_of_degrading():
    t = topo(primary(), replica(), replica("db-3", A3))
    plan = plan_switchover(t, Options(target="db-2"))
    acts = plan.actions()
    assert ("degrade", "db-2") not in acts
    assert acts.index(("repoint_replica", "db-3")) < acts.index(("resume", "pgbouncer-1"))


@pytest.mark.parametrize(("t", "reason"), [
    (topo(primary(), replica(source=None)), "db-2 is not streaming from db-1 (no WAL receiver)"),
    (topo(primary(lsn=0x5000000 + 2 * MiB), replica()),
     "db-2 lags 2.0 MiB behind db-1 (at most 1.0 MiB for a switchover): wait for it to catch up"),
    (topo(primary(), replica(replay_paused="paused")),
     "replay is paused on db-2: select pg_wal_replay_resume() there"),
    (topo(primary(), replica(fenced=FENCE)), "db-2 is fenced"),
    (topo(primary(), replica(), bouncers=[replace(bouncer(), reachable=False, error="timed out")]),
     "pgbouncer-1 is unreachable: every PgBouncer must be paused and repointed"),
    (topo(primary(), replica(tli=2)), "db-2 is on timeline 2, db-1 on 1"),
])
def test_switchover_refusals(t, reason):
    plan = plan_switchover(t, Options(target="db-2"))
    assert plan.refused and not plan.steps
    assert any(r.startswith(reason) for r in plan.refusals), plan.refusals


def test_switchover_cut_between_stop_and_fence_is_recognised_by_the_pause():
    t = topo(stopped(state="shut down", wal_end=0x5000000), replica(),
             bouncers=[bouncer(paused=True)])
    plan = plan_switchover(t, Options(target="db-2"))
    assert plan.notes[0] == "continuing an interrupted switchover to db-2 (pgbouncer-1 paused)"
    assert plan.actions()[:3] == [("stage_bouncer", "pgbouncer-1"), ("fence", "db-1"),
                                  ("degrade", "db-2")]


def test_switchover_without_a_primary_points_at_failover():
    plan = plan_switchover(topo(stopped(), replica()), Options(target="db-2"))
    assert plan.refused
    assert "no running primary" in plan.refusals[0]
    assert "`fab db.failover`" in plan.refusals[0]


def test_switchover_interrupted_after_the_fence_continues_as_a_failover():
    t = topo(stopped(state="shut down", standby_signal=True, fenced=SWITCH_FENCE,
                     wal_end=0x5000000), replica(),
             bouncers=[bouncer(paused=True)])
    plan = plan_switchover(t, Options(target="db-2"))
    assert not plan.refused
    assert plan.kind == "switchover"
    assert plan.notes[0] == ("continuing an interrupted switchover to db-2 (db-1 fenced for "
                             "it, pgbouncer-1 paused)")
    assert plan.actions() == [
        ("stage_bouncer", "pgbouncer-1"), ("degrade", "db-2"), ("promote", "db-2"),
        ("commit_bouncer", "pgbouncer-1"), ("after_promote", "db-2"),
        ("resume", "pgbouncer-1"), ("verify_write", "pgbouncer-1")]


# -- failover ----------------------------------------------------------------------------------

def killed() -> Topology:
    # The primary's container killed; its WAL ends where the replica is (synchronous).
    return topo(stopped(wal_end=0x5000000), replica())


def test_failover_after_the_primary_was_killed():
    plan = plan_failover(killed(), Options(target="db-2"))
    assert not plan.refused and not plan.overridden
    assert plan.actions() == [
        ("stage_bouncer", "pgbouncer-1"),
        ("fence", "db-1"),
        ("degrade", "db-2"),
        ("promote", "db-2"),
        ("commit_bouncer", "pgbouncer-1"),
        ("after_promote", "db-2"),
        ("verify_write", "pgbouncer-1"),
    ]
    assert plan.found[0] == ("db-1: stopped (in production), last checkpoint 0/4F00000 on "
                             "timeline 1")


def test_failover_picks_the_most_advanced_replica():
    t = topo(stopped(wal_end=0x5000000), replica(lsn=0x4FFFF00), replica("db-3", A3))
    assert plan_failover(t, Options()).target == "db-3"


def test_failover_refuses_while_the_primary_still_answers():
    plan = plan_failover(healthy(), Options(target="db-2"))
    assert plan.refusals == (
        "db-1 still reports itself primary (timeline 1): for a planned move use "
        "`fab db.switchover` (--force to go ahead anyway)",)


def test_forced_failover_fences_the_primary_that_still_answers():
    plan = plan_failover(healthy(), Options(target="db-2", force=True))
    assert not plan.refused
    assert plan.overridden == ("db-1 still reports itself primary (timeline 1): for a planned "
                               "move use `fab db.switchover`",)
    assert ("fence", "db-1") in plan.actions()


def test_failover_refuses_a_replica_that_lags_beyond_maximum_lag_on_failover():
    t = topo(stopped(wal_end=0x5000000 + 5 * MiB), replica(source=None))
    plan = plan_failover(t, Options(target="db-2"))
    assert plan.refusals == (
        "db-2 lacks 5.0 MiB of WAL (against the end of db-1's WAL (0/5500000)), more than "
        "maximum_lag_on_failover (1.0 MiB) (--force to go ahead anyway)",)
    assert not plan.steps
    assert not plan_failover(t, Options(target="db-2", max_lag=8 * MiB)).refused


def test_failover_within_the_lag_says_what_is_lost():
    t = topo(stopped(wal_end=0x5000000 + 300 * 1024), replica(), synchronous=False)
    plan = plan_failover(t, Options(target="db-2"))
    assert not plan.refused and plan.lag_bytes == 300 * 1024
    assert ("db-2 lacks 300.0 KiB of WAL (against the end of db-1's WAL (0/504B000)), within "
            "maximum_lag_on_failover (1.0 MiB): replication was asynchronous, so commits in it "
            "may have been acknowledged and are lost") in plan.notes
    sync = plan_failover(replace(t, synchronous=True), Options(target="db-2"))
    assert any(n.endswith("replication was synchronous, so no commit in it was acknowledged "
                          "to a client") for n in sync.notes)
    same = plan_failover(topo(stopped(wal_end=0x5000000), replica()), Options(target="db-2"))
    assert same.lag_bytes == 0 and not any("lacks" in n for n in same.notes)


def test_failover_refuses_when_the_lag_cannot_be_known():
    t = topo(DbNode("db-1", A1, 5432, reachable=False, error="connect timed out"), replica())
    plan = plan_failover(t, Options(target="db-2"))
    assert plan.refusals == (
        "how much WAL db-2 lacks is unknown (no primary to compare with): acknowledged "
        "writes may be lost (--force to go ahead anyway)",)
    forced = plan_failover(t, Options(target="db-2", force=True))
    assert [a for a, _ in forced.actions()][:3] == ["stage_bouncer", "degrade", "promote"]
    assert forced.notes[0].startswith("db-1 is unreachable and cannot be fenced now")


def test_failover_refusal_says_why_the_stopped_primarys_wal_end_is_unknown():
    err = ("pg_waldump: error: could not find file \"000000010000000000000006\": "
           "No such file or directory")
    t = topo(stopped(wal_end_error=err), replica())
    [reason] = plan_failover(t, Options(target="db-2")).refusals
    assert reason == (
        "how much WAL db-2 lacks is unknown (no primary to compare with; the end of db-1's "
        f"WAL could not be read: {err}): acknowledged writes may be lost "
        "(--force to go ahead anyway)")


def test_failover_refusal_names_a_primary_whose_container_runs_but_does_not_answer():
    t = topo(DbNode("db-1", A1, 5432, container="running", has_data=True,
                    sql_error="could not connect to server"), replica())
    [reason] = plan_failover(t, Options(target="db-2")).refusals
    assert reason == (
        "how much WAL db-2 lacks is unknown (no primary to compare with; db-1 does not answer "
        "and its container is running (could not connect to server)): acknowledged writes "
        "may be lost (--force to go ahead anyway)")


def test_failover_refuses_a_replica_on_an_older_timeline():
    t = topo(stopped(tli=3, wal_end=0x5000000), replica(tli=2))
    plan = plan_failover(t, Options(target="db-2"))
    assert any("db-2 is on timeline 2, behind timeline 3 of another host" in r
               for r in plan.refusals)


@pytest.mark.parametrize(("t", "reason"), [
    (topo(stopped(), stopped("db-2", A2)), "db-2 is stopped, not a running replica"),
    (topo(stopped(), replica(fenced=FENCE)), "db-2 is fenced"),
    (topo(stopped(), DbNode("db-2", A2, 5432, reachable=False, error="no route")),
     "db-2 is unreachable: no route"),
])
def test_failover_refusals_force_cannot_override(t, reason):
    plan = plan_failover(t, Options(target="db-2", force=True))
    assert plan.refused and plan.refusals[0].startswith(reason)


def test_failover_to_an_unknown_host_or_with_no_replica():
    assert plan_failover(killed(), Options(target="db-9")).refusals[0].startswith(
        "--to db-9: not a db host of the inventory")
    assert plan_failover(topo(stopped()), Options()).refusals == (
        "no replica answers: there is nothing to promote",)


def test_failover_rerun_after_the_promotion_finishes_what_is_left():
    t = topo(stopped(state="in production", standby_signal=True, fenced=FENCE),
             primary("db-2", A2, tli=2, degraded=DEGRADED), bouncers=[bouncer(points=A1)])
    plan = plan_failover(t, Options(target="db-2"))
    assert not plan.refused
    assert plan.notes[:2] == (
        "db-2 is already the primary (timeline 2): finishing the steps that are still needed",
        "db-1 is already fenced and stopped")
    assert plan.actions() == [("stage_bouncer", "pgbouncer-1"),
                              ("commit_bouncer", "pgbouncer-1"), ("after_promote", "db-2"),
                              ("verify_write", "pgbouncer-1")]


def test_failover_with_everything_done_only_verifies():
    t = topo(stopped(standby_signal=True, fenced=FENCE),
             primary("db-2", A2, tli=2, degraded=DEGRADED), bouncers=[bouncer(points=A2)])
    assert plan_failover(t, Options(target="db-2")).actions() == [
        ("after_promote", "db-2"), ("verify_write", "pgbouncer-1")]


def test_failover_notes_an_unreachable_pgbouncer():
    t = topo(stopped(wal_end=0x5000000), replica(),
             bouncers=[bouncer(), replace(bouncer(name="pgbouncer-2"), reachable=False,
                                          error="timed out")])
    plan = plan_failover(t, Options(target="db-2"))
    assert ("stage_bouncer", "pgbouncer-2") not in plan.actions()
    assert ("pgbouncer-2 is unreachable and still points at the old primary: "
            "`fab config.push --hosts pgbouncer-2` once it is back") in plan.notes


# -- rejoin ------------------------------------------------------------------------------------

def after_failover() -> Topology:
    return topo(stopped(standby_signal=True, fenced=FENCE),
                primary("db-2", A2, tli=2, degraded=DEGRADED), bouncers=[bouncer(points=A2)])


def test_rejoin_of_the_fenced_old_primary():
    plan = plan_rejoin(after_failover(), "db-1", Options())
    assert plan.actions() == [
        ("stop", "db-1"), ("ensure_slot", "db-2"), ("rewind", "db-1"),
        ("standby_config", "db-1"), ("start", "db-1"), ("wait_streaming", "db-1"),
        ("unfence", "db-1"), ("restore_sync", "db-2"), ("wait_sync", "db-2"),
        ("verify_write", "pgbouncer-1")]


def test_rejoin_rebuild_clones_instead_of_rewinding():
    acts = plan_rejoin(after_failover(), "db-1", Options(rebuild=True)).actions()
    assert ("clone", "db-1") in acts and ("rewind", "db-1") not in acts


def test_rejoin_of_a_replica_already_streaming_only_lifts_the_fence():
    t = topo(replica("db-1", A1, tli=2, source=A2, fenced=FENCE),
             primary("db-2", A2, tli=2), synchronous=False)
    plan = plan_rejoin(t, "db-1", Options())
    assert plan.actions() == [("unfence", "db-1"), ("verify_write", "pgbouncer-1")]
    assert plan.notes == ("db-1 already streams from db-2",)


def test_rejoin_with_nothing_to_do():
    plan = plan_rejoin(healthy(), "db-2", Options())
    assert not plan.steps and plan.notes == ("db-2 already streams from db-1", "nothing to do")


def test_rejoin_refuses_a_host_running_as_a_second_primary_unless_forced():
    t = topo(primary("db-1", A1, tli=1), primary("db-2", A2, tli=2))
    assert plan_rejoin(t, "db-1", Options()).refusals == (
        "db-1 runs as a primary (timeline 1) beside db-2 (timeline 2): rejoining discards "
        "whatever it wrote on its own (--force to go ahead anyway)",)
    assert plan_rejoin(t, "db-1", Options(force=True)).actions()[0] == ("stop", "db-1")


@pytest.mark.parametrize(("t", "name", "reason"), [
    (healthy(), "db-1", "db-1 is the primary; `fab db.switchover` moves it"),
    (topo(stopped(), stopped("db-2", A2)), "db-1",
     "no running primary to follow: promote one first (`fab db.failover`)"),
    (healthy(), "db-7", "db-7: not a db host of the inventory"),
])
def test_rejoin_refusals(t, name, reason):
    assert plan_rejoin(t, name, Options()).refusals == (reason,)


# -- degrade -----------------------------------------------------------------------------------

def test_degrade_and_restore():
    lost = topo(primary(sync_names='ANY 1 ("db-2")'), stopped("db-2", A2, standby_signal=True))
    assert plan_degrade(lost, Options()).actions() == [("degrade", "db-1"),
                                                       ("verify_write", "pgbouncer-1")]
    restore = plan_degrade(lost, Options(), restore=True)
    assert restore.refusals == (
        "no replica streams from db-1: with synchronous replication on, every commit would "
        "wait (--force to go ahead anyway)",)
    back = topo(primary(degraded=DEGRADED, sync_names=""), replica())
    assert plan_degrade(back, Options(), restore=True).actions() == [
        ("restore_sync", "db-1"), ("wait_sync", "db-1"), ("verify_write", "pgbouncer-1")]
    assert plan_degrade(back, Options()).notes[0].startswith("db-1 is already degraded")
    assert plan_degrade(healthy(synchronous=False), Options()).refused


# -- the topology's own judgement --------------------------------------------------------------

def test_lag_against_the_primary_and_against_a_stopped_primary():
    t = topo(primary(lsn=0x5000000 + 4096), replica())
    assert (t.lag(t.node("db-2")).bytes, t.lag(t.node("db-2")).basis) == (
        4096, "db-1's current WAL position")
    k = killed()
    assert k.lag(k.node("db-2")).bytes == 0
    assert topo(stopped(), replica()).lag(replica()).bytes is None


def test_problems_name_split_brain_stale_pgbouncer_pause_and_waiting_commits():
    t = topo(primary(tli=1, sync_names='ANY 1 ("db-2")'), primary("db-2", A2, tli=2),
             bouncers=[bouncer(points=A1, paused=True)])
    probs = t.problems()
    assert probs[0] == ("more than one node accepts writes: db-1 (timeline 1), db-2 "
                        "(timeline 2) (split brain)")
    assert "pgbouncer-1: points at db-1, not at the primary db-2" in probs
    assert "pgbouncer-1: paused (clients wait): sentry" in probs
    lone = topo(primary(sync_names='ANY 1 ("db-2")'), stopped("db-2", A2, standby_signal=True))
    assert lone.problems()[-1].startswith("db-1: no synchronous replica connected: commits wait")


def test_describe_and_size():
    assert describe(after_failover())[0] == (
        "db-1: stopped (in production), last checkpoint 0/4F00000 on timeline 1, FENCED by "
        "alice at 2026-11-27T03:00:00Z (failover, new primary db-2)")
    assert [size(x) for x in (0, 1023, 1536, 5 * MiB, None)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "unknown"]


# -- lag across a WAL segment switch (archive_timeout on an idle primary) -----------------------

def _after_switch(primary_lsn: int, sent: int, have: int = 0x5000E88) -> Topology:
    return topo(primary(lsn=primary_lsn, standbys=[Standby("db-2", A2, "streaming", "quorum",
                                                           sent, have, have, None)],
                        sync_names='ANY 1 ("db-2")'), replica(lsn=have))


def test_the_tail_of_a_switched_segment_is_not_lag():
    """Found on the lab: the idle primary at 0/6000000 after archive_timeout switched, the
    replica at the switch record's end, sent everything: 16 MiB "behind" for ever."""
    t = _after_switch(0x6000000, sent=0x5000E88)
    lag = t.lag(t.node("db-2"))
    assert (lag.bytes, lag.basis) == (0, "db-1's current WAL position (past a segment "
                                             "switch, nothing left to send)")
    plan = plan_switchover(t, Options(target="db-2"))
    assert not plan.refused and plan.steps


@pytest.mark.parametrize(("primary_lsn", "sent", "lacks"), [
    (0x6000000, 0x5FFF000, 0x6000000 - 0x5000E88),  # WAL sent the replica does not have
    (0x6000100, 0x5000E88, 0x6000100 - 0x5000E88),  # not at a segment boundary: real WAL
    (0x7000000, 0x5000E88, 0x7000000 - 0x5000E88),  # more than the one segment's tail
])
def test_real_lag_near_a_segment_boundary_is_still_lag(primary_lsn, sent, lacks):
    t = _after_switch(primary_lsn, sent)
    assert t.lag(t.node("db-2")).bytes == lacks
    assert plan_switchover(t, Options(target="db-2")).refused
