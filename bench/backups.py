#!/usr/bin/env python3
"""Backup, restore and drill times and the repository's size on the lab database, each with
the number of events the database held: the figures the README's "Backups" table quotes.

    python bench/backups.py [--events 1200] [--rate 30]

Needs a deployed lab with a backup host (`./dev lab`); it never starts or stops the lab.
Sends `--events` events through nginx first (lab.load), waits until the workers stored
them, then times with the real commands: a full backup (`fab db.backup --type full`), a
scratch restore of everything archived (`fab db.restore --latest --into backup-1`), and the
drill (`fab db.drill`). Writes bench/results/backups.json and bench/results/backups.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "lab" / "hosts.yaml"
FAB = str(Path(sys.executable).parent / "fab")
RESULTS = REPO / "bench" / "results"


def fab(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "SENTRYFAB_INVENTORY": str(LAB)}
    proc = subprocess.run([FAB, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"fab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc


def timed_json(*args: str) -> tuple[dict, float]:
    started = time.monotonic()
    out = json.loads(fab(*args, "--json").stdout)
    return out, time.monotonic() - started


def events_stored() -> int:
    out = fab("run", "--roles=db", "--json",
              "docker exec --user postgres sentry-db-1 psql -d sentry -XAtc "
              "'select count(*) from sentry_message'")
    counts = [int(h["stdout"].strip()) for h in json.loads(out.stdout)
              if h["stdout"].strip().isdigit()]
    return max(counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1200)
    ap.add_argument("--rate", type=float, default=30)
    args = ap.parse_args()
    if args.events:
        fab("lab.load", "--rate", str(args.rate), "--duration",
            str(max(1, round(args.events / args.rate))))
        fab("lab.verify", "--wait", "600")
    events = events_stored()
    backup, backup_wall = timed_json("db.backup", "--type", "full")
    latest = max(backup["repository"]["backups"], key=lambda b: b["stopped"])
    restore, restore_wall = timed_json("db.restore", "--latest", "--into", "backup-1", "--yes")
    fab("db.restore", "--into", "backup-1", "--discard")
    drill, drill_wall = timed_json("db.drill")
    row = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "events": events,
        "database_bytes": latest["size"],
        "backup_repository_bytes": latest["repo_size"],
        "repository_bytes": backup["repository"]["repository_bytes"],
        "full_backup_seconds": round(backup["seconds"], 1),
        "full_backup_command_seconds": round(backup_wall, 1),
        "scratch_restore_seconds": round(restore["seconds"], 1),
        "scratch_restore_command_seconds": round(restore_wall, 1),
        "drill_ok": drill["ok"],
        "drill_restore_seconds": drill["restore_seconds"],
        "drill_seconds": round(drill["seconds"], 1),
        "drill_command_seconds": round(drill_wall, 1),
        "drill_events": sum(c for _, c in drill["copy_events"]),
    }
    RESULTS.mkdir(exist_ok=True)
    runs_file = RESULTS / "backups.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
    runs.append(row)
    runs_file.write_text(json.dumps(runs, indent=2) + "\n")
    mib = 1024 * 1024
    table = [
        "| events in the database | database | full backup (repository) | full backup | "
        "scratch restore (--latest) | drill (restore / whole) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {r['events']:,} | {r['database_bytes'] / mib:.1f} MiB | "
          f"{r['backup_repository_bytes'] / mib:.1f} MiB | {r['full_backup_seconds']} s | "
          f"{r['scratch_restore_seconds']} s | {r['drill_restore_seconds']} s / "
          f"{r['drill_seconds']} s |" for r in runs),
    ]
    (RESULTS / "backups.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
