"""Ingestion in `fab status`: the commands (exact; their awk run for real on sample logs is in
tests/cli/test_status_commands_in_a_real_shell.py), classification by cause, thresholds,
severities, and what the round shows and sends."""

from __future__ import annotations

import json
import shlex

from sentryfab import inventory
from sentryfab.status import cluster, ingestion, script, statsd, thresholds
from sentryfab.status.facts import ingestion as ingest_facts
from sentryfab.status.facts.ingestion import (
    NginxIngest,
    WorkerPayloads,
)
from sentryfab.status.model import StatusReport
from sentryfab.ui import status as status_ui

from .test_status_checks import HEALTHY, check, inv, messages, text
from .test_status_script import SECRETS, TINY

# -- the commands ----------------------------------------------------------------------------

NGINX_AWK = (
    '$1 == "@rc" && NF == 2 { rc = $2; next } '
    r'{ lines++; k = split($0, q, "\""); '
    'if (k < 3 || split(q[3], f, " ") < 1 || f[1] !~ /^[0-9][0-9][0-9]$/) { junk = $0; next } '
    'requests++; split(q[2], r, " "); p = r[2]; sub(/[?].*/, "", p); '
    'if (p !~ "^/api/" || p ~ "^/api/[^/]+/crossdomain[.]xml$") next; '
    'if (p ~ "^/api/([^/]+/)?store/?$") e = "store"; '
    'else if (p ~ "^/api/[^/]+/minidump/?$") e = "minidump"; '
    'else if (p ~ "^/api/[^/]+/unreal/[^/]+/?$") e = "unreal"; '
    'else if (p ~ "^/api/[0-9]+/security/?$") e = "security"; '
    'else if (p ~ "^/api/[0-9]+/csp-report/?$") e = "csp-report"; '
    'else if (p ~ "^/api/[0-9]+/envelope/?$") e = "envelope"; '
    'else if (p ~ "^/api/[0-9]+/events/[^/]+/attachments/?$") e = "attachments"; '
    'else if (p ~ "^/api/[0-9]+/nel/?$") e = "nel"; '
    'else if (p ~ "^/api/[0-9]+/cron/") e = "cron"; '
    'else if (p ~ "^/api/[0-9]+/(integration/)?otlp/") e = "otlp"; '
    'else if (p ~ "^/api/[0-9]+/playstation/?$") e = "playstation"; '
    'else if (p ~ "^/api/[1-9][0-9]*/") e = "other"; '
    'else next; n[e " " f[1]]++ } '
    'END { print "lines", lines + 0; print "requests", requests + 0; '
    'for (x in n) print x, n[x]; print "rc", (rc == "" ? "-" : rc); '
    'if (rc != 0 && junk != "") print "error", junk }'
)
WORKER_AWK = (
    '$1 == "@rc" && NF == 3 { for (m in c) print $2, m, c[m]; split("", c); '
    'print "rc", $2, $3, n + 0; n = 0; next } { n++ } '
    '$0 ~ "(^|[^A-Za-z0-9_.])preprocess[.]failed[.]empty([^A-Za-z0-9_.]|$)" '
    '{ c["preprocess.failed.empty"]++; next } '
    '$0 ~ "(^|[^A-Za-z0-9_.])process[.]failed[.]empty([^A-Za-z0-9_.]|$)" '
    '{ c["process.failed.empty"]++; next } '
    '$0 ~ "(^|[^A-Za-z0-9_.])process[.]failed_raw[.]empty([^A-Za-z0-9_.]|$)" '
    '{ c["process.failed_raw.empty"]++; next }'
)


def test_the_nginx_command_reduces_the_last_minute_on_the_host():
    assert ingest_facts.NGINX_AWK == NGINX_AWK
    assert NginxIngest.command("sentry-nginx-1", 10) == (
        '{ timeout 10 docker logs --since 60s sentry-nginx-1 2>&1; echo "@rc $?"; } | awk '
        + shlex.quote(NGINX_AWK))


