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
            "jump", "keepalive_interval", "keepalive_count_max", "become", "persist")
HOST_KEYS = ("address", "port", "user", "roles", "vars", "become")
#: `become:` in ssh: or on a host: run remote commands as root through sudo -n, or not.
BECOME_METHODS = ("sudo", "none")
# Role vars whose type we know; anything else is passed through to templates as-is.
ROLE_VAR_TYPES: dict[str, type] = {
    "image": str, "tag": str, "processes": int, "threads": int, "concurrency": int,
    "base_port": int, "port": int, "uid": int, "worker_connections": int, "user": str,
}
#: C0 and C1 controls and the Unicode line/paragraph separators: each may end a line for
#: some reader of a rendered config.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: A Docker image reference without its tag: never an option (a leading '-').
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Role and host vars the plans and deploys read as numbers (int(), parse_size()): a whole
#: number >= 0 ("count"), a positive number of seconds ("seconds"), or a size ("size": 16kb,
#: 8gb, or bytes). Checked wherever they are written, whatever the role.
VAR_KINDS: dict[str, str] = {
    **dict.fromkeys(("max_connections", "superuser_reserved_connections", "max_client_conn",
                     "default_pool_size", "reserve_pool_size", "maxclients", "tcp_backlog",
                     "nofile", "somaxconn", "keep_images"), "count"),
    "health_timeout": "seconds",
    **dict.fromkeys(("ram", "maxmemory", "shared_buffers", "work_mem", "process_memory"),
                    "size"),
}
KIND_TEXT = {"count": "a whole number, 0 or more", "seconds": "a positive number of seconds",
             "size": "a size like 512mb or 8gb (or a number of bytes)"}
#: How deep an inventory may nest (hosts/web-1/vars/thresholds/x is 5): deeper is a mistake,
#: and a few hundred levels would exhaust Python's recursion before anything is checked.
MAX_DEPTH = 16
#: The largest inventory read, and the most values (YAML nodes) in one: 2,000 hosts take
#: about 100 KiB and 20,000 values. Past these, YAML alone takes most of a second.
MAX_BYTES = 256 * 1024
MAX_NODES = 50_000
#: Problems listed at most; the rest are counted.
MAX_PROBLEMS = 100
#: Processes, threads or concurrency on one host, at most (the reference runs 8 x 4).
MAX_PER_HOST = 1024
#: The longest key and value: a host name is a DNS name at most (253); nothing else comes
#: near 4 KiB.
MAX_KEY = 253
MAX_TEXT = 4096
#: Docker's own rule for a tag.
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: Longest value or key shown in a message: the rest is elided ("... (5000000 chars)").
SHOW_MAX = 60
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
#: `persist:` when the ssh block does not say: held connections close after 10 idle minutes.
DEFAULT_PERSIST = 600.0
#: Set (to 1) by --no-persist: this command holds no connection and uses none held.
NO_PERSIST_ENV = "SENTRYFAB_NO_PERSIST"
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)?$")
DURATION_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600}
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
    #: A keepalive every `keepalive_interval` s; this many unanswered and the host is
    #: unreachable (about interval x count after it stopped answering).
    keepalive_interval: float = 5.0
    keepalive_count_max: int = 3
    become: str | None = None  # "sudo" or None (become.py)
    #: Seconds an idle connection stays held for the next command (0: none is held).
    persist: float = DEFAULT_PERSIST


