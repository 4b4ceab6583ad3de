"""Releases of the lab's Sentry: lab/sentry:<tag> images made from a real Sentry build.

The real Sentry images (lab/sentry:9.1.2, lab/sentry:9.1.1) are built once from PyPI and
imported by `lab.up` (sentry_image.py). A deploy test also needs releases that differ only in
name (a rolling deploy from one to the next) and a release that is broken. No registry is
reachable, so each Sentry host's own engine derives them from a real image: the build context
is a Dockerfile sent on the SSH channel's stdin to `docker build -`, all hosts in parallel.
A broken release is the real Sentry whose web processes exit at once, as a release with a bad
dependency does: they never answer /_health/.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..inventory import Host, Inventory
from ..remote import Runner, Session
from ..results import HostResult
from ..shell import join
from . import topology

REPOSITORY = topology.SENTRY_IMAGE
RELEASE_LABEL = "sentryfab.lab-release"
BUILD_TIMEOUT = 300
# Docker's own rule for a tag; it also keeps a tag safe to write into the Dockerfile as is.
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: The broken release's entrypoint, line by line (printf '%s\n' writes one per line): its web
#: processes exit at once, as a release with a bad dependency does, and never answer
#: /_health/; everything else (the migrations, workers, cron) runs the real entrypoint, so a
#: deploy gets as far as its first web batch.
BROKEN_ENTRYPOINT = (
    "#!/bin/sh",
    'case " $* " in *" run web "*)',
    "    echo sentry: this lab release is broken on purpose >&2; exit 1;;",
    "esac",
    'exec /entrypoint-real.sh "$@"',
)


@dataclass(frozen=True)
class Built:
    """What one host's engine built."""

    image: str
    image_id: str


def check_tag(tag: str) -> str:
    """The tag, if Docker accepts it; UsageError otherwise."""
    if not TAG_RE.match(tag or ""):
        raise UsageError(f"release tag {tag!r} is not a Docker tag: letters, digits, '_', '.' "
                         "and '-', at most 128, not starting with '.' or '-'")
    return tag


def image_ref(tag: str) -> str:
    """lab/sentry:<tag>."""
    return f"{REPOSITORY}:{check_tag(tag)}"


def dockerfile(tag: str, broken: bool = False, base: str = topology.SENTRY_TAG) -> str:
    """The Dockerfile of release `tag`, made from the real Sentry image lab/sentry:<base>."""
    check_tag(tag)
    lines = [
        f"FROM {image_ref(base)}",
        f'LABEL {RELEASE_LABEL}="{tag}"',
    ]
    if broken:
        write = join(["printf", r"%s\n", *BROKEN_ENTRYPOINT])
        lines.append(f"RUN mv /entrypoint.sh /entrypoint-real.sh && {write} > /entrypoint.sh "
                     "&& chmod 755 /entrypoint.sh")
    return "\n".join(lines) + "\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0  # fixed mtime: same input, same tar
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build_context(tag: str, broken: bool = False, base: str = topology.SENTRY_TAG) -> bytes:
    """The tar `docker build -` reads: just the Dockerfile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, "Dockerfile", dockerfile(tag, broken, base).encode(), 0o644)
    return buf.getvalue()


def build_command(tag: str) -> str:
    """Build lab/sentry:<tag> from a tar context on stdin; prints only the image id."""
    return join(["docker", "build", "--quiet", "--force-rm", "--tag", image_ref(tag), "-"])


def release_hosts(inv: Inventory) -> list[Host]:
    """Every host that runs Sentry (each has its own Docker engine and the real images)."""
    return [h for h in inv.hosts if any(h.has(r) for r in topology.SENTRY_ROLES)]


def release(runner: Runner, inv: Inventory, tag: str, *, broken: bool = False,
            base: str = topology.SENTRY_TAG, hosts: Sequence[Host] | None = None,
            on_done: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """Build lab/sentry:<tag> from lab/sentry:<base> on every Sentry host (or `hosts`) at
    once; one result per host."""
    ref = image_ref(tag)
    context = build_context(tag, broken, base)
    command = build_command(tag)

    def step(s: Session) -> Built:
        out = s.run(command, stdin=context, check=True, timeout=BUILD_TIMEOUT)
        lines = out.stdout.split()
        return Built(ref, lines[-1] if lines else "")

    targets = list(hosts) if hosts is not None else release_hosts(inv)
    if not targets:
        raise UsageError(f"{inv.path}: no host with a role to build {ref} on")
    return runner.each(targets, step, on_done=on_done)