def test_the_worker_command_reads_every_container_under_one_timeout():
    assert ingest_facts.WORKER_AWK == WORKER_AWK
    assert WorkerPayloads.command(["sentry-worker-1", "sentry-worker-2"], 10) == (
        "{ timeout 10 sh -c "
        + shlex.quote('for c; do docker logs --since 60s "$c" 2>&1; echo "@rc $c $?"; done')
        + ' sh sentry-worker-1 sentry-worker-2; echo "@rc - $?"; } | awk '
        + shlex.quote(WORKER_AWK))


def test_nginx_and_worker_hosts_gather_them_in_their_one_round(write_inventory):
    i = inventory.load(write_inventory(TINY))
    host = ("loadavg", "nproc", "meminfo", "file-nr", "df", "docker")
    lb = script.build(i, i.host("lb-1"), SECRETS)
    assert lb.facts[:9] == (*host, "nginx-status", "nginx-upstreams", "nginx-changed")
    assert "nginx-ingest" in lb.facts
    # Each its own background job, like every other slow fact.
    [inner] = shlex.split(lb.command)[2:]
    assert ("{ echo '@@ nginx-ingest'; " + NginxIngest.command("sentry-nginx-1", 10)
            + """; echo "@@rc $?"; } >"$SFB_D/5" 2>&1 &\n""") in inner
    assert script.build(i, i.host("worker-1"), SECRETS).facts == (*host, "worker-payloads",
                                                                   "cron-cleanup")
    [[payloads]] = [job for job in script.jobs_for(i, i.host("worker-1"))
                    if job[0].name == "worker-payloads"]
    assert payloads.text() == (
        "echo '@@ worker-payloads'; " + WorkerPayloads.command(["sentry-worker-1"], 10)
        + '; echo "@@rc $?"')
    assert script.build(i, i.host("web-1"), SECRETS).facts == (*host, "web")


# -- classification ------------------------------------------------------------------------------

def test_cause_of_each_answer():
    cases = {
        ("store", 200): None, ("store", 202): None, ("security", 201): None,
        ("store", 301): "redirected", ("store", 400): "bad_request", ("store", 401): "bad_key",
        ("store", 403): "bad_key", ("store", 404): "other_4xx", ("store", 413): "too_large",
        ("store", 429): "rate_limited", ("store", 499): "client_gone",
        ("store", 500): "other_5xx", ("store", 502): "web_down", ("store", 503): "other_5xx",
        ("store", 504): "web_down", ("minidump", 413): "too_large",
        # An endpoint 9.1.2 lacks: whatever it answers short of a 5xx, the event is dropped.
        ("envelope", 403): "missing_endpoint", ("envelope", 404): "missing_endpoint",
        ("envelope", 302): "missing_endpoint", ("envelope", 413): "missing_endpoint",
        ("envelope", 502): "web_down", ("envelope", 200): None,
        ("other", 404): "missing_endpoint", ("cron", 405): "missing_endpoint",
    }
    assert {k: ingestion.cause_of(*k) for k in cases} == cases


# -- thresholds -------------------------------------------------------------------------------

def test_the_levels_are_in_the_table_and_can_be_overridden():
    i = inv()
    nginx = thresholds.levels(i, i.host("nginx-1"), "nginx")
    assert nginx["ingest_error_pct"] == (1, 10)
    assert nginx["ingest_missing_endpoint_per_s"] == (0, None)
    assert thresholds.levels(i, i.host("worker-1"), "worker")["payloads_missing"] == (None, 0)
    assert thresholds.severity_of(1.0, (1, 10)) == ("ok", None)
    assert thresholds.severity_of(1.01, (1, 10)) == ("warning", 1)
    assert thresholds.severity_of(10.5, (1, 10)) == ("critical", 10)
    assert thresholds.severity_of(1, (None, 0)) == ("critical", 0)
    tuned = inv(nginx="{ingest_error_pct: [5, 50]}")
    assert thresholds.levels(tuned, tuned.host("nginx-1"), "nginx")["ingest_error_pct"] == \
        (5, 50)
    thresholds.validate(tuned)


def test_rates_are_shown_unsigned():
    assert [thresholds.fmt(v, "rate") for v in (4980.4, 12.5, 2.5, 1 / 60, 0)] == [
        "4980/s", "12/s", "2.5/s", "0.02/s", "0/s"]


# -- severities, on a captured host's round with the new sections ---------------------------

