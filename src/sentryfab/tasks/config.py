"""`fab config.diff`, `config.push`, `config.rollback`: rendered configs onto the hosts."""

from __future__ import annotations

import time

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import DEFAULT_PARALLEL, handled, helps, load_inventory, load_secrets, selected

_OPTS = ("roles", "hosts", "exclude", "parallel", "accept-new", "json")


def _render(runner, inv, targets, secrets):
    from ..configs.render import render_all
    from ..procedures.discover import state_for

    # Where the primary is is asked of the db hosts (only when a selected role's files
    # depend on it). Everything is rendered before any file is sent: a template error
    # stops it all here.
    return render_all(inv, targets, secrets, state_for(runner, inv, targets))


def _over_hosts(verb: str, roles, hosts, exclude, parallel, accept_new, run, show, json,
                change: str | None = None):
    """Render, then run one procedure over the selected hosts and show its results; a
    `change` (config.push, config.rollback) runs inside the guard: lock, audit, Ctrl-C."""
    from contextlib import nullcontext

    from ..procedures.guard import guarded
    from ..remote import Runner
    from ..results import all_ok
    from ..ui.progress import hosts_progress

    inv = load_inventory()
    targets = [h for h in selected(inv, roles, hosts, exclude) if h.roles]
    secrets = load_secrets(inv)  # a missing secret stops it before any host is touched
    start = time.monotonic()
    with Runner(inv, parallel=int(parallel), accept_new=accept_new) as runner, \
            (guarded(runner, inv, change, hosts=targets, roles=roles or "")
             if change else nullcontext()) as guard:
        rendered = _render(runner, inv, targets, secrets)
        if guard is not None:
            guard.at(f"{verb} {len(targets)} host(s)")
            guard.touch(targets)
        with hosts_progress(verb, len(targets)) as on_done:
            results = run(runner, inv, targets, rendered, secrets, on_done)
        if guard is not None and not all_ok(results):
            guard.result = "failed: " + ", ".join(r.host.name for r in results if not r.ok)
    show(results, time.monotonic() - start, as_json=json)
    if not all_ok(results):
        raise Exit(code=1)


@task(auto_shortflags=False, help=helps(*_OPTS))
@handled
def diff(c, roles=None, hosts=None, exclude=None, parallel=DEFAULT_PARALLEL, accept_new=False,
         json=False):
    """Show, per host, what a push would change (secrets masked); writes nothing."""
    from ..procedures import configs as procedure
    from ..ui import configs as configs_ui

    def compare(runner, inv, targets, rendered, secrets, on_done):
        return procedure.diff(runner, targets, rendered, secrets, on_done=on_done)

    _over_hosts("comparing", roles, hosts, exclude, parallel, accept_new, compare,
                configs_ui.show_diff, json)


@task(auto_shortflags=False, help=helps(*_OPTS))
@handled
def push(c, roles=None, hosts=None, exclude=None, parallel=DEFAULT_PARALLEL, accept_new=False,
         json=False):
    """Upload changed configs, validate them, swap them in atomically, reload what changed."""
    from ..procedures import configs as procedure
    from ..ui import configs as configs_ui

    def push_all(runner, inv, targets, rendered, secrets, on_done):
        return procedure.push(runner, inv, targets, rendered, secrets, on_done=on_done)

    _over_hosts("pushing", roles, hosts, exclude, parallel, accept_new, push_all,
                configs_ui.show_push, json, change="config.push")


@task(auto_shortflags=False, help=helps(*_OPTS))
@handled
def rollback(c, roles=None, hosts=None, exclude=None, parallel=DEFAULT_PARALLEL,
             accept_new=False, json=False):
    """Put back the previous version of each config file on the selected hosts."""
    from ..procedures import configs as procedure
    from ..ui import configs as configs_ui

    def roll_back(runner, inv, targets, rendered, secrets, on_done):
        return procedure.rollback(runner, targets, rendered, on_done=on_done)

    _over_hosts("rolling back", roles, hosts, exclude, parallel, accept_new, roll_back,
                configs_ui.show_push, json, change="config.rollback")


ns = Collection("config", diff, push, rollback)
