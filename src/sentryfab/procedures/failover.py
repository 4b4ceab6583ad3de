"""Switchover, failover, rejoin and degrade: discover, plan, then run the plan step by step.

Under the deploy lock, the cluster is discovered (never assumed), a plan made (pure:
plans/failover.py), shown, and run one step at a time; every step is reported to the ui and
written to the audit log of every db and PgBouncer host. A failing step (or Ctrl-C) runs
what undoes the steps before it, while undoing is possible: PgBouncer is always resumed; a
switchover that fails before the promotion puts the old primary back. Re-running after any
interruption rediscovers and continues from the state found.

execute() runs the steps; beside it, one piece per concern: _dispatch (each plan Action to
its step in failover_steps/, through ACTIONS), _Timings (the report's timings), _AuditTrail
(audit lines, held while PgBouncer is paused), _stop and _undo (putting back what ran).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Interrupted, SentryfabError
from ..inventory import Host, Inventory
from ..plans import failover as plans
from ..plans.failover import Action, Options, Plan, Step
from ..remote import Runner
from ..remote.connect import Unreachable
from ..remote.session import CommandFailed
from ..secrets import Secrets
from ..topology.model import Marker, Topology
from . import audit
from .configs import stamp
from .discover import discover, measure_wal_ends
from .failover_steps import pgbouncer, postgres
from .failover_steps.context import Run, StepFailed
from .guard import guarded, steps_run_to_their_end

KINDS = ("switchover", "failover", "rejoin", "degrade", "restore")

#: The step that does each Action of a plan.
ACTIONS: dict[Action, Callable[[Run, Step], str]] = {
    Action.STAGE_BOUNCER: pgbouncer.stage_bouncer,
    Action.COMMIT_BOUNCER: pgbouncer.commit_bouncer,
    Action.PAUSE: pgbouncer.pause,
    Action.RESUME: pgbouncer.resume,
    Action.VERIFY_WRITE: pgbouncer.verify_write,
    Action.STOP: postgres.stop,
    Action.FENCE: postgres.fence,
    Action.WAIT_REPLAY: postgres.wait_replay,
    Action.PROMOTE: postgres.promote,
    Action.AFTER_PROMOTE: postgres.after_promote,
    Action.REPOINT_REPLICA: postgres.repoint_replica,
    Action.DEGRADE: postgres.degrade,
    Action.RESTORE_SYNC: postgres.restore_sync,
    Action.WAIT_SYNC: postgres.wait_sync,
    Action.ENSURE_SLOT: postgres.ensure_slot,
    Action.REWIND: postgres.rewind,
    Action.CLONE: postgres.clone,
    Action.STANDBY_CONFIG: postgres.standby_config,
    Action.START: postgres.start,
    Action.WAIT_STREAMING: postgres.wait_streaming,
    Action.UNFENCE: postgres.unfence,
}


def _check_actions() -> None:
    """Every Action a plan may hold has its step: found at import, not in mid-failover."""
    missing = [a.value for a in Action if a not in ACTIONS]
    if missing:
        raise AssertionError(f"procedures/failover.py: ACTIONS has no step for the plan "
                             f"action(s) {', '.join(missing)} (plans/failover.py: Action)")


_check_actions()

#: The action on_step's "undo" events carry: not a plan Action (nothing dispatches it).
UNDO = "undo"

#: on_step(state, index, total, step, detail): state is start, done, failed or undo.
StepEvent = Callable[[str, int, int, Step, str], None]


@dataclass
class StepReport:
    """How one step went."""

    step: Step
    state: str  # done | failed | undone
    detail: str = ""
    seconds: float = 0.0
    ended: float = 0.0  # seconds from the start of the run


@dataclass
class Report:
    """A run: its plan, each step, what was undone, the timings that matter."""

    plan: Plan
    topology: Topology | None = None
    dry_run: bool = False
    steps: list[StepReport] = field(default_factory=list)
    undone: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    paused_seconds: float | None = None   # first PAUSE to last RESUME: clients waited
    write_after: float | None = None      # start of the run to the first verified write

    @property
    def ok(self) -> bool:
        """True if the plan ran to the end (or a dry run had nothing to refuse)."""
        return self.error is None and not self.plan.refused

    def as_record(self) -> dict[str, Any]:
        """The --json form."""
        p = self.plan
        return {
            "kind": p.kind, "target": p.target, "ok": self.ok, "dry_run": self.dry_run,
            "refusals": list(p.refusals), "overridden": list(p.overridden),
            "found": list(p.found), "notes": list(p.notes), "lag_bytes": p.lag_bytes,
            "plan": [{"action": s.action, "host": s.host, "text": s.text} for s in p.steps],
            "steps": [{"action": r.step.action, "host": r.step.host, "state": r.state,
                       "detail": r.detail, "seconds": round(r.seconds, 3),
                       "ended": round(r.ended, 3)} for r in self.steps],
            "undone": self.undone, "error": self.error, "seconds": round(self.seconds, 3),
            "paused_seconds": None if self.paused_seconds is None
            else round(self.paused_seconds, 3),
            "write_after_seconds": None if self.write_after is None
            else round(self.write_after, 3),
        }


def options(inv: Inventory, **given: Any) -> Options:
    """Options with the db role's maximum_lag_on_failover from the inventory."""
    from ..configs.context import settings

    lag = settings(inv, "db").get("maximum_lag_on_failover", plans.DEFAULT_MAX_LAG)
    return Options(max_lag=int(lag), **given)