def with_section(base: str, name: str, lines: list[str]) -> str:
    """A captured check-script output with one more fact before its end line."""
    head, end = base.rsplit("@@ end ", 1)
    return head + f"@@ {name}\n" + "".join(ln + "\n" for ln in lines) + "@@rc 0\n@@ end " + end


def nginx_round(*lines: str, host_text: str = "nginx-1"):
    out = with_section(text(host_text), "nginx-ingest", ["lines 900", "requests 900", *lines])
    return check(inv(), "nginx-1", out)


def test_healthy_ingestion_has_no_problem_and_every_figure():
    st = nginx_round("store 200 600", "rc 0")
    assert messages(st) == [] and st.notes == []
    m = st.metrics["nginx"]
    assert (m["ingest_per_s"], m["ingest_2xx_per_s"], m["ingest_4xx_per_s"],
            m["ingest_error_pct"]) == (10.0, 10.0, 0.0, 0.0)
    assert {k: v for k, v in m.items() if k.startswith("ingest_") and v} == {
        "ingest_per_s": 10.0, "ingest_2xx_per_s": 10.0}
    assert sorted(k for k in m if k.startswith("ingest_")) == sorted(
        ["ingest_per_s", "ingest_error_pct"] + [f"ingest_{c}_per_s" for c in
                                                ("2xx", "3xx", "4xx", "5xx", *ingestion.CAUSES)])


def test_errors_below_the_warning_level_are_a_note():
    st = nginx_round("store 200 597", "store 429 3", "rc 0")
    assert messages(st) == []
    assert st.notes == ["ingestion errors 0.50%, 3 of 600 requests in the last minute: "
                        "rate limited (429) 3"]


def test_above_1_percent_a_warning_above_10_critical_causes_listed():
    st = nginx_round("store 200 570", "store 413 18", "store 429 12", "rc 0")
    assert messages(st) == [("warning", "ingestion errors 5.0% (warning > 1.0%), 30 of 600 "
                                        "requests in the last minute: too large (413) 18, "
                                        "rate limited (429) 12")]
    st = nginx_round("store 200 480", "store 502 90", "store 504 30", "rc 0")
    assert messages(st) == [("critical", "ingestion errors 20% (critical > 10%), 120 of 600 "
                                         "requests in the last minute: web processes down "
                                         "(502/504) 120")]
    p = st.problems[0]
    assert (p.metric, p.value, p.limit, p.scope) == ("ingest_error_pct", 20.0, 10, "nginx")
    assert st.metrics["nginx"]["ingest_web_down_per_s"] == 2.0
    assert st.metrics["nginx"]["ingest_5xx_per_s"] == 2.0


def test_envelopes_are_their_own_finding_that_names_the_cause():
    st = nginx_round("store 200 597", "envelope 403 3", "rc 0")
    assert messages(st) == [
        ("warning", "3 requests to /api/<id>/envelope/ in the last minute, answered 403: "
                    "clients sending envelopes (sentry-sdk >= 0.17/2.x) to a Sentry 9.1.2 that "
                    "lacks /envelope/: those events are dropped by the client")]
    assert st.notes == ["ingestion errors 0.50%, 3 of 600 requests in the last minute: "
                        "endpoint Sentry 9.1.2 lacks 3"]
    # Many of them: the error rate is critical as well, and each lacking route is named.
    st = nginx_round("store 200 60", "envelope 403 500", "envelope 404 20",
                     "attachments 403 20", "rc 0")
    assert messages(st) == [
        ("critical", "ingestion errors 90% (critical > 10%), 540 of 600 requests in the last "
                     "minute: endpoint Sentry 9.1.2 lacks 540"),
        ("warning", "520 requests to /api/<id>/envelope/ in the last minute, answered "
                    "403 (500), 404 (20): clients sending envelopes (sentry-sdk >= 0.17/2.x) to "
                    "a Sentry 9.1.2 that lacks /envelope/: those events are dropped by the "
                    "client"),
        ("warning", "20 requests to /api/<id>/events/<event>/attachments/ in the last minute, "
                    "answered 403: clients uploading attachments to a Sentry 9.1.2 that lacks "
                    "that endpoint: the attachments are dropped by the client")]
    assert st.problems[1].metric == "ingest_missing_endpoint_per_s"


