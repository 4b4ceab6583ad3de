"""hosts.yaml: load it, validate all of it before anything connects, and hand out typed hosts."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .containers.cleanup import AT_RE as CLEANUP_AT_RE
from .errors import InventoryError
from .roles import REDIS_ROLES, ROLE_NEEDS, ROLES, SENTRY_ROLES

ENV_VAR = "SENTRYFAB_INVENTORY"
DEFAULT_FILE = "hosts.yaml"

TOP_KEYS = ("cluster", "ssh", "roles", "hosts", "secrets", "statsd", "thresholds", "lock_host",
            "owners", "dashboards", "alerts", "sentry")
#: The `sentry:` section: settings of Sentry itself, the same on all its hosts.
SENTRY_KEYS = ("url", "admin_email", "single_organization", "sample_data", "mail", "filestore",
               "retention_days", "cleanup_at")
FILESTORE_KEYS = ("backend", "path", "shared", "options")
#: Sentry 9.1.2's filestore backends (sentry.filestore): a local folder, Amazon S3, Google
#: Cloud Storage.
FILESTORE_BACKENDS = ("filesystem", "s3", "gcs")
MAIL_KEYS = ("host", "port", "username", "from", "use_tls")
SSH_KEYS = ("user", "port", "key_file", "known_hosts", "connect_timeout", "command_timeout",
            "jump")
HOST_KEYS = ("address", "port", "user", "roles", "vars")
# Role vars whose type we know; anything else is passed through to templates as-is.
ROLE_VAR_TYPES: dict[str, type] = {
    "image": str, "tag": str, "processes": int, "threads": int, "concurrency": int,
    "base_port": int, "port": int, "uid": int, "worker_connections": int, "user": str,
}
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: A Docker image reference without its tag: never an option (a leading '-').
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: The newest Sentry whose architecture sentryfab runs (web, worker, cron, Redis, PostgreSQL).
LAST_SENTRY = "9.1.2"
_VERSION_RE = re.compile(r"^v?(\d+)(?:[.\-_+]|$)")
#: Tags that name no release: they move, and on getsentry/sentry they mean 10 or later.
MOVING_TAGS = ("latest", "nightly")
# What Sentry needs besides what sentryfab runs: 10.0 brought Kafka, Snuba, ClickHouse and
# Symbolicator; Relay came with 20.6 (getsentry/onpremise's docker-compose.yml at each tag).
_NEEDS_10 = "Kafka, Snuba, ClickHouse and Symbolicator"
_NEEDS_20 = "Relay, Kafka, Snuba, ClickHouse and Symbolicator"
#: The Redis the reference pins: 7 made Lua globals read-only, and Sentry 9's digest
#: scripts write one (Sentry 9's era ran Redis 3.2 to 5; 6.x still allows it).
LAST_REDIS = "6.2"
#: Planning figures and limits per role: "size" (16kb, 2tb), "positive", or the least
#: number allowed.
FIGURES: dict[str, dict[str, Any]] = {
    "redis-queue": {"events_per_second": "positive", "backlog_minutes": "positive",
                    "event_size": "size"},
    "db": {"data_disk": "size", "bytes_per_event": "size", "wal_bytes_per_event": "size"},
    "web": {"events_per_second_per_process": "positive", "max_body_mb": 32},
    "worker": {"events_per_second_per_process": "positive", "db_outage_seconds": 1},
}
FIGURE_WHY = {"max_body_mb": " (Sentry's chunk upload tells sentry-cli to send 32 MiB)"}
SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*([kmgt]b?|b)?$", re.IGNORECASE)
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                         r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class SSHSettings:
    """Cluster-wide SSH defaults; ~/.ssh/config and per-host values override them."""

    user: str | None = None
    port: int | None = None
    key_file: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: float = 10.0
    command_timeout: float | None = None
    jump: str | None = None


@dataclass(frozen=True)
class Host:
    """One machine of the cluster."""

    name: str
    address: str
    roles: tuple[str, ...] = ()
    port: int | None = None
    user: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)

    def has(self, role: str) -> bool:
        """True if this host carries `role`."""
        return role in self.roles


@dataclass(frozen=True)
class Inventory:
    """A validated hosts.yaml."""

    path: Path
    cluster: str
    ssh: SSHSettings
    roles: Mapping[str, Mapping[str, Any]]
    hosts: tuple[Host, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        """The host called `name` (KeyError if none)."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def with_role(self, role: str) -> list[Host]:
        """Hosts carrying `role`, in inventory order."""
        return [h for h in self.hosts if role in h.roles]

    def role_vars(self, role: str) -> dict[str, Any]:
        """The per-role vars of `role` (empty if none were set)."""
        return dict(self.roles.get(role, {}))


