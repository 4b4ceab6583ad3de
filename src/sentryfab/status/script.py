"""The one check script a host runs per round, and the parser that cuts its output back up.

Every fact of every role the host has (facts/), in parallel. Each fact prints '@@ <name>'
then its raw output then '@@rc <exit code>'; facts that may take a while (docker, curl,
redis-cli, psql) run as background jobs of the one script, so a host answers in about the
time of its slowest fact, not their sum. Secrets are read from stdin, one per line, into shell
variables and handed to `docker exec -i` by printf (a shell builtin): they never appear in any
argv. split() turns the answer into one Section per fact, for each fact's own parser.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..containers.spec import specs_for
from ..errors import SentryfabError
from ..inventory import Host, Inventory
from ..lockinfo import lock_host
from ..shell import script
from .facts.backup import ArchiveStatus, BackupRecord
from .facts.base import FACT_TIMEOUT, MARK, Fact
from .facts.cleanup import Cleanup
from .facts.db import Db
from .facts.docker import Docker
from .facts.host import host_facts
from .facts.ingestion import NginxIngest, WorkerPayloads
from .facts.lock import DeployLock
from .facts.nginx import nginx_facts
from .facts.pgbouncer import Pgbouncer
from .facts.redis import Redis
from .facts.web import WebHealth

#: Which secret each role's facts need on stdin.
ROLE_SECRETS = {"redis-cache": "redis_password", "redis-queue": "redis_password",
                "pgbouncer": "pgbouncer_admin_password"}


@dataclass(frozen=True)
class CheckScript:
    """A host's whole round: the command, what to send on stdin, and the facts it prints."""

    command: str
    stdin: bytes | None
    facts: tuple[str, ...]
    secrets: tuple[str, ...]


def _secret_var(index: int) -> str:
    return f"SFB_SECRET_{index}"


def secrets_needed(host: Host) -> tuple[str, ...]:
    """The secrets a host's facts read, in the order they are sent on stdin."""
    needed: list[str] = []
    for role in host.roles:
        name = ROLE_SECRETS.get(role)
        if name and name not in needed:
            needed.append(name)
    return tuple(needed)


def jobs_for(inv: Inventory, host: Host) -> list[list[Fact]]:
    """The host's facts grouped into jobs: facts of one job run in turn, jobs in parallel."""
    var = {name: _secret_var(index) for index, name in enumerate(secrets_needed(host))}
    jobs: list[list[Fact]] = [host_facts()]
    if not host.roles:
        return jobs
    jobs.append([Docker.fact()])
    for role in host.roles:
        containers = [spec.name for spec in specs_for(inv, host, role)]
        if role == "web":
            jobs.append([WebHealth.fact(inv, host)])
        elif role == "nginx":
            jobs += [[fact] for fact in nginx_facts(inv, host)]
            jobs.append([NginxIngest.fact(containers[0], FACT_TIMEOUT)])
        elif role == "worker":
            jobs.append([WorkerPayloads.fact(containers, FACT_TIMEOUT)])
        elif role in ("redis-cache", "redis-queue"):
            jobs.append([Redis.fact(inv, host, role, containers[0],
                                    var[ROLE_SECRETS[role]])])
        elif role == "db":
            jobs.append([Db.fact(containers[0])])
            if inv.with_role("backup"):
                jobs.append([ArchiveStatus.fact()])
        elif role == "pgbouncer":
            jobs.append([Pgbouncer.fact(inv, host, containers[0], var[ROLE_SECRETS[role]])])
        elif role == "cron":  # besides its containers (the docker fact): the cleanup's runs
            jobs.append([Cleanup.fact()])
        elif role == "backup":  # the record of backups and drills (no pgBackRest run)
            jobs.append([BackupRecord.fact()])
    if host.name == lock_host(inv).name:
        jobs.append([DeployLock.fact()])
    return jobs


