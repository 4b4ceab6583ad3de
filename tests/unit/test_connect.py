"""Building Fabric connections while others open: the shared config must stay whole."""

from __future__ import annotations

import threading
from pathlib import Path

from sentryfab import inventory
from sentryfab.remote import connect
from sentryfab.remote.hostkeys import KnownHosts

REFERENCE = Path(__file__).resolve().parents[2] / "hosts.yaml"


def test_building_connections_never_empties_the_config_others_read():
    """Fabric's Connection writes `inline_ssh_env` into the config it is given, which makes
    the shared config clear and re-merge itself; a thread opening another connection then
    read an empty config ("No attribute or config key found for 'authentication'", seen
    in a benchmark run). Builders and readers at once, as Runner.each does."""
    inv = inventory.load(REFERENCE)
    config = connect.fabric_config(inv)
    known = KnownHosts([])
    opts = connect.ConnectOptions()
    hosts = inv.hosts
    readers_of = [connect.build(inv, h, config, opts, known) for h in hosts[:4]]
    errors: list[str] = []
    done = threading.Event()

    def read() -> None:  # what Connection.open() reads from the shared config
        while not done.is_set():
            for c in readers_of:
                try:
                    assert c.authentication.strategy_class is None
                    assert c.config.timeouts.connect is None
                    assert c.config.user == "deploy"
                except Exception as e:  # noqa: BLE001 - every failure is the finding
                    errors.append(repr(e))

    def build() -> None:
        for _ in range(6):
            for h in hosts:
                connect.build(inv, h, config, opts, known)

    readers = [threading.Thread(target=read) for _ in range(2)]
    builders = [threading.Thread(target=build) for _ in range(2)]
    for t in readers + builders:
        t.start()
    for t in builders:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert errors == []


def test_building_a_connection_writes_nothing_into_the_shared_config():
    """The cause of the race above, checked directly: no write, so no re-merge."""
    inv = inventory.load(REFERENCE)
    config = connect.fabric_config(inv)
    before = dict(config._modifications)  # noqa: SLF001 - the state the race came from
    conn = connect.build(inv, inv.hosts[0], config, connect.ConnectOptions(), KnownHosts([]))
    assert dict(config._modifications) == before  # noqa: SLF001
    assert conn.inline_ssh_env is True and conn.user == "deploy"
