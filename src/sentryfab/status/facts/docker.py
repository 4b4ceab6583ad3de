"""Every container of ours on a host (any role, running or not), as Docker sees it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ...shell import join
from .base import FACT_TIMEOUT, FactBase, Lines, timed

#: docker inspect, one tab-separated line per container of ours.
INSPECT_FORMAT = "\t".join([
    "{{.Name}}", "{{.Id}}", "{{.State.Status}}", "{{.RestartCount}}", "{{.State.StartedAt}}",
    "{{.State.OOMKilled}}", "{{.State.ExitCode}}",
    '{{index .Config.Labels "sentryfab.role"}}', '{{index .Config.Labels "sentryfab.version"}}',
])
DOCKER_SOCKET = "/var/run/docker.sock"
#: Engine API: our containers, running or not (filters={"label":["sentryfab.role"]}).
LIST_URL = ("http://docker/containers/json?all=1&filters="
            "%7B%22label%22%3A%5B%22sentryfab.role%22%5D%7D")
#: Each container's '"Id":"<hex>' in that list (the quote left is stripped by the shell).
ID_PATTERN = '"Id":"[0-9a-f]*'


@dataclass(frozen=True)
class Container:
    """One of our containers as `docker inspect` sees it."""

    name: str
    id: str
    state: str           # running, exited, restarting, created, paused, dead
    restarts: int
    started_at: str
    oom_killed: bool
    exit_code: int
    role: str
    version: str

    @property
    def running(self) -> bool:
        """True if the container is up (a restarting one is not)."""
        return self.state == "running"


def _from_api(line: str) -> Container | None:
    """One container's inspect document (Engine API), or None if it is not one."""
    try:
        doc = json.loads(line)
        state, labels = doc["State"], doc["Config"].get("Labels") or {}
        return Container(doc["Name"].lstrip("/"), doc["Id"], state["Status"],
                         int(doc["RestartCount"]), state.get("StartedAt", ""),
                         bool(state.get("OOMKilled")), int(state.get("ExitCode") or 0),
                         labels.get("sentryfab.role", ""), labels.get("sentryfab.version", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # e.g. {"message": "No such container"}: it went away meanwhile


class Docker(FactBase):
    """Our containers with their state, restart count and labels."""

    name = "docker"

    @staticmethod
    def command() -> str:
        """Through the Engine API with curl when the local socket is there: two curls cost
        about a third of the CPU of two docker CLI runs (a Go program's start-up), which on a
        busy host (or the lab, where every host shares one machine) is most of a round. The
        docker CLI (restricted to the same fields) when DOCKER_HOST points elsewhere or there
        is no socket."""
        sock = join([DOCKER_SOCKET])
        curl = ["timeout", str(FACT_TIMEOUT), "curl", "-sS", "--unix-socket", DOCKER_SOCKET]
        # The ids are hex: split on purpose, one inspect URL each, all in one curl.
        ids = f"{join([*curl, '-f', LIST_URL])} | grep -o {join([ID_PATTERN])}"
        api = (f"ids=$({ids}) && set -- && for i in $ids; do i=${{i#*:}}; "
               'set -- "$@" "http://docker/containers/${i#?}/json"; done && '
               f'{{ [ $# -eq 0 ] || {join(curl)} "$@"; }}')
        ps = timed(["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter",
                    "label=sentryfab.role"])
        inspect = timed(["docker", "inspect", "--format", INSPECT_FORMAT])
        cli = f"ids=$({ps}) && {{ [ -z \"$ids\" ] || {inspect} $ids; }}"
        # Not writable (a login without Docker's rights): the CLI, which says "permission
        # denied" where curl would only say it could not connect.
        return (f'if [ -z "$DOCKER_HOST" ] && [ -S {sock} ] && [ -w {sock} ]; '
                f"then {api}; else {cli}; fi")

    @staticmethod
    def parse(lines: Lines) -> list[Container]:
        """Our containers, from Engine API JSON or the CLI's tab-separated lines."""
        found = []
        for line in lines:
            if line.startswith("{"):
                container = _from_api(line)
                if container is not None:
                    found.append(container)
                continue
            parts = line.split("\t")
            if len(parts) != 9 or not parts[3].isdigit():
                continue
            name, cid, state, restarts, started, oom, code, role, version = parts
            found.append(Container(name.lstrip("/"), cid, state, int(restarts), started,
                                   oom == "true",
                                   int(code) if code.lstrip("-").isdigit() else 0,
                                   role, version))
        return found
