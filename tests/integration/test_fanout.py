"""The SSH engine and `fab run` against real lab hosts: states, host keys, timeouts, order."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sentryfab import inventory, shell
from sentryfab.remote import Runner
from sentryfab.selection import Selection, select

from .conftest import FAB, LAB_INVENTORY, REPO, fab

BLACKHOLE = "10.231.0.250"  # on the lab bridge, answered by nobody


def records(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    return {r["host"]: r for r in json.loads(proc.stdout)}


def test_fan_out_reaches_every_host_and_each_answers_as_itself(lab):
    proc = fab("run", "--json", "hostname")
    assert proc.returncode == 0, proc.stderr
    recs = records(proc)
    assert set(recs) == {h.name for h in lab.hosts}
    for name, r in recs.items():
        assert (r["status"], r["exit_code"], r["stdout"]) == ("ok", 0, f"{name}\n")


def test_grouped_output_folds_identical_hosts(lab):
    proc = fab("run", "--hosts=scale-*", "echo same")
    assert proc.returncode == 0, proc.stderr
    n = len([h for h in lab.hosts if h.name.startswith("scale-")])
    assert f"scale-[1-{n}] ({n} hosts)  ok" in proc.stdout
    assert proc.stdout.count("same") == 1
    assert f"{n} ok, 0 failed, 0 unreachable" in proc.stdout


def test_failed_command_keeps_exit_code_and_stderr(lab):
    proc = fab("run", "--hosts=scale-1,scale-2", "--json", "echo oops >&2; exit 7")
    assert proc.returncode == 1
    for r in records(proc).values():
        assert (r["status"], r["exit_code"], r["stderr"]) == ("failed", 7, "oops\n")
        assert r["error"] == "exit code 7: oops"


def test_stopped_sshd_makes_only_that_host_unreachable(lab):
    from sentryfab.lab import lab as lab_mod

    lab_mod.stop_sshd("scale-3")
    try:  # direct: a connection held from earlier would outlive the listener (test_held.py)
        proc = fab("run", "--no-persist", "--hosts=scale-*", "--json", "true")
    finally:
        lab_mod.start_host("scale-3")
    assert proc.returncode == 1
    recs = records(proc)
    assert recs["scale-3"]["status"] == "unreachable"
    assert "refused" in recs["scale-3"]["error"]
    assert all(r["status"] == "ok" for n, r in recs.items() if n != "scale-3")


def _isolated(tmp_path: Path, known_hosts_text: str) -> tuple[Path, dict]:
    """A copy of the lab inventory whose known_hosts we control, and a HOME without one."""
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    kh = tmp_path / "known_hosts"
    kh.write_text(known_hosts_text)
    data["ssh"]["known_hosts"] = str(kh)
    data["ssh"]["key_file"] = str(LAB_INVENTORY.parent / data["ssh"]["key_file"])
    inv = tmp_path / "hosts.yaml"
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    return inv, {"HOME": str(home)}


def test_unknown_host_key_is_refused_then_accepted_with_accept_new(lab, tmp_path):
    inv, env = _isolated(tmp_path, "")
    proc = fab("run", "--hosts=scale-1,scale-2", "--json", "true", inv=inv, env=env)
    assert proc.returncode == 1
    for r in records(proc).values():
        assert r["status"] == "unreachable"
        assert r["error"].startswith(f"unknown host key for {r['address']} (ssh-ed25519 SHA256:")
        assert "--accept-new" in r["error"]

    proc = fab("run", "--hosts=scale-1,scale-2", "--accept-new", "true", inv=inv, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recorded = (tmp_path / "known_hosts").read_text().splitlines()
    assert sorted(line.split()[0] for line in recorded) == \
        sorted(lab.host(n).address for n in ("scale-1", "scale-2"))
    # The real lab keys were recorded: the lab's own known_hosts agrees.
    lab_keys = set((LAB_INVENTORY.parent / "known_hosts").read_text().splitlines())
    assert {" ".join(line.split()[:3]) for line in recorded} <= \
        {" ".join(line.split()[:3]) for line in lab_keys}

    proc = fab("run", "--hosts=scale-1,scale-2", "true", inv=inv, env=env)
    assert proc.returncode == 0, proc.stdout


def test_changed_host_key_is_refused_even_with_accept_new(lab, tmp_path):
    target = lab.host("scale-1")
    forged = tmp_path / "forged"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(forged)],
                   check=True)
    kind, key = forged.with_suffix(".pub").read_text().split()[:2]
    inv, env = _isolated(tmp_path, f"{target.address} {kind} {key}\n")
    for extra in ([], ["--accept-new"]):
        proc = fab("run", "--hosts=scale-1", "--json", *extra, "true", inv=inv, env=env)
        assert proc.returncode == 1
        r = records(proc)["scale-1"]
        assert r["status"] == "unreachable"
        assert r["error"].startswith(f"HOST KEY CHANGED for {target.address}")
    assert (tmp_path / "known_hosts").read_text() == f"{target.address} {kind} {key}\n"


@pytest.fixture
def blackhole():
    """An address on the lab bridge whose packets go to a MAC nobody has: SYNs vanish."""
    subprocess.run(["ip", "neigh", "replace", BLACKHOLE, "lladdr", "02:00:00:00:de:ad",
                    "dev", "sfblab0", "nud", "permanent"], check=True)
    yield BLACKHOLE
    subprocess.run(["ip", "neigh", "del", BLACKHOLE, "dev", "sfblab0"], check=False)


def test_black_holed_address_fails_within_the_connect_timeout(lab, tmp_path, blackhole):
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    data["ssh"]["connect_timeout"] = 2
    data["ssh"]["key_file"] = str(LAB_INVENTORY.parent / data["ssh"]["key_file"])
    data["ssh"]["known_hosts"] = str(LAB_INVENTORY.parent / data["ssh"]["known_hosts"])
    data["hosts"] = {"gone-1": {"address": blackhole}, "scale-1": data["hosts"]["scale-1"]}
    inv = tmp_path / "hosts.yaml"
    inv.write_text(yaml.safe_dump(data))
    start = time.monotonic()
    proc = fab("run", "--json", "true", inv=inv)
    took = time.monotonic() - start
    recs = records(proc)
    assert recs["gone-1"]["status"] == "unreachable"
    assert recs["gone-1"]["error"] == f"connect to {blackhole}:22 timed out after 2 s " \
                                      "(host down or firewalled?)"
    assert 1.9 <= recs["gone-1"]["seconds"] < 3
    assert recs["scale-1"]["status"] == "ok"
    assert took < 6


def test_parallel_1_runs_hosts_strictly_in_order(lab):
    proc = fab("run", "--hosts=scale-1,scale-2,scale-3,scale-4", "--parallel=1", "--json",
               "date +%s.%N; sleep 0.2; date +%s.%N")
    assert proc.returncode == 0, proc.stderr
    spans = [tuple(map(float, r["stdout"].split())) for r in json.loads(proc.stdout)]
    assert [r["host"] for r in json.loads(proc.stdout)] == ["scale-1", "scale-2", "scale-3",
                                                            "scale-4"]
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start > end  # the next host started only after this one finished


def test_parallel_default_overlaps_hosts(lab):
    proc = fab("run", "--hosts=scale-*", "--json", "sleep 1")
    assert proc.returncode == 0
    assert max(r["seconds"] for r in json.loads(proc.stdout)) < 3  # not 30 x 1 s


NASTY = ["a b", "$x", ";rm -rf /", "it's", 'say "hi"', "two\nlines", "`id`", "*", "$(id)"]


def test_quoted_tokens_arrive_literally_over_ssh(lab):
    host = select(lab, Selection(hosts="scale-1"))
    with Runner(lab) as runner:
        [r] = runner.run(host, shell.join(["printf", "%s|", *NASTY]))
    assert r.status == "ok", r.error
    assert r.stdout == "|".join(NASTY) + "|"


def test_output_written_after_the_exit_status_is_kept(lab):
    """The shell exits at once (sshd sends exit-status), a child it left writes later on the
    same stdout: the output ends at EOF, not at the status."""
    with Runner(lab) as runner:
        [r] = runner.run([lab.host("scale-1")], "(sleep 1; echo late; echo gone >&2) & echo early")
    assert r.status == "ok", r.error
    assert (r.stdout, r.stderr) == ("early\nlate\n", "gone\n")


def test_one_connection_per_host_reused_and_duplicates_kept(lab):
    host = lab.host("scale-1")
    with Runner(lab) as runner:
        first = runner.run([host, host], "echo $SSH_CLIENT")
        second = runner.run([host], "echo $SSH_CLIENT")
    assert [r.host.name for r in first] == ["scale-1", "scale-1"]  # not collapsed
    ports = {r.stdout.split()[1] for r in first + second}
    assert len(ports) == 1  # one TCP connection served all three commands


def test_command_timeout_cuts_off_a_hanging_host(lab):
    proc = fab("run", "--hosts=scale-1", "--timeout=1", "--json", "sleep 30")
    r = records(proc)["scale-1"]
    assert (r["status"], r["exit_code"], r["error"]) == ("failed", None, "timed out after 1 s")
    assert r["seconds"] < 3


def test_ctrl_c_stops_new_work_and_reports_what_ran_where(lab):
    proc = subprocess.Popen(
        [FAB, "run", "--hosts=scale-1,scale-2,scale-3", "--parallel=1", "--json", "sleep 20"],
        cwd=REPO, env={"SENTRYFAB_INVENTORY": str(LAB_INVENTORY), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "scale-1: failed: interrupted while running" in out
    assert "scale-2: failed: not run: interrupted before it started" in out
    assert "interrupted: no new host was started" in err


def test_sudo_runs_as_root(lab):
    assert shutil.which("sudo"), "./dev installs sudo: lab hosts share this machine's /usr"
    proc = fab("run", "--hosts=scale-1", "--sudo", "--json", "id -u")
    assert records(proc)["scale-1"]["stdout"] == "0\n"


def test_lab_inventory_validates(lab):
    assert inventory.load(LAB_INVENTORY).cluster == "lab"


def _client_address(proc: subprocess.CompletedProcess, host: str) -> str:
    r = records(proc)[host]
    assert r["status"] == "ok", r["error"]
    return r["stdout"].split()[0]


def test_ssh_config_hostname_user_identityfile_and_proxyjump_are_honoured(lab, tmp_path):
    inv, env = _isolated(tmp_path, (LAB_INVENTORY.parent / "known_hosts").read_text())
    data = yaml.safe_load(inv.read_text())
    del data["ssh"]["key_file"], data["ssh"]["user"]  # must come from ~/.ssh/config
    data["hosts"] = {"alias-1": {"address": "scale-alias"},
                     "hop-1": {"address": lab.host("scale-3").address}}
    inv.write_text(yaml.safe_dump(data))
    key = LAB_INVENTORY.parent / "id_ed25519"
    bastion = lab.host("scale-1").address
    (Path(env["HOME"]) / ".ssh" / "config").write_text(
        f"Host scale-alias\n  HostName {lab.host('scale-2').address}\n  User root\n"
        f"  IdentityFile {key}\n"
        f"Host {lab.host('scale-3').address}\n  User root\n  IdentityFile {key}\n"
        f"  ProxyJump root@{bastion}\n"
        f"Host {bastion}\n  IdentityFile {key}\n"
    )
    proc = fab("run", "--json", "echo $SSH_CLIENT", inv=inv, env=env)
    assert _client_address(proc, "alias-1") == "10.231.0.1"  # straight from this machine
    assert _client_address(proc, "hop-1") == bastion  # came through the jump host


def test_inventory_jump_host_is_used_for_every_host(lab, tmp_path):
    inv, env = _isolated(tmp_path, (LAB_INVENTORY.parent / "known_hosts").read_text())
    data = yaml.safe_load(inv.read_text())
    bastion = lab.host("scale-1").address
    data["ssh"]["jump"] = f"root@{bastion}"
    data["hosts"] = {n: data["hosts"][n] for n in ("scale-4", "scale-5")}
    inv.write_text(yaml.safe_dump(data))
    proc = fab("run", "--json", "echo $SSH_CLIENT", inv=inv, env=env)
    assert proc.returncode == 0, proc.stdout
    assert {_client_address(proc, n) for n in ("scale-4", "scale-5")} == {bastion}
