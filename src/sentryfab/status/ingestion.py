"""What `fab status` knows of Sentry 9.1.2's ingestion: its routes, why a request was not
accepted, which worker messages mean an accepted event lost. Pure: tables and classification.

The commands that count requests and messages on the host, and their parsers, are
facts/ingestion.py's; this module classifies what they counted (checks.py, cluster.py and the
ui read the result).

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .facts.ingestion import IngestFacts

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
        for status, count in by_status.items():
            total += count
            status_class = f"{status // 100}xx"
            if status_class in classes:
                classes[status_class] += count
            cause = cause_of(endpoint, status)
            if cause is not None:
                causes[cause] += count
            if cause == "missing_endpoint":
                lacking.setdefault(endpoint, {})[status] = count
    return Ingestion(total, classes, causes, lacking)


def causes_text(ing: Ingestion) -> str:
    """'too large (413) 30, rate limited (429) 2': the causes seen, most frequent first."""
    order = list(CAUSES)
    seen = sorted((cause for cause, count in ing.causes.items() if count),
                  key=lambda cause: (-ing.causes[cause], order.index(cause)))
    return ", ".join(f"{CAUSES[cause]} {ing.causes[cause]}" for cause in seen)


def statuses_text(by_status: dict[int, int]) -> str:
    """'403' for one status code, '403 (10), 404 (2)' for several."""
    if len(by_status) == 1:
        return str(next(iter(by_status)))
    return ", ".join(f"{status} ({count})" for status, count in sorted(by_status.items()))


def metric_name(message: str) -> str:
    """'preprocess.failed.empty' -> 'preprocess_failed_empty' (a statsd-safe metric name)."""
    return message.replace(".", "_")
