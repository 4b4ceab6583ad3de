"""Capacity on the lab: real host facts, and a preflight that refuses an overcommitting scale."""

from __future__ import annotations

import json

from sentryfab import inventory
from sentryfab.procedures.capacity import host_facts
from sentryfab.remote import Runner

from .conftest import LAB_INVENTORY, fab


def test_capacity_reads_real_host_facts(lab):
    inv = inventory.load(LAB_INVENTORY)
    with Runner(inv) as r:
        facts = host_facts(r, inv)
    meminfo = int(open("/proc/meminfo").read().split()[1]) * 1024
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    for name, f in facts.items():
        assert f.source == "ssh", name
        assert f.ram == meminfo  # namespaces share the machine's memory
        assert f.somaxconn == somaxconn or f.somaxconn > 0  # per network namespace
        assert f.nofile >= 1024
    proc = fab("capacity", "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == (1 if data["over"] else 0)
    assert data["first_to_run_out"]


def test_preflight_refuses_a_scale_that_overcommits_and_changes_nothing(lab):
    before = LAB_INVENTORY.read_text()
    count = "docker ps -q --filter label=sentryfab.role=web | wc -l"
    ps = fab("run", "--roles=web", "--json", count)
    proc = fab("web.scale", "--processes=400")
    assert proc.returncode == 1
    assert "web.scale --processes 400 would overcommit: " in proc.stderr.replace("\n", " ")
    assert "pgbouncer-1 clients" in proc.stderr.replace("\n", " ")
    assert LAB_INVENTORY.read_text() == before
    after = fab("run", "--roles=web", "--json", count)
    assert [r["stdout"] for r in json.loads(after.stdout)] == \
        [r["stdout"] for r in json.loads(ps.stdout)]
