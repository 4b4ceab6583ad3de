"""One recorded run of a scheduled job (the retention cleanup, a backup, a drill), as the
job's record file on its host has it: `[kind] <started> <ended> <exit code>`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """When a run started and ended (epoch seconds), its exit code, and what it was."""

    started: int
    ended: int
    exit_code: int
    kind: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0
