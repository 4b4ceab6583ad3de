"""`fab web.scale` and `fab worker.scale`: more or fewer processes per host, rolled out safely."""

from __future__ import annotations

from invoke import task
from invoke.exceptions import Exit

from ._common import DEFAULT_PARALLEL, handled, helps, load_inventory, load_secrets

_HELP = helps(
    "hosts", "exclude", "parallel", "accept-new", "json",
    processes="processes per host after the change",
    batch="hosts per batch: a number or a percentage (default 25%)",
    message="a note for the lock and the audit log",
    ignore_capacity="go ahead even if the capacity check says it overcommits (audited)",
)


def _scale(role: str, processes, hosts, exclude, batch, parallel, accept_new, json,
           message, ignore_capacity=False) -> None:
    """Scale `role`, show the rollout, exit 1 unless every host made it."""
    from ..procedures import rollout
    from ..ui import deploy as deploy_ui
    from .deploy import rollout_display

    opts = rollout.ScaleOptions(  # refuses a missing or zero --processes
        role=role, processes=int(processes) if processes is not None else 0, hosts=hosts,
        exclude=exclude, batch=batch, parallel=int(parallel), accept_new=accept_new,
        message=message, ignore_capacity=ignore_capacity)
    inv = load_inventory()
    report = rollout.scale(inv, opts, lambda: load_secrets(inv), on_event=deploy_ui.event,
                           on_rolled_out=rollout_display(json))
    if not report.ok:
        raise Exit(code=1)


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
