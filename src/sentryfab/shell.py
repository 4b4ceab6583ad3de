"""Remote shell commands built from tokens: every value is quoted, nothing pasted raw."""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def join(tokens: Iterable[str | int]) -> str:
    """Quote each token for a POSIX shell and join them: ['echo', 'a b'] -> "echo 'a b'"."""
    return " ".join(shlex.quote(str(t)) for t in tokens)


def script(command: str) -> str:
    """Run a user's shell text under sh, whatever the remote login shell is."""
    return join(["sh", "-c", command])


#: Root through sudo, never prompting (a prompt would hang a fan-out); become.wrap uses it too.
SUDO = ("sudo", "-n", "-H", "--", "sh", "-c")


def sudo(command: str) -> str:
    """Run a shell text as root through sudo (`fab run --sudo`, and `become: sudo` hosts)."""
    return join([*SUDO, command])


def pipeline(*commands: str) -> str:
    """Join already-built commands with '|' (each must come from join())."""
    return " | ".join(commands)


def and_then(*commands: str) -> str:
    """Join already-built commands with '&&' (each must come from join())."""
    return " && ".join(commands)
