"""Retention: Sentry's `cleanup --days N`, once a day, on the cron host.

Sentry 9 never deletes events by itself: the database grows until `sentry cleanup` removes
what is older than the retention. A small container beside the cron container
(`sentry-cleanup-1`, the same image) sleeps until the daily hour, runs it, and appends one
line per run to a file on the host, which `fab status` reads:

    <started epoch> <ended epoch> <exit code>

`fab cron.cleanup` runs the very same step at once. The schedule is in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..shell import join
from .runs import Run

#: On the cron host, mounted at the same path into the cleanup container.
STATE_DIR = "/var/lib/sentryfab/cleanup"
RUNS_FILE = f"{STATE_DIR}/runs"
SCHEDULED_FILE = f"{STATE_DIR}/scheduled"
LAST_LOG = f"{STATE_DIR}/last.log"
CONTAINER = "sentry-cleanup-1"
#: Sentry's own default retention (`sentry cleanup --days`), and when the job runs (UTC).
DEFAULT_DAYS = 90
DEFAULT_AT = "03:00"
AT_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def run_step(days: int, config_dir: str) -> str:
    """One cleanup run, recorded: its output in last.log, its times and exit code in runs."""
    sentry = join(["sentry", "--config", config_dir, "cleanup", "--days", str(int(days))])
    return (f"start=$(date -u +%s); {sentry} >{LAST_LOG} 2>&1; rc=$?; "
            f"echo \"$start $(date -u +%s) $rc\" >>{RUNS_FILE}; exit $rc")


def schedule_script(days: int, at: str, config_dir: str) -> str:
    """The cleanup container's command: note when scheduling began, then run the step every
    day at `at` UTC. `sleep & wait` lets `docker stop` end it at once, not after a day."""
    return (f"trap 'exit 0' TERM INT; date -u +%s >{SCHEDULED_FILE}; while :; do "
            f"now=$(date -u +%s); next=$(date -u -d \"$(date -u +%F) {at}\" +%s); "
            f"[ \"$next\" -gt \"$now\" ] || next=$((next + 86400)); "
            f"sleep $((next - now)) & wait $!; ( {run_step(days, config_dir)} ); done")


def now_command(config_dir: str, days: int) -> str:
    """`fab cron.cleanup`: the step, in the running cleanup container, as Sentry's user."""
    return join(["docker", "exec", "--user", "999", CONTAINER, "sh", "-c",
                 run_step(days, config_dir)])


def facts_command() -> str:
    """What status reads: when scheduling began, and the last runs."""
    return (f"echo \"scheduled $(cat {SCHEDULED_FILE} 2>/dev/null)\"; "
            f"tail -n 5 {RUNS_FILE} 2>/dev/null; true")


@dataclass(frozen=True)
class CleanupFacts:
    """The cleanup's record on the cron host."""

    scheduled_since: int | None
    runs: tuple[Run, ...]

    @property
    def last(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    def failed_in_a_row(self) -> int:
        """Runs that failed since the last one that worked."""
        n = 0
        for run in reversed(self.runs):
            if run.ok:
                break
            n += 1
        return n

    def hours_without_a_run(self, now: float) -> float | None:
        """Hours since the last run began, or since scheduling began if none ran yet."""
        since = self.last.started if self.last else self.scheduled_since
        return None if since is None else max(0.0, (now - since) / 3600)


def parse_facts(lines: list[str]) -> CleanupFacts:
    """facts_command's output; lines that are not a record are skipped (a torn last line)."""
    since: int | None = None
    runs = []
    for line in lines:
        parts = line.split()
        if parts[:1] == ["scheduled"]:
            since = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None
        elif len(parts) == 3 and all(p.isdigit() for p in parts):
            runs.append(Run(int(parts[0]), int(parts[1]), int(parts[2])))
    return CleanupFacts(since, tuple(runs))
