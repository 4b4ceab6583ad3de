"""The daily retention cleanup's record on the cron host: when scheduling began, its last runs.

The command and its parser are the cleanup job's own (containers/cleanup.py, beside the
container that writes the record); this fact only names them for the check script.
"""

from __future__ import annotations

from ...containers import cleanup
from .base import FactBase, Lines


class Cleanup(FactBase):
    """The retention cleanup's schedule and runs."""

    name = "cron-cleanup"

    @staticmethod
    def command() -> str:
        """The scheduled-since file and the last runs."""
        return cleanup.facts_command()

    @staticmethod
    def parse(lines: Lines) -> cleanup.CleanupFacts:
        """When scheduling began and each run's start, end and exit code."""
        return cleanup.parse_facts(list(lines))
