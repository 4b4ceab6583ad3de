"""The connection holder's own process on this machine (no SSH host needed): one holder
however many commands race to start it, status and close over its socket, it exits when
told or when idle, and it keeps no file of the command that started it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sentryfab.remote import held_client
from sentryfab.remote import held_wire as wire

REPO = Path(__file__).resolve().parents[2]

START = """
import sys
sys.path.insert(0, {src!r})
from pathlib import Path
from sentryfab.remote import held_client, held_wire as wire
folder = wire.safe_dir(Path(sys.argv[1]))
held_client.connect_or_start(wire.holder_socket(folder)).close()
print(held_client.status(folder)["pid"])
"""


@pytest.fixture
def folder():
    d = Path(tempfile.mkdtemp(prefix="sfh-", dir="/tmp"))
    d.chmod(0o700)
    yield d
    held_client.close_every_holder(d)
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def _start(folder: Path, n: int) -> list[subprocess.Popen]:
    code = START.format(src=str(REPO / "src"))
    return [subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(n)]


def test_commands_racing_to_start_it_start_one_holder_and_do_not_wait_for_it(folder):
    procs = _start(folder, 6)
    outs = [p.communicate(timeout=60) for p in procs]  # returns: the holder kept no pipe
    assert all(p.returncode == 0 for p in procs), outs
    pids = {out.strip() for out, _ in outs}
    assert len(pids) == 1, outs
    [pid] = pids
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "sentryfab-held"
    fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert not any(f.startswith("pipe:") for f in fds), fds  # none of a command's pipes
    assert [p.name for p in folder.glob("held-*.sock")] == [wire.socket_name(wire.source_stamp())]
    assert oct(next(folder.glob("held-*.sock")).stat().st_mode & 0o777) == "0o600"


def test_close_stops_it_and_a_stale_socket_is_replaced(folder):
    [p] = _start(folder, 1)
    pid = int(p.communicate(timeout=60)[0])
    reply = held_client.close_all(folder)
    assert reply["closed"] == 0 and reply["pid"] == pid
    assert held_client.wait_gone(folder)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert held_client.status(folder) is None
    # Its socket file is left behind: the next command starts a new holder in its place.
    [p] = _start(folder, 1)
    assert int(p.communicate(timeout=60)[0]) != pid


def test_with_nothing_held_it_exits_by_itself(folder):
    [p] = _start(folder, 1)
    pid = int(p.communicate(timeout=60)[0])
    deadline = time.monotonic() + 15  # LINGER (5 s) after its last client
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists()


def test_conn_status_and_close_say_when_no_holder_runs(folder):
    env = {**os.environ, "SENTRYFAB_CONN_DIR": str(folder)}
    fab = str(Path(sys.executable).parent / "fab")
    for task in ("conn.status", "conn.close"):
        out = subprocess.run([fab, task], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and "no connection held" in out.stdout, out
    shown = subprocess.run([fab, "conn.status", "--json"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert json.loads(shown.stdout) == {"held": []}


def test_an_unsafe_folder_means_direct_connections_with_a_warning(tmp_path, capsys):
    from sentryfab import inventory
    from sentryfab.remote.connect import ConnectOptions

    d = tmp_path / "open"
    d.mkdir(mode=0o777)
    d.chmod(0o777)
    inv_file = tmp_path / "hosts.yaml"
    inv_file.write_text("cluster: t\nssh: {user: root}\nhosts:\n  a: {address: 10.0.0.1}\n")
    inv = inventory.load(inv_file)
    os.environ["SENTRYFAB_CONN_DIR"] = str(d)
    try:
        assert held_client.holder(inv, ConnectOptions()) is None
    finally:
        del os.environ["SENTRYFAB_CONN_DIR"]
    err = capsys.readouterr().err
    assert "warning: connections are not held for later commands" in err
    assert "is open to others (mode 0777, 0700 wanted)" in err
