"""`fab db.*`: the PostgreSQL primary and its replicas."""

from __future__ import annotations

from invoke import Collection

from .status import role_status_task

status = role_status_task(
    "db",
    "PostgreSQL: primary or replica, timeline, replication lag (bytes and seconds), "
    "connections, slots; then the topology with where every PgBouncer points.",
)

ns = Collection("db")
ns.add_task(status)
