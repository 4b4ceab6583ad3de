"""The lab fixture: real hosts (sshd, Docker engines) on this machine, brought up once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from sentryfab import inventory

REPO = Path(__file__).resolve().parents[2]
LAB_INVENTORY = REPO / "lab" / "hosts.yaml"
SCALE_HOSTS = int(os.environ.get("SCALE_HOSTS", "30"))
FAB = str(Path(sys.executable).parent / "fab")


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab():
    """Bring the lab up (idempotent: quick when it is up already) and return its inventory."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    from sentryfab.lab import lab as lab_mod

    lab_mod.up(SCALE_HOSTS, REPO)
    return inventory.load(LAB_INVENTORY)


def fab(*args: str, env: dict | None = None, inv: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `fab` CLI from the repo root against the lab (or another inventory)."""
    full_env = {**os.environ, "SENTRYFAB_INVENTORY": str(inv or LAB_INVENTORY), **(env or {})}
    return subprocess.run([FAB, *args], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def project_key(inv) -> str:
    """The DSN public key of the lab Sentry's project, read from the primary's database."""
    from sentryfab.lab import sentry_project
    from sentryfab.procedures.discover import cluster_state
    from sentryfab.remote import Runner

    with Runner(inv) as r:
        return sentry_project.project_key(r, inv.host(cluster_state(r, inv).primary))


def send_load(inv, rate: float, duration: float, ids_dir: Path, **kw):
    """lab.load's sender against the lab's nginx, with the real project's DSN key."""
    from sentryfab.lab import load

    return load.run_load(load.default_url(inv), rate, duration, key=project_key(inv),
                         ids_dir=ids_dir, **kw)


def load_in_background(inv, rate: float, duration: float, ids_dir: Path
                       ) -> tuple[threading.Thread, dict]:
    """send_load in a thread; its report lands in box["report"] once the thread is done."""
    box: dict = {}

    def go() -> None:
        box["report"] = send_load(inv, rate, duration, ids_dir)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, box


def wait_queue_empty(timeout: float = 300, inv: Path | None = None) -> float:
    """Seconds until every watched Celery queue on the queue Redis is empty (the workers
    have taken every accepted event); AssertionError after `timeout`."""
    import json
    import time

    start = time.monotonic()
    while True:
        proc = fab("status", "--roles=redis-queue", "--json", inv=inv)
        length = json.loads(proc.stdout)["cluster_findings"]["queue_length"] if proc.stdout \
            else None
        if length == 0:
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"queue still holds {length} after {timeout} s"
        time.sleep(3)


def inventory_copy(tmp_path: Path, edit=None) -> Path:
    """The lab inventory with absolute paths (so it can live in tmp) and an optional edit."""
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    for key in ("key_file", "known_hosts"):
        data["ssh"][key] = str(LAB_INVENTORY.parent / data["ssh"][key])
    data["secrets"] = str(LAB_INVENTORY.parent / data["secrets"])
    data["hosts"] = {n: h for n, h in data["hosts"].items() if h["roles"]}
    if edit:
        edit(data)
    # A new file per call: a test keeps its base inventory while it pushes an edited one.
    path = tmp_path / f"hosts-{len(list(tmp_path.glob('hosts-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
