"""One table of metric keys (status/metrics.py): every key a round writes, a finding names, the
ui reads or statsd sends is in METRICS, under the very name --json and inventories use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sentryfab import inventory
from sentryfab.status import cluster, ingestion, statsd, thresholds
from sentryfab.status.metrics import LEVELLED, METRICS, Key, ingest_cause_key, ingest_class_key
from sentryfab.status.model import StatusReport

from .test_status_checks import DATA, inv, text
from .test_status_ingestion import with_section

SRC = Path(__file__).resolve().parents[2] / "src" / "sentryfab"
#: The modules that write or read metrics by key.
USERS = ["status/checks.py", "status/cluster.py", "status/ingestion.py", "status/statsd.py",
         "ui/status.py", "ui/status_roles.py"]

#: The metrics an inventory's `thresholds` could name before the table covered every key, in
#: their order ('known: ...' lists them so): they, and only they, still take levels.
LEVELLED_BEFORE = [
    "ssh_ms", "load_per_cpu", "mem_pct", "disk_pct", "fds_pct", "restarts", "health_ms",
    "web_down_pct", "upstreams_down_pct", "upstreams_drained_idle", "ingest_error_pct",
    "ingest_missing_endpoint_per_s", "payloads_missing", "cleanup_hours_since_run",
    "cleanup_failed_in_a_row", "backup_hours_since_good", "drill_hours_since_run",
    "drill_failed", "archive_lag_s", "memory_pct", "clients_pct", "rejected_connections",
    "evicted_keys", "evicted_since_last", "queue_length", "queue_growth_per_s", "backlog_age_s",
    "connections_pct", "replication_lag_bytes", "replication_lag_s", "cl_waiting", "maxwait_s",
]


def test_the_table_describes_every_key_and_levels_only_the_thresholded_ones():
    assert list(METRICS) == list(Key)
    assert list(LEVELLED) == LEVELLED_BEFORE
    for scope, defaults in thresholds.DEFAULTS.items():
        assert set(defaults) <= set(LEVELLED), scope


def test_the_keys_of_each_family_follow_what_they_count():
    assert {ingest_class_key(c) for c in ingestion.CLASSES} == {
        Key.INGEST_2XX_PER_S, Key.INGEST_3XX_PER_S, Key.INGEST_4XX_PER_S, Key.INGEST_5XX_PER_S}
    causes = {ingest_cause_key(c) for c in ingestion.CAUSES}
    assert causes == {k for k in Key if k.startswith("ingest_") and k not in (
        Key.INGEST_PER_S, Key.INGEST_ERROR_PCT, *(ingest_class_key(c) for c in ingestion.CLASSES))}
    assert {Key(ingestion.metric_name(m)) for m in ingestion.MISSING_PAYLOAD} == {
        Key.PREPROCESS_FAILED_EMPTY, Key.PROCESS_FAILED_EMPTY, Key.PROCESS_FAILED_RAW_EMPTY}
    with pytest.raises(ValueError):
        ingest_cause_key("no_such_cause")


# -- what rounds really produce -----------------------------------------------------------------

def _rounds() -> list[StatusReport]:
    """Two rounds (so counters give deltas and rates) over every captured output, with the
    ingestion, payloads and cleanup facts added; the healthy cluster and a broken one."""
    from sentryfab.status.checks import evaluate_host

    from .test_status_checks import answer

    i = inv()
    extra = {
        "nginx-1": ["nginx-1-ingest"],
        "worker-1": ["worker-1-payloads", "worker-1-cleanup"],
    }
    healthy = {name: name for name in ("nginx-1", "web-1", "web-2", "worker-1", "worker-2",
                                       "redis-cache-1", "redis-queue-1", "db-1", "db-2",
                                       "pgbouncer-1", "scale-1")}
    broken = {"nginx-1": "nginx-1-web2-stopped", "web-1": "web-1-web2-stopped",
              "worker-2": "worker-2-second-cron", "redis-queue-1": "redis-queue-1-backlog",
              "db-1": "db-missing-container", "db-2": "db-2-replay-paused",
              "pgbouncer-1": "pgbouncer-1-points-at-replica"}
    reports = []
    for outputs in (healthy, broken):
        prev: dict[str, dict] = {}
        for now in (1000.0, 1030.0):
            statuses = []
            for host, name in outputs.items():
                stdout = text(name)
                for added in extra.get(name, []):
                    framed = (DATA / f"{added}.out").read_text().splitlines()
                    stdout = with_section(stdout, framed[0][3:], framed[1:-1])
                st, prev[host] = evaluate_host(i, i.host(host), answer(stdout), prev.get(host),
                                               now)
                statuses.append(st)
            reports.append(StatusReport("lab", statuses, cluster.analyse(i, statuses), 0.5, now))
    # A cluster with a backup host: the repository's record, and WAL waiting on db-1.
    lab = inventory.load(DATA.parent / "lab-hosts.yaml")
    archive = (DATA / "db-1-archive.out").read_text().splitlines()
    statuses = [evaluate_host(lab, lab.host("backup-1"), answer(text("backup-1")), None,
                              1796655000.0)[0],
                evaluate_host(lab, lab.host("db-1"), answer(with_section(
                    text("db-1"), archive[0][3:], archive[1:-1])), None, 1796655000.0)[0]]
    reports.append(StatusReport("lab", statuses, cluster.analyse(lab, statuses), 0.5,
                                1796655000.0))
    return reports


def test_every_key_a_round_writes_names_or_sends_is_in_the_table():
    seen: set[str] = set()
    for report in _rounds():
        for st in report.hosts:
            for scope, metrics in st.metrics.items():
                unknown = set(metrics) - set(METRICS)
                assert not unknown, (st.host.name, scope, unknown)
                seen |= set(metrics)
            for problem in st.problems:
                assert problem.metric is None or problem.metric in LEVELLED, problem
        for problem in report.view.problems:
            assert problem.metric is None or problem.metric in LEVELLED, problem
        for line in statsd.gauge_lines(report):
            key = line.split(":", 1)[0].rsplit(".", 1)[1]
            assert key in METRICS, line
            seen.add(key)
    # ... and the table holds no key a round never writes (levels-only names aside).
    assert {k for k in Key if not METRICS[k].levels} - seen == set()


# -- no key written as a bare string where metrics are read or written ---------------------------

def _scopes(expr: ast.expr) -> bool:
    """`<anything>.metrics`: a host's metrics by scope."""
    return isinstance(expr, ast.Attribute) and expr.attr == "metrics"


