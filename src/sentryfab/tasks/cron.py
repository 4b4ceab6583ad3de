"""`fab cron.*`: the one Sentry cron."""

from __future__ import annotations

from invoke import Collection

from .status import role_status_task

status = role_status_task(
    "cron",
    "The cron: where it runs (exactly one in the cluster), version, restarts.",
)

ns = Collection("cron")
ns.add_task(status)
