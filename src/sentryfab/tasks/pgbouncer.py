"""`fab pgbouncer.*`: the connection poolers."""

from __future__ import annotations

from invoke import Collection

from .status import role_status_task

status = role_status_task(
    "pgbouncer",
    "PgBouncer: pools (waiting clients, longest wait), stats, and which database it "
    "points at.",
)

ns = Collection("pgbouncer")
ns.add_task(status)
