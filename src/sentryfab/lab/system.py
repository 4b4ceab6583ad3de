"""Small I/O helpers the lab shares: running commands, log tails, files, mounts."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from sentryfab.errors import LabError
from sentryfab.lab.commands import SANE_PATH

# A fixed environment for every command: no proxy, DOCKER_HOST or locale surprises
# from the caller's shell reach the lab's daemons.
ENV = {"PATH": SANE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/root"}

INSTALL_HINT = "install it (apt-get install -y openssh-server docker.io debootstrap iproute2)"


def run(
    argv: Sequence[str],
    *,
    what: str,
    host: str | None = None,
    stdin: IO[bytes] | None = None,
    timeout: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `argv`; with `check`, a failure raises LabError naming the step and the host."""
    where = f" on {host}" if host else ""
    try:
        result = subprocess.run(
            list(argv), stdin=stdin if stdin is not None else subprocess.DEVNULL,
            capture_output=True, text=True, env=ENV, timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{what}{where}: `{argv[0]}` not found; {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        if not check:  # the caller only wants to know whether it worked
            return subprocess.CompletedProcess(list(argv), -1, "", "timed out")
        raise LabError(f"{what}{where}: `{shlex.join(argv)}` took over {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise LabError(
            f"{what}{where} failed: `{shlex.join(argv)}` exited {result.returncode}"
            + (f":\n{last_lines(output)}" if output else "")
        )
    return result


def last_lines(text: str, count: int = 15) -> str:
    """The last `count` lines of `text`, indented for an error message."""
    return "\n".join("    " + line for line in text.splitlines()[-count:])


def tail(path: Path, count: int = 15) -> str:
    """The end of a log file for an error message, or a note that it is empty/missing."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"  ({path} does not exist)"
    return f"  {path}:\n" + (last_lines(text, count) if text.strip() else "    (empty)")


def write_if_changed(path: Path, text: str, mode: int) -> bool:
    """Write `text` atomically with `mode` from the first byte; False if already so."""
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o7777) == mode:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)  # the umask may have narrowed the mode given to open()
    os.replace(tmp, path)
    return True


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            # Fields are space separated; spaces inside a path are written as \040.
            target = line.split()[1].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path, *, what: str) -> None:
    """rm -rf `path`, first detaching any mount below it so nothing beyond it is deleted."""
    if not path.exists():
        return
    for target in mounts_under(path):
        run(["umount", "--lazy", target], what=f"{what}: unmounting {target}")
    # --one-file-system: never descend into something mounted after the check above.
    run(["rm", "-rf", "--one-file-system", str(path)], what=what, timeout=600)
