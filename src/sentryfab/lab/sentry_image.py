"""The lab's images of the real Sentry (9.1.2, and 9.1.1 to upgrade from), built and cached.

Sentry 9 runs on Python 2.7 only, which bookworm no longer has, so the root file system
is a debootstrapped bullseye: Python 2.7 and the build tools from Debian, pip bootstrapped
from its wheel, a virtualenv at /opt/sentry with `sentry==<version>` from PyPI (uWSGI and a
few others compile, hence gcc/g++ and the -dev headers), then the build-only packages are
purged. The root gets the shape of the official `sentry:9.1` image (user `sentry` uid 999,
SENTRY_CONF, /entrypoint.sh with gosu/tini, CMD run web), so one container spec runs both.

9.1.2 is built first; 9.1.1 is a copy of that root (build tools still in) with
`pip install sentry==9.1.1` over it, which changes only the packages that differ.
Each is packed as `sentry-<version>-<key>.tar` under ~/.cache/sentryfab/ and imported
into the engine of every Sentry host (web, worker, cron) as lab/sentry:<version>,
labelled with its key so a stale image is re-imported.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sentryfab.errors import LabError
from sentryfab.lab import commands as cmd
from sentryfab.lab import hosts, image, procs
from sentryfab.lab.image import Step, cache_dir, read_mirror
from sentryfab.lab.system import ENV, remove_tree, run, tail
from sentryfab.lab.topology import Host

# Bump when the build below changes in a way none of the other key inputs shows.
RECIPE = "1"
SUITE = "bullseye"
REPOSITORY = "lab/sentry"
VERSION = "9.1.2"  # built from scratch
OLDER = ("9.1.1",)  # each built from a copy of VERSION's root
VERSIONS = (VERSION, *OLDER)
SENTRY_ROLES = frozenset({"web", "worker", "cron"})

# Compilers and headers: needed by the pip install (uwsgi, hiredis, mmh3 is C++...), then
# purged. Runtime: what Python and the compiled extensions load, plus the entrypoint's tools.
BUILD_ONLY = (
    "python2.7-dev", "gcc", "g++", "make", "libpq-dev", "libxml2-dev", "libxslt1-dev",
    "libffi-dev", "libssl-dev", "libjpeg-dev", "zlib1g-dev",
)
RUNTIME = (
    "python2.7", "libpython2.7", "libpq5", "libxml2", "libxslt1.1", "libffi7", "libssl1.1",
    "libjpeg62-turbo", "zlib1g", "ca-certificates", "tini", "gosu", "curl",
)
PACKAGES = (
    "python2.7", "python2.7-dev", "gcc", "g++", "make", "libpq-dev", "libxml2-dev",
    "libxslt1-dev", "libffi-dev", "libssl-dev", "libjpeg-dev", "zlib1g-dev", "ca-certificates",
    "tini", "gosu", "curl",
)
# The last releases that support Python 2.7.
PIP_VERSION = "20.3.4"
PIP_WHEEL = f"pip-{PIP_VERSION}-py2.py3-none-any.whl"
BOOTSTRAP = (f"pip=={PIP_VERSION}", "setuptools==44.1.1", "wheel==0.37.1",
             "virtualenv==20.15.1")

UID = GID = 999  # the official image's; sentryfab chowns Sentry's configs to it
VENV = "/opt/sentry"
SENTRY_CONF = "/etc/sentry"
FILESTORE = "/var/lib/sentry/files"
IMAGE_PATH = f"{VENV}/bin:{cmd.SANE_PATH}"
WHEELS_IN_ROOT = "/tmp/sentryfab-pip"  # where the pip wheel is put inside the root
LABEL = "org.sentryfab.lab.sentry"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_RESOLV = Path("/etc/resolv.conf")
# Files the build swaps in from the machine and puts back afterwards (the image keeps
# Debian's CA bundle; Docker gives each container its own resolv.conf anyway).
BORROWED = ((HOST_RESOLV, "etc/resolv.conf"), (HOST_CA_BUNDLE, "etc/ssl/certs/ca-certificates.crt"))
# Beyond image.STRIP_DIRS/GLOBS: build leftovers.
STRIP_EXTRA = ("root/.cache", WHEELS_IN_ROOT.lstrip("/"))
IMPORT_WORKERS = 3  # two cores: more concurrent imports only queue on CPU and disk
PIP_TIMEOUT = 1800
IN_ROOT_ENV = {
    "PATH": cmd.SANE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1", "PIP_DEFAULT_TIMEOUT": "120",
    # pip trusts its own vendored bundle otherwise, not the machine's (copied in, above).
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
}

# Sentry 9.1.2's subcommands (`sentry help`): `docker run IMAGE upgrade` is `sentry upgrade`.
# The official entrypoint's list also has `celery`, which 9.1 no longer has.
SUBCOMMANDS = (
    "cleanup", "config", "consumer", "createuser", "devserver", "devservices", "django", "exec",
    "export", "files", "help", "import", "init", "permissions", "plugins", "queues", "repair",
    "run", "shell", "start", "tsdb", "upgrade",
)

ENTRYPOINT_TEXT = f"""\
#!/bin/sh
# Entrypoint of sentryfab's lab image of Sentry; behaves like the official sentry:9.1 one.
set -e

