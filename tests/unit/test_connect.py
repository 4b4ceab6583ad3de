"""Building Fabric connections while others open: the shared config must stay whole."""

from __future__ import annotations

from pathlib import Path

from fabric import Config, Connection

from sentryfab import inventory
from sentryfab.remote import connect
from sentryfab.remote.hostkeys import KnownHosts

REFERENCE = Path(__file__).resolve().parents[2] / "hosts.yaml"


def _read(readers_of: list[Connection], errors: list[str]) -> None:
    """What Connection.open() reads from the shared config."""
    for conn in readers_of:
        try:
            assert conn.authentication.strategy_class is None
            assert conn.config.timeouts.connect is None
            assert conn.config.user == "deploy"
        except Exception as e:  # noqa: BLE001 - every failure is the finding
            errors.append(repr(e))


def _readers_in_every_gap(config: Config, readers_of: list[Connection]) -> list[str]:
    """From now on each re-merge of `config` runs the readers at its worst moment for them:
    Config.merge() starts from an empty config, and a thread reading right then (another
    connection's open()) finds nothing. The race, without threads or luck: what they would
    have seen is returned, as it fills."""
    errors: list[str] = []
    merge = config.merge

    def merge_with_readers_in_the_gap() -> None:
        config._set(_config={})  # noqa: SLF001 - what merge() does first
        _read(readers_of, errors)
        merge()

    object.__setattr__(config, "merge", merge_with_readers_in_the_gap)
    return errors


def _set_up() -> tuple[inventory.Inventory, Config, list[Connection]]:
    inv = inventory.load(REFERENCE)
    config = connect.fabric_config(inv)
    readers_of = [connect.build(inv, h, config, connect.ConnectOptions(), KnownHosts([]))
                  for h in inv.hosts[:4]]
    return inv, config, readers_of


def test_building_connections_never_empties_the_config_others_read():
    """Fabric's Connection writes `inline_ssh_env` into the config it is given, which makes
    the shared config clear and re-merge itself; a thread opening another connection then
    read an empty config ("No attribute or config key found for 'authentication'", seen
    in a benchmark run). Builders and readers at once, as Runner.each does: every moment a
    build empties the config is shown to the readers."""
    inv, config, readers_of = _set_up()
    errors = _readers_in_every_gap(config, readers_of)
    for _ in range(2):
        for h in inv.hosts:
            connect.build(inv, h, config, connect.ConnectOptions(), KnownHosts([]))
    _read(readers_of, errors)
    assert errors == []


def test_the_readers_see_the_gap_when_a_build_writes_into_the_config():
    """The check above can fail: Fabric's own Connection, built on the same shared config,
    empties it under the readers (the race as it was)."""
    inv, config, readers_of = _set_up()
    errors = _readers_in_every_gap(config, readers_of)
    Connection(host=inv.hosts[0].address, config=config)
    assert errors and all("authentication" in e or "No attribute" in e for e in errors), errors


def test_building_a_connection_writes_nothing_into_the_shared_config():
    """The cause of the race above, checked directly: no write, so no re-merge."""
    inv = inventory.load(REFERENCE)
    config = connect.fabric_config(inv)
    before = dict(config._modifications)  # noqa: SLF001 - the state the race came from
    conn = connect.build(inv, inv.hosts[0], config, connect.ConnectOptions(), KnownHosts([]))
    assert dict(config._modifications) == before  # noqa: SLF001
    assert conn.inline_ssh_env is True and conn.user == "deploy"
