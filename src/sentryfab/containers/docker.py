"""docker CLI commands built from specs: exact strings, tested as such, run by procedures."""

from __future__ import annotations

from dataclasses import dataclass

from ..shell import join
from .spec import LABEL_PREFIX, ContainerSpec

#: `docker ps` format for our containers: name, state, image, and our labels (tab-separated).
PS_FORMAT = ("{{.Names}}\t{{.State}}\t{{.Image}}\t"
             "{{.Label \"sentryfab.role\"}}\t{{.Label \"sentryfab.version\"}}\t"
             "{{.Label \"sentryfab.config\"}}")


def run(spec: ContainerSpec) -> str:
    """Start a container from its spec, detached, on the host's network."""
    argv = ["docker", "run", "--detach", "--name", spec.name, "--network", "host",
            "--restart", spec.restart, "--stop-timeout", str(spec.stop_timeout),
            "--log-opt", "max-size=50m", "--log-opt", "max-file=3"]
    for key, value in spec.labels:
        argv += ["--label", f"{key}={value}"]
    for host_path, container_path, ro in spec.mounts:
        argv += ["--volume", f"{host_path}:{container_path}" + (":ro" if ro else "")]
    for key, value in spec.env:
        argv += ["--env", f"{key}={value}"]
    if spec.user:
        argv += ["--user", spec.user]
    if spec.stop_signal:
        argv += ["--stop-signal", spec.stop_signal]
    if spec.memory:
        argv += ["--memory", spec.memory]
    if spec.cpus:
        argv += ["--cpus", spec.cpus]
    return join([*argv, spec.image, *spec.command])


def stop(name: str, timeout: int = 30) -> str:
    """Stop gracefully (SIGTERM, then SIGKILL after `timeout`); fine if it is not running."""
    return f"{join(['docker', 'stop', '--time', str(timeout), name])} >/dev/null 2>&1; true"


def remove(name: str) -> str:
    """Remove a container whatever its state; fine if there is none."""
    return f"{join(['docker', 'rm', '--force', name])} >/dev/null 2>&1; true"


def replace(spec: ContainerSpec) -> str:
    """Stop and remove the old container of that name, then run the new one."""
    return f"{stop(spec.name, spec.stop_timeout)}; {remove(spec.name)}; {run(spec)}"


def ps(role: str | None = None) -> str:
    """Our containers (running or not), one tab-separated line each."""
    filt = f"label={LABEL_PREFIX}.role" + (f"={role}" if role else "")
    return join(["docker", "ps", "--all", "--no-trunc", "--filter", filt, "--format", PS_FORMAT])


def exec_(name: str, command: list[str], user: str | None = None) -> str:
    """Run a command inside a running container."""
    argv = ["docker", "exec", "-i"]
    if user:
        argv += ["--user", user]
    return join([*argv, name, *command])


def image_present(image: str) -> str:
    """Exit 0 if the image is in the host's engine."""
    return f"{join(['docker', 'image', 'inspect', '--format', '{{.Id}}', image])} >/dev/null"


@dataclass(frozen=True)
class Running:
    """One of our containers as `docker ps` shows it."""

    name: str
    state: str
    image: str
    role: str
    version: str
    config: str

    @property
    def up(self) -> bool:
        """True if the container is running."""
        return self.state == "running"


def parse_ps(stdout: str) -> list[Running]:
    """Parse the output of ps()."""
    out = []
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 6:
            out.append(Running(*parts))
    return out


def run_once(spec: ContainerSpec) -> str:
    """Run a one-off container to completion (migrations), removed afterwards."""
    argv = ["docker", "run", "--rm", "--name", spec.name, "--network", "host"]
    for host_path, container_path, ro in spec.mounts:
        argv += ["--volume", f"{host_path}:{container_path}" + (":ro" if ro else "")]
    if spec.user:
        argv += ["--user", spec.user]
    return join([*argv, spec.image, *spec.command])


def logs(name: str, lines: int = 100, follow: bool = False) -> str:
    """A container's last lines (stdout and stderr), optionally following."""
    argv = ["docker", "logs", "--tail", str(lines), "--timestamps"]
    if follow:
        argv.append("--follow")
    return f"{join([*argv, name])} 2>&1"


def ensure_image(image: str) -> str:
    """Pull the image unless the host's engine has it already (the lab builds its own)."""
    return f"{image_present(image)} 2>&1 || {join(['docker', 'pull', '--quiet', image])}"


def prune_images(repository: str, keep: int = 3) -> str:
    """Remove all but the `keep` newest images of a repository (in-use ones are refused by
    docker and stay): the last few releases remain for a rollback."""
    fmt = "{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}"
    return (f"{join(['docker', 'images', repository, '--format', fmt])} | sort -r "
            f"| tail -n +{keep + 1} | cut -f 2 | grep -v ':<none>$' "
            f"| xargs -r docker rmi >/dev/null 2>&1; true")
