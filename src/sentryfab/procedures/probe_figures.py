"""The last probe figures of each cluster (events/s one web process and one worker process
sustain), kept on this machine for `fab capacity`.

$XDG_STATE_HOME/sentryfab/probe/<cluster>.json (~/.local/state by default), beside the local
audit log: a measurement worth keeping, not a cache. A probe measures the machines it ran
on, so figures belong to one cluster name and `fab capacity` of another never sees them:

    {"cluster": "lab",
     "tiers": {"web": {"events_per_second_per_process": 27.8, "how": "bench/real_sentry.py",
                       "measured_at": "2025-01-31T10:00:00Z", "settings": {"threads": 4}},
               "worker": {"events_per_second_per_process": 8.2, ...}}}
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from ..plans.forecast import PER_PROCESS, TIER_SETTING, TierFigure


def figures_path(cluster: str) -> Path:
    """Where a cluster's figures live ($XDG_STATE_HOME respected)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster) or "cluster"
    return base / "sentryfab" / "probe" / f"{safe}.json"


def parse(text: str) -> dict[str, TierFigure]:
    """Figures by tier from the file's text; what is not understood is left out (a file from
    an older sentryfab, or edited by hand, never breaks `fab capacity`)."""
    try:
        tiers = json.loads(text).get("tiers")
    except (ValueError, AttributeError):
        return {}
    out: dict[str, TierFigure] = {}
    for role, raw in (tiers if isinstance(tiers, dict) else {}).items():
        per = raw.get(PER_PROCESS) if isinstance(raw, dict) else None
        if role not in TIER_SETTING or isinstance(per, bool) or not isinstance(per, int | float) \
                or per <= 0:
            continue
        conditions = raw.get("settings")
        out[role] = TierFigure(float(per), str(raw.get("measured_at") or ""),
                               str(raw.get("how") or ""),
                               dict(conditions) if isinstance(conditions, dict) else {})
    return out


def dumps(cluster: str, figures: dict[str, TierFigure]) -> str:
    """The file's text for these figures."""
    tiers: dict[str, Any] = {
        role: {PER_PROCESS: f.per_process, "how": f.how, "measured_at": f.measured_at,
               "settings": f.settings} for role, f in sorted(figures.items())}
    return json.dumps({"cluster": cluster, "tiers": tiers}, indent=2) + "\n"


def load(cluster: str) -> dict[str, TierFigure]:
    """The kept figures of `cluster`; empty when none were kept."""
    try:
        return parse(figures_path(cluster).read_text())
    except OSError:
        return {}


def record(cluster: str, role: str, per_process: float, how: str,
           settings: dict[str, Any] | None = None, at: str | None = None) -> Path:
    """Keep what one process of `role` sustained (replacing that tier's last figure; the
    other tier's stays). `settings`: the tier's threads or concurrency when measured."""
    if role not in TIER_SETTING:
        raise ValueError(f"no throughput figure for role {role!r} (only {', '.join(TIER_SETTING)})")
    figures = load(cluster)
    figures[role] = TierFigure(float(per_process),
                               at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), how,
                               dict(settings or {}))
    path = figures_path(cluster)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Replaced, never rewritten in place: a `fab capacity` reading meanwhile sees one or
    # the other, whole.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".probe-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dumps(cluster, figures))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