def prepare(runner: Runner, inv: Inventory, secrets: Secrets, kind: str, opts: Options,
            node: str | None = None) -> tuple[Topology, Plan]:
    """Discover the cluster and plan `kind` from what was found."""
    topo = discover(runner, inv, secrets)
    if kind in ("switchover", "failover"):
        cand = plans.candidate(topo, opts.target)
        # Without a running primary, the lag is measured against the end of the WAL a
        # stopped primary left on its disk, read from the candidate's position on.
        if topo.primary is None and cand is not None and cand.position is not None:
            topo = measure_wal_ends(runner, inv, topo, cand.position)
    if kind == "switchover":
        return topo, plans.plan_switchover(topo, opts)
    if kind == "failover":
        return topo, plans.plan_failover(topo, opts)
    if kind == "rejoin":
        return topo, plans.plan_rejoin(topo, node or "", opts)
    if kind in ("degrade", "restore"):
        return topo, plans.plan_degrade(topo, opts, restore=kind == "restore")
    raise SentryfabError(f"unknown operation {kind!r} (known: {', '.join(KINDS)})")


def run(runner: Runner, inv: Inventory, secrets: Secrets, kind: str, opts: Options, *,
        node: str | None = None, dry_run: bool = False, message: str = "",
        on_plan: Callable[[Plan], None] | None = None,
        confirm: Callable[[Plan], bool] | None = None,
        on_step: StepEvent | None = None, wait: float = 0) -> Report:
    """Plan `kind` and, unless dry_run, run it under the deploy lock."""
    if dry_run:
        topo, plan = prepare(runner, inv, secrets, kind, opts, node)
        if on_plan:
            on_plan(plan)
        return Report(plan, topo, dry_run=True)
    involved = [h for h in inv.hosts if h.has("db") or h.has("pgbouncer")]
    # Audit lines are the steps' own (held while PgBouncer is paused), not the guard's.
    with guarded(runner, inv, f"db.{kind}", hosts=involved, message=message, wait=wait,
                 audit_lines=False) as change:
        change.at("discovering the topology")
        topo, plan = prepare(runner, inv, secrets, kind, opts, node)
        if on_plan:
            on_plan(plan)
        hosts = _audit_hosts(inv, topo)
        if plan.refused:
            _audit(runner, hosts, audit.entry(f"db.{kind}", "refused", target=plan.target,
                                              reasons=list(plan.refusals), message=message))
            return Report(plan, topo)
        if not plan.steps:
            return Report(plan, topo)
        if confirm is not None and not confirm(plan):
            return Report(plan, topo, error="not confirmed: nothing was changed")
        marker = Marker(at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        who=audit.identity(), action=kind,
                        new_primary=plan.target if kind in ("switchover", "failover") else "",
                        reason=message)
        ctx = Run(runner, inv, secrets, topo, plan, opts, marker, stamp())
        change.touch(hosts)
        shown = on_step or (lambda *a: None)

        def on_each(state: str, i: int, total: int, step: Step, detail: str) -> None:
            if state == "start":
                change.at(f"step {i}/{total}: {step.action} on {step.host}")
            shown(state, i, total, step, detail)

        return execute(ctx, hosts, message, on_each)


