"""On the lock host: who holds the deploy lock (nothing when it is free).

The command and its parser are the lock's own (lockinfo.py, beside the commands that take and
free it); this fact only names them for the check script.
"""

from __future__ import annotations

from ...lockinfo import LockInfo, parse_info, status_command
from .base import FactBase, Lines


class DeployLock(FactBase):
    """The deploy lock's holder."""

    name = "deploy-lock"

    @staticmethod
    def command() -> str:
        """The holder's details file, or nothing."""
        return status_command()

    @staticmethod
    def parse(lines: Lines) -> LockInfo | None:
        """The holder, or None when the lock is free."""
        return parse_info("\n".join(lines))
