"""Connections held between commands (issue 16): reused, reopened after an sshd restart,
refused after a host-key change, invalidated by a known_hosts edit, closed when idle or
asked, Ctrl-C and output as a direct connection gives, and no other user let in."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from .conftest import FAB, LAB_INVENTORY, REPO, fab

HOST = "scale-6"


@pytest.fixture
def conn_dir():
    """A holder of the test's own (short path: a Unix socket's is at most 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="sfh-", dir="/tmp"))
    d.chmod(0o700)
    yield d
    fab("conn.close", env={"SENTRYFAB_CONN_DIR": str(d)})
    shutil.rmtree(d, ignore_errors=True)


def held(conn_dir: Path, *args: str, inv: Path | None = None, timeout: float = 120,
         env: dict | None = None) -> subprocess.CompletedProcess:
    return fab(*args, env={"SENTRYFAB_CONN_DIR": str(conn_dir), **(env or {})}, inv=inv,
               timeout=timeout)


def status(conn_dir: Path) -> dict:
    proc = held(conn_dir, "conn.status", "--json")
    assert proc.returncode == 0, proc.stderr
    return {h["host"]: h for h in json.loads(proc.stdout)["held"]}


def records(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    assert proc.stdout, proc.stderr
    return {r["host"]: r for r in json.loads(proc.stdout)}


def client_port(proc: subprocess.CompletedProcess, host: str = HOST) -> str:
    r = records(proc)[host]
    assert r["status"] == "ok", r
    return r["stdout"].split()[1]  # $SSH_CLIENT: address, client port, server port


def isolated(tmp_path: Path, persist: str | None = None) -> Path:
    """A copy of the lab inventory with its own known_hosts (and persist:)."""
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    kh = tmp_path / "known_hosts"
    kh.write_text((LAB_INVENTORY.parent / "known_hosts").read_text())
    data["ssh"]["known_hosts"] = str(kh)
    data["ssh"]["key_file"] = str(LAB_INVENTORY.parent / data["ssh"]["key_file"])
    if persist is not None:
        data["ssh"]["persist"] = persist
    inv = tmp_path / "hosts.yaml"
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def lab_host_paths(name: str):
    """Where the lab keeps one host's files (its sshd host key among them)."""
    from sentryfab.lab import topology

    return next(h for h in topology.lab_hosts(topology.MAX_SCALE_HOSTS) if h.name == name).paths


def restart_sshd(name: str) -> None:
    """Every process of the host (its sshd and each session's) killed, sshd started again:
    what a reboot does to the connections."""
    from sentryfab.lab import lab as lab_mod

    pids = subprocess.run(["ip", "netns", "pids", f"sfblab-{name}"], capture_output=True,
                          text=True, check=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.3)
    report = lab_mod.start_host(name)
    assert "started sshd" in report.actions, report


def test_the_next_command_reuses_the_connection_the_first_one_opened(lab, conn_dir):
    first = held(conn_dir, "run", f"--hosts={HOST}", "--json", "echo $SSH_CLIENT")
    second = held(conn_dir, "run", f"--hosts={HOST}", "--json", "echo $SSH_CLIENT")
    assert client_port(first) == client_port(second)  # one TCP connection for both
    s = status(conn_dir)[HOST]
    assert s["commands"] == 2 and s["reopened"] == 0 and s["alive"]
    assert s["destination"] == f"root@{lab.host(HOST).address}:22"
    assert 590 <= s["closes_in"] <= 600  # the lab inventory says nothing: 10 minutes
    shown = held(conn_dir, "conn.status").stdout
    assert "1 held connection (holder pid" in shown and HOST in shown


def test_no_persist_connects_directly_and_holds_nothing(lab, conn_dir):
    a = held(conn_dir, "run", "--no-persist", f"--hosts={HOST}", "--json", "echo $SSH_CLIENT")
    b = held(conn_dir, "run", "--no-persist", f"--hosts={HOST}", "--json", "echo $SSH_CLIENT")
    assert client_port(a) != client_port(b)
    assert not list(conn_dir.glob("held-*.sock"))
    assert "no connection held" in held(conn_dir, "conn.status").stdout


def test_a_host_whose_sshd_restarted_is_reopened_transparently(lab, conn_dir):
    before = client_port(held(conn_dir, "run", f"--hosts={HOST}", "--json", "echo $SSH_CLIENT"))
    restart_sshd(HOST)
    proc = held(conn_dir, "run", f"--hosts={HOST},scale-7", "--json", "echo $SSH_CLIENT")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert client_port(proc) != before
    assert "closed" not in proc.stderr and "warning" not in proc.stderr


def test_a_host_whose_key_changed_between_two_commands_is_refused(lab, conn_dir, tmp_path):
    inv = isolated(tmp_path)
    target = lab.host(HOST)
    key = lab_host_paths(HOST).hostkey
    saved = {p: p.read_bytes() for p in (key, key.with_name("hostkey.pub"))}
    assert held(conn_dir, "run", f"--hosts={HOST}", "true", inv=inv).returncode == 0
    try:
        key.unlink()
        key.with_name("hostkey.pub").unlink()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        restart_sshd(HOST)  # the host came back reinstalled, or someone is in the middle
        proc = held(conn_dir, "run", f"--hosts={HOST}", "--json", "true", inv=inv)
    finally:
        for p, data in saved.items():
            p.write_bytes(data)
        restart_sshd(HOST)
    assert proc.returncode == 1
    r = records(proc)[HOST]
    assert r["status"] == "unreachable"
    assert r["error"].startswith(f"HOST KEY CHANGED for {target.address}")
    direct = held(conn_dir, "run", "--no-persist", f"--hosts={HOST}", "--json", "true", inv=inv)
    assert direct.returncode == 0  # the old key is back: the same file lets it in again


def test_an_edited_known_hosts_file_invalidates_the_held_connection(lab, conn_dir, tmp_path):
    inv = isolated(tmp_path)
    target = lab.host(HOST)
    assert held(conn_dir, "run", f"--hosts={HOST}", "true", inv=inv).returncode == 0
    forged = tmp_path / "forged"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(forged)],
                   check=True)
    kind, b64 = forged.with_suffix(".pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"{target.address} {kind} {b64}\n")
    proc = held(conn_dir, "run", f"--hosts={HOST}", "--json", "true", inv=inv)
    r = records(proc)[HOST]
    assert r["status"] == "unreachable" and r["error"].startswith("HOST KEY CHANGED")
    assert HOST not in status(conn_dir)  # the old connection was closed, not kept


def test_idle_connections_close_after_persist_and_then_the_holder_exits(lab, conn_dir,
                                                                         tmp_path):
    inv = isolated(tmp_path, persist="2s")
    assert held(conn_dir, "run", f"--hosts={HOST},scale-7", "true", inv=inv).returncode == 0
    s = status(conn_dir)
    assert set(s) == {HOST, "scale-7"} and all(h["persist"] == 2 for h in s.values())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and list(conn_dir.glob("held-*.sock")):
        reply = held(conn_dir, "conn.status", "--json")
        if not json.loads(reply.stdout)["held"]:
            break
        time.sleep(0.5)
    assert not json.loads(held(conn_dir, "conn.status", "--json").stdout)["held"]
    time.sleep(7)  # LINGER: the holder waits 5 s for a client, then exits
    assert "no connection held (no holder runs for you)" in held(conn_dir, "conn.status").stdout


def test_conn_close_ends_every_connection_and_the_holder(lab, conn_dir):
    assert held(conn_dir, "run", "--hosts=scale-[6-9]", "true").returncode == 0
    pid = json.loads(held(conn_dir, "conn.status", "--json").stdout)["pid"]
    proc = held(conn_dir, "conn.close")
    assert f"closed 4 held connections; the holder (pid {pid}) has stopped" in proc.stdout
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert "no connection held" in held(conn_dir, "conn.close").stdout


def test_output_states_and_errors_are_what_a_direct_connection_gives(lab, conn_dir):
    script = "echo out; echo err >&2; (sleep 0.5; echo late) & exit 3"
    for args in (["--json", script], ["--json", "--timeout=1", "sleep 5"],
                 ["--json", "--sudo", "id -u; printf 'no newline'"]):
        direct = held(conn_dir, "run", "--no-persist", "--hosts=scale-6,scale-7", *args)
        through = held(conn_dir, "run", "--hosts=scale-6,scale-7", *args)
        again = held(conn_dir, "run", "--hosts=scale-6,scale-7", *args)  # on held ones
        assert direct.returncode == through.returncode == again.returncode
        for proc in (through, again):
            assert _same(records(proc)) == _same(records(direct)), (proc.stdout, direct.stdout)
    # Streamed: each stream's lines in order, as they come (sshd does not order stdout
    # against stderr, with or without the holder).
    streamed = held(conn_dir, "run", "--hosts=scale-6", "--stream",
                    "echo one; echo two >&2; echo three").stdout.splitlines()
    assert [x for x in streamed if x.startswith("scale-6 | ")] == ["scale-6 | one",
                                                                   "scale-6 | three"]
    assert [x for x in streamed if x.startswith("scale-6 ! ")] == ["scale-6 ! two"]


def _same(recs: dict[str, dict]) -> dict:
    return {h: {k: v for k, v in r.items() if k != "seconds"} for h, r in recs.items()}


def test_ctrl_c_cuts_the_command_not_the_held_connection(lab, conn_dir):
    env = {"SENTRYFAB_INVENTORY": str(LAB_INVENTORY), "PATH": "/usr/bin:/bin",
           "SENTRYFAB_CONN_DIR": str(conn_dir)}
    port = client_port(held(conn_dir, "run", f"--hosts={HOST}", "--json", "echo $SSH_CLIENT"))
    proc = subprocess.Popen([FAB, "run", f"--hosts={HOST},scale-7", "--parallel=1", "--json",
                             "sleep 20"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert f"{HOST}: failed: interrupted while running" in out
    assert "scale-7: failed: not run: interrupted before it started" in out
    after = held(conn_dir, "run", f"--hosts={HOST}", "--json", "echo $SSH_CLIENT")
    assert client_port(after) == port  # the same connection serves the next command


def test_another_user_is_turned_away_even_when_the_socket_is_open_to_all(lab, conn_dir):
    assert held(conn_dir, "run", f"--hosts={HOST}", "true").returncode == 0
    [sock] = conn_dir.glob("held-*.sock")
    assert oct(sock.stat().st_mode & 0o777) == "0o600" and oct(
        conn_dir.stat().st_mode & 0o777) == "0o700"
    conn_dir.chmod(0o711)
    sock.chmod(0o666)  # both locks of the folder taken off: SO_PEERCRED is what is left
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
             "try:\n    s.sendall(b'\\x00\\x00\\x00\\x00S')\n    got = s.recv(100)\n"
             "except (BrokenPipeError, ConnectionResetError):\n    got = b''\n"
             "print('closed' if not got else repr(got))")
    try:
        proc = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", probe,
                               str(sock)], capture_output=True, text=True, timeout=30)
    finally:
        conn_dir.chmod(0o700)
        sock.chmod(0o600)
    assert proc.stdout.strip() == "closed", proc.stdout + proc.stderr  # nothing said
    assert "refused a client of uid 65534" in (conn_dir / "held.log").read_text()
    assert HOST in status(conn_dir)  # and the holder goes on for its own user
