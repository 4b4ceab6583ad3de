"""PostgreSQL's part of a move: stop, fence, wait, promote, degrade, rewind, rejoin.

Each step looks before it acts (a re-run after an interruption finds the work done and says
so) and registers what would undo it while undoing is still possible: a switchover that
fails before the promotion puts the old primary back as it was.
"""

from __future__ import annotations

import time

from ...configs.escape import conninfo_string
from ...configs.render import render_all
from ...containers import docker
from ...containers import postgres as pg
from ...containers.spec import image_ref
from ...plans.failover import STREAM_TIMEOUT, Step
from ...topology import db_commands as c
from ...topology.db_facts import ControlData
from ...topology.values import lsn_text
from ..configs import push_host
from ..deploy import Deployer
from ..discover import DB_CONTAINER
from .context import Run, StepFailed, Undo

STOP_TIMEOUT = 120   # seconds a fast shutdown may take (it waits for WAL to reach replicas)
FENCE_STOP_TIMEOUT = 10  # a fence does not wait long for a server that hangs: SIGKILL then
SETTING_TIMEOUT = 10.0  # seconds for a reload to show in current_setting()


def _image(run: Run, name: str) -> str:
    return image_ref(run.inv, "db", run.host(name))


def _sql(run: Run, name: str, *sql: str, what: str) -> str:
    return run.sh(name, c.psql(DB_CONTAINER, *sql), what).stdout.strip()


def _poll(run: Run, name: str, sql: str, timeout: float, what: str) -> None:
    out = run.sh(name, c.poll_sql(DB_CONTAINER, sql, timeout), what, check=False,
                 timeout=timeout + 30)
    if not out.ok:
        raise StepFailed(f"{name}: {what}: not within {timeout:g} s")


def _controldata(run: Run, name: str):
    out = run.sh(name, ControlData.command(_image(run, name)), "pg_controldata")
    ctl = ControlData.parse(out.stdout)
    if ctl is None:
        raise StepFailed(f"{name}: pg_controldata printed no cluster state")
    return ctl


def stop(run: Run, step: Step) -> str:
    """Fast shutdown; for a switchover, read the final checkpoint and insist it was clean."""
    name = step.host
    run.sh(name, c.stop_fast(DB_CONTAINER, STOP_TIMEOUT), "fast shutdown",
           timeout=STOP_TIMEOUT + 30)
    if run.plan.kind != "switchover":
        return "stopped"
    run.undo.append(Undo(f"start {name} again", name, lambda: _restart_old(run, name)))
    ctl = _controldata(run, name)
    if ctl.state != "shut down" or ctl.checkpoint_lsn is None:
        raise StepFailed(f"{name}: did not shut down cleanly (pg_controldata: {ctl.state}): "
                         "its last WAL may not have reached the replica")
    run.final_lsn[name] = ctl.checkpoint_lsn
    return f"shut down cleanly; final checkpoint at {lsn_text(ctl.checkpoint_lsn)}"


def _restart_old(run: Run, name: str) -> None:
    run.sh(name, c.start_container(DB_CONTAINER), "start the old primary again")
    _poll(run, name, "select not pg_is_in_recovery()", 60, "old primary accepting writes")


def fence(run: Run, step: Step) -> str:
    """Stop it if it runs (SIGKILL if it will not stop), write FENCED and standby.signal."""
    name = step.host
    node = run.topo.node(name)
    had_signal = node.standby_signal
    # One round trip: a fast shutdown if it runs, SIGKILL if that did not end it, the marks.
    run.sh(name, f"{c.stop_fast(DB_CONTAINER, FENCE_STOP_TIMEOUT)}; "
                 f"{c.kill_container(DB_CONTAINER)}; {pg.fence(run.marker_json())}",
           "stop PostgreSQL and write the fence", timeout=FENCE_STOP_TIMEOUT + 30)
    if run.plan.kind == "switchover":
        run.undo.append(Undo(f"lift {name}'s fence", name,
                             lambda: _unfence_old(run, name, had_signal)))
    return f"fenced: {pg.FENCE_FILE}, standby.signal"


def _unfence_old(run: Run, name: str, had_signal: bool) -> None:
    cmd = pg.unfence()
    if not had_signal:
        cmd += f" && rm -f {pg.DATA_DIR}/standby.signal"
    run.sh(name, cmd, "lift the fence")


