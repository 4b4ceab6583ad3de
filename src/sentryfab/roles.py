"""The roles a host can have, what each needs from the rest of the cluster, and their groups."""

from __future__ import annotations

#: Every role sentryfab knows, in dependency (deploy) order.
ROLES: tuple[str, ...] = (
    "db",
    # After db: its stanza is created against a running primary (the db hosts' archiving
    # retries until then; no WAL is dropped).
    "backup",
    "pgbouncer",
    "redis-cache",
    "redis-queue",
    "web",
    "worker",
    "cron",
    "nginx",
)

#: A role that exists in the cluster needs at least one host of each of these.
ROLE_NEEDS: dict[str, tuple[str, ...]] = {
    "web": ("pgbouncer", "redis-cache", "redis-queue"),
    "worker": ("pgbouncer", "redis-queue"),
    "cron": ("pgbouncer", "redis-queue"),
    "pgbouncer": ("db",),
    "backup": ("db",),
    "nginx": ("web",),
}

#: Roles that run Sentry itself (one image, different commands).
SENTRY_ROLES: tuple[str, ...] = ("web", "worker", "cron")

#: Roles that run Redis (two profiles of one image).
REDIS_ROLES: tuple[str, ...] = ("redis-cache", "redis-queue")

#: Names accepted by --roles that stand for several inventory roles.
ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "redis": REDIS_ROLES,
    "sentry": SENTRY_ROLES,
}


def expand_role(name: str) -> tuple[str, ...]:
    """Map a --roles word to inventory roles ('redis' -> both Redis profiles)."""
    return ROLE_GROUPS.get(name, (name,))
