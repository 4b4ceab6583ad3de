#!/usr/bin/env python3
"""The real Sentry 9.1.2 on the lab: events/s per web process and per worker process, and the
lab's total memory.

    python bench/real_sentry.py [--web-seconds 20] [--backlog 600]

Needs a deployed lab (`./dev lab`). It changes the cluster only for its own measurement and
puts it back: every worker container is stopped while a backlog is queued, then ONE worker
process (concurrency 1) drains it alone, then all are started again.

- web: lab.load's sender straight at one web process (web-1:9000, not through nginx), 8
  requests in flight, offered 400 events/s for --web-seconds: accepted per second is what one
  `sentry run web` process (one uWSGI worker, 4 threads) takes on this machine.
- worker: --backlog events queued with the workers stopped, then one worker started: events
  stored per second (counted in Sentry's own tables) until the backlog is gone.
- memory: the RSS of every process in the lab's network namespaces (sshd, dockerd,
  containerd, every container), summed, read from /proc on this machine.

Writes bench/results/real_sentry.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if Path(sys.executable) != VENV_PYTHON and VENV_PYTHON.exists() and __name__ == "__main__":
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])

sys.path.insert(0, str(REPO / "src"))
from sentryfab import inventory  # noqa: E402
from sentryfab.lab import sentry_project  # noqa: E402
from sentryfab.lab.topology import NETNS_PREFIX  # noqa: E402
from sentryfab.procedures import tier_probe  # noqa: E402
from sentryfab.procedures.discover import cluster_state  # noqa: E402
from sentryfab.remote import Runner  # noqa: E402

LAB_INVENTORY = REPO / "lab" / "hosts.yaml"
RESULTS = REPO / "bench" / "results" / "real_sentry.md"


def lab_rss() -> tuple[int, int]:
    """(bytes, processes): RSS of every process living in one of the lab's net namespaces."""
    lab_ns = set()
    for name in os.listdir("/var/run/netns"):
        if name.startswith(NETNS_PREFIX):
            lab_ns.add(os.stat(f"/var/run/netns/{name}").st_ino)
    total = count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino not in lab_ns:
                continue
            with open(f"/proc/{pid}/statm") as f:
                pages = int(f.read().split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += pages * os.sysconf("SC_PAGE_SIZE")
        count += 1
    return total, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--web-seconds", type=float, default=20)
    ap.add_argument("--backlog", type=int, default=600)
    args = ap.parse_args()
    inv = inventory.load(LAB_INVENTORY)
    with Runner(inv) as r:
        key = sentry_project.project_key(r, inv.host(cluster_state(r, inv).primary))
    rss, procs = lab_rss()
    # The same measurement as `fab capacity.tiers` (which also keeps the figures).
    with Runner(inv) as r:
        rates = tier_probe.measure(r, inv, key, args.web_seconds, args.backlog,
                                   REPO / "lab" / "bench", on_step=print)
    w_rate, stored, took = rates.worker, rates.worker_stored, rates.worker_seconds
    rss_after, procs_after = lab_rss()
    gib = 1024 ** 3
    lines = [
        "# The real Sentry 9.1.2 on the lab",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"`python bench/real_sentry.py --web-seconds {args.web_seconds:g} "
        f"--backlog {args.backlog}`",
        "",
        "| what | figure |",
        "| --- | --- |",
        f"| one web process (1 uWSGI worker, 4 threads), 8 senders | "
        f"{rates.web:.1f} events/s accepted ({rates.web_accepted} in "
        f"{rates.web_seconds:.1f} s; p99 {rates.web_p99 * 1000:.0f} ms) |",
        f"| one worker process (`--concurrency 1`) draining a backlog | {w_rate:.1f} events/s "
        f"({stored} stored in {took:.1f} s) |",
        f"| lab memory, RSS of every process in its namespaces (idle) | "
        f"{rss / gib:.2f} GiB in {procs} processes |",
        f"| lab memory after the measurements | {rss_after / gib:.2f} GiB in {procs_after} "
        "processes |",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