# A flag or a Sentry subcommand first: it is meant for `sentry`.
case "$1" in
	-*|{"|".join(SUBCOMMANDS)})
		set -- sentry "$@"
		;;
esac

# Sentry runs under tini (signals, zombies) and, when started as root, as its own user.
if [ "$1" = sentry ]; then
	set -- tini -- "$@"
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$SENTRY_FILESTORE_DIR"
		find "$SENTRY_FILESTORE_DIR" ! -user sentry -exec chown sentry {{}} +
		set -- gosu sentry "$@"
	fi
fi

exec "$@"
"""


@dataclass(frozen=True)
class SentryImage:
    """One cached Sentry tar and how this run got it."""

    version: str
    path: Path
    key: str
    built: bool
    seconds: float

    @property
    def ref(self) -> str:
        return image_ref(self.version)


# --- pure: keys, commands, texts -------------------------------------------------------

def image_ref(version: str) -> str:
    """lab/sentry:<version>."""
    return f"{REPOSITORY}:{version}"


def cache_key(version: str, mirror: str, suite: str = SUITE,
              packages: Iterable[str] = PACKAGES, recipe: str = RECIPE) -> str:
    """Short hash naming a Sentry tar: any change to what goes in makes a new one.

    Besides the inputs named, the pinned pip tools, the entrypoint and the purge list
    are part of it: they are in the tar too.
    """
    text = "\n".join([
        "sentry", recipe, suite, ",".join(sorted(packages)), mirror, version,
        VERSION if version != VERSION else "", ",".join(BOOTSTRAP), ",".join(BUILD_ONLY),
        ",".join(RUNTIME), ENTRYPOINT_TEXT, str(UID),
    ])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def tar_name(version: str, key: str) -> str:
    return f"sentry-{version}-{key}.tar"


def debootstrap_argv(rootfs: Path, mirror: str) -> list[str]:
    """A minimal bullseye with Python 2.7 and everything needed to build Sentry."""
    return cmd.debootstrap(SUITE, PACKAGES, rootfs, mirror)


def pip_download_argv(dest: Path, python: str | None = None) -> list[str]:
    """Fetch pip's last Python 2.7 wheel, on the machine (the root has no pip yet)."""
    return [python or sys.executable, "-m", "pip", "download", "--no-deps", "--python-version",
            "2.7", "--only-binary=:all:", "-d", str(dest), f"pip=={PIP_VERSION}"]


def chroot_argv(rootfs: Path, script: str) -> list[str]:
    """Run a shell script inside the root, stopping at the first failing command."""
    return ["chroot", str(rootfs), "/bin/sh", "-ec", script]