def build(inv: Inventory, host: Host, secret_values: dict[str, str]) -> CheckScript:
    """The host's one command and its stdin; `secret_values` maps secret name -> value."""
    needed = secrets_needed(host)
    for name in needed:
        if "\n" in secret_values[name] or "\r" in secret_values[name]:
            raise SentryfabError(f"secret '{name}' holds a line break: it cannot be sent to "
                                 f"{host.name}'s status check")
    jobs = jobs_for(inv, host)
    lines = [f"IFS= read -r {_secret_var(index)}" for index in range(len(needed))]
    lines.append("SFB_T0=$(date +%s%N)")
    if len(jobs) == 1:
        lines.append("; ".join(fact.text() for fact in jobs[0]))
    else:
        # Each job writes its own file; they are printed in a fixed order once all are done.
        lines += ["SFB_D=$(mktemp -d /tmp/sentryfab-status.XXXXXX) || exit 97",
                  "trap 'rm -rf \"$SFB_D\"' EXIT"]
        for index, job in enumerate(jobs):
            lines.append(f"{{ {'; '.join(fact.text() for fact in job)}; }} "
                         f">\"$SFB_D/{index}\" 2>&1 &")
        lines += ["wait", "cat " + " ".join(f'"$SFB_D/{index}"' for index in range(len(jobs)))]
    lines.append(f'echo "{MARK} end $SFB_T0 $(date +%s%N)"')
    stdin = ("".join(secret_values[name] + "\n" for name in needed)).encode() if needed else None
    return CheckScript(command=script("\n".join(lines)), stdin=stdin,
                       facts=tuple(fact.name for job in jobs for fact in job), secrets=needed)


# -- the answer ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """One fact's output: its lines and its command's exit code (None if cut off)."""

    name: str
    lines: tuple[str, ...]
    rc: int | None

    @property
    def ok(self) -> bool:
        """True if the fact's command exited 0."""
        return self.rc == 0

    def error(self) -> str:
        """The most telling line of a failed fact (usually the tool's last complaint)."""
        useful = [ln.strip() for ln in self.lines if ln.strip()]
        if self.rc is None:
            return "cut off before it finished"
        if self.rc == 124:
            return "timed out"
        return useful[-1] if useful else f"exit code {self.rc}"


@dataclass(frozen=True)
class Output:
    """The whole script's output, split into facts, with the host-side start and end times."""

    sections: dict[str, Section]
    started_ns: int | None = None
    ended_ns: int | None = None

    @property
    def complete(self) -> bool:
        """True if the script ran to its last line."""
        return self.ended_ns is not None

    @property
    def remote_seconds(self) -> float | None:
        """How long the script ran on the host."""
        if self.started_ns is None or self.ended_ns is None:
            return None
        return (self.ended_ns - self.started_ns) / 1e9

    def get(self, name: str) -> Section | None:
        """The fact called `name`, if the script printed it."""
        return self.sections.get(name)


def split(stdout: str) -> Output:
    """Cut the script's output at its '@@ name' / '@@rc N' / '@@ end T0 T1' marks."""
    sections: dict[str, Section] = {}
    name: str | None = None
    lines: list[str] = []
    started = ended = None
    for raw in stdout.splitlines():
        line = raw.rstrip("\r")
        if line.startswith(f"{MARK}rc ") and name is not None:
            rc = line[len(MARK) + 3:].strip()
            sections[name] = Section(name, tuple(lines), int(rc) if rc.lstrip("-").isdigit()
                                     else None)
            name, lines = None, []
        elif line.startswith(f"{MARK} end"):
            parts = line.split()
            if len(parts) == 4 and parts[2].isdigit() and parts[3].isdigit():
                started, ended = int(parts[2]), int(parts[3])
        elif line.startswith(f"{MARK} "):
            if name is not None:  # a fact that never printed its exit code: cut off
                sections[name] = Section(name, tuple(lines), None)
            name, lines = line[len(MARK) + 1:].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = Section(name, tuple(lines), None)
    return Output(sections, started, ended)
