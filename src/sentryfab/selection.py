"""--roles / --hosts / --exclude: which hosts a command acts on. Empty is an error."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .errors import SelectionError
from .inventory import Host, Inventory, _suggest
from .roles import ROLE_GROUPS, ROLES, expand_role


@dataclass(frozen=True)
class Selection:
    """What the user asked for, as given on the command line (comma-separated words)."""

    roles: str | None = None
    hosts: str | None = None
    exclude: str | None = None

    def describe(self) -> str:
        """The selection as the options that made it, for messages."""
        parts = [f"--{k}={v}" for k, v in
                 (("roles", self.roles), ("hosts", self.hosts), ("exclude", self.exclude)) if v]
        return " ".join(parts) or "(all hosts)"


def split_words(value: str | None) -> list[str]:
    """'web, worker' -> ['web', 'worker']; None or '' -> []."""
    return [w.strip() for w in (value or "").split(",") if w.strip()]


def select(inv: Inventory, sel: Selection) -> list[Host]:
    """Hosts matching the selection, in inventory order; raise SelectionError if none."""
    chosen = list(inv.hosts)
    roles = split_words(sel.roles)
    if roles:
        wanted: set[str] = set()
        for word in roles:
            if word not in ROLES and word not in ROLE_GROUPS:
                known = ROLES + tuple(ROLE_GROUPS)
                raise SelectionError(f"--roles: unknown role '{word}'{_suggest(word, known)}")
            wanted.update(expand_role(word))
        chosen = [h for h in chosen if wanted.intersection(h.roles)]
    patterns = split_words(sel.hosts)
    if patterns:
        for p in patterns:
            if not _matching(inv.hosts, p):
                names = [h.name for h in inv.hosts]
                raise SelectionError(f"--hosts: no host matches '{p}'{_suggest(p, names)}")
        chosen = [h for h in chosen if any(_match(h, p) for p in patterns)]
    for p in split_words(sel.exclude):
        chosen = [h for h in chosen if not _match(h, p)]
    if not chosen:
        raise SelectionError(f"the selection {sel.describe()} matches no host: nothing to do")
    return chosen


def _matching(hosts: tuple[Host, ...], pattern: str) -> list[Host]:
    return [h for h in hosts if _match(h, pattern)]


def _match(host: Host, pattern: str) -> bool:
    # Glob on the name, or an exact address, as people type either.
    return fnmatch.fnmatchcase(host.name, pattern) or host.address == pattern
