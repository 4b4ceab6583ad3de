#!/usr/bin/env python3
"""sentry-lab: THE LAB'S STAND-IN FOR SENTRY. It is not Sentry.

Real Sentry images cannot be pulled in the lab, so this one file plays Sentry's part with
Sentry's shape, as far as sentryfab can see it: it reads the very same rendered
`sentry.conf.py` (executed, with a stub `sentry.conf.server`) and `config.yml`, talks to
PostgreSQL through PgBouncer and to the two Redis roles with their passwords, and runs as
Sentry's processes do:

  web      POST /api/<project>/store/ pushes the event onto the queue Redis; GET /_health/
  worker   moves events from the queue into PostgreSQL, exactly once, losing none
  cron     heartbeat rows, and requeues the in-flight events of workers that died
  migrate  creates the schema (what `sentry upgrade` is in production)

    python3 sentry_lab.py {web,worker,cron,migrate} --config DIR [--bind ADDR:PORT] ...
    sentry --config DIR run web [--bind ADDR:PORT]      (Sentry's own command line, via
    sentry --config DIR run worker [--concurrency N]     the `sentry` wrapper in the image)
    sentry --config DIR run cron
    sentry --config DIR upgrade [--noinput]

Nothing but those two files configures it. The only environment it reads is
SENTRY_LAB_VERSION (the release, sent as X-Lab-Version) and SENTRY_LAB_BROKEN=1 (a release
whose /_health/ always fails). Standard library, psycopg2, redis and yaml only: it runs in
the lab image, where sentryfab itself is not installed.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import logging
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import types
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("sentry-lab")

# --- names shared by web, worker, cron and the verifier -------------------------------------

QUEUE_KEY = "sentry-lab:queue"              # web LPUSHes, workers take from the right (FIFO)
PROCESSING_PREFIX = "sentry-lab:processing:"  # + worker id: events a worker holds right now
HEARTBEAT_PREFIX = "sentry-lab:worker:"     # + worker id: alive while this key exists
DEAD_KEY = "sentry-lab:dead"                # events PostgreSQL refused (kept, never dropped)
HEARTBEAT_TTL = 30
HEARTBEAT_EVERY = 5
CRON_EVERY = 5
BATCH = 100                                 # events per INSERT: one commit per batch
MAX_BODY = 20 * 1024 * 1024                 # Sentry's own limit (uWSGI limit-post)
MIGRATE_LOCK = 0x5e471ab                    # pg_advisory_xact_lock key of `migrate`

STORE_PATH = re.compile(r"^/api/(\d{1,9})/store/$")
HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
# \u0000 in JSON text, not preceded by an escaped backslash (\\u0000 is the text "\u0000").
NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
UUID_TEXT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                       r"[0-9a-fA-F]{12}$")

SCHEMA = f"""\
SELECT pg_advisory_xact_lock({MIGRATE_LOCK});
CREATE TABLE IF NOT EXISTS events (
    event_id uuid PRIMARY KEY,
    project_id integer NOT NULL,
    received_at timestamptz NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    payload jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS cron_heartbeats (
    at timestamptz NOT NULL,
    host text NOT NULL
);
CREATE INDEX IF NOT EXISTS cron_heartbeats_at ON cron_heartbeats (at);
"""

INSERT_EVENTS = ("INSERT INTO events (event_id, project_id, received_at, payload) VALUES %s "
                 "ON CONFLICT (event_id) DO NOTHING")
INSERT_TEMPLATE = "(%s, %s, %s, %s::jsonb)"

# Moves up to ARGV[1] events from the queue to a processing list in one atomic step.
TAKE_MORE = """\
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not v then break end
  out[#out + 1] = v
end
return out
"""

# Puts a dead worker's events back on the queue, unless its heartbeat came back meanwhile
# (checked inside the script, so a worker restarting at that moment keeps its own list).
REQUEUE = """\
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'RIGHT') do n = n + 1 end
return n
"""


class ConfigError(Exception):
    """The config folder is missing something this program needs (exit code 2)."""


class BadEvent(ValueError):
    """The request body is not an event this endpoint accepts (HTTP 400)."""


class Stopping(Exception):
    """SIGTERM arrived while waiting to retry: leave, the work is safe where it is."""


# --- configuration: the rendered sentry.conf.py and config.yml ------------------------------

@dataclass(frozen=True)
class Database:
    """DATABASES['default']: PgBouncer in production."""

    host: str
    port: int
    name: str
    user: str
    password: str = field(repr=False)
    connect_timeout: int = 5
    conn_max_age: float = 60.0


@dataclass(frozen=True)
class RedisEndpoint:
    """One Redis server and its password."""

    host: str
    port: int
    password: str | None = field(default=None, repr=False)
    db: int = 0

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Config:
    """Everything this program takes from the config folder."""

    database: Database
    queue: RedisEndpoint
    cache: tuple[RedisEndpoint, ...]
    web_host: str | None = None
    web_port: int | None = None
    web_threads: int = 4
    web_workers: int = 1


def load_settings(path: str) -> dict[str, Any]:
    """Execute sentry.conf.py as Sentry does, with a stub `sentry.conf.server`; its globals."""
    saved = {n: sys.modules.get(n) for n in ("sentry", "sentry.conf", "sentry.conf.server")}
    for name in saved:
        sys.modules[name] = types.ModuleType(name)
    # Sentry's defaults that a config file commonly extends in place.
    sys.modules["sentry.conf.server"].__dict__.update(SENTRY_OPTIONS={}, SENTRY_FEATURES={})
    ns: dict[str, Any] = {"__name__": "sentry_conf", "__file__": path}
    try:
        with open(path) as f:
            source = f.read()
        exec(compile(source, path, "exec"), ns)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except Exception as e:  # noqa: BLE001 - any error in the file is a config error
        raise ConfigError(f"{path}: {type(e).__name__}: {e}") from None
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return ns


def load_options(path: str) -> dict[str, Any]:
    """config.yml: Sentry's options as a mapping."""
    try:
        import yaml
    except ImportError:
        raise ConfigError("PyYAML is not installed (python3-yaml): the image's lab/base:1 "
                          "predates it; `fab lab.up` rebuilds it, then release again") from None

    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a YAML mapping of option: value")
    return doc


def parse_redis_url(url: str) -> RedisEndpoint:
    """redis://:password@host:port/db (Celery's BROKER_URL) -> an endpoint."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ConfigError(f"BROKER_URL is not a redis:// URL with a host: {parts.scheme}://...")
    db = parts.path.strip("/")
    return RedisEndpoint(parts.hostname, parts.port or 6379,
                         unquote(parts.password) if parts.password else None,
                         int(db) if db.isdigit() else 0)


def cluster_hosts(options: dict[str, Any], name: str) -> tuple[RedisEndpoint, ...]:
    """The hosts of Redis cluster `name` in config.yml's redis.clusters, in index order."""
    try:
        hosts = options["redis.clusters"][name]["hosts"]
        items = sorted(hosts.items(), key=lambda kv: int(kv[0]))
        return tuple(RedisEndpoint(str(h["host"]), int(h.get("port", 6379)), h.get("password"),
                                   int(h.get("db", 0))) for _, h in items)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ConfigError(f"config.yml: redis.clusters.{name}.hosts is missing or malformed "
                          "(want index: {host, port, password})") from None


def parse_database(settings: dict[str, Any]) -> Database:
    """DATABASES['default'] -> Database; says which key is missing."""
    try:
        d = settings["DATABASES"]["default"]
        return Database(host=str(d["HOST"]), port=int(d.get("PORT") or 5432),
                        name=str(d["NAME"]), user=str(d["USER"]),
                        password=str(d.get("PASSWORD") or ""),
                        connect_timeout=int(d.get("OPTIONS", {}).get("connect_timeout", 5)),
                        conn_max_age=float(d.get("CONN_MAX_AGE") or 0))
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"sentry.conf.py: DATABASES['default'] is incomplete ({e})") from None


