"""Remote command building: every token comes back literally, whatever it holds."""

from __future__ import annotations

import subprocess

import pytest

from sentryfab import shell

NASTY = ["a b", "$x", ";rm -rf /", "it's", 'say "hi"', "two\nlines", "`id`", "*", "", "--x"]


def test_join_exact():
    assert shell.join(["echo", "a b", "$x", ";rm -rf /", "it's"]) == \
        "echo 'a b' '$x' ';rm -rf /' 'it'\"'\"'s'"


def test_script_and_sudo_wrap_user_text_as_one_argument():
    assert shell.script("df -h /; uptime") == "sh -c 'df -h /; uptime'"
    assert shell.sudo("cat /etc/shadow | wc -l") == \
        "sudo -n -H -- sh -c 'cat /etc/shadow | wc -l'"


@pytest.mark.parametrize("token", NASTY)
def test_tokens_survive_a_real_shell_literally(token):
    # The same quoting goes over SSH; a local sh is the same parser.
    cmd = shell.join(["printf", "%s", token])
    assert subprocess.run(["sh", "-c", cmd], capture_output=True, text=True).stdout == token


def test_script_inside_script_keeps_its_meaning():
    inner = shell.join(["printf", "%s|", *NASTY])
    out = subprocess.run(["sh", "-c", shell.script(inner)], capture_output=True, text=True)
    assert out.stdout == "|".join(NASTY) + "|"


def test_combinators_join_built_commands_exactly():
    a, b, c = shell.join(["echo", "a b"]), shell.join(["true"]), shell.join(["wc", "-l"])
    assert shell.chain(a, b) == "echo 'a b'; true"
    assert shell.and_then(a, b, c) == "echo 'a b' && true && wc -l"
    assert shell.pipe(a, c) == "echo 'a b' | wc -l"
    assert shell.pipeline is shell.pipe
    assert shell.quiet(a) == "echo 'a b' 2>/dev/null"
    assert shell.append_to(a, "/var/log/my log") == "echo 'a b' >> '/var/log/my log'"
    assert shell.concurrently(a, b, c) == "echo 'a b' & true & wc -l; wait"
    assert shell.chain(shell.quiet(shell.join(["cat", "/x"])), "true") == \
        "cat /x 2>/dev/null; true"


def test_combinators_give_the_strings_once_joined_by_hand():
    # The builders that moved onto them must send what they sent before, byte for byte.
    from sentryfab.containers import docker

    stop, remove = docker.stop("sentry-web-3"), docker.remove("sentry-web-3")
    assert shell.chain(stop, remove) == stop + "; " + remove
    logs = [docker.logs(f"sentry-web-{i}", 100, True) for i in (1, 2)]
    assert shell.concurrently(*logs) == " & ".join(logs) + "; wait"
    assert shell.concurrently(logs[0]) == logs[0] + "; wait"
    assert shell.concurrently() == " & ".join([]) + "; wait"


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