def wait_replay(run: Run, step: Step) -> str:
    """Wait until the target has replayed the old primary's final checkpoint."""
    old = run.old_primary()
    lsn = run.final_lsn.get(old or "")
    if lsn is None:
        raise StepFailed(f"{step.host}: the old primary's final checkpoint LSN is unknown")
    _poll(run, step.host, c.replayed_sql(lsn), run.opts.replay_timeout,
          f"replay up to {old}'s final checkpoint {lsn_text(lsn)}")
    return f"replayed up to {lsn_text(lsn)}: it has every write {old} acknowledged"


def promote(run: Run, step: Step) -> str:
    """pg_promote(): the point of no return (nothing is undone after it but a RESUME)."""
    run.undo = [u for u in run.undo if u.kind == "resume"]
    name = step.host
    said, tli = c.Promote.parse(run.sh(name, c.Promote.command(DB_CONTAINER),
                                       "pg_promote()").stdout)
    if said == "already":
        return f"already promoted: timeline {tli}"
    if said != "true":
        raise StepFailed(f"{name}: pg_promote() did not finish within 60 s (said {said!r}); "
                         f"re-run `fab db.failover --to {name}` to finish")
    return f"promoted: timeline {tli}"


def after_promote(run: Run, step: Step) -> str:
    """Slots for the other db hosts on the new primary; drop its old primary_conninfo; a
    checkpoint, so that its control file names the new timeline (pg_rewind reads it)."""
    others = [n.name for n in run.topo.nodes if n.name != step.host]
    _sql(run, step.host, c.ensure_slots_sql([pg.slot_name(o) for o in others]),
         *c.RESET_CONNINFO_SQL, "checkpoint", what="replication slots, checkpoint")
    return "slots " + ", ".join(pg.slot_name(o) for o in others) + "; checkpoint done"


def repoint_replica(run: Run, step: Step) -> str:
    """Another replica follows the new primary: primary_conninfo changed, reloaded."""
    target = run.host(run.primary)
    # Quoted for libpq, then as an SQL string (standard_conforming_strings: quotes doubled).
    conninfo = conninfo_string(host=target.address, port=run.db_port(target.name),
                               user="replicator", application_name=step.host,
                               password=run.secrets.get("replication_password"))
    sql = (f"alter system set primary_conninfo = '{conninfo.replace(chr(39), chr(39) * 2)}';\n"
           f"alter system set primary_slot_name = '{pg.slot_name(step.host)}';\n"
           "select pg_reload_conf();\n")
    run.sh(step.host, pg.psql_stdin(DB_CONTAINER), "repoint", stdin=sql.encode())
    _poll(run, step.host, c.streaming_sql(target.address), 60, f"stream from {target.name}")
    return f"streams from {target.name}"


def _push_db(run: Run, names: list[str], degraded: bool) -> None:
    hosts = [run.host(n) for n in names]
    rendered = render_all(run.inv, hosts, run.secrets, run.state(degraded), roles=("db",))
    for n in names:
        push_host(run.session(n), run.inv, rendered[n], run.secrets, run.stamp)


def _setting_is(run: Run, name: str, off: bool) -> None:
    sql = f"select ({c.SYNC_NAMES_SQL}) {'=' if off else '<>'} ''"
    _poll(run, name, sql, SETTING_TIMEOUT, "synchronous_standby_names reloaded")


def degrade(run: Run, step: Step) -> str:
    """Synchronous replication off on this host, on purpose and on record."""
    name = step.host
    run.sh(name, pg.mark_degraded(run.marker_json()), "write the DEGRADED marker")
    _push_db(run, [name], degraded=True)
    if run.plan.kind == "switchover":
        run.undo.append(Undo(f"synchronous replication back on on {name}", name,
                             lambda: _undegrade(run, [name])))
    if run.topo.node(name).running:
        _setting_is(run, name, off=True)
    return "synchronous_standby_names = '' (DEGRADED marker written)"


def _undegrade(run: Run, names: list[str]) -> None:
    for n in names:
        run.sh(n, pg.unmark_degraded(), "remove the DEGRADED marker")
    _push_db(run, names, degraded=False)


def restore_sync(run: Run, step: Step) -> str:
    """Synchronous replication back on: markers removed first, then the configs pushed."""
    names = [n.name for n in run.topo.nodes if n.reachable]
    _undegrade(run, names)
    _setting_is(run, step.host, off=False)
    return "synchronous_standby_names = " + _sql(run, step.host, c.SYNC_NAMES_SQL,
                                                 what="read the setting")


