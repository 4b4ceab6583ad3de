"""Releases of the lab's Sentry stand-in: the image lab/sentry:<tag>, built on the lab hosts.

No registry is reachable, so every role host's own Docker engine builds the release: the
build context (Dockerfile, sentry_lab.py, a `sentry` wrapper) is a small tar sent on the
SSH channel's stdin to `docker build -`, all hosts in parallel through the Runner. The image
is lab/base:1 plus the program: building it takes seconds and pulls nothing.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..inventory import Host, Inventory
from ..remote import HostSession, Runner
from ..results import HostResult
from ..shell import join
from . import topology

REPOSITORY = "lab/sentry"
BASE_IMAGE = f"{topology.IMAGE}:{topology.IMAGE_TAG}"
RELEASE_LABEL = "sentryfab.lab-release"
APP_DIR = "/opt/sentry-lab"
APP_SOURCE = Path(__file__).resolve().parent / "workload" / "sentry_lab.py"
BUILD_TIMEOUT = 300
# Docker's own rule for a tag; it also keeps a tag safe to write into the Dockerfile as is.
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# Lets containers run Sentry's own command line (`sentry --config DIR run web ...`), so the
# lab can use the very commands production does.
SENTRY_WRAPPER = f"""\
#!/bin/sh
# The lab's stand-in for Sentry's `sentry` command (not Sentry): {APP_DIR}/sentry_lab.py
exec python3 {APP_DIR}/sentry_lab.py sentry "$@"
"""


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


APP_LABEL = "sentryfab.lab-app"
INITIAL_TAG = "1"  # the release `lab.up` makes, named in the lab inventory


def app_digest(app: bytes | None = None) -> str:
    """Short hash of the program: a release built from other code is rebuilt by lab.up."""
    import hashlib

    return hashlib.sha256(APP_SOURCE.read_bytes() if app is None else app).hexdigest()[:12]


def dockerfile(tag: str, broken: bool = False, digest: str = "") -> str:
    """The Dockerfile of release `tag`; `broken` bakes in a /_health/ that always fails."""
    check_tag(tag)
    lines = [
        f"FROM {BASE_IMAGE}",
        f'LABEL {RELEASE_LABEL}="{tag}"',
        *([f'LABEL {APP_LABEL}="{digest}"'] if digest else []),
        f'ENV SENTRY_LAB_VERSION="{tag}"',
        *(["ENV SENTRY_LAB_BROKEN=1"] if broken else []),
        f"COPY sentry_lab.py {APP_DIR}/sentry_lab.py",
        "COPY sentry /usr/local/bin/sentry",
        'CMD ["sentry", "--help"]',
    ]
    return "\n".join(lines) + "\n"


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0  # fixed mtime: same input, same tar
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def build_context(tag: str, broken: bool = False, app: bytes | None = None) -> bytes:
    """The tar `docker build -` reads: Dockerfile, sentry_lab.py and the `sentry` wrapper."""
    source = APP_SOURCE.read_bytes() if app is None else app
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, "Dockerfile", dockerfile(tag, broken, app_digest(source)).encode(), 0o644)
        _add(tar, "sentry_lab.py", source, 0o755)  # the legacy builder keeps modes on COPY
        _add(tar, "sentry", SENTRY_WRAPPER.encode(), 0o755)
    return buf.getvalue()


def build_command(tag: str) -> str:
    """Build lab/sentry:<tag> from a tar context on stdin; prints only the image id."""
    return join(["docker", "build", "--quiet", "--force-rm", "--tag", image_ref(tag), "-"])


def release_hosts(inv: Inventory) -> list[Host]:
    """Every host with a role: each has its own Docker engine (scale hosts have none)."""
    return [h for h in inv.hosts if h.roles]


def release(runner: Runner, inv: Inventory, tag: str, *, broken: bool = False,
            hosts: Sequence[Host] | None = None,
            on_done: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    """Build lab/sentry:<tag> on every role host (or `hosts`) at once; one result per host."""
    ref = image_ref(tag)
    context = build_context(tag, broken)
    command = build_command(tag)

    def step(s: HostSession) -> Built:
        out = s.run(command, stdin=context, check=True, timeout=BUILD_TIMEOUT)
        lines = out.stdout.split()
        return Built(ref, lines[-1] if lines else "")

    targets = list(hosts) if hosts is not None else release_hosts(inv)
    if not targets:
        raise UsageError(f"{inv.path}: no host with a role to build {ref} on")
    return runner.each(targets, step, on_done=on_done)


def ensure_initial(runner: Runner, inv: Inventory) -> list[HostResult]:
    """Build the inventory's first release where it is missing or built from older code."""
    ref = image_ref(INITIAL_TAG)
    context = build_context(INITIAL_TAG)
    fmt = "{{index .Config.Labels \"" + APP_LABEL + "\"}}"
    have = f"docker image inspect --format {join([fmt])} {join([ref])} 2>/dev/null"

    def step(s: HostSession) -> bool:
        if s.run(have).stdout.strip() == app_digest():
            return False
        s.run(build_command(INITIAL_TAG), stdin=context, check=True, timeout=BUILD_TIMEOUT)
        return True

    return runner.each(release_hosts(inv), step)