def _metrics(expr: ast.expr) -> bool:
    """One scope's metrics: a name `metrics`, `<x>.metrics[scope]`, `<x>.metrics.get(scope)`."""
    if isinstance(expr, ast.Name):
        return expr.id == "metrics"
    if isinstance(expr, ast.Subscript):
        return _scopes(expr.value)
    return isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) \
        and expr.func.attr in ("get", "setdefault") and _scopes(expr.func.value)


def _text(expr: ast.expr | None) -> bool:
    return isinstance(expr, ast.Constant) and isinstance(expr.value, str)


def bare_metric_keys(source: str) -> list[str]:
    """'line N: ...' for each metric key written as a string, or scope metrics held in a name
    other than `metrics` (where this check could not follow them)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        bad = None
        if isinstance(node, ast.Subscript) and _metrics(node.value) and _text(node.slice):
            bad = node.slice
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else ""
            if name == "evaluate" and node.args and _text(node.args[0]):
                bad = node.args[0]
            elif isinstance(func, ast.Attribute) and name in ("get", "setdefault", "pop") \
                    and _metrics(func.value) and node.args and _text(node.args[0]):
                bad = node.args[0]
            bad = bad or next((kw.value for kw in node.keywords
                               if kw.arg == "metric" and _text(kw.value)), None)
        elif isinstance(node, ast.Compare) and _text(node.left) \
                and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops) \
                and any(_metrics(c) for c in node.comparators):
            bad = node.left
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None \
                and _metrics(node.value) and not isinstance(node.value, ast.Name):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if not (isinstance(target, ast.Name) and target.id == "metrics"):
                    found.append(f"line {node.lineno}: scope metrics held in "
                                 f"{ast.unparse(target)!r}, not 'metrics'")
        if bad is not None:
            found.append(f"line {bad.lineno}: metric key {bad.value!r} as a string (use Key)")
    return sorted(found, key=lambda line: int(line.split()[1].rstrip(":")))


@pytest.mark.parametrize("module", USERS)
def test_metric_keys_are_taken_from_the_table(module):
    assert bare_metric_keys((SRC / module).read_text()) == []


def test_the_key_check_finds_bare_keys():
    planted = '''
def f(st, lv):
    metrics = st.metrics.setdefault("web", {})
    metrics["processes_upp"] = 1
    x = st.metrics.get("host", {}).get("load1")
    if "queue_length" in st.metrics["redis-queue"]:
        st.add(evaluate("ssh_ms", 1, lv))
    st.add(Problem("warning", "w", metric="upstreams_drained_idle"))
    m = st.metrics.get("db", {})
'''
    assert bare_metric_keys(planted) == [
        "line 4: metric key 'processes_upp' as a string (use Key)",
        "line 5: metric key 'load1' as a string (use Key)",
        "line 6: metric key 'queue_length' as a string (use Key)",
        "line 7: metric key 'ssh_ms' as a string (use Key)",
        "line 8: metric key 'upstreams_drained_idle' as a string (use Key)",
        "line 9: scope metrics held in 'm', not 'metrics'",
    ]
