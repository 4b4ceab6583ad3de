"""The lab's load generator and verifier: events sent at a steady rate, then were all stored?

`run_load` runs on this machine (the client) with the standard library only: an open-loop
schedule (request i is due at i/rate seconds, whether or not earlier ones have answered, so
a stall shows up as failures and latency instead of silently slowing the sender), a bounded
pool of sender threads, and one outcome per request. Every accepted event_id is written to
an ids file with its acceptance time.

`verify` sends that file over SSH to psql in the database container and counts, inside
PostgreSQL, how many accepted events are stored, missing or duplicated: no row comes back
to the client except counts and a sample of missing ids.
"""

from __future__ import annotations

import gzip
import http.client
import json
import math
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..configs.context import settings
from ..containers.spec import container_name
from ..errors import RemoteError, UsageError
from ..inventory import Host, Inventory
from ..remote import Runner, Session, Unreachable
from ..shell import join

#: Sentry's internal project, made by the first `sentry upgrade` with one DSN key: the lab's
#: load goes there (its key is read from the database, see lab/sentry_project.py).
PROJECT_ID = 1
MAX_REQUESTS = 1_000_000     # a bound on memory: one outcome per request is kept
DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT = 10.0
LATEST = "latest.ids"
CLIENT = "sentryfab-lab-load/1.0"
EVENT_ID = re.compile(r"^[0-9a-f]{32}$")
DB_CONTAINER = container_name("db", 1)


# --- pure: schedule, statistics, ids files --------------------------------------------------

def planned_requests(rate: float, duration: float) -> int:
    """How many requests a run of `duration` seconds at `rate` per second sends."""
    if not (rate > 0 and duration > 0):
        raise UsageError(f"--rate and --duration must be positive, got {rate} and {duration}")
    n = round(rate * duration)
    if n > MAX_REQUESTS:
        raise UsageError(f"{rate:g}/s for {duration:g} s is {n} requests; at most "
                         f"{MAX_REQUESTS} per run")
    return max(n, 1)


def schedule(rate: float, duration: float) -> list[float]:
    """When each request is due, in seconds from the start: i / rate (open loop)."""
    return [i / rate for i in range(planned_requests(rate, duration))]


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (p in 0-100); 0.0 for no values."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of some latencies, in seconds."""
    ordered = sorted(latencies)
    return {"p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99), "max": ordered[-1] if ordered else 0.0}


def longest_gap(times: Sequence[float], start: float, end: float) -> tuple[float, float, float]:
    """(length, from, to) of the longest stretch of [start, end] without any of `times`."""
    points = [start, *sorted(t for t in times if start <= t <= end), end]
    best = (0.0, start, start)
    for a, b in zip(points, points[1:], strict=False):
        if b - a > best[0]:
            best = (b - a, a, b)
    return best


def default_url(inv: Inventory, project_id: int = PROJECT_ID) -> str:
    """The store endpoint behind the inventory's first nginx host."""
    hosts = inv.with_role("nginx")
    if not hosts:
        raise UsageError(f"{inv.path}: no nginx host to send load to (give --url)")
    port = int(settings(inv, "nginx", hosts[0]).get("port", 80))
    netloc = hosts[0].address + ("" if port == 80 else f":{port}")
    return f"http://{netloc}/api/{project_id}/store/"


def event_body(event_id: str, index: int, sent_at: float) -> bytes:
    """A small Sentry-shaped event."""
    return json.dumps({
        "event_id": event_id,
        "message": f"sentryfab lab load event #{index}",
        "level": "error",
        "platform": "python",
        "timestamp": sent_at,
        "logger": "sentryfab.lab.load",
        "tags": {"load.index": str(index)},
    }, separators=(",", ":")).encode()


def auth_header(key: str) -> str:
    """X-Sentry-Auth as SDKs send it (a public key alone: Sentry 9 needs no secret to store)."""
    return f"Sentry sentry_version=7, sentry_client={CLIENT}, sentry_key={key}"


def encode_body(payload: bytes) -> bytes:
    """The body as SDKs send it, gzip-compressed (mtime 0: the same event, the same bytes)."""
    return gzip.compress(payload, compresslevel=6, mtime=0)


#: Headers of every store request besides X-Sentry-Auth.
BODY_HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                "User-Agent": CLIENT}


