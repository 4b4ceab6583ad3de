"""`fab docs` on the lab: live primary, every host, the audit, no secret value."""

from __future__ import annotations

import yaml

from .conftest import LAB_INVENTORY, fab


def test_runbook_from_the_live_lab_has_every_host_and_no_secret(lab, tmp_path):
    out = tmp_path / "runbook.md"
    proc = fab("docs", f"--output={out}")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for h in lab.hosts:
        assert f"| {h.name} | {h.address} |" in text
    assert "- primary: **db-" in text
    assert "## Recent changes (audit log)" in text and "not read (offline)" not in text
    secrets = yaml.safe_load((LAB_INVENTORY.parent / "secrets.yaml").read_text())
    for name, value in secrets.items():
        assert str(value) not in text, name
