"""Rollout batches: how many hosts at a time, in which order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from ..errors import UsageError

T = TypeVar("T")

#: The whole cluster from nothing, in dependency order (migrations run before web; the
#: backup repository right after the database, whose stanza it creates).
DEPLOY_ORDER: tuple[str, ...] = (
    "db", "backup", "pgbouncer", "redis-cache", "redis-queue", "migrate", "web", "worker",
    "cron", "nginx",
)

#: Roles whose hosts are changed one at a time whatever --batch says: each is a single
#: point of service (a Redis, a database, the only cron), so never two at once.
ONE_AT_A_TIME = ("db", "backup", "redis-cache", "redis-queue", "pgbouncer", "cron", "nginx")


def batch_size(spec: str | int | None, total: int) -> int:
    """'25%' -> a quarter of the hosts (at least 1); '3' or 3 -> 3; None -> 25%."""
    if total <= 0:
        return 0
    if spec is None or spec == "":
        spec = "25%"
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.ceil(total * pct / 100))
        n = int(text)
        if n < 1:
            raise ValueError
        return min(n, total)
    except ValueError:
        raise UsageError(f"--batch: expected a number of hosts or a percentage like 25%, "
                         f"got {spec!r}") from None


def batches(items: Sequence[T], spec: str | int | None, role: str = "") -> list[list[T]]:
    """Split hosts into consecutive batches; single-instance roles go one at a time."""
    size = 1 if role in ONE_AT_A_TIME else batch_size(spec, len(items))
    return [list(items[i:i + size]) for i in range(0, len(items), size)] if size else []