def wait_sync(run: Run, step: Step) -> str:
    """Wait until a replica is a synchronous (or quorum) standby of the primary."""
    sql = ("select exists (select from pg_stat_replication where state = 'streaming' and "
           "sync_state in ('sync', 'quorum'))")
    _poll(run, step.host, sql, STREAM_TIMEOUT, "a synchronous standby")
    return "a replica confirms every commit"


def ensure_slot(run: Run, step: Step) -> str:
    """The rejoining node's slot on the primary."""
    slot = pg.slot_name(run.plan.target)
    _sql(run, step.host, c.ensure_slots_sql([slot]), what=f"slot {slot}")
    return f"slot {slot}"


def rewind(run: Run, step: Step) -> str:
    """pg_rewind onto the primary's timeline; if it cannot, a fresh clone instead."""
    p = run.host(run.primary)
    if _sql(run, p.name, c.STALE_CONTROL_SQL, what="control file timeline") == "t":
        _sql(run, p.name, "checkpoint", what="checkpoint before pg_rewind")
    out = run.sh(step.host, pg.rewind(_image(run, step.host), p.address, run.db_port(p.name)),
                 "pg_rewind", stdin=run.secrets.get("postgres_password").encode(),
                 timeout=3600, check=False)
    said = run.secrets.mask((out.stdout + out.stderr).strip())
    if out.ok:
        last = said.splitlines()[-1] if said else "done"
        return f"pg_rewind: {last}"
    why = said.splitlines()[-1] if said else (out.error or f"exit code {out.exit_code}")
    return f"pg_rewind could not ({why}); {clone(run, step)}"


def clone(run: Run, step: Step) -> str:
    """A fresh pg_basebackup from the primary; the old data directory is kept aside."""
    p = run.host(run.primary)
    image = _image(run, step.host)
    run.sh(step.host, pg.set_aside(image), "move the old data directory aside")
    port = run.db_port(p.name)
    run.sh(step.host, pg.clone_replica(image, p.address, port, step.host), "pg_basebackup",
           stdin=pg.replica_stdin(p.address, port, step.host,
                                  run.secrets.get("replication_password")), timeout=3600)
    return f"cloned from {p.name} (old data kept in {pg.ASIDE_DIR})"


def standby_config(run: Run, step: Step) -> str:
    """standby.signal, primary_conninfo and slot for the primary."""
    p = run.host(run.primary)
    lines = pg.standby_lines(p.address, run.db_port(p.name), step.host,
                             run.secrets.get("replication_password"))
    run.sh(step.host, pg.standby_config(_image(run, step.host)),
           "write the standby configuration", stdin=lines.encode())
    return f"replica of {p.name}, slot {pg.slot_name(step.host)}"


def start(run: Run, step: Step) -> str:
    """Start the db container (created as a deploy would if it is missing)."""
    if run.sh(step.host, c.container_exists(DB_CONTAINER), "find the container",
              check=False).ok:
        run.sh(step.host, c.start_container(DB_CONTAINER), "start PostgreSQL")
        return "started"
    d = Deployer(run.runner, run.inv, run.secrets, run.state())
    h = run.host(step.host)
    spec = d.wanted(h, "db", d.render([h], "db")[h.name], None)[0]
    run.sh(step.host, docker.run(spec), "create the db container")
    return "container created and started"


def wait_streaming(run: Run, step: Step) -> str:
    """Wait until the node streams from the primary; a server that keeps failing to start
    is stopped (no crash loop) and its own FATAL line reported."""
    p = run.host(run.primary)
    deadline = time.monotonic() + STREAM_TIMEOUT
    while True:
        out = run.sh(step.host, c.poll_sql(DB_CONTAINER, c.streaming_sql(p.address), 5),
                     "poll", check=False, timeout=40)
        if out.ok:
            return f"streaming from {p.name}"
        health = c.ContainerHealth.parse(run.sh(step.host, c.ContainerHealth.command(
            DB_CONTAINER), "container state", check=False).stdout)
        if (health.status != "running" or health.restarts not in ("", "0")
                or time.monotonic() > deadline):
            run.sh(step.host, c.kill_container(DB_CONTAINER), "stop it", check=False)
            why = " | ".join(x.strip() for x in health.log[-2:]) or f"container {health.status}"
            raise StepFailed(f"{step.host}: does not stream from {p.name} ({why}); stopped "
                             f"it. `fab db.rejoin {step.host} --rebuild` makes a fresh copy")


def unfence(run: Run, step: Step) -> str:
    """Lift the fence: the host is a replica again."""
    run.sh(step.host, pg.unfence(), "lift the fence")
    return "fence lifted"