def sentry_release_problem(tag: str) -> str | None:
    """Why sentryfab cannot run the Sentry image tagged `tag`, or None if it can.

    A tag whose version is 10 or later is refused, and so is one that names no version
    (latest, nightly). Anything else passes: 9.1.2, 9.1.1, a lab build like 9.1.2-lab2, or a
    local build name.
    """
    pin = f"sentryfab runs Sentry up to {LAST_SENTRY}: use tag: \"{LAST_SENTRY}\""
    if tag.lower() in MOVING_TAGS:
        return (f"Sentry image tag '{tag}' names no release: it moves, and on getsentry/sentry "
                f"it is the newest, which needs {_NEEDS_20}, roles sentryfab does not manage. "
                + pin)
    m = _VERSION_RE.match(tag)
    if m and int(m.group(1)) >= 10:
        needs = _NEEDS_20 if int(m.group(1)) >= 20 else _NEEDS_10
        return f"Sentry {tag} needs {needs}, roles sentryfab does not manage. " + pin
    return None


def redis_release_problem(tag: str) -> str | None:
    """Why Sentry 9 cannot use the Redis image tagged `tag`, or None if it can.

    A tag whose version is 7 or later is refused, and so is `latest` (the newest Redis).
    Anything else passes: 6.2, 5.0.14, 6-alpine, a lab build like 6 or 1.
    """
    why = ("Sentry 9's digest scripts write Lua globals, which Redis 7 and later refuse "
           "('Attempt to modify a readonly table': no alert digest is ever sent)")
    pin = f'use a Redis before 7, like tag: "{LAST_REDIS}"'
    if tag.lower() in MOVING_TAGS:
        return (f"Redis image tag '{tag}' names no release: it moves, and on the official "
                f"redis image it is the newest. {why}: {pin}")
    m = _VERSION_RE.match(tag)
    if m and int(m.group(1)) >= 7:
        return f"Redis {tag}: {why}: {pin}"
    return None


