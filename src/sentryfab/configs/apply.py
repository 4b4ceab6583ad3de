"""How a changed config takes effect, per role: a reload signal now, or a restart by deploy."""

from __future__ import annotations

from ..shell import join
from .catalog import ROLE_FILES

LABEL_ROLE = "sentryfab.role"


def needs_restart(role: str) -> bool:
    """True if a change to any of the role's files only takes effect on a restart."""
    return any(f.apply == "restart" for f in ROLE_FILES[role])


def reload_command(role: str) -> str:
    """SIGHUP every running container of the role (nginx, PgBouncer and PostgreSQL reload on it).

    A role with no running container has nothing to reload: its next start reads the files.
    """
    ids = f"$(docker ps -q --filter {join(['label=' + LABEL_ROLE + '=' + role])})"
    return f"for c in {ids}; do docker kill --signal HUP \"$c\" >/dev/null || exit 1; done"
