"""Ingestion over the last minute: nginx's answers to SDKs, and payloads the workers missed.

Pure: the commands a host runs and the parsers of what they print. At 5,000 events/s nginx
logs 300,000 lines a minute: they never cross SSH. `docker logs --since 60s` is piped into
a small POSIX awk on the host that prints one 'endpoint status count' line per pair seen
(a few dozen lines at most); the workers' logs are reduced the same way to counts of
Sentry's "payload missing" messages.

The endpoints are the ingestion routes of Sentry 9.1.2 (sentry/web/urls.py) and those newer
SDKs use that it lacks (Relay's routes, relay-server/src/endpoints/mod.rs). On 9.1.2 a
request to one it lacks falls through to a catch-all view (`^api/[^0]+/`, a redirect, or the
last `/$` one) that is not CSRF-exempt: a POST is answered 403 "CSRF Verification Failed",
not 404, and the SDK drops the event without telling its user. So every 3xx/4xx on such an
endpoint is counted as that cause, whatever the code. Every method counts: a browser's CORS
preflight refused stops its event as surely as a refused POST.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..shell import join

#: The window every figure covers, in seconds (`docker logs --since`).
WINDOW_S = 60
#: Fewer ingestion requests than this in the window are too few to judge an error rate by
#: (one failure out of three is not an outage): their causes are still listed, as a note.
MIN_REQUESTS = 10


@dataclass(frozen=True)
class Endpoint:
    """An ingestion route: its name in the awk output, its path pattern, whether 9.1.2 has it."""

    name: str
    pattern: str   # POSIX ERE on the path without its query string (awk; no backslashes)
    served: bool   # Sentry 9.1.2 has it
    shown: str     # how messages name it
    why: str = ""  # who sends to it, when 9.1.2 lacks it


#: First match wins. Project ids are digits where Relay requires them; Sentry 9.1.2 itself
#: also takes slugs ([\w_-]+) on store, minidump and unreal. A missing trailing slash still
#: counts (Django answers it with a redirect: the event is lost all the same).
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("store", "^/api/([^/]+/)?store/?$", True, "/api/<id>/store/"),
    Endpoint("minidump", "^/api/[^/]+/minidump/?$", True, "/api/<id>/minidump/"),
    Endpoint("unreal", "^/api/[^/]+/unreal/[^/]+/?$", True, "/api/<id>/unreal/<key>/"),
    Endpoint("security", "^/api/[0-9]+/security/?$", True, "/api/<id>/security/"),
    Endpoint("csp-report", "^/api/[0-9]+/csp-report/?$", True, "/api/<id>/csp-report/"),
    Endpoint("envelope", "^/api/[0-9]+/envelope/?$", False, "/api/<id>/envelope/",
             "clients sending envelopes (sentry-sdk >= 0.17/2.x) to a Sentry 9.1.2 that lacks "
             "/envelope/: those events are dropped by the client"),
    Endpoint("attachments", "^/api/[0-9]+/events/[^/]+/attachments/?$", False,
             "/api/<id>/events/<event>/attachments/",
             "clients uploading attachments to a Sentry 9.1.2 that lacks that endpoint: the "
             "attachments are dropped by the client"),
    Endpoint("nel", "^/api/[0-9]+/nel/?$", False, "/api/<id>/nel/",
             "browsers sending Network Error Logging reports to a Sentry 9.1.2 that lacks "
             "/nel/: those reports are dropped"),
    Endpoint("cron", "^/api/[0-9]+/cron/", False, "/api/<id>/cron/<monitor>/",
             "cron monitor check-ins sent to a Sentry 9.1.2 that lacks /cron/: those "
             "check-ins are dropped"),
    Endpoint("otlp", "^/api/[0-9]+/(integration/)?otlp/", False, "/api/<id>/otlp/",
             "OpenTelemetry exporters sending to a Sentry 9.1.2 that lacks /otlp/: that data "
             "is dropped"),
    Endpoint("playstation", "^/api/[0-9]+/playstation/?$", False, "/api/<id>/playstation/",
             "PlayStation crash reports sent to a Sentry 9.1.2 that lacks /playstation/: "
             "those reports are dropped"),
    # The web API is /api/0/...; any other project path is an SDK speaking a route 9.1.2
    # does not know.
    Endpoint("other", "^/api/[1-9][0-9]*/", False, "/api/<id>/<other>/",
             "clients sending to a route under /api/<id>/ that Sentry 9.1.2 lacks: what "
             "they send is dropped"),
)
BY_NAME = {e.name: e for e in ENDPOINTS}
#: Served under /api/<id>/ but not ingestion (Flash's policy file).
NOT_INGESTION = "^/api/[^/]+/crossdomain[.]xml$"

#: Why an ingestion request was not accepted, in the order findings list them.
CAUSES: dict[str, str] = {
    "missing_endpoint": "endpoint Sentry 9.1.2 lacks",
    "too_large": "too large (413)",
    "rate_limited": "rate limited (429)",
    "web_down": "web processes down (502/504)",
    "bad_key": "bad or revoked key, or origin not allowed (401/403)",
    "bad_request": "bad request (400)",
    "client_gone": "client gave up waiting (499)",
    "redirected": "redirected (3xx)",
    "other_4xx": "other 4xx",
    "other_5xx": "other 5xx",
}
STATUS_CAUSES = {400: "bad_request", 401: "bad_key", 403: "bad_key", 413: "too_large",
                 429: "rate_limited", 499: "client_gone", 502: "web_down", 504: "web_down"}
CLASSES = ("2xx", "3xx", "4xx", "5xx")

#: What sentry/tasks/store.py (9.1.2) logs to `sentry.errors.events` when a task finds no
#: payload under its cache key (evicted, or older than its TTL): an accepted event lost.
#: save_event's own case (events.failed, stage 'post') is a metric only, never logged.
MISSING_PAYLOAD: dict[str, str] = {
    "preprocess.failed.empty": "preprocess_event",
    "process.failed.empty": "process_event",
    "process.failed_raw.empty": "reprocessing",
}


# -- nginx ---------------------------------------------------------------------------------------

def _nginx_awk() -> str:
    """The awk that reduces nginx's access log (log_format sentryfab) to counts.

    Fields are split on '"' (nginx escapes one inside a value as \\x22): 1 is address and
    time, 2 the request line, 3 starts with status. Lines without a 3-digit status there
    (nginx's error log, docker's own errors) are kept aside: the last one says why a read
    failed.
    """
    chain = " else ".join(f'if (p ~ "{e.pattern}") e = "{e.name}";' for e in ENDPOINTS)
    return (
        '$1 == "@rc" && NF == 2 { rc = $2; next } '
        '{ lines++; k = split($0, q, "\\""); '
        'if (k < 3 || split(q[3], f, " ") < 1 || f[1] !~ /^[0-9][0-9][0-9]$/) '
        '{ junk = $0; next } '
        'requests++; split(q[2], r, " "); p = r[2]; sub(/[?].*/, "", p); '
        f'if (p !~ "^/api/" || p ~ "{NOT_INGESTION}") next; '
        f"{chain} else next; "
        'n[e " " f[1]]++ } '
        'END { print "lines", lines + 0; print "requests", requests + 0; '
        'for (x in n) print x, n[x]; print "rc", (rc == "" ? "-" : rc); '
        'if (rc != 0 && junk != "") print "error", junk }'
    )


NGINX_AWK = _nginx_awk()


def nginx_command(container: str, timeout: int) -> str:
    """The last minute of nginx's log, reduced on the host: docker's exit code rides along as
    an '@rc N' line (a pipeline's own status is awk's)."""
    logs = join(["timeout", timeout, "docker", "logs", "--since", f"{WINDOW_S}s", container])
    return f'{{ {logs} 2>&1; echo "@rc $?"; }} | {join(["awk", NGINX_AWK])}'


@dataclass(frozen=True)
class IngestFacts:
    """What the nginx awk printed: responses per ingestion endpoint and status code."""

    counts: dict[str, dict[int, int]]   # endpoint -> status -> responses in the window
    lines: int = 0                       # log lines read
    requests: int = 0                    # access-log lines, any path
    rc: int | None = None                # docker logs' exit code; None: never reported
    error: str = ""                      # its last complaint, when it failed

    @property
    def cut_off(self) -> bool:
        """True if the read was stopped by its timeout (the counts cover part of the minute)."""
        return self.rc is None or self.rc == 124


def ingest(lines: tuple[str, ...]) -> IngestFacts:
    """'lines N', 'requests N', 'ENDPOINT STATUS COUNT' lines (any order), 'rc N|-',
    'error TEXT'."""
    counts: dict[str, dict[int, int]] = {}
    seen: dict[str, int] = {}
    rc: int | None = None
    error = ""
    for line in lines:
        parts = line.split()
        if line.startswith("error "):
            error = line[6:].strip()
        elif len(parts) == 2 and parts[0] in ("lines", "requests") and parts[1].isdigit():
            seen[parts[0]] = int(parts[1])
        elif len(parts) == 2 and parts[0] == "rc":
            rc = int(parts[1]) if parts[1].isdigit() else None
        elif len(parts) == 3 and parts[0] in BY_NAME and parts[1].isdigit() \
                and parts[2].isdigit():
            counts.setdefault(parts[0], {})[int(parts[1])] = int(parts[2])
    return IngestFacts(counts, seen.get("lines", 0), seen.get("requests", 0), rc, error)


def cause_of(endpoint: str, status: int) -> str | None:
    """Why a response did not deliver its event (None for a 2xx: it did)."""
    if status < 300:
        return None
    if not BY_NAME[endpoint].served and status < 500:
        return "missing_endpoint"
    if status in STATUS_CAUSES:
        return STATUS_CAUSES[status]
    return "redirected" if status < 400 else "other_4xx" if status < 500 else "other_5xx"


@dataclass(frozen=True)
class Ingestion:
    """One nginx host's ingestion over the window, classified."""

    total: int
    classes: dict[str, int]                 # '2xx'..'5xx' -> responses
    causes: dict[str, int]                  # every cause -> responses (0 when none)
    lacking: dict[str, dict[int, int]] = field(default_factory=dict)  # endpoint -> status

    @property
    def errors(self) -> int:
        """Responses that did not deliver their event."""
        return sum(self.causes.values())

    @property
    def error_pct(self) -> float | None:
        """Errors as a share of every ingestion request (None without any)."""
        return round(100.0 * self.errors / self.total, 2) if self.total else None


