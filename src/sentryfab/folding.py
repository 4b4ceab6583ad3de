"""Folding per-host output: identical answers become one block, host lists become ranges."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .results import HostResult, Status


@dataclass
class Block:
    """Hosts that answered exactly the same, and that answer."""

    names: list[str] = field(default_factory=list)
    status: Status = "ok"
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    @property
    def label(self) -> str:
        """'web-[1-30] (30 hosts)' or just 'web-1'."""
        folded = fold_names(self.names)
        return folded if len(self.names) == 1 else f"{folded} ({len(self.names)} hosts)"


def fold(results: list[HostResult]) -> list[Block]:
    """Group results whose state, exit code, output and error are identical (first-seen order)."""
    blocks: dict[tuple, Block] = {}
    for r in results:
        key = (r.status, r.exit_code, r.stdout, r.stderr, r.error)
        b = blocks.get(key)
        if b is None:
            b = blocks[key] = Block(status=r.status, exit_code=r.exit_code, stdout=r.stdout,
                                    stderr=r.stderr, error=r.error)
        b.names.append(r.host.name)
    return list(blocks.values())


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def fold_names(names: list[str]) -> str:
    """['web-1', 'web-2', 'web-3', 'db-1'] -> 'db-1, web-[1-3]' (compact host lists)."""
    groups: dict[str, list[int]] = {}
    plain: list[str] = []
    for n in names:
        m = _NUMBERED.match(n)
        if m and not (len(m.group(2)) > 1 and m.group(2).startswith("0")):
            groups.setdefault(m.group(1), []).append(int(m.group(2)))
        else:
            plain.append(n)
    parts = list(plain)
    for prefix, nums in groups.items():
        nums = sorted(set(nums))
        if len(nums) == 1:
            parts.append(f"{prefix}{nums[0]}")
            continue
        ranges: list[str] = []
        start = prev = nums[0]
        for n in nums[1:] + [None]:  # type: ignore[list-item]
            if n is not None and n == prev + 1:
                prev = n
                continue
            ranges.append(f"{start}-{prev}" if prev > start else f"{start}")
            if n is not None:
                start = prev = n
        parts.append(f"{prefix}[{','.join(ranges)}]")
    return ", ".join(sorted(parts, key=_natural))


def _natural(s: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
