"""Host-key checking: known_hosts files; unknown keys refused unless --accept-new; changed never.

Fabric's Connection installs paramiko's AutoAddPolicy (fabric#2071): any key, even a man in
the middle's, would be trusted. Every client we build gets one of these policies instead.
"""

from __future__ import annotations

import binascii
import fnmatch
import os
import threading
from base64 import b64decode, b64encode
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
        self._revoked: set[tuple[str, str]] = set()  # (key type, base64) under @revoked
        self._ca: list[tuple[list[str], str]] = []    # (host patterns, 'file:line')
        #: Lines skipped, each naming its file and line (printed once by the Runner).
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        for f in files:
            if f.is_file():
                for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                    self._read_line(line.strip(), f"{f}:{n}")

    def _read_line(self, line: str, where: str) -> None:
        if not line or line.startswith("#"):
            return
        marker = None
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
        fields = line.split()
        if len(fields) < 3:
            self.warnings.append(f"{where}: not a known_hosts line: skipped")
            return
        if marker == "@cert-authority":
            # Host certificates are not verified here. A host known only through a CA would
            # look unknown, and --accept-new would record whatever key it shows: say so, and
            # refuse to record keys for these names (see covered_by_ca).
            self._ca.append((fields[0].split(","), where))
            self.warnings.append(f"{where}: @cert-authority lines are not supported by "
                                 f"sentryfab: hosts matching {fields[0]} need their own key "
                                 "line (ssh-keyscan), and --accept-new will not record them")
            return
        if marker == "@revoked":
            self._revoked.add((fields[1], fields[2]))
            return
        if marker is not None:
            self.warnings.append(f"{where}: unknown marker {marker}: skipped")
            return
        bad = [h for h in fields[0].split(",") if h.startswith("|") and not _valid_hash(h)]
        if bad:
            self.warnings.append(f"{where}: malformed hashed host name: line skipped")
            return
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError,
                TypeError, binascii.Error):
            entry = None  # a key type this paramiko cannot read: not ours to judge
        if entry is not None:
            self._entries.append(entry)

    def keys_for(self, name: str) -> list[paramiko.PKey]:
        """The keys recorded for a known_hosts name ('addr' or '[addr]:port'), none revoked."""
        with self._lock:
            entries = list(self._entries)
        return [e.key for e in entries if any(_matches(name, h) for h in e.hostnames)
                and not self.is_revoked(e.key)]

    def is_revoked(self, key: paramiko.PKey) -> bool:
        """True if an @revoked line names this key."""
        return (key.get_name(), key.get_base64()) in self._revoked

    def covered_by_ca(self, name: str) -> str | None:
        """The 'file:line' of an @cert-authority line whose patterns match `name`."""
        host = name[1:].split("]:")[0] if name.startswith("[") else name
        for patterns, where in self._ca:
            if any(fnmatch.fnmatch(host, p) or fnmatch.fnmatch(name, p) for p in patterns):
                return where
        return None

    def remember(self, name: str, key: paramiko.PKey) -> None:
        """A key accepted with --accept-new is known for the rest of the invocation."""
        with self._lock:
            self._entries.append(paramiko.hostkeys.HostKeyEntry([name], key))

    def install(self, client: paramiko.SSHClient, name: str) -> None:
        """Give a client the known keys of the one host it is about to connect to."""
        for key in self.keys_for(name):
            client.get_host_keys().add(name, key.get_name(), key)


def _valid_hash(pattern: str) -> bool:
    """|1|<base64 salt>|<base64 HMAC-SHA1>, both decodable, the HMAC 20 bytes."""
    parts = pattern.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        b64decode(parts[2], validate=True)
        return len(b64decode(parts[3], validate=True)) == 20
    except (binascii.Error, ValueError):
        return False


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("|1|"):  # hashed: HMAC-SHA1 of the name with the line's salt
        salt = pattern.split("|")[2]
        return paramiko.HostKeys.hash_host(name, salt) == pattern
    return pattern == name


def refuse_revoked(known: KnownHosts | None, hostname: str, key: paramiko.PKey) -> None:
    """A key under @revoked is never accepted, whatever the policy."""
    if known is not None and known.is_revoked(key):
        raise HostKeyError(f"REVOKED host key for {hostname} ({key.get_name()} "
                           f"{fingerprint(key)}): a known_hosts @revoked line names it; "
                           "refusing to connect")


class RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """StrictHostKeyChecking=yes: an unknown host key stops the connection, with the way out."""

    def __init__(self, record_to: Path, known: KnownHosts | None = None):
        self.record_to = record_to
        self.known = known

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        refuse_revoked(self.known, hostname, key)
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
        refuse_revoked(self.known, hostname, key)
        ca = self.known.covered_by_ca(hostname) if self.known is not None else None
        if ca:
            raise HostKeyError(f"{hostname} is known through an @cert-authority line ({ca}), "
                               "which sentryfab cannot verify: refusing to record the key it "
                               f"shows ({key.get_name()} {fingerprint(key)}); add its own key "
                               "line instead")
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