def classify(facts: IngestFacts) -> Ingestion:
    """Counts per endpoint and status -> totals per status class and per cause."""
    classes = dict.fromkeys(CLASSES, 0)
    causes = dict.fromkeys(CAUSES, 0)
    lacking: dict[str, dict[int, int]] = {}
    total = 0
    for endpoint, by_status in facts.counts.items():
        for status, n in by_status.items():
            total += n
            cls = f"{status // 100}xx"
            if cls in classes:
                classes[cls] += n
            cause = cause_of(endpoint, status)
            if cause is not None:
                causes[cause] += n
            if cause == "missing_endpoint":
                lacking.setdefault(endpoint, {})[status] = n
    return Ingestion(total, classes, causes, lacking)


def causes_text(ing: Ingestion) -> str:
    """'too large (413) 30, rate limited (429) 2': the causes seen, most frequent first."""
    order = list(CAUSES)
    seen = sorted((c for c, n in ing.causes.items() if n), key=lambda c: (-ing.causes[c],
                                                                          order.index(c)))
    return ", ".join(f"{CAUSES[c]} {ing.causes[c]}" for c in seen)


def statuses_text(by_status: dict[int, int]) -> str:
    """'403' for one status code, '403 (10), 404 (2)' for several."""
    if len(by_status) == 1:
        return str(next(iter(by_status)))
    return ", ".join(f"{s} ({n})" for s, n in sorted(by_status.items()))


