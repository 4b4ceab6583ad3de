"""The connection holder's pure parts: frames, its folder, and which connection a request
may reuse (held_wire.py); `persist:` in the inventory; what conn.status prints."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentryfab import inventory
from sentryfab.inventory import DEFAULT_PERSIST, parse_duration
from sentryfab.remote import held_wire as wire
from sentryfab.remote.connect import ConnectOptions
from sentryfab.ui.conn import held_lines

INVENTORY = """\
cluster: t
ssh:
  user: deploy
  key_file: id_test
  known_hosts: known
{persist}
hosts:
  web-1: {{address: 10.0.0.1, roles: []}}
  web-2: {{address: 10.0.0.2, port: 2222, user: ops, roles: []}}
"""


def _inv(write_inventory, persist: str = ""):
    return inventory.load(write_inventory(INVENTORY.format(persist=persist)))


# -- frames ----------------------------------------------------------------------------------

def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def test_a_frame_is_its_length_its_kind_and_its_payload():
    assert wire.frame(wire.OUT, b"hi\n") == b"\x00\x00\x00\x03Ohi\n"
    assert wire.json_frame(wire.DONE, {"exit_code": 0}) == b'\x00\x00\x00\x0fD{"exit_code":0}'


@given(st.lists(st.tuples(st.sampled_from([wire.OUT, wire.ERR, wire.EXEC, wire.STDIN]),
                          st.binary(max_size=70000)), max_size=6))
def test_frames_read_back_as_sent_whatever_the_pieces(frames):
    a, b = _pair()
    with a, b:
        blob = b"".join(wire.frame(k, p) for k, p in frames)
        reader = wire.FrameReader(b)
        a.setblocking(True)
        got = []
        import threading

        t = threading.Thread(target=lambda: (a.sendall(blob), a.shutdown(socket.SHUT_WR)))
        t.start()
        while (item := reader.read()) is not None:
            got.append(item)
        t.join()
        assert got == list(frames)


def test_a_stream_cut_inside_a_frame_is_an_error_not_a_clean_end():
    a, b = _pair()
    with a, b:
        a.sendall(wire.frame(wire.OUT, b"abcdef")[:7])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(EOFError, match="inside a frame"):
            wire.FrameReader(b).read()


def test_a_huge_length_is_refused_as_not_a_holder():
    a, b = _pair()
    with a, b:
        a.sendall(b"\xff\xff\xff\xffO")
        with pytest.raises(wire.HeldError, match="not a sentryfab connection holder"):
            wire.FrameReader(b).read()


# -- the folder ------------------------------------------------------------------------------

def test_the_folder_is_the_env_s_then_the_runtime_dir_s_then_tmp(tmp_path):
    assert wire.conn_dir({"SENTRYFAB_CONN_DIR": "/x/y"}, 5) == Path("/x/y")
    assert wire.conn_dir({"XDG_RUNTIME_DIR": str(tmp_path)}, 5) == tmp_path / "sentryfab"
    assert wire.conn_dir({"XDG_RUNTIME_DIR": "/nonexistent"}, 5) == Path("/tmp/sentryfab-5")
    assert wire.conn_dir({}, 1000) == Path("/tmp/sentryfab-1000")


def test_the_folder_is_made_0700(tmp_path):
    made = wire.safe_dir(tmp_path / "a" / "conn")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_a_folder_others_can_open_is_refused_naming_its_mode(tmp_path):
    d = tmp_path / "conn"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    with pytest.raises(wire.HeldError, match=r"conn is open to others \(mode 0755, 0700"):
        wire.safe_dir(d)


def test_a_symlink_in_place_of_the_folder_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "conn").symlink_to(real)
    with pytest.raises(wire.HeldError, match="is not a folder"):
        wire.safe_dir(tmp_path / "conn")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_a_folder_of_another_user_is_refused(tmp_path):
    d = tmp_path / "conn"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(wire.HeldError, match="belongs to uid 65534, not to you"):
        wire.safe_dir(d)


def test_the_socket_name_changes_with_the_code_and_fits_a_unix_socket_path():
    a, b = wire.socket_name("/src\0a.py:1"), wire.socket_name("/src\0a.py:2")
    assert a != b and a.startswith("held-") and a.endswith(".sock") and len(a) == 20
    assert len(str(Path("/tmp/sentryfab-4294967295") / a)) < 107


def test_the_peer_of_a_unix_socket_is_this_user():
    a, b = _pair()
    with a, b:
        assert wire.peer_uid(a) == os.getuid()


# -- which connection a request may reuse ----------------------------------------------------

def test_a_spec_carries_what_opening_the_host_needs_and_reads_back(write_inventory):
    inv = _inv(write_inventory)
    opts = ConnectOptions(connect_timeout=3.0, accept_new=True)
    spec = wire.host_spec(inv, inv.host("web-2"), opts)
    back_inv, host, back_opts = wire.from_spec(spec)
    assert back_inv.ssh == inv.ssh and back_opts == opts
    assert (host.name, host.address, host.port, host.user) == ("web-2", "10.0.0.2", 2222, "ops")
    assert wire.destination(spec) == "ops@10.0.0.2:2222"
    assert wire.destination(wire.host_spec(inv, inv.host("web-1"), opts)) == "deploy@10.0.0.1:22"


def test_the_identity_follows_the_host_the_options_and_the_files(write_inventory):
    inv = _inv(write_inventory)
    opts = ConnectOptions()
    spec = wire.host_spec(inv, inv.host("web-1"), opts)
    first = wire.identity(spec)
    assert wire.identity(wire.host_spec(inv, inv.host("web-1"), opts)) == first
    assert wire.identity(wire.host_spec(inv, inv.host("web-2"), opts)) != first
    assert wire.identity(wire.host_spec(inv, inv.host("web-1"),
                                        ConnectOptions(connect_timeout=3))) != first
    known = inv.ssh.known_hosts
    known.write_text("10.0.0.1 ssh-ed25519 AAAA\n")
    assert wire.identity(spec) != first  # a known_hosts file appeared
    written = wire.identity(spec)
    known.write_text("10.0.0.1 ssh-ed25519 AAAB\n")
    assert wire.identity(spec) != written  # ... and was changed
    inv.ssh.key_file.write_text("key")
    assert wire.identity(spec) not in (first, written)  # the key file too


def test_the_watched_files_are_the_key_every_known_hosts_and_the_ssh_configs(write_inventory):
    inv = _inv(write_inventory)
    files = [str(p) for p in wire.watched_files(inv.ssh)]
    assert files == [str(inv.ssh.key_file), "/etc/ssh/ssh_known_hosts",
                     str(Path("~/.ssh/known_hosts").expanduser()), str(inv.ssh.known_hosts),
                     str(Path("~/.ssh/config").expanduser()), "/etc/ssh/ssh_config"]


# -- persist: in the inventory ---------------------------------------------------------------

@pytest.mark.parametrize(("raw", "seconds"), [
    ("10m", 600.0), ("90s", 90.0), ("1h", 3600.0), ("0", 0.0), (0, 0.0), (45, 45.0),
    ("1.5m", 90.0), ("2 M", 120.0)])
def test_durations(raw, seconds):
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["-1", -5, "ten", True, "10d", ""])
def test_bad_durations(raw):
    assert parse_duration(raw) is None


def test_persist_defaults_to_ten_minutes_and_reads_the_ssh_block(write_inventory):
    assert _inv(write_inventory).ssh.persist == DEFAULT_PERSIST == 600.0
    assert _inv(write_inventory, "  persist: 90s").ssh.persist == 90.0
    assert _inv(write_inventory, "  persist: 0").ssh.persist == 0.0


def test_a_bad_persist_names_the_key_and_what_is_wanted(write_inventory):
    with pytest.raises(inventory.InventoryError) as e:
        _inv(write_inventory, "  persist: soon")
    assert any("ssh/persist: must be a duration such as 10m, 90s, 1h or 0 (off), got 'soon'"
               in p for p in e.value.problems), e.value.problems


def test_no_persist_in_the_environment_turns_holding_off(write_inventory, monkeypatch):
    from sentryfab.remote.held_client import persist_seconds

    inv = _inv(write_inventory, "  persist: 5m")
    assert persist_seconds(inv) == 300.0 and persist_seconds(inv, 7) == 7
    monkeypatch.setenv("SENTRYFAB_NO_PERSIST", "1")
    assert persist_seconds(inv) == 0.0


# -- what conn.status prints -----------------------------------------------------------------

def test_held_lines_say_how_long_each_connection_is_open_idle_and_left():
    reply = {"held": [
        {"host": "web-2", "destination": "deploy@10.0.0.2:22", "opened": 900.0, "idle": 30.0,
         "persist": 600.0, "closes_in": 570.0, "in_use": 0, "commands": 12, "reopened": 1,
         "alive": True},
        {"host": "db-1", "destination": "deploy@10.0.0.9:22", "opened": 990.0, "idle": 0.0,
         "persist": 600.0, "closes_in": None, "in_use": 2, "commands": 3, "reopened": 0,
         "alive": False}]}
    assert held_lines(reply, 1000.0) == [
        ["db-1", "deploy@10.0.0.9:22", "10 s", "0 s", "in use (dead: reopened at next use)",
         "3", "0"],
        ["web-2", "deploy@10.0.0.2:22", "100 s", "30 s", "9 min 30 s", "12", "1"]]


def test_every_task_takes_no_persist_with_its_help():
    from sentryfab.tasks import _every_task, ns

    for t in _every_task(ns):
        [arg] = [a for a in t.get_arguments() if a.name == "no_persist"]
        assert arg.kind is bool and arg.default is False, t.name
        assert arg.help.startswith("connect directly and close the connections"), t.name


def test_no_persist_sets_the_switch_the_runner_reads(monkeypatch):
    from sentryfab.tasks._common import handled

    monkeypatch.delenv("SENTRYFAB_NO_PERSIST", raising=False)
    seen = []

    @handled
    def body(c, x=1):
        seen.append((x, os.environ.get("SENTRYFAB_NO_PERSIST")))

    body(None, x=2)
    body(None, x=3, no_persist=True)
    assert seen == [(2, None), (3, "1")]
