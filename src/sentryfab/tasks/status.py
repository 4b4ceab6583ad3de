"""`fab status`: the whole cluster at a glance; the same round drives `fab <role>.status`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import task
from invoke.exceptions import Exit

from ._common import DEFAULT_PARALLEL, handled, helps, load_inventory, load_secrets

if TYPE_CHECKING:
    from ..procedures.status import Round
    from ..status.model import StatusReport

#: --help of every status task.
STATUS_HELP = helps(
    "roles", "hosts", "exclude", "parallel", "accept-new", "json",
    statsd="send every figure as a statsd gauge to HOST:PORT (default: the inventory's statsd)",
    watch="check again every N seconds, redrawing in place (Ctrl-C stops)",
)


def run_status(roles: str | None, hosts: str | None, exclude: str | None, *,
               parallel: int = DEFAULT_PARALLEL, accept_new: bool = False, json: bool = False,
               statsd: str | None = None, watch: float = 0, detail: str | None = None) -> None:
    """Check the selected hosts once (or every `watch` s), show, send to statsd, exit 0/1/2."""
    from ..procedures import status as procedure
    from ..ui import status as status_ui
    from ..ui.progress import hosts_progress

    inv = load_inventory()
    opts = procedure.StatusOptions(roles, hosts, exclude, parallel=int(parallel),
                                   accept_new=accept_new, statsd=statsd)
    render = status_ui.overview
    if detail:
        from ..ui import status_roles

        def render(r, word=detail):  # noqa: ANN001, ANN202 - a one-line adapter
            return status_roles.detail(r, word)

    with procedure.rounds(inv, opts, lambda: load_secrets(inv)) as rounds:
        if float(watch) > 0:
            report = status_ui.watch(lambda: _note_statsd(rounds.check(), note=False),
                                     float(watch), lambda r: status_ui.frame(r, render(r)),
                                     as_json=json)
        else:
            with hosts_progress("checking", len(rounds.checked), enabled=not json) as on_done:
                report = _note_statsd(rounds.check(on_done), note=not json)
            topo = rounds.topology() if detail == "db" else None
            if json:
                status_ui.show_json(report, with_facts=bool(detail), topology=topo)
            else:
                status_ui.show(report, detail=render(report))
                if topo is not None:
                    from ..ui import failover as failover_ui

                    failover_ui.show_topology(topo)
    if report is not None and report.exit_code:
        raise Exit(code=report.exit_code)


def _note_statsd(done: Round, note: bool) -> StatusReport:
    """Say where the round's figures went (when `note`) or why they could not be sent."""
    from ..ui import status as status_ui

    if done.statsd_problem:
        status_ui.warn(done.statsd_problem)
    elif note and done.statsd is not None:
        status_ui.statsd_note(done.packets, done.gauges, done.statsd)
    return done.report


@task(name="status", auto_shortflags=False, help=STATUS_HELP)
@handled
def status_(c, roles=None, hosts=None, exclude=None, parallel=DEFAULT_PARALLEL,
            accept_new=False, json=False, statsd=None, watch=0):
    """Every host group checked in parallel: what is wrong where (exit 0 ok, 1 warn, 2 crit)."""
    run_status(roles, hosts, exclude, parallel=parallel, accept_new=accept_new, json=json,
               statsd=statsd, watch=watch)


def role_status_task(word: str, doc: str):  # noqa: ANN201 - returns an Invoke task
    """`fab <role>.status`: the same checks for one role, in detail."""
    helps_ = {k: v for k, v in STATUS_HELP.items() if k != "roles"}

    @task(name="status", auto_shortflags=False, help=helps_)
    @handled
    def status(c, hosts=None, exclude=None, parallel=DEFAULT_PARALLEL, accept_new=False,
               json=False, statsd=None, watch=0):
        run_status(word, hosts, exclude, parallel=parallel, accept_new=accept_new, json=json,
                   statsd=statsd, watch=watch, detail=word)

    status.__doc__ = doc
    status.body.__doc__ = doc
    return status
