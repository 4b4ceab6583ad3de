"""Remote shell commands built from tokens: every value is quoted, nothing pasted raw.

join() quotes tokens; the combinators below put already-built commands together (as
Kamal's commands/base.rb does), so no builder joins shell text with '; ' by hand. They
never quote: each command they get must come from join() or another builder.
"""

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


def chain(*commands: str) -> str:
    """One after the other, whatever each exits with: 'a; b' (the last one's exit counts)."""
    return "; ".join(commands)


def and_then(*commands: str) -> str:
    """Each only if the one before succeeded: 'a && b'."""
    return " && ".join(commands)


def pipe(*commands: str) -> str:
    """Each one's stdout into the next one's stdin: 'a | b'."""
    return " | ".join(commands)


#: The name pipe() had first.
pipeline = pipe


def quiet(command: str) -> str:
    """The command with its stderr dropped: 'a 2>/dev/null' (a missing file is no error)."""
    return f"{command} 2>/dev/null"


def append_to(command: str, path: str) -> str:
    """The command's stdout appended to a file: 'a >> path'."""
    return f"{command} >> {join([path])}"


def concurrently(*commands: str) -> str:
    """All at once, then wait for every one: 'a & b; wait'."""
    return chain(" & ".join(commands), "wait")
