"""How big the pgBackRest repository grows, from the retention and the database's forecast.

Pure. At its peak (a new full backup finished, the oldest not yet expired) the repository
holds:

    fulls = (retention_full + 1) x steady database x ratio
    diffs = the last min(retention_diff, 6) daily differentials: 1, 2, ... days of growth x ratio
    WAL   = (retention_full x 7 + 1) days of WAL x ratio   (a full each week, decision 0007)

`ratio` is what compression leaves of the bytes: measured from the latest full backup
when there is one (its size in the repository over the database's), else
`compression_ratio` (backup role, default 0.35). The room is what the repository host's
filesystem has free plus what the repository takes now (`repo_disk` when offline).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..configs.context import settings
from ..inventory import Host, Inventory
from .capacity import Line, parse_size
from .forecast import DAY, DiskForecast

DEFAULT_RATIO = 0.35
DEFAULT_REPO_DISK = "2tb"
FULL_EVERY_DAYS = 7


@dataclass(frozen=True)
class RepoFacts:
    """The repository host's disk and repository, read over SSH."""

    disk_free: int
    repo_bytes: int
    ratio: float | None = None  # the latest full's repository size over its database size


@dataclass(frozen=True)
class RepoForecast:
    """The repository at its peak, against the room it has."""

    host: str
    fulls: float
    diffs: float
    wal: float
    room: float
    ratio: float
    ratio_source: str

    @property
    def need(self) -> float:
        return self.fulls + self.diffs + self.wal

    def line(self) -> Line:
        gib = 1024 ** 3
        return Line("disk", f"{self.host} backup repository", self.room, self.need, "bytes",
                    f"fulls {self.fulls / gib:,.1f} GiB + diffs {self.diffs / gib:,.1f} GiB + "
                    f"WAL {self.wal / gib:,.1f} GiB, compressed to {self.ratio:.2f} "
                    f"({self.ratio_source})")


def forecast(inv: Inventory, host: Host, primary: DiskForecast,
             facts: RepoFacts | None) -> RepoForecast:
    """The repository's peak for the database `primary` forecasts (its steady state, its
    growth and WAL per day at the planned rate)."""
    s = settings(inv, "backup", host)
    if facts is not None and facts.ratio:
        ratio, source = facts.ratio, "measured on the latest full backup"
    else:
        ratio, source = float(s.get("compression_ratio", DEFAULT_RATIO)), "declared"
    keep_full, keep_diff = int(s["retention_full"]), int(s["retention_diff"])
    fulls = (keep_full + 1) * primary.steady * ratio
    days = min(keep_diff, FULL_EVERY_DAYS - 1)
    diffs = sum(range(1, days + 1)) * primary.growth_per_day * ratio
    wal = (keep_full * FULL_EVERY_DAYS + 1) * primary.wal_per_second * DAY * ratio
    room = float(facts.disk_free + facts.repo_bytes) if facts is not None else \
        float(parse_size(s.get("repo_disk", DEFAULT_REPO_DISK)))
    return RepoForecast(host.name, fulls, diffs, wal, room, ratio, source)
