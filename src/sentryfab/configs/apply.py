"""How a changed config takes effect, per role: a reload signal now, or a restart by deploy."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from ..shell import join
from .catalog import ROLE_FILES, ConfigFile

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


_SETTING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*?)\s*$")


def start_only(f: ConfigFile, content: str) -> str:
    """The part of a file that only takes effect when its program starts: all of a
    "restart" file; of a reloaded file, its restart_keys settings (last one wins, as in
    postgresql.conf); nothing otherwise."""
    if f.apply == "restart":
        return content
    if not f.restart_keys:
        return ""
    found: dict[str, str] = {}
    for line in content.splitlines():
        m = _SETTING.match(line.split("#", 1)[0])
        if m and m.group(1).lower() in f.restart_keys:
            found[m.group(1).lower()] = m.group(2)
    return "".join(f"{k}={found[k]}\n" for k in sorted(found))


def config_digest(files: Iterable[tuple[ConfigFile, str]]) -> str:
    """What a container's config label records: a digest of the start-only part of its
    role's files. A change a reload applies (PgBouncer's [databases] after a failover,
    synchronous_standby_names, nginx upstreams) leaves it as it is, so deploy reloads
    rather than restarts for it."""
    h = hashlib.sha256()
    for f, content in files:
        h.update(f"{f.name}\0{start_only(f, content)}\0".encode())
    return h.hexdigest()[:12]
