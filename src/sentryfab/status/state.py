"""The last sample per host, kept on this machine so the next round can compute deltas.

~/.cache/sentryfab/status/<cluster>.json: restart counts per container (with its id, so a
replaced container does not look like a restart storm), counters and the queue length.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any


def state_path(cluster: str) -> Path:
    """Where a cluster's samples live ($XDG_CACHE_HOME respected)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster) or "cluster"
    return base / "sentryfab" / "status" / f"{safe}.json"


def load(path: Path) -> dict[str, dict[str, Any]]:
    """Samples by host name; empty when there is no usable file (a first run)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("hosts", {}) if isinstance(data, dict) else {}


def save(path: Path, samples: dict[str, dict[str, Any]]) -> None:
    """Merge these hosts' samples into the file, replacing it atomically (rounds may overlap)."""
    merged = load(path)
    merged.update(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"hosts": merged}, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
