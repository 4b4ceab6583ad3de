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


def load_known_hosts(client: paramiko.SSHClient, files: list[Path]) -> None:
    """Load every readable known_hosts file into the client (missing files are fine)."""
    for f in files:
        if f.is_file():
            client.load_system_host_keys(str(f))


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

    def __init__(self, record_to: Path):
        self.record_to = record_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
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