def execute(ctx: Run, audit_hosts: list[Host], message: str, on_step: StepEvent) -> Report:
    """Run the plan's steps in order; on a failure or Ctrl-C, undo what can be undone."""
    plan = ctx.plan
    report = Report(plan, ctx.topo)
    clock = _Timings(report)
    trail = _AuditTrail(ctx.runner, audit_hosts, f"db.{plan.kind}", plan.target, message,
                        holding=clock.clients_wait)
    total = len(plan.steps)
    trail.run("started", steps=plan.actions())

    current = ""
    # Ctrl-C lets the step under way finish: a remote command cut off keeps running on its
    # host (a PAUSE, a `docker stop`), and the undo would race it (RESUME before the PAUSE
    # it undoes: clients left waiting). Every step is bounded by its own timeout.
    with steps_run_to_their_end(lambda: current) as ctrl_c:
        for i, step in enumerate(plan.steps, start=1):
            current = f"step {i}/{total} ({step.action} on {step.host})"
            on_step("start", i, total, step, "")
            started = clock.step_starts(step)
            try:
                detail = _dispatch(ctx, step)
            except (SentryfabError, CommandFailed, Unreachable, KeyboardInterrupt) as e:
                interrupted = ctrl_c.requested or isinstance(e, KeyboardInterrupt | Interrupted)
                why = ctx.secrets.mask("interrupted (Ctrl-C)" if interrupted else str(e))
                clock.step_ends(i, step, "failed", why, started)
                on_step("failed", i, total, step, why)
                trail.step(step, "failed", why)
                return _stop(ctx, clock, trail, on_step, i, step, why, interrupted)
            clock.step_ends(i, step, "done", detail, started)
            on_step("done", i, total, step, detail)
            trail.step(step, "ok", detail)
            if ctrl_c.requested and i < total:
                return _stop(ctx, clock, trail, on_step, i, step,
                             "interrupted (Ctrl-C) after this step", True)
    clock.finish()
    trail.run("ok", seconds=round(report.seconds, 3),
              paused_seconds=None if report.paused_seconds is None
              else round(report.paused_seconds, 3))
    return report


def _dispatch(ctx: Run, step: Step) -> str:
    """Run the step that does `step.action`; what it did, in words."""
    return ACTIONS[step.action](ctx, step)


@dataclass
class _Timings:
    """The report's timings: each step's, the run's, how long clients waited (first PAUSE
    to the last RESUME, or to the end of a run cut short) and when a write first went
    through."""

    report: Report
    start: float = field(default_factory=time.monotonic)
    paused_at: float | None = None
    last_resume: int = field(init=False)  # the plan's last RESUME step (from 1); 0: none

    def __post_init__(self) -> None:
        self.last_resume = max((i for i, s in enumerate(self.report.plan.steps, 1)
                                if s.action == Action.RESUME), default=0)

    def clients_wait(self) -> bool:
        """True from the first PAUSE until clients are resumed (or the run ends)."""
        return self.paused_at is not None and self.report.paused_seconds is None

    def step_starts(self, step: Step) -> float:
        """When `step` starts; a PAUSE starts the clients' wait."""
        started = time.monotonic()
        if step.action == Action.PAUSE and self.paused_at is None:
            self.paused_at = started
        return started

    def step_ends(self, index: int, step: Step, state: str, detail: str,
                  started: float) -> None:
        """The step's report line; a done last RESUME ends the wait, a done test write is
        the first one that went through."""
        now = time.monotonic()
        report = self.report
        report.steps.append(StepReport(step, state, detail, now - started, now - self.start))
        if state != "done":
            return
        if index == self.last_resume and self.paused_at is not None:
            report.paused_seconds = now - self.paused_at
        if step.action == Action.VERIFY_WRITE and report.write_after is None:
            report.write_after = now - self.start

    def stop_waiting(self) -> None:
        """A run cut short: clients waited until now (the undo resumed them)."""
        if self.paused_at is not None and self.report.paused_seconds is None:
            self.report.paused_seconds = time.monotonic() - self.paused_at

    def finish(self) -> None:
        """The run's length."""
        self.report.seconds = time.monotonic() - self.start


