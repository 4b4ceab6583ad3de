"""Every metric a status round produces: its key, how messages name it, its unit. Pure.

The keys are what --json carries under each host's `metrics`, what statsd receives as
`sentryfab.<scope>.<host>.<key>`, and what an inventory's `thresholds` name: checks.py,
cluster.py, statsd.py and the ui write and read metrics only through `Key`, and a unit test
(test_status_metrics.py) fails when a key is used that METRICS does not describe. Only the
metrics marked `levels` take warning and critical levels (thresholds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Key(StrEnum):
    """A metric's key (its value is the name --json, statsd and `thresholds` use)."""

    # the machine, every host
    REACHABLE = "reachable"
    SEVERITY = "severity"
    SSH_MS = "ssh_ms"
    CHECK_MS = "check_ms"
    CONNECT_MS = "connect_ms"
    LOAD1 = "load1"
    LOAD5 = "load5"
    LOAD15 = "load15"
    CPUS = "cpus"
    LOAD_PER_CPU = "load_per_cpu"
    MEM_TOTAL = "mem_total"
    MEM_AVAILABLE = "mem_available"
    MEM_PCT = "mem_pct"
    DISK_PCT = "disk_pct"
    DATA_DISK_PCT = "data_disk_pct"
    DATA_DISK_FREE = "data_disk_free"
    LOG_DISK_PCT = "log_disk_pct"
    LOG_DISK_FREE = "log_disk_free"
    FDS_OPEN = "fds_open"
    FDS_MAX = "fds_max"
    FDS_PCT = "fds_pct"
    # containers, every role
    CONTAINERS = "containers"
    CONTAINERS_RUNNING = "containers_running"
    RESTARTS = "restarts"
    # web
    PROCESSES = "processes"
    PROCESSES_UP = "processes_up"
    HEALTH_MS = "health_ms"
    WEB_DOWN_PCT = "web_down_pct"
    # nginx
    ACTIVE_CONNECTIONS = "active_connections"
    READING = "reading"
    WRITING = "writing"
    WAITING = "waiting"
    REQUESTS = "requests"
    REQUESTS_PER_S = "requests_per_s"
    UPSTREAMS = "upstreams"
    UPSTREAMS_DRAINED = "upstreams_drained"
    UPSTREAMS_DOWN = "upstreams_down"
    UPSTREAMS_DOWN_PCT = "upstreams_down_pct"
    UPSTREAMS_DRAINED_IDLE = "upstreams_drained_idle"
    # nginx: ingestion in the last minute, per status class and per cause (ingestion.py)
    INGEST_PER_S = "ingest_per_s"
    INGEST_ERROR_PCT = "ingest_error_pct"
    INGEST_2XX_PER_S = "ingest_2xx_per_s"
    INGEST_3XX_PER_S = "ingest_3xx_per_s"
    INGEST_4XX_PER_S = "ingest_4xx_per_s"
    INGEST_5XX_PER_S = "ingest_5xx_per_s"
    INGEST_MISSING_ENDPOINT_PER_S = "ingest_missing_endpoint_per_s"
    INGEST_TOO_LARGE_PER_S = "ingest_too_large_per_s"
    INGEST_RATE_LIMITED_PER_S = "ingest_rate_limited_per_s"
    INGEST_WEB_DOWN_PER_S = "ingest_web_down_per_s"
    INGEST_BAD_KEY_PER_S = "ingest_bad_key_per_s"
    INGEST_BAD_REQUEST_PER_S = "ingest_bad_request_per_s"
    INGEST_CLIENT_GONE_PER_S = "ingest_client_gone_per_s"
    INGEST_REDIRECTED_PER_S = "ingest_redirected_per_s"
    INGEST_OTHER_4XX_PER_S = "ingest_other_4xx_per_s"
    INGEST_OTHER_5XX_PER_S = "ingest_other_5xx_per_s"
    # worker: payloads found missing in the last minute, in all and per message
    PAYLOADS_MISSING = "payloads_missing"
    PREPROCESS_FAILED_EMPTY = "preprocess_failed_empty"
    PROCESS_FAILED_EMPTY = "process_failed_empty"
    PROCESS_FAILED_RAW_EMPTY = "process_failed_raw_empty"
    # cron: the retention cleanup
    CLEANUP_HOURS_SINCE_RUN = "cleanup_hours_since_run"
    CLEANUP_FAILED_IN_A_ROW = "cleanup_failed_in_a_row"
    # backup: the repository's last good backup and drill; db: the WAL archive's lag
    BACKUP_HOURS_SINCE_GOOD = "backup_hours_since_good"
    DRILL_HOURS_SINCE_RUN = "drill_hours_since_run"
    DRILL_FAILED = "drill_failed"
    ARCHIVE_WAITING = "archive_waiting"
    ARCHIVE_LAG_S = "archive_lag_s"
    # Redis
    HOLDS_PAYLOADS = "holds_payloads"
    USED_MEMORY = "used_memory"
    MAXMEMORY = "maxmemory"
    MEMORY_PCT = "memory_pct"
    CONNECTED_CLIENTS = "connected_clients"
    MAXCLIENTS = "maxclients"
    CLIENTS_PCT = "clients_pct"
    BLOCKED_CLIENTS = "blocked_clients"
    OPS_PER_S = "ops_per_s"
    REJECTED_CONNECTIONS = "rejected_connections"
    REJECTED_SINCE_LAST = "rejected_since_last"
    EVICTED_KEYS = "evicted_keys"
    EVICTED_SINCE_LAST = "evicted_since_last"
    # the queue Redis
    QUEUE_LENGTH = "queue_length"
    QUEUE_GROWTH_PER_S = "queue_growth_per_s"
    BACKLOG_AGE_S = "backlog_age_s"
    WORKER_HEARTBEATS = "worker_heartbeats"
    # PostgreSQL
    IS_PRIMARY = "is_primary"
    CONNECTIONS = "connections"
    MAX_CONNECTIONS = "max_connections"
    CONNECTIONS_PCT = "connections_pct"
    TIMELINE = "timeline"
    STANDBYS = "standbys"
    REPLICATION_LAG_BYTES = "replication_lag_bytes"
    REPLICATION_LAG_S = "replication_lag_s"
    # PgBouncer
    CL_ACTIVE = "cl_active"
    CL_WAITING = "cl_waiting"
    SV_ACTIVE = "sv_active"
    SV_IDLE = "sv_idle"
    SV_USED = "sv_used"
    MAXWAIT_S = "maxwait_s"
    QUERIES_PER_S = "queries_per_s"
    AVG_QUERY_MS = "avg_query_ms"
    AVG_WAIT_MS = "avg_wait_ms"
    POINTS_AT_PRIMARY = "points_at_primary"
    # the cluster (statsd's sentryfab.cluster.<cluster>.<key>; queue and ingestion above)
    PRIMARIES = "primaries"
    CRONS = "crons"


