"""`fab capacity.tiers`: the events/s one web process and one worker process sustain, on the
lab's real Sentry, kept for `fab capacity`'s throughput per tier.

- web: lab.load's sender straight at the first web process (not through nginx), a few
  requests in flight, offered more than one process can take: accepted per second.
- worker: every worker container stopped while a backlog is queued through nginx, then ONE
  worker process started alone: events stored per second (counted in Sentry's own tables)
  until the backlog is gone. Every worker container is started again, whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..configs.context import settings, web_ports
from ..containers.spec import specs_for
from ..inventory import Inventory
from ..lab import load
from ..remote import Runner
from . import probe_figures
from .discover import cluster_state

WORKERS = "$(docker ps -aq --filter label=sentryfab.role=worker)"


@dataclass(frozen=True)
class TierRates:
    """What one process of each tier sustained, and how it was measured."""

    web: float
    web_accepted: int
    web_seconds: float
    web_p99: float
    worker: float
    worker_stored: int
    worker_seconds: float


def web_rate(inv: Inventory, key: str, seconds: float, ids_dir: Path,
             senders: int = 8) -> load.LoadReport:
    """The first web process, offered 400 events/s by `senders` in flight."""
    host = inv.with_role("web")[0]
    url = f"http://{host.address}:{web_ports(inv, host)[0]}/api/{load.PROJECT_ID}/store/"
    return load.run_load(url, 400, seconds, key=key, concurrency=senders, timeout=30,
                         ids_dir=ids_dir)


def worker_rate(runner: Runner, inv: Inventory, key: str, backlog: int, ids_dir: Path
                ) -> tuple[float, int, float]:
    """(events/s, stored, seconds) of one worker process draining `backlog` alone."""
    workers = inv.with_role("worker")
    first = specs_for(inv, workers[0], "worker")[0].name
    for h in workers:
        runner.session(h).run(f"docker stop {WORKERS} >/dev/null 2>&1; true", timeout=120)
    try:
        sent = load.run_load(load.default_url(inv), 50, backlog / 50, key=key, ids_dir=ids_dir)
        db = inv.host(cluster_state(runner, inv).primary)
        runner.session(workers[0]).run(f"docker start {first} >/dev/null", check=True)
        start = time.monotonic()
        v = load.verify(runner, db, sent.ids_file, wait=1800, poll=1.0)
        took = time.monotonic() - start
    finally:
        for h in workers:
            runner.session(h).run(f"docker start {WORKERS} >/dev/null", timeout=120)
    return v.counts.stored / took, v.counts.stored, took


def measure(runner: Runner, inv: Inventory, key: str, web_seconds: float, backlog: int,
            ids_dir: Path, on_step: Callable[[str], None] = lambda msg: None) -> TierRates:
    """Both tiers, one after the other; the figures are kept for `fab capacity`."""
    on_step(f"web: one process offered 400 events/s for {web_seconds:g} s")
    web = web_rate(inv, key, web_seconds, ids_dir)
    # The workers store what the web phase accepted first: the backlog must be its own.
    load.verify(runner, inv.host(cluster_state(runner, inv).primary), web.ids_file, wait=1800)
    on_step(f"worker: {backlog} events queued, then one worker process drains them alone")
    w_rate, stored, took = worker_rate(runner, inv, key, backlog, ids_dir)
    rates = TierRates(web.accepted / web.seconds, web.accepted, web.seconds,
                      web.latency.get("p99", 0.0), w_rate, stored, took)
    probe_figures.record(inv.cluster, "web", rates.web, "capacity.tiers",
                         {"threads": int(settings(inv, "web")["threads"])})
    probe_figures.record(inv.cluster, "worker", rates.worker, "capacity.tiers",
                         {"concurrency": int(settings(inv, "worker")["concurrency"])})
    return rates
