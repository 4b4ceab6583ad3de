"""Privilege escalation for a login that is not root, and permission problems in words.

Production hosts refuse root logins: sentryfab logs in as a user like `deploy` and, with
`become: sudo` (the inventory's ssh: block or a host), runs every remote command through
`sudo -n` (as Ansible's become and pyinfra's _sudo do). `-n`: a password prompt would hang
a fan-out, so sudo fails at once instead, and that failure is named here with its fix. The
command goes whole to `sh -c` as one argument; stdin flows through sudo unchanged, so the
secrets sent on it never appear in any argv.

Pure: no I/O. The remote session wraps (session.py); status and the deploy lock classify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SentryfabError
from .folding import fold_names
from .inventory import Host, Inventory
from .shell import SUDO, join, sudo

#: The inventory's values of `become:` (`none`: log in as the user that does the work).
METHODS = ("sudo", "none")
#: What every command run as root starts with (`fab run --sudo` builds the same).
SUDO_PREFIX = join(SUDO) + " "

#: Folders sentryfab keeps on a host (configs, data, audit log): root's.
OWN_PATHS = ("/etc/sentryfab", "/var/lib/sentryfab", "/var/log/sentryfab")


def wrap(command: str, how: str | None) -> str:
    """`command` as run with the host's `become` method: unchanged for None/"none", through
    `sudo -n -H -- sh -c` for "sudo" (a command already run that way is not wrapped twice)."""
    if how is None or how == "none":
        return command
    if how != "sudo":
        raise ValueError(f"unknown become method {how!r} (one of: {', '.join(METHODS)})")
    return command if command.startswith(SUDO_PREFIX) else sudo(command)


def login_user(inv: Inventory, host: Host) -> str:
    """The user sentryfab logs in as on `host`, as the inventory says (for messages)."""
    return host.user or inv.ssh.user or "the SSH user"


@dataclass(frozen=True)
class Denial:
    """A permission problem seen in a command's output: what the user may not do, the fix."""

    kind: str       # docker | files | sudo-password | sudo-tty | sudo-missing
    user: str
    what: str       # "use Docker", "use /var/lib/sentryfab", "run sudo without a password"
    fix: str
    evidence: str   # the line that showed it, shortened

    def message(self) -> str:
        """One host's finding: '<user> may not use Docker: <fix> (<evidence>)'."""
        return f"{self.user} may not {self.what}: {self.fix} ({self.evidence})"

    def summary(self, count: int, names: str = "") -> str:
        """The cluster's line: 'deploy may not use Docker on 10 hosts: <fix>' (the hosts'
        names in brackets after the count when given)."""
        on = f"{count} host{'s' * (count != 1)}" + (f" ({names})" if names else "")
        return f"{self.user} may not {self.what} on {on}: {self.fix}"


_SUDO_PASSWORD = re.compile(r"sudo: (a password is required|a terminal is required)"
                            r"|is not in the sudoers file|is not allowed to (run|execute)"
                            r"|may not run sudo")
_SUDO_TTY = re.compile(r"you must have a tty to run sudo")
_SUDO_MISSING = re.compile(r"(^|\W)sudo: (command )?not found|: sudo: not found")
_DOCKER = re.compile(r"permission denied while trying to connect to the Docker daemon socket"
                     r"(?: at (\S+?):?(?:\s|$))?", re.IGNORECASE)
_DENIED = re.compile(r"Permission denied|Operation not permitted")
#: One of OWN_PATHS, whole (not /var/lib/sentryfab-lab), however the tool quoted it.
_OWN_PATH = re.compile("(" + "|".join(re.escape(p) for p in OWN_PATHS) + r")(?![\w.-])")


def denial(text: str, user: str) -> Denial | None:
    """The permission problem `text` (a command's stderr, or a fact's output) shows, if any.

    sudo's own refusals first (nothing else ran), then the Docker socket, then sentryfab's
    folders. Anything else is not called a permission problem: a guess would hide the cause.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if _SUDO_PASSWORD.search(ln):
            return Denial("sudo-password", user, "run sudo without a password",
                          f"allow it in sudoers (`{user} ALL=(root) NOPASSWD: ALL` in a file "
                          f"under /etc/sudoers.d/), or log in as root with `become: none`",
                          _short(ln))
        if _SUDO_TTY.search(ln):
            return Denial("sudo-tty", user, "run sudo without a terminal",
                          f"add `Defaults:{user} !requiretty` to a file under /etc/sudoers.d/",
                          _short(ln))
        if _SUDO_MISSING.search(ln):
            return Denial("sudo-missing", user, "run sudo (it is not installed)",
                          "install sudo on the host, or log in as root with `become: none`",
                          _short(ln))
    for ln in lines:
        m = _DOCKER.search(ln)
        if m:
            sock = (m.group(1) or "unix:///var/run/docker.sock").removeprefix("unix://")
            return Denial("docker", user, "use Docker",
                          f"set `become: sudo` or add {user} to the docker group",
                          f"permission denied on {sock}")
    for ln in lines:
        m = _OWN_PATH.search(ln)
        if m and _DENIED.search(ln):
            return Denial("files", user, f"use {m.group(1)}",
                          f"set `become: sudo` ({m.group(1)} is root's)", _short(ln))
    return None


class PermissionRefused(SentryfabError):
    """A remote command was refused for want of rights; the message says which and the fix."""

    def __init__(self, denial: Denial):
        super().__init__(denial.message())
        self.denial = denial


def refuse(stderr: str, user: str) -> None:
    """Raise PermissionRefused if `stderr` shows a permission problem."""
    d = denial(stderr, user)
    if d is not None:
        raise PermissionRefused(d)


def summaries(refused: dict[str, Denial]) -> list[str]:
    """host -> Denial as one line per kind: 'deploy may not use Docker on 2 hosts
    (db-[1-2]): <fix>'."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for host, d in refused.items():
        groups.setdefault((d.user, d.what, d.fix), []).append(host)
    return [refused[hosts[0]].summary(len(hosts), fold_names(hosts))
            for hosts in groups.values()]


def permission_problem(stderr: str, user: str) -> str | None:
    """The permission problem in `stderr` as one sentence with its fix, or None."""
    d = denial(stderr, user)
    return d.message() if d else None


def _short(line: str, limit: int = 160) -> str:
    return line if len(line) <= limit else line[:limit - 3] + "..."
