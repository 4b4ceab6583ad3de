"""What every fact shares: its shape (a command and a parser), its framing, its time limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...shell import join

#: Each fact prints '@@ <name>', its raw output, then '@@rc <exit code>'.
MARK = "@@"
#: Seconds any one docker/psql/redis-cli call may take before it is cut off.
FACT_TIMEOUT = 10

#: A fact's output: what its command printed, stdout and stderr together, line by line.
Lines = tuple[str, ...]


@dataclass(frozen=True)
class Fact:
    """One named piece of a check script: '@@ name', what `command` prints, '@@rc N'."""

    name: str
    command: str

    def text(self) -> str:
        """The fact as shell text (its exit code is printed, never lost)."""
        return f"{join(['echo', f'{MARK} {self.name}'])}; {self.command}; echo \"{MARK}rc $?\""


class FactBase:
    """A kind of fact: `command(...)` builds what a host runs, `parse(lines)` reads its output.

    Parsers ignore lines they do not understand, so a warning printed by a tool never breaks
    a round. Subclasses define both as static methods and set `name`.
    """

    name: ClassVar[str]

    @classmethod
    def fact(cls, *args: Any) -> Fact:
        """This fact for one host: its name and its command built from `args`."""
        return Fact(cls.name, cls.command(*args))  # type: ignore[attr-defined]


def timed(argv: list[str]) -> str:
    """A command that gives up after FACT_TIMEOUT (a hung Docker engine must not hang us)."""
    return join(["timeout", str(FACT_TIMEOUT), *argv])


def ints(text: str) -> list[int]:
    """The whole numbers among the words of `text`."""
    return [int(word) for word in text.split() if word.lstrip("-").isdigit()]