@dataclass(frozen=True)
class Host:
    """One machine of the cluster."""

    name: str
    address: str
    roles: tuple[str, ...] = ()
    port: int | None = None
    user: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    become: str | None = None  # the host's, else ssh:'s; "sudo" or None

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

    def roles_present(self) -> frozenset[str]:
        """Every role some host carries."""
        return frozenset(r for h in self.hosts for r in h.roles)

    def role_vars(self, role: str) -> dict[str, Any]:
        """The per-role vars of `role` (empty if none were set)."""
        return dict(self.roles.get(role, {}))


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or "<n>s|m|h"; None if it is neither (or negative)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    m = DURATION_RE.match(str(value).strip().lower())
    return float(m.group(1)) * DURATION_UNITS[m.group(2)] if m else None


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
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # never more: a 5 GB file is refused, not read
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InventoryError([
            f"{path}: no such inventory file (set ${ENV_VAR} or run from the folder that "
            f"holds {DEFAULT_FILE})"
        ]) from None
    except UnicodeDecodeError as e:
        if len(raw) > MAX_BYTES:
            return parse(raw.decode("utf-8", "replace"), path, label)  # refused for its size
        line = e.object[:e.start].count(b"\n") + 1
        raise InventoryError([f"{label}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                              f"at offset {e.start})"]) from None
    except OSError as e:
        raise InventoryError([f"{path}: cannot read: {e.strerror or e}"]) from None
    # Universal newlines, as read_text() gave: a lone \r ends a line too.
    return parse(text.replace("\r\n", "\n").replace("\r", "\n"), path, label)


def parse(text: str, path: Path, label: str | None = None) -> Inventory:
    """Validate inventory text read from `path` (relative files resolve against its folder)."""
    label = label or path.name
    if len(text) > MAX_BYTES:
        raise InventoryError([f"{label}:1: more than {MAX_BYTES // 1024} KiB: far bigger than "
                              f"an inventory needs (the reference's 55 hosts take 7 KiB), and "
                              f"reading it would take seconds"])
    try:
        node, data = _compose_and_load(text)
    except AliasError as e:
        raise InventoryError([f"{label}:{e.line}: YAML anchors and aliases (&name, *name, <<) "
                              "are not allowed in an inventory: write the value out"]) from None
    except Refused as e:
        raise InventoryError([f"{label}:{e.line}: {e.message}"]) from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or (str(e).splitlines() or ["?"])[0]
        raise InventoryError([f"{label}:{_yaml_line(e, text)}: not valid YAML: "
                              f"{_printable(_clip(problem, 200))}"]) from None
    except RecursionError:  # only without libyaml, whose parser stops at 1,000 levels
        raise InventoryError([f"{label}:1: nested too deep for YAML's parser"]) from None
    v = _Validator(label, _line_map(node))
    inv = v.check(data, path)
    if len(v.problems) > MAX_PROBLEMS:  # 40,000 duplicate keys fit in MAX_BYTES
        rest = v.problems[MAX_PROBLEMS:]
        v.problems[MAX_PROBLEMS:] = [f"{rest[0].split(': ', 1)[0]}: and {len(rest):,} more "
                                     "problems (fix these first)"]
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


class Refused(yaml.YAMLError):
    """YAML a reader would choke on, refused before it is built (see _refuse_aliases)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


#: Scalars whose construction can fail: a 5,000-digit int passes Python's int-to-text
#: limit, 2024-13-45 is no date (both raised a bare ValueError out of yaml).
_BUILT_TAGS = {"tag:yaml.org,2002:int": "number", "tag:yaml.org,2002:float": "number",
               "tag:yaml.org,2002:timestamp": "date"}


def _yaml_line(e: yaml.YAMLError, text: str) -> int:
    """The line a YAML error is at; a ReaderError (a character YAML never takes) has only
    an offset, and an error with no place at all is put on line 1."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    if mark is not None:
        return mark.line + 1
    pos = getattr(e, "position", None)
    return text.count("\n", 0, pos) + 1 if isinstance(pos, int) else 1


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
    recurses forever. An inventory has no need for them: a node met twice is refused. So are
    nesting deeper than MAX_DEPTH (the walks after this one recurse: 900 levels of [ crashed
    them with a RecursionError) and a number or date YAML cannot build (_BUILT_TAGS)."""
    seen: set[int] = set()
    build = yaml.constructor.SafeConstructor()
    stack = [(root, 0)] if root is not None else []
    while stack:
        n, depth = stack.pop()
        if id(n) in seen:
            raise AliasError(n.start_mark.line + 1)
        seen.add(id(n))
        if len(seen) > MAX_NODES:
            raise Refused(n.start_mark.line + 1, f"more than {MAX_NODES:,} values: far more "
                                                 "than an inventory needs")
        if depth > MAX_DEPTH:
            raise Refused(n.start_mark.line + 1, f"nested more than {MAX_DEPTH} levels deep "
                                                 "(an inventory needs 6): write it flatter")
        if isinstance(n, yaml.ScalarNode) and n.tag in _BUILT_TAGS:
            try:
                value = build.construct_object(n)
            except (ValueError, OverflowError) as e:
                raise Refused(n.start_mark.line + 1, f"YAML cannot read {_show(n.value)} as a "
                                                     f"{_BUILT_TAGS[n.tag]} ({_clip(str(e))}): "
                                                     "quote it if it is text") from None
            # Past 2**63 no setting means it, and past 4,300 digits str() raises.
            if isinstance(value, int) and not -2**63 <= value < 2**63:
                raise Refused(n.start_mark.line + 1, f"{_show(n.value)} is too big a number "
                                                     "for any setting (quote it if it is text)")
        if isinstance(n, yaml.MappingNode):
            stack += [(x, depth + 1) for pair in n.value for x in pair]
        elif isinstance(n, yaml.SequenceNode):
            stack += [(x, depth + 1) for x in n.value]


_STR_TAG = "tag:yaml.org,2002:str"


def _line_map(node: yaml.Node | None) -> dict[str, Any]:
    """Map each 'a/b/0' path to its line; duplicate mapping keys land under '!dup'; the text
    as written of keys and values YAML did not read as text (`yes:`, 24.10) under '!rawkey'
    and '!raw'."""
    lines: dict[str, Any] = {"!dup": [], "!raw": {}, "!rawkey": {}}
    build = yaml.constructor.SafeConstructor()

    def key_of(k: yaml.Node) -> str:
        # The key as the data holds it, so paths match: `yes:` is True, `null:` None.
        if isinstance(k, yaml.ScalarNode) and k.tag != _STR_TAG:
            try:
                return str(build.construct_object(k))
            except (yaml.YAMLError, TypeError, ValueError):
                pass
        return str(k.value)

    def walk(n: yaml.Node, path: str, line: int | None = None) -> None:
        # A mapping entry is reported at its key's line, where people look for it.
        lines[path] = line or n.start_mark.line + 1
        if isinstance(n, yaml.ScalarNode) and n.tag != _STR_TAG:
            lines["!raw"][path] = n.value
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, val in n.value:
                key = key_of(k)
                sub = f"{path}/{key}" if path else key
                if isinstance(k, yaml.ScalarNode) and k.tag != _STR_TAG:
                    lines["!rawkey"][sub] = k.value
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
    if len(str(word)) > SHOW_MAX:  # no key is that long; difflib would take seconds on MBs
        return ""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Validator:
    """Collects every problem with its place instead of stopping at the first."""

    def __init__(self, label: str, lines: dict[str, Any]):
        self.label = label
        self.lines = lines
        self.problems: list[str] = []
        self.become: str | None = None  # ssh/become, the hosts' default

    def add(self, path: str, message: str, at: str | None = None) -> None:
        """A problem with `path`, reported at the line of `at` (default: `path`): one line,
        of printable characters (a key may hold an escape sequence), of bounded length."""
        where = f"{self.label}:{self._line(path if at is None else at)}"
        shown = "/".join(_clip(part) for part in path.split("/"))
        text = f"{where}: {shown}: {message}" if path else f"{where}: {message}"
        self.problems.append(_printable(_clip(text, 1000)))

    def _line(self, path: str) -> int:
        """The line of `path`, else of its nearest parent in the file (a missing
        'filestore:' is reported at 'sentry:'), else 1 (an empty file)."""
        while True:
            line = self.lines.get(path)
            if isinstance(line, int):
                return line
            if not path:
                return 1
            path = path.rpartition("/")[0]

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
        # Only a missing or empty (null) section means none: `ssh: []` or `roles: ""` is a
        # mistake, not an empty mapping.
        ssh = self._ssh({} if data.get("ssh") is None else data["ssh"], base)
        self.become = ssh.become if ssh else None
        roles = self._roles({} if data.get("roles") is None else data["roles"])
        hosts = self._hosts(data.get("hosts"))
        self._cluster_rules(hosts)
        from .containers.spec import command_problems  # here: spec imports this module
        for where, problem in command_problems(roles, hosts):
            self.add(where, problem)
        self._sentry(data.get("sentry"))
        self._filestore((data.get("sentry") or {}) if isinstance(data.get("sentry"), dict)
                        else {}, hosts)
        cluster = data.get("cluster", path.stem)
        if not isinstance(cluster, str):
            self.add("cluster", "must be a string")
        self._control_chars(data, "")
        lock = data.get("lock_host")
        if lock is not None and str(lock) not in {h.name for h in hosts}:
            self.add("lock_host", f"no host named {_show(lock)} (the deploy lock's host must be "
                                  "one of hosts:)")
        self._documents(data)
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
        ka = self._positive(raw.get("keepalive_interval", 5.0), "ssh/keepalive_interval")
        ka_n = raw.get("keepalive_count_max", 3)
        if isinstance(ka_n, bool) or not isinstance(ka_n, int) or ka_n < 1:
            self.add("ssh/keepalive_count_max", f"must be a whole number of at least 1, "
                                                f"got {ka_n!r}")
            ka_n = 3
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
            keepalive_interval=ka or 5.0,
            keepalive_count_max=ka_n,
            become=self._become(raw.get("become"), "ssh/become"),
            persist=self._duration(raw.get("persist", DEFAULT_PERSIST), "ssh/persist"),
        )

    def _duration(self, value: Any, path: str) -> float:
        """Seconds from 600, "600s", "10m" or "1h"; 0 is allowed (off)."""
        seconds = parse_duration(value)
        if seconds is None:
            self.add(path, f"must be a duration such as 10m, 90s, 1h or 0 (off), got "
                           f"{_show(value)}")
            return DEFAULT_PERSIST
        return seconds

    def _roles(self, raw: Any) -> dict[str, dict[str, Any]]:
        if not isinstance(raw, dict):
            self.add("roles", "must be a mapping of role name -> vars")
            return {}
        out: dict[str, dict[str, Any]] = {}
        for role, rvars in raw.items():
            path = f"roles/{role}"
            if role not in ROLES:
                self.add(path, f"unknown role '{_clip(str(role))}'{_suggest(role, ROLES)}")
                continue
            if rvars is None:
                rvars = {}
            if not isinstance(rvars, dict):
                self.add(path, "must be a mapping of vars (image, tag, processes, ...)")
                continue
            self._check_vars((role,), rvars, path)
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
            host = self._host(name, spec, seen_addr)
            if host is not None:
                hosts.append(host)
        return hosts

    def _host(self, raw_name: Any, spec: Any,
              seen_addr: dict[tuple[str, int | None], str]) -> Host | None:
        """One entry of hosts:, every problem of it added; None when it is not a mapping or
        has no address (nothing else can be checked against it). `seen_addr` maps the
        (address, port) pairs of the entries before it to their names."""
        path = f"hosts/{raw_name}"
        name = self._host_name(raw_name, path)
        if not isinstance(spec, dict):
            self.add(path, "must be a mapping with at least 'address:'")
            return None
        for key in spec:
            if key not in HOST_KEYS:
                self.add(f"{path}/{key}", f"unknown key{_suggest(key, HOST_KEYS)}")
        address = self._host_address(spec.get("address"), path)
        if address is None:
            return None
        port = self._port(spec.get("port"), f"{path}/port")
        if spec.get("user") is not None and not isinstance(spec["user"], str):
            self.add(f"{path}/user", "must be a string")
        roles = self._host_roles([] if spec.get("roles") is None else spec["roles"],
                                 f"{path}/roles")
        hvars = {} if spec.get("vars") is None else spec["vars"]
        if not isinstance(hvars, dict):
            self.add(f"{path}/vars", "must be a mapping")
            hvars = {}
        self._check_vars(roles, hvars, f"{path}/vars")
        key = (address, port)
        if key in seen_addr:
            self.add(f"{path}/address", f"{_show(address)} is also the address of "
                                        f"'{seen_addr[key]}'")
        seen_addr.setdefault(key, name)
        return Host(name=name, address=address, roles=roles, port=port,
                    user=spec.get("user"), vars=hvars,
                    become=self._become(spec.get("become"), f"{path}/become", self.become))

    def _host_name(self, name: Any, path: str) -> str:
        """A host's name as text, with a problem where YAML read it as something else or
        it holds characters no host name has."""
        if not isinstance(name, str):  # `yes:` or `1.10:` as a host name
            written = _clip(str(self.lines["!rawkey"].get(path, name)))
            self.add("hosts", f"host name {written}: YAML read it as a "
                              f"{type(name).__name__} ({_show(name)}), not text (quote it: "
                              f"\"{written}\")", at=path)
        name = str(name)
        if not NAME_RE.match(name):
            self.add(path, "host names may hold letters, digits, '.', '_' and '-' only")
        return name

    def _host_address(self, address: Any, path: str) -> str | None:
        """A host's address as text (None when missing), with a problem where it is no
        text or neither an IP address nor a host name."""
        if address is None:
            self.add(path, "missing 'address:' (a DNS name or an IP address)")
            return None
        if not isinstance(address, str):  # `address: 5` is no host anyone meant
            self.add(f"{path}/address", f"must be text (a DNS name or an IP address), got "
                                        f"{type(address).__name__} {_show(address)}")
        elif not _valid_address(address):
            self.add(f"{path}/address", f"{_show(address)} is neither an IP address nor a "
                                        "valid host name")
        return str(address)

    def _check_vars(self, roles: tuple[str, ...], rvars: dict[str, Any], path: str) -> None:
        """Vars set for `roles` (a role's own, or a host's for all its roles): their types,
        release tags of the Sentry and Redis roles, and the figures the roles read."""
        self._var_types(rvars, path)
        if set(roles) & set(SENTRY_ROLES):
            self._tag(rvars, path, sentry_release_problem)
        if set(roles) & set(REDIS_ROLES):
            self._tag(rvars, path, redis_release_problem)
        self._figures(roles, rvars, path)

    def _host_roles(self, raw: Any, path: str) -> tuple[str, ...]:
        if not isinstance(raw, list):
            self.add(path, f"must be a list, e.g. [web] (one of: {', '.join(ROLES)})")
            return ()
        roles: list[str] = []
        for i, role in enumerate(raw):
            if role not in ROLES:
                self.add(f"{path}/{i}", f"unknown role '{_clip(str(role))}'"
                                        f"{_suggest(str(role), ROLES)}")
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
        self._backup_rules(hosts, by_role["backup"])

    def _backup_rules(self, hosts: list[Host], backups: list[str]) -> None:
        """One repository host, never a database host: a repository that dies with the
        database it copies protects nothing."""
        if len(backups) > 1:
            self.add("hosts", f"role 'backup' must run on one host, found {len(backups)}: "
                              f"{', '.join(backups)} (one pgBackRest repository per cluster)")
        for h in hosts:
            if "backup" in h.roles and "db" in h.roles:
                self.add(f"hosts/{h.name}/roles",
                         "role 'backup' cannot share a host with 'db': losing that machine "
                         "would lose the database and its backups at once; put the "
                         "repository on another host")

    def _tag(self, rvars: dict[str, Any], path: str,
             problem_of: Callable[[str], str | None]) -> None:
        """An image tag the role's rule (`problem_of`) refuses is a problem at `path`/tag."""
        tag = rvars.get("tag")
        if isinstance(tag, str) and not TAG_RE.match(tag):
            self.add(f"{path}/tag", f"must be a Docker image tag (letters, digits, '_', '.', "
                                    f"'-'; at most 128), got {_show(tag)}")
        elif isinstance(tag, str):
            problem = problem_of(tag)
            if problem:
                self.add(f"{path}/tag", problem)

    def _control_chars(self, value: Any, path: str) -> None:
        """No key or value holds a control character: a newline in a var would add lines to
        pgbouncer.ini, postgresql.conf or sentry.conf.py that their validators accept. Nor
        is one longer than any setting needs (MAX_KEY, MAX_TEXT): it would be pasted into
        every config, label and runbook line that shows it."""
        if isinstance(value, dict):
            for k, v in value.items():
                sub = f"{path}/{k}" if path else str(k)
                if isinstance(k, str) and CONTROL_RE.search(k):
                    self.add(sub, "a key holds a control character (a line break?)")
                if isinstance(k, str) and len(k) > MAX_KEY:
                    self.add(sub, f"a key {len(k):,} characters long (at most {MAX_KEY})")
                self._control_chars(v, sub)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._control_chars(v, f"{path}/{i}")
        elif isinstance(value, str) and CONTROL_RE.search(value):
            self.add(path, f"holds a control character: {_show(value)}")
        elif isinstance(value, str) and len(value) > MAX_TEXT:
            self.add(path, f"{len(value):,} characters long: no setting needs more than "
                           f"{MAX_TEXT:,}")
        elif isinstance(value, float) and not math.isfinite(value):
            self.add(path, f"must be a finite number, got {_show(value)}")

    def _var_types(self, rvars: dict[str, Any], path: str) -> None:
        """Role vars and host vars alike: declared types, image names, counts."""
        for var, want in ROLE_VAR_TYPES.items():
            if var in rvars and not _is(rvars[var], want):
                # The hint quotes what was written (24.10), not what YAML made of it (24.1).
                written = self.lines["!raw"].get(f"{path}/{var}")
                hint = (f" (write {var}: \"{_clip(written)}\" so YAML keeps it a string)"
                        if want is str and written is not None else "")
                self.add(f"{path}/{var}", f"must be {want.__name__}, got "
                                          f"{type(rvars[var]).__name__}{hint}")
        for var in ("processes", "threads", "concurrency"):
            if var in rvars and _is(rvars[var], int) and rvars[var] < 1:
                self.add(f"{path}/{var}", "must be at least 1")
            elif var in rvars and _is(rvars[var], int) and rvars[var] > MAX_PER_HOST:
                # processes: 100000000 made `fab docs` list a port per process, for minutes.
                self.add(f"{path}/{var}", f"must be at most {MAX_PER_HOST} per host, got "
                                          f"{rvars[var]:,}")
        for var in ("port", "base_port"):
            if _is(rvars.get(var), int) and not 1 <= rvars[var] <= 65535:
                self.add(f"{path}/{var}", f"must be a port number 1-65535, got "
                                          f"{_show(rvars[var])}")
        for var, kind in VAR_KINDS.items():
            value = rvars.get(var)
            if isinstance(value, float) and not math.isfinite(value):
                continue  # .nan and .inf are _control_chars' to report, wherever they are
            if var in rvars and not _kind_ok(kind, value):
                self.add(f"{path}/{var}", f"must be {KIND_TEXT[kind]}, got {_show(rvars[var])}")
        image = rvars.get("image")
        if isinstance(image, str) and not (IMAGE_RE.match(image) and len(image) <= 255):
            self.add(f"{path}/image", f"must be an image name like sentry or "
                                      f"registry.example.net/sentry, got {_show(image)}")

    def _figures(self, roles: Any, rvars: dict[str, Any], path: str) -> None:
        """The planning figures and limits of `roles` (FIGURES) in role or host vars."""
        for role in roles:
            for var, kind in FIGURES.get(role, {}).items():
                if var not in rvars:
                    continue
                value = rvars[var]
                number = _is(value, (int, float))
                if kind == "size":
                    if not _kind_ok("size", value):
                        self.add(f"{path}/{var}", f"must be a size like 16kb, got {_show(value)}")
                elif kind == "positive":
                    if not (number and value > 0):
                        self.add(f"{path}/{var}", f"must be a positive number, got {_show(value)}")
                elif not (number and value >= kind):
                    self.add(f"{path}/{var}", f"must be at least {kind}, got {_show(value)}"
                                              + FIGURE_WHY.get(var, ""))

    def _documents(self, data: dict[str, Any]) -> None:
        """Top-level keys read elsewhere: the secrets file, statsd, and the runbook's
        owners, dashboards and alert targets."""
        secrets = data.get("secrets")
        if secrets is not None and not (isinstance(secrets, str) and secrets):
            self.add("secrets", f"must be the path of the secrets file, got {_show(secrets)}")
        statsd = data.get("statsd")
        if statsd is not None and not _statsd_ok(statsd):
            self.add("statsd", f"must be HOST:PORT, like statsd.internal:8125, got "
                               f"{_show(statsd)}")
        for key in ("owners", "dashboards", "alerts"):
            value = data.get(key)
            if value is not None and not isinstance(value, dict | list):
                self.add(key, f"must be a mapping (name: who or where) or a list, got "
                              f"{_show(value)}")

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
                                   f"https://sentry.example.net (no trailing /), got {_show(url)}")
        if raw.get("admin_email") is not None and not isinstance(raw["admin_email"], str):
            self.add("sentry/admin_email", "must be a string")
        for flag in ("single_organization", "sample_data"):
            if flag in raw and not isinstance(raw[flag], bool):
                self.add(f"sentry/{flag}", "must be true or false")
        days = raw.get("retention_days")
        if days is not None and not (_is(days, int) and days >= 1):
            self.add("sentry/retention_days", f"must be a whole number of days (1 or more; "
                                              f"Sentry's default is 90), got {_show(days)}")
        at = raw.get("cleanup_at")
        if at is not None and not (isinstance(at, str) and CLEANUP_AT_RE.match(at)):
            self.add("sentry/cleanup_at", f"must be a time of day HH:MM in UTC, quoted "
                                          f"(\"03:00\"), got {_show(at)}")
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
        for key in ("host", "username", "from"):
            if mail.get(key) is not None and not isinstance(mail[key], str):
                self.add(f"sentry/mail/{key}", "must be a string")
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
                                                 f", got {_show(backend)}")
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
            self.add("sentry/filestore/path", f"must be an absolute path, got {_show(path)}")
        sentry_hosts = [h.name for h in hosts if set(h.roles) & set(SENTRY_ROLES)]
        if len(sentry_hosts) > 1 and raw.get("shared") is not True:
            shown = ", ".join(sentry_hosts[:4]) + (", ..." if len(sentry_hosts) > 4 else "")
            self.add("sentry/filestore",
                     f"{len(sentry_hosts)} Sentry hosts ({shown}) but the filestore is a folder "
                     f"on each host's own disk: a release file or source map uploaded through "
                     f"one web host would be missing on the others. Mount shared storage (NFS) "
                     f"at {path or 'the same path'} on every Sentry host and set 'shared: "
                     f"true', or use the s3 or gcs backend")

    def _become(self, value: Any, path: str, default: str | None = None) -> str | None:
        """The method in effect: "sudo" or None (for "none"); `default` when unset."""
        if value is not None and value not in BECOME_METHODS:
            hint = " (write become: sudo)" if value is True else ""
            self.add(path, f"must be sudo or none, got {value!r}{hint}")
            value = None
        method = default if value is None else value
        return None if method == "none" else method

    def _port(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        if not _is(value, int) or not 1 <= value <= 65535:
            self.add(path, f"must be a port number 1-65535, got {_show(value)}")
            return None
        return value

    def _positive(self, value: Any, path: str) -> float | None:
        if not _is(value, (int, float)) or value <= 0:
            self.add(path, f"must be a positive number of seconds, got {_show(value)}")
            return None
        return float(value)


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    # bool is an int in Python; in an inventory it never means a number.
    return isinstance(value, kind) and not isinstance(value, bool)


def _statsd_ok(value: Any) -> bool:
    """`value` is a statsd target status/statsd.py can read: HOST or HOST:PORT."""
    if not isinstance(value, str):
        return False
    host, sep, port = value.strip().rpartition(":")
    if not sep:
        host, port = value.strip(), "8125"
    return bool(host.strip("[]")) and port.isascii() and port.isdigit() and 0 < int(port) < 65536


def _printable(text: str) -> str:
    """`text` with its control characters escaped, as repr() would write them."""
    return CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], text)


def _kind_ok(kind: str, value: Any) -> bool:
    """`value` is what a VAR_KINDS var of `kind` must hold."""
    if kind == "count":
        return _is(value, int) and value >= 0
    if kind == "seconds":
        return _is(value, (int, float)) and 0 < value < math.inf
    if isinstance(value, str):
        return bool(SIZE_RE.match(value))
    return _is(value, (int, float)) and 0 <= value < math.inf


def _clip(text: str, most: int = SHOW_MAX) -> str:
    """`text`, cut to `most` characters: a message must stay readable (and small) when a
    key or value is megabytes long."""
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} chars)"


def _show(value: Any) -> str:
    """A value as a message shows it: its repr, cut by _clip (a long string before repr())."""
    if isinstance(value, str) and len(value) > SHOW_MAX:
        return f"{value[:SHOW_MAX]!r}... ({len(value)} chars)"
    return _clip(repr(value))


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