@dataclass
class _AuditTrail:
    """The run's audit lines, in the local log and on the db and PgBouncer hosts. While
    PgBouncer is paused every round trip is client wait: lines are held, and written right
    after RESUME (or the failure)."""

    runner: Runner
    hosts: list[Host]
    kind: str  # db.switchover, db.failover, ...
    target: str
    message: str
    holding: Callable[[], bool]  # True while lines must wait
    held: list[dict[str, Any]] = field(default_factory=list)

    def write(self, record: dict[str, Any]) -> None:
        """Write `record` (after those held), or hold it while clients wait."""
        if self.holding():
            self.held.append(record)
            return
        for r in [*self.held, record]:
            _audit(self.runner, self.hosts, r)
        self.held.clear()

    def run(self, result: str, **details: Any) -> None:
        """The run's own line: started, ok, failed or interrupted."""
        self.write(audit.entry(self.kind, result, target=self.target, **details,
                               message=self.message))

    def step(self, step: Step, result: str, detail: str) -> None:
        """One step's line: ok or failed, and what it said."""
        self.write(audit.entry(f"{self.kind}.step", result, step=step.action, host=step.host,
                               detail=detail))


def _stop(ctx: Run, clock: _Timings, trail: _AuditTrail, on_step: StepEvent, i: int,
          step: Step, why: str, interrupted: bool) -> Report:
    """What ran is put back (as far as it can be), the end written, and a Ctrl-C passed on."""
    if interrupted:  # a fan-out's Ctrl-C may have closed the connections the undo needs
        ctx.runner.revive()
    report = clock.report
    report.undone = _undo(ctx, on_step, len(ctx.plan.steps))
    clock.stop_waiting()
    report.error = _failure(ctx.plan, i, step, why, report.undone)
    clock.finish()
    trail.run("interrupted" if interrupted else "failed", error=report.error,
              undone=report.undone)
    if interrupted:
        raise KeyboardInterrupt
    return report


def _undo(ctx: Run, on_step: StepEvent, total: int) -> list[str]:
    """Run the undo stack, newest first; every entry is tried even if one fails."""
    done = []
    while ctx.undo:
        u = ctx.undo.pop()
        st = Step(UNDO, u.host, u.what)  # type: ignore[arg-type]  # an event, not a plan step
        try:
            u.action()
            done.append(f"{u.host}: {u.what}")
            on_step("undo", 0, total, st, "done")
        except (SentryfabError, CommandFailed, Unreachable) as e:
            done.append(f"{u.host}: {u.what} FAILED: {ctx.secrets.mask(str(e))}")
            on_step("undo", 0, total, st, f"FAILED: {ctx.secrets.mask(str(e))}")
    return done


def _failure(plan: Plan, i: int, step: Step, why: str, undone: list[str]) -> str:
    text = f"step {i}/{len(plan.steps)} ({step.action} on {step.host}) failed: {why}"
    promoted = any(s.action == Action.PROMOTE for s in plan.steps[:i - 1])
    if undone and not promoted:
        text += "; put back: " + "; ".join(undone)
    elif undone:
        text += "; " + "; ".join(undone)
    return (text + f". `fab db.topology` shows the state now; re-running "
            f"`fab {plans.command(plan.kind)}` "
            "rediscovers it and continues from there")


def _audit_hosts(inv: Inventory, topo: Topology) -> list[Host]:
    """The db and PgBouncer hosts that answered (an unreachable one would stall each step)."""
    names = [n.name for n in topo.nodes if n.reachable]
    names += [b.name for b in topo.bouncers if b.reachable]
    return [inv.host(n) for n in dict.fromkeys(names)]


def _audit(runner: Runner, hosts: list[Host], record: dict[str, Any]) -> None:
    """The local log, then each host in turn on its open session (best effort: an audit line
    never stops a failover; sessions, not a fan-out, so Ctrl-C cannot close them mid-run)."""
    audit.record(runner, [], record)
    command = audit.append_command(record)
    for h in hosts:
        try:
            runner.session(h).run(command, timeout=10)
        except (Unreachable, OSError):
            continue


def topology(runner: Runner, inv: Inventory, secrets: Secrets) -> Topology:
    """The topology as it is (for `fab db.topology` and `fab status`)."""
    return discover(runner, inv, secrets)


__all__ = ["ACTIONS", "KINDS", "Action", "Options", "Report", "StepFailed", "execute",
           "options", "prepare", "run", "topology"]
