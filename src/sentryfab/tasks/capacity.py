"""`fab capacity`: which component chokes first, before it does."""

from __future__ import annotations

from invoke import Collection, task
from invoke.exceptions import Exit

from ._common import handled, helps, load_inventory


@task(name="check", default=True, auto_shortflags=False, help=helps(
    "json", "accept-new",
    offline="use the figures declared in the inventory (host vars ram, nofile, somaxconn, "
            "data_disk; db settings bytes_per_event, wal_bytes_per_event) instead of reading "
            "them from the hosts",
    window="seconds the db hosts' WAL and stored events are watched for (default 10; 0 "
           "skips it: declared WAL per event)"))
@handled
def check(c, offline=False, json=False, accept_new=False, window=10.0):
    """Per tier: limit, planned use, headroom; the disk forecast and the events/s per tier.

    Exit 1 when a limit is over or a db host's disk fills within the retention window."""
    from ..procedures import capacity
    from ..remote import Runner
    from ..ui import capacity as capacity_ui

    inv = load_inventory()
    if offline:
        result = capacity.outlook(inv, None)
    else:
        with Runner(inv, accept_new=accept_new) as runner:
            result = capacity.outlook(inv, runner, float(window))
    capacity_ui.show_outlook(result, as_json=json)
    if result.exit_code:
        raise Exit(code=result.exit_code)


@task(name="probe", auto_shortflags=False, help={
    "start": "first rate, events/s (default 50)",
    "factor": "each step's rate is the last one's times this (default 1.5)",
    "step_seconds": "how long each rate is held (default 10)",
    "max_rate": "stop there even if nothing broke (default 5000)",
    "max_p99_ms": "a step whose p99 latency passes this fails (default 2000)",
    "output": "the PNG plot (default lab/probe/probe.png)",
    "json": "print machine-readable JSON instead of a table"})
@handled
def probe(c, start=50.0, factor=1.5, step_seconds=10.0, max_rate=5000.0, max_p99_ms=2000.0,
          output=None, json=False):
    """Ramp the lab's event rate until errors or latency cross a threshold; what saturated."""
    from pathlib import Path

    from ..lab import sentry_project
    from ..procedures import probe as procedure
    from ..remote import Runner
    from ..ui import probe as probe_ui
    from ._common import load_secrets
    from .lab import db_host, lab_inventory, repo_root

    inv = lab_inventory()  # load is only ever sent to the lab
    with Runner(inv) as runner:
        key = sentry_project.project_key(runner, db_host(runner, inv))
        report = procedure.probe(runner, inv, load_secrets(inv), key=key, start=float(start),
                                 factor=float(factor), step_seconds=float(step_seconds),
                                 max_rate=float(max_rate), max_p99_ms=float(max_p99_ms),
                                 on_step=probe_ui.step_line)
    png = probe_ui.plot(report, Path(output) if output else
                        repo_root() / "lab" / "probe" / "probe.png")
    probe_ui.show(report, png, as_json=json)


@task(name="tiers", auto_shortflags=False, help={
    "web_seconds": "one web process is sent 400 x this many events, 8 at a time (default 20); "
                   "what it accepts per second is its rate",
    "backlog": "events queued for one worker process to drain alone (default 600)",
    "json": "print machine-readable JSON instead of a table"})
@handled
def tiers(c, web_seconds=20.0, backlog=600, json=False):
    """Events/s one web process and one worker process sustain on the lab; kept for
    `fab capacity`'s throughput per tier (the workers are stopped meanwhile, then started)."""
    from dataclasses import asdict

    from ..lab import sentry_project
    from ..procedures import tier_probe
    from ..remote import Runner
    from ..ui.console import err, out, print_json
    from .lab import db_host, lab_inventory, repo_root

    inv = lab_inventory()  # load is only ever sent to the lab
    with Runner(inv) as runner:
        key = sentry_project.project_key(runner, db_host(runner, inv))
        rates = tier_probe.measure(runner, inv, key, float(web_seconds), int(backlog),
                                   repo_root() / "lab" / "load",
                                   on_step=lambda msg: err.print(f"[capacity.tiers] {msg}"))
    if json:
        print_json(asdict(rates))
        return
    out.print(f"one web process: {rates.web:.1f} events/s ({rates.web_accepted} accepted in "
              f"{rates.web_seconds:.1f} s, p99 {rates.web_p99 * 1000:.0f} ms)")
    out.print(f"one worker process: {rates.worker:.1f} events/s ({rates.worker_stored} stored "
              f"in {rates.worker_seconds:.1f} s)")
    out.print("kept for `fab capacity` (throughput per tier)")


ns = Collection("capacity")
ns.add_task(check, default=True)
ns.add_task(probe)
ns.add_task(tiers)