def test_too_few_requests_to_judge_a_rate():
    st = nginx_round("store 200 4", "store 413 5", "rc 0")
    assert messages(st) == []
    assert st.notes == ["ingestion errors 56%, 5 of 9 requests in the last minute: too large "
                        "(413) 5"]


def test_an_unreadable_or_partial_log_is_a_warning():
    st = nginx_round("rc 1", "error Error response from daemon: No such container: "
                     "sentry-nginx-1")
    assert messages(st) == [("warning", "cannot read nginx's log for ingestion figures: Error "
                                        "response from daemon: No such container: "
                                        "sentry-nginx-1")]
    assert "ingest_per_s" not in st.metrics["nginx"]
    st = nginx_round("store 200 100", "rc 124")
    assert messages(st) == [("warning", "reading nginx's log of the last minute was cut off "
                                        "after 10 s: ingestion figures are partial")]
    assert st.metrics["nginx"]["ingest_per_s"] == 1.667


def test_a_capture_without_the_fact_measures_nothing():
    st = check(inv(), "nginx-1", text("nginx-1"))
    assert "ingest_per_s" not in st.metrics["nginx"] and "ingestion" not in st.facts
    assert status_ui.role_figures(st, "nginx") == "4/4 upstreams, 1 conn"


def worker_round(*lines: str):
    out = with_section(text("worker-1"), "worker-payloads", list(lines))
    return check(inv(), "worker-1", out)


def test_any_missing_payload_is_critical():
    st = worker_round("rc sentry-worker-1 0 120", "rc sentry-worker-2 0 80", "rc - 0 0")
    assert messages(st) == [] and st.metrics["worker"]["payloads_missing"] == 0
    st = worker_round("sentry-worker-1 preprocess.failed.empty 2", "rc sentry-worker-1 0 120",
                      "sentry-worker-2 process.failed.empty 1", "rc sentry-worker-2 0 80",
                      "rc - 0 0")
    assert messages(st) == [
        ("critical", "payloads found missing in the last minute 3 (critical > 0): "
                     "preprocess.failed.empty 2 on sentry-worker-1, process.failed.empty 1 on "
                     "sentry-worker-2; accepted events lost: their payloads were gone from the "
                     "payload Redis when a worker came for them (evicted, or older than 60 "
                     "min)")]
    assert (st.problems[0].scope, st.problems[0].metric) == ("worker", "payloads_missing")
    m = st.metrics["worker"]
    assert (m["payloads_missing"], m["preprocess_failed_empty"], m["process_failed_empty"],
            m["process_failed_raw_empty"]) == (3, 2, 1, 0)


def test_a_partial_worker_read_warns_and_an_unreadable_container_is_a_note():
    st = worker_round("rc sentry-worker-1 0 120", "- process.failed.empty 1", "rc - 124 7")
    assert messages(st) == [
        ("warning", "reading the worker logs of the last minute was cut off after 10 s: the "
                    "count of missing payloads is partial"),
        ("critical", "payloads found missing in the last minute 1 (critical > 0): "
                     "process.failed.empty 1 on a worker (read cut off); accepted events lost: "
                     "their payloads were gone from the payload Redis when a worker came for "
                     "them (evicted, or older than 60 min)")]
    st = worker_round("rc sentry-worker-1 0 120", "rc sentry-worker-2 1 1", "rc - 0 0")
    assert messages(st) == []
    assert st.notes == ["could not read sentry-worker-2's log (docker logs exit code 1)"]


# -- what the round shows and sends ---------------------------------------------------------------

def _report() -> StatusReport:
    i = inv()
    nginx = with_section(text("nginx-1"), "nginx-ingest", [
        "lines 3000", "requests 3000", "store 200 2940", "store 413 30", "envelope 403 30",
        "rc 0"])
    worker = with_section(text("worker-1"), "worker-payloads", [
        "sentry-worker-2 preprocess.failed.empty 4", "rc sentry-worker-1 0 10",
        "rc sentry-worker-2 0 12", "rc - 0 0"])
    outputs = {**{h: text(n) for h, n in HEALTHY.items()}, "nginx-1": nginx,
               "worker-1": worker}
    statuses = [check(i, h, out) for h, out in outputs.items()]
    return StatusReport("lab", statuses, cluster.analyse(i, statuses), 0.5, 1000.0)


