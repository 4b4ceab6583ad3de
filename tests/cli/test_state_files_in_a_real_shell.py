"""What a host keeps in files, written and read back by this machine's own `sh` in a
temporary folder (moved from tests/unit: a process each): the audit log
(tests/unit/test_auditlog.py), the release history (test_containers.py) and the deploy lock
(test_lock.py; the racing deploys are in test_lock_race.py)."""

from __future__ import annotations

import subprocess

from sentryfab import auditlog
from sentryfab.containers import releases
from sentryfab.procedures import lock
from tests.unit.test_auditlog import NASTY
from tests.unit.test_lock import info

# -- the audit log (tests/unit/test_auditlog.py) ---------------------------------------------

def test_a_line_appended_in_a_real_shell_reads_back_as_the_record(tmp_path):
    def here(cmd: str) -> str:
        cmd = cmd.replace("/var/log/sentryfab", str(tmp_path / "log"))
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True,
                              check=True).stdout

    assert auditlog.parse_lines(here(auditlog.tail_command(5))) == []  # no log yet
    here(auditlog.append_command(NASTY))
    here(auditlog.append_command({"action": "x", "result": "failed"}))
    assert auditlog.parse_lines(here(auditlog.tail_command(5))) == [
        NASTY, {"action": "x", "result": "failed"}]
    assert auditlog.parse_lines(here(auditlog.tail_command(1))) == [
        {"action": "x", "result": "failed"}]


# -- the release history (tests/unit/test_containers.py) -------------------------------------

def test_release_history_exact_and_read_back_in_a_real_shell(tmp_path):
    assert releases.record_command("web", "", "T1") == (
        "mkdir -p /var/lib/sentryfab/releases && printf '%s %s\\n' T1 '' "
        ">> /var/lib/sentryfab/releases/web")

    def here(cmd: str) -> str:
        cmd = cmd.replace(releases.RELEASES, str(tmp_path / "releases"))
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True,
                              check=True).stdout

    assert releases.parse_last_two(here(releases.last_two_command("web"))) is None
    here(releases.record_command("web", "9.1.1", "20260101T000000.000000Z"))
    assert releases.parse_last_two(here(releases.last_two_command("web"))) is None
    here(releases.record_command("web", "9.1.2", "20260102T000000.000000Z"))
    here(releases.record_command("web", "9.1.3", "20260103T000000.000000Z"))
    assert releases.parse_last_two(here(releases.last_two_command("web"))) == \
        ("9.1.3", "9.1.2")  # (current, previous)


# -- the deploy lock (tests/unit/test_lock.py) -----------------------------------------------

def here(cmd: str, root) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", cmd.replace("/var/lib/sentryfab", str(root))],
                          capture_output=True, text=True)


def test_release_only_frees_the_holder_it_names(tmp_path):
    assert here(lock.acquire_command(info("first")), tmp_path).returncode == 0
    assert here(lock.release_command("other"), tmp_path).returncode == 0
    assert (tmp_path / "deploy.lock").exists()  # a newer holder's lock is kept
    here(lock.release_command("first"), tmp_path)
    assert not (tmp_path / "deploy.lock").exists()


def test_force_release_says_whether_the_lock_is_gone(tmp_path):
    assert here(lock.acquire_command(info("first")), tmp_path).returncode == 0
    assert here(lock.force_release_command("other"), tmp_path).returncode == 1  # still held
    assert here(lock.force_release_command("first"), tmp_path).returncode == 0
    assert here(lock.force_release_command("first"), tmp_path).returncode == 0  # none left
