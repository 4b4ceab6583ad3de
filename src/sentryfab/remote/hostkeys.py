"""Host-key checking: known_hosts files; unknown keys refused unless --accept-new; changed never.

Fabric's Connection installs paramiko's AutoAddPolicy (fabric#2071): any key, even a man in
the middle's, would be trusted. Every client we build gets one of these policies instead.
"""

from __future__ import annotations

import os
import threading
from base64 import b64encode
from hashlib import sha256
from pathlib import Path

import paramiko

from ..errors import SentryfabError

SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


class HostKeyError(SentryfabError):
    """The server's host key is unknown (and not accepted) or has changed."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style 'SHA256:...' fingerprint of a key."""
    digest = b64encode(sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def known_hosts_name(hostname: str, port: int) -> str:
    """How known_hosts spells a host: 'addr' on port 22, '[addr]:port' otherwise."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def known_hosts_files(inventory_file: Path | None) -> list[Path]:
    """Files consulted, in order: the system's, the user's, the inventory's."""
    files = [SYSTEM_KNOWN_HOSTS, Path("~/.ssh/known_hosts").expanduser()]
    if inventory_file is not None:
        files.append(inventory_file)
    return files


class KnownHosts:
    """Every known_hosts file read once per invocation, then looked up per host.

    paramiko's HostKeys.load checks each new line against all earlier ones (quadratic): with
    a 1,000-line hashed ~/.ssh/known_hosts, loading it for each of 30 connections took 40 s
    of CPU. Here each file is parsed once, linearly, and a client gets only its host's keys.
    """

    def __init__(self, files: list[Path]):
        self.files = files
        self._entries: list[paramiko.hostkeys.HostKeyEntry] = []
        self._lock = threading.Lock()
        for f in files:
            if f.is_file():
                for line in f.read_text(errors="replace").splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    try:
                        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
                    except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey,
                            ValueError, TypeError):
                        entry = None  # a key type this paramiko cannot read: not ours to judge
                    if entry is not None:
                        self._entries.append(entry)

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        """The keys recorded for a known_hosts name ('addr' or '[addr]:port')."""
        with self._lock:
            entries = list(self._entries)
        return [e.key for e in entries if any(_matches(name, h) for h in e.hostnames)]

    def remember(self, name: str, key: paramiko.PKey) -> None:
        """A key accepted with --accept-new is known for the rest of the invocation."""
        with self._lock:
            self._entries.append(paramiko.hostkeys.HostKeyEntry([name], key))

    def install(self, client: paramiko.SSHClient, name: str) -> None:
        """Give a client the known keys of the one host it is about to connect to."""
        for key in self.keys_for(name):
            client.get_host_keys().add(name, key.get_name(), key)


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("|1|"):  # hashed: HMAC-SHA1 of the name with the line's salt
        salt = pattern.split("|")[2]
        return paramiko.HostKeys.hash_host(name, salt) == pattern
    return pattern == name


class RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking=yes: an unknown host key stops the connection, with the way out."""

    def __init__(self, record_to: Path):
        self.record_to = record_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"unknown host key for {hostname} ({key.get_name()} {fingerprint(key)}): "
            f"check it out of band, then re-run with --accept-new to record it in "
            f"{self.record_to}"
        )


class AcceptNew(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking=accept-new: record unknown keys; changed keys still fail."""

    _lock = threading.Lock()

    def __init__(self, record_to: Path, known: KnownHosts | None = None):
        self.record_to = record_to
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if self.known is not None:
            self.known.remember(hostname, key)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with self._lock:
            self.record_to.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.record_to, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            with os.fdopen(fd, "a") as f:
                f.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)


def changed_key_message(hostname: str, err: paramiko.BadHostKeyException,
                        files: list[Path]) -> str:
    """What to say when a known host presents another key."""
    where = ", ".join(str(f) for f in files if f.is_file())
    return (
        f"HOST KEY CHANGED for {hostname}: expected {err.expected_key.get_name()} "
        f"{fingerprint(err.expected_key)}, got {err.key.get_name()} {fingerprint(err.key)}. "
        f"Someone may be intercepting the connection. If the host was really reinstalled, "
        f"remove its old line (ssh-keygen -R '{hostname}' -f FILE) from: {where}"
    )