def test_the_overview_the_summary_json_and_statsd():
    report = _report()
    hosts = {h.host.name: h for h in report.hosts}
    assert status_ui.role_figures(hosts["nginx-1"], "nginx") == (
        "4/4 upstreams, 1 conn, ingest 50/s, 2.0% errors")
    assert status_ui.role_figures(hosts["worker-1"], "worker") == (
        "2/2 up, v1, 4 payloads missing")
    assert status_ui.summary(report).plain == (
        "lab: 11 hosts, 9 ok, 1 warning, 1 critical; primary db-1; 1 cron (worker-1); queue 0; "
        "ingest 50/s (2.0% errors); 4 payloads missing; CRITICAL in 0.50 s")
    assert [p.severity for p in hosts["nginx-1"].problems] == ["warning", "warning"]
    rec = report.as_record()
    found = rec["cluster_findings"]
    assert (found["ingest_per_s"], found["ingest_error_pct"], found["payloads_missing"]) == \
        (50.0, 2.0, 4)
    [n] = [h for h in rec["hosts"] if h["host"] == "nginx-1"]
    assert (n["metrics"]["nginx"]["ingest_error_pct"],
            n["metrics"]["nginx"]["ingest_missing_endpoint_per_s"],
            n["metrics"]["nginx"]["ingest_too_large_per_s"]) == (2.0, 0.5, 0.5)
    assert [p["metric"] for p in n["problems"]] == ["ingest_error_pct",
                                                    "ingest_missing_endpoint_per_s"]
    # fab nginx.status --json / worker.status --json: the parsed facts as well.
    from sentryfab.ui.status_roles import facts_record

    details = json.loads(json.dumps(facts_record(hosts["nginx-1"])))
    assert details["ingest"]["counts"] == {"store": {"200": 2940, "413": 30},
                                           "envelope": {"403": 30}}
    assert details["ingestion"]["lacking"] == {"envelope": {"403": 30}}
    details = json.loads(json.dumps(facts_record(hosts["worker-1"])))
    assert details["payloads"]["counts"] == {"sentry-worker-2": {"preprocess.failed.empty": 4}}
    lines = statsd.gauge_lines(report)
    for line in ["sentryfab.nginx.nginx-1.ingest_per_s:50|g",
                 "sentryfab.nginx.nginx-1.ingest_error_pct:2|g",
                 "sentryfab.nginx.nginx-1.ingest_4xx_per_s:1|g",
                 "sentryfab.nginx.nginx-1.ingest_missing_endpoint_per_s:0.5|g",
                 "sentryfab.worker.worker-1.payloads_missing:4|g",
                 "sentryfab.worker.worker-1.preprocess_failed_empty:4|g",
                 "sentryfab.cluster.lab.ingest_per_s:50|g",
                 "sentryfab.cluster.lab.ingest_error_pct:2|g",
                 "sentryfab.cluster.lab.payloads_missing:4|g"]:
        assert line in lines, line


def test_the_nginx_and_worker_views():
    from rich.console import Console

    from sentryfab.ui import status_roles

    def shown(word: str) -> list[str]:
        console = Console(width=200, record=True)
        console.print(status_roles.detail(_report(), word))
        return [" ".join(ln.split()) for ln in console.export_text().splitlines()]

    nginx = shown("nginx")
    for row in ["ingestion (last minute) 50/s, 2.0% errors",
                "nginx-1 /api/<id>/store/ has it 50/s 2940 0 30 0 200: 2940, 413: 30",
                "/api/<id>/envelope/ lacks it 0.50/s 0 0 30 0 403: 30",
                "nginx-1 endpoint Sentry 9.1.2 lacks 30 0.50/s", "too large (413) 30 0.50/s"]:
        assert row in nginx, row
    worker = shown("worker")
    table = worker[:worker.index("worker: containers")]
    assert table[-3:-1] == ["worker-1 sentry-worker-1 0 0 0", "sentry-worker-2 4 0 0"]
    assert table[2] == ("host container preprocess.failed.empty process.failed.empty "
                        "process.failed_raw.empty")
