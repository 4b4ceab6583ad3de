"""`fab lab.*`: the local lab of real hosts: the hosts themselves (up, down, status, ssh),
then the lab's Sentry and its workload (release, dsn, load, verify).

The second group always uses the lab's own inventory (lab/hosts.yaml, written by lab.up),
whatever $SENTRYFAB_INVENTORY says: they build images and send load, which belongs nowhere
else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

from ..errors import LabError
from ..inventory import Inventory
from ._common import handled


def repo_root() -> Path:
    """The checkout `fab` runs in (the folder holding fabfile.py), else the current folder."""
    here = Path.cwd()
    return next((p for p in (here, *here.parents) if (p / "fabfile.py").exists()), here)


@task(auto_shortflags=False,
      help={"hosts": "scale hosts (sshd only) to add to the 11 role hosts, 0-250"})
@handled
def up(c, hosts=0):
    """Bring the lab up, or fix what is missing: role hosts (sshd + Docker) and scale hosts."""
    from .. import lab
    from ..ui import lab as lab_ui

    lab.require_lab_machine()
    lab_ui.show_up(lab.up(int(hosts), repo_root(), on_step=lab_ui.step_printer()))


@task
@handled
def down(c):
    """Remove the lab: processes, namespaces, links, state; keeps the key and cached image."""
    from .. import lab
    from ..ui import lab as lab_ui

    lab.require_lab_machine()
    lab_ui.show_down(lab.down(repo_root(), on_step=lab_ui.step_printer()))


@task(auto_shortflags=False, help={"json": "print machine-readable JSON instead of a table"})
@handled
def status(c, json=False):
    """Show each lab host: network, sshd, Docker engine, image."""
    from .. import lab
    from ..ui import lab as lab_ui

    lab.require_lab_machine()
    lab_ui.show_status(lab.status(), as_json=json)


@task(positional=["host"], auto_shortflags=False,
      help={"host": "lab host name, e.g. web-1 or scale-3",
            "command": "run this instead of an interactive shell"})
@handled
def ssh(c, host, command=None):
    """Open an ssh session on a lab host (host keys checked against lab/known_hosts)."""
    from .. import lab

    argv = lab.ssh_argv(host, repo_root(), command)
    os.execvp(argv[0], argv)


# -- the lab's Sentry and its workload ------------------------------------------------------------


def lab_inventory() -> Inventory:
    """The lab's own inventory (lab/hosts.yaml), whatever $SENTRYFAB_INVENTORY says."""
    from .. import inventory

    path = repo_root() / "lab" / "hosts.yaml"
    if not path.exists():
        raise LabError(f"{path} is missing: bring the lab up first (`fab lab.up`)")
    return inventory.load(path)


def _load_dir() -> Path:
    return repo_root() / "lab" / "load"


def db_host(runner, inv: Inventory, name: str | None = None):
    """The database host to ask: `name`, else wherever the primary is now."""
    from ..errors import UsageError
    from ..procedures.discover import cluster_state

    name = name or cluster_state(runner, inv).primary
    try:
        return inv.host(name)
    except KeyError:
        raise UsageError(f"--db {name}: no such host in {inv.path}") from None


@task(auto_shortflags=False, help={"json": "print machine-readable JSON"})
@handled
def dsn(c, json=False):
    """Print the DSN of the lab's Sentry project (making its owner first if there is none)."""
    import json as jsonlib

    from ..lab import sentry_project
    from ..remote import Runner

    inv = lab_inventory()
    with Runner(inv) as runner:
        db = db_host(runner, inv)
        made = sentry_project.ensure_owner(runner, inv, db)
        value = sentry_project.dsn(runner, inv, db)
    if json:
        print(jsonlib.dumps({"dsn": str(value), "store_url": value.store_url,
                             "owner_created": made}))
    else:
        print(value)


@task(positional=["tag"], auto_shortflags=False,
      help={"tag": "release tag, e.g. 9.1.2-lab2",
            "base": "the real Sentry image it is made from (default 9.1.2; 9.1.1 exists too)",
            "broken": "an entrypoint that exits at once: never healthy (to test rollbacks)",
            "json": "print machine-readable JSON instead of a table"})
@handled
def release(c, tag, base=None, broken=False, json=False):
    """Make lab/sentry:TAG from a real Sentry image on every lab Sentry host."""
    from ..lab import release as lab_release
    from ..remote import Runner
    from ..results import all_ok
    from ..ui import lab as lab_ui
    from ..ui.progress import hosts_progress

    inv = lab_inventory()
    hosts = lab_release.release_hosts(inv)
    start = time.monotonic()
    with Runner(inv) as runner, hosts_progress("building", len(hosts)) as on_done:
        results = lab_release.release(runner, inv, tag, broken=broken, hosts=hosts,
                                      base=base or lab_release.topology.SENTRY_TAG,
                                      on_done=on_done)
    lab_ui.show_release(results, lab_release.image_ref(tag), broken, time.monotonic() - start,
                    as_json=json)
    if not all_ok(results):
        raise Exit(code=1)


@task(auto_shortflags=False,
      help={"rate": "events per second (open loop: sent on schedule, answered or not)",
            "duration": "seconds",
            "url": "store endpoint (default: the lab's nginx, /api/1/store/)",
            "concurrency": "sender threads, bounding the requests in flight (default 64)",
            "json": "print machine-readable JSON instead of a table"})
@handled
def load(c, rate=50.0, duration=10.0, url=None, concurrency=64, json=False):
    """Send events at a steady rate; report outcomes, latency and the longest write outage."""
    from ..lab import load as lab_load
    from ..lab import sentry_project
    from ..remote import Runner
    from ..ui import lab as lab_ui

    inv = lab_inventory()
    with Runner(inv) as runner:
        key = sentry_project.project_key(runner, db_host(runner, inv))
    target = url or lab_load.default_url(inv)
    report = lab_load.run_load(target, float(rate), float(duration), key=key,
                               concurrency=int(concurrency), ids_dir=_load_dir(),
                               on_tick=None if json else lab_ui.load_progress())
    lab_ui.show_load(report, as_json=json)
    if report.interrupted:
        raise Exit(code=130)
    if report.failures:
        raise Exit(code=1)


@task(auto_shortflags=False,
      help={"ids": "ids file written by lab.load (default lab/load/latest.ids)",
            "wait": "seconds to keep checking while accepted events are still missing",
            "db": "database host to ask (default: the primary, found on the db hosts)",
            "json": "print machine-readable JSON instead of a table"})
@handled
def verify(c, ids=None, wait=0.0, db=None, json=False):
    """Check that every event lab.load got accepted is stored in Sentry exactly once."""
    from ..lab import load as lab_load
    from ..remote import Runner
    from ..ui import lab as lab_ui

    inv = lab_inventory()
    ids_file = Path(ids) if ids else _load_dir() / lab_load.LATEST
    with Runner(inv) as runner:
        host = db_host(runner, inv, db)
        report = lab_load.verify(runner, host, ids_file, wait=float(wait),
                                 on_poll=None if json else lab_ui.verify_progress())
    lab_ui.show_verify(report, as_json=json)
    if not report.ok:
        raise Exit(code=1)


ns = Collection("lab", up, down, status, ssh, release, dsn, load, verify)
