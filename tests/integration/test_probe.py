"""capacity.probe at a short duration on the lab finds what saturates first."""

from __future__ import annotations

import json

from .conftest import fab


def test_probe_ramps_until_something_saturates_and_plots_it(lab, tmp_path):
    png = tmp_path / "probe.png"
    # The real Sentry on the lab's two shared cores takes tens of events/s, not thousands.
    proc = fab("capacity.probe", "--start=10", "--factor=2", "--step-seconds=4",
               "--max-rate=640", f"--output={png}", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["steps"] and data["first_saturated"]
    assert data["sustained"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
