"""`fab web.scale` and `fab worker.scale`: more or fewer processes per host, rolled out safely."""

from __future__ import annotations

from invoke import task
from invoke.exceptions import Exit

from ._common import DEFAULT_PARALLEL, handled, helps, load_inventory, load_secrets, selected

_HELP = helps(
    "hosts", "exclude", "parallel", "accept-new", "json",
    processes="processes per host after the change",
    batch="hosts per batch: a number or a percentage (default 25%)",
    message="a note for the lock and the audit log",
    ignore_capacity="go ahead even if the capacity check says it overcommits (audited)",
)


def _scale(role: str, processes, hosts, exclude, batch, parallel, accept_new, json,
           message, ignore_capacity=False) -> None:
    import dataclasses
    import time

    from ..configs.context import initial_state, web_ports
    from ..errors import UsageError
    from ..inventory_edit import set_role_var
    from ..procedures.deploy import Deployer
    from ..procedures.guard import guarded
    from ..remote import Runner
    from ..ui import deploy as deploy_ui

    if processes is None or int(processes) < 1:
        raise UsageError(f"{role}.scale needs --processes N (at least 1)")
    n = int(processes)
    inv = load_inventory()
    # The rollout sees the new count everywhere (containers, nginx's upstreams) before the
    # inventory file says so; the file is changed only once the rollout succeeded.
    scaled = dataclasses.replace(inv, roles={**inv.roles, role: {**inv.role_vars(role),
                                                                  "processes": n}})
    targets = [h for h in selected(scaled, None, hosts, exclude) if h.has(role)]
    left_out = [h.name for h in inv.with_role(role) if h not in targets
                and "processes" not in h.vars]
    if left_out:
        raise UsageError(
            f"{role}.scale sets roles.{role}.processes, which every {role} host follows, but "
            f"the selection leaves out {', '.join(left_out)}: they would run a count the "
            f"inventory no longer says (scale the whole role, or give those hosts their own "
            f"'processes' in their vars first)")
    start = time.monotonic()
    with Runner(scaled, parallel=int(parallel), accept_new=accept_new) as runner, \
            guarded(runner, scaled, f"{role}.scale", hosts=targets, message=message,
                    preflight=f"{role}.scale --processes {n}",
                    ignore_capacity=ignore_capacity, processes=n) as change:
        d = Deployer(runner, scaled, load_secrets(inv), initial_state(inv),
                     on_event=deploy_ui.event,
                     scaling_from={h.name: len(web_ports(inv, h)) for h in targets}
                     if role == "web" else {}, change=change)
        report = d.deploy_role(role, targets, batch=batch, count=n)
        if not report.ok:
            change.result = f"failed: {report.stopped or 'hosts failed'}"
        if report.ok and report.changed and role == "web":
            change.at("nginx: the new processes into rotation")
            d.push_nginx()  # nginx now lists exactly the new processes
    deploy_ui.show([report], time.monotonic() - start, as_json=json)
    if not report.ok:
        raise Exit(code=1)
    set_role_var(inv.path, role, "processes", n)
    deploy_ui.event(role, f"{inv.path}: roles.{role}.processes is now {n}")


@task(name="scale", auto_shortflags=False, help=_HELP)
@handled
def web_scale(c, processes=None, hosts=None, exclude=None, batch=None,
              parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="",
              ignore_capacity=False):
    """Run N web processes per host (one container and port each), batch by batch."""
    _scale("web", processes, hosts, exclude, batch, parallel, accept_new, json, message,
           ignore_capacity)


@task(name="scale", auto_shortflags=False, help=_HELP)
@handled
def worker_scale(c, processes=None, hosts=None, exclude=None, batch=None,
                 parallel=DEFAULT_PARALLEL, accept_new=False, json=False, message="",
                 ignore_capacity=False):
    """Run N worker processes per host, batch by batch."""
    _scale("worker", processes, hosts, exclude, batch, parallel, accept_new, json, message,
           ignore_capacity)
