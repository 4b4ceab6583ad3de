"""Switchover, failover, rejoin and degrade: discover, plan, then run the plan step by step.

Under the deploy lock, the cluster is discovered (never assumed), a plan made (pure:
plans/failover.py), shown, and run one step at a time; every step is reported to the ui and
written to the audit log of every db and PgBouncer host. A failing step (or Ctrl-C) runs
what undoes the steps before it, while undoing is possible: PgBouncer is always resumed; a
switchover that fails before the promotion puts the old primary back. Re-running after any
interruption rediscovers and continues from the state found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Interrupted, SentryfabError
from ..failover import bouncer_steps, pg_steps
from ..failover.context import Run, StepFailed
from ..failover.discover import discover, measure_wal_ends
from ..failover.model import Marker, Topology
from ..inventory import Host, Inventory
from ..plans import failover as plans
from ..plans.failover import Options, Plan, Step
from ..remote import Runner
from ..remote.connect import Unreachable
from ..remote.session import CommandFailed
from ..secrets import Secrets
from . import audit
from .configs import stamp
from .guard import guarded, steps_run_to_their_end

KINDS = ("switchover", "failover", "rejoin", "degrade", "restore")

ACTIONS: dict[str, Callable[[Run, Step], str]] = {
    "stage_bouncer": bouncer_steps.stage_bouncer,
    "commit_bouncer": bouncer_steps.commit_bouncer,
    "pause": bouncer_steps.pause,
    "resume": bouncer_steps.resume,
    "verify_write": bouncer_steps.verify_write,
    "stop": pg_steps.stop,
    "fence": pg_steps.fence,
    "wait_replay": pg_steps.wait_replay,
    "promote": pg_steps.promote,
    "after_promote": pg_steps.after_promote,
    "repoint_replica": pg_steps.repoint_replica,
    "degrade": pg_steps.degrade,
    "restore_sync": pg_steps.restore_sync,
    "wait_sync": pg_steps.wait_sync,
    "ensure_slot": pg_steps.ensure_slot,
    "rewind": pg_steps.rewind,
    "clone": pg_steps.clone,
    "standby_config": pg_steps.standby_config,
    "start": pg_steps.start,
    "wait_streaming": pg_steps.wait_streaming,
    "unfence": pg_steps.unfence,
}

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
    start = time.monotonic()
    total = len(plan.steps)
    paused_at: float | None = None
    kind = f"db.{plan.kind}"
    held: list[dict[str, Any]] = []  # audit lines of steps run while clients wait
    last_resume = max((i for i, s in enumerate(plan.steps, 1) if s.action == "resume"),
                      default=0)

    def log(record: dict[str, Any]) -> None:
        # While PgBouncer is paused every round trip is client wait: lines are kept and
        # written right after RESUME (or the failure).
        if paused_at is not None and report.paused_seconds is None:
            held.append(record)
            return
        for r in [*held, record]:
            _audit(ctx.runner, audit_hosts, r)
        held.clear()

    log(audit.entry(kind, "started", target=plan.target, steps=plan.actions(),
                    message=message))

    def stop(i: int, step: Step, why: str, interrupted: bool) -> Report:
        # What ran is put back (as far as it can be), the end written, and a Ctrl-C passed on.
        if interrupted:  # a fan-out's Ctrl-C may have closed the connections the undo needs
            ctx.runner.revive()
        report.undone = _undo(ctx, on_step, total)
        if paused_at is not None and report.paused_seconds is None:
            report.paused_seconds = time.monotonic() - paused_at
        report.error = _failure(plan, i, step, why, report.undone)
        report.seconds = time.monotonic() - start
        log(audit.entry(kind, "interrupted" if interrupted else "failed", target=plan.target,
                        error=report.error, undone=report.undone, message=message))
        if interrupted:
            raise KeyboardInterrupt
        return report

    current = ""
    # Ctrl-C lets the step under way finish: a remote command cut off keeps running on its
    # host (a PAUSE, a `docker stop`), and the undo would race it (RESUME before the PAUSE
    # it undoes: clients left waiting). Every step is bounded by its own timeout.
    with steps_run_to_their_end(lambda: current) as ctrl_c:
        for i, step in enumerate(plan.steps, start=1):
            current = f"step {i}/{total} ({step.action} on {step.host})"
            on_step("start", i, total, step, "")
            t0 = time.monotonic()
            if step.action == "pause" and paused_at is None:
                paused_at = t0
            try:
                detail = ACTIONS[step.action](ctx, step)
            except (SentryfabError, CommandFailed, Unreachable, KeyboardInterrupt) as e:
                interrupted = ctrl_c.requested or isinstance(e, KeyboardInterrupt | Interrupted)
                why = ctx.secrets.mask("interrupted (Ctrl-C)" if interrupted else str(e))
                now = time.monotonic()
                report.steps.append(StepReport(step, "failed", why, now - t0, now - start))
                on_step("failed", i, total, step, why)
                log(audit.entry(f"{kind}.step", "failed", step=step.action, host=step.host,
                                detail=why))
                return stop(i, step, why, interrupted)
            now = time.monotonic()
            report.steps.append(StepReport(step, "done", detail, now - t0, now - start))
            on_step("done", i, total, step, detail)
            if i == last_resume and paused_at is not None:
                report.paused_seconds = now - paused_at
            if step.action == "verify_write" and report.write_after is None:
                report.write_after = now - start
            log(audit.entry(f"{kind}.step", "ok", step=step.action, host=step.host,
                            detail=detail))
            if ctrl_c.requested and i < total:
                return stop(i, step, "interrupted (Ctrl-C) after this step", True)
    report.seconds = time.monotonic() - start
    log(audit.entry(kind, "ok", target=plan.target, seconds=round(report.seconds, 3),
                    paused_seconds=None if report.paused_seconds is None
                    else round(report.paused_seconds, 3), message=message))
    return report


def _undo(ctx: Run, on_step: StepEvent, total: int) -> list[str]:
    """Run the undo stack, newest first; every entry is tried even if one fails."""
    done = []
    while ctx.undo:
        u = ctx.undo.pop()
        st = Step("undo", u.host, u.what)
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
    promoted = any(s.action == "promote" for s in plan.steps[:i - 1])
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


__all__ = ["ACTIONS", "KINDS", "Options", "Report", "StepFailed", "execute", "options",
           "prepare", "run", "topology"]