def ids_text(accepted: Sequence[tuple[str, float]], header: str = "") -> str:
    """The ids file: optional '#' header, then one 'event_id<TAB>accepted epoch' per line."""
    head = "".join(f"# {line}\n" for line in header.splitlines())
    return head + "".join(f"{eid}\t{at:.6f}\n" for eid, at in accepted)


def parse_ids(text: str, source: str = "ids file") -> list[tuple[str, float]]:
    """(event_id, accepted epoch) pairs from an ids file; says which line is wrong."""
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        try:
            eid, at = parts[0].strip().lower(), float(parts[1]) if len(parts) > 1 else 0.0
        except ValueError:
            eid, at = "", 0.0
        if not EVENT_ID.match(eid) or not math.isfinite(at):
            raise UsageError(f"{source}:{n}: expected '<32 hex event_id><TAB><epoch seconds>', "
                             f"got {line[:80]!r}")
        rows.append((eid, at))
    return rows


# --- sending --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """One request: when it was due, started and finished (seconds from the start), result."""

    index: int
    event_id: str
    due: float
    started: float
    finished: float
    reason: str | None  # None: accepted; else 'HTTP 503', 'connection refused', 'timeout'...

    @property
    def accepted(self) -> bool:
        """True if the server acknowledged the event."""
        return self.reason is None


@dataclass(frozen=True)
class LoadProgress:
    """A snapshot for progress displays, taken about once a second."""

    elapsed: float
    planned: int
    sent: int
    accepted: int
    failed: int


@dataclass
class LoadReport:
    """What a load run did: counts, failure reasons, latency, the longest outage, the ids."""

    url: str
    rate: float
    duration: float
    concurrency: int
    planned: int
    sent: int
    accepted: int
    failed: dict[str, int]
    latency: dict[str, float]
    seconds: float
    max_lag: float
    unavailable: float
    unavailable_from: float
    unavailable_to: float
    started_at: float
    ids_file: Path | None = None
    interrupted: bool = False

    @property
    def failures(self) -> int:
        """Requests sent but not accepted."""
        return sum(self.failed.values())

    @property
    def achieved_rate(self) -> float:
        """Requests sent per second of the run."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_record(self) -> dict[str, Any]:
        """The --json form."""
        return {
            "url": self.url, "rate": self.rate, "duration": self.duration,
            "concurrency": self.concurrency, "planned": self.planned, "sent": self.sent,
            "accepted": self.accepted, "failed": dict(self.failed), "failures": self.failures,
            "latency_seconds": {k: round(v, 6) for k, v in self.latency.items()},
            "seconds": round(self.seconds, 3), "achieved_rate": round(self.achieved_rate, 1),
            "max_lag_seconds": round(self.max_lag, 3),
            "write_unavailable_seconds": round(self.unavailable, 3),
            "write_unavailable_from": round(self.unavailable_from, 3),
            "write_unavailable_to": round(self.unavailable_to, 3),
            "started_at": self.started_at,
            "ids_file": str(self.ids_file) if self.ids_file else None,
            "interrupted": self.interrupted,
        }


def classify(exc: BaseException) -> str:
    """A failure reason for an exception raised while sending."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "connection reset"  # RemoteDisconnected included
    if isinstance(exc, http.client.HTTPException):
        return "bad response"
    return "connection error"


class _Sender:
    """One sender thread's keep-alive connection to the target."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = False  # has this connection completed a request already?

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.used = False
        return self.conn

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST and read the answer; a kept-alive connection the server had closed is retried
        once on a new one (the event_id makes a repeated event harmless)."""
        for attempt in (1, 2):
            conn = self._connect()
            reused = self.used
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.used = True
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                self.close()
                if not reused or attempt == 2:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")


