"""Built commands run by this machine's own `sh` (moved from tests/unit: a process each):
quoting and combinators (tests/unit/test_shell.py), stdin through a stand-in sudo
(tests/unit/test_become.py), the cleanup schedule's syntax (test_cleanup.py), the drain wait against
a real socket (test_containers.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sentryfab import become, shell
from sentryfab.containers import cleanup

# -- quoting and combinators (tests/unit/test_shell.py) --------------------------------------

NASTY = ["a b", "$x", ";rm -rf /", "it's", 'say "hi"', "two\nlines", "`id`", "*", "", "--x"]


@pytest.mark.parametrize("token", NASTY)
def test_tokens_survive_a_real_shell_literally(token):
    # The same quoting goes over SSH; a local sh is the same parser.
    cmd = shell.join(["printf", "%s", token])
    assert subprocess.run(["sh", "-c", cmd], capture_output=True, text=True).stdout == token


def test_script_inside_script_keeps_its_meaning():
    inner = shell.join(["printf", "%s|", *NASTY])
    out = subprocess.run(["sh", "-c", shell.script(inner)], capture_output=True, text=True)
    assert out.stdout == "|".join(NASTY) + "|"


def test_combined_commands_mean_what_they_say_in_a_real_shell():
    def sh(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)

    false, echo = shell.join(["false"]), shell.join(["echo", "ran"])
    assert sh(shell.chain(false, echo)).stdout == "ran\n"
    assert sh(shell.and_then(false, echo)).stdout == ""
    assert sh(shell.pipe(shell.join(["printf", "a\nb\n"]), shell.join(["wc", "-l"]))
              ).stdout.strip() == "2"
    assert sh(shell.quiet(shell.join(["ls", "/no/such/thing"]))).stderr == ""
    out = sh(shell.concurrently(shell.join(["echo", "x"]), shell.join(["echo", "x"])))
    assert out.stdout == "x\nx\n" and out.returncode == 0


# -- become: sudo (tests/unit/test_become.py) ------------------------------------------------

@pytest.fixture
def fake_sudo(tmp_path: Path) -> dict[str, str]:
    """A `sudo` that records its argv and runs the rest like sudo -n -H -- would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv"
    (bin_dir / "sudo").write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$@\" > {log}\n"
        '[ "$1 $2 $3" = "-n -H --" ] || exit 64\n'
        "shift 3\n"
        'exec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log)}


def test_stdin_flows_through_sudo_and_secrets_stay_out_of_argv(fake_sudo):
    # How status and config push send secrets: read from stdin by the remote shell.
    secret = "s3cr3t 'with' $quotes"
    command = become.wrap('IFS= read -r PW; printf "%s|" "$PW" "$1"', "sudo")
    out = subprocess.run(["sh", "-c", command], input=secret + "\n", capture_output=True,
                         text=True, env={**os.environ, "PATH": fake_sudo["PATH"]})
    assert out.returncode == 0, out.stderr
    assert out.stdout == secret + "||"
    assert secret not in Path(fake_sudo["LOG"]).read_text()


# -- retention (tests/unit/test_cleanup.py) --------------------------------------------------

def test_the_step_records_its_run_and_the_schedule_runs_it_daily_at_the_hour():
    assert cleanup.run_step(30, "/etc/sentryfab/cron") == (
        "start=$(date -u +%s); sentry --config /etc/sentryfab/cron cleanup --days 30 "
        ">/var/lib/sentryfab/cleanup/last.log 2>&1; rc=$?; "
        "echo \"$start $(date -u +%s) $rc\" >>/var/lib/sentryfab/cleanup/runs; exit $rc")
    script = cleanup.schedule_script(30, "04:30", "/etc/sentryfab/cron")
    assert script.startswith("trap 'exit 0' TERM INT; date -u +%s "
                             ">/var/lib/sentryfab/cleanup/scheduled; while :; do ")
    assert "next=$(date -u -d \"$(date -u +%F) 04:30\" +%s)" in script
    assert "sleep $((next - now)) & wait $!; ( start=$(date -u +%s); " in script
    # Valid POSIX shell (dash parses it without running it).
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


# -- draining web processes (tests/unit/test_containers.py) ----------------------------------

def test_a_drain_waits_for_the_open_requests_then_goes_on():
    """The drain-wait command run here against a real socket: while a connection to the port
    is open it waits (and gives up at its deadline), once it is closed it returns at once."""
    import shutil
    import socket
    import subprocess
    import time

    from sentryfab.containers import health

    assert health.until_no_requests([9001, 9000, 9001], timeout=1) == (
        "i=0; idle=0; while [ $i -lt 4 ]; do if [ -z \"$(ss -Htn state established "
        "'( sport = :9000 or sport = :9001 )')\" ]; then idle=$((idle+1)); [ $idle -ge 2 ] "
        "&& exit 0; else idle=0; fi; i=$((i+1)); sleep 0.25; done; exit 1")
    assert health.until_no_requests([]) == "true"
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) is not installed here")
    # The same loop on a short clock (4 looks 50 ms apart): the suite need not wait a second.
    deadline, interval = 0.2, 0.05
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    try:
        t0 = time.monotonic()
        busy = subprocess.run(["sh", "-c", health.until_no_requests([port], deadline, interval)])
        assert busy.returncode == 1 and time.monotonic() - t0 >= 0.9 * deadline
    finally:
        client.close()
        accepted.close()
        server.close()
    idle = subprocess.run(["sh", "-c", health.until_no_requests([port], deadline, interval)])
    assert idle.returncode == 0