def user_script() -> str:
    """The `sentry` user and group (999, as in the official image) and its directories."""
    return "\n".join([
        f"getent group sentry >/dev/null || groupadd --system --gid {GID} sentry",
        f"id -u sentry >/dev/null 2>&1 || useradd --system --create-home --uid {UID} "
        "--gid sentry --shell /bin/bash sentry",
        f"mkdir -p {SENTRY_CONF} {FILESTORE}",
        f"chown sentry:sentry {SENTRY_CONF} /var/lib/sentry {FILESTORE}",
        "chmod 0755 /entrypoint.sh",
    ])


def install_script(version: str) -> str:
    """pip from its wheel, a virtualenv at /opt/sentry, Sentry into it.

    Two steps for the tools: virtualenv's dependencies include a source distribution
    (scandir), whose build needs setuptools installed first.
    """
    return "\n".join([
        f"python2.7 {WHEELS_IN_ROOT}/{PIP_WHEEL}/pip install --no-cache-dir "
        f"{' '.join(BOOTSTRAP[:-1])}",
        f"python2.7 -m pip install --no-cache-dir {BOOTSTRAP[-1]}",
        f"python2.7 -m virtualenv --no-periodic-update {VENV}",
        sentry_install_script(version),
    ])


def sentry_install_script(version: str) -> str:
    """Sentry at exactly `version` into the virtualenv (PyPI marks 9.1.2 yanked; a pin works)."""
    return f"{VENV}/bin/pip install --no-cache-dir sentry=={version}"


def purge_script() -> str:
    """Remove compilers and headers with whatever only they needed; runtime libraries stay.

    debootstrap leaves every package marked manual, so all but the base system (priority
    required/important, essential) are marked auto first, then the runtime ones manual.
    """
    return "\n".join([
        "dpkg-query -W -f '${Package} ${Priority} ${Essential}\\n' "
        "| awk '$2 != \"required\" && $2 != \"important\" && $3 != \"yes\" {print $1}' "
        "| xargs -r apt-mark auto >/dev/null",
        f"apt-mark manual {' '.join(RUNTIME)} >/dev/null",
        # Else binutils stays, only because python2.7 suggests it.
        "apt-get purge -y --auto-remove -o APT::AutoRemove::SuggestsImportant=false "
        f"{' '.join(BUILD_ONLY)}",
        "apt-get clean",
    ])


def ldd_script() -> str:
    """ldd of every compiled extension and of uwsgi, for a check that none lacks a library.

    Libraries that wheels bundle under .libs are left out: they find each other only
    through the RPATH of the extension that loads them, so ldd alone reports them missing.
    """
    return (f"find {VENV} -type f \\( -name '*.so' -o -path '*/bin/uwsgi' \\) "
            "! -path '*/.libs/*' -exec ldd {} + 2>&1 || true")


def missing_libraries(ldd_output: str) -> list[str]:
    """`file: library` for every `not found` in ldd's output over several files."""
    missing, current = [], "?"
    for line in ldd_output.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        elif "not found" in line:
            missing.append(f"{current}: {line.strip().split()[0]}")
    return missing


def parse_version(output: str) -> str | None:
    """The version `sentry --version` printed ("sentry, version 9.1.2")."""
    for line in output.splitlines():
        if "version" in line:
            return line.rsplit(None, 1)[-1]
    return None


def import_changes(key: str) -> list[str]:
    """The Dockerfile instructions `docker import` applies: the official image's shape."""
    return [
        f"ENV PATH={IMAGE_PATH}",
        "ENV LANG=C.UTF-8",
        f"ENV SENTRY_CONF={SENTRY_CONF}",
        f"ENV SENTRY_FILESTORE_DIR={FILESTORE}",
        "EXPOSE 9000",
        'ENTRYPOINT ["/entrypoint.sh"]',
        'CMD ["run", "web"]',
        f"LABEL {LABEL}={key}",
    ]


def import_argv(ref: str, key: str) -> list[str]:
    """Import a root file system tar from stdin as `ref`, shaped and labelled."""
    argv = ["docker", "import"]
    for change in import_changes(key):
        argv += ["--change", change]
    return [*argv, "-", ref]