@dataclass(frozen=True)
class Metric:
    """How a metric is named in messages, which unit its values have, and whether an
    inventory may give it warning and critical levels."""

    label: str
    unit: str  # pct, bytes, s, duration, hours_ago, ms, count, per_s, rate, ratio, flag
    levels: bool = False


def _levelled(label: str, unit: str) -> Metric:
    return Metric(label, unit, levels=True)


METRICS: dict[Key, Metric] = {
    Key.REACHABLE: Metric("reachable (1) or not (0)", "flag"),
    Key.SEVERITY: Metric("worst finding: 0 ok, 1 warning, 2 critical", "count"),
    Key.SSH_MS: _levelled("SSH round trip", "ms"),
    Key.CHECK_MS: Metric("check script run time on the host", "ms"),
    Key.CONNECT_MS: Metric("SSH connect time", "ms"),
    Key.LOAD1: Metric("load, 1 minute", "ratio"),
    Key.LOAD5: Metric("load, 5 minutes", "ratio"),
    Key.LOAD15: Metric("load, 15 minutes", "ratio"),
    Key.CPUS: Metric("CPUs", "count"),
    Key.LOAD_PER_CPU: _levelled("load per CPU", "ratio"),
    Key.MEM_TOTAL: Metric("memory", "bytes"),
    Key.MEM_AVAILABLE: Metric("memory available", "bytes"),
    Key.MEM_PCT: _levelled("memory used", "pct"),
    Key.DISK_PCT: _levelled("disk use", "pct"),
    Key.DATA_DISK_PCT: Metric("disk use of the data path", "pct"),
    Key.DATA_DISK_FREE: Metric("disk free on the data path", "bytes"),
    Key.LOG_DISK_PCT: Metric("disk use of the log path", "pct"),
    Key.LOG_DISK_FREE: Metric("disk free on the log path", "bytes"),
    Key.FDS_OPEN: Metric("open files (system-wide)", "count"),
    Key.FDS_MAX: Metric("open files limit (system-wide)", "count"),
    Key.FDS_PCT: _levelled("open files", "pct"),
    Key.CONTAINERS: Metric("containers the inventory asks for", "count"),
    Key.CONTAINERS_RUNNING: Metric("containers running", "count"),
    Key.RESTARTS: _levelled("restarts since last check", "count"),
    Key.PROCESSES: Metric("web processes", "count"),
    Key.PROCESSES_UP: Metric("web processes answering /_health/", "count"),
    Key.HEALTH_MS: _levelled("/_health/ answer time", "ms"),
    Key.WEB_DOWN_PCT: _levelled("web processes down", "pct"),
    Key.ACTIVE_CONNECTIONS: Metric("nginx connections", "count"),
    Key.READING: Metric("nginx connections reading a request", "count"),
    Key.WRITING: Metric("nginx connections writing an answer", "count"),
    Key.WAITING: Metric("nginx idle keep-alive connections", "count"),
    Key.REQUESTS: Metric("nginx requests since it started", "count"),
    Key.REQUESTS_PER_S: Metric("nginx requests", "rate"),
    Key.UPSTREAMS: Metric("upstreams in nginx's config", "count"),
    Key.UPSTREAMS_DRAINED: Metric("upstreams out of rotation", "count"),
    Key.UPSTREAMS_DOWN: Metric("upstreams in rotation not answering", "count"),
    Key.UPSTREAMS_DOWN_PCT: _levelled("upstreams unreachable from nginx", "pct"),
    Key.UPSTREAMS_DRAINED_IDLE: _levelled("upstreams out of rotation with no deploy running",
                                          "count"),
    Key.INGEST_PER_S: Metric("ingestion requests", "rate"),
    Key.INGEST_ERROR_PCT: _levelled("ingestion errors", "pct"),
    Key.INGEST_2XX_PER_S: Metric("ingestion answers 2xx", "rate"),
    Key.INGEST_3XX_PER_S: Metric("ingestion answers 3xx", "rate"),
    Key.INGEST_4XX_PER_S: Metric("ingestion answers 4xx", "rate"),
    Key.INGEST_5XX_PER_S: Metric("ingestion answers 5xx", "rate"),
    Key.INGEST_MISSING_ENDPOINT_PER_S: _levelled("requests to endpoints Sentry 9.1.2 lacks",
                                                 "rate"),
    Key.INGEST_TOO_LARGE_PER_S: Metric("ingestion refused: too large (413)", "rate"),
    Key.INGEST_RATE_LIMITED_PER_S: Metric("ingestion refused: rate limited (429)", "rate"),
    Key.INGEST_WEB_DOWN_PER_S: Metric("ingestion failed: web processes down (502/504)",
                                      "rate"),
    Key.INGEST_BAD_KEY_PER_S: Metric("ingestion refused: bad key or origin (401/403)", "rate"),
    Key.INGEST_BAD_REQUEST_PER_S: Metric("ingestion refused: bad request (400)", "rate"),
    Key.INGEST_CLIENT_GONE_PER_S: Metric("ingestion abandoned by the client (499)", "rate"),
    Key.INGEST_REDIRECTED_PER_S: Metric("ingestion redirected (3xx)", "rate"),
    Key.INGEST_OTHER_4XX_PER_S: Metric("ingestion answered another 4xx", "rate"),
    Key.INGEST_OTHER_5XX_PER_S: Metric("ingestion answered another 5xx", "rate"),
    Key.PAYLOADS_MISSING: _levelled("payloads found missing in the last minute", "count"),
    Key.PREPROCESS_FAILED_EMPTY: Metric("preprocess.failed.empty in the last minute",
                                        "count"),
    Key.PROCESS_FAILED_EMPTY: Metric("process.failed.empty in the last minute", "count"),
    Key.PROCESS_FAILED_RAW_EMPTY: Metric("process.failed_raw.empty in the last minute",
                                         "count"),
    Key.CLEANUP_HOURS_SINCE_RUN: _levelled("retention cleanup last ran", "hours_ago"),
    Key.CLEANUP_FAILED_IN_A_ROW: _levelled("retention cleanup runs failed in a row", "count"),
    Key.BACKUP_HOURS_SINCE_GOOD: _levelled("last good backup ended", "hours_ago"),
    Key.DRILL_HOURS_SINCE_RUN: _levelled("last restore drill ran", "hours_ago"),
    Key.DRILL_FAILED: _levelled("last restore drill failed (1) or not (0)", "flag"),
    Key.ARCHIVE_WAITING: Metric("WAL segments waiting for the archive", "count"),
    Key.ARCHIVE_LAG_S: _levelled("oldest WAL segment not yet archived", "seconds"),
    Key.HOLDS_PAYLOADS: Metric("holds event payloads (1) or not (0)", "flag"),
    Key.USED_MEMORY: Metric("Redis memory used", "bytes"),
    Key.MAXMEMORY: Metric("Redis maxmemory (0: none)", "bytes"),
    Key.MEMORY_PCT: _levelled("memory", "pct"),
    Key.CONNECTED_CLIENTS: Metric("Redis clients", "count"),
    Key.MAXCLIENTS: Metric("Redis maxclients", "count"),
    Key.CLIENTS_PCT: _levelled("clients", "pct"),
    Key.BLOCKED_CLIENTS: Metric("Redis clients blocked (BRPOP)", "count"),
    Key.OPS_PER_S: Metric("Redis commands", "rate"),
    Key.REJECTED_CONNECTIONS: _levelled("connections rejected since last check", "count"),
    Key.REJECTED_SINCE_LAST: Metric("Redis connections rejected since last check", "count"),
    Key.EVICTED_KEYS: _levelled("evicted keys", "count"),
    Key.EVICTED_SINCE_LAST: _levelled("keys evicted since last check", "count"),
    Key.QUEUE_LENGTH: _levelled("queue length", "count"),
    Key.QUEUE_GROWTH_PER_S: _levelled("queue growth", "per_s"),
    Key.BACKLOG_AGE_S: _levelled("backlog age", "duration"),
    Key.WORKER_HEARTBEATS: Metric("worker heartbeat keys in the queue Redis", "count"),
    Key.IS_PRIMARY: Metric("primary (1) or replica (0)", "flag"),
    Key.CONNECTIONS: Metric("PostgreSQL client connections", "count"),
    Key.MAX_CONNECTIONS: Metric("PostgreSQL max_connections", "count"),
    Key.CONNECTIONS_PCT: _levelled("connections", "pct"),
    Key.TIMELINE: Metric("PostgreSQL timeline", "count"),
    Key.STANDBYS: Metric("standbys streaming from this node", "count"),
    Key.REPLICATION_LAG_BYTES: _levelled("replication lag", "bytes"),
    Key.REPLICATION_LAG_S: _levelled("replication lag", "s"),
    Key.CL_ACTIVE: Metric("PgBouncer clients linked to a server", "count"),
    Key.CL_WAITING: _levelled("clients waiting for a server connection", "count"),
    Key.SV_ACTIVE: Metric("PgBouncer server connections in use", "count"),
    Key.SV_IDLE: Metric("PgBouncer server connections idle", "count"),
    Key.SV_USED: Metric("PgBouncer server connections being checked", "count"),
    Key.MAXWAIT_S: _levelled("longest client wait", "s"),
    Key.QUERIES_PER_S: Metric("PgBouncer queries", "rate"),
    Key.AVG_QUERY_MS: Metric("PgBouncer average query time", "ms"),
    Key.AVG_WAIT_MS: Metric("PgBouncer average client wait", "ms"),
    Key.POINTS_AT_PRIMARY: Metric("PgBouncer points at the primary (1) or not (0)", "flag"),
    Key.PRIMARIES: Metric("databases that say they are primary", "count"),
    Key.CRONS: Metric("crons running in the cluster", "count"),
}

#: The metrics an inventory's `thresholds` may set, in the order messages list them.
LEVELLED: tuple[Key, ...] = tuple(key for key, metric in METRICS.items() if metric.levels)


def ingest_class_key(status_class: str) -> Key:
    """'4xx' -> Key.INGEST_4XX_PER_S (ValueError for a class METRICS does not describe)."""
    return Key(f"ingest_{status_class}_per_s")


def ingest_cause_key(cause: str) -> Key:
    """'too_large' -> Key.INGEST_TOO_LARGE_PER_S (ValueError for an unknown cause)."""
    return Key(f"ingest_{cause}_per_s")

