"""A Redis inside its container: INFO; on the queue Redis, each queue's length and, when it
has a backlog, its oldest message (when its event was accepted); worker heartbeat keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...configs.context import settings
from ...inventory import Host, Inventory
from ...shell import join
from .. import pipeline
from .base import Fact, FactBase, Lines, timed

#: Celery's Redis transport keeps each queue as a list named after it. These are the queues
#: whose tasks carry an event's payload key in Sentry 9.1.2 (sentry/tasks/store.py), plus
#: `default`; an inventory sets `queue_keys` on redis-queue to watch others (the lab's
#: stand-in uses one list).
SENTRY_QUEUES = ("default", "events.preprocess_event", "events.process_event",
                 "events.save_event", "events.reprocessing.preprocess_event",
                 "events.reprocessing.process_event")
#: The most of a queue's oldest message read: Sentry's task messages carry the payload's key,
#: not the payload (well under 1 kB); a bigger one is cut (its age then reads 'unknown').
OLDEST_MAX_BYTES = 65536


def queue_keys(inv: Inventory, host: Host | None = None) -> list[str]:
    """The queue Redis lists to measure (`queue_keys` on redis-queue, else Sentry's)."""
    raw = settings(inv, "redis-queue", host).get("queue_keys") or list(SENTRY_QUEUES)
    return [str(key) for key in ([raw] if isinstance(raw, str) else raw)]


@dataclass(frozen=True)
class RedisFacts:
    """INFO as a mapping; on the queue, lengths, the oldest tasks and the heartbeat count."""

    info: dict[str, str]
    lengths: dict[str, int] = field(default_factory=dict)
    heartbeats: int | None = None
    errors: tuple[str, ...] = ()
    #: queue -> when the event of its oldest task was accepted (unix s), None if unreadable;
    #: only queues whose oldest message was fetched (the non-empty ones).
    oldest: dict[str, float | None] = field(default_factory=dict)

    def num(self, key: str) -> float | None:
        """An INFO field as a number, None if absent or not numeric."""
        try:
            return float(self.info[key])
        except (KeyError, ValueError):
            return None


_INFO_LINE = re.compile(r"^[A-Za-z0-9_]+:")
_MARKS = ("@llen ", "@scan ", "@oldest ")


class Redis(FactBase):
    """One Redis role's INFO (and the queue's lengths, oldest tasks, heartbeats)."""

    name = "redis"

    @staticmethod
    def name_for(role: str) -> str:
        """The fact's name for a Redis role ('redis redis-queue'): a host may run both."""
        return f"{Redis.name} {role}"

    @staticmethod
    def command(inv: Inventory, host: Host, role: str, container: str,
                secret_var: str) -> str:
        """INFO (and on the queue: each queue key's LLEN and, if not empty, its oldest
        message; heartbeat keys) inside the container, the password read from stdin."""
        role_settings = settings(inv, role, host)
        cli = join(["redis-cli", "--no-auth-warning", "-h", host.address, "-p",
                    int(role_settings["port"])])
        inner = [f'REDISCLI_AUTH="$(cat)"; export REDISCLI_AUTH; {cli} INFO']
        if role == "redis-queue":
            for key in queue_keys(inv, host):
                quoted = join([key])
                # LPUSH in, BRPOP out: the oldest message is the last element. Only fetched
                # when there is a backlog, so an idle queue costs one call, as before.
                inner.append(f"{join(['echo', f'@llen {key}'])}; n=$({cli} LLEN {quoted}); "
                             f'echo "$n"; if [ "$n" != 0 ]; then '
                             f"{join(['echo', f'@oldest {key}'])}; {cli} LINDEX {quoted} -1 | "
                             f"head -c {OLDEST_MAX_BYTES}; echo; fi")
            pattern = role_settings.get("heartbeat_pattern")
            if pattern:
                inner.append(f"{join(['echo', f'@scan {pattern}'])}; "
                             f"{cli} --scan --pattern {join([str(pattern)])} | wc -l")
        run = timed(["docker", "exec", "-i", container, "sh", "-c", "; ".join(inner)])
        return f"printf %s \"${secret_var}\" | {run}"

    @classmethod
    def fact(cls, inv: Inventory, host: Host, role: str, container: str,  # type: ignore[override]
             secret_var: str) -> Fact:
        """This role's fact on one host (its name carries the role)."""
        return Fact(cls.name_for(role), cls.command(inv, host, role, container, secret_var))

    @staticmethod
    def parse(lines: Lines) -> RedisFacts:
        """INFO's 'key:value' lines, then '@llen KEY' + number, '@oldest KEY' + the queue's
        oldest element (empty if the queue emptied meanwhile) and '@scan PATTERN' + count."""
        info: dict[str, str] = {}
        lengths: dict[str, int] = {}
        oldest: dict[str, float | None] = {}
        heartbeats = None
        errors: list[str] = []
        pending: tuple[str, str] | None = None
        for line in lines:
            line = line.strip()
            if line.startswith(_MARKS):
                kind, _, arg = line.partition(" ")
                pending = (kind, arg)
            elif pending is not None:
                kind, arg = pending
                pending = None
                value = line.removeprefix("(integer) ")
                if kind == "@oldest":
                    if line:
                        oldest[arg] = pipeline.enqueued_at(line)
                elif not value.lstrip("-").isdigit():
                    errors.append(line)
                elif kind == "@llen":
                    lengths[arg] = int(value)
                else:
                    heartbeats = int(value)
            elif _INFO_LINE.match(line):
                key, _, value = line.partition(":")
                info[key] = value
            elif line and not line.startswith("#"):
                errors.append(line)
        return RedisFacts(info, lengths, heartbeats, tuple(errors), oldest)


def backlog_ages(facts: RedisFacts, now: float) -> dict[str, float | None]:
    """Seconds each non-empty queue's oldest task has waited since its event was accepted
    (None: its message could not be read). A clock behind the web hosts' gives 0, not less."""
    return {queue: None if accepted is None else round(max(now - accepted, 0.0), 1)
            for queue, accepted in facts.oldest.items()}