def label_argv(ref: str) -> list[str]:
    """Prints the Sentry-image label of `ref` (fails if the image is absent)."""
    return ["docker", "image", "inspect", "--format",
            '{{index .Config.Labels "' + LABEL + '"}}', ref]


def sentry_hosts(candidates: Iterable[Host]) -> list[Host]:
    """The hosts that run Sentry (web, worker or cron) and so need its images."""
    return [h for h in candidates if h.has_docker and SENTRY_ROLES & set(h.roles)]


# --- I/O: build --------------------------------------------------------------------------

def current_keys(mirror: str | None = None) -> dict[str, str]:
    """{version: key} of the tars this machine would build now."""
    mirror = mirror or read_mirror(SUITE)
    return {v: cache_key(v, mirror) for v in VERSIONS}


def ensure_sentry_tars(on_step: Step | None = None) -> tuple[SentryImage, ...]:
    """The cached tar of every version, building whatever is missing (a few minutes)."""
    started = time.monotonic()
    mirror = read_mirror(SUITE)
    keys = current_keys(mirror)
    folder = cache_dir()
    paths = {v: folder / tar_name(v, keys[v]) for v in VERSIONS}
    missing = [v for v in VERSIONS if not paths[v].exists()]
    if not missing:
        took = time.monotonic() - started
        return tuple(SentryImage(v, paths[v], keys[v], False, took) for v in VERSIONS)
    folder.mkdir(parents=True, exist_ok=True)
    took = _build(mirror, keys, paths, missing, on_step)
    for version in missing:
        _remove_stale(folder, version, paths[version])
    return tuple(SentryImage(v, paths[v], keys[v], v in missing, took.get(v, 0.0))
                 for v in VERSIONS)


def _build(mirror: str, keys: dict[str, str], paths: dict[str, Path], missing: list[str],
           on_step: Step | None) -> dict[str, float]:
    """Build the missing tars; returns the seconds each took (9.1.1 without the shared root)."""
    key = keys[VERSION]
    folder = paths[VERSION].parent
    root = folder / f"build-sentry-{key}"
    log_path = folder / f"build-sentry-{key}.log"
    others = {v: folder / f"build-sentry-{keys[v]}-{v}" for v in OLDER if v in missing}
    for stale in folder.glob("build-sentry-*"):  # failed earlier attempts, whatever their key
        if stale.is_dir():
            remove_tree(stale, what="removing an old build folder")
        else:
            stale.unlink(missing_ok=True)
    took: dict[str, float] = {}
    started = time.monotonic()

    def step(message: str) -> None:
        if on_step:
            on_step("lab", message)
        log.write(f"\n=== {time.strftime('%H:%M:%S')} {message}\n".encode())
        log.flush()

    with open(log_path, "wb") as log:
        step(f"building the Sentry {VERSION} image: debootstrap {SUITE} from {mirror}")
        _debootstrap(root, mirror, log, log_path)
        step(f"installing Sentry {VERSION} from PyPI into {VENV} (~1-2 min)")
        _write_entrypoint(root)
        _download_pip(root / WHEELS_IN_ROOT.lstrip("/"), log, log_path)
        with _borrowed_machine_files(root):
            _in_root(root, user_script(), log, log_path, what="creating the sentry user")
            _in_root(root, install_script(VERSION), log, log_path, timeout=PIP_TIMEOUT,
                     what=f"installing sentry=={VERSION}")
            _verify(root, VERSION, log, log_path)
        for version, other in others.items():
            step(f"copying the build root for Sentry {version}")
            run(["cp", "-a", "--reflink=auto", str(root), str(other)],
                what=f"copying the build root for Sentry {version}", timeout=900)
        shared = time.monotonic() - started
        if VERSION in missing:
            step(f"purging build tools and packing {tar_name(VERSION, key)}")
            _finish(root, paths[VERSION], log, log_path)
            took[VERSION] = time.monotonic() - started
        remove_tree(root, what="removing the build folder")
        for version, other in others.items():
            began = time.monotonic()
            step(f"installing Sentry {version} over a copy of {VERSION}")
            with _borrowed_machine_files(other):
                _in_root(other, sentry_install_script(version), log, log_path,
                         timeout=PIP_TIMEOUT, what=f"installing sentry=={version}")
                _verify(other, version, log, log_path)
            step(f"purging build tools and packing {tar_name(version, keys[version])}")
            _finish(other, paths[version], log, log_path)
            remove_tree(other, what="removing the build folder")
            took[version] = time.monotonic() - began + (0.0 if VERSION in missing else shared)
    log_path.unlink(missing_ok=True)
    return took


