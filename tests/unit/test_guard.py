"""The guard's pure parts: undo order and failures, and the socket options that bound how
long a host that stopped answering can hold a command."""

from __future__ import annotations

import socket

from sentryfab.errors import SentryfabError
from sentryfab.procedures.guard import Change
from sentryfab.remote.connect import ConnectOptions, tcp_liveness


def change() -> Change:
    return Change(runner=None, inv=None, action="deploy", message="", hosts=[])  # type: ignore[arg-type]


def test_undo_runs_newest_first_skips_what_was_put_back_and_reports_failures():
    c = change()
    ran = []
    c.on_interrupt("first", lambda: ran.append("first") or "first undone")
    done = c.on_interrupt("second", lambda: ran.append("second") or "second undone")

    def broken() -> str:
        raise SentryfabError("nginx-1 unreachable")

    c.on_interrupt("third", broken)
    done()  # the procedure put this one back itself
    assert c.undo() == ["third: FAILED: nginx-1 unreachable", "first undone"]
    assert ran == ["first"]
    assert c.undo() == []  # each runs once


def test_at_and_touch_keep_the_step_and_the_hosts_once():
    from sentryfab.inventory import Host

    c = change()
    c.at("web batch 1/2 (web-1)")
    c.touch([Host("web-1", "10.0.0.1"), Host("web-1", "10.0.0.1"), Host("web-2", "10.0.0.2")])
    assert c.step == "web batch 1/2 (web-1)" and list(c.touched) == ["web-1", "web-2"]


def test_a_dead_peer_is_bounded_by_the_keepalive_settings():
    opts = ConnectOptions(keepalive_interval=5, keepalive_count_max=3)
    assert opts.dead_after == 15
    got = dict(tcp_liveness(opts.dead_after))
    assert got[socket.TCP_USER_TIMEOUT] == 15_000
    assert got[socket.TCP_KEEPIDLE] == 5 and got[socket.TCP_KEEPINTVL] == 5
    assert got[socket.TCP_KEEPCNT] == 3
