"""The backup role's facts: the repository host's record of backups and drills, and on each
db host the WAL segments still waiting for the archive.

The commands and parsers are pgBackRest's own module's (containers/pgbackrest.py, beside
what writes the record); these facts only name them for the check script.
"""

from __future__ import annotations

from ...containers import pgbackrest
from .base import FactBase, Lines


class BackupRecord(FactBase):
    """Backups and drills run on the repository host (a file read: cheap)."""

    name = "backup-record"

    @staticmethod
    def command() -> str:
        return pgbackrest.facts_command()

    @staticmethod
    def parse(lines: Lines) -> pgbackrest.BackupFacts:
        return pgbackrest.parse_facts(list(lines))


class ArchiveStatus(FactBase):
    """On a db host: segments waiting for archive-push, and the oldest one's age."""

    name = "db-archive"

    @staticmethod
    def command() -> str:
        return pgbackrest.archive_status_command()

    @staticmethod
    def parse(lines: Lines) -> tuple[int, int] | None:
        return pgbackrest.parse_archive_status(list(lines))