def _debootstrap(root: Path, mirror: str, log: IO[bytes], log_path: Path) -> None:
    try:
        result = subprocess.run(debootstrap_argv(root, mirror), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, env=ENV, timeout=1800).returncode
    except FileNotFoundError as exc:
        raise LabError("debootstrap is not installed; apt-get install -y debootstrap") from exc
    if result != 0:
        detail = tail(root / "debootstrap" / "debootstrap.log")
        raise LabError(f"debootstrap of {SUITE} from {mirror} failed (exit {result}).\n"
                       f"{tail(log_path)}\n{detail}\nCheck the network and the mirror, then "
                       "run `fab lab.up` again.")


def _write_entrypoint(root: Path) -> None:
    path = root / "entrypoint.sh"
    path.write_text(ENTRYPOINT_TEXT)
    path.chmod(0o755)


def _download_pip(dest: Path, log: IO[bytes], log_path: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    _logged(pip_download_argv(dest), log, log_path, what="downloading pip for Python 2.7",
            env=ENV, timeout=300)


@contextmanager
def _borrowed_machine_files(root: Path) -> Iterator[None]:
    """/proc mounted and the machine's resolv.conf and CA bundle in place, for pip.

    Always undone, the mount first: a root left with /proc mounted could not be copied
    or removed safely.
    """
    saved: list[tuple[Path, Path]] = []
    proc = root / "proc"
    proc.mkdir(exist_ok=True)
    run(["mount", "-t", "proc", "proc", str(proc)], what="mounting /proc in the build root")
    try:
        for source, rel in BORROWED:
            target = root / rel
            keep = target.with_name(target.name + ".sentryfab-orig")
            if target.exists() or target.is_symlink():
                os.replace(target, keep)
                saved.append((target, keep))
            else:
                saved.append((target, Path()))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        yield
    finally:
        run(["umount", str(proc)], what="unmounting /proc in the build root", check=False)
        if os.path.ismount(proc):
            run(["umount", "--lazy", str(proc)], what="unmounting /proc in the build root")
        for target, keep in saved:
            target.unlink(missing_ok=True)
            if keep != Path():
                os.replace(keep, target)


def _logged(argv: Sequence[str], log: IO[bytes], log_path: Path, *, what: str,
            env: dict[str, str], timeout: float) -> None:
    log.write(f"$ {' '.join(argv)}\n".encode())
    log.flush()
    try:
        result = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what} took over {timeout:.0f} s.\n{tail(log_path, 30)}") from exc
    if result.returncode != 0:
        raise LabError(f"{what} failed (exit {result.returncode}).\n{tail(log_path, 30)}\n"
                       f"The whole log: {log_path}. Fix the cause, then run `fab lab.up` again.")


def _in_root(root: Path, script: str, log: IO[bytes], log_path: Path, *, what: str,
             timeout: float = 600) -> None:
    _logged(chroot_argv(root, script), log, log_path, what=what, env=IN_ROOT_ENV,
            timeout=timeout)


def _verify(root: Path, version: str, log: IO[bytes], log_path: Path) -> None:
    """`sentry --version` says `version`, and every compiled extension finds its libraries."""
    shown = run(chroot_argv(root, f"{VENV}/bin/sentry --version"), what="sentry --version",
                check=False, timeout=120)
    log.write(f"sentry --version: {shown.stdout}{shown.stderr}\n".encode())
    said = parse_version(shown.stdout + shown.stderr)
    if shown.returncode != 0 or said != version:
        raise LabError(f"the built Sentry does not run as {version}: `sentry --version` exited "
                       f"{shown.returncode} saying {said!r}.\n{tail(log_path, 30)}")


