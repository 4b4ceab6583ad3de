"""The machine itself, on every host: load, CPUs, memory, file descriptors, disk use.

Shell builtins where they do (read, case): on hosts that only get these facts, the script
then costs one `nproc` and one `df` more than `true`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...shell import join
from .base import Fact, FactBase, Lines, ints

#: The paths whose filesystems are watched: data, then logs.
DATA_PATHS = ("/var/lib/sentryfab", "/var/log/sentryfab")


class Loadavg(FactBase):
    """The 1, 5 and 15 minute load averages."""

    name = "loadavg"

    @staticmethod
    def command() -> str:
        """/proc/loadavg's line, read by the shell itself."""
        return 'read -r l < /proc/loadavg && echo "$l"'

    @staticmethod
    def parse(lines: Lines) -> tuple[float, float, float] | None:
        """/proc/loadavg -> (1, 5, 15 minute load)."""
        for line in lines:
            parts = line.split()
            if len(parts) >= 3:
                try:
                    return float(parts[0]), float(parts[1]), float(parts[2])
                except ValueError:
                    continue
        return None


class Nproc(FactBase):
    """The CPUs available."""

    name = "nproc"

    @staticmethod
    def command() -> str:
        """`nproc`."""
        return "nproc"

    @staticmethod
    def parse(lines: Lines) -> int | None:
        """`nproc` -> CPUs available."""
        for line in lines:
            if line.strip().isdigit():
                return int(line.strip())
        return None


class Meminfo(FactBase):
    """Total and available memory."""

    name = "meminfo"

    @staticmethod
    def command() -> str:
        """The MemTotal and MemAvailable lines of /proc/meminfo."""
        return ('while read -r k v u; do case $k in MemTotal:|MemAvailable:) '
                'echo "$k $v $u";; esac; done < /proc/meminfo')

    @staticmethod
    def parse(lines: Lines) -> tuple[int, int] | None:
        """MemTotal and MemAvailable lines -> (total, available) in bytes."""
        values: dict[str, int] = {}
        for line in lines:
            key, _, rest = line.partition(":")
            nums = ints(rest)
            if nums:
                values[key.strip()] = nums[0] * 1024
        if "MemTotal" in values and "MemAvailable" in values:
            return values["MemTotal"], values["MemAvailable"]
        return None


class FileNr(FactBase):
    """Open file handles, system-wide, and their limit."""

    name = "file-nr"

    @staticmethod
    def command() -> str:
        """/proc/sys/fs/file-nr (not `read`: sysctl files answer dash's one-byte read with
        one byte only)."""
        return "cat /proc/sys/fs/file-nr"

    @staticmethod
    def parse(lines: Lines) -> tuple[int, int] | None:
        """/proc/sys/fs/file-nr -> (open file handles, system-wide limit)."""
        for line in lines:
            nums = ints(line)
            if len(nums) == 3:
                return nums[0] - nums[1], nums[2]
        return None


@dataclass(frozen=True)
class Disk:
    """Use of the filesystem holding a path (or its nearest existing parent)."""

    path: str          # the path asked about
    measured: str      # the path df was run on (a parent, if `path` does not exist yet)
    device: str        # the filesystem (two paths on one device share their space)
    size: int          # bytes
    used: int
    available: int
    mount: str

    @property
    def pct(self) -> float:
        """Used share as df computes it: used / (used + available), root's reserve excluded."""
        total = self.used + self.available
        return 100.0 * self.used / total if total else 0.0


class Df(FactBase):
    """Disk use of the data and log paths."""

    name = "df"

    @staticmethod
    def command() -> str:
        """'path ASKED MEASURED' per path, then `df -Pk` of the measured paths. A path not
        created yet is on its nearest existing parent's filesystem."""
        return (f"m=; for p in {join(DATA_PATHS)}; do q=$p; while [ ! -e \"$q\" ]; do "
                "q=${q%/*}; "
                'q=${q:-/}; done; echo "path $p $q"; m="$m $q"; done; df -Pk $m')

    @staticmethod
    def parse(lines: Lines) -> list[Disk]:
        """'path ASKED MEASURED' lines, then `df -Pk` of the measured paths, in that order."""
        asked = [ln.split()[1:3] for ln in lines
                 if ln.startswith("path ") and len(ln.split()) == 3]
        rows = [ln.split() for ln in lines if not ln.startswith("path ")]
        rows = [row for row in rows if len(row) >= 6 and row[1].isdigit() and row[2].isdigit()
                and row[3].isdigit()]
        kb = 1024
        return [Disk(path, measured, row[0], int(row[1]) * kb, int(row[2]) * kb,
                     int(row[3]) * kb, row[-1])
                for (path, measured), row in zip(asked, rows, strict=False)]


#: Every host's facts, in the order the script prints them.
HOST_FACTS: tuple[type[FactBase], ...] = (Loadavg, Nproc, Meminfo, FileNr, Df)


def host_facts() -> list[Fact]:
    """Load, CPUs, memory, file descriptors, disk use of the data and log paths."""
    return [kind.fact() for kind in HOST_FACTS]