def inventory_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """$SENTRYFAB_INVENTORY if set, else hosts.yaml in the current directory."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR):
        return Path(environ[ENV_VAR]).expanduser()
    return (cwd or Path.cwd()) / DEFAULT_FILE


def load(path: Path | str | None = None) -> Inventory:
    """Read and validate an inventory; raise InventoryError listing every problem."""
    path = Path(path) if path is not None else inventory_path()
    label = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError([
            f"{path}: no such inventory file (set ${ENV_VAR} or run from the folder that "
            f"holds {DEFAULT_FILE})"
        ]) from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise InventoryError([f"{label}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                              f"at offset {e.start})"]) from None
    except OSError as e:
        raise InventoryError([f"{path}: cannot read: {e.strerror or e}"]) from None
    return parse(text, path, label)


def parse(text: str, path: Path, label: str | None = None) -> Inventory:
    """Validate inventory text read from `path` (relative files resolve against its folder)."""
    label = label or path.name
    try:
        node, data = _compose_and_load(text)
    except AliasError as e:
        raise InventoryError([f"{label}:{e.line}: YAML anchors and aliases (&name, *name, <<) "
                              "are not allowed in an inventory: write the value out"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{label}:{mark.line + 1}" if mark else label
        problem = getattr(e, "problem", None) or str(e)
        raise InventoryError([f"{where}: not valid YAML: {problem}"]) from None
    v = _Validator(label, _line_map(node))
    inv = v.check(data, path)
    if v.problems:
        raise InventoryError(v.problems)
    assert inv is not None
    return inv


# libyaml when present: parsing 55 hosts in pure Python costs ~60 ms of every command.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class AliasError(yaml.YAMLError):
    """An inventory reuses a node through a YAML alias (refused: see _refuse_aliases)."""

    def __init__(self, line: int):
        super().__init__()
        self.line = line


def _compose_and_load(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for line numbers) and the data built from it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        _refuse_aliases(node)
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _refuse_aliases(root: yaml.Node | None) -> None:
    """An alias makes the composed tree a graph: a few hundred bytes of nested aliases
    expand to billions of paths (seen: 16.8 s and 1.6 GB), and one that refers to itself
    recurses forever. An inventory has no need for them: a node met twice is refused."""
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        n = stack.pop()
        if id(n) in seen:
            raise AliasError(n.start_mark.line + 1)
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            stack += [x for pair in n.value for x in pair]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value


def _line_map(node: yaml.Node | None) -> dict[str, int | list[tuple[str, int]]]:
    """Map each 'a/b/0' path to its line; duplicate mapping keys land under '!dup'."""
    lines: dict[str, Any] = {"!dup": []}

    def walk(n: yaml.Node, path: str, line: int | None = None) -> None:
        # A mapping entry is reported at its key's line, where people look for it.
        lines[path] = line or n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, val in n.value:
                key = str(k.value)
                sub = f"{path}/{key}" if path else key
                if key in seen:
                    lines["!dup"].append((sub, k.start_mark.line + 1))
                seen.add(key)
                walk(val, sub, k.start_mark.line + 1)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, f"{path}/{i}" if path else str(i))

    if node is not None:
        walk(node, "")
    return lines


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Validator:
    """Collects every problem with its place instead of stopping at the first."""

    def __init__(self, label: str, lines: dict[str, Any]):
        self.label = label
        self.lines = lines
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        where = f"{self.label}:{line}" if isinstance(line, int) else self.label
        self.problems.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")

    def check(self, data: Any, path: Path) -> Inventory | None:
        for dup, _line in self.lines["!dup"]:
            self.add(dup, "defined twice (the second one would silently win)")
        if not isinstance(data, dict):
            self.add("", "the inventory must be a mapping with 'hosts:' (and optionally "
                         "'ssh:', 'roles:')")
            return None
        for key in data:
            if key not in TOP_KEYS:
                self.add(str(key), f"unknown key{_suggest(key, TOP_KEYS)}")
        base = path.parent
        ssh = self._ssh(data.get("ssh") or {}, base)
        roles = self._roles(data.get("roles") or {})
        hosts = self._hosts(data.get("hosts"))
        self._cluster_rules(hosts)
        self._sentry(data.get("sentry"))
        self._filestore((data.get("sentry") or {}) if isinstance(data.get("sentry"), dict)
                        else {}, hosts)
        cluster = data.get("cluster", path.stem)
        if not isinstance(cluster, str):
            self.add("cluster", "must be a string")
        self._control_chars(data, "")
        lock = data.get("lock_host")
        if lock is not None and str(lock) not in {h.name for h in hosts}:
            self.add("lock_host", f"no host named {lock!r} (the deploy lock's host must be "
                                  "one of hosts:)")
        extra = {k: data[k] for k in data if k not in ("cluster", "ssh", "roles", "hosts")}
        if self.problems or ssh is None:
            return None
        return Inventory(path=path, cluster=str(cluster), ssh=ssh, roles=roles,
                         hosts=tuple(hosts), extra=extra)

    def _ssh(self, raw: Any, base: Path) -> SSHSettings | None:
        if not isinstance(raw, dict):
            self.add("ssh", "must be a mapping (user, port, key_file, known_hosts, ...)")
            return None
        for key in raw:
            if key not in SSH_KEYS:
                self.add(f"ssh/{key}", f"unknown key{_suggest(key, SSH_KEYS)}")
        port = self._port(raw.get("port"), "ssh/port")
        ct = self._positive(raw.get("connect_timeout", 10.0), "ssh/connect_timeout")
        cmd_t = raw.get("command_timeout")
        cmd_t = None if cmd_t is None else self._positive(cmd_t, "ssh/command_timeout")
        for key in ("user", "key_file", "known_hosts", "jump"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                self.add(f"ssh/{key}", "must be a string")
        return SSHSettings(
            user=raw.get("user"),
            port=port,
            key_file=_resolve(raw.get("key_file"), base),
            known_hosts=_resolve(raw.get("known_hosts"), base),
            connect_timeout=ct or 10.0,
            command_timeout=cmd_t,
            jump=raw.get("jump"),
        )

    def _roles(self, raw: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(raw, dict):
            self.add("roles", "must be a mapping of role name -> vars")
            return {}
        out: dict[str, dict[str, Any]] = {}
        for role, rvars in raw.items():
            path = f"roles/{role}"
            if role not in ROLES:
                self.add(path, f"unknown role '{role}'{_suggest(role, ROLES)}")
                continue
            if rvars is None:
                rvars = {}
            if not isinstance(rvars, dict):
                self.add(path, "must be a mapping of vars (image, tag, processes, ...)")
                continue
            self._var_types(rvars, path)
            if role in SENTRY_ROLES:
                self._tag(rvars, path, sentry_release_problem)
            if role in REDIS_ROLES:
                self._tag(rvars, path, redis_release_problem)
            self._figures((role,), rvars, path)
            out[role] = rvars
        return out

    def _hosts(self, raw: Any) -> list[Host]:
        if raw is None:
            self.add("", "no 'hosts:' section: list the machines of the cluster")
            return []
        if not isinstance(raw, dict):
            self.add("hosts", "must be a mapping of host name -> {address, roles, ...}")
            return []
        hosts: list[Host] = []
        seen_addr: dict[tuple[str, int | None], str] = {}
        for name, spec in raw.items():
            path = f"hosts/{name}"
            if not isinstance(name, str):  # `yes:` or `1.10:` as a host name
                self.add("hosts", f"host name {name!r}: YAML read it as a "
                                  f"{type(name).__name__}, not text (quote it)")
            name = str(name)
            if not NAME_RE.match(name):
                self.add(path, "host names may hold letters, digits, '.', '_' and '-' only")
            if not isinstance(spec, dict):
                self.add(path, "must be a mapping with at least 'address:'")
                continue
            for key in spec:
                if key not in HOST_KEYS:
                    self.add(f"{path}/{key}", f"unknown key{_suggest(key, HOST_KEYS)}")
            address = spec.get("address")
            if address is None:
                self.add(path, "missing 'address:' (a DNS name or an IP address)")
                continue
            address = str(address)
            if not _valid_address(address):
                self.add(f"{path}/address", f"'{address}' is neither an IP address nor a "
                                            "valid host name")
            port = self._port(spec.get("port"), f"{path}/port")
            if spec.get("user") is not None and not isinstance(spec["user"], str):
                self.add(f"{path}/user", "must be a string")
            roles = self._host_roles(spec.get("roles") or [], f"{path}/roles")
            hvars = spec.get("vars") or {}
            if not isinstance(hvars, dict):
                self.add(f"{path}/vars", "must be a mapping")
                hvars = {}
            self._var_types(hvars, f"{path}/vars")
            if set(roles) & set(SENTRY_ROLES):
                self._tag(hvars, f"{path}/vars", sentry_release_problem)
            if set(roles) & set(REDIS_ROLES):
                self._tag(hvars, f"{path}/vars", redis_release_problem)
            self._figures(roles, hvars, f"{path}/vars")
            key = (address, port)
            if key in seen_addr:
                self.add(f"{path}/address", f"'{address}' is also the address of "
                                            f"'{seen_addr[key]}'")
            seen_addr.setdefault(key, name)
            hosts.append(Host(name=name, address=address, roles=roles, port=port,
                              user=spec.get("user"), vars=hvars))
        return hosts

    def _host_roles(self, raw: Any, path: str) -> tuple[str, ...]:
        if not isinstance(raw, list):
            self.add(path, f"must be a list, e.g. [web] (one of: {', '.join(ROLES)})")
            return ()
        roles: list[str] = []
        for i, role in enumerate(raw):
            if role not in ROLES:
                self.add(f"{path}/{i}", f"unknown role '{role}'{_suggest(str(role), ROLES)}")
            elif role in roles:
                self.add(f"{path}/{i}", f"role '{role}' is listed twice")
            else:
                roles.append(role)
        return tuple(roles)

    def _cluster_rules(self, hosts: list[Host]) -> None:
        by_role = {r: [h.name for h in hosts if r in h.roles] for r in ROLES}
        for role, needs in ROLE_NEEDS.items():
            if not by_role[role]:
                continue
            for need in needs:
                if not by_role[need]:
                    users = ", ".join(by_role[role][:3]) + ("..." if len(by_role[role]) > 3 else "")
                    self.add("hosts", f"role '{need}' has no host, but '{role}' needs it "
                                      f"(used by {users}): add '{need}' to a host's roles")
        crons = by_role["cron"]
        if len(crons) > 1:
            self.add("hosts", f"role 'cron' must run on exactly one host, found "
                              f"{len(crons)}: {', '.join(crons)} (two crons run every job twice)")
        elif not crons and any(by_role[r] for r in SENTRY_ROLES):
            self.add("hosts", "role 'cron' must run on exactly one host, found none: "
                              "add 'cron' to one worker's roles")

    def _tag(self, rvars: dict[str, Any], path: str,
             problem_of: Callable[[str], str | None]) -> None:
        """An image tag the role's rule (`problem_of`) refuses is a problem at `path`/tag."""
        tag = rvars.get("tag")
        if isinstance(tag, str):
            problem = problem_of(tag)
            if problem:
                self.add(f"{path}/tag", problem)

    def _control_chars(self, value: Any, path: str) -> None:
        """No key or value holds a control character: a newline in a var would add lines to
        pgbouncer.ini, postgresql.conf or sentry.conf.py that their validators accept."""
        if isinstance(value, dict):
            for k, v in value.items():
                sub = f"{path}/{k}" if path else str(k)
                if isinstance(k, str) and CONTROL_RE.search(k):
                    self.add(sub, "a key holds a control character (a line break?)")
                self._control_chars(v, sub)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._control_chars(v, f"{path}/{i}")
        elif isinstance(value, str) and CONTROL_RE.search(value):
            self.add(path, f"holds a control character: {value!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            self.add(path, f"must be a finite number, got {value!r}")

    def _var_types(self, rvars: dict[str, Any], path: str) -> None:
        """Role vars and host vars alike: declared types, image names, counts."""
        for var, want in ROLE_VAR_TYPES.items():
            if var in rvars and not _is(rvars[var], want):
                hint = (f" (write {var}: \"{rvars[var]}\" so YAML keeps it a string)"
                        if want is str else "")
                self.add(f"{path}/{var}", f"must be {want.__name__}, got "
                                          f"{type(rvars[var]).__name__}{hint}")
        for var in ("processes", "threads", "concurrency"):
            if var in rvars and _is(rvars[var], int) and rvars[var] < 1:
                self.add(f"{path}/{var}", "must be at least 1")
        image = rvars.get("image")
        if isinstance(image, str) and not IMAGE_RE.match(image):
            self.add(f"{path}/image", f"must be an image name like sentry or "
                                      f"registry.example.net/sentry, got {image!r}")

    def _figures(self, roles: Any, rvars: dict[str, Any], path: str) -> None:
        """The planning figures and limits of `roles` (FIGURES) in role or host vars."""
        for role in roles:
            for var, kind in FIGURES.get(role, {}).items():
                if var not in rvars:
                    continue
                value = rvars[var]
                number = _is(value, (int, float))
                if kind == "size":
                    if not (_is(value, int) or SIZE_RE.match(str(value))):
                        self.add(f"{path}/{var}", f"must be a size like 16kb, got {value!r}")
                elif kind == "positive":
                    if not (number and value > 0):
                        self.add(f"{path}/{var}", f"must be a positive number, got {value!r}")
                elif not (number and value >= kind):
                    self.add(f"{path}/{var}", f"must be at least {kind}, got {value!r}"
                                              + FIGURE_WHY.get(var, ""))

    def _sentry(self, raw: Any) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.add("sentry", f"must be a mapping ({', '.join(SENTRY_KEYS)})")
            return
        for key in raw:
            if key not in SENTRY_KEYS:
                self.add(f"sentry/{key}", f"unknown key{_suggest(key, SENTRY_KEYS)}")
        url = raw.get("url")
        if url is not None and not (isinstance(url, str) and re.match(r"^https?://[^/\s]+", url)
                                    and not url.endswith("/")):
            self.add("sentry/url", f"must be the address users reach Sentry at, like "
                                   f"https://sentry.example.net (no trailing /), got {url!r}")
        for flag in ("single_organization", "sample_data"):
            if flag in raw and not isinstance(raw[flag], bool):
                self.add(f"sentry/{flag}", "must be true or false")
        days = raw.get("retention_days")
        if days is not None and not (_is(days, int) and days >= 1):
            self.add("sentry/retention_days", f"must be a whole number of days (1 or more; "
                                              f"Sentry's default is 90), got {days!r}")
        at = raw.get("cleanup_at")
        if at is not None and not (isinstance(at, str) and CLEANUP_AT_RE.match(at)):
            self.add("sentry/cleanup_at", f"must be a time of day HH:MM in UTC, quoted "
                                          f"(\"03:00\"), got {at!r}")
        mail = raw.get("mail")
        if mail is None:
            return
        if not isinstance(mail, dict):
            self.add("sentry/mail", f"must be a mapping ({', '.join(MAIL_KEYS)})")
            return
        for key in mail:
            if key not in MAIL_KEYS:
                self.add(f"sentry/mail/{key}", f"unknown key{_suggest(key, MAIL_KEYS)}")
        self._port(mail.get("port"), "sentry/mail/port")
        if "use_tls" in mail and not isinstance(mail["use_tls"], bool):
            self.add("sentry/mail/use_tls", "must be true or false")
        if not mail.get("host"):
            self.add("sentry/mail", "missing 'host:' (the SMTP server Sentry sends through)")

    def _filestore(self, sentry: dict[str, Any], hosts: list[Host]) -> None:
        """Every Sentry host must see the files any of them received: a folder on each
        host's own disk is refused as soon as there are two Sentry hosts."""
        raw = sentry.get("filestore")
        if raw is not None and not isinstance(raw, dict):
            self.add("sentry/filestore", f"must be a mapping ({', '.join(FILESTORE_KEYS)})")
            return
        raw = raw or {}
        for key in raw:
            if key not in FILESTORE_KEYS:
                self.add(f"sentry/filestore/{key}", f"unknown key{_suggest(key, FILESTORE_KEYS)}")
        backend = raw.get("backend", "filesystem")
        if backend not in FILESTORE_BACKENDS:
            self.add("sentry/filestore/backend", f"must be one of {', '.join(FILESTORE_BACKENDS)}"
                                                 f", got {backend!r}")
            return
        if "shared" in raw and not isinstance(raw["shared"], bool):
            self.add("sentry/filestore/shared", "must be true or false")
        if backend != "filesystem":
            if not isinstance(raw.get("options"), dict) or not raw["options"].get("bucket_name"):
                self.add("sentry/filestore/options", f"the {backend} backend needs "
                                                     "'bucket_name:' (and its credentials)")
            return
        path = raw.get("path")
        if path is not None and not (isinstance(path, str) and path.startswith("/")):
            self.add("sentry/filestore/path", f"must be an absolute path, got {path!r}")
        sentry_hosts = [h.name for h in hosts if set(h.roles) & set(SENTRY_ROLES)]
        if len(sentry_hosts) > 1 and raw.get("shared") is not True:
            shown = ", ".join(sentry_hosts[:4]) + (", ..." if len(sentry_hosts) > 4 else "")
            self.add("sentry/filestore",
                     f"{len(sentry_hosts)} Sentry hosts ({shown}) but the filestore is a folder "
                     f"on each host's own disk: a release file or source map uploaded through "
                     f"one web host would be missing on the others. Mount shared storage (NFS) "
                     f"at {path or 'the same path'} on every Sentry host and set 'shared: "
                     f"true', or use the s3 or gcs backend")

    def _port(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        if not _is(value, int) or not 1 <= value <= 65535:
            self.add(path, f"must be a port number 1-65535, got {value!r}")
            return None
        return value

    def _positive(self, value: Any, path: str) -> float | None:
        if not _is(value, (int, float)) or value <= 0:
            self.add(path, f"must be a positive number of seconds, got {value!r}")
            return None
        return float(value)


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    # bool is an int in Python; in an inventory it never means a number.
    return isinstance(value, kind) and not isinstance(value, bool)


#: An IPv6 zone (fe80::1%eth0) is an interface name: nothing a shell or a config file could
#: read as syntax (ipaddress accepts any text after the %).
ZONE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _valid_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return bool(HOSTNAME_RE.match(address))
    zone = getattr(ip, "scope_id", None)
    return zone is None or bool(ZONE_RE.match(zone))


def _resolve(value: Any, base: Path) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
