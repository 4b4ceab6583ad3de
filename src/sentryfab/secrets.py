"""Secrets: read from a private file and/or SENTRYFAB_SECRET_* variables, never shown.

They never live in hosts.yaml or git. A value is only reachable through `Secrets`, which
remembers every value (and everything derived from one, like a password hash) so that
`mask()` can blank them out of any text before it is printed or logged.
"""

from __future__ import annotations

import errno
import os
import secrets as _random
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

import yaml

from .errors import SentryfabError

ENV_PREFIX = "SENTRYFAB_SECRET_"
MASK = "********"

#: Every secret a cluster needs, with what it is for (shown when one is missing).
REQUIRED: dict[str, str] = {
    "sentry_secret_key": "Sentry's system.secret-key (signs sessions and tokens)",
    "db_password": "password of the 'sentry' database user (Sentry -> PgBouncer -> PostgreSQL)",
    "replication_password": "password of the 'replicator' user (streaming replication)",
    "pgbouncer_admin_password": "password of PgBouncer's admin console user 'pgbouncer'",
    "postgres_password": "password of PostgreSQL's superuser 'postgres' (admin, failover)",
    "redis_password": "Redis requirepass, for both the cache and the queue Redis",
    "backup_cipher_pass": "the key the pgBackRest repository is encrypted with (backup role)",
    "backup_tls_seed": "what pgBackRest's TLS keys and certificates are derived from",
}


class SecretError(SentryfabError):
    """A secret is missing, or the secrets file is unsafe or unreadable."""

    exit_code = 2


class Secrets:
    """Named secret values, plus the registry of everything that must be masked."""

    def __init__(self, values: Mapping[str, str], source: str):
        self._values = dict(values)
        self.source = source
        self._sensitive: set[str] = {v for v in self._values.values() if v}
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        """The value of `name`, or SecretError saying where it should come from."""
        if name not in self._values or not self._values[name]:
            what = REQUIRED.get(name, "")
            raise SecretError(
                f"secret '{name}' is missing{f' ({what})' if what else ''}: add it to "
                f"{self.source} or set {ENV_PREFIX}{name.upper()}"
            )
        return self._values[name]

    def names(self) -> list[str]:
        """Names of the secrets present (never their values)."""
        return sorted(k for k, v in self._values.items() if v)

    def register(self, derived: str) -> str:
        """Mark a value computed from a secret (a hash, a URL with a password) as sensitive."""
        if derived:
            with self._lock:
                self._sensitive.add(derived)
        return derived

    def mask(self, text: str) -> str:
        """`text` with every secret or derived value replaced by ********."""
        with self._lock:
            values = sorted(self._sensitive, key=len, reverse=True)
        for v in values:
            text = text.replace(v, MASK)
        return text


def load(path: Path | None, environ: Mapping[str, str] | None = None) -> Secrets:
    """Secrets from `path` (if given and present) overlaid with SENTRYFAB_SECRET_* variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    source = str(path) if path else f"a secrets file (inventory 'secrets:') or {ENV_PREFIX}*"
    if path is not None and (path.exists() or path.is_symlink()):
        values.update(_read_file(path))
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and value:
            values[key[len(ENV_PREFIX):].lower()] = value
    return Secrets(values, source)


def _read_file(path: Path) -> dict[str, str]:
    # Opened once, never through a symlink; mode and owner are those of what was opened
    # (a stat by path, then a second open, could read another file than the one checked).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        why = ("is a symlink: name the file itself" if e.errno == errno.ELOOP
               else e.strerror or str(e))
        raise SecretError(f"{path}: cannot read the secrets: {why}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SecretError(f"{path}: not a regular file (a directory?): name the secrets "
                          "file itself")
    with os.fdopen(fd, "rb") as f:
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets other users read the "
                f"secrets; run: chmod 600 {path}")
        if st.st_uid not in (os.geteuid(), 0):
            raise SecretError(f"{path}: owned by uid {st.st_uid}, not by you: another user "
                              "could change the secrets")
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise SecretError(f"{path}:{line}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        # Never echo the YAML error's context: it would quote a secret.
        raise SecretError(f"{path}{line}: not valid YAML") from None
    if not isinstance(data, dict):
        raise SecretError(f"{path}: must be a mapping of name: value")
    bad = [str(k) for k, v in data.items() if not isinstance(v, str | int) or isinstance(v, bool)]
    if bad:
        raise SecretError(f"{path}: values must be strings: {', '.join(bad)}")
    return {str(k): str(v) for k, v in data.items()}


def generate() -> dict[str, str]:
    """Fresh random values for every required secret (URL- and config-safe characters)."""
    out = {name: _random.token_urlsafe(32) for name in REQUIRED}
    out["sentry_secret_key"] = _random.token_urlsafe(50)
    return out


def write_new(path: Path, values: Mapping[str, str], force: bool = False) -> None:
    """Write a secrets file created 0600 from its first byte; refuse to overwrite unless forced."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Never through a symlink, even with --force (it would write the secrets elsewhere).
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise SecretError(f"{path} exists already; keep it, or pass --force to replace "
                          "every secret (the running cluster would then need a redeploy)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SecretError(f"{path} is a symlink: refusing to write secrets through it") \
                from None
        raise
    os.fchmod(fd, 0o600)  # O_TRUNC keeps an existing file's mode
    with os.fdopen(fd, "w") as f:
        f.write("# sentryfab secrets: keep out of git, mode 0600.\n")
        yaml.safe_dump(dict(values), f, sort_keys=True)
