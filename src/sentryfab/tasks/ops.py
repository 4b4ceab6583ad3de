"""Everyday operations: the deploy lock, the audit trail, container logs and exec."""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import handled, helps, load_inventory, selected


@task(name="status", auto_shortflags=False, help=helps("json"))
@handled
def lock_status(c, json=False):
    """Who holds the deploy lock, since when, doing what."""
    from ..procedures import lock
    from ..remote import Runner
    from ..ui import ops as ops_ui

    inv = load_inventory()
    with Runner(inv) as runner:
        ops_ui.show_lock(lock.status(runner, inv), lock.lock_host(inv).name, as_json=json)


@task(name="release", auto_shortflags=False,
      help={"yes": "do not ask for confirmation (for scripts)"})
@handled
def lock_release(c, yes=False):
    """Force the deploy lock free (after a deploy died without releasing it)."""
    from ..procedures import lock
    from ..remote import Runner
    from ..ui import ops as ops_ui

    inv = load_inventory()
    with Runner(inv) as runner:
        held = lock.status(runner, inv)
        if held is None:
            ops_ui.say("the deploy lock is free")
            return
        gone = held.stale()
        if gone:
            ops_ui.say(f"the holder looks stale: {gone}")
        if not yes and not ops_ui.confirm(f"release the lock held by {held.describe()}?"):
            raise Exit(code=1)
        if not lock.release(runner, inv, held):
            now = lock.status(runner, inv)
            ops_ui.say(f"not released: the lock is now held by "
                       f"{now.describe() if now else '(nobody)'}, not the holder confirmed")
            raise Exit(code=1)
        ops_ui.say(f"released the lock held by {held.describe()}")


@task(name="audit", auto_shortflags=False, help=helps(
    "roles", "hosts", "exclude", "json", lines="how many recent lines per host (default 20)"))
@handled
def audit_(c, roles=None, hosts=None, exclude=None, lines=20, json=False):
    """The recent audit lines (deploys, rollbacks, failovers, pushes) per host."""
    from ..procedures import audit
    from ..remote import Runner
    from ..ui import ops as ops_ui

    inv = load_inventory()
    targets = selected(inv, roles, hosts, exclude)
    with Runner(inv) as runner:
        results = runner.run(targets, audit.tail_command(int(lines)))
    ops_ui.show_audit(results, as_json=json)


@task(name="logs", positional=["host"], auto_shortflags=False, help={
    "host": "the host", "role": "the role whose containers to show (default: the host's first)",
    "n": "lines per container (default 100)", "follow": "keep printing new lines (Ctrl-C stops)"})
@handled
def logs(c, host, role=None, n=100, follow=False):
    """The logs of a host's containers for one role."""
    from ..containers import docker
    from ..containers.spec import specs_for
    from ..remote import Runner
    from ..shell import concurrently
    from ..ui import run as run_ui

    inv, h, role = _host_role(host, role)
    names = [sp.name for sp in specs_for(inv, h, role)]
    cmd = concurrently(*(docker.logs(name, int(n), follow) for name in names))
    with Runner(inv) as runner:
        [r] = runner.run([h], cmd, on_line=run_ui.stream_line)
    if not r.ok:
        run_ui.report([r], None, show_output=False)
        raise Exit(code=1)


@task(name="exec", positional=["host", "command"], auto_shortflags=False, help={
    "host": "the host", "role": "the role whose first container to run in",
    "command": "the shell command to run inside the container"})
@handled
def exec_(c, host, command, role=None):
    """Run a command inside a host's container of a role."""
    from ..containers import docker
    from ..containers.spec import specs_for
    from ..remote import Runner
    from ..ui import run as run_ui

    inv, h, role = _host_role(host, role)
    name = specs_for(inv, h, role)[0].name
    with Runner(inv) as runner:
        [r] = runner.run([h], docker.exec_(name, ["sh", "-c", command]))
    run_ui.report([r], r.seconds)
    if not r.ok:
        raise Exit(code=1)


def _host_role(host: str, role: str | None):
    from ..errors import UsageError

    inv = load_inventory()
    try:
        h = inv.host(host)
    except KeyError:
        raise UsageError(f"no host '{host}' in {inv.path}") from None
    if not h.roles:
        raise UsageError(f"{host} has no role, so no containers")
    role = role or h.roles[0]
    if role not in h.roles:
        raise UsageError(f"{host} has no role '{role}' (it has: {', '.join(h.roles)})")
    return inv, h, role


lock_ns = Collection("lock", lock_status, lock_release)