def parse_config(settings: dict[str, Any], options: dict[str, Any]) -> Config:
    """The database, queue and cache endpoints and web settings from both files."""
    database = parse_database(settings)
    broker = settings.get("BROKER_URL")
    queue = parse_redis_url(broker) if broker else cluster_hosts(options, "queue")[0]
    cache = cluster_hosts(options, "default")
    if not cache:
        raise ConfigError("config.yml: redis.clusters.default has no hosts")
    web = settings.get("SENTRY_WEB_OPTIONS") or {}
    port = settings.get("SENTRY_WEB_PORT")
    return Config(database=database, queue=queue, cache=cache,
                  web_host=settings.get("SENTRY_WEB_HOST"),
                  web_port=int(port) if port else None,
                  web_threads=int(web.get("threads", 4)), web_workers=int(web.get("workers", 1)))


def load_config(folder: str) -> Config:
    """Config from <folder>/sentry.conf.py and <folder>/config.yml."""
    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: no such config folder")
    settings = load_settings(os.path.join(folder, "sentry.conf.py"))
    options = load_options(os.path.join(folder, "config.yml"))
    if not options.get("system.secret-key"):
        raise ConfigError(f"{folder}/config.yml: system.secret-key is missing or empty")
    return parse_config(settings, options)


# --- the store endpoint, pure ---------------------------------------------------------------

def parse_auth(header: str | None) -> dict[str, str]:
    """'Sentry sentry_key=k, sentry_version=7' -> {'sentry_key': 'k', ...}; {} if not Sentry's."""
    if not header:
        return {}
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "sentry":
        return {}
    out = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def sentry_key(header: str | None, query: str = "") -> str | None:
    """The public key from X-Sentry-Auth, else from ?sentry_key= (as SDKs may send it)."""
    key = parse_auth(header).get("sentry_key") or parse_qs(query).get("sentry_key", [None])[0]
    return key or None


def valid_key(key: str | None) -> bool:
    """A DSN public key is 32 hex digits."""
    return bool(key and HEX32.match(key))


