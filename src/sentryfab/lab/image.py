"""The lab's base image: a debootstrapped Debian with the services, built once and cached.

No registry can be pulled from, so the root file system is built with debootstrap,
packed as `base-<key>.tar` under ~/.cache/sentryfab/ (the key changes with the suite,
package list or mirror) and imported into each role host's engine as lab/base:1.
`ensure_tar` and `ensure_image` serve the lab's other debootstrapped images too
(lab/redis:6, redis_image.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sentryfab.errors import LabError
from sentryfab.lab import commands as cmd
from sentryfab.lab import hosts
from sentryfab.lab.system import ENV, remove_tree, run, tail
from sentryfab.lab.topology import Host

SUITE = "bookworm"
PACKAGES = (
    "postgresql-15", "pgbouncer", "redis-server", "nginx-light", "python3", "python3-psycopg2",
    "python3-redis", "python3-yaml", "procps", "iproute2", "curl", "pgbackrest",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Dropped from the root file system: about a third of its size, unused in containers.
STRIP_DIRS = ("usr/share/doc", "usr/share/man", "usr/share/locale")
STRIP_GLOBS = ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*")
APT_SOURCES = Path("/etc/apt")

Step = Callable[[str, str], None]


@dataclass(frozen=True)
class BaseImage:
    """The cached base tar and how this run got it."""

    path: Path
    key: str
    built: bool
    seconds: float


# --- pure: mirror and cache key --------------------------------------------------------

def _one_line_entries(text: str) -> Iterable[tuple[str, list[str]]]:
    for raw in text.splitlines():
        # `deb [signed-by=...] URI SUITE COMPONENTS...`; options in brackets are dropped.
        words = re.sub(r"\[[^]]*\]", " ", raw.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def _deb822_entries(text: str) -> Iterable[tuple[str, list[str]]]:
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        if ("deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no"
                and fields.get("uris")):
            yield fields["uris"].split()[0], fields.get("suites", "").split()


def parse_mirror(sources: Iterable[tuple[str, str]], suite: str = SUITE) -> str | None:
    """First `deb` mirror serving `suite` itself, from (file name, text) pairs of apt sources."""
    for name, text in sources:
        entries = _deb822_entries(text) if name.endswith(".sources") else _one_line_entries(text)
        for uri, suites in entries:
            if suite in suites:
                return uri.rstrip("/")
    return None


def cache_key(suite: str, packages: Iterable[str], mirror: str, *extra: str) -> str:
    """Short hash naming a tar: any change to what goes in (`extra`: the rest of its
    recipe) makes a new one."""
    text = "\n".join([suite, ",".join(sorted(packages)), mirror, *extra])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- I/O ---------------------------------------------------------------------------------

def read_mirror(suite: str = SUITE) -> str:
    """The machine's Debian mirror from its apt sources, or deb.debian.org."""
    files = [APT_SOURCES / "sources.list"]
    listing = APT_SOURCES / "sources.list.d"
    if listing.is_dir():
        files += sorted(p for p in listing.iterdir() if p.suffix in (".list", ".sources"))
    sources = [(p.name, p.read_text(errors="replace")) for p in files if p.is_file()]
    return parse_mirror(sources, suite) or DEFAULT_MIRROR


def cache_dir() -> Path:
    """~/.cache/sentryfab (or under $XDG_CACHE_HOME)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "sentryfab"


def current_key() -> str:
    """The key of the base tar this machine would build now."""
    return cache_key(SUITE, PACKAGES, read_mirror())


def pack_rootfs(rootfs: Path, out: Path, extra_dirs: Iterable[str] = ()) -> None:
    """Strip caches, docs, man pages and locales (and `extra_dirs`) from `rootfs`, then tar it
    to `out`."""
    for rel in (*STRIP_DIRS, *extra_dirs):
        remove_tree(rootfs / rel, what=f"stripping {rel}")
    for pattern in STRIP_GLOBS:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                remove_tree(path, what=f"stripping {pattern}")
            else:
                path.unlink()
    partial = out.with_name(out.name + ".partial")
    run(cmd.tar_rootfs(rootfs, partial), what=f"packing {out.name}", timeout=900)
    os.replace(partial, out)  # readers never see half a tar


def ensure_base_tar(on_step: Step | None = None) -> BaseImage:
    """The cached base tar for the current key, building it with debootstrap if missing."""
    return ensure_tar("base", SUITE, PACKAGES, on_step)


def ensure_tar(name: str, suite: str, packages: Sequence[str], on_step: Step | None = None, *,
               extra: Sequence[str] = (), finish: Callable[[Path], None] | None = None,
               what: str = "the base image") -> BaseImage:
    """The cached `<name>-<key>.tar` of a minimal `suite` with `packages`, built if missing.

    `finish(rootfs)` runs on the fresh root before it is packed; whatever it does must be
    in `extra` (part of the key), so that a changed recipe makes a new tar.
    """
    started = time.monotonic()
    mirror = read_mirror(suite)
    key = cache_key(suite, packages, mirror, *extra)
    out = cache_dir() / f"{name}-{key}.tar"
    if out.exists():
        return BaseImage(out, key, False, time.monotonic() - started)
    out.parent.mkdir(parents=True, exist_ok=True)
    rootfs = out.parent / f"build-{key}"
    log = out.parent / f"build-{key}.log"
    remove_tree(rootfs, what="removing an old build folder")  # a failed earlier attempt
    if on_step:
        on_step("lab", f"building {what} with debootstrap of {suite} from {mirror} (1-2 min)")
    with open(log, "wb") as f:
        result = _debootstrap(suite, packages, rootfs, mirror, f)
    if result != 0:
        detail = tail(rootfs / "debootstrap" / "debootstrap.log")
        raise LabError(f"debootstrap of {suite} from {mirror} failed (exit {result}).\n"
                       f"{tail(log)}\n{detail}\nCheck the network and the mirror, then run "
                       "`fab lab.up` again.")
    if finish:
        finish(rootfs)
    if on_step:
        on_step("lab", f"packing {what}")
    pack_rootfs(rootfs, out)
    remove_tree(rootfs, what="removing the build folder")
    log.unlink(missing_ok=True)
    return BaseImage(out, key, True, time.monotonic() - started)


def _debootstrap(suite: str, packages: Sequence[str], rootfs: Path, mirror: str,
                 log: IO[bytes]) -> int:
    argv = cmd.debootstrap(suite, packages, rootfs, mirror)
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=ENV,
                              timeout=1800).returncode
    except FileNotFoundError as exc:
        raise LabError("debootstrap is not installed; apt-get install -y debootstrap") from exc


def ensure_image(host: Host, anchor: int, base: BaseImage, on_step: Step | None = None, *,
                 ref: str = hosts.IMAGE_REF, path: str = cmd.IMAGE_PATH) -> bool:
    """Import a tar into the host's engine as `ref` (with `path` as its PATH) unless it has
    it already; True if imported."""
    if hosts.image_key_of(host, anchor, ref) == base.key:
        return False
    if on_step:
        on_step(host.name, f"importing {ref}")
    with open(base.path, "rb") as tar:
        # stdin, not a path: inside the host, the machine's /root is hidden by the host's own.
        hosts.docker(host, anchor, cmd.docker_import(ref, base.key, path),
                     what=f"importing {ref}", stdin=tar, timeout=900)
    return True