# -- workers -----------------------------------------------------------------------------------

def _word(message: str) -> str:
    """An ERE matching `message` as a whole: 'process.failed.empty' never inside
    'preprocess.failed.empty'. Matches the human format ('...events: MSG (cache_key=...)')
    and the JSON one ('"event":"MSG"')."""
    edge = "[^A-Za-z0-9_.]"
    return f"(^|{edge}){message.replace('.', '[.]')}({edge}|$)"


def _worker_awk() -> str:
    """The awk that counts MISSING_PAYLOAD messages per container: a container's lines come
    before its '@rc NAME CODE' line; '@rc - CODE' closes the whole read."""
    match = " ".join(f'$0 ~ "{_word(m)}" {{ c["{m}"]++; next }}' for m in MISSING_PAYLOAD)
    return ('$1 == "@rc" && NF == 3 { for (m in c) print $2, m, c[m]; split("", c); '
            'print "rc", $2, $3, n + 0; n = 0; next } '
            f"{{ n++ }} {match}")


WORKER_AWK = _worker_awk()


def worker_command(containers: list[str], timeout: int) -> str:
    """The last minute of each worker container's log, reduced on the host; one timeout
    for them all (a hung Docker engine costs `timeout` seconds, not that per container)."""
    loop = (f'for c; do docker logs --since {WINDOW_S}s "$c" 2>&1; echo "@rc $c $?"; done')
    read = join(["timeout", timeout, "sh", "-c", loop, "sh", *containers])
    return f'{{ {read}; echo "@rc - $?"; }} | {join(["awk", WORKER_AWK])}'


