"""`fab web.*`: the Sentry web processes."""

from __future__ import annotations

from invoke import Collection

from .status import role_status_task

status = role_status_task(
    "web",
    "Web processes: container, version, restarts, /_health/ answer and time of each.",
)

ns = Collection("web")
ns.add_task(status)