def _check_libraries(root: Path, what: str) -> None:
    shown = run(chroot_argv(root, ldd_script()), what=f"{what}: ldd", timeout=300)
    missing = missing_libraries(shown.stdout)
    if missing:
        raise LabError(f"{what}: libraries missing after purging the build tools:\n    "
                       + "\n    ".join(missing[:20]))


def _finish(root: Path, out: Path, log: IO[bytes], log_path: Path) -> None:
    """Purge the build tools, check the extensions still load, strip and pack atomically."""
    _in_root(root, purge_script(), log, log_path, what="purging the build tools")
    _check_libraries(root, f"the image for {out.name}")
    image.pack_rootfs(root, out, STRIP_EXTRA)


def _remove_stale(folder: Path, version: str, keep: Path) -> None:
    """Older tars of the same version (another key): a few hundred MB each, never used again."""
    for old in folder.glob(f"sentry-{version}-*.tar"):
        if old != keep:
            old.unlink(missing_ok=True)


# --- I/O: import into the lab's hosts ------------------------------------------------------

def key_on(host: Host, anchor: int, ref: str) -> str | None:
    """The key labelled on the host's image `ref`, or None if it has no such image."""
    shown = hosts.docker(host, anchor, label_argv(ref), what="docker", timeout=20, check=False)
    return shown.stdout.strip() if shown.returncode == 0 else None


def images_current(host: Host, anchor: int, keys: dict[str, str]) -> bool:
    """Whether the host's engine has every Sentry image with the current key."""
    return all(key_on(host, anchor, image_ref(v)) == k for v, k in keys.items())


def ensure_image(host: Host, anchor: int, tar: SentryImage, on_step: Step | None = None
                 ) -> bool:
    """Import one Sentry tar into the host's engine unless it has it already; True if so."""
    if key_on(host, anchor, tar.ref) == tar.key:
        return False
    if on_step:
        on_step(host.name, f"importing {tar.ref}")
    with open(tar.path, "rb") as f:
        # stdin, not a path: inside the host, the machine's /root is hidden by the host's own.
        hosts.docker(host, anchor, import_argv(tar.ref, tar.key), what=f"importing {tar.ref}",
                     stdin=f, timeout=900)
    return True


def ensure_sentry_images(lab_hosts: Sequence[Host], on_step: Step | None = None,
                         tars: Sequence[SentryImage] | None = None,
                         workers: int = IMPORT_WORKERS) -> dict[str, list[str]]:
    """Every Sentry image on every Sentry host of `lab_hosts`; {host: actions}.

    Imports run `workers` at a time (one per host and image); every failure is collected
    into one LabError.
    """
    targets = sentry_hosts(lab_hosts)
    actions: dict[str, list[str]] = {h.name: [] for h in targets}
    if not targets:
        return actions
    tars = tuple(tars) if tars is not None else ensure_sentry_tars(on_step)
    snap = procs.snapshot()
    anchors = {h.name: hosts.anchor_pid(h, snap) for h in targets}
    dead = [name for name, pid in anchors.items() if pid is None]
    if dead:
        raise LabError(f"{', '.join(dead)}: no sshd or dockerd running. {hosts.RETRY_HINT}")
    jobs = [(h, t) for t in tars for h in targets]

    def one(job: tuple[Host, SentryImage]) -> None:
        host, tar = job
        anchor = anchors[host.name]
        assert anchor is not None
        if ensure_image(host, anchor, tar, on_step):
            actions[host.name].append(f"imported {tar.ref}")

    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = [(job, pool.submit(one, job)) for job in jobs]
    errors = []
    for (host, tar), future in futures:
        exc = future.exception()
        if isinstance(exc, LabError):
            errors.append(str(exc))
        elif exc is not None:
            errors.append(f"{host.name}: importing {tar.ref}: unexpected "
                          f"{type(exc).__name__}: {exc}")
    if errors:
        raise LabError(f"{len(errors)} of {len(jobs)} Sentry image imports failed:\n\n"
                       + "\n\n".join(errors))
    return actions
