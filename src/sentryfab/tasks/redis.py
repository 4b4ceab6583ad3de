"""`fab redis.*`: the cache and queue Redis."""

from __future__ import annotations

from invoke import Collection

from .status import role_status_task

status = role_status_task(
    "redis",
    "Both Redis roles: role, memory vs maxmemory, clients vs maxclients, rejected, "
    "evicted, queue length and growth.",
)

ns = Collection("redis")
ns.add_task(status)
