"""The deploy lock's commands (exact strings), staleness, lock_host in the inventory. Run by a
real shell in a temporary folder (release only by the holder's token, one winner of a race):
tests/cli/test_state_files_in_a_real_shell.py and tests/cli/test_lock_race.py."""

from __future__ import annotations

import pytest

from sentryfab import inventory
from sentryfab.errors import InventoryError
from sentryfab.procedures import lock


def info(token: str) -> lock.LockInfo:
    return lock.LockInfo("alice", "2026-12-05T09:00:00Z", "deploy.web", "", token, "ops-1", 4242)


def test_a_holder_whose_process_is_gone_here_is_stale():
    held = info("x")
    assert held.stale(here="ops-1", alive=lambda pid: False) == (
        "its process 4242 on ops-1 is gone: the deploy died without releasing it; "
        "`fab lock.release` frees it")
    assert held.stale(here="ops-1", alive=lambda pid: True) is None
    assert held.stale(here="laptop", alive=lambda pid: False) is None  # cannot tell from here
    old = lock.parse_info('{"who": "a", "since": "s", "action": "d", "message": "", '
                          '"token": "t", "future_field": 1}')
    assert old == lock.LockInfo("a", "s", "d", "", "t") and old.stale() is None


def test_lock_host_is_an_inventory_key_naming_a_host(write_inventory):
    base = ("sentry: {filestore: {shared: true}}\nhosts:\n"
            "  a: {address: 10.0.0.1, roles: []}\n  b: {address: 10.0.0.2, roles: []}\n")
    inv = inventory.load(write_inventory(base + "lock_host: b\n"))
    assert lock.lock_host(inv).name == "b"
    with pytest.raises(InventoryError) as e:
        inventory.load(write_inventory(base + "lock_host: c\n"))
    assert e.value.problems == ["hosts.yaml:5: lock_host: no host named 'c' (the deploy "
                                "lock's host must be one of hosts:)"]


def test_release_and_status_commands_exact():
    assert lock.release_command("tok123") == (
        "if grep -qF tok123 /var/lib/sentryfab/deploy.lock/info 2>/dev/null; "
        "then rm -rf /var/lib/sentryfab/deploy.lock; fi")
    assert lock.release_command("a b'c") == (
        "if grep -qF 'a b'\"'\"'c' /var/lib/sentryfab/deploy.lock/info 2>/dev/null; "
        "then rm -rf /var/lib/sentryfab/deploy.lock; fi")
    assert lock.status_command() == "cat /var/lib/sentryfab/deploy.lock/info 2>/dev/null; true"
    # What lock.release sent when it added the check by hand.
    assert lock.force_release_command("tok123") == \
        lock.release_command("tok123") + "; [ ! -e /var/lib/sentryfab/deploy.lock ]"


def test_lock_release_sends_the_force_release_command(write_inventory):
    sent = []

    class Out:
        exit_code = 0

    class Session:
        def run(self, cmd, **kw):
            sent.append(cmd)
            return Out()

    class Runner:
        def session(self, host):
            return Session()

    inv = inventory.load(write_inventory(
        "sentry: {filestore: {shared: true}}\nhosts:\n  a: {address: 10.0.0.1, roles: []}\n"))
    assert lock.release(Runner(), inv, info("tok123")) is True
    assert sent == [lock.force_release_command("tok123")]
