"""Check-script output -> facts. Pure: text in, dataclasses out; tested on captured outputs.

Each parser takes the lines of one fact (what its command printed, stdout and stderr
together) and returns what it understood; lines it does not understand are ignored, so a
warning printed by a tool never breaks a round.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from . import pipeline
from .script import MARK


@dataclass(frozen=True)
class Section:
    """One fact's output: its lines and its command's exit code (None if cut off)."""

    name: str
    lines: tuple[str, ...]
    rc: int | None

    @property
    def ok(self) -> bool:
        """True if the fact's command exited 0."""
        return self.rc == 0

    def error(self) -> str:
        """The most telling line of a failed fact (usually the tool's last complaint)."""
        useful = [ln.strip() for ln in self.lines if ln.strip()]
        if self.rc is None:
            return "cut off before it finished"
        if self.rc == 124:
            return "timed out"
        return useful[-1] if useful else f"exit code {self.rc}"


@dataclass(frozen=True)
class Output:
    """The whole script's output, split into facts, with the host-side start and end times."""

    sections: dict[str, Section]
    started_ns: int | None = None
    ended_ns: int | None = None

    @property
    def complete(self) -> bool:
        """True if the script ran to its last line."""
        return self.ended_ns is not None

    @property
    def remote_seconds(self) -> float | None:
        """How long the script ran on the host."""
        if self.started_ns is None or self.ended_ns is None:
            return None
        return (self.ended_ns - self.started_ns) / 1e9

    def get(self, name: str) -> Section | None:
        """The fact called `name`, if the script printed it."""
        return self.sections.get(name)


def split(stdout: str) -> Output:
    """Cut the script's output at its '@@ name' / '@@rc N' / '@@ end T0 T1' marks."""
    sections: dict[str, Section] = {}
    name: str | None = None
    lines: list[str] = []
    started = ended = None
    for raw in stdout.splitlines():
        line = raw.rstrip("\r")
        if line.startswith(f"{MARK}rc ") and name is not None:
            rc = line[len(MARK) + 3:].strip()
            sections[name] = Section(name, tuple(lines), int(rc) if rc.lstrip("-").isdigit()
                                     else None)
            name, lines = None, []
        elif line.startswith(f"{MARK} end"):
            parts = line.split()
            if len(parts) == 4 and parts[2].isdigit() and parts[3].isdigit():
                started, ended = int(parts[2]), int(parts[3])
        elif line.startswith(f"{MARK} "):
            if name is not None:  # a fact that never printed its exit code: cut off
                sections[name] = Section(name, tuple(lines), None)
            name, lines = line[len(MARK) + 1:].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = Section(name, tuple(lines), None)
    return Output(sections, started, ended)


def first_int(lines: tuple[str, ...]) -> int | None:
    """The first line as a whole number (`stat -c %Y`), None if it is not one."""
    nums = _ints(lines[0]) if lines else []
    return nums[0] if len(nums) == 1 else None


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split() if x.lstrip("-").isdigit()]


# -- host ------------------------------------------------------------------------------------

def loadavg(lines: tuple[str, ...]) -> tuple[float, float, float] | None:
    """/proc/loadavg -> (1, 5, 15 minute load)."""
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            try:
                return float(parts[0]), float(parts[1]), float(parts[2])
            except ValueError:
                continue
    return None


def nproc(lines: tuple[str, ...]) -> int | None:
    """`nproc` -> CPUs available."""
    for line in lines:
        if line.strip().isdigit():
            return int(line.strip())
    return None


def meminfo(lines: tuple[str, ...]) -> tuple[int, int] | None:
    """MemTotal and MemAvailable lines -> (total, available) in bytes."""
    values: dict[str, int] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        nums = _ints(rest)
        if nums:
            values[key.strip()] = nums[0] * 1024
    if "MemTotal" in values and "MemAvailable" in values:
        return values["MemTotal"], values["MemAvailable"]
    return None


def file_nr(lines: tuple[str, ...]) -> tuple[int, int] | None:
    """/proc/sys/fs/file-nr -> (open file handles, system-wide limit)."""
    for line in lines:
        nums = _ints(line)
        if len(nums) == 3:
            return nums[0] - nums[1], nums[2]
    return None


@dataclass(frozen=True)
class Disk:
    """Use of the filesystem holding a path (or its nearest existing parent)."""

    path: str          # the path asked about
    measured: str      # the path df was run on (a parent, if `path` does not exist yet)
    device: str        # the filesystem (two paths on one device share their space)
    size: int          # bytes
    used: int
    available: int
    mount: str

    @property
    def pct(self) -> float:
        """Used share as df computes it: used / (used + available), root's reserve excluded."""
        total = self.used + self.available
        return 100.0 * self.used / total if total else 0.0


