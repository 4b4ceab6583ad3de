"""Remote command building, exact strings (that every token comes back literally from a real
shell, whatever it holds: tests/cli/test_commands_in_a_real_shell.py)."""

from __future__ import annotations

from sentryfab import shell


def test_join_exact():
    assert shell.join(["echo", "a b", "$x", ";rm -rf /", "it's"]) == \
        "echo 'a b' '$x' ';rm -rf /' 'it'\"'\"'s'"


def test_script_and_sudo_wrap_user_text_as_one_argument():
    assert shell.script("df -h /; uptime") == "sh -c 'df -h /; uptime'"
    assert shell.sudo("cat /etc/shadow | wc -l") == \
        "sudo -n -H -- sh -c 'cat /etc/shadow | wc -l'"


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
