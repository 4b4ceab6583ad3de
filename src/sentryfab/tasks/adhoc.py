"""Top-level tasks: `hosts` (what the inventory holds) and `run` (ad-hoc SSH fan-out)."""

from __future__ import annotations

import time

from invoke import task
from invoke.exceptions import Exit

from ._common import DEFAULT_PARALLEL, handled, helps, load_inventory, selected


@task(name="hosts", auto_shortflags=False, help=helps("roles", "hosts", "exclude", "json"))
@handled
def hosts_(c, roles=None, hosts=None, exclude=None, json=False):
    """List the selected hosts with their roles and addresses."""
    from ..ui import hosts as hosts_ui

    inv = load_inventory()
    hosts_ui.show(inv, selected(inv, roles, hosts, exclude), as_json=json)


@task(name="run", auto_shortflags=False, help=helps(
    "roles", "hosts", "exclude", "parallel", "accept-new", "json",
    command="the shell command to run on every selected host (quote it)",
    sudo="run it as root through sudo -n",
    timeout="seconds before a host's command is cut off and counted failed",
    stream="print lines as they come, prefixed with the host, instead of grouped blocks",
))
@handled
def run_(c, command, roles=None, hosts=None, exclude=None, parallel=DEFAULT_PARALLEL,
         sudo=False, timeout=None, json=False, stream=False, accept_new=False):
    """Run a shell command on the selected hosts; output grouped per host."""
    from ..remote import Runner
    from ..results import all_ok
    from ..ui import run as run_ui
    from ..ui.progress import hosts_progress

    inv = load_inventory()
    targets = selected(inv, roles, hosts, exclude)
    limit = float(timeout) if timeout else inv.ssh.command_timeout
    start = time.monotonic()
    with Runner(inv, parallel=int(parallel), accept_new=accept_new) as runner, \
            hosts_progress("running", len(targets), enabled=not stream) as on_done:
        results = runner.run(targets, command, timeout=limit, use_sudo=sudo,
                             on_line=run_ui.stream_line if stream else None, on_done=on_done)
    if json:
        run_ui.report_json(results)
    else:
        run_ui.report(results, time.monotonic() - start, show_output=not stream)
    if not all_ok(results):
        raise Exit(code=1)
