"""`fab capacity`: which component chokes first, before it does."""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import handled, helps, load_inventory


@task(name="check", default=True, auto_shortflags=False, help=helps(
    "json", "accept-new",
    offline="use the sizes declared in the inventory (vars ram, nofile, somaxconn) "
            "instead of reading them from the hosts"))
@handled
def check(c, offline=False, json=False, accept_new=False):
    """Per tier: limit, planned use, headroom, and the first component to run out."""
    from ..procedures import capacity
    from ..remote import Runner
    from ..ui import capacity as capacity_ui

    inv = load_inventory()
    if offline:
        report = capacity.check(inv, None)
    else:
        with Runner(inv, accept_new=accept_new) as runner:
            report = capacity.check(inv, runner)
    capacity_ui.show(report, as_json=json)
    if report.over:
        raise Exit(code=1)


ns = Collection("capacity")
ns.add_task(check, default=True)
