"""`fab cron.*`: the one Sentry cron, and the daily retention cleanup beside it."""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import handled, load_inventory
from .status import role_status_task

status = role_status_task(
    "cron",
    "The cron: where it runs (exactly one in the cluster), version, restarts, and the "
    "retention cleanup's last runs.",
)


@task(name="cleanup", auto_shortflags=False, help={
    "days": "keep this many days instead of the inventory's retention_days (default 90)"})
@handled
def cleanup_(c, days=None):
    """Run Sentry's retention cleanup now on the cron host (as the daily job does, recorded
    for fab status): events older than retention_days are deleted."""
    from ..configs.catalog import CONFIG_ROOT
    from ..configs.context import retention
    from ..containers import cleanup
    from ..procedures.guard import guarded
    from ..remote import Runner
    from ..ui import run as run_ui

    inv = load_inventory()
    [host] = inv.with_role("cron")  # validation guarantees exactly one
    keep = int(days) if days is not None else retention(inv)["days"]
    with Runner(inv) as runner, guarded(runner, inv, "cron.cleanup", hosts=[host],
                                        days=keep) as change:
        change.at(f"cleanup --days {keep} on {host.name}")
        [r] = runner.run([host], cleanup.now_command(f"{CONFIG_ROOT}/cron", keep), timeout=3600)
        if not r.ok:
            change.result = f"failed: {r.error}"
        log = runner.run([host], f"tail -n 20 {cleanup.LAST_LOG}")[0]
    print(log.stdout, end="")
    run_ui.report([r], r.seconds, show_output=False)
    if not r.ok:
        raise Exit(code=1)


ns = Collection("cron")
ns.add_task(status)
ns.add_task(cleanup_)
