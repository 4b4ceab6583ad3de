"""Per-host outcomes: every host ends in exactly one of ok, failed or unreachable."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from .inventory import Host

Status = Literal["ok", "failed", "unreachable"]
STATUSES: tuple[Status, ...] = ("ok", "failed", "unreachable")


@dataclass
class HostResult:
    """What happened on one host: its state, the reason, and what it printed."""

    host: Host
    status: Status
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    seconds: float = 0.0
    value: Any = None

    @property
    def ok(self) -> bool:
        """True when the host did what was asked."""
        return self.status == "ok"

    def as_record(self) -> dict[str, Any]:
        """The --json record of this host."""
        return {
            "host": self.host.name,
            "address": self.host.address,
            "status": self.status,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


def tally(results: list[HostResult]) -> dict[Status, int]:
    """Count of hosts per state, every state present (zero included)."""
    counts = Counter(r.status for r in results)
    return {s: counts.get(s, 0) for s in STATUSES}


def all_ok(results: list[HostResult]) -> bool:
    """True only if every host is ok (and there was at least one)."""
    return bool(results) and all(r.ok for r in results)


def stderr_tail(text: str, lines: int = 5) -> str:
    """The last few lines of stderr: enough to say why, short enough for a table."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
