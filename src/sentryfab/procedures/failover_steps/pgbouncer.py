"""PgBouncer's part of a move: stage and commit pgbouncer.ini, PAUSE, RESUME, a test write.

The config change is the config push's own protocol (configs.commands: candidate beside the
live file, validated by a throwaway PgBouncer, pending marker, atomic rename, reload) cut in
two: the slow half (upload and a 2 s validation) runs before PAUSE, so that clients wait
only for the rename and the reload.
"""

from __future__ import annotations

import time

from ...configs import commands, validate
from ...configs.context import settings
from ...configs.render import Rendered, render_all
from ...plans.failover import Step
from ...shell import and_then
from ...topology.pgbouncer import ShowDatabases, WriteProbe, admin_console
from ..configs import changed_files, mask
from ..discover import BOUNCER_CONTAINER
from .context import Run, StepFailed, Undo

ROLE = "pgbouncer"
CONFIRM_TIMEOUT = 10.0  # seconds for a reload to show in SHOW DATABASES
WRITE_TIMEOUT = 30.0    # seconds a test write may take to succeed (PgBouncer reconnecting)


def _admin(run: Run, name: str, *command: str, timeout: float = 10) -> str:
    h = run.host(name)
    port = int(settings(run.inv, ROLE, h)["port"])
    out = run.sh(name, admin_console(BOUNCER_CONTAINER, h.address, port, *command,
                                     timeout=int(timeout)),
                 f"PgBouncer admin console: {'; '.join(command)}",
                 stdin=run.secrets.get("pgbouncer_admin_password").encode(),
                 timeout=timeout + 10)
    return out.stdout


def _render(run: Run, name: str) -> list[Rendered]:
    return render_all(run.inv, [run.host(name)], run.secrets, run.state(),
                      roles=(ROLE,))[name]


def stage_bouncer(run: Run, step: Step) -> str:
    """Upload the changed files as candidates and validate them; nothing goes live."""
    files = _render(run, step.host)
    s = run.session(step.host)
    facts = commands.parse_checksums(
        s.run(commands.checksums([f.path for f in files]), check=True).stdout)
    todo = changed_files(files, facts)
    for f in todo:
        run.sh(step.host, commands.upload(f.path, f.file.mode, f.uid), f"upload {f.path}",
               stdin=f.content.encode())
    for f in todo:
        rs = settings(run.inv, ROLE, run.host(step.host))
        cmd = validate.validation_command(f.file.validator, ROLE,
                                          commands.candidate_path(f.path),
                                          f"{rs.get('image', '')}:{rs.get('tag', 'latest')}")
        if cmd is None:
            continue
        out = s.run(cmd, timeout=60)
        if not out.ok:
            for g in todo:
                s.run(commands.discard(g.path))
            said = mask(run.secrets, (out.stderr or out.stdout).strip(), f.file.secret)
            raise StepFailed(f"{step.host}: {f.path} rejected by a throwaway PgBouncer "
                             f"(nothing changed): {said[-300:]}")
    run.staged[step.host] = todo
    return (f"staged {', '.join(f.path for f in todo)}" if todo
            else "files already point at the new primary")


def commit_bouncer(run: Run, step: Step) -> str:
    """Rename the staged candidates over the live files, RELOAD, confirm SHOW DATABASES."""
    todo = run.staged.get(step.host)
    if todo is None:  # a plan always stages first; a re-run after a crash may not have
        stage_bouncer(run, step)
        todo = run.staged[step.host]
    if todo:  # one round trip: pending marker first (a cut here still reloads next time)
        run.sh(step.host, and_then(commands.mark_pending(ROLE, [f.path for f in todo]),
                                   *[commands.activate(f.path, run.stamp) for f in todo]),
               "swap the new pgbouncer.ini in")
    target = run.host(run.primary)
    port = run.db_port(target.name)
    # RELOAD on the admin console returns once the files are read (SIGHUP would not say
    # when); SHOW DATABASES in the same session confirms what PgBouncer now uses.
    deadline = time.monotonic() + CONFIRM_TIMEOUT
    while not _points_at(_admin(run, step.host, "RELOAD", ShowDatabases.QUESTION),
                         run.topo.database, target.address, port):
        if time.monotonic() > deadline:
            raise StepFailed(f"{step.host}: reloaded, but SHOW DATABASES does not show "
                             f"{run.topo.database} -> {target.address}:{port} after "
                             f"{CONFIRM_TIMEOUT:g} s")
        time.sleep(0.1)
    run.sh(step.host, commands.clear_pending(ROLE), "clear the pending marker")
    return f"{run.topo.database} -> {target.name} ({target.address}:{port})"


def _points_at(show: str, database: str, address: str, port: int) -> bool:
    e = next((d for d in ShowDatabases.parse(show) if d.name == database), None)
    return e is not None and e.host == address and e.port == port


def pause(run: Run, step: Step) -> str:
    """PAUSE the database: returns once no server connection is in use (or times out)."""
    run.undo.append(Undo(f"RESUME {run.topo.database}", step.host,
                         lambda: _resume(run, step.host), kind="resume"))
    try:
        _admin(run, step.host, f"PAUSE {run.topo.database}", timeout=run.opts.pause_timeout)
    except StepFailed as e:
        if "already" in str(e):  # paused by a run that was cut short: still paused
            return "was paused already: new queries wait"
        raise StepFailed(f"{e} (running transactions did not finish within "
                         f"{run.opts.pause_timeout:g} s)") from None
    return "paused: new queries wait"


def _resume(run: Run, name: str) -> str:
    try:
        _admin(run, name, f"RESUME {run.topo.database}")
    except StepFailed as e:
        if "not paused" not in str(e):
            raise
        return "was not paused"
    return "resumed"


def resume(run: Run, step: Step) -> str:
    """RESUME the database (fine if it is not paused)."""
    said = _resume(run, step.host)
    run.undo = [u for u in run.undo if not (u.kind == "resume" and u.host == step.host)]
    return said


def verify_write(run: Run, step: Step) -> str:
    """A write through PgBouncer as Sentry's user commits, on the primary we expect."""
    h = run.host(step.host)
    port = int(settings(run.inv, ROLE, h)["port"])
    want = run.host(run.primary).address
    command = WriteProbe.command(BOUNCER_CONTAINER, h.address, port, run.topo.database,
                                 "sentry")
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < WRITE_TIMEOUT:
        out = run.sh(step.host, command, "test write", check=False,
                     stdin=run.secrets.get("db_password").encode(), timeout=20)
        got = WriteProbe.parse(out.stdout) if out.ok else None
        if got is not None:
            txid, addr = got
            if addr != want:
                raise StepFailed(f"{step.host}: the test write landed on {addr}, not on "
                                 f"{run.primary} ({want})")
            return (f"txid {txid} committed on {run.primary} "
                    f"in {time.monotonic() - start:.2f} s")
        last = run.secrets.mask((out.stderr or out.stdout or out.error or "").strip())
        time.sleep(0.2)
    raise StepFailed(f"{step.host}: no write through PgBouncer succeeded within "
                     f"{WRITE_TIMEOUT:g} s: {last[-300:]}")
