"""`fab worker.*`: the Sentry workers."""

from __future__ import annotations

from invoke import Collection

from .status import role_status_task

status = role_status_task(
    "worker",
    "Workers: containers, versions, restarts, the queue they consume.",
)

ns = Collection("worker")
ns.add_task(status)
