"""capacity.probe's pure parts: CPU accounting and metrics as fractions of their limits."""

from __future__ import annotations

from sentryfab.procedures.probe import ProbeReport, Step, fractions, parse_cpu


def test_parse_cpu_counts_idle_and_iowait_as_not_busy():
    assert parse_cpu("cpu  100 0 50 800 50 0 0 0 0 0") == (150, 1000)


def test_fractions_of_limits():
    raw = {"web_cpu": 0.95, "pgbouncer_cl_waiting": 3, "pg_connections": 30,
           "pg_max_connections": 200, "redis_queue_clients": 50, "redis_queue_maxclients": 100,
           "redis_queue_used_memory": 10, "redis_queue_maxmemory": 100, "queue_length": 150}
    assert fractions(raw, queue_before=50, sent=1000) == {
        "web CPU": 0.95, "pgbouncer waiting": 1.0, "pg connections": 0.15,
        "queue clients": 0.5, "queue memory": 0.1, "queue growth": 1.0}


def test_sustained_and_breaking_point():
    r = ProbeReport(steps=[Step(100, 1000, 1000, 0, 20, 99.5), Step(200, 2000, 1990, 10, 30, 199),
                           Step(400, 4000, 2500, 1500, 3000, 250, ok=False)])
    assert (r.sustained, r.breaking_point) == (199, 400)
