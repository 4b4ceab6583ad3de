"""`fab nginx.*`: the load balancers."""

from __future__ import annotations

from invoke import Collection

from .status import role_status_task

status = role_status_task(
    "nginx",
    "nginx: connections, and every upstream probed from the nginx host.",
)

ns = Collection("nginx")
ns.add_task(status)