@dataclass(frozen=True)
class PayloadFacts:
    """What the worker awk printed: missing-payload messages per container."""

    counts: dict[str, dict[str, int]]   # container -> message -> lines in the window
    rcs: dict[str, int]                 # container -> docker logs' exit code
    lines: dict[str, int]               # container -> log lines read
    rc: int | None = None               # the whole read's ('-'); None: never reported

    @property
    def cut_off(self) -> bool:
        """True if the read was stopped by its timeout (the counts cover part of the minute)."""
        return self.rc is None or self.rc == 124

    def total(self, message: str | None = None) -> int:
        """Lines of `message` (of every MISSING_PAYLOAD message if None), all containers."""
        return sum(n for per in self.counts.values() for m, n in per.items()
                   if message is None or m == message)


def payloads(lines: tuple[str, ...]) -> PayloadFacts:
    """'CONTAINER MESSAGE COUNT' and 'rc CONTAINER CODE LINES' lines; container '-' is what
    was read after the last container that finished (a read cut off)."""
    counts: dict[str, dict[str, int]] = {}
    rcs: dict[str, int] = {}
    read: dict[str, int] = {}
    rc: int | None = None
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "rc" and parts[2].isdigit() and parts[3].isdigit():
            if parts[1] == "-":
                rc = int(parts[2])
                if int(parts[3]):
                    read["-"] = int(parts[3])
            else:
                rcs[parts[1]], read[parts[1]] = int(parts[2]), int(parts[3])
        elif len(parts) == 3 and parts[1] in MISSING_PAYLOAD and parts[2].isdigit():
            counts.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return PayloadFacts(counts, rcs, read, rc)


def metric_name(message: str) -> str:
    """'preprocess.failed.empty' -> 'preprocess_failed_empty' (a statsd-safe metric name)."""
    return message.replace(".", "_")