def df(lines: tuple[str, ...]) -> list[Disk]:
    """'path ASKED MEASURED' lines, then `df -Pk` of the measured paths, in the same order."""
    asked = [ln.split()[1:3] for ln in lines if ln.startswith("path ") and len(ln.split()) == 3]
    rows = [ln.split() for ln in lines if not ln.startswith("path ")]
    rows = [r for r in rows if len(r) >= 6 and r[1].isdigit() and r[2].isdigit()
            and r[3].isdigit()]
    kb = 1024
    return [Disk(path, measured, r[0], int(r[1]) * kb, int(r[2]) * kb, int(r[3]) * kb, r[-1])
            for (path, measured), r in zip(asked, rows, strict=False)]


# -- containers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Container:
    """One of our containers as `docker inspect` sees it."""

    name: str
    id: str
    state: str           # running, exited, restarting, created, paused, dead
    restarts: int
    started_at: str
    oom_killed: bool
    exit_code: int
    role: str
    version: str

    @property
    def running(self) -> bool:
        """True if the container is up (a restarting one is not)."""
        return self.state == "running"


def _from_api(line: str) -> Container | None:
    """One container's inspect document (Engine API), or None if it is not one."""
    try:
        doc = json.loads(line)
        state, labels = doc["State"], doc["Config"].get("Labels") or {}
        return Container(doc["Name"].lstrip("/"), doc["Id"], state["Status"],
                         int(doc["RestartCount"]), state.get("StartedAt", ""),
                         bool(state.get("OOMKilled")), int(state.get("ExitCode") or 0),
                         labels.get("sentryfab.role", ""), labels.get("sentryfab.version", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # e.g. {"message": "No such container"}: it went away meanwhile


def containers(lines: tuple[str, ...]) -> list[Container]:
    """The docker fact -> our containers (Engine API JSON, or the CLI's tab-separated lines)."""
    out = []
    for line in lines:
        if line.startswith("{"):
            c = _from_api(line)
            if c is not None:
                out.append(c)
            continue
        parts = line.split("\t")
        if len(parts) != 9 or not parts[3].isdigit():
            continue
        name, cid, state, restarts, started, oom, code, role, version = parts
        out.append(Container(name.lstrip("/"), cid, state, int(restarts), started,
                             oom == "true", int(code) if code.lstrip("-").isdigit() else 0,
                             role, version))
    return out


# -- HTTP ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """An HTTP request made from a host: status code (0 if none came) and seconds."""

    code: int
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        """True on a 2xx answer."""
        return 200 <= self.code < 300

    def describe(self) -> str:
        """'HTTP 503', or curl's reason when no answer came."""
        if self.code:
            return f"HTTP {self.code}"
        return self.error or "no answer"


#: curl's exit codes worth naming.
CURL_EXIT = {6: "cannot resolve the name", 7: "connection refused", 28: "timed out",
             52: "empty reply", 56: "connection reset"}


def _probe_line(parts: list[str]) -> Probe:
    code = int(parts[0]) if parts[0].isdigit() else 0
    try:
        seconds = float(parts[1])
    except (IndexError, ValueError):
        seconds = 0.0
    rc = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    error = "" if 200 <= code < 300 else CURL_EXIT.get(rc, f"curl exit code {rc}") if rc else ""
    return Probe(code, seconds, error)


def probes(lines: tuple[str, ...]) -> dict[str, Probe]:
    """curl -w 'url code seconds exitcode' lines -> {url: Probe} (in any order: -Z)."""
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0].startswith("http"):
            out[parts[0]] = _probe_line(parts[1:])
    return out


def stub_status(lines: tuple[str, ...]) -> dict[str, int] | None:
    """nginx stub_status -> active, accepts, handled, requests, reading, writing, waiting."""
    out: dict[str, int] = {}
    for i, line in enumerate(lines):
        if line.startswith("Active connections:"):
            out["active"] = _ints(line.split(":", 1)[1])[0]
        elif line.strip().startswith("server accepts") and i + 1 < len(lines):
            nums = _ints(lines[i + 1])
            if len(nums) == 3:
                out["accepts"], out["handled"], out["requests"] = nums
        elif line.startswith("Reading:"):
            for key, value in re.findall(r"(\w+): (\d+)", line):
                out[key.lower()] = int(value)
    return out if "active" in out else None


@dataclass(frozen=True)
class Upstream:
    """An upstream server of the deployed nginx config, probed from the nginx host."""

    endpoint: str        # address:port
    drained: bool        # marked `down` in the config (taken out for a deploy)
    name: str            # the web host, from the config's comment ('-' if none)
    probe: Probe


def upstreams(lines: tuple[str, ...]) -> list[Upstream]:
    """The config's 'address:port up|down name' lines joined with their probes, by endpoint."""
    found = probes(lines)
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0] or parts[1] not in ("up", "down"):
            continue
        p = found.get(f"http://{parts[0]}/_health/", Probe(0, 0.0, "not probed"))
        out.append(Upstream(parts[0], parts[1] == "down", parts[2], p))
    return sorted(out, key=lambda u: u.endpoint)


