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
