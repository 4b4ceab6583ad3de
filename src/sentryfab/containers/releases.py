"""The release history each host keeps per role: one 'stamp version' line per rollout that
ended healthy, read back by a rollback to find the release before the current one."""

from __future__ import annotations

from ..shell import and_then, append_to, chain, join, quiet

RELEASES = "/var/lib/sentryfab/releases"


def history_file(role: str) -> str:
    """The role's history on a host: '/var/lib/sentryfab/releases/web'."""
    return f"{RELEASES}/{role}"


def record_command(role: str, version: str, when: str) -> str:
    """Append 'stamp version' to the host's release history of the role."""
    return and_then(join(["mkdir", "-p", RELEASES]),
                    append_to(join(["printf", "%s %s\\n", when, version]), history_file(role)))


def last_two_command(role: str) -> str:
    """The role's last two history lines (nothing if none was recorded)."""
    return chain(quiet(join(["tail", "-n", "2", history_file(role)])), "true")


def parse_last_two(stdout: str) -> tuple[str, str] | None:
    """(current, previous) release from last_two_command()'s output; None with fewer than
    two releases recorded."""
    words = stdout.split()
    if len(words) < 4:
        return None
    return words[3], words[1]