# -- Redis -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RedisFacts:
    """INFO as a mapping; on the queue, lengths, the oldest tasks and the heartbeat count."""

    info: dict[str, str]
    lengths: dict[str, int] = field(default_factory=dict)
    heartbeats: int | None = None
    errors: tuple[str, ...] = ()
    #: queue -> when the event of its oldest task was accepted (unix s), None if unreadable;
    #: only queues whose oldest message was fetched (the non-empty ones).
    oldest: dict[str, float | None] = field(default_factory=dict)

    def num(self, key: str) -> float | None:
        """An INFO field as a number, None if absent or not numeric."""
        try:
            return float(self.info[key])
        except (KeyError, ValueError):
            return None


_INFO_LINE = re.compile(r"^[A-Za-z0-9_]+:")
_MARKS = ("@llen ", "@scan ", "@oldest ")


def redis(lines: tuple[str, ...]) -> RedisFacts:
    """INFO's 'key:value' lines, then '@llen KEY' + number, '@oldest KEY' + the queue's
    oldest element (empty if the queue emptied meanwhile) and '@scan PATTERN' + count."""
    info: dict[str, str] = {}
    lengths: dict[str, int] = {}
    oldest: dict[str, float | None] = {}
    heartbeats = None
    errors: list[str] = []
    pending: tuple[str, str] | None = None
    for line in lines:
        line = line.strip()
        if line.startswith(_MARKS):
            kind, _, arg = line.partition(" ")
            pending = (kind, arg)
        elif pending is not None:
            kind, arg = pending
            pending = None
            value = line.removeprefix("(integer) ")
            if kind == "@oldest":
                if line:
                    oldest[arg] = pipeline.enqueued_at(line)
            elif not value.lstrip("-").isdigit():
                errors.append(line)
            elif kind == "@llen":
                lengths[arg] = int(value)
            else:
                heartbeats = int(value)
        elif _INFO_LINE.match(line):
            key, _, value = line.partition(":")
            info[key] = value
        elif line and not line.startswith("#"):
            errors.append(line)
    return RedisFacts(info, lengths, heartbeats, tuple(errors), oldest)


def backlog_ages(facts: RedisFacts, now: float) -> dict[str, float | None]:
    """Seconds each non-empty queue's oldest task has waited since its event was accepted
    (None: its message could not be read). A clock behind the web hosts' gives 0, not less."""
    return {q: None if t is None else round(max(now - t, 0.0), 1)
            for q, t in facts.oldest.items()}


# -- PostgreSQL --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Standby:
    """A standby streaming from this node (pg_stat_replication)."""

    name: str
    address: str
    state: str
    sync_state: str
    lag_bytes: int | None
    lag_seconds: float | None


@dataclass(frozen=True)
class Slot:
    """A replication slot and the WAL it holds back."""

    name: str
    active: bool
    retained_bytes: int | None


@dataclass(frozen=True)
class DbFacts:
    """A PostgreSQL node's view of itself."""

    node: dict[str, str]
    standbys: tuple[Standby, ...] = ()
    slots: tuple[Slot, ...] = ()

    @property
    def in_recovery(self) -> bool | None:
        """True on a replica, False on a primary, None if unknown."""
        v = self.node.get("recovery")
        return None if v is None else v in ("true", "t")

    def num(self, key: str) -> float | None:
        """A node field as a number (None if empty or absent)."""
        try:
            return float(self.node[key])
        except (KeyError, ValueError):
            return None


def _opt_int(v: str) -> int | None:
    return int(v) if v.lstrip("-").isdigit() else None


def _opt_float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def db(lines: tuple[str, ...]) -> DbFacts:
    """'key|value' rows, 'standby|...' rows and 'slot|...' rows."""
    node: dict[str, str] = {}
    standbys, slots = [], []
    for line in lines:
        parts = line.split("|")
        if parts[0] == "standby" and len(parts) == 7:
            standbys.append(Standby(parts[1], parts[2], parts[3], parts[4], _opt_int(parts[5]),
                                    _opt_float(parts[6])))
        elif parts[0] == "slot" and len(parts) == 4:
            slots.append(Slot(parts[1], parts[2] in ("true", "t"), _opt_int(parts[3])))
        elif len(parts) == 2:
            node[parts[0]] = parts[1]
    return DbFacts(node, tuple(standbys), tuple(slots))


# -- PgBouncer ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PgbouncerFacts:
    """SHOW POOLS / STATS / DATABASES, each a list of rows keyed by column name."""

    pools: list[dict[str, str]]
    stats: list[dict[str, str]]
    databases: list[dict[str, str]]


def pgbouncer(lines: tuple[str, ...]) -> PgbouncerFacts:
    """'@pools' + header + rows, '@stats' + ..., '@databases' + ... (psql -A, '|')."""
    tables: dict[str, list[dict[str, str]]] = {"pools": [], "stats": [], "databases": []}
    current: str | None = None
    header: list[str] | None = None
    for line in lines:
        if line.startswith("@") and line[1:] in tables:
            current, header = line[1:], None
        elif current is None or not line.strip():
            continue
        elif header is None:
            header = line.split("|")
        else:
            row = line.split("|")
            if len(row) == len(header):
                tables[current].append(dict(zip(header, row, strict=True)))
    return PgbouncerFacts(tables["pools"], tables["stats"], tables["databases"])
