"""The backup scheduler's own shell text, run here by `sh` with stand-ins: pgbackrest (records
what it was asked), sleep (returns at once, and ends the run after a few waits). Only the
record folder's path is swapped for a temporary one, so what runs is what the container runs."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

from sentryfab.configs import backup as b
from sentryfab.containers import pgbackrest

FAKE_PGBACKREST = """#!/bin/sh
echo "$*" >> "$LOG"
"""
# Each wait returns at once; the third ends the scheduler (TERM to it: its trap exits 0).
FAKE_SLEEP = """#!/bin/sh
n=$(cat "$COUNT" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$COUNT"
[ $n -ge 3 ] && kill -TERM "$SCHEDULER"
exit 0
"""


def _run(tmp_path: Path, full_on: int) -> tuple[list[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("pgbackrest", FAKE_PGBACKREST), ("sleep", FAKE_SLEEP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    runs = tmp_path / "runs"
    now = datetime.datetime.now(datetime.UTC)
    soon = (now + datetime.timedelta(minutes=2)).strftime("%H:%M")
    later = (now + datetime.timedelta(minutes=5)).strftime("%H:%M")
    script = pgbackrest.schedule_script(soon, later, full_on, [("10.0.0.1", 5432)]).replace(
        b.RUNS_DIR, str(runs))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "LOG": str(tmp_path / "calls"), "COUNT": str(tmp_path / "count")}
    # `exec` so that $$ in the fake sleep's parent is the scheduler itself.
    proc = subprocess.run(["sh", "-c", 'export SCHEDULER=$$; exec sh -c "$0"', script],
                          env=env, timeout=30, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (runs / "scheduled").read_text().strip().isdigit()
    calls = (tmp_path / "calls").read_text().splitlines()
    return calls, (runs / "runs").read_text().splitlines()


def test_the_daily_backup_is_full_on_its_weekday_and_recorded(tmp_path):
    today = datetime.datetime.now(datetime.UTC).weekday()
    calls, runs = _run(tmp_path, full_on=today)
    assert calls[0].endswith(f"--config={pgbackrest.REPO_CONF} --stanza=sentry "
                             "--log-level-console=info --type=full backup"), calls
    assert runs[0].split()[0] == "backup-full" and runs[0].split()[3] == "0", runs


def test_the_other_days_take_a_differential(tmp_path):
    other = (datetime.datetime.now(datetime.UTC).weekday() + 3) % 7
    calls, runs = _run(tmp_path, full_on=other)
    assert calls[0].endswith("--type=diff backup"), calls
    assert [r.split()[0] for r in runs] == ["backup-diff"] * len(runs) and runs