def normalize_event_id(value: Any) -> str:
    """32 hex digits or a dashed UUID -> 32 lowercase hex digits; BadEvent otherwise."""
    if isinstance(value, str) and (HEX32.match(value) or UUID_TEXT.match(value)):
        return value.replace("-", "").lower()
    raise BadEvent("event_id must be 32 hex digits or a UUID")


def _reject_constant(name: str) -> Any:
    raise BadEvent(f"body is not valid JSON ({name} is not a JSON value)")


def decode_body(body: bytes, encoding: str | None) -> bytes:
    """Undo Content-Encoding gzip/deflate (SDKs compress events); BadEvent if it is broken."""
    enc = (encoding or "identity").strip().lower()
    try:
        if enc == "gzip":
            return gzip.decompress(body)
        if enc == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError):
        raise BadEvent(f"body is not valid {enc} data") from None
    if enc != "identity":
        raise BadEvent(f"unsupported Content-Encoding {encoding!r}")
    return body


def parse_event(body: bytes) -> dict[str, Any]:
    """The event as a dict with a normalized event_id (Sentry assigns one if it is absent)."""
    try:
        event = json.loads(body, parse_constant=_reject_constant)
    except BadEvent:
        raise
    except ValueError:  # UnicodeDecodeError included
        raise BadEvent("body is not valid JSON") from None
    if not isinstance(event, dict):
        raise BadEvent("the event must be a JSON object")
    raw = event.get("event_id")
    event["event_id"] = uuid.uuid4().hex if raw is None else normalize_event_id(raw)
    return event