def _answer(status: int, data: bytes, event_id: str) -> str | None:
    if status != 200:
        return f"HTTP {status}"
    try:
        ok = json.loads(data).get("id") == event_id
    except (ValueError, AttributeError):
        ok = False
    return None if ok else "bad response"


class _Run:
    """Shared state of one load run: the schedule, the outcomes, the counters."""

    def __init__(self, url: str, rate: float, duration: float, timeout: float, key: str):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise UsageError(f"--url must be http://HOST[:PORT]/api/<project>/store/, got {url}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.rate, self.timeout, self.key = rate, timeout, key
        self.due = schedule(rate, duration)
        self.outcomes: list[Outcome | None] = [None] * len(self.due)
        self.next = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counts = Counter()  # type: Counter[str]
        self.t0 = 0.0
        self.wall0 = 0.0

    def take(self) -> int | None:
        """The next request index to send, or None when all are handed out or we stop."""
        with self.lock:
            if self.stop.is_set() or self.next >= len(self.due):
                return None
            i, self.next = self.next, self.next + 1
            return i

    def sender(self) -> None:
        """A sender thread: take the next due request, wait for its time, send it."""
        s = _Sender(self.host, self.port, self.timeout)
        headers = {**BODY_HEADERS, "X-Sentry-Auth": auth_header(self.key)}
        try:
            while (i := self.take()) is not None:
                wait = self.t0 + self.due[i] - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    return
                self.outcomes[i] = self._send(s, i, headers)
        finally:
            s.close()

    def _send(self, s: _Sender, i: int, headers: dict[str, str]) -> Outcome:
        eid = uuid.uuid4().hex
        started = time.monotonic() - self.t0
        try:
            body = encode_body(event_body(eid, i, self.wall0 + started))
            status, data = s.post(self.path, body, headers)
            reason = _answer(status, data, eid)
        except Exception as e:  # noqa: BLE001 - every failure is an outcome to report
            reason = classify(e)
        out = Outcome(i, eid, self.due[i], started, time.monotonic() - self.t0, reason)
        with self.lock:
            self.counts["accepted" if reason is None else "failed"] += 1
        return out

    def progress(self) -> LoadProgress:
        """Counters now."""
        with self.lock:
            ok, bad = self.counts["accepted"], self.counts["failed"]
        return LoadProgress(time.monotonic() - self.t0, len(self.due), ok + bad, ok, bad)


def run_load(url: str, rate: float, duration: float, *,
             concurrency: int = DEFAULT_CONCURRENCY, timeout: float = DEFAULT_TIMEOUT,
             key: str, ids_dir: Path | None = None,
             on_tick: Callable[[LoadProgress], None] | None = None) -> LoadReport:
    """Send rate x duration events to `url` on an open-loop schedule; report what happened.

    Ctrl-C stops the schedule: requests in flight finish, the ids accepted so far are
    written, and the report says it was interrupted.
    """
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {concurrency}")
    run = _Run(url, rate, duration, timeout, key)
    threads = [threading.Thread(target=run.sender, name=f"load-{n}", daemon=True)
               for n in range(min(concurrency, len(run.due)))]
    run.t0, run.wall0 = time.monotonic(), time.time()
    interrupted = False
    for t in threads:
        t.start()
    try:
        last_tick = 0.0
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
                if on_tick and time.monotonic() - last_tick >= 1.0:
                    last_tick = time.monotonic()
                    on_tick(run.progress())
    except KeyboardInterrupt:
        interrupted = True
        run.stop.set()
        for t in threads:
            t.join()
    seconds = time.monotonic() - run.t0
    return _report(run, url, duration, len(threads), seconds, interrupted, ids_dir)


def _report(run: _Run, url: str, duration: float, concurrency: int, seconds: float,
            interrupted: bool, ids_dir: Path | None) -> LoadReport:
    done = [o for o in run.outcomes if o is not None]
    ok = [o for o in done if o.accepted]
    end = min(duration, seconds) if interrupted else max(duration, max(
        (o.finished for o in ok), default=0.0))
    gap, gap_from, gap_to = longest_gap([o.finished for o in ok], 0.0, end)
    report = LoadReport(
        url=url, rate=run.rate, duration=duration, concurrency=concurrency,
        planned=len(run.due), sent=len(done), accepted=len(ok),
        failed=dict(Counter(o.reason for o in done if o.reason is not None).most_common()),
        latency=latency_summary([o.finished - o.started for o in ok]),
        seconds=seconds, max_lag=max((o.started - o.due for o in done), default=0.0),
        unavailable=gap, unavailable_from=gap_from, unavailable_to=gap_to,
        started_at=run.wall0, interrupted=interrupted)
    if ids_dir is not None:
        accepted = [(o.event_id, run.wall0 + o.finished) for o in ok]
        report.ids_file = write_ids(ids_dir, accepted, run.wall0,
                                    f"sentryfab lab load: {url} at {run.rate:g}/s for "
                                    f"{duration:g} s, {len(ok)} accepted of {len(done)} sent")
    return report


def write_ids(folder: Path, accepted: Sequence[tuple[str, float]], started: float,
              header: str) -> Path:
    """<folder>/<UTC start>.ids and a copy as latest.ids, each replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    text = ids_text(accepted, header)
    path = folder / f"{stamp}.ids"
    for target in (path, folder / LATEST):
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, target)
    return path


# --- verifying ------------------------------------------------------------------------------

VERIFY_SQL_HEAD = """\
BEGIN;
CREATE TEMP TABLE sentryfab_accepted (event_id text NOT NULL, accepted_at float8 NOT NULL)
    ON COMMIT DROP;
COPY sentryfab_accepted FROM STDIN;
"""

# Sentry 9 keeps an event's row in sentry_message (event_id in `message_id`, unique per
# project) and its body in nodestore_node under md5('<project>:<event_id>'), whose timestamp is
# when the worker saved it. One row per distinct accepted id with how many rows Sentry holds for
# it, then counts and the earliest missing ids; only those lines travel back.
VERIFY_SQL_TAIL = """\
\\.
ANALYZE sentryfab_accepted;
CREATE TEMP TABLE sentryfab_verified ON COMMIT DROP AS
SELECT a.event_id, a.accepted_at, count(m.id) AS stored,
       max(extract(epoch FROM n.timestamp) - a.accepted_at) AS lag
FROM (SELECT event_id, min(accepted_at) AS accepted_at
      FROM sentryfab_accepted GROUP BY event_id) a
LEFT JOIN sentry_message m ON m.project_id = {project} AND m.message_id = a.event_id
LEFT JOIN nodestore_node n ON n.id = md5('{project}:' || a.event_id)
GROUP BY a.event_id, a.accepted_at;
SELECT 'counts', count(*), count(*) FILTER (WHERE stored > 0),
       count(*) FILTER (WHERE stored = 0), count(*) FILTER (WHERE stored > 1),
       coalesce(greatest(max(lag), 0), 0)
FROM sentryfab_verified;
SELECT 'missing', event_id, accepted_at FROM sentryfab_verified
WHERE stored = 0 ORDER BY accepted_at LIMIT {sample};
COMMIT;
"""

MISSING_SAMPLE = 10


def verify_script(rows: Sequence[tuple[str, float]], sample: int = MISSING_SAMPLE,
                  project_id: int = PROJECT_ID) -> bytes:
    """psql's stdin: the ids as COPY data into a temp table, then the counting queries."""
    data = "".join(f"{eid}\t{at:.6f}\n" for eid, at in rows)
    tail = VERIFY_SQL_TAIL.format(sample=int(sample), project=int(project_id))
    return (VERIFY_SQL_HEAD + data + tail).encode()


def psql_command(container: str, database: str = "sentry", port: int | None = None) -> str:
    """psql as postgres in the database container, reading the script on stdin."""
    argv = ["docker", "exec", "-i", container, "psql", "-U", "postgres", "-d", database,
            "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"]
    if port is not None:
        argv += ["-p", str(port)]
    return join(argv)


@dataclass(frozen=True)
class Counts:
    """What one verification query found."""

    accepted: int
    stored: int
    missing: int
    duplicated: int
    max_lag: float
    missing_sample: tuple[tuple[str, float], ...] = ()


def parse_verify_output(text: str) -> Counts:
    """The 'counts|...' and 'missing|...' lines psql printed."""
    counts: list[str] | None = None
    sample = []
    for line in text.splitlines():
        kind, _, rest = line.partition("|")
        if kind == "counts":
            counts = rest.split("|")
        elif kind == "missing":
            eid, _, at = rest.partition("|")
            sample.append((eid.replace("-", ""), float(at)))
    if counts is None or len(counts) != 5:
        raise RemoteError(f"unexpected output from psql: {text.strip()[:200]!r}")
    acc, stored, missing, dup = (int(x) for x in counts[:4])
    return Counts(acc, stored, missing, dup, float(counts[4] or 0), tuple(sample))


@dataclass
class VerifyReport:
    """Accepted events against what PostgreSQL holds."""

    db_host: str
    ids_file: Path
    counts: Counts
    waited: float = 0.0
    polls: int = 1
    history: list[tuple[float, int]] = field(default_factory=list)  # (seconds, missing)

    @property
    def ok(self) -> bool:
        """Every accepted event stored exactly once."""
        return self.counts.missing == 0 and self.counts.duplicated == 0

    def as_record(self) -> dict[str, Any]:
        """The --json form."""
        c = self.counts
        return {
            "ok": self.ok, "db_host": self.db_host, "ids_file": str(self.ids_file),
            "accepted": c.accepted, "stored": c.stored, "missing": c.missing,
            "duplicated": c.duplicated, "max_store_lag_seconds": round(c.max_lag, 3),
            "missing_sample": [{"event_id": e, "accepted_at": a} for e, a in c.missing_sample],
            "waited_seconds": round(self.waited, 1), "polls": self.polls,
        }


def read_ids(path: Path) -> list[tuple[str, float]]:
    """The rows of an ids file; UsageError if it is missing or malformed."""
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the ids file: {e.strerror} (run lab.load "
                         "first)") from None
    return parse_ids(text, str(path))


def _count(session: Session, command: str, script: bytes, container: str) -> Counts:
    """One verification query on the database host."""
    name = session.host.name
    try:
        out = session.run(command, stdin=script, timeout=300)
    except Unreachable as e:
        raise RemoteError(f"{name}: unreachable: {e}") from None
    if not out.ok:
        why = out.error or out.stderr.strip() or f"exit code {out.exit_code}"
        hint = (" (a hot standby cannot create temp tables: ask the primary)"
                if "read-only transaction" in why else "")
        raise RemoteError(f"{name}: psql in {container} failed: {why}{hint}")
    return parse_verify_output(out.stdout)


def verify(runner: Runner, db_host: Host, ids_file: Path, *, container: str = DB_CONTAINER,
           database: str = "sentry", port: int | None = None, wait: float = 0.0,
           poll: float = 2.0, on_poll: Callable[[float, Counts | None], None] | None = None
           ) -> VerifyReport:
    """Count accepted events stored, missing and duplicated, asking psql on `db_host`.

    With `wait`, ask again every `poll` seconds until nothing is missing or `wait` seconds
    have passed: events still in the queue, or held by a dead worker until cron requeues
    them, are not lost yet. Within that time a failing query (the database restarting after
    a failover test) is retried too; after it, its error is raised.
    """
    script = verify_script(read_ids(ids_file))
    command = psql_command(container, database, port)
    session = runner.session(db_host)
    start = time.monotonic()
    history: list[tuple[float, int]] = []
    while True:
        try:
            counts: Counts | None = _count(session, command, script, container)
        except RemoteError:
            if time.monotonic() - start + poll > wait:
                raise
            counts = None
        elapsed = time.monotonic() - start
        if counts is not None:
            history.append((elapsed, counts.missing))
            if counts.missing == 0 or elapsed + poll > wait:
                return VerifyReport(db_host.name, ids_file, counts, elapsed, len(history),
                                    history)
        if on_poll:
            on_poll(elapsed, counts)
        time.sleep(poll)
