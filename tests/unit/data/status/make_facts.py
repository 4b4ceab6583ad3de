"""Writes the fact outputs the lab captures lack: each fact's own command, framed as the check
script frames it, run here by `sh` against stand-ins instead of a lab host.

    .venv/bin/python tests/unit/data/status/make_facts.py

- nginx-1-ingest.out, worker-1-payloads.out: nginx-ingest and worker-payloads over the sample
  logs of test_status_ingestion.py, `docker logs` being its stand-in (FAKE_DOCKER);
- worker-1-cleanup.out: cron-cleanup over a cleanup record (scheduled, three runs, the last
  one failed) in a folder standing in for /var/lib/sentryfab/cleanup;
- nginx-1-changed.out: nginx-changed on a file standing in for the deployed nginx.conf;
- nginx-1-lock-held.out, nginx-1-lock-free.out: deploy-lock with the lock's info file written
  as acquire_command writes it, and with no lock.

Only the paths in a command are swapped for the stand-ins' (printed beside each file's name),
so what a parser reads is what the command prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from sentryfab import lockinfo  # noqa: E402
from sentryfab.containers import cleanup  # noqa: E402
from sentryfab.status.facts.cleanup import Cleanup  # noqa: E402
from sentryfab.status.facts.ingestion import NginxIngest, WorkerPayloads  # noqa: E402
from sentryfab.status.facts.lock import DeployLock  # noqa: E402
from sentryfab.status.facts.nginx import NGINX_CONF, NginxChanged  # noqa: E402
from tests.unit.test_status_ingestion import (  # noqa: E402
    FAKE_DOCKER,
    NGINX_STDERR,
    NGINX_STDOUT,
    WORKER_1_LOG,
    WORKER_2_LOG,
)

#: When nginx.conf last changed, and the cleanup's record (unix seconds, late 2026).
CHANGED = 1795755300
SCHEDULED = 1795400000
RUNS = ["1795496400 1795497012 0", "1795582800 1795583391 0", "1795669200 1795669206 1"]
HOLDER = lockinfo.LockInfo("alice", "2026-11-27T03:00:00Z", "deploy.web", "hotfix 9.1.2-2",
                           "3f9c2a", "ops-laptop", 4242)


def run(fact_text: str, folder: Path) -> str:
    """The framed fact run by sh, `docker` on PATH being the stand-in in `folder`."""
    env = {"PATH": f"{folder}:/usr/bin:/bin", "LOGS": str(folder)}
    done = subprocess.run(["sh", "-c", fact_text], capture_output=True, text=True, env=env,
                          check=True)
    return done.stdout


def lines(*texts: list[str]) -> str:
    return "".join(line + "\n" for text in texts for line in text)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "docker").write_text(FAKE_DOCKER)
        (folder / "docker").chmod(0o755)
        (folder / "sentry-nginx-1.out").write_text(lines(NGINX_STDOUT))
        (folder / "sentry-nginx-1.err").write_text(lines(NGINX_STDERR))
        (folder / "sentry-worker-1.out").write_text("")
        (folder / "sentry-worker-1.err").write_text(lines(WORKER_1_LOG))
        (folder / "sentry-worker-2.out").write_text(lines(WORKER_2_LOG))
        state = folder / "cleanup"
        state.mkdir()
        (state / "scheduled").write_text(f"{SCHEDULED}\n")
        (state / "runs").write_text(lines(RUNS))
        conf = folder / "nginx.conf"
        conf.write_text("events {}\n")
        os.utime(conf, (CHANGED, CHANGED))
        lock = folder / "deploy.lock"

        outputs = {
            "nginx-1-ingest": NginxIngest.fact("sentry-nginx-1").text(),
            "worker-1-payloads": WorkerPayloads.fact(
                ["sentry-worker-1", "sentry-worker-2", "sentry-worker-3"]).text(),
            "worker-1-cleanup": Cleanup.fact().text().replace(cleanup.STATE_DIR, str(state)),
            "nginx-1-changed": NginxChanged.fact().text().replace(NGINX_CONF, str(conf)),
            "nginx-1-lock-free": DeployLock.fact().text().replace(lockinfo.LOCK_DIR,
                                                                  str(lock)),
        }
        for name, text in outputs.items():
            (HERE / f"{name}.out").write_text(run(text, folder))
            print(f"{name}.out")
        lock.mkdir()
        # As acquire_command writes it: printf '%s\n' of the holder's JSON.
        (lock / "info").write_text(json.dumps(HOLDER.__dict__) + "\n")
        text = DeployLock.fact().text().replace(lockinfo.LOCK_DIR, str(lock))
        (HERE / "nginx-1-lock-held.out").write_text(run(text, folder))
        print("nginx-1-lock-held.out")


if __name__ == "__main__":
    main()