def queue_message(event: dict[str, Any], project_id: int, received_at: datetime) -> bytes:
    """The queue entry for an event; BadEvent if PostgreSQL's jsonb could never store it.

    jsonb refuses NUL characters, lone surrogates and numbers beyond a double: better a 400
    now than an event the worker can never store.
    """
    try:
        text = json.dumps({"event_id": event["event_id"], "project_id": project_id,
                           "received_at": received_at.isoformat(), "event": event},
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        data = text.encode()
    except ValueError:  # an infinite number, or a lone surrogate (UnicodeEncodeError)
        raise BadEvent("the event holds a number or a string JSON cannot carry") from None
    if NUL_ESCAPE.search(text):
        raise BadEvent("the event contains a NUL character (\\u0000), which cannot be stored")
    return data


def event_row(raw: bytes) -> tuple[str, int, str, str]:
    """A queue entry -> (event_id, project_id, received_at, payload JSON) for the INSERT."""
    msg = json.loads(raw)
    return (normalize_event_id(msg["event_id"]), int(msg["project_id"]),
            str(msg["received_at"]), json.dumps(msg["event"], separators=(",", ":")))


def parse_bind(text: str) -> tuple[str, int]:
    """'10.0.0.1:9000' -> ('10.0.0.1', 9000)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--bind wants ADDRESS:PORT, got {text!r}")
    return host.strip("[]"), int(port)


# --- clients --------------------------------------------------------------------------------

def redis_client(ep: RedisEndpoint, timeout: float = 5.0) -> Any:
    """A thread-safe Redis client (its own pool); commands time out rather than hang."""
    import redis

    return redis.Redis(host=ep.host, port=ep.port, db=ep.db, password=ep.password,
                       socket_timeout=timeout, socket_connect_timeout=2,
                       socket_keepalive=True, health_check_interval=30)


def db_connect(db: Database, role: str) -> Any:
    """A psycopg2 connection to PgBouncer; TCP keepalives find a vanished server."""
    import psycopg2

    return psycopg2.connect(host=db.host, port=db.port, dbname=db.name, user=db.user,
                            password=db.password, connect_timeout=db.connect_timeout,
                            application_name=f"sentry-lab-{role}", keepalives=1,
                            keepalives_idle=10, keepalives_interval=5, keepalives_count=3)


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001, S110 - a broken connection may fail to close; drop it
        pass


def now_utc() -> datetime:
    """The current time, UTC, timezone-aware."""
    return datetime.now(UTC)


def one_line(e: BaseException) -> str:
    """An exception as one log line (psycopg2 messages span lines)."""
    return f"{type(e).__name__}: " + " ".join(str(e).split())


class Backoff:
    """Retry delays 0.1 s doubling to 5 s, waited on the stop event (SIGTERM wakes it)."""

    def __init__(self, stop: threading.Event, first: float = 0.1, cap: float = 5.0):
        self.stop, self.first, self.cap = stop, first, cap
        self.delay = first
        self.failing_since: float | None = None

    def wait(self) -> None:
        """Sleep the next delay; Stopping if SIGTERM came meanwhile."""
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        if self.stop.wait(self.delay):
            raise Stopping()
        self.delay = min(self.delay * 2, self.cap)

    def reset(self) -> float | None:
        """Back to the shortest delay after a success; how long it had failed, if it had."""
        down = None if self.failing_since is None else time.monotonic() - self.failing_since
        self.delay, self.failing_since = self.first, None
        return down


class Throttle:
    """Lets a repeated log line through at most once per `every` seconds, counting the rest."""

    def __init__(self, every: float = 5.0):
        self.every, self.last, self.suppressed = every, 0.0, 0
        self.lock = threading.Lock()

    def ready(self) -> int | None:
        """None to stay quiet; else how many lines were held back since the last one."""
        with self.lock:
            now = time.monotonic()
            if now - self.last < self.every:
                self.suppressed += 1
                return None
            held, self.last, self.suppressed = self.suppressed, now, 0
            return held


# --- web ------------------------------------------------------------------------------------

class WebApp:
    """What the web process does per request, apart from HTTP framing."""

    def __init__(self, cfg: Config, version: str, broken: bool):
        import redis

        self.cfg, self.version, self.broken = cfg, version, broken
        self.redis_error = redis.RedisError
        self.queue = redis_client(cfg.queue)
        self.caches = [redis_client(ep, timeout=2.0) for ep in cfg.cache]
        self._local = threading.local()
        self._push_errors = Throttle()

    def store(self, project_id: int, auth: str | None, query: str, body: bytes,
              encoding: str | None) -> tuple[int, dict[str, Any]]:
        """Accept one event: 200 only once the queue Redis has acknowledged it."""
        key = sentry_key(auth, query)
        if key is None:
            return 401, {"error": "missing authentication: X-Sentry-Auth: Sentry sentry_key=..."}
        if not valid_key(key):
            return 401, {"error": "invalid sentry_key (want the DSN's 32 hex digit public key)"}
        try:
            event = parse_event(decode_body(body, encoding))
            message = queue_message(event, project_id, now_utc())
        except BadEvent as e:
            return 400, {"error": str(e)}
        for attempt in (1, 2):
            try:
                self.queue.lpush(QUEUE_KEY, message)
                return 200, {"id": event["event_id"]}
            except self.redis_error as e:
                # The first failure may be a pooled connection the server closed (a Redis
                # restart): one fresh try. A push that did land twice is stored once.
                held = self._push_errors.ready() if attempt == 2 else None
                if held is not None:  # at 5,000 events/s, one line per outage second is plenty
                    log.error("queue %s: push failed, answering 503: %s%s", self.cfg.queue,
                              one_line(e), f" (and {held} more)" if held else "")
        return 503, {"error": f"the event queue ({self.cfg.queue}) is unavailable"}

    def _db(self) -> Any:
        # One connection per thread, kept CONN_MAX_AGE seconds as Sentry's Django does.
        conn, born = getattr(self._local, "db", (None, 0.0))
        if conn is not None and (conn.closed or
                                 time.monotonic() - born > self.cfg.database.conn_max_age):
            _close(conn)
            conn = None
        if conn is None:
            conn = db_connect(self.cfg.database, "web")
            # autocommit: an idle client must hold no transaction, hence no PgBouncer server
            # connection (transaction pooling).
            conn.autocommit = True
            self._local.db = (conn, time.monotonic())
        return conn

    def _check_db(self) -> None:
        try:
            with self._db().cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except Exception:
            conn, _ = getattr(self._local, "db", (None, 0.0))
            if conn is not None:
                _close(conn)
            self._local.db = (None, 0.0)
            raise

    def health(self) -> tuple[int, str]:
        """200 'ok', or 503 and one line per dependency that failed."""
        if self.broken:
            return 503, "broken release (SENTRY_LAB_BROKEN=1)\n"
        db = self.cfg.database
        checks: list[tuple[str, Callable[[], Any]]] = [
            (f"postgresql via {db.host}:{db.port}", self._check_db),
            (f"queue redis {self.cfg.queue}", self.queue.ping),
        ]
        checks += [(f"cache redis {ep}", c.ping)
                   for ep, c in zip(self.cfg.cache, self.caches, strict=True)]
        failed = []
        for what, check in checks:
            try:
                check()
            except Exception as e:  # noqa: BLE001 - every failure is a reason to report
                failed.append(f"{what}: {one_line(e)}")
        if failed:
            return 503, "\n".join(failed) + "\n"
        return 200, "ok\n"


class Handler(http.server.BaseHTTPRequestHandler):
    """HTTP framing for WebApp; one request per connection, as Sentry's uWSGI is set up here."""

    server: WebServer
    protocol_version = "HTTP/1.0"
    server_version = "sentry-lab"
    timeout = 30  # a client that stalls mid-request frees its thread

    def version_string(self) -> str:
        """The Server header: what answered, without Python's version."""
        return f"sentry-lab/{self.server.app.version} (the lab's stand-in for Sentry)"

    def send_response(self, code: int, message: str | None = None) -> None:
        """Every response, errors included, says which release answered."""
        super().send_response(code, message)
        self.send_header("X-Lab-Version", self.server.app.version)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """No access log: nginx logs every request (SENTRY_WEB_OPTIONS disable-logging)."""

    def _reply(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._reply(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802
        """/_health/ only."""
        if urlsplit(self.path).path != "/_health/":
            return self._json(404, {"error": "not found"})
        status, text = self.server.app.health()
        self._reply(status, text.encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:  # noqa: N802
        """POST /api/<project_id>/store/."""
        url = urlsplit(self.path)
        match = STORE_PATH.match(url.path)
        if not match:
            return self._json(404, {"error": "not found"})
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self._json(411, {"error": "Content-Length required"})
        if int(length) > MAX_BODY:
            return self._json(413, {"error": f"event larger than {MAX_BODY} bytes"})
        body = self.rfile.read(int(length))
        status, data = self.server.app.store(
            int(match.group(1)), self.headers.get("X-Sentry-Auth"), url.query, body,
            self.headers.get("Content-Encoding"))
        self._json(status, data)


class WebServer(http.server.HTTPServer):
    """A fixed number of threads, as uWSGI's: connections beyond wait in the kernel backlog."""

    allow_reuse_address = True
    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn

    def __init__(self, bind: tuple[str, int], app: WebApp, threads: int):
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="web")
        self.slots = threading.BoundedSemaphore(threads)
        super().__init__(bind, Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (no DNS in the lab)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        """Hand the connection to a free thread (waiting for one: no accept beyond that)."""
        self.slots.acquire()
        self.pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one bad connection must not end the thread
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line, not a traceback per dropped client."""
        log.warning("request from %s failed: %s", client_address[0], one_line(sys.exc_info()[1]))

    def drain(self) -> None:
        """After the serve loop stopped: serve what already queued in the backlog, then close.

        Closing with connections still queued would reset them; nginx would retry those, but
        a connection accepted is a request finished.
        """
        self.socket.setblocking(False)
        while True:
            try:
                conn, addr = self.socket.accept()
            except OSError:
                break
            conn.setblocking(True)
            self.process_request(conn, addr)
        self.socket.close()
        self.pool.shutdown(wait=True)


def run_web(cfg: Config, bind: tuple[str, int], threads: int, version: str,
            broken: bool) -> int:
    """Serve until SIGTERM, then stop accepting, finish every accepted request, exit 0."""
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    server = WebServer(bind, WebApp(cfg, version, broken), threads)
    stop = _stop_on_signals()
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                            name="accept", daemon=True)
    loop.start()
    log.info("web %s listening on %s:%d with %d threads%s", version, *bind, threads,
             " (BROKEN release)" if broken else "")
    while not stop.wait(1.0):
        pass
    log.info("stopping: no new connections, finishing the accepted ones")
    server.shutdown()
    server.drain()
    log.info("stopped")
    return 0


# --- worker ---------------------------------------------------------------------------------

def default_worker_id() -> str:
    """hostname:container id (kept across restarts of the container), else hostname:pid."""
    host = socket.gethostname()
    try:
        with open("/proc/self/mountinfo") as f:
            found = re.search(r"/containers/([0-9a-f]{64})/", f.read())
        if found:
            return f"{host}:{found.group(1)[:12]}"
    except OSError:
        pass
    return f"{host}:{os.getpid()}"


def worker_ids(base: str, concurrency: int) -> list[str]:
    """One id per worker thread: the base itself, or base.0, base.1, ... for several."""
    return [base] if concurrency == 1 else [f"{base}.{i}" for i in range(concurrency)]


@dataclass
class WorkerStats:
    """Counters a worker logs on exit."""

    stored: int = 0
    duplicates: int = 0
    dead: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)


class Worker:
    """One reliable consumer: queue -> own processing list -> PostgreSQL -> acknowledged.

    An event leaves the processing list only after its row is committed, so a worker killed
    at any point loses nothing: on restart it stores its own list first (the INSERT ignores
    event_ids already there), and cron requeues the list of a worker that never comes back.
    """

    def __init__(self, cfg: Config, wid: str, queue: Any, stop: threading.Event,
                 batch: int = BATCH):
        self.cfg, self.id, self.r, self.stop, self.batch = cfg, wid, queue, stop, batch
        self.processing = PROCESSING_PREFIX + wid
        self.conn: Any = None
        self.stats = WorkerStats()
        self.crashed = False
        self._take_more = queue.register_script(TAKE_MORE)

    def run(self) -> None:
        """Own processing list first, then the queue, until SIGTERM; one batch at a time."""
        backoff = Backoff(self.stop)
        recover = True
        try:
            while not self.stop.is_set():
                try:
                    items = self._own_list() if recover else self._take()
                    recover = False
                    self._back("queue", backoff.reset())
                except Exception as e:  # noqa: BLE001 - Redis down: wait and retry
                    log.warning("worker %s: queue %s: %s", self.id, self.cfg.queue, one_line(e))
                    # A move may have happened without its reply reaching us: read our own
                    # list again once Redis answers, so nothing sits there unnoticed.
                    recover = True
                    backoff.wait()
                    continue
                if items:
                    self._handle(items)
        except Stopping:
            pass
        except Exception:
            # A bug, not an outage: stop the whole process so Docker restarts it whole. What
            # this thread held stays in its processing list for the restart to store.
            log.exception("worker %s: crashed", self.id)
            self.crashed = True
            self.stop.set()
        finally:
            if self.conn is not None:
                _close(self.conn)
        took = time.monotonic() - self.stats.started
        log.info("worker %s: stopped; %d stored (%d already there), %d dead-lettered in %.0f s",
                 self.id, self.stats.stored, self.stats.duplicates, self.stats.dead, took)

    def _own_list(self) -> list[bytes]:
        items = self.r.lrange(self.processing, 0, -1)
        if items:
            log.info("worker %s: re-processing %d events left in %s", self.id, len(items),
                     self.processing)
        return list(reversed(items))  # oldest first

    def _take(self) -> list[bytes]:
        # Blocks at most 1 s so SIGTERM is noticed; then takes the rest of a batch at once.
        first = self.r.blmove(QUEUE_KEY, self.processing, 1, "RIGHT", "LEFT")
        if first is None:
            return []
        more = self._take_more(keys=[QUEUE_KEY, self.processing], args=[self.batch - 1])
        return [first, *more]

    def _handle(self, items: list[bytes]) -> None:
        for start in range(0, len(items), self.batch):
            self._store(items[start:start + self.batch])

    def _store(self, chunk: list[bytes]) -> None:
        # Commit first, acknowledge after: a crash in between stores an event twice, which
        # the INSERT ignores; the other order could lose it.
        rows, dead = [], []
        for raw in chunk:
            try:
                rows.append(event_row(raw))
            except (ValueError, KeyError, TypeError):
                dead.append(raw)
        self._with_db(lambda: self._insert(rows))
        if dead:
            self._dead_letter(dead, "not a queue entry this worker understands")
        self._with_redis(lambda: self._ack(chunk))
        self.stats.batches += 1

    def _insert(self, rows: list[tuple[str, int, str, str]]) -> None:
        import psycopg2
        from psycopg2.extras import execute_values

        if not rows:
            return
        unique = list({r[0]: r for r in rows}.values())
        if self.conn is None or self.conn.closed:
            self.conn = db_connect(self.cfg.database, "worker")
        try:
            with self.conn.cursor() as cur:
                execute_values(cur, INSERT_EVENTS, unique, template=INSERT_TEMPLATE,
                               page_size=len(unique))
                inserted = cur.rowcount
            self.conn.commit()
        except psycopg2.DataError:
            # One event PostgreSQL refuses must not block the rest: store them one by one.
            self.conn.rollback()
            inserted = self._insert_each(unique)
        self.stats.stored += inserted
        self.stats.duplicates += len(rows) - inserted

    def _insert_each(self, rows: list[tuple[str, int, str, str]]) -> int:
        import psycopg2

        inserted = 0
        for row in rows:
            try:
                with self.conn.cursor() as cur:
                    cur.execute(INSERT_EVENTS.replace("%s", INSERT_TEMPLATE), row)
                    inserted += cur.rowcount
                self.conn.commit()
            except psycopg2.DataError as e:
                self.conn.rollback()
                raw = json.dumps({"event_id": row[0], "project_id": row[1],
                                  "received_at": row[2], "payload": row[3],
                                  "error": one_line(e)})
                self._dead_letter([raw.encode()], one_line(e))
        return inserted

    def _dead_letter(self, items: list[bytes], why: str) -> None:
        self._with_redis(lambda: self.r.lpush(DEAD_KEY, *items))
        self.stats.dead += len(items)
        log.error("worker %s: %d event(s) moved to %s: %s", self.id, len(items), DEAD_KEY, why)

    def _ack(self, items: list[bytes]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for raw in items:
            pipe.lrem(self.processing, 1, raw)
        pipe.execute()

    def _back(self, what: str, down: float | None) -> None:
        if down is not None:
            log.info("worker %s: %s answers again after %.1f s", self.id, what, down)

    def _with_db(self, step: Callable[[], None]) -> None:
        # PgBouncer paused, a switchover, a database restart: wait and retry the same batch
        # (its events are safe in the processing list meanwhile).
        import psycopg2

        backoff = Backoff(self.stop)
        while True:
            try:
                step()
                self._back("database", backoff.reset())
                return
            except psycopg2.Error as e:
                log.warning("worker %s: database %s:%d: %s", self.id, self.cfg.database.host,
                            self.cfg.database.port, one_line(e))
                if self.conn is not None:
                    _close(self.conn)
                self.conn = None
                backoff.wait()

    def _with_redis(self, step: Callable[[], object]) -> None:
        import redis

        backoff = Backoff(self.stop)
        while True:
            try:
                step()
                self._back("queue", backoff.reset())
                return
            except redis.RedisError as e:
                log.warning("worker %s: queue %s: %s", self.id, self.cfg.queue, one_line(e))
                backoff.wait()


def heartbeat(queue: Any, ids: list[str], stop: threading.Event) -> None:
    """SET sentry-lab:worker:<id> <ts> EX 30 every 5 s; removed on a clean exit."""
    while True:
        try:
            pipe = queue.pipeline(transaction=False)
            for wid in ids:
                pipe.set(HEARTBEAT_PREFIX + wid, f"{time.time():.3f}", ex=HEARTBEAT_TTL)
            pipe.execute()
        except Exception as e:  # noqa: BLE001 - Redis down: the workers retry, so do we
            log.warning("heartbeat: %s", one_line(e))
        if stop.wait(HEARTBEAT_EVERY):
            return


def run_worker(cfg: Config, base_id: str, concurrency: int) -> int:
    """Run `concurrency` worker threads until SIGTERM, each finishing its batch; exit 0.

    Exit 1 if a thread crashed: Docker restarts the process, which stores what it held.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    stop = _stop_on_signals()
    queue = redis_client(cfg.queue)
    ids = worker_ids(base_id, concurrency)
    beat_stop = threading.Event()
    # The first heartbeat goes out before any work: cron must never take a live worker's list.
    beat = threading.Thread(target=heartbeat, args=(queue, ids, beat_stop), name="heartbeat",
                            daemon=True)
    beat.start()
    workers = [Worker(cfg, wid, queue, stop) for wid in ids]
    threads = [threading.Thread(target=w.run, name=f"worker-{i}") for i, w in enumerate(workers)]
    log.info("worker %s: %d thread(s) on queue %s, database %s:%d", base_id, len(ids), cfg.queue,
             cfg.database.host, cfg.database.port)
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():  # short joins: the main thread must stay free to take SIGTERM
            t.join(timeout=0.5)
    beat_stop.set()
    beat.join()
    try:
        # Gone for good or restarting: either way cron may requeue at once whatever a worker
        # left behind (a retry that SIGTERM cut short); a restarted worker sets its key again.
        queue.delete(*(HEARTBEAT_PREFIX + wid for wid in ids))
    except Exception:  # noqa: BLE001, S110 - the key expires on its own anyway
        pass
    return 1 if any(w.crashed for w in workers) else 0


# --- cron -----------------------------------------------------------------------------------

def requeue_orphans(queue: Any) -> dict[str, int]:
    """Move the processing lists of workers without a heartbeat back onto the queue."""
    script = queue.register_script(REQUEUE)
    moved = {}
    for key in queue.scan_iter(match=PROCESSING_PREFIX + "*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        wid = name[len(PROCESSING_PREFIX):]
        n = script(keys=[name, QUEUE_KEY, HEARTBEAT_PREFIX + wid])
        if n and n > 0:
            moved[wid] = int(n)
    return moved


def cron_tick(cfg: Config, queue: Any, conn: Any, host: str) -> Any:
    """One round: a heartbeat row, then requeue dead workers' events; returns the connection."""
    try:
        if conn is None or conn.closed:
            conn = db_connect(cfg.database, "cron")
        with conn.cursor() as cur:
            cur.execute("INSERT INTO cron_heartbeats (at, host) VALUES (now(), %s)", (host,))
        conn.commit()
    except Exception as e:  # noqa: BLE001 - next round tries again
        log.warning("cron: database %s:%d: %s", cfg.database.host, cfg.database.port,
                    one_line(e))
        if conn is not None:
            _close(conn)
        conn = None
    try:
        for wid, n in requeue_orphans(queue).items():
            log.warning("cron: worker %s has no heartbeat: requeued its %d event(s)", wid, n)
    except Exception as e:  # noqa: BLE001 - next round tries again
        log.warning("cron: queue %s: %s", cfg.queue, one_line(e))
    return conn


def run_cron(cfg: Config) -> int:
    """A round every CRON_EVERY seconds until SIGTERM, then exit 0."""
    stop = _stop_on_signals()
    queue = redis_client(cfg.queue)
    host = socket.gethostname()
    log.info("cron on %s: every %d s", host, CRON_EVERY)
    conn = None
    while True:
        conn = cron_tick(cfg, queue, conn, host)
        if stop.wait(CRON_EVERY):
            break
    if conn is not None:
        _close(conn)
    return 0


# --- migrate --------------------------------------------------------------------------------

def run_migrate(cfg: Config, attempts: int = 5) -> int:
    """Create the schema if missing (idempotent, one transaction, one migrator at a time)."""
    import psycopg2

    for attempt in range(1, attempts + 1):
        conn = None
        try:
            conn = db_connect(cfg.database, "migrate")
            with conn.cursor() as cur:
                cur.execute(SCHEMA)
            conn.commit()
            log.info("migrate: schema is up to date on %s:%d/%s", cfg.database.host,
                     cfg.database.port, cfg.database.name)
            return 0
        except psycopg2.OperationalError as e:
            log.warning("migrate: attempt %d of %d: %s", attempt, attempts, one_line(e))
            if attempt < attempts:
                time.sleep(2)
        except psycopg2.Error as e:
            log.error("migrate: %s", one_line(e))
            return 1
        finally:
            if conn is not None:
                _close(conn)
    log.error("migrate: the database at %s:%d did not answer", cfg.database.host,
              cfg.database.port)
    return 1


# --- command line ---------------------------------------------------------------------------

def _stop_on_signals() -> threading.Event:
    # PID 1 in a container ignores SIGTERM unless a handler is installed.
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@dataclass(frozen=True)
class Command:
    """What to run, whichever command line asked for it."""

    role: str
    config: str
    bind: str | None = None
    threads: int | None = None
    workers: int | None = None
    concurrency: int = 1
    name: str | None = None
    upgrade: bool = False


def parse_lab_cli(argv: list[str]) -> Command:
    """sentry_lab.py {web,worker,cron,migrate} --config DIR [...]."""
    p = argparse.ArgumentParser(prog="sentry_lab.py", description="The lab's stand-in for "
                                "Sentry (not Sentry): web, worker, cron, migrate.")
    p.add_argument("role", choices=("web", "worker", "cron", "migrate"))
    p.add_argument("--config", required=True, help="folder holding sentry.conf.py, config.yml")
    p.add_argument("--bind", help="web: ADDRESS:PORT (default SENTRY_WEB_HOST:SENTRY_WEB_PORT)")
    p.add_argument("--threads", type=int, help="web: threads (default SENTRY_WEB_OPTIONS)")
    p.add_argument("--concurrency", type=int, default=1, help="worker: worker threads")
    p.add_argument("--name", help="worker: id, stable across restarts (default "
                   "hostname:container id)")
    a = p.parse_args(argv)
    return Command(a.role, a.config, bind=a.bind, threads=a.threads, concurrency=a.concurrency,
                   name=a.name)


def parse_sentry_cli(argv: list[str]) -> Command:
    """Sentry's own command line: sentry --config DIR run web|worker|cron, sentry upgrade."""
    p = argparse.ArgumentParser(prog="sentry", description="The lab's stand-in for Sentry's "
                                "`sentry` command (not Sentry).")
    p.add_argument("--config", help="folder holding sentry.conf.py and config.yml")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run").add_subparsers(dest="service", required=True)
    web = run.add_parser("web")
    web.add_argument("-b", "--bind")
    web.add_argument("-w", "--workers", type=int)
    web.add_argument("--upgrade", action="store_true")
    for sp in (web, sub.add_parser("upgrade")):
        sp.add_argument("--noinput", action="store_true")
        sp.add_argument("--with-lock", action="store_true")
    worker = run.add_parser("worker")
    worker.add_argument("-c", "--concurrency", type=int, default=1)
    worker.add_argument("-n", "--hostname", dest="name")
    worker.add_argument("-Q", "--queues")
    cron = run.add_parser("cron")
    for sp in (web, worker, cron):
        sp.add_argument("-l", "--loglevel")
        sp.add_argument("--logformat")
    a = p.parse_args(argv)
    if not a.config:
        # Real Sentry would fall back to ~/.sentry and start with the wrong settings; a
        # command line that relies on that is a bug this stand-in should show.
        p.error("--config is required: real Sentry would read ~/.sentry, not sentryfab's files"
                " (use sentry --config /etc/sentryfab/<role> ...)")
    if a.command == "upgrade":
        return Command("migrate", a.config)
    if a.service == "web":
        return Command("web", a.config, bind=a.bind, workers=a.workers, upgrade=a.upgrade)
    if a.service == "worker":
        return Command("worker", a.config, concurrency=a.concurrency, name=a.name)
    return Command("cron", a.config)


def execute(cmd: Command) -> int:
    """Load the config and run the role; the exit code."""
    version = os.environ.get("SENTRY_LAB_VERSION", "dev")
    broken = os.environ.get("SENTRY_LAB_BROKEN") == "1"
    cfg = load_config(cmd.config)
    if cmd.role == "migrate" or cmd.upgrade:
        code = run_migrate(cfg)
        if cmd.role == "migrate" or code:
            return code
    if cmd.role == "web":
        workers = cmd.workers or cfg.web_workers
        if workers != 1:
            raise ConfigError(f"the lab stand-in runs one web worker per process, asked for "
                              f"{workers}: run more processes instead")
        if cmd.bind:
            bind = parse_bind(cmd.bind)
        elif cfg.web_host and cfg.web_port:
            bind = (cfg.web_host, cfg.web_port)
        else:
            raise ConfigError("no --bind and no SENTRY_WEB_HOST/SENTRY_WEB_PORT in sentry.conf.py")
        return run_web(cfg, bind, cmd.threads or cfg.web_threads, version, broken)
    if cmd.role == "worker":
        return run_worker(cfg, cmd.name or default_worker_id(), cmd.concurrency)
    return run_cron(cfg)


def main(argv: list[str] | None = None) -> int:
    """Entry point: the lab command line, or Sentry's when called as `sentry ...`."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s sentry-lab %(levelname)s %(message)s")
    if argv[:1] == ["sentry"]:
        cmd = parse_sentry_cli(argv[1:])
    else:
        cmd = parse_lab_cli(argv)
    try:
        return execute(cmd)
    except ConfigError as e:
        log.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
